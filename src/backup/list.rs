//! `list`: the backups in a local directory or under an S3 prefix, with what can be told
//! without reading them whole: engine (from the dump's header), size, compression, whether
//! the checksum file is there, age. `verify` is the full check.

use std::io::Read;

use indicatif::HumanBytes;
use serde::Serialize;

use super::archive;
use super::format::{self, Compression, DumpKind, HEAD_TAIL_BYTES};
use super::location::{Location, S3Url};
use super::manifest;
use super::s3::S3Store;
use crate::error::{Error, Result};
use crate::output::{self, Render, Width};

/// Bytes read from the start of each backup to find its header.
const SNIFF: u64 = 64 << 10;

/// One backup (an element of the `-o json` schema).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BackupEntry {
    /// File or object name, relative to the listed location.
    pub file: String,
    /// `postgres` or `mysql`, from the dump's header; none when unreadable.
    pub engine: Option<String>,
    /// Size as stored.
    pub bytes: u64,
    pub compression: Compression,
    /// `present` when `FILE.sha256` is beside it, else `missing` (`verify` checks it).
    pub checksum: ChecksumState,
    /// Its manifest is beside it (`drill` and `verify --deep` need one).
    pub manifest: bool,
    /// Seconds since it was last written.
    pub age_seconds: i64,
    /// A parallel dump's archive: how many dump files it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<usize>,
}

/// Whether the checksum file is there.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ChecksumState {
    Present,
    Missing,
}

/// What `list` found (the `-o json` schema).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BackupList {
    /// The directory or prefix listed.
    pub location: String,
    /// Backups, by name.
    pub backups: Vec<BackupEntry>,
}

/// A name `dump` writes: `.sql`, `.sql.gz`, `.sql.zst`, `.tar` with `--parallel` (not
/// sidecars or `.partial` files).
fn is_backup_name(name: &str) -> bool {
    [
        ".sql",
        ".sql.gz",
        ".sql.zst",
        ".sql.zstd",
        archive::EXTENSION,
    ]
    .iter()
    .any(|ext| name.ends_with(ext))
}

/// Lists a directory or an `s3://BUCKET/PREFIX/`.
pub async fn list(location: &Location, now: k8s_openapi::jiff::Timestamp) -> Result<BackupList> {
    let mut backups = match location {
        Location::Local(dir) => {
            let dir = dir.clone();
            let now = now.as_second();
            tokio::task::spawn_blocking(move || list_dir(&dir, now))
                .await
                .map_err(|err| Error::Failed(format!("failed to list the directory: {err}")))??
        }
        Location::S3(prefix) => list_prefix(prefix, now.as_second()).await?,
    };
    backups.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(BackupList {
        location: location.to_string(),
        backups,
    })
}

/// The backups on a schedule's PVC (`list pvc:NAME`) in the same list: what the reader pod
/// reports (name, size, time, checksum beside it); the engine is not read from there.
pub fn from_pvc(
    claim: &str,
    found: Vec<super::pvc_source::PvcBackup>,
    now: k8s_openapi::jiff::Timestamp,
) -> BackupList {
    let mut backups: Vec<BackupEntry> = found
        .into_iter()
        .map(|b| {
            let modified = b
                .modified
                .parse::<k8s_openapi::jiff::Timestamp>()
                .map_or(now.as_second(), |t| t.as_second());
            BackupEntry {
                compression: Compression::from_file_name(&b.name).unwrap_or(Compression::None),
                file: b.name,
                engine: None,
                bytes: b.bytes,
                checksum: if b.checksum {
                    ChecksumState::Present
                } else {
                    ChecksumState::Missing
                },
                manifest: b.manifest,
                age_seconds: now.as_second() - modified,
                parts: None,
            }
        })
        .collect();
    backups.sort_by(|a, b| a.file.cmp(&b.file));
    BackupList {
        location: format!("pvc:{claim}"),
        backups,
    }
}

