//! The backup file format, as pure functions: compression by magic bytes, the dump's header
//! (which engine wrote it) and completion trailer, file names, and the `.sha256` file.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::engine::Engine;

/// How a backup file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (level 2 on the client, `gzip -1` in the pod: fast enough to keep up with the stream)
    Gzip,
    /// zstd (level 1)
    Zstd,
    /// Plain SQL
    None,
}

impl Compression {
    /// File name extension after `.sql`.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => ".sql.gz",
            Compression::Zstd => ".sql.zst",
            Compression::None => ".sql",
        }
    }

    /// Detects compression from the first bytes of a file (the magic numbers of gzip and
    /// zstd frames); anything else is taken as plain SQL.
    pub fn from_magic(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// Guesses compression from a file name, for files not yet written.
    pub fn from_file_name(name: &str) -> Option<Compression> {
        if name.ends_with(".gz") {
            Some(Compression::Gzip)
        } else if name.ends_with(".zst") || name.ends_with(".zstd") {
            Some(Compression::Zstd)
        } else if name.ends_with(".sql") {
            Some(Compression::None)
        } else {
            None
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        })
    }
}

/// Which tool wrote a dump, read from its first lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum DumpKind {
    /// `pg_dumpall`: every database, roles and tablespaces.
    PostgresCluster,
    /// `pg_dump` of one database.
    PostgresDatabase,
    /// `mysqldump` / `mariadb-dump`.
    Mysql,
}

const PG_CLUSTER_HEADER: &str = "-- PostgreSQL database cluster dump";
const PG_DATABASE_HEADER: &str = "-- PostgreSQL database dump";
const PG_CLUSTER_TRAILER: &str = "-- PostgreSQL database cluster dump complete";
const PG_DATABASE_TRAILER: &str = "-- PostgreSQL database dump complete";
const MYSQL_TRAILER: &str = "-- Dump completed";

/// How many bytes of the start and end of a dump are kept to read its header and trailer.
pub const HEAD_TAIL_BYTES: usize = 4096;

impl DumpKind {
    /// The kind of dump this engine writes.
    pub fn for_engine(engine: Engine, one_database: bool) -> DumpKind {
        match (engine, one_database) {
            (Engine::Postgres, false) => DumpKind::PostgresCluster,
            (Engine::Postgres, true) => DumpKind::PostgresDatabase,
            (Engine::Mysql | Engine::Mariadb, _) => DumpKind::Mysql,
        }
    }

    /// Reads the header comment pg_dump, pg_dumpall and mysqldump start their output with.
    pub fn from_header(head: &[u8]) -> Option<DumpKind> {
        let text = String::from_utf8_lossy(&head[..head.len().min(HEAD_TAIL_BYTES)]);
        for line in text.lines().take(10).map(str::trim_end) {
            if line == PG_CLUSTER_HEADER {
                return Some(DumpKind::PostgresCluster);
            }
            if line == PG_DATABASE_HEADER {
                return Some(DumpKind::PostgresDatabase);
            }
            if line.starts_with("-- MySQL dump") || line.starts_with("-- MariaDB dump") {
                return Some(DumpKind::Mysql);
            }
        }
        None
    }

    /// The comment the tool writes only after everything else succeeded.
    pub fn trailer(self) -> &'static str {
        match self {
            DumpKind::PostgresCluster => PG_CLUSTER_TRAILER,
            DumpKind::PostgresDatabase => PG_DATABASE_TRAILER,
            DumpKind::Mysql => MYSQL_TRAILER,
        }
    }

    /// True when the trailer is among the last lines of the dump. pg_dumpall repeats the
    /// per-database trailer inside the file, so a cluster dump needs its own trailer, and
    /// only the last few lines count (data rows may contain anything).
    pub fn is_complete(self, tail: &[u8]) -> bool {
        let text = String::from_utf8_lossy(tail);
        let last: Vec<&str> = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect();
        last.iter().rev().take(4).any(|line| match self {
            DumpKind::Mysql => line.starts_with(MYSQL_TRAILER),
            _ => *line == self.trailer(),
        })
    }

    /// Whether a dump of this kind can be restored into `engine` (MySQL and MariaDB dumps
    /// are plain SQL either accepts).
    pub fn fits(self, engine: Engine) -> bool {
        match self {
            DumpKind::PostgresCluster | DumpKind::PostgresDatabase => engine == Engine::Postgres,
            DumpKind::Mysql => matches!(engine, Engine::Mysql | Engine::Mariadb),
        }
    }

    /// The engine family for messages.
    pub fn engine_name(self) -> &'static str {
        match self {
            DumpKind::PostgresCluster | DumpKind::PostgresDatabase => "PostgreSQL",
            DumpKind::Mysql => "MySQL/MariaDB",
        }
    }
}

