//! `dump`: pg_dumpall / pg_dump / mysqldump over exec, streamed to `FILE.partial` while a
//! blocking task compresses and hashes it; the file gets its final name only after the
//! remote exit status is 0 and the dump's own completion trailer is there.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::format::{self, Compression, DumpKind, Tail};
use super::framed;
use super::location::{Location, S3Url};
use super::manifest::{self, Manifest};
use super::pipeline::{self, CHANNEL_DEPTH, CHUNK, Input};
use super::s3::{S3Store, Upload};
use crate::client::Kube;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::exec::{self, ExecStatus};
use crate::output::Progress;
use crate::target;
use crate::wait::within;

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
    /// An S3 object, or a prefix ending in `/` that gets the default file name: a
    /// multipart upload completed only when the dump is confirmed, `KEY.sha256` beside it.
    Object(S3Url),
}

/// What to dump and where.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Pod or StatefulSet, as kubectl writes it (`mysql-0`, `sts/mysql`).
    pub target: String,
    /// The database container (`-c`), when the pod has several; default: found by engine.
    pub container: Option<String>,
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
    /// Replace an existing file and checksum file (`--force`).
    pub force: bool,
    /// Compress the stream inside the container (with the image's zstd, else its gzip),
    /// whatever the file's compression; else the stream carries the SQL.
    pub compress_in_pod: bool,
    /// Dump the globals and each database over their own streams, this many at once, into
    /// one archive (`--parallel N`; see [`super::parallel`]).
    pub parallel: Option<usize>,
}

/// Whether dumps compress in the pod unless told otherwise (chosen by measurement:
/// docs/dbbackup.md, "Performance"): 3x kubectl over a 100 Mbit/s link, where the client
/// compressing is 0.96x; on a quiet loopback the pod's gzip is the slower of the two.
pub const COMPRESS_IN_POD_DEFAULT: bool = true;

/// What a dump did (the `-o json` schema).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    // Not `kind`: that is the document's kind (`-o json`, output::Report).
    #[serde(rename = "dump_kind")]
    pub kind: DumpKind,
    pub compression: Compression,
    /// Whether the container compressed the stream (else the client saw the SQL).
    pub compressed_in_pod: bool,
    /// What the exec stream carried: the container's `zstd` or `gzip`, or `none` (the
    /// client compressed). The client rewrites it when it is not the file's format.
    pub stream_compression: Compression,
    /// SQL bytes dumped.
    pub bytes_raw: u64,
    /// Bytes written (after compression).
    pub bytes_written: u64,
    /// SHA-256 of the written file.
    pub sha256: String,
    pub duration_seconds: f64,
    /// Remote exit status, as reported by the exec status channel.
    pub remote_status: ExecStatus,
    /// `FILE.manifest.json`: tables, row counts and checksums (none for standard output).
    pub manifest_file: Option<String>,
    /// Tables whose rows changed while the dump ran (`database.table`): the manifest keeps
    /// their state before and after the dump, and `drill` accepts either.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_during_dump: Vec<String>,
    /// With `--parallel`: the streams used at most at once, when the archive was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<usize>,
    /// With `--parallel`: the archive's parts, in its order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<super::archive::Part>,
    /// Why `--parallel` fell back to the serial dump, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Longest database name both engines accept (PostgreSQL's NAMEDATALEN - 1; MySQL's is 64).
const DATABASE_NAME_MAX: usize = 63;

/// Bad `--database` values, caught before any API call. Only plain names pass: pg_dump
/// and psql read a name with `=` or a `postgresql://` prefix as a connection string
/// (`host=elsewhere dbname=x` would dump another server), and a leading `-` is an option.
pub fn validate_database(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name.len() <= DATABASE_NAME_MAX
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'));
    if !plain {
        return Err(Error::Usage(format!(
            "invalid --database {name:?}: a plain database name of at most {DATABASE_NAME_MAX} \
             letters, digits, '_', '-' and '$', not starting with '-' \
             (connection strings and options are not accepted)"
        )));
    }
    Ok(())
}

