//! `dump`: pg_dumpall / pg_dump / mysqldump over exec, streamed to `FILE.partial` while a
//! blocking task compresses and hashes it; the file gets its final name only after the
//! remote exit status is 0 and the dump's own completion trailer is there.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::format::{self, Compression, DumpKind, Tail};
use super::shell_quote;
use crate::client::Kube;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::exec::{self, ExecStatus};
use crate::output::Progress;
use crate::target;

/// Bytes per message between the exec stream and the writer.
const CHUNK: usize = 256 << 10;
/// Messages in flight: bounds memory while letting compression overlap the stream.
const CHANNEL_DEPTH: usize = 8;
/// How much of the remote stderr is kept for the error message.
const STDERR_KEEP: usize = 64 << 10;

/// Where the dump goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `<name>-<UTC timestamp>.sql.gz` in the current directory.
    Default,
    /// A file (`-f FILE`).
    File(PathBuf),
    /// Standard output (`-f -`): no checksum file, no rename.
    Stdout,
}

/// What to dump and where.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Pod or StatefulSet name.
    pub target: String,
    /// Where the dump goes.
    pub destination: Destination,
    /// Compression of the file.
    pub compression: Compression,
    /// One database instead of all of them.
    pub database: Option<String>,
    /// Also dump role passwords (PostgreSQL) / the `mysql` schema with the accounts.
    pub with_credentials: bool,
    /// Time limit for the whole dump.
    pub timeout: Duration,
    /// Draw live progress on stderr.
    pub progress: bool,
}

/// What a dump did (the `-o json` schema).
#[derive(Debug, Clone, Serialize)]
pub struct DumpReport {
    /// The backup file, or `-` for standard output.
    pub file: String,
    /// The checksum file (none for standard output).
    pub checksum_file: Option<String>,
    pub namespace: String,
    pub pod: String,
    pub engine: Engine,
    /// The one database dumped, when `--database` was given.
    pub database: Option<String>,
    /// Tool that wrote the dump.
    pub kind: DumpKind,
    pub compression: Compression,
    /// SQL bytes received from the pod.
    pub bytes_raw: u64,
    /// Bytes written (after compression).
    pub bytes_written: u64,
    /// SHA-256 of the written file.
    pub sha256: String,
    pub duration_seconds: f64,
    /// Remote exit status, as reported by the exec status channel.
    pub remote_status: ExecStatus,
}

