//! `dump --parallel N`: the globals and each database dumped over their own exec streams,
//! at most N at once, into one archive ([`super::archive`]) with the same guarantees as a
//! serial dump: written as `FILE.partial` and renamed only when every part's remote exit
//! status and trailer are good, `FILE.sha256` and `FILE.manifest.json` beside it, and a
//! failing part stops the others and leaves nothing under the final name.
//!
//! Each part streams into a temporary file of its own beside the destination
//! (`FILE.NNN.partial`, private from creation; for `s3://`, in a private scratch directory),
//! and the archive is assembled from them once all are good, into `FILE.partial` or the
//! multipart upload (completed, `KEY.sha256` beside it, only then). A tar header carries its entry's size before the data, so parts that are
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
    self, Destination, DumpOptions, DumpReport, ObjectDump, PartialFile, Streamed, Taken,
    create_exclusive, discard, dump_serial, refuse_existing,
};
use super::format::{self, Compression, DumpKind};
use super::framed;
use super::location::Location;
use super::manifest;
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
        Destination::File(path) => single_dump_name(&path.to_string_lossy()),
        Destination::Object(url) => single_dump_name(&url.key),
        Destination::Default => Ok(()),
    }
}

/// Refuses a name that promises one SQL dump (`x.sql.gz`): the archive is a tar, and a
/// file named like a dump would be fed to `gzip -d` or `psql` by hand.
fn single_dump_name(name: &str) -> Result<()> {
    match [".sql", ".sql.gz", ".sql.zst"]
        .iter()
        .find(|s| name.ends_with(*s))
    {
        Some(suffix) => Err(Error::Usage(format!(
            "--parallel writes a tar archive of one dump per database, not a {suffix} file: name it .tar (-f {}.tar)",
            name.trim_end_matches(suffix)
                .rsplit('/')
                .next()
                .unwrap_or(name)
        ))),
        None => Ok(()),
    }
}

/// One part to dump: its database (none for the globals), its kind and its command.
struct Step {
    database: Option<String>,
    kind: DumpKind,
    command: Vec<String>,
    /// The engine's estimate of the part's size (0 for the globals).
    bytes: u64,
}

/// A part dumped into its temporary file.
struct Dumped {
    place: usize,
    streamed: Streamed,
    /// What the part's stream carried.
    stream: Compression,
    /// A database's manifest passes, taken in its exec (the one after: when it finished there).
    passes: Option<(manifest::Pass, Option<manifest::Pass>)>,
}

/// The temporary files of the parts, removed when dropped (the archive holds their bytes
/// once it is written): beside a local archive, else in a private scratch directory.
struct PartFiles {
    paths: Vec<PathBuf>,
    scratch: Option<PathBuf>,
}

impl PartFiles {
    /// Creates `count` empty files, private from creation, that must not exist yet.
    fn create(beside: Option<&Path>, count: usize) -> Result<PartFiles> {
        let io_err = |action: &'static str, path: &Path| {
            let path = path.display().to_string();
            move |source| Error::Io {
                action,
                path,
                source,
            }
        };
        let mut files = PartFiles {
            paths: Vec::new(),
            scratch: None,
        };
        let base = match beside {
            Some(path) => path.to_path_buf(),
            None => {
                let dir = scratch_dir();
                let mut builder = std::fs::DirBuilder::new();
                #[cfg(unix)]
                std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
                builder.create(&dir).map_err(io_err("create", &dir))?;
                files.scratch = Some(dir.clone());
                dir.join("part")
            }
        };
        for place in 0..count {
            let path = part_path(&base, place);
            create_exclusive(&path).map_err(io_err("create", &path))?;
            files.paths.push(path);
        }
        Ok(files)
    }
}

/// A directory of this process's own under the system's temporary directory.
fn scratch_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!(
        "kubectl-dbbackup-{}-{nanos:09}",
        std::process::id()
    ))
}