fn list_dir(dir: &std::path::Path, now: i64) -> Result<Vec<BackupEntry>> {
    let io_err = |action: &'static str, path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    if !dir.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let mut backups = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || !is_backup_name(&name) {
            continue;
        }
        let mut head = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(SNIFF).read_to_end(&mut head))
            .map_err(io_err("read", &path))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(now, |d| d.as_secs() as i64);
        let checksum = if format::checksum_path(&path).is_file() {
            ChecksumState::Present
        } else {
            ChecksumState::Missing
        };
        let beside = |suffix: &str| dir.join(format!("{name}{suffix}")).is_file();
        let manifest = beside(manifest::SUFFIX) || beside(manifest::PASSES_SUFFIX);
        let mut entry = entry_of(name, &head, meta.len(), checksum, now - modified);
        entry.manifest = manifest;
        backups.push(entry);
    }
    Ok(backups)
}

async fn list_prefix(prefix: &S3Url, now: i64) -> Result<Vec<BackupEntry>> {
    if !prefix.is_prefix() {
        return Err(Error::Usage(format!(
            "{prefix} is an object: list a prefix ending in '/' (s3://BUCKET/PREFIX/)"
        )));
    }
    let store = S3Store::from_env(&prefix.bucket)?;
    let objects = store.list(prefix).await?;
    let names: std::collections::HashSet<String> =
        objects.iter().map(|o| o.location.to_string()).collect();
    let mut backups = Vec::new();
    for object in &objects {
        let key = object.location.to_string();
        let name = key.rsplit('/').next().unwrap_or(&key).to_string();
        if !is_backup_name(&name) {
            continue;
        }
        let url = S3Url {
            bucket: prefix.bucket.clone(),
            key: key.clone(),
        };
        let head = store.read_head(&url, object.size, SNIFF).await?;
        let checksum = if names.contains(&format!("{key}.sha256")) {
            ChecksumState::Present
        } else {
            ChecksumState::Missing
        };
        let age = now - object.last_modified.timestamp();
        let mut entry = entry_of(name, &head, object.size, checksum, age);
        entry.manifest = names.contains(&format!("{key}{}", manifest::SUFFIX));
        backups.push(entry);
    }
    Ok(backups)
}

/// An entry from a backup's first bytes: compression from its magic, engine from the
/// header of what those bytes decompress to (a cut-off stream still yields its start).
fn entry_of(
    file: String,
    head: &[u8],
    bytes: u64,
    checksum: ChecksumState,
    age_seconds: i64,
) -> BackupEntry {
    if archive::is_archive(head) {
        let index = archive::index_from_head(head);
        return BackupEntry {
            file,
            engine: index.as_ref().map(|i| i.kind.engine_name().to_string()),
            bytes,
            compression: index.as_ref().map_or(Compression::None, |i| i.compression),
            checksum,
            manifest: false,
            age_seconds: age_seconds.max(0),
            parts: Some(index.map_or(0, |i| i.parts.len())),
        };
    }
    let compression = Compression::from_magic(head);
    let mut sql = Vec::new();
    if let Ok(decoder) = super::verify::decoder(compression, head) {
        let _ = decoder.take(HEAD_TAIL_BYTES as u64).read_to_end(&mut sql);
    }
    let engine = DumpKind::from_header(&sql).map(|kind| kind.engine_name().to_string());
    BackupEntry {
        file,
        engine,
        bytes,
        compression,
        checksum,
        manifest: false,
        age_seconds: age_seconds.max(0),
        parts: None,
    }
}

