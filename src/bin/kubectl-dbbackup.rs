//! `kubectl dbbackup`: streamed, verified dumps; their verification; restores; CSI snapshots.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use indicatif::HumanBytes;
use kubectl_db::backup::{
    self, Compression, Destination, DumpOptions, RestoreOptions, SnapshotOptions, snapshot_list,
};
use kubectl_db::cli::{self, GlobalArgs, OutputFormat, Shell, exit, parse_duration};
use kubectl_db::output;
use kubectl_db::{Error, client};

#[derive(Parser)]
#[command(
    name = "kubectl dbbackup",
    bin_name = "kubectl dbbackup",
    version,
    about = "Back up and restore PostgreSQL, MySQL and MariaDB: streamed, verified dumps and volume snapshots",
    after_help = "Examples:\n  kubectl dbbackup postgres                      # postgres-<UTC time>.sql.gz + .sha256\n  kubectl dbbackup mysql-0 -f nightly.sql.zst --compress zstd\n  kubectl dbbackup postgres --database appdb -f - | gzip -d | less\n  kubectl dbbackup verify postgres-20261125T130405Z.sql.gz\n  kubectl dbbackup restore postgres -f postgres-20261125T130405Z.sql.gz\n  kubectl dbbackup snapshot postgres --class csi-snapclass\n  kubectl dbbackup snapshot list postgres\n  kubectl dbbackup snapshot delete data-postgres-0-20261125t130405z"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dump every database (or one) to a file (the default action)
    Dump(DumpArgs),
    /// Check a backup file's checksum and completion trailer (exit 1 when either is wrong)
    Verify(VerifyArgs),
    /// Stream a backup file into the database
    Restore(RestoreArgs),
    /// Take a CSI VolumeSnapshot of each of the pod's volumes
    Snapshot(SnapshotArgs),
    /// Print a shell completion script
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Args)]
struct DumpArgs {
    /// Pod or StatefulSet of the database
    target: String,
    /// Backup file, or - for stdout (default: <name>-<UTC timestamp>.sql.gz)
    #[arg(short, long, value_name = "FILE|-")]
    file: Option<String>,
    /// Compression of the file
    #[arg(long, value_enum, default_value = "gzip")]
    compress: Compression,
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
    /// Time limit for the whole dump
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    timeout: Duration,
    /// Output: table | json | yaml
    #[arg(short, long, value_enum, default_value = "table")]
    output: OutputFormat,
}

#[derive(Args)]
struct VerifyArgs {
    /// Backup file
    file: PathBuf,
    /// Output: table | json | yaml
    #[arg(short, long, value_enum, default_value = "table")]
    output: OutputFormat,
}

