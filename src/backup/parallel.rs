//! `dump --parallel N`: the globals and each database dumped over their own exec streams,
//! at most N at once, into one archive ([`super::archive`]) with the same guarantees as a
//! serial dump: written as `FILE.partial` and renamed only when every part's remote exit
//! status and trailer are good, `FILE.sha256` and `FILE.manifest.json` beside it, and a
//! failing part stops the others and leaves nothing under the final name.
//!
//! Each part streams into a temporary file of its own beside the destination
//! (`FILE.NNN.partial`, private from creation), and the archive is assembled from them once
//! all are good. A tar header carries its entry's size before the data, so parts that are
//! still being written concurrently cannot go into one tar stream as they arrive; holding
//! them in memory would make the peak RSS grow with the databases. The price is disk: up
//! to twice the archive while it is assembled.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use sha2::{Digest, Sha256};

use super::archive::{self, Index, Part};
use super::dump::{
    self, Destination, DumpOptions, DumpReport, PartialFile, Streamed, Taken, create_exclusive,
    dump_serial, refuse_existing,
};
use super::format::{self, DumpKind};
use super::location::Location;
use crate::client::Kube;
use crate::error::{Error, Result};
use crate::exec::{self, ExecStatus};
use crate::output::Progress;
use crate::target::{self, Target};
use crate::wait::within;

/// Refuses `--parallel` where it cannot apply, before any API call.
pub fn validate(
    parallel: Option<usize>,
    database: Option<&str>,
    destination: &Destination,
) -> Result<()> {
    let Some(parallel) = parallel else {
        return Ok(());
    };
    if parallel < 1 {
        return Err(Error::Usage(format!(
            "--parallel {parallel}: the number of streams at once must be at least 1"
        )));
    }
    if database.is_some() {
        return Err(Error::Usage(
            "--parallel dumps each database over a stream of its own; --database is one database, one stream: leave out one of them".into(),
        ));
    }
    match destination {
        Destination::Stdout => Err(Error::Usage(
            "--parallel writes an archive assembled from its parts into a file: use -f FILE, not -f -".into(),
        )),
        Destination::Object(_) => Err(Error::Usage(
            "--parallel does not write to s3:// yet: dump to a file, then upload it with its .sha256 and .manifest.json".into(),
        )),
        Destination::Default | Destination::File(_) => Ok(()),
    }
}

/// One part to dump: its database (none for the globals), its kind and its command.
struct Step {
    database: Option<String>,
    kind: DumpKind,
    command: Vec<String>,
}

/// A part dumped into its temporary file.
struct Dumped {
    place: usize,
    streamed: Streamed,
    in_pod: bool,
}

/// The temporary files of the parts, removed when dropped (the archive holds their bytes
/// once it is written).
struct PartFiles(Vec<PathBuf>);

