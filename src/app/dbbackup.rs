//! `kubectl dbbackup`: streamed, verified dumps; their verification; restores; CSI snapshots.

use std::time::Duration;

use crate::backup::cron::{self, When};
use crate::backup::{
    self, Compression, Destination, DrillOptions, DumpOptions, Location, RestoreOptions,
    SnapshotOptions, snapshot_list,
};
use crate::backup::{pvc_source, schedule, schedule_run};
use crate::cli::{
    self, CompletionArgs, GlobalArgs, OutputArgs, OutputFormat, TargetArgs, exit, parse_duration,
};
use crate::deploy::DryRun;
use crate::output::{self, Progress, Render, Width};
use crate::{Error, client, target};
use clap::{Args, CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kubectl dbbackup",
    bin_name = "kubectl dbbackup",
    version,
    about = "Back up and restore PostgreSQL, MySQL and MariaDB: streamed, verified dumps and volume snapshots",
    // `kubectl dbbackup POD` dumps: the dump arguments stand at the top as well. Not
    // `args_conflicts_with_subcommands`: it would take `verify` in `-n prod verify FILE`
    // for a TARGET, since clap counts the global `-n` as an argument given.
    subcommand_negates_reqs = true,
    arg_required_else_help = true,
    after_help = "Examples:\n  kubectl dbbackup postgres                      # postgres-<UTC time>.sql.gz + .sha256\n  kubectl dbbackup mysql-0 -f nightly.sql.zst --compress zstd\n  kubectl dbbackup -l app.kubernetes.io/instance=orders    # the one database the selector matches\n  kubectl dbbackup sts/postgres --database appdb -f - | gzip -d | less\n  kubectl dbbackup verify postgres-20261125T130405Z.sql.gz\n  kubectl dbbackup verify --deep postgres-20261125T130405Z.sql.gz   # + databases, tables, rows\n  kubectl dbbackup drill postgres-20261125T130405Z.sql.gz -n scratch\n  kubectl dbbackup restore postgres -f postgres-20261125T130405Z.sql.gz\n  kubectl dbbackup snapshot postgres --class csi-snapclass\n  kubectl dbbackup snapshot list postgres\n  kubectl dbbackup snapshot delete data-postgres-0-20261125t130405z\n  kubectl dbbackup postgres -f s3://backups/nightly/     # streamed to S3, KEY.sha256 beside it\n  kubectl dbbackup list s3://backups/nightly/\n  kubectl dbbackup schedule postgres --at 02:30 --time-zone Europe/Berlin --keep 7\n  kubectl dbbackup schedule run-now postgres"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    // `dump`'s arguments, when no subcommand is named.
    #[command(flatten)]
    dump: Option<DumpArgs>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Dump every database (or one) to a file (the default action)
    Dump(DumpArgs),
    /// Check a backup file's checksum and completion trailer (exit 1 when either is wrong)
    Verify(VerifyArgs),
    /// Stream a backup file into the database
    Restore(RestoreArgs),
    /// Prove a backup restores: restore it into a throwaway instance, compare every table
    /// with the dump's manifest, delete the instance (exit 1 when a table differs)
    Drill(DrillArgs),
    /// List the backups in a directory, under an s3://BUCKET/PREFIX/ or on a backup PVC (pvc:NAME)
    List(ListArgs),
    /// Take a CSI VolumeSnapshot of each of the pod's volumes
    Snapshot(SnapshotArgs),
    /// Back up on a schedule: a CronJob that dumps to a PVC with retention (list, delete, run-now)
    Schedule(ScheduleArgs),
    /// Print a shell completion script
    Completion(CompletionArgs),
}

