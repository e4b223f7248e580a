//! `restore`: checks a backup file before anything is sent (checksum, trailer, engine),
//! refuses to write over user data without `--yes`, then streams the decompressed SQL
//! into psql / mysql over exec stdin and reports the remote exit status.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::archive;
use super::dump::read_capped;
use super::format::{Compression, DumpKind};
use super::location::Location;
use super::pg_filter::{self, PgRestoreFilter};
use super::pipeline;
use super::verify::{self, VerifyReport};
use crate::client::Kube;
use crate::engine::{Commands, Engine};
use crate::error::{Error, Result};
use crate::exec::{self, ExecStatus};
use crate::output::Progress;
use crate::target;
use crate::wait::{self, within};

/// Bytes per message from the reading thread, and messages in flight: enough to keep the
/// exec stream fed (the pod's psql is slower than the file), little enough that the SQL
/// in flight stays a small part of the peak RSS (issue #18, docs/dbbackup.md).
const CHUNK: usize = 64 << 10;
const CHANNEL_DEPTH: usize = 4;

/// What to restore where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Pod or StatefulSet, as kubectl writes it (`mysql-0`, `sts/mysql`).
    pub target: String,
    /// The database container (`-c`), when the pod has several; default: found by engine.
    pub container: Option<String>,
    /// The backup file or object.
    pub file: Location,
    /// Restore even though the target already holds user data.
    pub yes: bool,
    /// Time limit for the whole restore.
    pub timeout: Duration,
    /// Draw live progress on stderr.
    pub progress: bool,
    /// Compress the stream on the client and decompress it in the container with its
    /// image's zstd (else the stream carries the SQL).
    pub compress_in_pod: bool,
}

/// Whether restores compress the stream for the container's zstd unless told otherwise
/// (docs/dbbackup.md, "Restore"): a quarter of the bytes over a link.
pub const COMPRESS_IN_POD_DEFAULT: bool = true;

/// What a restore did (the `-o json` schema).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RestoreReport {
    pub file: String,
    pub namespace: String,
    pub pod: String,
    pub engine: Engine,
    /// Tool that wrote the dump.
    // Not `kind`: that is the document's kind (`-o json`, output::Report).
    #[serde(rename = "dump_kind")]
    pub kind: DumpKind,
    /// Databases that held tables before the restore (replaced where the file has them).
    pub databases_with_data: Vec<String>,
    /// Bytes sent to the pod: the SQL, compressed when `stream_compression` says so.
    pub bytes_sent: u64,
    /// What the exec stream carried: `zstd` (the client compressed the SQL, the
    /// container's zstd decompressed it) or `none`.
    pub stream_compression: Compression,
    pub duration_seconds: f64,
    /// Remote exit status of psql / mysql.
    pub remote_status: ExecStatus,
    /// A parallel dump's archive: its parts, restored this many at once after the globals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<usize>,
}

/// Verifies the file and returns its dump kind, or the reason it must not be restored.
pub fn check_file(file: &std::path::Path) -> Result<(VerifyReport, DumpKind)> {
    if !file.is_file() {
        return Err(Error::Usage(format!("{} is not a file", file.display())));
    }
    let report = verify::verify(file)?;
    match report.kind {
        Some(kind) if report.ok => Ok((report, kind)),
        _ => Err(Error::Failed(format!(
            "refusing to restore {}: {}",
            file.display(),
            report.problems.join("; ")
        ))),
    }
}

/// [`check_file`] for any location (an object is streamed once, with `KEY.sha256`).
pub async fn check_location(file: &Location) -> Result<(VerifyReport, DumpKind)> {
    let Location::S3(url) = file else {
        let path = file.as_path().map(std::path::Path::to_path_buf);
        return tokio::task::spawn_blocking(move || check_file(&path.unwrap_or_default()))
            .await
            .map_err(|err| Error::Failed(format!("failed to check the backup file: {err}")))?;
    };
    if url.is_prefix() {
        return Err(Error::Usage(format!(
            "{url} is a prefix: name the object to restore (kubectl dbbackup list {url})"
        )));
    }
    let report = verify::verify_at(file).await?;
    if !report.parts.is_empty() {
        return Err(Error::Usage(format!(
            "{file} is a parallel dump's archive: restore it from a local file (download it with its .sha256 first)"
        )));
    }
    match report.kind {
        Some(kind) if report.ok => Ok((report, kind)),
        _ => Err(Error::Failed(format!(
            "refusing to restore {file}: {}",
            report.problems.join("; ")
        ))),
    }
}