/// Runs the dump (with `--parallel`, the parallel dump; see [`super::parallel`]).
pub async fn dump(kube: &Kube, options: &DumpOptions) -> Result<DumpReport> {
    super::parallel::validate(
        options.parallel,
        options.database.as_deref(),
        &options.destination,
    )?;
    match options.parallel {
        Some(parallel) if parallel > 1 => super::parallel::dump(kube, options, parallel).await,
        Some(_) => {
            let mut report = dump_serial(kube, options).await?;
            report.note = Some("--parallel 1: one stream, the serial dump".into());
            Ok(report)
        }
        None => dump_serial(kube, options).await,
    }
}

/// The dump over one stream.
pub(super) async fn dump_serial(kube: &Kube, options: &DumpOptions) -> Result<DumpReport> {
    let started = Instant::now();
    let target = target::resolve(kube, &options.target, options.container.as_deref()).await?;
    if target.pod.is_none() {
        return Err(Error::NotFound(format!(
            "pod {}/{} does not exist",
            target.namespace, target.pod_name
        )));
    }
    let default_name = || {
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
        format::default_file_name(&name, &stamp, options.compression)
    };
    let final_path = match &options.destination {
        Destination::Stdout | Destination::Object(_) => None,
        Destination::File(path) => Some(path.clone()),
        Destination::Default => Some(PathBuf::from(default_name())),
    };
    if let Some(path) = &final_path {
        refuse_existing(path, options.force)?;
    }
    let object = match &options.destination {
        Destination::Object(url) => {
            Some(ObjectDump::start(url, default_name, options.force).await?)
        }
        _ => None,
    };
    // Where the finished dump will be, for its manifest (none for stdout).
    let placed: Option<Location> = match (&final_path, &object) {
        (Some(path), _) => Some(Location::Local(path.clone())),
        (None, Some(object)) => Some(Location::S3(object.url.clone())),
        (None, None) => None,
    };
    let dumped_at = k8s_openapi::jiff::Timestamp::now().to_string();
    let step = Instant::now();
    let mut partial = final_path.as_deref().map(PartialFile::create).transpose()?;
    let open_sink = || -> Result<Box<dyn Write + Send>> {
        Ok(match (&partial, &object) {
            (Some(p), _) => Box::new(p.file.try_clone().map_err(|source| Error::Io {
                action: "open",
                path: p.path.display().to_string(),
                source,
            })?),
            (None, Some(object)) => object.upload.writer(),
            (None, None) => Box::new(io::stdout()),
        })
    };

    let kind = DumpKind::for_engine(target.engine, options.database.is_some());
    let commands = target.engine.commands();
    let (database, credentials) = (options.database.as_deref(), options.with_credentials);
    let tools = in_pod_tools(options);
    let pods: Api<Pod> = kube.exec_pods();
    let what = format!("dumping {}/{}", target.namespace, target.pod_name);
    let progress = Progress::bytes(options.progress, &what);
    // The tables are counted before and after the dump (a table that differs was written
    // meanwhile), in the dump's own exec.
    let dump = commands.dump(database, credentials);
    let (command, mark) = match &placed {
        Some(_) => {
            let (command, mark) = framed::around(commands, database, dump);
            (command, Some(mark))
        }
        None => (dump, None),
    };
    let attempts = run_dump(
        &pods,
        (&target.pod_name, &target.container),
        (command, mark.as_deref()),
        tools,
        open_sink,
        options.compression,
        &progress,
    );
    let streamed = tokio::select! {
        result = within(options.timeout, what.clone(), attempts) => result,
        signal = crate::cli::interrupted() => Err(Error::Interrupted(format!(
            "{what}: interrupted by {signal}; no file was written"
        ))),
    };
    progress.finish();
    tracing::debug!(seconds = step.elapsed().as_secs_f64(), "dump stream");
    let streamed = match streamed {
        Ok(streamed) => streamed,
        Err(err) => return Err(discard(object, err).await),
    };
    if let Some(ended) = streamed.frames.get("before").and_then(|f| f.ended) {
        tracing::debug!(
            seconds = ended.duration_since(step).as_secs_f64(),
            "manifest pass before the dump (in the dump's exec, from its start)"
        );
    }
    let pod = target.pod_name.as_str();
    let before = match &mark {
        Some(_) => framed::before(&streamed.frames, &streamed.stderr, &streamed.status, pod),
        None => Ok(None),
    };
    let before = match before {
        Ok(before) => before,
        Err(err) => return Err(discard(object, err).await),
    };

    let file_label = match (&final_path, &object) {
        (Some(path), _) => path.display().to_string(),
        (None, Some(object)) => object.url.to_string(),
        (None, None) => "-".into(),
    };
    if let Some(reason) = incomplete(&streamed, kind) {
        let outcome = match (&final_path, &object) {
            (Some(_), _) => "no file was written",
            (None, Some(_)) => "the upload was aborted: no object was written",
            (None, None) => "the bytes already written to stdout are incomplete",
        };
        let failed = Error::Failed(format!(
            "failed to dump pod {}/{}: {reason} ({} bytes received; {outcome})",
            target.namespace, target.pod_name, streamed.raw
        ));
        return Err(discard(object, failed).await);
    }

    let checksum_file = match (&mut partial, &final_path, object) {
        (Some(partial), Some(path), _) => {
            let line = format::checksum_line(&streamed.sha256, path);
            let checksum = partial.commit(path, line.as_bytes(), options.force)?;
            Some(checksum.display().to_string())
        }
        (_, _, Some(object)) => Some(object.complete(&streamed.sha256).await?),
        _ => None,
    };
    let (manifest_file, changed_during_dump) = match (before, &placed) {
        (Some(before), Some(path)) => {
            let after = framed::after(&streamed.frames, &streamed.stderr, &before, pod);
            let taken = Taken {
                before,
                after,
                dumped_at,
                kind,
            };
            write_manifest(kube, &target, options, taken, path).await?
        }
        _ => (None, Vec::new()),
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
        compressed_in_pod: streamed.stream != Compression::None,
        stream_compression: streamed.stream,
        bytes_raw: streamed.raw,
        bytes_written: streamed.written,
        sha256: streamed.sha256,
        duration_seconds: started.elapsed().as_secs_f64(),
        remote_status: streamed.status,
        manifest_file,
        changed_during_dump,
        parallel: None,
        parts: Vec::new(),
        note: None,
    })
}