/// Declared field by field, without the shared groups: clap tells whether the top-level
/// `Option<DumpArgs>` was given from the arguments a struct declares itself, and sees none
/// in a struct holding a nested `flatten`.
#[derive(Args)]
struct DumpArgs {
    /// Pod or StatefulSet of the database: POD, pod/NAME or sts/NAME
    #[arg(value_parser = cli::parse_target, required_unless_present = "selector")]
    target: Option<String>,
    /// Label selector: the one database it matches (several are refused)
    #[arg(short = 'l', long, value_name = "SELECTOR", conflicts_with = "target", value_parser = cli::parse_selector)]
    selector: Option<String>,
    /// The database container, when the pod has several (default: the one whose image, port or label says database)
    #[arg(short = 'c', long, value_name = "NAME")]
    container: Option<String>,
    /// Backup file, s3://BUCKET/KEY, s3://BUCKET/PREFIX/ (gets the default name), or - for
    /// stdout (default: <name>-<UTC timestamp>.sql.gz). S3 credentials and endpoint from
    /// AWS_* variables or ~/.aws with AWS_PROFILE (see docs/dbbackup.md)
    #[arg(short, long, value_name = "FILE|s3://...|-")]
    file: Option<String>,
    /// Compression of the file
    #[arg(long, value_enum, default_value = "gzip")]
    compress: Compression,
    /// Compress the exec stream inside the container with the image's zstd (else its
    /// gzip), whatever the file's --compress: the client rewrites it into the file's format
    /// when they differ. `--compress-in-pod=false` sends the SQL as it is
    /// [default: true]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    compress_in_pod: Option<bool>,
    /// Dump this database only (pg_dump --create / mysqldump --databases); a plain name:
    /// connection strings (`host=... dbname=...`) and options are refused
    #[arg(long, value_name = "DB")]
    database: Option<String>,
    /// Replace an existing FILE and FILE.sha256 (atomically, when the dump is complete);
    /// without it an existing one is refused (exit 2)
    #[arg(long)]
    force: bool,
    /// Also dump credentials: role passwords (pg_dumpall without --no-role-passwords) or
    /// the mysql system schema with accounts and grants (mysqldump --all-databases).
    /// Restoring such a dump into another deployment replaces its accounts' passwords
    /// until the restore re-asserts the target's own (see docs/dbbackup.md)
    #[arg(long, conflicts_with = "database")]
    with_credentials: bool,
    /// Dump the globals and each database over its own stream, N at once, into one archive
    /// (<name>-<UTC timestamp>.tar) that verify, restore and list read
    #[arg(long, value_name = "N")]
    parallel: Option<usize>,
    /// Time limit for the whole dump
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    timeout: Duration,
    /// Output: table | wide | json | yaml | name | jsonpath=TEMPLATE | jsonpath-as-json=TEMPLATE
    #[arg(short, long, value_name = "OUTPUT", value_parser = cli::OutputParser, default_value = "table", hide_possible_values = true)]
    output: OutputFormat,
}

