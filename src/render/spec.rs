//! What the user asked for, validated: every check here runs before any API call.

use serde::Serialize;

use crate::engine::Engine;
use crate::error::{Error, Result};

/// The guide's defaults: [`DeploySpec::new`] starts from them and dbdeploy's flags show
/// them in `--help`. The image is the engine's ([`Engine::default_image`]).
pub mod defaults {
    pub const DATABASE: &str = "appdb";
    pub const USER: &str = "appuser";
    pub const STORAGE_SIZE: &str = "10Gi";
    pub const CPU_REQUEST: &str = "250m";
    pub const CPU_LIMIT: &str = "1";
    pub const MEMORY_REQUEST: &str = "512Mi";
    pub const MEMORY_LIMIT: &str = "2Gi";
    pub const REPLICAS: i32 = 1;
}

/// CPU and memory requests and limits, as Kubernetes quantities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resources {
    pub cpu_request: String,
    pub cpu_limit: String,
    pub memory_request: String,
    pub memory_limit: String,
}

impl Default for Resources {
    /// The guide's values.
    fn default() -> Self {
        Resources {
            cpu_request: defaults::CPU_REQUEST.into(),
            cpu_limit: defaults::CPU_LIMIT.into(),
            memory_request: defaults::MEMORY_REQUEST.into(),
            memory_limit: defaults::MEMORY_LIMIT.into(),
        }
    }
}

/// A database to deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploySpec {
    pub engine: Engine,
    pub name: String,
    pub namespace: String,
    pub image: String,
    pub database: String,
    pub user: String,
    pub storage_size: String,
    pub storage_class: Option<String>,
    pub resources: Resources,
    /// Server settings from `--set`, in the order given.
    pub settings: Vec<(String, String)>,
    pub replicas: i32,
    /// Also allow ingress from every pod in the namespace.
    pub allow_namespace: bool,
    /// Render a PodDisruptionBudget even with one replica.
    pub pdb: bool,
}

impl DeploySpec {
    /// The defaults for an engine: name = engine, guide's image, database and sizes.
    pub fn new(engine: Engine, namespace: &str) -> Self {
        DeploySpec {
            engine,
            name: engine.as_str().into(),
            namespace: namespace.into(),
            image: engine.default_image().into(),
            database: defaults::DATABASE.into(),
            user: defaults::USER.into(),
            storage_size: defaults::STORAGE_SIZE.into(),
            storage_class: None,
            resources: Resources::default(),
            settings: Vec::new(),
            replicas: defaults::REPLICAS,
            allow_namespace: false,
            pdb: false,
        }
    }

    /// Checks every field; the first problem is returned as a usage error.
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        validate_dns_label("namespace", &self.namespace, 63)?;
        if self.image.trim().is_empty() || self.image.chars().any(char::is_whitespace) {
            return usage(format!(
                "invalid --image {:?}: an image reference has no spaces",
                self.image
            ));
        }
        validate_identifier("--database", &self.database, 63)?;
        // MySQL user names are limited to 32 characters.
        validate_identifier("--db-user", &self.user, 32)?;
        if self.engine != Engine::Postgres && self.user == "root" {
            return usage(
                "--db-user root is the admin user the image creates; pick another name".into(),
            );
        }
        validate_quantity("--storage-size", &self.storage_size)?;
        if let Some(class) = &self.storage_class {
            validate_dns_subdomain("--storage-class", class)?;
        }
        validate_quantity("--cpu", &self.resources.cpu_request)?;
        validate_quantity("--cpu-limit", &self.resources.cpu_limit)?;
        validate_quantity("--memory", &self.resources.memory_request)?;
        validate_quantity("--memory-limit", &self.resources.memory_limit)?;
        if self.replicas < 1 {
            return usage(format!("--replicas {} must be at least 1", self.replicas));
        }
        if self.replicas > 1 {
            return usage(format!(
                "--replicas {} is refused: without replication each pod would hold its own, \
                 different copy of the data behind one Service. Run 1 replica.",
                self.replicas
            ));
        }
        for (key, value) in &self.settings {
            validate_setting(self.engine, key, value)?;
        }
        Ok(())
    }
}

fn usage<T>(message: String) -> Result<T> {
    Err(Error::Usage(message))
}

/// Parses one `--set key=value`.
pub fn parse_setting(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("invalid --set {text:?}: expected key=value"));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("invalid --set {text:?}: empty key"));
    }
    Ok((key.to_string(), value.trim().to_string()))
}