/// The script that writes the dump to stdout. Passwords come from the container's env.
///
/// Unless `with_credentials`, a dump carries no credentials, so that restoring it into
/// another deployment leaves that deployment's own Secret working: pg_dumpall runs with
/// `--no-role-passwords` (roles and their rights are kept, their passwords are not), and
/// MySQL/MariaDB dump the user databases (`--databases`, every schema but `mysql`, `sys`,
/// `information_schema` and `performance_schema`) instead of `--all-databases`, whose
/// `mysql` schema holds the accounts and their password hashes.
pub fn dump_script(engine: Engine, database: Option<&str>, with_credentials: bool) -> String {
    match (engine, database) {
        (Engine::Postgres, None) => {
            let passwords = if with_credentials {
                ""
            } else {
                " --no-role-passwords"
            };
            format!(
                r#"PGPASSWORD="${{POSTGRES_PASSWORD:-}}" exec pg_dumpall -w -U "${{POSTGRES_USER:-postgres}}"{passwords}"#
            )
        }
        // --create: the file makes its own database, so restoring needs no name.
        (Engine::Postgres, Some(db)) => format!(
            r#"PGPASSWORD="${{POSTGRES_PASSWORD:-}}" exec pg_dump -w -U "${{POSTGRES_USER:-postgres}}" --create -d {}"#,
            shell_quote(db)
        ),
        (Engine::Mysql | Engine::Mariadb, database) => {
            // MariaDB 11 drops the mysql* names; older images lack the mariadb* ones.
            let setup = r#"MYSQL_PWD="${MYSQL_ROOT_PASSWORD:-}"; export MYSQL_PWD; if command -v mariadb-dump >/dev/null 2>&1; then d=mariadb-dump c=mariadb; else d=mysqldump c=mysql; fi; set -- -uroot --single-transaction --routines --triggers --events --hex-blob --default-character-set=utf8mb4"#;
            match database {
                // --databases: CREATE DATABASE and USE are written, as for --all-databases.
                Some(db) => format!(r#"{setup}; exec "$d" "$@" --databases {}"#, shell_quote(db)),
                None if with_credentials => format!(r#"{setup}; exec "$d" "$@" --all-databases"#),
                // One name per line (-r: unescaped); no user database at all still
                // makes a complete, empty dump (header and trailer only).
                None => format!(
                    r#"{setup}
dbs=$("$c" -uroot -N -B -r -e "SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN ('mysql','sys','information_schema','performance_schema') ORDER BY 1") || exit 1
if [ -z "$dbs" ]; then exec "$d" "$@" --no-create-info --no-data --skip-routines --skip-triggers --skip-events mysql; fi
IFS='
'
set -f
exec "$d" "$@" --databases $dbs"#
                ),
            }
        }
    }
}

/// Bad `--database` values, caught before any API call.
pub fn validate_database(name: &str) -> Result<()> {
    if name.is_empty() || name.starts_with('-') || name.contains(['\0', '\n']) {
        return Err(Error::Usage(format!("invalid --database {name:?}")));
    }
    Ok(())
}

/// Runs the dump.
pub async fn dump(kube: &Kube, options: &DumpOptions) -> Result<DumpReport> {
    let started = Instant::now();
    let target = target::resolve(kube, &options.target).await?;
    if target.pod.is_none() {
        return Err(Error::NotFound(format!(
            "pod {}/{} does not exist",
            target.namespace, target.pod_name
        )));
    }
    let final_path = match &options.destination {
        Destination::Stdout => None,
        Destination::File(path) => Some(path.clone()),
        Destination::Default => {
            let name = target
                .statefulset
                .as_ref()
                .map(kube::ResourceExt::name_any)
                .unwrap_or_else(|| target.pod_name.clone());
            let name = match &options.database {
                Some(db) => format!("{name}-{db}"),
                None => name,
            };
            let stamp = format::utc_stamp(k8s_openapi::jiff::Timestamp::now());
            Some(PathBuf::from(format::default_file_name(
                &name,
                &stamp,
                options.compression,
            )))
        }
    };
    if let Some(path) = &final_path {
        refuse_existing(path)?;
    }
    let mut partial = final_path.as_deref().map(PartialFile::create).transpose()?;
    let sink: Box<dyn Write + Send> = match &partial {
        Some(p) => Box::new(p.file.try_clone().map_err(|source| Error::Io {
            action: "open",
            path: p.path.display().to_string(),
            source,
        })?),
        None => Box::new(io::stdout()),
    };

    let kind = DumpKind::for_engine(target.engine, options.database.is_some());
    let script = dump_script(
        target.engine,
        options.database.as_deref(),
        options.with_credentials,
    );
    let command = vec!["sh".to_string(), "-c".to_string(), script];
    let pods: Api<Pod> = kube.api();
    let what = format!("dumping {}/{}", target.namespace, target.pod_name);
    let progress = Progress::bytes(options.progress, &what);

    let streamed = tokio::select! {
        result = tokio::time::timeout(
            options.timeout,
            stream(&pods, &target.pod_name, &target.container, &command, sink, options.compression, &progress),
        ) => result.map_err(|_| Error::Timeout { what: what.clone(), after: options.timeout })?,
        _ = tokio::signal::ctrl_c() => Err(Error::Failed(format!("{what}: interrupted"))),
    };
    progress.finish();
    let streamed = streamed?;

    let file_label = final_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "-".into());
    let complete = kind.is_complete(streamed.tail.bytes());
    if !streamed.status.success() || !complete {
        let mut reason = if streamed.status.success() {
            format!(
                "the stream ended without the trailer {:?} (cut off)",
                kind.trailer()
            )
        } else {
            format!("remote {}", streamed.status)
        };
        let stderr = String::from_utf8_lossy(&streamed.stderr);
        if !stderr.trim().is_empty() {
            reason.push_str(&format!("; stderr: {}", exec::last_lines(stderr.trim(), 5)));
        }
        let outcome = match final_path {
            Some(_) => "no file was written",
            None => "the bytes already written to stdout are incomplete",
        };
        return Err(Error::Failed(format!(
            "failed to dump pod {}/{}: {reason} ({} bytes received; {outcome})",
            target.namespace, target.pod_name, streamed.raw
        )));
    }

    let checksum_file = match (&mut partial, &final_path) {
        (Some(partial), Some(path)) => {
            let checksum = format::checksum_path(path);
            std::fs::write(&checksum, format::checksum_line(&streamed.sha256, path)).map_err(
                |source| Error::Io {
                    action: "write",
                    path: checksum.display().to_string(),
                    source,
                },
            )?;
            partial.commit(path)?;
            Some(checksum.display().to_string())
        }
        _ => None,
    };
    Ok(DumpReport {
        file: file_label,
        checksum_file,
        namespace: target.namespace,
        pod: target.pod_name,
        engine: target.engine,
        database: options.database.clone(),
        kind,
        compression: options.compression,
        bytes_raw: streamed.raw,
        bytes_written: streamed.written,
        sha256: streamed.sha256,
        duration_seconds: started.elapsed().as_secs_f64(),
        remote_status: streamed.status,
    })
}

/// Refuses to replace an existing backup (a new dump never overwrites an old one).
pub fn refuse_existing(path: &Path) -> Result<()> {
    if path.exists() {
        return Err(Error::Usage(format!(
            "{} already exists; choose another -f FILE",
            path.display()
        )));
    }
    Ok(())
}

struct Streamed {
    status: ExecStatus,
    stderr: Vec<u8>,
    raw: u64,
    written: u64,
    sha256: String,
    tail: Tail,
}

async fn stream(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    command: &[String],
    sink: Box<dyn Write + Send>,
    compression: Compression,
    progress: &Progress,
) -> Result<Streamed> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
    let writer = tokio::task::spawn_blocking(move || write_all(rx, sink, compression));

    let mut process = exec::start(pods, pod, Some(container), command, false).await?;
    let status = process.take_status();
    let stdout = process.stdout();
    let stderr = process.stderr();
    let pump = async move {
        let Some(mut stdout) = stdout else {
            return Ok(true);
        };
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            let mut eof = false;
            while chunk.len() < CHUNK {
                if stdout.read_buf(&mut chunk).await? == 0 {
                    eof = true;
                    break;
                }
            }
            progress.inc(chunk.len() as u64);
            // A closed channel means the writer failed; its error is reported below.
            if !chunk.is_empty() && tx.send(chunk).await.is_err() {
                return Ok(false);
            }
            if eof {
                return Ok::<bool, io::Error>(true);
            }
        }
    };
    let (pumped, stderr) = tokio::join!(pump, read_capped(stderr, STDERR_KEEP));
    if !matches!(pumped, Ok(true)) {
        process.abort();
    }
    let status = match status {
        // The status frame follows the end of stdout; a dropped connection never sends it.
        Some(fut) => tokio::time::timeout(Duration::from_secs(30), fut)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), process.join()).await;
    let written = writer
        .await
        .map_err(|err| Error::Failed(format!("failed to write the dump: {err}")))?
        .map_err(|source| Error::Io {
            action: "write",
            path: "the dump file".into(),
            source,
        })?;
    let mut status = ExecStatus::from_status(status);
    if let Err(err) = pumped {
        status = ExecStatus::Failure {
            code: None,
            message: format!("stream broke: {err}"),
        };
    }
    Ok(Streamed {
        status,
        stderr,
        raw: written.raw,
        written: written.written,
        sha256: written.sha256,
        tail: written.tail,
    })
}

