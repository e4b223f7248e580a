//! S3 credentials, region and endpoint the way the AWS CLI finds them: the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`), then the shared credentials and config files for `AWS_PROFILE`.
//! object_store's `AmazonS3Builder::from_env` reads the environment only, and falls back to
//! the instance metadata service, which a workstation must not be sent to: here a missing
//! key is an error instead.
//! <https://docs.aws.amazon.com/cli/latest/userguide/cli-configure-files.html>

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What an S3 client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    pub region: String,
    /// An S3-compatible store's URL; none for AWS itself.
    pub endpoint: Option<String>,
    /// Where the credentials came from (`environment`, a file and profile), for messages.
    pub source: String,
}

/// One INI file: section name -> key -> value.
type Ini = HashMap<String, HashMap<String, String>>;

impl AwsConfig {
    /// From the process environment and `~/.aws`.
    pub fn from_env() -> Result<AwsConfig> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Self::resolve(
            &|name| std::env::var(name).ok().filter(|v| !v.is_empty()),
            home,
        )
    }

    /// From `env` (variable lookup) and the files under `home/.aws` (or where
    /// `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE` point).
    pub fn resolve(env: &dyn Fn(&str) -> Option<String>, home: Option<PathBuf>) -> Result<Self> {
        let file = |var: &str, default: &str| {
            env(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
        };
        let credentials = read_ini(file("AWS_SHARED_CREDENTIALS_FILE", "credentials"))?;
        let config = read_ini(file("AWS_CONFIG_FILE", "config"))?;
        let named = env("AWS_PROFILE");
        let profile = named.clone().unwrap_or_else(|| "default".into());
        let config_section = if profile == "default" {
            "default".to_string()
        } else {
            format!("profile {profile}")
        };
        let from_credentials = credentials.get(&profile);
        let from_config = config.get(&config_section);
        if named.is_some() && from_credentials.is_none() && from_config.is_none() {
            return Err(Error::Usage(format!(
                "AWS_PROFILE {profile:?} is in neither the shared credentials nor the config file"
            )));
        }
        let setting = |key: &str| {
            from_credentials
                .and_then(|s| s.get(key))
                .or_else(|| from_config.and_then(|s| s.get(key)))
                .cloned()
        };
        let (access_key_id, secret, token, source) = match (
            env("AWS_ACCESS_KEY_ID"),
            env("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(id), Some(secret)) => (
                id,
                secret,
                env("AWS_SESSION_TOKEN"),
                "environment".to_string(),
            ),
            _ => match (
                setting("aws_access_key_id"),
                setting("aws_secret_access_key"),
            ) {
                (Some(id), Some(secret)) => (
                    id,
                    secret,
                    setting("aws_session_token"),
                    format!("profile {profile}"),
                ),
                _ => {
                    return Err(Error::Usage(format!(
                        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                             aws_access_key_id and aws_secret_access_key for profile {profile:?} in \
                             ~/.aws/credentials (AWS_PROFILE picks the profile)"
                    )));
                }
            },
        };
        let region = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| setting("region"))
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint = env("AWS_ENDPOINT_URL_S3")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| setting("endpoint_url"));
        if let Some(url) = &endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(Error::Usage(format!(
                "invalid S3 endpoint {url:?}: an http:// or https:// URL"
            )));
        }
        Ok(AwsConfig {
            access_key_id,
            secret_access_key: Secret(secret),
            session_token: token.map(Secret),
            region,
            endpoint,
            source,
        })
    }
}

fn read_ini(path: Option<PathBuf>) -> Result<Ini> {
    let Some(path) = path else {
        return Ok(Ini::new());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(parse_ini(&text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Ini::new()),
        Err(source) => Err(Error::Io {
            action: "read",
            path: path.display().to_string(),
            source,
        }),
    }
}

/// The AWS files' INI dialect: `[section]`, `key = value`, `#`/`;` comments; indented
/// lines belong to a nested block (`s3 =` followed by its settings) and are skipped.
fn parse_ini(text: &str) -> Ini {
    let mut ini = Ini::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            ini.entry(name.clone()).or_default();
            section = Some(name);
        } else if let (Some(name), Some((key, value))) = (&section, line.split_once('=')) {
            ini.entry(name.clone())
                .or_default()
                .insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    ini
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    fn home_with(credentials: &str, config: &str) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".aws")).unwrap();
        std::fs::write(home.path().join(".aws/credentials"), credentials).unwrap();
        std::fs::write(home.path().join(".aws/config"), config).unwrap();
        home
    }

    const CREDENTIALS: &str = "\
# comment
[default]
aws_access_key_id = DEFAULTID
aws_secret_access_key = defaultsecret