impl Drop for PartFiles {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = std::fs::remove_file(path);
        }
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Runs the parallel dump; with one user database or none, the serial dump (said in the
/// report's note).
pub async fn dump(kube: &Kube, options: &DumpOptions, parallel: usize) -> Result<DumpReport> {
    let started = Instant::now();
    let target = target::resolve(kube, &options.target, options.container.as_deref()).await?;
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
        .filter(|d| !commands.default_databases().contains(&d.name.as_str()))
        .count();
    if own <= 1 {
        let mut report = dump_serial(kube, options).await?;
        report.note = Some(format!(
            "--parallel {parallel}: {own} user database, so one stream: the serial dump"
        ));
        return Ok(report);
    }
    let final_path = match &options.destination {
        Destination::Object(_) => None,
        Destination::File(path) => Some(path.clone()),
        Destination::Default | Destination::Stdout => Some(PathBuf::from(default_name(&target))),
    };
    if let Some(path) = &final_path {
        refuse_existing(path, options.force)?;
    }
    let object = match &options.destination {
        Destination::Object(url) => {
            Some(ObjectDump::start(url, || default_name(&target), options.force).await?)
        }
        _ => None,
    };
    let dumped_at = k8s_openapi::jiff::Timestamp::now();
    let step = Instant::now();
    let mut partial = final_path.as_deref().map(PartialFile::create).transpose()?;
    let steps = plan(&target, databases, options.with_credentials);
    let written = async {
        let files = PartFiles::create(final_path.as_deref(), steps.len())?;
        let what = format!(
            "dumping {}/{} ({} parts, {parallel} at once)",
            target.namespace,
            target.pod_name,
            steps.len()
        );
        let progress = Progress::bytes(options.progress, &what);
        let pods: Api<Pod> = kube.exec_pods();
        let run = run_parts(
            &pods,
            &target,
            options,
            &steps,
            &files.paths,
            parallel,
            &progress,
        );
        let dumped = tokio::select! {
            result = within(options.timeout, what.clone(), run) => result,
            signal = crate::cli::interrupted() => Err(Error::Interrupted(format!(
                "{what}: interrupted by {signal}; no file was written"
            ))),
        };
        progress.finish();
        tracing::debug!(seconds = step.elapsed().as_secs_f64(), "dump streams");
        let step = Instant::now();
        let mut dumped = dumped?;
        dumped.sort_by_key(|d| d.place);
        // Each database's passes were taken in its part's exec (see run_parts).
        let mut before = Vec::new();
        let mut after = Some(Vec::new());
        for (part_before, part_after) in dumped.iter_mut().filter_map(|d| d.passes.take()) {
            before.extend(part_before.databases);
            match (&mut after, part_after) {
                (Some(all), Some(part_after)) => all.extend(part_after.databases),
                _ => after = None,
            }
        }
        let passes = (before, after);
        let index = index_of(&target, options, parallel, &steps, &dumped);
        let sink: Box<dyn Write + Send> = match (&partial, &object) {
            (Some(p), _) => Box::new(p.file.try_clone().map_err(|source| Error::Io {
                action: "open",
                path: p.path.display().to_string(),
                source,
            })?),
            (None, Some(object)) => object.upload.writer(),
            (None, None) => return Err(Error::Failed("no place for the archive".into())),
        };
        let (sha256, bytes) = assemble(sink, &index, &files.paths, dumped_at).await?;
        tracing::debug!(seconds = step.elapsed().as_secs_f64(), "archive assembled");
        // Every part streams from the same container, so they share one compression.
        let stream = match dumped.first() {
            Some(first) if dumped.iter().all(|d| d.stream == first.stream) => first.stream,
            _ => Compression::None,
        };
        Ok((index, stream, sha256, bytes, passes))
    };
    let (index, stream, sha256, bytes_written, (before, after)) = match written.await {
        Ok(written) => written,
        Err(err) => return Err(discard(object, err).await),
    };
    let (placed, checksum_file) = match (&mut partial, &final_path, object) {
        (Some(partial), Some(path), _) => {
            let line = format::checksum_line(&sha256, path);
            let checksum = partial.commit(path, line.as_bytes(), options.force)?;
            (
                Location::Local(path.clone()),
                checksum.display().to_string(),
            )
        }
        (_, _, Some(object)) => {
            let url = object.url.clone();
            (Location::S3(url), object.complete(&sha256).await?)
        }
        _ => return Err(Error::Failed("no place for the archive".into())),
    };
    // No snapshot: a pass after that did not finish in some part's exec counts them all.
    let pass = |databases| manifest::Pass {
        databases,
        snapshot: None,
    };
    let taken = Taken {
        before: pass(before),
        after: after.map(pass),
        dumped_at: dumped_at.to_string(),
        kind: index.kind,
    };
    let (manifest_file, changed_during_dump) =
        dump::write_manifest(kube, &target, options, taken, &placed).await?;
    Ok(DumpReport {
        file: placed.to_string(),
        checksum_file: Some(checksum_file),
        namespace: target.namespace,
        pod: target.pod_name,
        engine: target.engine,
        database: None,
        kind: index.kind,
        compression: options.compression,
        compressed_in_pod: stream != Compression::None,
        stream_compression: stream,
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

/// The parts: the globals (when the engine has them), then each database.
fn plan(target: &Target, databases: Vec<Listed>, with_credentials: bool) -> Vec<Step> {
    let commands = target.engine.commands();
    let globals = commands.dump_globals(with_credentials).map(|command| Step {
        database: None,
        kind: DumpKind::for_engine(target.engine, false),
        command,
        bytes: 0,
    });
    let parts = databases.into_iter().map(|listed| Step {
        command: commands.dump_part(&listed.name, with_credentials),
        kind: DumpKind::for_engine(target.engine, true),
        database: Some(listed.name),
        bytes: listed.bytes,
    });
    globals.into_iter().chain(parts).collect()
}

/// The archive's index from the parts dumped (sorted by place).
fn index_of(
    target: &Target,
    options: &DumpOptions,
    parallel: usize,
    steps: &[Step],
    dumped: &[Dumped],
) -> Index {
    Index {
        format: archive::FORMAT,
        engine: target.engine,
        kind: DumpKind::for_engine(target.engine, false),
        compression: options.compression,
        parallel,
        parts: steps
            .iter()
            .zip(dumped)
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
    }
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
async fn list_databases(kube: &Kube, target: &Target) -> Result<Vec<Listed>> {
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
    parse_databases(&listed).map_err(|odd| {
        let at = format!("pod {}/{}", target.namespace, target.pod_name);
        Error::Refused(match odd {
            Odd::Name(name) => format!(
                "database {name:?} of {at} is not a plain name (letters, digits, '_', '-', '$'): dump without --parallel"
            ),
            Odd::Line(line) => format!(
                "the database list of {at} has a line that is not a name and a size ({line:?}): a database's name holds a line break, which pg_dump and mysqldump cannot take; rename it"
            ),
        })
    })
}

/// Why the database list was refused.
#[derive(Debug, PartialEq)]
enum Odd {
    /// A database whose name is not plain.
    Name(String),
    /// A line that is not `NAME<TAB>BYTES`: a name broken by a line break.
    Line(String),
}

/// `NAME<TAB>BYTES` lines. The size is the last field, so a name holding a tab, a
/// newline or a carriage return can neither pass as another database's nor split into
/// two: every line must be a plain name and a number, else the first odd one is the error.
fn parse_databases(listed: &str) -> std::result::Result<Vec<Listed>, Odd> {
    let listed = listed.strip_suffix('\n').unwrap_or(listed);
    if listed.is_empty() {
        return Ok(Vec::new());
    }
    listed
        .split('\n')
        .map(|line| {
            let Some((name, Ok(bytes))) = line
                .rsplit_once('\t')
                .map(|(name, bytes)| (name, bytes.parse::<u64>()))
            else {
                return Err(Odd::Line(line.to_string()));
            };
            match dump::validate_database(name) {
                Ok(()) => Ok(Listed {
                    name: name.to_string(),
                    bytes,
                }),
                Err(_) => Err(Odd::Name(name.to_string())),
            }
        })
        .collect()
}

/// One database of the instance, with the engine's estimate of its size.
#[derive(Debug, PartialEq)]
struct Listed {
    name: String,
    bytes: u64,
}

/// The places of the steps in the order they start: the archive keeps its order (the
/// globals first), but the largest parts start first, so the longest is never the one
/// left to start last behind a queue of small ones (equal sizes keep the archive's order).
fn start_order(steps: &[Step]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..steps.len()).collect();
    order.sort_by_key(|&place| std::cmp::Reverse(steps[place].bytes));
    order
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
    let tools = dump::in_pod_tools(options);
    let commands = target.engine.commands();
    let jobs = start_order(steps).into_iter().map(|place| async move {
        let (step, file) = (&steps[place], &files[place]);
        // A database's manifest passes run in its own exec, around its dump; the globals
        // have none.
        let (command, mark) = match &step.database {
            Some(database) => {
                let (command, mark) =
                    framed::around(commands, Some(database), step.command.clone());
                (command, Some(mark))
            }
            None => (step.command.clone(), None),
        };
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
        let streamed = dump::run_dump(
            pods,
            (&target.pod_name, &target.container),
            (command, mark.as_deref()),
            tools,
            open_sink,
            options.compression,
            progress,
        )
        .await?;
        let pod = target.pod_name.as_str();
        let before = match &mark {
            Some(_) => framed::before(&streamed.frames, &streamed.stderr, &streamed.status, pod)?,
            None => None,
        };
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
        let passes = before.map(|before| {
            let after = framed::after(&streamed.frames, &streamed.stderr, &before, pod);
            (before, after)
        });
        Ok(Dumped {
            place,
            stream: streamed.stream,
            streamed,
            passes,
        })
    });
    futures::stream::iter(jobs)
        .buffer_unordered(parallel)
        .try_collect()
        .await
}

/// Writes the archive into `sink` (on a blocking thread); returns its SHA-256 and size.
async fn assemble(
    sink: Box<dyn Write + Send>,
    index: &Index,
    files: &[PathBuf],
    dumped_at: k8s_openapi::jiff::Timestamp,
) -> Result<(String, u64)> {
    let (index, files) = (index.clone(), files.to_vec());
    let mtime = dumped_at.as_second().max(0) as u64;
    let written = tokio::task::spawn_blocking(move || {
        let out = Hashing::new(BufWriter::with_capacity(1 << 20, sink));
        let mut out = archive::write(out, &index, &files, mtime)?;
        out.flush()?;
        Ok::<_, io::Error>(out.finish())
    })
    .await
    .map_err(|err| Error::Failed(format!("failed to write the archive: {err}")))?;
    written.map_err(|source| Error::Io {
        action: "write",
        path: "the archive".into(),
        source,
    })
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
            container: None,
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
        assert!(check(&s3).is_ok());
        for name in ["x.sql.gz", "dir/x.sql", "x.sql.zst"] {
            let named = DumpOptions {
                destination: Destination::File(name.into()),
                ..options(Some(2))
            };
            refused(named, "name it .tar (-f x.tar)");
        }
        let object = DumpOptions {
            destination: Destination::Object(
                crate::backup::S3Url::parse("s3://bucket/p/x.sql.gz").unwrap(),
            ),
            ..options(Some(2))
        };
        refused(object, "not a .sql.gz file");
        let serial = DumpOptions {
            destination: Destination::File("x.sql.gz".into()),
            ..options(None)
        };
        assert!(check(&serial).is_ok());
    }

    #[test]
    fn part_files_sit_beside_the_archive_and_go_when_dropped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = part_path(&dir.path().join("a.tar"), 7);
        assert_eq!(path, dir.path().join("a.tar.007.partial"));
        std::fs::write(&path, "x").unwrap();
        drop(PartFiles {
            paths: vec![path.clone()],
            scratch: None,
        });
        assert!(!path.exists());
        // Without a local archive: a private scratch directory, gone with its files.
        let files = PartFiles::create(None, 2).unwrap();
        let scratch = files.scratch.clone().unwrap();
        let mode = std::fs::metadata(&scratch).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(files.paths[1], scratch.join("part.001.partial"));
        drop(files);
        assert!(!scratch.exists());
    }

    #[test]
    fn the_database_list_is_names_and_sizes_and_odd_names_are_refused() {
        let listed = parse_databases("appdb\t7725859\npostgres\t7599635\nshop-2$\t0\n").unwrap();
        let names: Vec<(&str, u64)> = listed.iter().map(|l| (l.name.as_str(), l.bytes)).collect();
        assert_eq!(
            names,
            [("appdb", 7725859), ("postgres", 7599635), ("shop-2$", 0)]
        );
        assert_eq!(parse_databases("").unwrap(), []);
        // A name holding a tab, a newline or a carriage return is never read as another
        // (plain) database's: the line's shape or the name itself is refused.
        let name = |n: &str| Odd::Name(n.into());
        let line = |l: &str| Odd::Line(l.into());
        for (listed, odd) in [
            ("a\tb\t12\n", name("a\tb")),
            ("x\ny\t12\n", line("x")),
            ("x\r\t12\n", name("x\r")),
            (
                "host=elsewhere dbname=x\t12\n",
                name("host=elsewhere dbname=x"),
            ),
            ("appdb\n", line("appdb")),
            ("appdb\t-1\n", line("appdb\t-1")),
        ] {
            assert_eq!(parse_databases(listed), Err(odd), "{listed:?}");
        }
    }

    #[test]
    fn parts_start_largest_first_and_keep_their_place_in_the_archive() {
        let step = |database: Option<&str>, bytes| Step {
            database: database.map(String::from),
            kind: DumpKind::PostgresDatabase,
            command: Vec::new(),
            bytes,
        };
        let steps = [
            step(None, 0),
            step(Some("a"), 10),
            step(Some("b"), 900),
            step(Some("postgres"), 7),
            step(Some("c"), 10),
        ];
        // Equal sizes keep the archive's order; the globals (no size) go last.
        assert_eq!(start_order(&steps), [2, 1, 4, 3, 0]);
    }
}
