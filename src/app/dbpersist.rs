//! `kubectl dbpersist`: prove a database's data survives the death of its pod.

use std::time::Duration;

use crate::cli::{
    self, CompletionArgs, ContainerArgs, GlobalArgs, OutputArgs, exit, parse_duration,
};
use crate::output::{self, Progress};
use crate::persist::{self, PersistOptions};
use crate::{Error, client};
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kubectl dbpersist",
    bin_name = "kubectl dbpersist",
    version,
    about = "Prove a database's data survives the death of its pod: write a marker row, delete the pod, read the row back from its replacement",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "A pod whose data directory is not on a PersistentVolumeClaim (emptyDir, hostPath, the container's own file system) is a FAIL from its spec alone: nothing is written or deleted unless --delete-ephemeral-data.\n\nExit codes: 0 PASS, 1 FAIL, 2 bad usage or refused (also: no terminal to confirm on and no --yes), 3 timeout or cluster error, 130 interrupted.\n\nExamples:\n  kubectl dbpersist mysql-0\n  kubectl dbpersist postgres --timeout 10m --yes -o json\n  kubectl dbpersist orders --pod orders-1 --keep"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    /// Pod (mysql-0, pod/mysql-0) or StatefulSet (mysql, sts/mysql) of the database to test
    #[arg(required = true, value_parser = cli::parse_target)]
    target: Option<String>,
    #[command(flatten)]
    container: ContainerArgs,
    /// The pod to delete when TARGET is a StatefulSet: a name (mysql-1) or an ordinal (1)
    #[arg(long, value_name = "POD")]
    pod: Option<String>,
    /// How long to wait for the replacement pod to be Ready and its server to answer
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    timeout: Duration,
    /// Leave the marker row (and testdb.persistent_test) in place
    #[arg(long)]
    keep: bool,
    /// Delete the pod without asking; without a terminal on stdin, --yes is required
    #[arg(short, long)]
    yes: bool,
    /// Test a pod whose data directory is not on a PersistentVolumeClaim anyway, destroying its data
    #[arg(long)]
    delete_ephemeral_data: bool,
    #[command(flatten)]
    output: OutputArgs,
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
        args.print(Cli::command(), "kubectl-dbpersist");
        return Ok(exit::SUCCESS);
    }
    let options = PersistOptions {
        target: cli.target.clone().unwrap_or_default(),
        container: cli.container.name.clone(),
        pod: cli.pod.clone(),
        timeout: cli.timeout,
        keep: cli.keep,
        delete_ephemeral_data: cli.delete_ephemeral_data,
    };
    options.validate()?;

    let kube = client::connect_within(&cli.global, cli.timeout).await?;
    let plan = persist::plan(&kube, &options).await?;
    // A pod whose data would die with it is reported FAIL by `run` without any write or
    // delete, so there is nothing to announce or confirm.
    if plan.may_delete(&options) {
        // Always say which pod goes, even with --yes or --quiet: it is the database's only pod.
        let context = client::context_name(&cli.global).unwrap_or_else(|| "(none)".into());
        eprintln!("will delete {} (context {context})", plan.describe());
        if !cli.yes {
            let data = if plan.ephemeral.is_some() {
                " and destroy its data"
            } else {
                ""
            };
            // Off a terminal this refuses (exit 2): a script must say --yes.
            cli::confirm(
                &format!(
                    "Delete pod {}/{}{data} to test persistence?",
                    plan.namespace, plan.pod_name
                ),
                &plan.pod_name,
            )?;
        }
    }
    let progress = Progress::spinner(cli.global.show_progress());
    let report = persist::run(&kube, &plan, &options, &progress).await?;
    progress.finish();
    output::print_report(&report, &cli.output.format)?;
    if report.exit_code != exit::SUCCESS {
        eprintln!("error: {}", report.message);
    }
    Ok(report.exit_code)
}