[backup]
aws_access_key_id=BACKUPID
aws_secret_access_key=backup=secret
aws_session_token = tok
";
    const CONFIG: &str = "\
[default]
region = eu-west-1

[profile backup]
region = ap-northeast-2
endpoint_url = http://127.0.0.1:9000
s3 =
  addressing_style = path
[profile keys-in-config]
aws_access_key_id = CFGID
aws_secret_access_key = cfgsecret
";

    #[test]
    fn the_environment_wins() {
        let home = home_with(CREDENTIALS, CONFIG);
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "ENVID"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
            ("AWS_REGION", "us-west-2"),
            ("AWS_ENDPOINT_URL", "https://s3.example.com"),
        ]);
        let config = AwsConfig::resolve(&env, Some(home.path().into())).unwrap();
        assert_eq!(config.access_key_id, "ENVID");
        assert_eq!(config.secret_access_key.0, "envsecret");
        assert_eq!(config.region, "us-west-2");
        assert_eq!(config.endpoint.as_deref(), Some("https://s3.example.com"));
        assert_eq!(config.source, "environment");
        // Secrets never print, not even in Debug.
        let shown = format!("{config:?}");
        assert!(!shown.contains("envsecret"), "{shown}");
    }

    #[test]
    fn profiles_come_from_both_files() {
        let home = home_with(CREDENTIALS, CONFIG);
        let default = AwsConfig::resolve(&env_of(&[]), Some(home.path().into())).unwrap();
        assert_eq!(default.access_key_id, "DEFAULTID");
        assert_eq!(default.region, "eu-west-1");
        assert_eq!(default.endpoint, None);

        let env = env_of(&[("AWS_PROFILE", "backup")]);
        let backup = AwsConfig::resolve(&env, Some(home.path().into())).unwrap();
        assert_eq!(backup.access_key_id, "BACKUPID");
        assert_eq!(backup.secret_access_key.0, "backup=secret");
        assert_eq!(backup.session_token, Some(Secret("tok".into())));
        assert_eq!(backup.region, "ap-northeast-2");
        assert_eq!(backup.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(backup.source, "profile backup");

        let env = env_of(&[("AWS_PROFILE", "keys-in-config")]);
        let in_config = AwsConfig::resolve(&env, Some(home.path().into())).unwrap();
        assert_eq!(in_config.access_key_id, "CFGID");
        assert_eq!(in_config.region, "us-east-1");

        // Files named by the environment replace ~/.aws.
        let elsewhere = home_with(
            "[default]\naws_access_key_id=X\naws_secret_access_key=Y\n",
            "",
        );
        let creds = elsewhere.path().join(".aws/credentials");
        let env = env_of(&[("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap())]);
        let named = AwsConfig::resolve(&env, Some(home.path().into())).unwrap();
        assert_eq!(named.access_key_id, "X");
    }

    #[test]
    fn missing_credentials_and_profiles_are_usage_errors() {
        let home = home_with(CREDENTIALS, CONFIG);
        let env = env_of(&[("AWS_PROFILE", "nope")]);
        let err = AwsConfig::resolve(&env, Some(home.path().into())).unwrap_err();
        assert!(err.to_string().contains("\"nope\""), "{err}");
        assert_eq!(err.exit_code(), crate::exit::USAGE);

        let empty = tempfile::tempdir().unwrap();
        let err = AwsConfig::resolve(&env_of(&[]), Some(empty.path().into())).unwrap_err();
        assert!(err.to_string().starts_with("no S3 credentials"), "{err}");
        // Half a key pair from the environment does not count.
        let env = env_of(&[("AWS_ACCESS_KEY_ID", "ID")]);
        assert!(AwsConfig::resolve(&env, Some(empty.path().into())).is_err());

        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "ID"),
            ("AWS_SECRET_ACCESS_KEY", "S"),
            ("AWS_ENDPOINT_URL", "127.0.0.1:9000"),
        ]);
        let err = AwsConfig::resolve(&env, Some(empty.path().into())).unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::USAGE);
    }
}
