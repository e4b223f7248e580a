//! Where a backup lives, from `-f`: a local path or an S3 object (`s3://BUCKET/KEY`), or an
//! S3 prefix (`s3://BUCKET/PREFIX/`) that the dump completes with its default file name.
//! Parsing is pure and happens before any API call; bad `s3://` syntax is a usage error.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use super::format;
use super::s3::S3Store;

/// A backup's place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A file (or, for `list`, a directory) on this machine.
    Local(PathBuf),
    /// An object, or a prefix when the key is empty or ends in `/`.
    S3(S3Url),
}

/// `s3://BUCKET/KEY`, already checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// Bucket name.
    pub bucket: String,
    /// Object key; empty or ending in `/` for a prefix.
    pub key: String,
}

impl S3Url {
    /// Parses `s3://BUCKET[/KEY]`.
    pub fn parse(text: &str) -> Result<S3Url> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "invalid location {text:?}: {why} (expected s3://BUCKET/KEY or s3://BUCKET/PREFIX/)"
            ))
        };
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| bad("not an s3:// URL"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if !valid_bucket(bucket) {
            return Err(bad(
                "a bucket name is 3 to 63 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit",
            ));
        }
        if key.chars().any(char::is_control) {
            return Err(bad("control characters in the key"));
        }
        let segments: Vec<&str> = key.split('/').collect();
        let last = segments.len() - 1;
        for (i, segment) in segments.iter().enumerate() {
            // The one empty segment allowed is after a final `/` (a prefix).
            if (segment.is_empty() && i != last) || matches!(*segment, "." | "..") {
                return Err(bad("empty, '.' or '..' path segments in the key"));
            }
        }
        if key.len() > 1024 {
            return Err(bad("the key is longer than 1024 bytes"));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// True for `s3://BUCKET/` and `s3://BUCKET/PREFIX/`.
    pub fn is_prefix(&self) -> bool {
        self.key.is_empty() || self.key.ends_with('/')
    }

    /// This object's sidecar, `KEY` + `suffix` (`.sha256`, a manifest...).
    pub fn sidecar(&self, suffix: &str) -> S3Url {
        S3Url {
            bucket: self.bucket.clone(),
            key: format!("{}{suffix}", self.key),
        }
    }

    /// The object named `name` under this prefix.
    pub fn join(&self, name: &str) -> S3Url {
        S3Url {
            bucket: self.bucket.clone(),
            key: format!("{}{name}", self.key),
        }
    }

    /// The last segment of the key.
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// S3's bucket naming rules (virtual-host safe: no upper case, no `_`).
fn valid_bucket(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && edge(name.chars().next())
        && edge(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && !name.contains("..")
}

impl Location {
    /// `s3://...` is an object location (checked); anything else a local path.
    pub fn parse(text: &str) -> Result<Location> {
        if text.starts_with("s3://") {
            return S3Url::parse(text).map(Location::S3);
        }
        if text.contains("://") {
            return Err(Error::Usage(format!(
                "unsupported location {text:?}: a local path or s3://BUCKET/KEY"
            )));
        }
        Ok(Location::Local(PathBuf::from(text)))
    }

    /// The location of this backup's sidecar `NAME` + `suffix` (`FILE.sha256`, ...).
    pub fn sidecar(&self, suffix: &str) -> Location {
        match self {
            Location::Local(path) => {
                let mut name = path.as_os_str().to_owned();
                name.push(suffix);
                Location::Local(PathBuf::from(name))
            }
            Location::S3(url) => Location::S3(url.sidecar(suffix)),
        }
    }

    /// The local path, when it is one.
    pub fn as_path(&self) -> Option<&Path> {
        match self {
            Location::Local(path) => Some(path),
            Location::S3(_) => None,
        }
    }

    /// Opens the backup for reading, streamed. Blocks: call it from a blocking thread
    /// (`spawn_blocking`) when the location is an object.
    pub fn open(&self) -> Result<Box<dyn Read + Send>> {
        match self {
            Location::Local(path) => std::fs::File::open(path)
                .map(|f| Box::new(f) as Box<dyn Read + Send>)
                .map_err(|source| Error::Io {
                    action: "open",
                    path: path.display().to_string(),
                    source,
                }),
            Location::S3(url) => {
                let handle = tokio::runtime::Handle::current();
                let store = S3Store::from_env(&url.bucket)?;
                handle.block_on(store.open(url))
            }
        }
    }

    /// Reads a small sidecar (a checksum, a manifest); `None` when there is none.
    pub async fn read_small(&self) -> Result<Option<Vec<u8>>> {
        match self {
            Location::Local(path) => match std::fs::read(path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(Error::Io {
                    action: "read",
                    path: path.display().to_string(),
                    source,
                }),
            },
            Location::S3(url) => S3Store::from_env(&url.bucket)?.read_small(url).await,
        }
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Location {
        Location::Local(path)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::S3(url) => url.fmt(f),
        }
    }
}

/// Writes a sidecar beside a finished backup: `FILE` + `suffix` (a local file, mode 0600,
/// written whole then renamed) or the object `KEY` + `suffix` (one PUT). Replaces an
/// existing one: the backup it describes was just written.
pub async fn write_sidecar(backup: &Location, suffix: &str, bytes: Vec<u8>) -> Result<Location> {
    let sidecar = backup.sidecar(suffix);
    match &sidecar {
        Location::Local(path) => {
            let partial = format::partial_path(path);
            let io_err = |action: &'static str, p: &Path| {
                let path = p.display().to_string();
                move |source| Error::Io {
                    action,
                    path,
                    source,
                }
            };
            let _ = std::fs::remove_file(&partial);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&partial).map_err(io_err("create", &partial))?;
            std::io::Write::write_all(&mut file, &bytes)
                .and_then(|()| file.sync_all())
                .map_err(io_err("write", &partial))?;
            std::fs::rename(&partial, path).map_err(io_err("rename", &partial))?;
        }
        Location::S3(url) => S3Store::from_env(&url.bucket)?.put(url, bytes).await?,
    }
    Ok(sidecar)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str, key: &str) -> Location {
        Location::S3(S3Url {
            bucket: bucket.into(),
            key: key.into(),
        })
    }

    #[test]
    fn locations_parse() {
        assert_eq!(
            Location::parse("backups/x.sql.gz").unwrap(),
            Location::Local("backups/x.sql.gz".into())
        );
        assert_eq!(
            Location::parse("s3://my-bucket/nightly/pg.sql.gz").unwrap(),
            s3("my-bucket", "nightly/pg.sql.gz")
        );
        assert_eq!(
            Location::parse("s3://my.bucket.1/nightly/").unwrap(),
            s3("my.bucket.1", "nightly/")
        );
        assert_eq!(Location::parse("s3://abc").unwrap(), s3("abc", ""));
        assert_eq!(Location::parse("s3://abc/").unwrap(), s3("abc", ""));
        let Location::S3(url) = Location::parse("s3://abc/a/b.sql").unwrap() else {
            panic!()
        };
        assert!(!url.is_prefix());
        assert_eq!(url.file_name(), "b.sql");
        assert_eq!(
            url.sidecar(".sha256").to_string(),
            "s3://abc/a/b.sql.sha256"
        );
        assert!(S3Url::parse("s3://abc/a/").unwrap().is_prefix());
        assert_eq!(
            S3Url::parse("s3://abc/a/").unwrap().join("x.sql").key,
            "a/x.sql"
        );
        // Korean in keys is fine: S3 keys are UTF-8.
        assert!(Location::parse("s3://abc/백업/x.sql").is_ok());
    }

    #[test]
    fn bad_s3_urls_are_usage_errors() {
        for bad in [
            "s3://",
            "s3:///key",
            "s3://ab/key",
            "s3://Upper/key",
            "s3://under_score/key",
            "s3://-dash/key",
            "s3://dash-/key",
            "s3://a..b/key",
            &format!("s3://{}/k", "a".repeat(64)),
            "s3://abc//key",
            "s3://abc/a//b",
            "s3://abc/../etc",
            "s3://abc/a/./b",
            "s3://abc/a\nb",
            "gs://abc/key",
            "https://abc/key",
        ] {
            let err = Location::parse(bad).expect_err(bad);
            assert_eq!(err.exit_code(), crate::exit::USAGE, "{bad}");
        }
    }

    #[test]
    fn local_sidecars_sit_beside_the_file() {
        assert_eq!(
            Location::Local("d/x.sql.gz".into()).sidecar(".sha256"),
            Location::Local("d/x.sql.gz.sha256".into())
        );
    }

    #[tokio::test]
    async fn a_local_sidecar_is_written_private_and_replaced_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let backup = Location::Local(dir.path().join("x.sql.gz"));
        let written = write_sidecar(&backup, ".manifest.json", b"one".to_vec())
            .await
            .unwrap();
        write_sidecar(&backup, ".manifest.json", b"two".to_vec())
            .await
            .unwrap();
        let path = dir.path().join("x.sql.gz.manifest.json");
        assert_eq!(written, Location::Local(path.clone()));
        assert_eq!(written.read_small().await.unwrap().unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("x.sql.gz.manifest.json.partial").exists());
        let missing = backup.sidecar(".none");
        assert_eq!(missing.read_small().await.unwrap(), None);
    }
}