impl Render for BackupList {
    fn render(&self, _width: Width) -> String {
        let mut table = output::table(&[
            "file",
            "engine",
            "size",
            "compression",
            "checksum",
            "manifest",
            "age",
        ]);
        for b in &self.backups {
            let engine = b.engine.clone().unwrap_or_else(|| "unknown".into());
            table.add_row(vec![
                b.file.clone(),
                match b.parts {
                    Some(parts) => format!("{engine} ({parts} parts)"),
                    None => engine,
                },
                HumanBytes(b.bytes).to_string(),
                b.compression.to_string(),
                match b.checksum {
                    ChecksumState::Present => "present".into(),
                    ChecksumState::Missing => "MISSING".into(),
                },
                if b.manifest { "yes" } else { "no" }.into(),
                output::age(b.age_seconds),
            ]);
        }
        output::table_text(&table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_listing_prints_as_a_table_and_as_json() {
        let list = BackupList {
            location: "s3://backups/nightly/".into(),
            backups: vec![
                BackupEntry {
                    file: "mariadb-20261203T101500Z.sql.zst".into(),
                    engine: Some("MySQL/MariaDB".into()),
                    bytes: 73_400_320,
                    compression: Compression::Zstd,
                    checksum: ChecksumState::Missing,
                    manifest: false,
                    age_seconds: 90_000,
                    parts: None,
                },
                BackupEntry {
                    file: "postgres-20261203T110000Z.sql.gz".into(),
                    engine: Some("PostgreSQL".into()),
                    bytes: 1_234_567,
                    compression: Compression::Gzip,
                    checksum: ChecksumState::Present,
                    manifest: true,
                    age_seconds: 300,
                    parts: None,
                },
                BackupEntry {
                    file: "odd.sql".into(),
                    engine: None,
                    bytes: 0,
                    compression: Compression::None,
                    checksum: ChecksumState::Missing,
                    manifest: false,
                    age_seconds: 5,
                    parts: None,
                },
            ],
        };
        insta::assert_snapshot!("list_table", list.render(Width(100)));
        insta::assert_snapshot!("list_json", output::to_json(&list).unwrap());
    }

    #[tokio::test]
    async fn a_directory_lists_its_backups_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"--\n-- PostgreSQL database cluster dump\n--\n")
            .unwrap();
        let gz = gz.finish().unwrap();
        std::fs::write(dir.path().join("pg.sql.gz"), &gz).unwrap();
        std::fs::write(dir.path().join("pg.sql.gz.sha256"), "x").unwrap();
        std::fs::write(dir.path().join("pg.sql.gz.manifest.json"), "{}").unwrap();
        std::fs::write(dir.path().join("my.sql"), "-- MySQL dump 10.13\n").unwrap();
        std::fs::write(dir.path().join("my.sql.partial"), "").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "").unwrap();
        let index = archive::Index {
            format: archive::FORMAT,
            engine: crate::engine::Engine::Postgres,
            kind: DumpKind::PostgresCluster,
            compression: Compression::Zstd,
            parallel: 2,
            parts: vec![],
        };
        let tar = archive::write(Vec::new(), &index, &[], 0).unwrap();
        std::fs::write(dir.path().join("all.tar"), &tar).unwrap();
        let now = k8s_openapi::jiff::Timestamp::now();
        let listed = list(&Location::Local(dir.path().into()), now)
            .await
            .unwrap();
        let names: Vec<_> = listed.backups.iter().map(|b| b.file.as_str()).collect();
        assert_eq!(names, ["all.tar", "my.sql", "pg.sql.gz"]);
        let all = &listed.backups[0];
        assert_eq!(all.engine.as_deref(), Some("PostgreSQL"));
        assert_eq!(all.compression, Compression::Zstd);
        assert_eq!(all.parts, Some(0));
        let listed = BackupList {
            backups: listed.backups[1..].to_vec(),
            ..listed
        };
        let my = &listed.backups[0];
        assert_eq!(my.engine.as_deref(), Some("MySQL/MariaDB"));
        assert_eq!(my.compression, Compression::None);
        assert_eq!(my.checksum, ChecksumState::Missing);
        assert!(!my.manifest);
        let pg = &listed.backups[1];
        assert_eq!(pg.engine.as_deref(), Some("PostgreSQL"));
        assert_eq!(pg.compression, Compression::Gzip);
        assert!(pg.manifest);
        assert_eq!(pg.bytes, gz.len() as u64);
        assert_eq!(pg.checksum, ChecksumState::Present);
        assert!(pg.age_seconds < 60);
    }

    #[tokio::test]
    async fn a_file_is_not_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.sql");
        std::fs::write(&file, "").unwrap();
        let err = list(&Location::Local(file), k8s_openapi::jiff::Timestamp::now())
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::USAGE);
    }
}