/// `YYYYmmddTHHMMSSZ` in UTC.
pub fn utc_stamp(now: k8s_openapi::jiff::Timestamp) -> String {
    now.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// The default backup file name: `<name>-<UTC timestamp>.sql.gz` (or `.sql.zst`, `.sql`).
pub fn default_file_name(name: &str, stamp: &str, compression: Compression) -> String {
    format!("{name}-{stamp}{}", compression.extension())
}

/// Where a dump is written until it is known to be complete.
pub fn partial_path(file: &Path) -> PathBuf {
    with_suffix(file, ".partial")
}

/// The checksum file next to a backup.
pub fn checksum_path(file: &Path) -> PathBuf {
    with_suffix(file, ".sha256")
}

fn with_suffix(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// A line in `sha256sum` format, so `sha256sum -c FILE.sha256` checks the backup by hand.
pub fn checksum_line(sha256: &str, file: &Path) -> String {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{sha256}  {name}\n")
}

/// The digest from a `sha256sum` line (`<64 hex>  name` or `<64 hex> *name`).
pub fn parse_checksum(text: &str) -> Option<String> {
    let first = text.split_whitespace().next()?;
    (first.len() == 64 && first.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| first.to_ascii_lowercase())
}

pub use crate::encoding::hex;

/// A VolumeSnapshot name: `<pvc>-<stamp>`, lower case, at most 63 characters (the PVC
/// part is shortened so the timestamp survives), no trailing `-`.
pub fn snapshot_name(pvc: &str, stamp: &str) -> String {
    let stamp = stamp.to_ascii_lowercase();
    let clean: String = pvc
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let room = 63 - stamp.len() - 1;
    let base = clean[..clean.len().min(room)].trim_matches('-');
    if base.is_empty() {
        format!("snap-{stamp}")
    } else {
        format!("{base}-{stamp}")
    }
}

/// A ring of the last bytes seen, to read the trailer without keeping the dump.
#[derive(Debug, Default)]
pub struct Tail {
    bytes: Vec<u8>,
}

impl Tail {
    /// Remembers the end of `chunk`.
    pub fn push(&mut self, chunk: &[u8]) {
        if chunk.len() >= HEAD_TAIL_BYTES {
            self.bytes.clear();
            self.bytes
                .extend_from_slice(&chunk[chunk.len() - HEAD_TAIL_BYTES..]);
            return;
        }
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > HEAD_TAIL_BYTES {
            let excess = self.bytes.len() - HEAD_TAIL_BYTES;
            self.bytes.drain(..excess);
        }
    }

    /// The last bytes seen.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The first bytes seen, for the header.
#[derive(Debug, Default)]
pub struct Head {
    bytes: Vec<u8>,
}

impl Head {
    /// Remembers the start of the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        let room = HEAD_TAIL_BYTES.saturating_sub(self.bytes.len());
        self.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    /// The first bytes seen.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG_END: &str = "COPY public.t (id) FROM stdin;\n1\n\\.\n\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n";

    #[test]
    fn pg_cluster_dump_needs_its_own_trailer() {
        assert!(DumpKind::PostgresCluster.is_complete(PG_END.as_bytes()));
        let cut = "--\n-- PostgreSQL database dump complete\n--\n\n";
        assert!(!DumpKind::PostgresCluster.is_complete(cut.as_bytes()));
        assert!(DumpKind::PostgresDatabase.is_complete(cut.as_bytes()));
        assert!(!DumpKind::PostgresCluster.is_complete(b"COPY public.t (id) FROM stdin;\n1\n2\n"));
        assert!(!DumpKind::PostgresCluster.is_complete(b""));
    }

    #[test]
    fn trailer_must_be_at_the_end() {
        let inside = format!("{PG_END}\\connect other\nCOPY x FROM stdin;\n1\n2\n3\n4\n5\n");
        assert!(!DumpKind::PostgresCluster.is_complete(inside.as_bytes()));
    }

    #[test]
    fn mysql_trailer_with_or_without_date() {
        let end = "UNLOCK TABLES;\n/*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;\n\n-- Dump completed on 2026-11-25 12:00:01\n";
        assert!(DumpKind::Mysql.is_complete(end.as_bytes()));
        assert!(DumpKind::Mysql.is_complete(b"-- Dump completed\n"));
        assert!(!DumpKind::Mysql.is_complete(b"INSERT INTO `t` VALUES (1),(2"));
    }

    #[test]
    fn headers_name_the_engine() {
        let pg = "--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict x\n";
        assert_eq!(
            DumpKind::from_header(pg.as_bytes()),
            Some(DumpKind::PostgresCluster)
        );
        let pg_one = "--\n-- PostgreSQL database dump\n--\n";
        assert_eq!(
            DumpKind::from_header(pg_one.as_bytes()),
            Some(DumpKind::PostgresDatabase)
        );
        let maria = "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19-11.4.2-MariaDB, for Linux (x86_64)\n";
        assert_eq!(
            DumpKind::from_header(maria.as_bytes()),
            Some(DumpKind::Mysql)
        );
        assert_eq!(
            DumpKind::from_header(b"-- MySQL dump 10.13  Distrib 8.0.36\n"),
            Some(DumpKind::Mysql)
        );
        assert_eq!(DumpKind::from_header(b"hello"), None);
        assert!(DumpKind::Mysql.fits(Engine::Mariadb));
        assert!(!DumpKind::PostgresCluster.fits(Engine::Mysql));
        assert!(!DumpKind::Mysql.fits(Engine::Postgres));
    }

    #[test]
    fn compression_from_magic_and_name() {
        assert_eq!(
            Compression::from_magic(&[0x1f, 0x8b, 8, 0]),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_magic(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(
            Compression::from_magic(b"--\n-- PostgreSQL"),
            Compression::None
        );
        assert_eq!(Compression::from_magic(b""), Compression::None);
        assert_eq!(
            Compression::from_file_name("a.sql.gz"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::from_file_name("a.sql.zst"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::from_file_name("a.sql"),
            Some(Compression::None)
        );
        assert_eq!(Compression::from_file_name("a.dump"), None);
    }

    #[test]
    fn names() {
        let stamp = utc_stamp("2026-11-25T13:04:05.123Z".parse().unwrap());
        assert_eq!(stamp, "20261125T130405Z");
        assert_eq!(
            default_file_name("postgres-0", &stamp, Compression::Gzip),
            "postgres-0-20261125T130405Z.sql.gz"
        );
        assert_eq!(
            default_file_name("db-0", &stamp, Compression::None),
            "db-0-20261125T130405Z.sql"
        );
        let file = Path::new("/tmp/x/db.sql.zst");
        assert_eq!(partial_path(file), Path::new("/tmp/x/db.sql.zst.partial"));
        assert_eq!(checksum_path(file), Path::new("/tmp/x/db.sql.zst.sha256"));
        assert_eq!(
            checksum_line(&"a".repeat(64), file),
            format!("{}  db.sql.zst\n", "a".repeat(64))
        );
    }

    #[test]
    fn snapshot_names_are_valid() {
        let stamp = "20261125T130405Z";
        assert_eq!(
            snapshot_name("data-postgres-0", stamp),
            "data-postgres-0-20261125t130405z"
        );
        let long = snapshot_name(&"x".repeat(80), stamp);
        assert!(long.len() <= 63 && long.ends_with("-20261125t130405z"));
        assert_eq!(
            snapshot_name("Data.PG_0", stamp),
            "data-pg-0-20261125t130405z"
        );
    }

    #[test]
    fn checksum_files_parse() {
        let line = format!("{}  file.sql.gz\n", "AB".repeat(32));
        assert_eq!(parse_checksum(&line), Some("ab".repeat(32)));
        assert_eq!(parse_checksum("nope  file"), None);
        assert_eq!(parse_checksum(""), None);
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut tail = Tail::default();
        tail.push(&vec![b'a'; 5000]);
        tail.push(b"end");
        assert_eq!(tail.bytes().len(), HEAD_TAIL_BYTES);
        assert!(tail.bytes().ends_with(b"aend"));
        let mut head = Head::default();
        head.push(b"abc");
        head.push(&vec![b'x'; 5000]);
        assert_eq!(head.bytes().len(), HEAD_TAIL_BYTES);
        assert!(head.bytes().starts_with(b"abcx"));
    }
}