/// The compressors a dump with these options tries in the pod, in order (zstd first:
/// ~4x gzip's speed for a smaller stream), whatever the file's format; none when the
/// client is to see the SQL as it is dumped.
pub(super) fn in_pod_tools(options: &DumpOptions) -> Option<&'static [&'static str]> {
    options.compress_in_pod.then_some(&["zstd", "gzip"])
}

/// Runs a dump command into a sink from `open_sink`: compressed in the pod by the first of
/// `tools` the image has, else (a second sink, nothing was written to the first)
/// compressed on the client. Returns what the stream carried.
pub(super) async fn run_dump(
    pods: &Api<Pod>,
    (pod, container): (&str, &str),
    (command, mark): (Vec<String>, Option<&str>),
    tools: Option<&[&str]>,
    open_sink: impl Fn() -> Result<Box<dyn Write + Send>>,
    compression: Compression,
    progress: &Progress,
) -> Result<Streamed> {
    if let Some(tools) = tools {
        let wrapped = crate::engine::commands::compressed_in_pod(command.clone(), tools);
        let input = (compression, Input::InPod);
        let streamed = stream(
            pods,
            pod,
            container,
            (&wrapped, mark),
            open_sink()?,
            input,
            progress,
        )
        .await?;
        if !tool_missing(&streamed) {
            return Ok(streamed);
        }
        // Checked before the dump starts: nothing was sent yet.
        tracing::info!(
            "none of {} is in the container's image; compressing on the client",
            tools.join(", ")
        );
    }
    let input = (compression, Input::Sql);
    stream(
        pods,
        pod,
        container,
        (&command, mark),
        open_sink()?,
        input,
        progress,
    )
    .await
}