#[derive(Args)]
struct VerifyArgs {
    /// Backup file, s3://BUCKET/KEY, or pvc:NAME/FILE on a schedule's backup PVC
    #[arg(value_name = "FILE|s3://...|pvc:...")]
    file: String,
    /// Also list what the dump holds (databases, tables, rows) from FILE.manifest.json;
    /// a missing manifest is a problem
    #[arg(long)]
    deep: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
struct DrillArgs {
    /// Backup file, s3://BUCKET/KEY or pvc:NAME/FILE, with FILE.sha256 and FILE.manifest.json beside it
    #[arg(value_name = "FILE|s3://...|pvc:...")]
    file: String,
    /// Image of the throwaway instance (default: the source's, recorded in the manifest)
    #[arg(long)]
    image: Option<String>,
    /// Volume of the throwaway instance (default: three times the SQL, at least 1Gi)
    #[arg(long, value_name = "SIZE")]
    storage_size: Option<String>,
    /// StorageClass of the throwaway instance's volume (default: the cluster's default)
    #[arg(long, value_name = "CLASS")]
    storage_class: Option<String>,
    /// Time limit for deploying, restoring and comparing (deleting the instance comes after)
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
struct RestoreArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Backup file, s3://BUCKET/KEY or pvc:NAME/FILE (plain, gzip or zstd)
    #[arg(short, long, value_name = "FILE|s3://...|pvc:...")]
    file: String,
    /// Restore even when the target already holds data (databases in the file are replaced).
    /// After the file, the target's own credentials (from its container's environment,
    /// i.e. its Secret) are set again, so its applications can still log in
    #[arg(short, long)]
    yes: bool,
    /// Compress the exec stream on the client (zstd) and decompress it in the container
    /// with the image's zstd, so it carries a quarter of the bytes; the SQL as it is where
    /// the image has no zstd, or with `--compress-in-pod=false` [default: true]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    compress_in_pod: Option<bool>,
    /// Time limit for the whole restore
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
struct ListArgs {
    /// Directory, s3://BUCKET/PREFIX/, or pvc:NAME (the backup PVC of a schedule)
    #[arg(default_value = ".", value_name = "DIR|s3://BUCKET/PREFIX/|pvc:NAME")]
    location: String,
    /// Time limit for starting the reader pod and listing (pvc:NAME)
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct SnapshotArgs {
    #[command(subcommand)]
    action: Option<SnapshotAction>,
    #[command(flatten)]
    target: TargetArgs,
    /// VolumeSnapshotClass (default: the cluster's default class)
    #[arg(long, value_name = "CLASS")]
    class: Option<String>,
    /// How long to wait for the snapshots to be readyToUse
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    timeout: Duration,
    /// Do not quiesce the database: the snapshot is what a power cut would leave (the
    /// server recovers it on start). By default PostgreSQL is held in backup mode and
    /// MySQL/MariaDB under a read lock until the snapshots are cut
    #[arg(long)]
    crash_consistent: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Subcommand)]
enum SnapshotAction {
    /// List the snapshots kubectl dbbackup took in the namespace (of one database)
    List(SnapshotListArgs),
    /// Delete a snapshot kubectl dbbackup took
    Delete(SnapshotDeleteArgs),
}

#[derive(Args)]
struct SnapshotListArgs {
    /// Pod or StatefulSet of the database: POD, pod/NAME or sts/NAME (default: every database)
    #[arg(value_parser = cli::parse_target)]
    target: Option<String>,
    /// Also VolumeSnapshots not taken by kubectl dbbackup
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
struct SnapshotDeleteArgs {
    /// VolumeSnapshot name
    name: String,
    /// Also delete a VolumeSnapshot that kubectl dbbackup did not take
    #[arg(long)]
    any: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
#[command(group = clap::ArgGroup::new("when").args(["every", "at", "cron"]).required(true))]
struct ScheduleArgs {
    #[command(subcommand)]
    action: Option<ScheduleAction>,
    /// StatefulSet (or its pod) of the database: NAME, sts/NAME or POD
    #[arg(required = true, value_parser = cli::parse_target)]
    target: Option<String>,
    /// Run every PERIOD: minutes that divide an hour (15m) or hours that divide a day (6h, 1d)
    #[arg(long, value_name = "PERIOD", value_parser = cron::parse_every)]
    every: Option<When>,
    /// Run once a day at HH:MM (24-hour clock, in --time-zone)
    #[arg(long, value_name = "HH:MM", value_parser = cron::parse_at)]
    at: Option<When>,
    /// A 5-field cron expression: minute hour day-of-month month day-of-week
    #[arg(long, value_name = "EXPR")]
    cron: Option<String>,
    /// IANA time zone the schedule runs in (the CronJob's timeZone); next runs are shown in it
    #[arg(long, value_name = "ZONE", default_value = cron::DEFAULT_TIME_ZONE)]
    time_zone: String,
    /// Where backups go: pvc (<name>-backups) or pvc:NAME; created when missing
    #[arg(long, value_name = "pvc[:NAME]", default_value = "pvc")]
    to: String,
    /// Size of the backup PVC when it is created
    #[arg(long, default_value = "10Gi")]
    size: String,
    /// StorageClass of the backup PVC when it is created (default: the cluster's default)
    #[arg(long, value_name = "CLASS")]
    storage_class: Option<String>,
    /// Keep the newest N backups (after each good dump; default 7 when no --keep-within)
    #[arg(long, value_name = "N")]
    keep: Option<u32>,
    /// Keep backups younger than this, e.g. 7d, 36h (with --keep: either rule keeps a file)
    #[arg(long, value_name = "AGE", value_parser = cron::parse_age)]
    keep_within: Option<Duration>,
    /// Compression of the backup files, done by the job in the database image (the official
    /// postgres, mariadb and mysql images have gzip and zstd; a run fails when the one
    /// chosen is missing)
    #[arg(long, value_enum, default_value = "gzip")]
    compress: Compression,
    /// Time limit of one run (the Job's activeDeadlineSeconds)
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    timeout: Duration,
    /// Print the objects instead of applying them: client (reads the database, writes
    /// nothing) or server (validated by the API server, nothing stored)
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "client", default_value = "none")]
    dry_run: DryRun,
    /// Take over fields another field manager owns
    #[arg(long)]
    force_conflicts: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Subcommand)]
enum ScheduleAction {
    /// List the backup schedules in the namespace
    List(ScheduleListArgs),
    /// Delete a database's backup schedule (the PVC and its backups stay)
    Delete(ScheduleNameArgs),
    /// Run a backup now from the schedule's CronJob and wait for its result
    RunNow(RunNowArgs),
}

#[derive(Args)]
struct ScheduleListArgs {
    /// Database (StatefulSet) whose schedule to show (default: every one)
    target: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
struct ScheduleNameArgs {
    /// Database (StatefulSet or pod, also sts/NAME) or the schedule's CronJob
    target: String,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
struct RunNowArgs {
    /// Database (StatefulSet or pod, also sts/NAME) or the schedule's CronJob
    target: String,
    /// How long to wait for the run to end (it goes on after that)
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn main() {
    crate::man::hook(Cli::command);
    crate::complete::hook(Cli::command);
    let cli = Cli::parse();
    cli::init(&cli.global);
    cli::run_main(|| run(cli))
}

async fn run(cli: Cli) -> Result<i32, Error> {
    let global = cli.global;
    let command = match (cli.command, cli.dump) {
        (Some(command), None) => command,
        (None, Some(args)) => Command::Dump(args),
        (Some(_), Some(_)) => {
            return Err(Error::Usage(
                "dump's arguments (a TARGET, -f, -o ...) go after `dump`, not before another subcommand".into(),
            ));
        }
        // clap requires a target when no subcommand is named.
        (None, None) => return Err(Error::Usage("name a database pod or a subcommand".into())),
    };
    match command {
        Command::Dump(args) => run_dump(&global, args).await,
        Command::Verify(args) => run_verify(&global, args).await,
        Command::Restore(args) => run_restore(&global, args).await,
        Command::Drill(args) => run_drill(&global, args).await,
        Command::List(args) => run_list(&global, args).await,
        Command::Schedule(args) => run_schedule(&global, args).await,
        Command::Snapshot(args) => run_snapshot(&global, args).await,
        Command::Completion(args) => {
            args.print(Cli::command(), "kubectl-dbbackup");
            Ok(exit::SUCCESS)
        }
    }
}

async fn run_dump(global: &GlobalArgs, args: DumpArgs) -> Result<i32, Error> {
    let format = args.output;
    if let Some(db) = &args.database {
        backup::dump::validate_database(db)?;
    }
    let destination = match args.file.as_deref() {
        None => Destination::Default,
        Some("-") => Destination::Stdout,
        Some(text) => match Location::parse(text)? {
            Location::S3(url) => Destination::Object(url),
            Location::Local(path) => Destination::File(path),
        },
    };
    if destination == Destination::Stdout && !format.is_table() {
        return Err(Error::Usage(
            "-o json/yaml needs stdout; write the dump to a file with -f FILE".into(),
        ));
    }
    let named = match &destination {
        Destination::File(path) => {
            backup::dump::refuse_existing(path, args.force)?;
            Some(path.to_string_lossy().into_owned())
        }
        Destination::Object(url) if !url.is_prefix() => Some(url.to_string()),
        _ => None,
    };
    if let Some(name) = named
        && let Some(named) = Compression::from_file_name(&name)
        && named != args.compress
    {
        eprintln!(
            "warning: {name} is named like a {named} file but is written with --compress {}",
            args.compress
        );
    }
    backup::parallel::validate(args.parallel, args.database.as_deref(), &destination)?;
    let to_stdout = destination == Destination::Stdout;
    let kube = client::connect_within(global, args.timeout).await?;
    let target =
        target::named_or_selected(&kube, args.target.as_deref(), args.selector.as_deref()).await?;
    let options = DumpOptions {
        target,
        container: args.container,
        destination,
        compression: args.compress,
        database: args.database,
        with_credentials: args.with_credentials,
        timeout: args.timeout,
        progress: global.show_progress(),
        force: args.force,
        compress_in_pod: args
            .compress_in_pod
            .unwrap_or(backup::dump::COMPRESS_IN_POD_DEFAULT),
        parallel: args.parallel,
    };
    let report = backup::dump(&kube, &options).await?;
    if to_stdout {
        // stdout is the dump itself.
        eprint!("{}", report.render(Width::of_stdout()));
    } else {
        output::print_report(&report, &format)?;
    }
    Ok(exit::SUCCESS)
}

/// The backup a FILE argument names: a local file, an object (`s3://`), or, for
/// `pvc:NAME/FILE`, a copy fetched from the PVC into a private temporary directory (removed
/// when the returned copy is dropped). The label is what the report shows.
async fn resolve_file(
    global: &GlobalArgs,
    text: &str,
    timeout: Duration,
) -> Result<(Option<pvc_source::LocalCopy>, Location), Error> {
    let Some(location) = pvc_source::parse(text) else {
        return Location::parse(text).map(|location| (None, location));
    };
    let location = location?;
    let Some(name) = location.file else {
        return Err(Error::Usage(
            "name a file: pvc:NAME/FILE (`kubectl dbbackup list pvc:NAME` lists them)".into(),
        ));
    };
    let kube = client::connect_within(global, timeout).await?;
    let copy = pvc_source::LocalCopy::create()?;
    let path = pvc_source::fetch(&kube, &location.claim, &name, &copy.dir, timeout).await?;
    Ok((Some(copy), Location::Local(path)))
}

async fn run_pvc_list(global: &GlobalArgs, args: &ListArgs, claim: &str) -> Result<i32, Error> {
    let kube = client::connect_within(global, args.timeout).await?;
    let found = pvc_source::list(&kube, claim, args.timeout).await?;
    let list = backup::list::from_pvc(claim, found, k8s_openapi::jiff::Timestamp::now());
    if list.backups.is_empty() && args.output.format.is_table() {
        eprintln!("no backups on PVC {claim}");
        return Ok(exit::SUCCESS);
    }
    output::print_report(&list, &args.output.format)?;
    Ok(exit::SUCCESS)
}

async fn run_verify(global: &GlobalArgs, args: VerifyArgs) -> Result<i32, Error> {
    let (copy, location) = resolve_file(global, &args.file, Duration::from_secs(600)).await?;
    match &location {
        Location::Local(path) if !path.is_file() => {
            return Err(Error::Usage(format!("{} is not a file", path.display())));
        }
        Location::S3(url) if url.is_prefix() => {
            return Err(Error::Usage(format!(
                "{url} is a prefix: name the object to verify (kubectl dbbackup list {url})"
            )));
        }
        _ => {}
    }
    let mut report = match args.deep {
        true => backup::verify::verify_deep(&location).await?,
        false => backup::verify::verify_at(&location).await?,
    };
    if copy.is_some() {
        report.file = args.file.clone();
    }
    output::print_report(&report, &args.output.format)?;
    Ok(if report.ok {
        exit::SUCCESS
    } else {
        exit::UNHEALTHY
    })
}

async fn run_restore(global: &GlobalArgs, args: RestoreArgs) -> Result<i32, Error> {
    // Everything about the file is checked before connecting: nothing is sent from a bad file.
    let (copy, file) = resolve_file(global, &args.file, args.timeout).await?;
    let (_, kind) = backup::restore::check_location(&file).await?;
    let kube = client::connect_within(global, args.timeout).await?;
    let options = RestoreOptions {
        target: args.target.one(&kube).await?,
        container: args.target.container.name.clone(),
        file,
        yes: args.yes,
        timeout: args.timeout,
        progress: global.show_progress(),
        compress_in_pod: args
            .compress_in_pod
            .unwrap_or(backup::restore::COMPRESS_IN_POD_DEFAULT),
    };
    let mut report = backup::restore(&kube, &options, kind).await?;
    if copy.is_some() {
        report.file = args.file.clone();
    }
    output::print_report(&report, &args.output.format)?;
    Ok(exit::SUCCESS)
}

async fn run_drill(global: &GlobalArgs, args: DrillArgs) -> Result<i32, Error> {
    // The file and its manifest are checked before connecting: nothing is created for a
    // file that cannot be drilled.
    let (copy, location) = resolve_file(global, &args.file, args.timeout).await?;
    let (verified, kind) = backup::restore::check_location(&location).await?;
    let options = DrillOptions {
        file: location,
        image: args.image,
        storage_size: args.storage_size,
        storage_class: args.storage_class,
        timeout: args.timeout,
        progress: global.show_progress(),
    };
    let manifest = backup::drill::read_manifest(&options, kind).await?;
    let kube = client::connect_within(global, args.timeout).await?;
    let mut report = backup::drill(&kube, &options, &verified, kind, &manifest).await?;
    if copy.is_some() {
        // The evidence names the backup as the user did (pvc:NAME/FILE), not the local copy.
        report.file = args.file.clone();
    }
    output::print_report(&report, &args.output.format)?;
    Ok(if report.passed {
        exit::SUCCESS
    } else {
        exit::UNHEALTHY
    })
}

async fn run_list(global: &GlobalArgs, args: ListArgs) -> Result<i32, Error> {
    match pvc_source::parse(&args.location) {
        Some(Ok(pvc)) if pvc.file.is_none() => {
            return run_pvc_list(global, &args, &pvc.claim).await;
        }
        Some(Ok(_)) => {
            return Err(Error::Usage(format!(
                "list takes pvc:NAME, not the file {:?}",
                args.location
            )));
        }
        Some(Err(err)) => return Err(err),
        None => {}
    }
    let location = Location::parse(&args.location)?;
    let list = backup::list::list(&location, k8s_openapi::jiff::Timestamp::now()).await?;
    if list.backups.is_empty() && args.output.format.is_table() {
        eprintln!("no backups in {location}");
        return Ok(exit::SUCCESS);
    }
    output::print_report(&list, &args.output.format)?;
    Ok(exit::SUCCESS)
}

async fn run_snapshot(global: &GlobalArgs, args: SnapshotArgs) -> Result<i32, Error> {
    match args.action {
        Some(SnapshotAction::List(list)) => return run_snapshot_list(global, list).await,
        Some(SnapshotAction::Delete(delete)) => return run_snapshot_delete(global, delete).await,
        None => {}
    }
    let kube = client::connect_within(global, args.timeout).await?;
    let options = SnapshotOptions {
        target: args.target.one(&kube).await?,
        container: args.target.container.name.clone(),
        class: args.class,
        timeout: args.timeout,
        crash_consistent: args.crash_consistent,
        progress: global.show_progress(),
    };
    let report = backup::snapshot(&kube, &options).await?;
    output::print_report(&report, &args.output.format)?;
    Ok(exit::SUCCESS)
}

async fn run_snapshot_list(global: &GlobalArgs, args: SnapshotListArgs) -> Result<i32, Error> {
    let kube = client::connect(global).await?;
    let list = snapshot_list::list(&kube, args.target.as_deref(), args.all).await?;
    if list.is_empty() && args.output.format.is_table() {
        eprintln!("no snapshots in namespace {}", kube.namespace);
        return Ok(exit::SUCCESS);
    }
    output::print_report(&list, &args.output.format)?;
    Ok(exit::SUCCESS)
}

async fn run_snapshot_delete(global: &GlobalArgs, args: SnapshotDeleteArgs) -> Result<i32, Error> {
    let kube = client::connect(global).await?;
    let deleted = snapshot_list::delete(&kube, &args.name, args.any).await?;
    match &args.output.format {
        OutputFormat::Table | OutputFormat::Wide => println!(
            "deleted VolumeSnapshot {}/{} (of PVC {})",
            deleted.namespace, deleted.name, deleted.pvc
        ),
        format => print!("{}", output::format_document(&deleted, format)?),
    }
    Ok(exit::SUCCESS)
}

async fn run_schedule(global: &GlobalArgs, args: ScheduleArgs) -> Result<i32, Error> {
    match args.action {
        Some(ScheduleAction::List(list)) => return run_schedule_list(global, list).await,
        Some(ScheduleAction::Delete(delete)) => {
            let kube = client::connect(global).await?;
            let deleted = schedule::delete(&kube, &delete.target).await?;
            match &delete.output.format {
                format if format.is_table() => println!(
                    "deleted CronJob {}/{} and its Jobs{}",
                    deleted.namespace,
                    deleted.cron_job,
                    deleted
                        .pvc_kept
                        .as_ref()
                        .map(|p| format!("; PVC {p} and the backups on it are kept"))
                        .unwrap_or_default()
                ),
                format => print!("{}", output::format_document(&deleted, format)?),
            }
            return Ok(exit::SUCCESS);
        }
        Some(ScheduleAction::RunNow(run)) => return run_schedule_now(global, run).await,
        None => {}
    }
    // Everything about the flags is checked before connecting.
    let when = match (args.every, args.at, args.cron) {
        (Some(when), _, _) | (None, Some(when), _) => when,
        (None, None, Some(expr)) => When::Cron(expr),
        (None, None, None) => return Err(Error::Usage("give --every, --at or --cron".into())),
    };
    let schedule = cron::schedule(&when, Some(&args.time_zone))?;
    if args.timeout.as_secs() < 60 {
        return Err(Error::Usage("--timeout must be at least 1m".into()));
    }
    let claim = schedule::parse_destination(&args.to).map_err(Error::Usage)?;
    let keep = match (args.keep, args.keep_within) {
        (None, None) => 7,
        (keep, _) => keep.unwrap_or(0),
    };
    let kube = client::connect(global).await?;
    let options = schedule::ScheduleOptions {
        target: args.target.unwrap_or_default(),
        schedule,
        claim,
        size: args.size,
        storage_class: args.storage_class,
        keep,
        keep_within: args.keep_within.unwrap_or_default(),
        compression: args.compress,
        timeout: args.timeout,
        dry_run: args.dry_run,
        force_conflicts: args.force_conflicts,
    };
    let (report, objects) = schedule::schedule(&kube, &options, jiff::Timestamp::now()).await?;
    if args.dry_run == DryRun::Client && !args.output.format.is_table() {
        match &args.output.format {
            OutputFormat::Yaml => print!("{}", output::objects_to_yaml(&objects)?),
            format => output::print_document(
                &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}),
                format,
            )?,
        }
        return Ok(exit::SUCCESS);
    }
    output::print_report(&report, &args.output.format)?;
    Ok(exit::SUCCESS)
}

async fn run_schedule_list(global: &GlobalArgs, args: ScheduleListArgs) -> Result<i32, Error> {
    let kube = client::connect(global).await?;
    let list = schedule::list(&kube, args.target.as_deref()).await?;
    if list.is_empty() && args.output.format.is_table() {
        eprintln!("no backup schedules in namespace {}", kube.namespace);
        return Ok(exit::SUCCESS);
    }
    output::print_report(&list, &args.output.format)?;
    Ok(exit::SUCCESS)
}

async fn run_schedule_now(global: &GlobalArgs, args: RunNowArgs) -> Result<i32, Error> {
    let kube = client::connect(global).await?;
    let progress = Progress::spinner(global.show_progress());
    let report = schedule_run::run_now(&kube, &args.target, args.timeout, &progress).await?;
    output::print_report(&report, &args.output.format)?;
    Ok(if report.run.state == "succeeded" {
        exit::SUCCESS
    } else {
        exit::UNHEALTHY
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(line.split_whitespace())
    }

    #[test]
    fn dump_is_the_default_action() {
        let cli = parse("kdb -n ns --compress zstd mysql-0 -f x").unwrap();
        assert!(cli.command.is_none());
        let dump = cli.dump.unwrap();
        assert_eq!(dump.target.as_deref(), Some("mysql-0"));
        assert_eq!(dump.compress, Compression::Zstd);
        assert_eq!(cli.global.namespace.as_deref(), Some("ns"));
        let cli = parse("kdb dump mysql-0 -o json").unwrap();
        assert!(matches!(cli.command, Some(Command::Dump(_))));
        let cli = parse("kdb -n ns verify f").unwrap();
        assert!(matches!(cli.command, Some(Command::Verify(_))));
        assert!(cli.dump.is_none());
        // A target before a subcommand: both are parsed, and `run` refuses the mix.
        let cli = parse("kdb mysql-0 verify f").unwrap();
        assert!(cli.dump.is_some() && cli.command.is_some());
        assert!(parse("kdb").is_err());
        // kubectl's targets, a selector instead of one, and the container.
        let dump = parse("kdb sts/mysql -c db").unwrap().dump.unwrap();
        assert_eq!(dump.target.as_deref(), Some("sts/mysql"));
        assert_eq!(dump.container.as_deref(), Some("db"));
        let dump = parse("kdb -l app=mysql").unwrap().dump.unwrap();
        assert_eq!(dump.selector.as_deref(), Some("app=mysql"));
        assert!(parse("kdb -l app=mysql mysql-0").is_err());
        assert!(parse("kdb deploy/mysql").is_err());
        let cli = parse("kdb snapshot -l app=mysql").unwrap();
        assert!(matches!(cli.command, Some(Command::Snapshot(_))));
        let cli = parse("kdb restore po/mysql-0 -c db -f x").unwrap();
        let Some(Command::Restore(restore)) = cli.command else {
            panic!("restore expected")
        };
        assert_eq!(restore.target.target.as_deref(), Some("po/mysql-0"));
        assert_eq!(restore.target.container.name.as_deref(), Some("db"));
        assert!(parse("kdb restore -f x").is_err());
        Cli::command().debug_assert();
    }
}