/// Whether a MySQL/MariaDB dump carries the `mysql` system schema (users and grants), by
/// its `USE \`mysql\`;` line; one bounded pass over the file.
pub fn carries_mysql_schema(file: &Location) -> Result<bool> {
    const NEEDLE: &[u8] = b"\nUSE `mysql`;\n";
    let mut sql = verify::open_sql(file)?;
    let mut window = Vec::with_capacity(CHUNK + NEEDLE.len());
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match sql.read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(Error::Io {
                    action: "read",
                    path: file.to_string(),
                    source,
                });
            }
        };
        window.extend_from_slice(&buf[..n]);
        if window.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
            return Ok(true);
        }
        let keep = window.len().saturating_sub(NEEDLE.len() - 1);
        window.drain(..keep);
    }
}

/// Restores a file already checked with [`check_file`].
pub async fn restore(
    kube: &Kube,
    options: &RestoreOptions,
    kind: DumpKind,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let archive = match options.file.as_path() {
        Some(path) if archive::is_archive_file(path)? => {
            let path = path.to_path_buf();
            let located = tokio::task::spawn_blocking(move || archive::locate(&path))
                .await
                .map_err(|err| Error::Failed(format!("failed to read the archive: {err}")))??;
            Some(located)
        }
        _ => None,
    };
    let target = target::resolve(kube, &options.target, options.container.as_deref()).await?;
    let pod = target.pod_name.clone();
    if target.pod.is_none() {
        return Err(Error::NotFound(format!(
            "pod {}/{pod} does not exist",
            target.namespace
        )));
    }
    if !kind.fits(target.engine) {
        return Err(Error::Refused(format!(
            "refusing to restore {}: it is a {} dump and pod {}/{pod} runs {}",
            options.file,
            kind.engine_name(),
            target.namespace,
            target.engine
        )));
    }
    let has_mysql_schema = match kind {
        // An archive's globals part is MySQL's accounts (the `mysql` schema).
        DumpKind::Mysql if archive.is_some() => archive
            .as_ref()
            .is_some_and(|(index, _)| index.parts.iter().any(|p| p.database.is_none())),
        DumpKind::Mysql => {
            let file = options.file.clone();
            tokio::task::spawn_blocking(move || carries_mysql_schema(&file))
                .await
                .map_err(|err| Error::Failed(format!("failed to read the backup file: {err}")))??
        }
        _ => false,
    };
    let pods: Api<Pod> = kube.exec_pods();
    let commands = target.engine.commands();
    // An exec stream to a deleted pod can stay open with nobody reading its stdin: the
    // restore ends when its pod goes. The watch starts before anything is sent, beside the
    // query (each is a round trip or two to the API server).
    let uid = target.pod.as_ref().and_then(|p| p.metadata.uid.as_deref());
    let budget = options.timeout.min(crate::client::DEFAULT_REQUEST_TIMEOUT);
    let query = commands.user_data();
    let (listed, watch) = tokio::join!(
        exec::run(
            &pods,
            &pod,
            Some(&target.container),
            &query,
            None,
            Duration::from_secs(60),
        ),
        wait::watch_pod(kube, &pod, uid.unwrap_or_default(), budget)
    );
    let listed = listed?.into_stdout(&pod, "the user-data query")?;
    let with_data = commands.with_data(&listed, has_mysql_schema);
    if !with_data.is_empty() && !options.yes {
        return Err(Error::Refused(format!(
            "refusing to restore into pod {}/{pod}: it already holds data in {}; pass --yes to replace the databases the file contains",
            target.namespace,
            with_data.join(", ")
        )));
    }

    let wire = options.compress_in_pod.then_some(Compression::Zstd);
    let what = format!("restoring {}/{pod}", target.namespace);
    let progress = Progress::bytes(options.progress, &what);
    let parallel = archive.as_ref().map(|(index, _)| index.parallel.max(1));
    let body = async {
        match (&archive, options.file.as_path()) {
            (Some((index, placed)), Some(path)) => {
                let parts = Parts {
                    path,
                    placed,
                    parallel: index.parallel.max(1),
                };
                let to = (pod.as_str(), target.container.as_str());
                restore_parts(&pods, to, commands, parts, wire, &progress).await
            }
            _ => {
                let file = options.file.clone();
                let source = Source {
                    shown: file.to_string(),
                    open: Arc::new(move || verify::open_sql(&file)),
                };
                let command = commands.restore();
                let to = (pod.as_str(), target.container.as_str());
                let streamed = stream(&pods, to, &command, source, (kind, wire), &progress).await?;
                Ok(Outcome {
                    streamed,
                    part: None,
                })
            }
        }
    };
    let watch = watch?;
    let streamed = tokio::select! {
        result = within(options.timeout, what.clone(), body) => result,
        signal = crate::cli::interrupted() => Err(Error::Interrupted(format!("{what}: interrupted by {signal}; the databases may be half restored"))),
        gone = watch.gone() => Err(gone.err().unwrap_or_else(|| Error::Failed(format!(
            "{what}: pod {pod} was deleted during the restore; the databases may be half restored"
        )))),
    };
    progress.finish();
    let Outcome {
        streamed:
            Streamed {
                status,
                sent,
                stderr,
                compression,
            },
        part,
    } = streamed?;
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        let detail = if stderr.trim().is_empty() {
            String::new()
        } else {
            format!("; stderr: {}", exec::last_lines(stderr.trim(), 5))
        };
        let credentials = match exec::run(
            &pods,
            &pod,
            Some(&target.container),
            &commands.credentials(),
            None,
            Duration::from_secs(60),
        )
        .await
        .and_then(|out| out.into_stdout(&pod, "setting the credentials again"))
        {
            Ok(_) => "the target's own credentials were set again".to_string(),
            Err(err) => format!("the target's own credentials could not be set again ({err})"),
        };
        let part = part.map(|p| format!(" (part {p})")).unwrap_or_default();
        return Err(Error::Failed(format!(
            "failed to restore {}{part} into pod {}/{pod}: remote {status}{detail} ({sent} bytes sent; the databases may be half restored; {credentials})",
            options.file, target.namespace
        )));
    }
    Ok(RestoreReport {
        file: options.file.to_string(),
        namespace: target.namespace,
        pod,
        engine: target.engine,
        kind,
        databases_with_data: with_data,
        bytes_sent: sent,
        stream_compression: compression,
        duration_seconds: started.elapsed().as_secs_f64(),
        remote_status: status,
        parallel,
    })
}