/// Collects a stream, keeping at most its last `keep` bytes.
pub(super) async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>, keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut reader) = reader else {
        return kept;
    };
    let mut buf = vec![0u8; 16 << 10];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > keep {
            kept.drain(..kept.len() - keep);
        }
    }
    kept
}

struct Written {
    raw: u64,
    written: u64,
    sha256: String,
    tail: Tail,
}

/// The writer task: compresses and hashes every chunk, on its own thread.
fn write_all(
    mut rx: mpsc::Receiver<Vec<u8>>,
    sink: Box<dyn Write + Send>,
    compression: Compression,
) -> io::Result<Written> {
    let mut out = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, sink),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut tail = Tail::default();
    let mut raw = 0u64;
    let mut feed = |w: &mut dyn Write| -> io::Result<()> {
        while let Some(chunk) = rx.blocking_recv() {
            w.write_all(&chunk)?;
            tail.push(&chunk);
            raw += chunk.len() as u64;
        }
        Ok(())
    };
    match compression {
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
            feed(&mut encoder)?;
            encoder.finish()?;
        }
        Compression::Zstd => {
            let mut encoder = zstd::stream::write::Encoder::new(&mut out, 3)?;
            feed(&mut encoder)?;
            encoder.finish()?;
        }
        Compression::None => feed(&mut out)?,
    }
    out.inner.flush()?;
    Ok(Written {
        raw,
        written: out.bytes,
        sha256: format::hex(&out.hasher.finalize()),
        tail,
    })
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `FILE.partial`, deleted when dropped unless committed under its final name.
struct PartialFile {
    path: PathBuf,
    file: File,
    committed: bool,
}