/// Why a finished stream is not a complete dump of `kind`, if it is not: the remote exit
/// status, or the missing trailer; with the end of the remote stderr.
pub(super) fn incomplete(streamed: &Streamed, kind: DumpKind) -> Option<String> {
    let complete = kind.is_complete(streamed.tail.bytes());
    if streamed.status.success() && complete {
        return None;
    }
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
    Some(reason)
}

/// The manifest's passes (the one after, when the dump's exec took it) and what the dump
/// was.
pub(super) struct Taken {
    pub before: manifest::Pass,
    pub after: Option<manifest::Pass>,
    pub dumped_at: String,
    pub kind: DumpKind,
}

/// Counts the tables again after the dump and writes the manifest beside the finished
/// dump at `path`; returns its place and the tables that changed meanwhile.
pub(super) async fn write_manifest(
    kube: &Kube,
    target: &target::Target,
    options: &DumpOptions,
    taken: Taken,
    path: &Location,
) -> Result<(Option<String>, Vec<String>)> {
    let step = Instant::now();
    let after = tokio::select! {
        after = async {
            match taken.after {
                Some(after) => Ok(after),
                None => count_tables(kube, target, options, Some(&taken.before)).await,
            }
        } => after.map_err(|err| Error::Failed(format!(
            "{path} is complete, but its manifest (for `drill` and `verify --deep`) was not written: {}",
            err.chain()
        ))),
        signal = crate::cli::interrupted() => Err(Error::Interrupted(format!(
            "interrupted by {signal} after the dump: {path} is complete, but its manifest (for `drill` and `verify --deep`) was not written"
        ))),
    };
    tracing::debug!(
        seconds = step.elapsed().as_secs_f64(),
        "manifest pass after the dump"
    );
    // A manifest left by an earlier dump under this name must not vouch for this one.
    let after = match after {
        Ok(after) => after,
        Err(err) => {
            let _ = manifest::remove_beside(path).await;
            return Err(err);
        }
    };
    let manifest = Manifest {
        format: manifest::FORMAT,
        engine: target.engine,
        image: container_image(target),
        kind: taken.kind,
        database: options.database.clone(),
        namespace: target.namespace.clone(),
        pod: target.pod_name.clone(),
        dumped_at: taken.dumped_at,
        databases: manifest::merge(taken.before.databases, after.databases),
    };
    let written = manifest::write_beside(path, &manifest).await?;
    Ok((Some(written.to_string()), manifest.changed_during_dump()))
}

/// The source's tables, row counts and checksums, for the manifest; after `before`, those
/// of `before` when the engine says nothing was written since (see [`manifest::take_pass`]).
pub(super) async fn count_tables(
    kube: &Kube,
    target: &target::Target,
    options: &DumpOptions,
    before: Option<&manifest::Pass>,
) -> Result<manifest::Pass> {
    manifest::take_pass(
        kube,
        target.engine,
        (&target.pod_name, &target.container),
        (options.database.as_deref(), manifest::FORMAT),
        options.timeout,
        before,
    )
    .await
}

/// The image of the pod's database container.
fn container_image(target: &target::Target) -> Option<String> {
    target
        .pod
        .as_ref()?
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == target.container)?
        .image
        .clone()
}

/// Refuses to replace an existing backup or its checksum file unless `force`, and refuses
/// a `FILE.partial` always: another dump may be writing it. A symlink counts as existing,
/// dangling or not.
pub fn refuse_existing(path: &Path, force: bool) -> Result<()> {
    let partial = format::partial_path(path);
    if exists(&partial) {
        return Err(Error::Refused(format!(
            "{} exists: another dump is writing {}, or one was killed; remove it when no dump is running",
            partial.display(),
            path.display()
        )));
    }
    if force {
        return Ok(());
    }
    for existing in [path.to_path_buf(), format::checksum_path(path)] {
        if exists(&existing) {
            return Err(Error::Usage(format!(
                "{} already exists; choose another -f FILE, or pass --force to replace it",
                existing.display()
            )));
        }
    }
    Ok(())
}