/// How a restore's stream(s) ended; `part` names the archive's part that failed.
struct Outcome {
    streamed: Streamed,
    part: Option<String>,
}

/// How one stream ended.
struct Streamed {
    status: ExecStatus,
    /// Bytes sent on the stream.
    sent: u64,
    stderr: Vec<u8>,
    /// What the stream carried.
    compression: Compression,
}

/// A parallel dump's archive, located.
struct Parts<'a> {
    path: &'a Path,
    placed: &'a [archive::Placed],
    parallel: usize,
}

/// Restores an archive's parts: the globals first, alone (the roles and accounts the
/// databases refer to, and the target's own credentials set again after them), then the
/// databases, `parallel` at once. The first part that fails stops the others.
async fn restore_parts(
    pods: &Api<Pod>,
    to: (&str, &str),
    commands: &dyn Commands,
    parts: Parts<'_>,
    wire: Option<Compression>,
    progress: &Progress,
) -> Result<Outcome> {
    let source = |placed: &archive::Placed| {
        let (path, placed) = (parts.path.to_path_buf(), placed.clone());
        Source {
            shown: format!("{} ({})", path.display(), placed.part.file),
            open: Arc::new(move || {
                archive::open_part(&path, &placed)
                    .and_then(verify::sql_reader)
                    .map_err(|source| Error::Io {
                        action: "read",
                        path: format!("{} ({})", path.display(), placed.part.file),
                        source,
                    })
            }),
        }
    };
    let one = |placed: &archive::Placed| {
        let command = match &placed.part.database {
            None => commands.restore(),
            Some(database) => commands.restore_part(database),
        };
        let source = source(placed);
        let (file, kind) = (placed.part.file.clone(), placed.part.kind);
        async move {
            let streamed = stream(pods, to, &command, source, (kind, wire), progress).await?;
            Ok::<_, Error>(Outcome {
                streamed,
                part: Some(file),
            })
        }
    };
    let mut sent = 0;
    // Every part streams to the same container: the last one's compression stands for all.
    let mut compression = Compression::None;
    let (globals, databases): (Vec<_>, Vec<_>) =
        parts.placed.iter().partition(|p| p.part.database.is_none());
    for placed in globals {
        let mut outcome = one(placed).await?;
        sent += outcome.streamed.sent;
        compression = outcome.streamed.compression;
        if !outcome.streamed.status.success() {
            outcome.streamed.sent = sent;
            return Ok(outcome);
        }
    }
    let mut running =
        futures::stream::iter(databases.into_iter().map(one)).buffer_unordered(parts.parallel);
    while let Some(outcome) = running.next().await {
        let mut outcome = outcome?;
        sent += outcome.streamed.sent;
        compression = outcome.streamed.compression;
        if !outcome.streamed.status.success() {
            outcome.streamed.sent = sent;
            return Ok(outcome);
        }
    }
    Ok(Outcome {
        streamed: Streamed {
            status: ExecStatus::Success,
            sent,
            stderr: Vec::new(),
            compression,
        },
        part: None,
    })
}