#[derive(Args)]
struct RestoreArgs {
    /// Pod or StatefulSet of the database
    target: String,
    /// Backup file (plain, gzip or zstd)
    #[arg(short, long)]
    file: PathBuf,
    /// Restore even when the target already holds data (databases in the file are replaced).
    /// After the file, the target's own credentials (from its container's environment,
    /// i.e. its Secret) are set again, so its applications can still log in
    #[arg(short, long)]
    yes: bool,
    /// Time limit for the whole restore
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    timeout: Duration,
    /// Output: table | json | yaml
    #[arg(short, long, value_enum, default_value = "table")]
    output: OutputFormat,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct SnapshotArgs {
    #[command(subcommand)]
    action: Option<SnapshotAction>,
    /// Pod or StatefulSet of the database
    #[arg(required = true)]
    target: Option<String>,
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
    /// Output: table | json | yaml
    #[arg(short, long, value_enum, default_value = "table")]
    output: OutputFormat,
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
    /// Pod or StatefulSet of the database (default: every database)
    target: Option<String>,
    /// Also VolumeSnapshots not taken by kubectl dbbackup
    #[arg(long)]
    all: bool,
    /// Output: table | json | yaml
    #[arg(short, long, value_enum, default_value = "table")]
    output: OutputFormat,
}

#[derive(Args)]
struct SnapshotDeleteArgs {
    /// VolumeSnapshot name
    name: String,
    /// Also delete a VolumeSnapshot that kubectl dbbackup did not take
    #[arg(long)]
    any: bool,
    /// Output: table | json | yaml
    #[arg(short, long, value_enum, default_value = "table")]
    output: OutputFormat,
}

/// Subcommand names; any other first word is a dump target (`kubectl dbbackup mysql-0`).
const SUBCOMMANDS: &[&str] = &[
    "dump",
    "verify",
    "restore",
    "snapshot",
    "completion",
    "help",
];
/// Flags that take their value as the next word, to skip while looking for the first word.
const FLAGS_WITH_VALUE: &[&str] = &[
    "--kubeconfig",
    "--context",
    "--cluster",
    "--user",
    "-n",
    "--namespace",
    "--request-timeout",
    "-f",
    "--file",
    "--compress",
    "--database",
    "--timeout",
    "-o",
    "--output",
];

/// `dump` is the default action: inserts it when the first word is not a subcommand.
fn with_default_subcommand(args: Vec<String>) -> Vec<String> {
    let mut skip_next = false;
    for word in args.iter().skip(1) {
        if skip_next {
            skip_next = false;
            continue;
        }
        if word == "--" {
            break;
        }
        if word.starts_with('-') {
            skip_next = FLAGS_WITH_VALUE.contains(&word.as_str());
            if matches!(word.as_str(), "-h" | "--help" | "-V" | "--version") {
                return args;
            }
            continue;
        }
        if SUBCOMMANDS.contains(&word.as_str()) {
            return args;
        }
        break;
    }
    if args.len() < 2 {
        return args;
    }
    let mut with_dump = args;
    with_dump.insert(1, "dump".into());
    with_dump
}

fn main() {
    kubectl_db::man::hook(Cli::command);
    kubectl_db::complete::hook(Cli::command, Some("dump"));
    let cli = Cli::parse_from(with_default_subcommand(std::env::args().collect()));
    cli::init_tracing(cli.global.verbose);
    cli::run_main(|| run(cli))
}

async fn run(cli: Cli) -> Result<i32, Error> {
    let global = cli.global;
    match cli.command {
        Command::Dump(args) => run_dump(&global, args).await,
        Command::Verify(args) => run_verify(args),
        Command::Restore(args) => run_restore(&global, args).await,
        Command::Snapshot(args) => run_snapshot(&global, args).await,
        Command::Completion { shell } => {
            cli::print_completion(&mut Cli::command(), shell, "kubectl-dbbackup");
            Ok(exit::SUCCESS)
        }
    }
}

async fn run_dump(global: &GlobalArgs, args: DumpArgs) -> Result<i32, Error> {
    let target = args.target;
    if let Some(db) = &args.database {
        backup::dump::validate_database(db)?;
    }
    let destination = match args.file.as_deref() {
        None => Destination::Default,
        Some("-") => Destination::Stdout,
        Some(path) => Destination::File(PathBuf::from(path)),
    };
    if destination == Destination::Stdout && args.output != OutputFormat::Table {
        return Err(Error::Usage(
            "-o json/yaml needs stdout; write the dump to a file with -f FILE".into(),
        ));
    }
    if let Destination::File(path) = &destination {
        backup::dump::refuse_existing(path, args.force)?;
        if let Some(named) = Compression::from_file_name(&path.to_string_lossy())
            && named != args.compress
        {
            eprintln!(
                "warning: {} is named like a {named} file but is written with --compress {}",
                path.display(),
                args.compress
            );
        }
    }
    let to_stdout = destination == Destination::Stdout;
    let kube = client::connect_within(global, args.timeout).await?;
    let options = DumpOptions {
        target,
        destination,
        compression: args.compress,
        database: args.database,
        with_credentials: args.with_credentials,
        timeout: args.timeout,
        progress: global.show_progress(),
        force: args.force,
    };
    let report = backup::dump(&kube, &options).await?;
    match args.output {
        OutputFormat::Table => {
            let lines = [
                format!(
                    "dumped {}/{} ({}) to {}",
                    report.namespace, report.pod, report.engine, report.file
                ),
                format!(
                    "  {} SQL, {} written ({}) in {:.1}s ({}/s)",
                    HumanBytes(report.bytes_raw),
                    HumanBytes(report.bytes_written),
                    report.compression,
                    report.duration_seconds,
                    HumanBytes(
                        (report.bytes_raw as f64 / report.duration_seconds.max(0.001)) as u64
                    )
                ),
                format!("  sha256 {}", report.sha256),
                format!(
                    "  remote {}, trailer {:?} present",
                    report.remote_status,
                    report.kind.trailer()
                ),
            ];
            for line in lines {
                // With -f - stdout is the dump itself.
                if to_stdout {
                    eprintln!("{line}")
                } else {
                    println!("{line}")
                }
            }
            if let Some(checksum) = &report.checksum_file {
                println!("  checksum file {checksum}");
            }
        }
        format => output::print_document(&report, format)?,
    }
    Ok(exit::SUCCESS)
}

fn run_verify(args: VerifyArgs) -> Result<i32, Error> {
    if !args.file.is_file() {
        return Err(Error::Usage(format!(
            "{} is not a file",
            args.file.display()
        )));
    }
    let report = backup::verify(&args.file)?;
    match args.output {
        OutputFormat::Table => {
            println!(
                "{}: {} ({} file, {} SQL)",
                report.file,
                if report.ok { "OK" } else { "BAD" },
                report.compression,
                HumanBytes(report.bytes_raw)
            );
            println!(
                "  checksum {}",
                if report.checksum_ok { "ok" } else { "FAILED" }
            );
            println!(
                "  trailer  {}",
                match (report.kind, report.complete) {
                    (Some(kind), true) => format!("ok ({:?})", kind.trailer()),
                    (Some(kind), false) => format!("MISSING ({:?})", kind.trailer()),
                    (None, _) => "unknown dump format".into(),
                }
            );
            for problem in &report.problems {
                println!("  problem: {problem}");
            }
        }
        format => output::print_document(&report, format)?,
    }
    Ok(if report.ok {
        exit::SUCCESS
    } else {
        exit::UNHEALTHY
    })
}

async fn run_restore(global: &GlobalArgs, args: RestoreArgs) -> Result<i32, Error> {
    // Everything about the file is checked before connecting: nothing is sent from a bad file.
    let (_, kind) = backup::check_file(&args.file)?;
    let kube = client::connect_within(global, args.timeout).await?;
    let options = RestoreOptions {
        target: args.target,
        file: args.file,
        yes: args.yes,
        timeout: args.timeout,
        progress: global.show_progress(),
    };
    let report = backup::restore(&kube, &options, kind).await?;
    match args.output {
        OutputFormat::Table => {
            println!(
                "restored {} into {}/{} ({})",
                report.file, report.namespace, report.pod, report.engine
            );
            println!(
                "  {} SQL sent in {:.1}s; remote {}",
                HumanBytes(report.bytes_sent),
                report.duration_seconds,
                report.remote_status
            );
            if !report.databases_with_data.is_empty() {
                println!(
                    "  databases that held data before: {}",
                    report.databases_with_data.join(", ")
                );
            }
        }
        format => output::print_document(&report, format)?,
    }
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
        target: args.target.unwrap_or_default(),
        class: args.class,
        timeout: args.timeout,
        crash_consistent: args.crash_consistent,
        progress: global.show_progress(),
    };
    let report = backup::snapshot(&kube, &options).await?;
    match args.output {
        OutputFormat::Table => {
            let mut table = output::table(&["snapshot", "pvc", "ready", "size"]);
            for s in &report.snapshots {
                table.add_row(vec![
                    s.name.clone(),
                    s.pvc.clone(),
                    s.ready.to_string(),
                    s.restore_size.clone().unwrap_or_default(),
                ]);
            }
            output::print_table(&table);
            println!("{}", snapshot_consistency_line(&report));
        }
        format => output::print_document(&report, format)?,
    }
    Ok(exit::SUCCESS)
}