/// A dump on its way to an S3 object.
pub(super) struct ObjectDump {
    pub url: S3Url,
    pub upload: Upload,
}

impl ObjectDump {
    /// Refuses an existing object or checksum object unless `force` (checked before the
    /// dump starts; a dump to the same key started meanwhile is not detected), then starts
    /// the multipart upload, before anything runs in the pod.
    pub async fn start(
        url: &S3Url,
        default_name: impl FnOnce() -> String,
        force: bool,
    ) -> Result<ObjectDump> {
        let url = if url.is_prefix() {
            url.join(&default_name())
        } else {
            url.clone()
        };
        let store = S3Store::from_env(&url.bucket)?;
        if !force {
            for existing in [url.clone(), url.sidecar(".sha256")] {
                if store.exists(&existing).await? {
                    return Err(Error::Usage(format!(
                        "{existing} already exists; choose another -f s3://..., or pass --force to replace it"
                    )));
                }
            }
        }
        let upload = store.start_upload(&url).await?;
        Ok(ObjectDump { url, upload })
    }

    /// Writes `KEY.sha256`, then completes the upload; returns the checksum object's URL.
    pub async fn complete(self, sha256: &str) -> Result<String> {
        let line = format::checksum_line(sha256, Path::new(self.url.file_name()));
        self.upload
            .complete(Some((".sha256", line.into_bytes())))
            .await?;
        Ok(self.url.sidecar(".sha256").to_string())
    }
}

/// Aborts the upload of a failed dump; the upload's own failure, if it came first, is
/// the better reason.
pub(super) async fn discard(object: Option<ObjectDump>, err: Error) -> Error {
    match object {
        Some(object) => match object.upload.discard().await {
            Some(upload_err @ Error::ObjectStore { .. }) => upload_err,
            _ => err,
        },
        None => err,
    }
}

/// True when anything (a file, a directory, a symlink even dangling) has this name.
fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

/// The in-pod compressor was not found (`exit 127`, said before the dump started).
fn tool_missing(streamed: &Streamed) -> bool {
    streamed.raw == 0 && crate::engine::commands::no_compressor(&streamed.status, &streamed.stderr)
}

/// What one dump stream delivered.
pub(super) struct Streamed {
    pub status: ExecStatus,
    pub stderr: Vec<u8>,
    /// The manifest's passes the dump's exec printed on stderr (see [`framed`]).
    pub frames: BTreeMap<String, framed::Frame>,
    pub raw: u64,
    pub written: u64,
    pub sha256: String,
    pub tail: Tail,
    /// What the stream carried: the pod's compression, or none.
    pub stream: Compression,
}

async fn stream(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    (command, mark): (&[String], Option<&str>),
    sink: Box<dyn Write + Send>,
    (compression, input): (Compression, Input),
    progress: &Progress,
) -> Result<Streamed> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
    let writer =
        tokio::task::spawn_blocking(move || pipeline::write_all(rx, sink, compression, input));

    // Stdin stays open, unused, until the status is in: its end tells the pod the client
    // went away, and the dump ends there too (see `exec::guard`).
    let mut process = exec::start_guarded(pods, pod, Some(container), command).await?;
    let stdin = process.stdin();
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
    let stderr = async {
        match mark {
            Some(mark) => {
                let split = framed::capture(stderr, mark).await;
                (split.rest, split.frames)
            }
            None => (read_capped(stderr, STDERR_KEEP).await, BTreeMap::new()),
        }
    };
    let (pumped, (stderr, frames)) = tokio::join!(pump, stderr);
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
    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(10), process.join()).await;
    let written = writer
        .await
        .map_err(|err| Error::Failed(format!("failed to write the dump: {err}")))?;
    let mut status = ExecStatus::from_status(status);
    if let Err(err) = pumped {
        status = ExecStatus::Failure {
            code: None,
            message: format!("stream broke: {err}"),
        };
    }
    let written = match written {
        Ok(written) => written,
        // A stream compressed in the pod that was cut does not decode; the remote failure
        // says why it was cut.
        Err(_) if !status.success() => pipeline::Written {
            raw: 0,
            written: 0,
            sha256: String::new(),
            tail: Tail::default(),
            stream: Compression::None,
        },
        Err(source) => {
            return Err(Error::Io {
                action: "write",
                path: "the dump file".into(),
                source,
            });
        }
    };
    Ok(Streamed {
        status,
        stderr,
        frames,
        raw: written.raw,
        written: written.written,
        sha256: written.sha256,
        tail: written.tail,
        stream: written.stream,
    })
}