/// Where a stream's SQL comes from: opened on the reading thread (again when the first
/// stream found no decompressor in the container).
struct Source {
    /// For messages.
    shown: String,
    open: Arc<dyn Fn() -> Result<Box<dyn Read + Send>> + Send + Sync>,
}

/// Streams the source into `command` in the pod: compressed with `wire` when given and the
/// container has its decompressor, else (a second stream: the first stopped before the
/// restore ran) as SQL.
async fn stream(
    pods: &Api<Pod>,
    to: (&str, &str),
    command: &[String],
    source: Source,
    (kind, wire): (DumpKind, Option<Compression>),
    progress: &Progress,
) -> Result<Streamed> {
    if let Some(wire) = wire.filter(|w| *w == Compression::Zstd) {
        let wrapped = crate::engine::commands::decompressed_in_pod(command.to_vec(), "zstd");
        let streamed = stream_once(pods, to, &wrapped, &source, (kind, wire), progress).await?;
        if !crate::engine::commands::no_compressor(&streamed.status, &streamed.stderr) {
            return Ok(streamed);
        }
        // Said before the restore ran: nothing was applied.
        tracing::info!("zstd is not in the container's image; sending the SQL as it is");
    }
    stream_once(
        pods,
        to,
        command,
        &source,
        (kind, Compression::None),
        progress,
    )
    .await
}

async fn stream_once(
    pods: &Api<Pod>,
    (pod, container): (&str, &str),
    command: &[String],
    source: &Source,
    (kind, wire): (DumpKind, Compression),
    progress: &Progress,
) -> Result<Streamed> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
    let (shown, open) = (source.shown.clone(), source.open.clone());
    let reader = tokio::task::spawn_blocking(move || read_sql(&shown, &*open, kind, wire, tx));
    let mut process = exec::start(pods, pod, Some(container), command, true).await?;
    let status = process.take_status();
    let stdin = process.stdin();
    let stdout = process.stdout();
    let stderr = process.stderr();
    let sent = std::sync::atomic::AtomicU64::new(0);
    let feed = async {
        let Some(mut stdin) = stdin else { return };
        while let Some(chunk) = rx.recv().await {
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
            sent.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
            progress.inc(chunk.len() as u64);
        }
        let _ = stdin.shutdown().await;
    };
    // A remote that stopped at an error exits without reading the rest of the file: its
    // exit status ends the feeding (exec::session reads it whatever stdin still holds).
    let (status, _, stderr) = tokio::join!(
        exec::feed_until_status(feed, status),
        read_capped(stdout, 4096),
        read_capped(stderr, 64 << 10)
    );
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    // Once the stream is over nobody reads the file any more: let the reader finish.
    drop(rx);
    let _ = tokio::time::timeout(Duration::from_secs(10), process.join()).await;
    reader
        .await
        .map_err(|err| Error::Failed(format!("failed to read the backup file: {err}")))??;
    Ok(Streamed {
        status: ExecStatus::from_status(status),
        sent,
        stderr,
        compression: wire,
    })
}

/// Reads the SQL and streams it to the channel (see [`pump_sql`]), compressed with `wire`
/// (zstd or none).
fn read_sql(
    shown: &str,
    open: &(dyn Fn() -> Result<Box<dyn Read + Send>> + Send + Sync),
    kind: DumpKind,
    wire: Compression,
    tx: mpsc::Sender<Vec<u8>>,
) -> Result<()> {
    let failed = |source: std::io::Error| Error::Io {
        action: "read",
        path: shown.to_string(),
        source,
    };
    let sql = open()?;
    if wire != Compression::Zstd {
        return pump_sql(sql, kind, |chunk| tx.blocking_send(chunk).is_ok()).map_err(failed);
    }
    let to_pod = ToChannel {
        tx,
        buffer: Vec::with_capacity(CHUNK),
    };
    let mut encoder = zstd::stream::write::Encoder::new(to_pod, pipeline::ZSTD_LEVEL)
        .and_then(|mut e| {
            // A 128 KiB window: the encoder's memory stays small (peak RSS, issue #18).
            e.set_parameter(zstd::zstd_safe::CParameter::WindowLog(17))?;
            Ok(e)
        })
        .map_err(failed)?;
    let mut open_stream = true;
    pump_sql(sql, kind, |chunk| {
        open_stream = encoder.write_all(&chunk).is_ok();
        open_stream
    })
    .map_err(failed)?;
    // A closed stream (the remote stopped) is the stream's failure to report, not the file's.
    if open_stream {
        let _ = encoder.finish().and_then(|mut to_pod| to_pod.flush());
    }
    Ok(())
}