/// How the snapshot was made consistent, in one line.
fn snapshot_consistency_line(report: &backup::SnapshotReport) -> String {
    let what = format!("{} {}", report.engine.product(), report.engine_version);
    match &report.quiesce {
        None => format!("{what}: crash-consistent (not quiesced); the server recovers it on start"),
        Some(q) if q.writes_paused => format!(
            "{what}: application-consistent, writes paused {:.2}s ({}; quiesce took {:.2}s)",
            q.held_seconds, q.method, q.quiesce_seconds
        ),
        Some(q) => format!(
            "{what}: application-consistent, {} held {:.2}s, writes not paused (quiesce took {:.2}s)",
            q.method, q.held_seconds, q.quiesce_seconds
        ),
    }
}

async fn run_snapshot_list(global: &GlobalArgs, args: SnapshotListArgs) -> Result<i32, Error> {
    let kube = client::connect(global).await?;
    let list = snapshot_list::list(&kube, args.target.as_deref(), args.all).await?;
    match args.output {
        OutputFormat::Table => {
            if list.is_empty() {
                eprintln!("no snapshots in namespace {}", kube.namespace);
                return Ok(exit::SUCCESS);
            }
            let mut table = output::table(&["name", "pvc", "ready", "size", "age", "consistent"]);
            for s in &list {
                table.add_row(vec![
                    s.name.clone(),
                    s.pvc.clone(),
                    s.ready.to_string(),
                    s.size.clone().unwrap_or_default(),
                    s.age_seconds.map(snapshot_list::age).unwrap_or_default(),
                    s.consistency.clone().unwrap_or_else(|| "unknown".into()),
                ]);
            }
            output::print_table(&table);
        }
        format => output::print_document(&list, format)?,
    }
    Ok(exit::SUCCESS)
}

async fn run_snapshot_delete(global: &GlobalArgs, args: SnapshotDeleteArgs) -> Result<i32, Error> {
    let kube = client::connect(global).await?;
    let deleted = snapshot_list::delete(&kube, &args.name, args.any).await?;
    match args.output {
        OutputFormat::Table => println!(
            "deleted VolumeSnapshot {}/{} (of PVC {})",
            deleted.namespace, deleted.name, deleted.pvc
        ),
        format => output::print_document(&deleted, format)?,
    }
    Ok(exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn dump_is_the_default_action() {
        assert_eq!(
            with_default_subcommand(words("kdb postgres")),
            words("kdb dump postgres")
        );
        assert_eq!(
            with_default_subcommand(words("kdb -n ns --compress zstd mysql-0 -f x")),
            words("kdb dump -n ns --compress zstd mysql-0 -f x")
        );
        assert_eq!(
            with_default_subcommand(words("kdb -n ns verify f")),
            words("kdb -n ns verify f")
        );
        assert_eq!(
            with_default_subcommand(words("kdb --help")),
            words("kdb --help")
        );
        assert_eq!(with_default_subcommand(words("kdb")), words("kdb"));
        Cli::command().debug_assert();
    }
}