impl Drop for PartFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Runs the parallel dump; with one user database or none, the serial dump (said in the
/// report's note).
pub async fn dump(kube: &Kube, options: &DumpOptions, parallel: usize) -> Result<DumpReport> {
    let started = Instant::now();
    let target = target::resolve(kube, &options.target).await?;
    if target.pod.is_none() {
        return Err(Error::NotFound(format!(
            "pod {}/{} does not exist",
            target.namespace, target.pod_name
        )));
    }
    let databases = list_databases(kube, &target).await?;
    let commands = target.engine.commands();
    let own = databases
        .iter()
        .filter(|d| !commands.default_databases().contains(&d.as_str()))
        .count();
    if own <= 1 {
        let mut report = dump_serial(kube, options).await?;
        report.note = Some(format!(
            "--parallel {parallel}: {own} user database, so one stream: the serial dump"
        ));
        return Ok(report);
    }
    let final_path = match &options.destination {
        Destination::File(path) => path.clone(),
        _ => PathBuf::from(default_name(&target)),
    };
    refuse_existing(&final_path, options.force)?;
    let dumped_at = k8s_openapi::jiff::Timestamp::now();
    // Counted before the dump, before FILE.partial exists: a signal now leaves nothing.
    let before = dump::count_tables(kube, &target, options).await?;
    let mut partial = PartialFile::create(&final_path)?;

    let mut steps: Vec<Step> = Vec::new();
    if let Some(command) = commands.dump_globals(options.with_credentials) {
        steps.push(Step {
            database: None,
            kind: DumpKind::for_engine(target.engine, false),
            command,
        });
    }
    for database in databases {
        steps.push(Step {
            command: commands.dump_part(&database, options.with_credentials),
            kind: DumpKind::for_engine(target.engine, true),
            database: Some(database),
        });
    }
    let files = PartFiles(
        (0..steps.len())
            .map(|place| part_path(&final_path, place))
            .collect(),
    );
    for path in &files.0 {
        create_exclusive(path).map_err(|source| Error::Io {
            action: "create",
            path: path.display().to_string(),
            source,
        })?;
    }

    let what = format!(
        "dumping {}/{} ({} parts, {parallel} at once)",
        target.namespace,
        target.pod_name,
        steps.len()
    );
    let progress = Progress::bytes(options.progress, &what);
    let pods: Api<Pod> = kube.exec_pods();
    let run = run_parts(
        &pods, &target, options, &steps, &files.0, parallel, &progress,
    );
    let dumped = tokio::select! {
        result = within(options.timeout, what.clone(), run) => result,
        signal = crate::cli::interrupted() => Err(Error::Interrupted(format!(
            "{what}: interrupted by {signal}; no file was written"
        ))),
    };
    progress.finish();
    let mut dumped = dumped?;
    dumped.sort_by_key(|d| d.place);

    let index = Index {
        format: archive::FORMAT,
        engine: target.engine,
        kind: DumpKind::for_engine(target.engine, false),
        compression: options.compression,
        parallel,
        parts: steps
            .iter()
            .zip(&dumped)
            .map(|(step, done)| Part {
                file: archive::part_file_name(
                    done.place,
                    step.database.as_deref(),
                    options.compression,
                ),
                database: step.database.clone(),
                kind: step.kind,
                bytes: done.streamed.written,
                bytes_raw: done.streamed.raw,
                sha256: done.streamed.sha256.clone(),
            })
            .collect(),
    };
    let (sha256, bytes_written) = assemble(&partial, &index, &files.0, dumped_at).await?;
    drop(files);
    let line = format::checksum_line(&sha256, &final_path);
    let checksum = partial.commit(&final_path, line.as_bytes(), options.force)?;

    let placed = Location::Local(final_path.clone());
    let taken = Taken {
        before,
        dumped_at: dumped_at.to_string(),
        kind: index.kind,
    };
    let (manifest_file, changed_during_dump) =
        dump::write_manifest(kube, &target, options, taken, &placed).await?;
    Ok(DumpReport {
        file: final_path.display().to_string(),
        checksum_file: Some(checksum.display().to_string()),
        namespace: target.namespace,
        pod: target.pod_name,
        engine: target.engine,
        database: None,
        kind: index.kind,
        compression: options.compression,
        compressed_in_pod: dumped.iter().all(|d| d.in_pod),
        bytes_raw: index.parts.iter().map(|p| p.bytes_raw).sum(),
        bytes_written,
        sha256,
        duration_seconds: started.elapsed().as_secs_f64(),
        remote_status: ExecStatus::Success,
        manifest_file,
        changed_during_dump,
        parallel: Some(parallel),
        parts: index.parts,
        note: None,
    })
}

/// `<name>-<UTC timestamp>.tar`.
fn default_name(target: &Target) -> String {
    let name = target
        .statefulset
        .as_ref()
        .map(kube::ResourceExt::name_any)
        .unwrap_or_else(|| target.pod_name.clone());
    let stamp = format::utc_stamp(k8s_openapi::jiff::Timestamp::now());
    format!("{name}-{stamp}{}", archive::EXTENSION)
}

/// `FILE.NNN.partial`: part `place`'s temporary file.
fn part_path(final_path: &Path, place: usize) -> PathBuf {
    let mut name = final_path.as_os_str().to_os_string();
    name.push(format!(".{place:03}.partial"));
    PathBuf::from(name)
}

/// The databases to dump, one part each. Only plain names: each travels to pg_dump /
/// mysqldump as an argument, where one like `host=elsewhere dbname=x` would be read as a
/// connection string.
async fn list_databases(kube: &Kube, target: &Target) -> Result<Vec<String>> {
    let pods: Api<Pod> = kube.exec_pods();
    let commands = target.engine.commands();
    let listed = exec::run(
        &pods,
        &target.pod_name,
        Some(&target.container),
        &commands.part_databases(),
        None,
        Duration::from_secs(60),
    )
    .await?
    .into_stdout(&target.pod_name, "the database list")?;
    let databases: Vec<String> = listed
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    for database in &databases {
        if dump::validate_database(database).is_err() {
            return Err(Error::Refused(format!(
                "database {database:?} of pod {}/{} is not a plain name (letters, digits, '_', '-', '$'): dump without --parallel",
                target.namespace, target.pod_name
            )));
        }
    }
    Ok(databases)
}

/// Dumps every step into its file, `parallel` at once. The first part that fails ends the
/// others (their streams are dropped) and is the error.
async fn run_parts(
    pods: &Api<Pod>,
    target: &Target,
    options: &DumpOptions,
    steps: &[Step],
    files: &[PathBuf],
    parallel: usize,
    progress: &Progress,
) -> Result<Vec<Dumped>> {
    let tool = dump::in_pod_tool(options);
    let jobs = steps.iter().zip(files).enumerate().map(|(place, (step, file))| async move {
        let open_sink = || -> Result<Box<dyn Write + Send>> {
            let sink = std::fs::OpenOptions::new()
                .write(true)
                .open(file)
                .map_err(|source| Error::Io {
                    action: "open",
                    path: file.display().to_string(),
                    source,
                })?;
            Ok(Box::new(sink))
        };
        let (streamed, in_pod) = dump::run_dump(
            pods,
            (&target.pod_name, &target.container),
            step.command.clone(),
            tool,
            open_sink,
            options.compression,
            progress,
        )
        .await?;
        if let Some(reason) = dump::incomplete(&streamed, step.kind) {
            let part = match &step.database {
                Some(database) => format!("database {database}"),
                None => "the globals".into(),
            };
            return Err(Error::Failed(format!(
                "failed to dump {part} of pod {}/{}: {reason} ({} bytes received; the other parts were stopped and no file was written)",
                target.namespace, target.pod_name, streamed.raw
            )));
        }
        Ok(Dumped {
            place,
            streamed,
            in_pod,
        })
    });
    futures::stream::iter(jobs)
        .buffer_unordered(parallel)
        .try_collect()
        .await
}

/// Writes the archive into `FILE.partial` (on a blocking thread); returns its SHA-256 and
/// size.
async fn assemble(
    partial: &PartialFile,
    index: &Index,
    files: &[PathBuf],
    dumped_at: k8s_openapi::jiff::Timestamp,
) -> Result<(String, u64)> {
    let io_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| Error::Io {
            action: "write",
            path,
            source,
        }
    };
    let file = partial.file.try_clone().map_err(io_err(&partial.path))?;
    let (index, files) = (index.clone(), files.to_vec());
    let mtime = dumped_at.as_second().max(0) as u64;
    let written = tokio::task::spawn_blocking(move || {
        let out = Hashing::new(BufWriter::with_capacity(1 << 20, file));
        let mut out = archive::write(out, &index, &files, mtime)?;
        out.flush()?;
        Ok::<_, io::Error>(out.finish())
    })
    .await
    .map_err(|err| Error::Failed(format!("failed to write the archive: {err}")))?;
    written.map_err(io_err(&partial.path))
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    fn finish(self) -> (String, u64) {
        (format::hex(&self.hasher.finalize()), self.bytes)
    }
}