impl PartialFile {
    fn create(final_path: &Path) -> Result<PartialFile> {
        let path = format::partial_path(final_path);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        // Dumps hold password hashes: readable by the owner only.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(|source| Error::Io {
            action: "create",
            path: path.display().to_string(),
            source,
        })?;
        Ok(PartialFile {
            path,
            file,
            committed: false,
        })
    }

    fn commit(&mut self, final_path: &Path) -> Result<()> {
        self.file.sync_all().map_err(|source| Error::Io {
            action: "sync",
            path: self.path.display().to_string(),
            source,
        })?;
        std::fs::rename(&self.path, final_path).map_err(|source| Error::Io {
            action: "rename",
            path: self.path.display().to_string(),
            source,
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_carry_no_secret_and_quote_names() {
        let all = dump_script(Engine::Postgres, None, false);
        assert!(all.contains("pg_dumpall") && all.contains("\"${POSTGRES_PASSWORD:-}\""));
        assert!(all.ends_with(" --no-role-passwords"), "{all}");
        assert!(!dump_script(Engine::Postgres, None, true).contains("--no-role-passwords"));
        let one = dump_script(Engine::Postgres, Some("it's"), false);
        assert!(one.ends_with(r#"--create -d 'it'\''s'"#), "{one}");
        let maria = dump_script(Engine::Mariadb, None, true);
        for flag in [
            "--all-databases",
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
        ] {
            assert!(maria.contains(flag), "{flag}");
        }
        assert!(dump_script(Engine::Mysql, Some("shop"), false).contains("--databases 'shop'"));
        // Without credentials: the user databases only, never the mysql schema.
        let users = dump_script(Engine::Mariadb, None, false);
        assert!(!users.contains("--all-databases"), "{users}");
        assert!(users.contains("NOT IN ('mysql','sys','information_schema','performance_schema')"));
        assert!(users.contains("--databases $dbs"));
    }

    #[test]
    fn database_names_that_look_like_flags_are_refused() {
        assert!(validate_database("-x").is_err());
        assert!(validate_database("").is_err());
        assert!(validate_database("appdb").is_ok());
    }

    #[test]
    fn writer_compresses_hashes_and_keeps_the_tail() {
        for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let (tx, rx) = mpsc::channel(4);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x");
            let file = File::create(&path).unwrap();
            let handle = std::thread::spawn(move || write_all(rx, Box::new(file), compression));
            tx.blocking_send(b"-- MySQL dump 10.13\nhello\n".to_vec())
                .unwrap();
            tx.blocking_send(b"-- Dump completed on 2026\n".to_vec())
                .unwrap();
            drop(tx);
            let written = handle.join().unwrap().unwrap();
            assert_eq!(written.raw, 52);
            assert!(DumpKind::Mysql.is_complete(written.tail.bytes()));
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(written.written, bytes.len() as u64);
            assert_eq!(written.sha256, format::hex(&Sha256::digest(&bytes)));
            assert_eq!(Compression::from_magic(&bytes), compression);
        }
    }
}