/// Sends what it is given to the stream in chunks of about [`CHUNK`]; fails once the
/// stream is closed.
struct ToChannel {
    tx: mpsc::Sender<Vec<u8>>,
    buffer: Vec<u8>,
}

impl Write for ToChannel {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHUNK {
            self.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(full).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the stream was closed")
        })
    }
}

/// Reads `sql` in pieces of at most [`CHUNK`] bytes and hands `send` chunks of about that
/// size (`send` returns false to stop). Memory stays flat whatever the input: a 500 MB
/// bytea row, one line of a pg_dump COPY, passes in pieces, because PostgreSQL dumps go
/// through [`PgRestoreFilter`], which holds back at most [`pg_filter::HOLD`] bytes.
pub fn pump_sql<R: Read>(
    mut sql: R,
    kind: DumpKind,
    mut send: impl FnMut(Vec<u8>) -> bool,
) -> std::io::Result<()> {
    let mut filter = matches!(kind, DumpKind::PostgresCluster | DumpKind::PostgresDatabase)
        .then(PgRestoreFilter::default);
    let mut buf = vec![0u8; CHUNK];
    let mut out = Vec::with_capacity(CHUNK + pg_filter::HOLD);
    loop {
        let n = match sql.read(&mut buf) {
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        match &mut filter {
            Some(filter) if n > 0 => filter.push(&buf[..n], &mut out),
            Some(filter) => filter.finish(&mut out),
            None => out.extend_from_slice(&buf[..n]),
        }
        if ((n == 0 && !out.is_empty()) || out.len() >= CHUNK)
            && !send(std::mem::replace(
                &mut out,
                Vec::with_capacity(CHUNK + pg_filter::HOLD),
            ))
        {
            return Ok(());
        }
        if n == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_schema_is_found_across_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut sql = b"-- MySQL dump\n".to_vec();
        sql.resize(CHUNK - 5, b'x');
        sql.extend_from_slice(b"\nUSE `mysql`;\n");
        let with = dir.path().join("with.sql");
        std::fs::write(&with, &sql).unwrap();
        assert!(carries_mysql_schema(&with.clone().into()).unwrap());
        let without = dir.path().join("without.sql");
        std::fs::write(
            &without,
            b"-- MySQL dump\nUSE `appdb`;\nINSERT INTO t VALUES ('\\nUSE `mysql`;\\n');\n",
        )
        .unwrap();
        assert!(!carries_mysql_schema(&without.clone().into()).unwrap());
    }

    /// `len` bytes of one pg_dump COPY line, made on the fly (never held whole).
    struct OneLongRow {
        head: std::io::Cursor<Vec<u8>>,
        left: u64,
        tail: std::io::Cursor<Vec<u8>>,
    }

    impl Read for OneLongRow {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.head.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.left > 0 {
                let n = buf.len().min(self.left as usize);
                buf[..n].fill(b'a');
                self.left -= n as u64;
                return Ok(n);
            }
            self.tail.read(buf)
        }
    }

    #[test]
    fn a_huge_single_line_streams_in_bounded_chunks() {
        let len: u64 = 300 << 20;
        let head =
            b"--\n-- PostgreSQL database dump\n--\n\nCOPY public.b (id, b) FROM stdin;\n1\t\\\\x"
                .to_vec();
        let tail = b"\n\\.\n\nCREATE DATABASE later;\n".to_vec();
        let total = head.len() as u64 + len + tail.len() as u64;
        let input = OneLongRow {
            head: std::io::Cursor::new(head),
            left: len,
            tail: std::io::Cursor::new(tail),
        };
        let mut largest = 0;
        let mut sent = 0u64;
        let mut last = Vec::new();
        pump_sql(input, DumpKind::PostgresDatabase, |chunk| {
            largest = largest.max(chunk.len()).max(chunk.capacity());
            sent += chunk.len() as u64;
            last = chunk;
            true
        })
        .unwrap();
        let inserted = "DROP DATABASE IF EXISTS later WITH (FORCE);\n".len() as u64;
        assert_eq!(sent, total + inserted);
        assert!(
            largest <= 2 * CHUNK + 2 * pg_filter::HOLD,
            "a chunk of {largest} bytes"
        );
        assert!(String::from_utf8_lossy(&last).ends_with(
            "\\.\n\nDROP DATABASE IF EXISTS later WITH (FORCE);\nCREATE DATABASE later;\n"
        ));
    }
}