/// Collects a stream, keeping at most its last `keep` bytes.
pub(super) async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>, keep: usize) -> Vec<u8> {
    exec::capture(reader, exec::Keep::Tail(keep)).await.bytes
}

/// `FILE.partial`, created exclusively and deleted when dropped unless committed under
/// its final name. Exclusive creation (`O_CREAT|O_EXCL`) never follows a symlink planted
/// at that name and never shares the file with a concurrent dump to the same path.
pub(super) struct PartialFile {
    pub path: PathBuf,
    pub file: File,
    /// `FILE.sha256.partial` while it exists.
    checksum: Option<PathBuf>,
    committed: bool,
}

/// Creates a file that must not exist yet, readable and writable by the owner only from
/// its first instant (dumps hold password hashes; a later chmod would leave a window).
pub(super) fn create_exclusive(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

impl PartialFile {
    pub fn create(final_path: &Path) -> Result<PartialFile> {
        let path = format::partial_path(final_path);
        let file = create_exclusive(&path).map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                Error::Refused(format!(
                    "{} exists: another dump is writing {}, or one was killed; remove it when no dump is running",
                    path.display(),
                    final_path.display()
                ))
            } else {
                Error::Io {
                    action: "create",
                    path: path.display().to_string(),
                    source,
                }
            }
        })?;
        Ok(PartialFile {
            path,
            file,
            checksum: None,
            committed: false,
        })
    }

    /// Gives the dump and its checksum file their final names; returns the checksum
    /// file's. The checksum goes first and the dump last: a dump under its final name
    /// always has its own checksum next to it, and once this dump's `.partial` name is
    /// gone (letting another dump start) nothing of this one remains to be renamed.
    pub fn commit(
        &mut self,
        final_path: &Path,
        checksum_line: &[u8],
        force: bool,
    ) -> Result<PathBuf> {
        let io_error = |action: &'static str, path: &Path| {
            let path = path.display().to_string();
            move |source| Error::Io {
                action,
                path,
                source,
            }
        };
        self.file.sync_all().map_err(io_error("sync", &self.path))?;
        let checksum_path = format::checksum_path(final_path);
        let checksum_partial = format::partial_path(&checksum_path);
        // Only the holder of FILE.partial writes FILE.sha256.partial, so one found here was
        // left by a killed dump (removing a symlink removes the link, not its target).
        if exists(&checksum_partial) {
            std::fs::remove_file(&checksum_partial)
                .map_err(io_error("remove", &checksum_partial))?;
        }
        self.checksum = Some(checksum_partial.clone());
        let mut checksum =
            create_exclusive(&checksum_partial).map_err(io_error("create", &checksum_partial))?;
        checksum
            .write_all(checksum_line)
            .and_then(|()| checksum.sync_all())
            .map_err(io_error("write", &checksum_partial))?;
        place(&checksum_partial, &checksum_path, force)?;
        self.checksum = None;
        if let Err(err) = place(&self.path, final_path, force) {
            // Take back the checksum just placed (if it is still ours): it would vouch for
            // a file that is not this dump.
            if std::fs::read(&checksum_path).is_ok_and(|text| text == checksum_line) {
                let _ = std::fs::remove_file(&checksum_path);
            }
            return Err(err);
        }
        self.committed = true;
        Ok(checksum_path)
    }
}

