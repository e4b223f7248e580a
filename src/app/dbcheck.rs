//! `kubectl dbcheck`: health report and automatic diagnosis of a database.

use std::time::Duration;

use crate::check::{self, CheckOptions};
use crate::cli::{
    self, AllNamespacesArgs, CompletionArgs, ContainerArgs, GlobalArgs, OutputArgs, exit,
    parse_duration,
};
use crate::output::{self, Progress};
use crate::{Error, client};
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kubectl dbcheck",
    bin_name = "kubectl dbcheck",
    version,
    about = "Check a database's health and diagnose what is wrong, with the fix",
    args_conflicts_with_subcommands = true,
    mut_arg("all_namespaces", |arg| arg.help("Every namespace (without a target)")),
    mut_arg("output", |arg| arg.help("Output: table | wide (every check on its own row) | json | yaml")),
    after_help = "Examples:\n  kubectl dbcheck postgres-0\n  kubectl dbcheck mysql            # a StatefulSet: checks its pod -0 (also sts/mysql)\n  kubectl dbcheck mysql-0 --logs=50  # with the container's last 50 log lines\n  kubectl dbcheck -l team=shop     # every database the selector matches\n  kubectl dbcheck                  # every database in the namespace, one line each\n  kubectl dbcheck -A -o json       # every namespace, for CI\n\nExit status: 0 nothing failed, 1 a check failed, 2 bad usage, 3 the cluster could not be read."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    /// Pod (mysql-0, pod/mysql-0) or StatefulSet (mysql, sts/mysql); none: every database in the namespace
    #[arg(value_parser = cli::parse_target)]
    target: Option<String>,
    /// Every database this label selector matches (on the StatefulSet or its pods)
    #[arg(short = 'l', long, value_name = "SELECTOR", conflicts_with = "target", value_parser = cli::parse_selector)]
    selector: Option<String>,
    #[command(flatten)]
    container: ContainerArgs,
    #[command(flatten)]
    scope: AllNamespacesArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Time limit of each command run in the pod
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    exec_timeout: Duration,
    /// Add the database container's last N log lines (and its previous container's, after a restart) to the report
    #[arg(long, value_name = "N", num_args = 0..=1, require_equals = true, default_missing_value = "20", value_parser = clap::value_parser!(i64).range(1..=10000))]
    logs: Option<i64>,
    /// backup.recent warns when the newest scheduled backup is older than this (e.g. 26h, 2d)
    #[arg(long, value_name = "AGE", default_value = "26h", value_parser = crate::backup::cron::parse_age)]
    backup_max_age: Duration,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print a shell completion script
    Completion(CompletionArgs),
}

pub fn main() {
    crate::man::hook(Cli::command);
    crate::complete::hook(Cli::command);
    let cli = Cli::parse();
    cli::init(&cli.global);
    cli::run_main(|| run(cli))
}

async fn run(cli: Cli) -> Result<i32, Error> {
    if let Some(Command::Completion(args)) = cli.command {
        args.print(Cli::command(), "kubectl-dbcheck");
        return Ok(exit::SUCCESS);
    }
    let format = cli.output.format;
    if cli.scope.all_namespaces && cli.target.is_some() {
        return Err(Error::Usage(
            "-A checks every database; it takes no target (use -n NAMESPACE TARGET)".into(),
        ));
    }
    if cli.exec_timeout.is_zero() {
        return Err(Error::Usage("--exec-timeout must be more than 0".into()));
    }
    if cli.logs.is_some() && cli.target.is_none() {
        return Err(Error::Usage(
            "--logs needs a target (kubectl dbcheck POD --logs)".into(),
        ));
    }
    let mut options = CheckOptions {
        exec_timeout: cli.exec_timeout,
        logs: cli.logs,
        backup_max_age: cli.backup_max_age,
        container: cli.container.name.clone(),
        ..Default::default()
    };
    if !cli.global.request_timeout.is_zero() {
        options.api_timeout = cli.global.request_timeout;
    }
    let kube = client::connect_within(&cli.global, options.api_timeout).await?;
    let progress = Progress::spinner(cli.global.show_progress());
    match &cli.target {
        Some(target) => {
            progress.set(format!("checking {target}"));
            let report = check::check(&kube, target, &options).await?;
            progress.finish();
            output::print_report(&report, &format)?;
            Ok(if report.healthy() {
                exit::SUCCESS
            } else {
                exit::UNHEALTHY
            })
        }
        None => {
            progress.set("checking every database");
            let report = check::check_all(
                &kube,
                cli.scope.all_namespaces,
                cli.selector.as_deref(),
                &options,
            )
            .await?;
            progress.finish();
            if let Some(note) = report.nothing_found()
                && format.is_table()
            {
                eprintln!("{note}");
            }
            output::print_report(&report, &format)?;
            Ok(if report.healthy() {
                exit::SUCCESS
            } else {
                exit::UNHEALTHY
            })
        }
    }
}
