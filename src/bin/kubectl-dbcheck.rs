//! `kubectl dbcheck`: health report and automatic diagnosis of a database.

use std::io::IsTerminal;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use kubectl_db::check::{self, CheckOptions, CheckReport, NamespaceReport, Verdict};
use kubectl_db::cli::{self, GlobalArgs, OutputFormat, Shell, exit, parse_duration};
use kubectl_db::output::{self, Progress};
use kubectl_db::{Error, client};

#[derive(Parser)]
#[command(
    name = "kubectl dbcheck",
    bin_name = "kubectl dbcheck",
    version,
    about = "Check a database's health and diagnose what is wrong, with the fix",
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  kubectl dbcheck postgres-0\n  kubectl dbcheck mysql            # a StatefulSet: checks its pod -0\n  kubectl dbcheck                  # every database in the namespace, one line each\n  kubectl dbcheck -A -o json       # every namespace, for CI\n\nExit status: 0 nothing failed, 1 a check failed, 2 bad usage, 3 the cluster could not be read."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    /// Pod (mysql-0) or StatefulSet (mysql); none: every database in the namespace
    target: Option<String>,
    /// Every namespace (without a target)
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Output: table | json | yaml
    #[arg(short, long, value_enum, default_value = "table")]
    output: OutputFormat,
    /// Time limit of each command run in the pod
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    exec_timeout: Duration,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print a shell completion script
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
}

fn main() {
    kubectl_db::man::hook(Cli::command);
    kubectl_db::complete::hook(Cli::command, None);
    let cli = Cli::parse();
    cli::init_tracing(cli.global.verbose);
    cli::run_main(|| run(cli))
}

async fn run(cli: Cli) -> Result<i32, Error> {
    if let Some(Command::Completion { shell }) = cli.command {
        cli::print_completion(&mut Cli::command(), shell, "kubectl-dbcheck");
        return Ok(exit::SUCCESS);
    }
    if cli.all_namespaces && cli.target.is_some() {
        return Err(Error::Usage(
            "-A checks every database; it takes no target (use -n NAMESPACE TARGET)".into(),
        ));
    }
    if cli.exec_timeout.is_zero() {
        return Err(Error::Usage("--exec-timeout must be more than 0".into()));
    }
    let mut options = CheckOptions {
        exec_timeout: cli.exec_timeout,
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
            match cli.output {
                OutputFormat::Table => print_report(&report),
                format => output::print_document(&report, format)?,
            }
            Ok(if report.healthy() {
                exit::SUCCESS
            } else {
                exit::UNHEALTHY
            })
        }
        None => {
            progress.set("checking every database");
            let report = check::check_all(&kube, cli.all_namespaces, &options).await?;
            progress.finish();
            match cli.output {
                OutputFormat::Table => print_namespace(&report),
                format => output::print_document(&report, format)?,
            }
            Ok(if report.healthy() {
                exit::SUCCESS
            } else {
                exit::UNHEALTHY
            })
        }
    }
}

fn print_report(report: &CheckReport) {
    println!(
        "{} {} in namespace {}{}",
        report.engine,
        report.pod,
        report.namespace,
        report
            .statefulset
            .as_ref()
            .map(|s| format!(" (StatefulSet {s})"))
            .unwrap_or_default()
    );
    let mut table = output::boxed_table(&["check", "verdict", "evidence", "fix"]);
    // Off a terminal comfy-table cannot know the width and would never wrap.
    if !std::io::stdout().is_terminal() {
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(160);
        table.set_width(width);
    }
    for check in &report.checks {
        table.add_row(vec![
            check.name.clone(),
            check.verdict.to_string().to_uppercase(),
            check.evidence.clone(),
            check.fix.clone().unwrap_or_default(),
        ]);
    }
    output::print_table(&table);
    let s = &report.summary;
    println!(
        "{}: {} ok, {} warn, {} fail, {} skipped in {:.1}s",
        verdict_word(s.verdict),
        s.ok,
        s.warn,
        s.fail,
        s.skipped,
        report.elapsed_seconds
    );
}

fn print_namespace(report: &NamespaceReport) {
    if report.databases.is_empty() {
        eprintln!(
            "no databases found{}",
            report
                .namespace
                .as_ref()
                .map(|n| format!(" in namespace {n}"))
                .unwrap_or_default()
        );
        return;
    }
    let mut table = output::table(&[
        "namespace",
        "name",
        "engine",
        "verdict",
        "ok",
        "warn",
        "fail",
        "problem",
    ]);
    for db in &report.databases {
        table.add_row(vec![
            db.namespace.clone(),
            db.name.clone(),
            db.engine.to_string(),
            verdict_word(db.verdict).to_string(),
            db.summary.ok.to_string(),
            db.summary.warn.to_string(),
            db.summary.fail.to_string(),
            db.problems.first().cloned().unwrap_or_default(),
        ]);
    }
    output::print_table(&table);
}

fn verdict_word(verdict: Option<Verdict>) -> &'static str {
    match verdict {
        Some(Verdict::Fail) => "FAIL",
        Some(Verdict::Warn) => "WARN",
        Some(Verdict::Ok) => "OK",
        Some(Verdict::Skipped) | None => "SKIPPED",
    }
}