/// Gives a finished file its final name. With `force` a rename, which replaces an existing
/// file atomically. Without, a hard link, which fails when the name exists (even when it
/// appeared during the dump): the no-replace rename std does not have. Where the file
/// system has no hard links, a checked rename, racy only in that instant.
fn place(from: &Path, to: &Path, force: bool) -> Result<()> {
    let rename = || {
        std::fs::rename(from, to).map_err(|source| Error::Io {
            action: "rename",
            path: from.display().to_string(),
            source,
        })
    };
    let appeared = || {
        Error::Refused(format!(
            "{} appeared during the dump (another dump to the same file?); it was left alone \
             and this dump was discarded; pass --force to replace it",
            to.display()
        ))
    };
    if force {
        return rename();
    }
    match std::fs::hard_link(from, to) {
        Ok(()) => {
            if let Err(err) = std::fs::remove_file(from) {
                tracing::warn!(path = %from.display(), %err, "failed to remove the temporary name");
            }
            Ok(())
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Err(appeared()),
        Err(err) => {
            tracing::debug!(%err, "no hard link; renaming after a check");
            if exists(to) {
                return Err(appeared());
            }
            rename()
        }
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
        if let Some(checksum) = &self.checksum {
            let _ = std::fs::remove_file(checksum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_database_names_pass() {
        for bad in [
            "-x",
            "",
            "host=elsewhere dbname=x",
            "dbname=x",
            "postgresql://elsewhere/x",
            "postgres://u:p@h/x",
            "a b",
            "a;b",
            "x'y",
            "a\nb",
            "a\0b",
            "$(id)",
            &"a".repeat(64),
        ] {
            let err = validate_database(bad).expect_err(bad);
            assert_eq!(err.exit_code(), crate::cli::exit::USAGE, "{bad}");
        }
        for good in ["appdb", "app_db", "App-2", "db$1", &"a".repeat(63)] {
            assert!(validate_database(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn partial_files_are_exclusive_private_and_never_replace() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let final_path = dir.path().join("d.sql");

        // A symlink planted at FILE.partial is neither followed nor removed.
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, format::partial_path(&final_path)).unwrap();
        assert!(refuse_existing(&final_path, true).is_err());
        let err = PartialFile::create(&final_path).err().unwrap();
        assert_eq!(err.exit_code(), crate::cli::exit::USAGE, "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        std::fs::remove_file(format::partial_path(&final_path)).unwrap();

        // One holder at a time; mode 0600 from creation.
        let mut first = PartialFile::create(&final_path).unwrap();
        assert!(PartialFile::create(&final_path).is_err());
        let mode = std::fs::metadata(&first.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        first.file.write_all(b"one").unwrap();

        // The final name appearing meanwhile is left alone, and nothing of ours remains.
        std::fs::write(&final_path, "other").unwrap();
        let err = first.commit(&final_path, b"sum1\n", false).unwrap_err();
        assert_eq!(err.exit_code(), crate::cli::exit::USAGE, "{err}");
        drop(first);
        assert_eq!(std::fs::read_to_string(&final_path).unwrap(), "other");
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["d.sql", "precious"]);

        // --force replaces both files.
        std::fs::write(format::checksum_path(&final_path), "old sum").unwrap();
        assert!(refuse_existing(&final_path, false).is_err());
        refuse_existing(&final_path, true).unwrap();
        let mut second = PartialFile::create(&final_path).unwrap();
        second.file.write_all(b"two").unwrap();
        let checksum = second.commit(&final_path, b"sum2\n", true).unwrap();
        drop(second);
        assert_eq!(std::fs::read_to_string(&final_path).unwrap(), "two");
        assert_eq!(std::fs::read_to_string(&checksum).unwrap(), "sum2\n");
        let mode = std::fs::metadata(&final_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!exists(&format::partial_path(&final_path)));
        assert!(!exists(&format::partial_path(&checksum)));

        // Without --force into a free name: linked, temporary names gone.
        let fresh = dir.path().join("e.sql");
        let mut third = PartialFile::create(&fresh).unwrap();
        third.file.write_all(b"three").unwrap();
        third.commit(&fresh, b"sum3\n", false).unwrap();
        drop(third);
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "three");
        assert!(!exists(&format::partial_path(&fresh)));
    }
}