impl<W: Write> Write for Hashing<W> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::Compression;

    fn options(parallel: Option<usize>) -> DumpOptions {
        DumpOptions {
            target: "pg".into(),
            destination: Destination::Default,
            compression: Compression::Gzip,
            database: None,
            with_credentials: false,
            timeout: Duration::from_secs(60),
            progress: false,
            force: false,
            compress_in_pod: true,
            parallel,
        }
    }

    fn check(o: &DumpOptions) -> Result<()> {
        validate(o.parallel, o.database.as_deref(), &o.destination)
    }

    #[test]
    fn parallel_is_refused_where_it_cannot_apply() {
        assert!(check(&options(None)).is_ok());
        assert!(check(&options(Some(1))).is_ok());
        assert!(check(&options(Some(4))).is_ok());
        let file = DumpOptions {
            destination: Destination::File("x.tar".into()),
            ..options(Some(4))
        };
        assert!(check(&file).is_ok());

        let refused = |options: DumpOptions, says: &str| {
            let err = check(&options).unwrap_err();
            assert_eq!(err.exit_code(), crate::cli::exit::USAGE, "{err}");
            assert!(err.to_string().contains(says), "{err}");
        };
        refused(options(Some(0)), "at least 1");
        let one = DumpOptions {
            database: Some("appdb".into()),
            ..options(Some(2))
        };
        refused(one, "--database");
        let stdout = DumpOptions {
            destination: Destination::Stdout,
            ..options(Some(2))
        };
        refused(stdout, "not -f -");
        let s3 = DumpOptions {
            destination: Destination::Object(crate::backup::S3Url::parse("s3://bucket/k").unwrap()),
            ..options(Some(2))
        };
        refused(s3, "s3://");
    }

    #[test]
    fn part_files_sit_beside_the_archive_and_go_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = part_path(&dir.path().join("a.tar"), 7);
        assert_eq!(path, dir.path().join("a.tar.007.partial"));
        std::fs::write(&path, "x").unwrap();
        drop(PartFiles(vec![path.clone()]));
        assert!(!path.exists());
    }
}