fn validate_setting(engine: Engine, key: &str, value: &str) -> Result<()> {
    let mut chars = key.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return usage(format!(
            "invalid --set key {key:?}: use letters, digits, '_', '-' or '.', starting with a letter"
        ));
    }
    if engine == Engine::Postgres && key.contains('-') {
        return usage(format!(
            "invalid --set key {key:?}: PostgreSQL settings use '_', not '-'"
        ));
    }
    let normal = key.replace('-', "_").to_ascii_lowercase();
    if engine
        .reserved_settings()
        .iter()
        .any(|r| r.replace('-', "_") == normal)
    {
        return usage(format!(
            "--set {key} is managed by dbdeploy and cannot be changed"
        ));
    }
    if value.contains(['\n', '\r', '\0']) {
        return usage(format!(
            "invalid --set {key}: the value must be a single line"
        ));
    }
    Ok(())
}

/// A database name: a DNS-1123 label (it names the StatefulSet, Services, pods) short
/// enough that `<name>-headless` and the pods' revision label fit in 63 characters.
pub fn validate_name(name: &str) -> Result<()> {
    validate_dns_label("name", name, 52)
}

fn validate_dns_label(what: &str, value: &str, max: usize) -> Result<()> {
    let valid = !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && !value.ends_with('-');
    if valid {
        Ok(())
    } else {
        usage(format!(
            "invalid {what} {value:?}: use at most {max} lower-case letters, digits and '-', \
             starting with a letter and ending with a letter or digit"
        ))
    }
}

fn validate_dns_subdomain(what: &str, value: &str) -> Result<()> {
    let valid = !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
    if valid {
        Ok(())
    } else {
        usage(format!(
            "invalid {what} {value:?}: not a valid Kubernetes object name"
        ))
    }
}

fn validate_identifier(what: &str, value: &str, max: usize) -> Result<()> {
    let valid = !value.is_empty()
        && value.len() <= max
        && value.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        usage(format!(
            "invalid {what} {value:?}: use at most {max} letters, digits and '_', not starting with a digit"
        ))
    }
}

/// Kubernetes quantity syntax: a positive number with an optional suffix
/// (Ki Mi Gi Ti Pi Ei, n u m k M G T P E, or an exponent).
pub fn validate_quantity(what: &str, value: &str) -> Result<()> {
    if is_quantity(value) {
        Ok(())
    } else {
        usage(format!(
            "invalid {what} {value:?}: expected a Kubernetes quantity such as 500m, 1, 512Mi or 10Gi"
        ))
    }
}

fn is_quantity(value: &str) -> bool {
    crate::quantity::parse(value).is_some_and(|n| n > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DeploySpec {
        DeploySpec::new(Engine::Postgres, "default")
    }

    #[test]
    fn defaults_are_valid() {
        for engine in Engine::ALL {
            DeploySpec::new(engine, "default").validate().unwrap();
        }
    }

    #[test]
    fn quantities() {
        for good in ["1", "250m", "512Mi", "10Gi", "1.5", "1e3", "2E+2", "100k"] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["", "10GB", "ten", "-1", "0", "1.2.3", "Gi", "1 Gi", "1e"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn root_as_db_user_is_refused_naming_the_db_user_flag() {
        let mut s = DeploySpec::new(Engine::Mysql, "default");
        s.user = "root".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.starts_with("--db-user root is the admin user"), "{err}");
    }

    #[test]
    fn names_must_be_dns_labels() {
        for bad in ["Postgres", "pg_1", "-pg", "pg-", "", &"a".repeat(53)] {
            let mut s = spec();
            s.name = bad.to_string();
            assert!(matches!(s.validate(), Err(Error::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn more_than_one_replica_is_refused() {
        let mut s = spec();
        s.replicas = 3;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("--replicas 3 is refused"), "{err}");
    }

    #[test]
    fn settings_are_checked() {
        assert!(parse_setting("max_connections").is_err());
        assert_eq!(parse_setting("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        let mut s = spec();
        s.settings = vec![("data_directory".into(), "/x".into())];
        assert!(s.validate().is_err());
        s.settings = vec![("max-connections".into(), "10".into())];
        assert!(s.validate().is_err(), "postgres keys use underscores");
        s.settings = vec![("work_mem".into(), "8MB\nevil = 1".into())];
        assert!(s.validate().is_err());
        s.settings = vec![("work_mem".into(), "8MB".into())];
        s.validate().unwrap();
    }
}
