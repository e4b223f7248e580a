//! `kubectl dbdeploy`: deploy PostgreSQL, MySQL or MariaDB as a StatefulSet.

use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use kubectl_db::cli::{self, GlobalArgs, OutputFormat, Shell, exit, parse_duration};
use kubectl_db::deploy::{self, DeployOptions, DeployReport, DryRun};
use kubectl_db::engine::Engine;
use kubectl_db::output::{self, Progress};
use kubectl_db::render::{DeploySpec, Resources, parse_setting};
use kubectl_db::{Error, client};

#[derive(Parser)]
#[command(
    name = "kubectl dbdeploy",
    bin_name = "kubectl dbdeploy",
    version,
    about = "Deploy PostgreSQL, MySQL or MariaDB on Kubernetes as a StatefulSet, correctly",
    after_help = "Examples:\n  kubectl dbdeploy postgres\n  kubectl dbdeploy mysql --name orders --storage-size 50Gi --set max_connections=500\n  kubectl dbdeploy postgres --dry-run=client -o yaml > postgres.yaml\n  kubectl dbdeploy list -A\n  kubectl dbdeploy delete orders"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy PostgreSQL (default image postgres:15-alpine)
    Postgres(DeployArgs),
    /// Deploy MySQL (default image mysql:8.0)
    Mysql(DeployArgs),
    /// Deploy MariaDB (default image mariadb:10.11)
    Mariadb(DeployArgs),
    /// Delete a database's objects (only those dbdeploy made for it); its PVCs and Secret are kept unless --purge-data
    Delete(DeleteArgs),
    /// List the databases dbdeploy manages
    List(ListArgs),
    /// Print a shell completion script
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Args)]
struct DeployArgs {
    /// Name of the StatefulSet, Services, ConfigMap and Secret (default: the engine's name)
    #[arg(long)]
    name: Option<String>,
    /// Container image (default: the guide's image for the engine); on a re-deploy, another major version than the running one is refused
    #[arg(long)]
    image: Option<String>,
    /// Database created at first start
    #[arg(long, default_value = "appdb")]
    database: String,
    /// Application user created at first start (`--user` is kubectl's kubeconfig user)
    #[arg(long, default_value = "appuser")]
    db_user: String,
    /// Size of each data volume
    #[arg(long, default_value = "10Gi")]
    storage_size: String,
    /// StorageClass of the data volumes (default: the cluster's default class)
    #[arg(long)]
    storage_class: Option<String>,
    /// CPU request
    #[arg(long, default_value = "250m")]
    cpu: String,
    /// CPU limit
    #[arg(long, default_value = "1")]
    cpu_limit: String,
    /// Memory request
    #[arg(long, default_value = "512Mi")]
    memory: String,
    /// Memory limit
    #[arg(long, default_value = "2Gi")]
    memory_limit: String,
    /// Server setting merged into postgresql.conf / my.cnf (repeatable); on a re-deploy the running server must accept every name and value, or nothing is applied
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// Number of pods; more than 1 is refused until replication exists
    #[arg(long, default_value_t = 1)]
    replicas: i32,
    /// Also allow every pod of the namespace to connect (default: only pods labelled <name>-client=true)
    #[arg(long)]
    allow_namespace: bool,
    /// Create a PodDisruptionBudget even with one replica (blocks node drains)
    #[arg(long)]
    pdb: bool,
    /// Print the objects instead of applying them: client (no API call) or server (validated)
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "client", default_value = "none")]
    dry_run: DryRun,
    /// Output: table | json | yaml (with --dry-run: the manifests)
    #[arg(short, long, value_enum, default_value = "table")]
    output: OutputFormat,
    /// Return right after applying, without waiting for readiness
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the database to become ready
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    timeout: Duration,
    /// Take over fields another field manager owns
    #[arg(long)]
    force_conflicts: bool,
    /// Print the passwords (they are never printed otherwise)
    #[arg(long)]
    show_password: bool,
    /// Start a new database from a VolumeSnapshot taken by `kubectl dbbackup snapshot`: its
    /// data PVC is created from it (same engine and major version only; the source is not
    /// touched, its passwords carry over)
    #[arg(long, value_name = "SNAP")]
    from_snapshot: Option<String>,
}

#[derive(Args)]
struct DeleteArgs {
    /// Name of the database
    name: String,
    /// Also delete the PVCs (the data) and the Secret (the passwords)
    #[arg(long)]
    purge_data: bool,
    /// Do not ask for confirmation of --purge-data (required without a terminal)
    #[arg(short, long)]
    yes: bool,
    /// Output: table | json | yaml
    #[arg(short, long, value_enum, default_value = "table")]
    output: OutputFormat,
}

#[derive(Args)]
struct ListArgs {
    /// List across all namespaces
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Output: table | json | yaml
    #[arg(short, long, value_enum, default_value = "table")]
    output: OutputFormat,
}

fn main() {
    kubectl_db::man::hook(Cli::command);
    kubectl_db::complete::hook(Cli::command, None);
    let cli = Cli::parse();
    cli::init_tracing(cli.global.verbose);
    cli::run_main(|| run(cli))
}

async fn run(cli: Cli) -> Result<i32, Error> {
    let global = cli.global;
    match cli.command {
        Command::Postgres(args) => run_deploy(&global, Engine::Postgres, args).await,
        Command::Mysql(args) => run_deploy(&global, Engine::Mysql, args).await,
        Command::Mariadb(args) => run_deploy(&global, Engine::Mariadb, args).await,
        Command::Delete(args) => run_delete(&global, args).await,
        Command::List(args) => run_list(&global, args).await,
        Command::Completion { shell } => {
            cli::print_completion(&mut Cli::command(), shell, "kubectl-dbdeploy");
            Ok(exit::SUCCESS)
        }
    }
}

fn spec_from(engine: Engine, namespace: &str, args: &DeployArgs) -> DeploySpec {
    let mut spec = DeploySpec::new(engine, namespace);
    if let Some(name) = &args.name {
        spec.name = name.clone();
    }
    if let Some(image) = &args.image {
        spec.image = image.clone();
    }
    spec.database = args.database.clone();
    spec.user = args.db_user.clone();
    spec.storage_size = args.storage_size.clone();
    spec.storage_class = args.storage_class.clone();
    spec.resources = Resources {
        cpu_request: args.cpu.clone(),
        cpu_limit: args.cpu_limit.clone(),
        memory_request: args.memory.clone(),
        memory_limit: args.memory_limit.clone(),
    };
    spec.settings = args.settings.clone();
    spec.replicas = args.replicas;
    spec.allow_namespace = args.allow_namespace;
    spec.pdb = args.pdb;
    spec
}

async fn run_deploy(global: &GlobalArgs, engine: Engine, args: DeployArgs) -> Result<i32, Error> {
    // Validate everything before touching the kubeconfig or the API.
    let offline_namespace = global.namespace.clone().unwrap_or_else(|| "default".into());
    spec_from(engine, &offline_namespace, &args).validate()?;
    if args.dry_run == DryRun::Client && args.from_snapshot.is_some() {
        return Err(Error::Usage(
            "--from-snapshot reads the snapshot from the cluster: use --dry-run=server".into(),
        ));
    }
    if args.dry_run == DryRun::Client {
        // No API call at all: the namespace is -n or, failing that, the kubeconfig's
        // (a local file read), or "default".
        let namespace = match &global.namespace {
            Some(ns) => ns.clone(),
            None => client::load_kubeconfig(global)
                .ok()
                .and_then(|k| context_namespace(&k, global.context.as_deref()))
                .unwrap_or_else(|| "default".into()),
        };
        let spec = spec_from(engine, &namespace, &args);
        let objects = deploy::render_offline(&spec, args.show_password);
        print_objects(&objects, args.output)?;
        if !args.show_password {
            eprintln!(
                "note: Secret {}-secret is left out (it would hold passwords); kubectl dbdeploy generates it at apply time, or add --show-password to include generated ones",
                spec.name
            );
        }
        return Ok(exit::SUCCESS);
    }

    let kube = client::connect_within(global, args.timeout).await?;
    let spec = spec_from(engine, &kube.namespace, &args);
    let options = DeployOptions {
        spec,
        dry_run: args.dry_run,
        wait: !args.no_wait,
        timeout: args.timeout,
        force_conflicts: args.force_conflicts,
        from_snapshot: args.from_snapshot.clone(),
    };
    let progress = Progress::spinner(global.show_progress());
    let (mut report, server_objects) = deploy::deploy(&kube, &options, &progress).await?;
    progress.finish();
    if args.dry_run == DryRun::Server {
        print_objects(&server_objects, args.output)?;
        return Ok(exit::SUCCESS);
    }
    if args.show_password {
        report.passwords = Some(read_passwords(&kube, &report).await?);
    }
    match args.output {
        OutputFormat::Table => print_summary(&report),
        format => output::print_document(&report, format)?,
    }
    Ok(exit::SUCCESS)
}

fn context_namespace(
    kubeconfig: &kube::config::Kubeconfig,
    context: Option<&str>,
) -> Option<String> {
    let name = context
        .map(str::to_string)
        .or_else(|| kubeconfig.current_context.clone())?;
    kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.namespace.clone())
}

async fn read_passwords(
    kube: &client::Kube,
    report: &DeployReport,
) -> Result<std::collections::BTreeMap<String, String>, Error> {
    use k8s_openapi::api::core::v1::Secret;
    let api: kube::Api<Secret> = kube.api();
    let secret = api
        .get(&report.secret.name)
        .await
        .map_err(Error::api(format!(
            "read Secret {}/{}",
            report.namespace, report.secret.name
        )))?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect())
}

fn print_objects(objects: &[serde_json::Value], format: OutputFormat) -> Result<(), Error> {
    match format {
        OutputFormat::Json => output::print_document(
            &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}),
            OutputFormat::Json,
        ),
        _ => {
            print!("{}", output::objects_to_yaml(objects)?);
            Ok(())
        }
    }
}

fn print_summary(report: &DeployReport) {
    let action = if report.dry_run {
        "validated (server dry run)"
    } else {
        "applied"
    };
    println!(
        "{} {}/{} ({}) {action}",
        report.engine, report.namespace, report.name, report.image
    );
    let mut table = output::table(&["kind", "name", "result"]);
    for object in &report.objects {
        table.add_row(vec![
            object.kind.clone(),
            object.name.clone(),
            object.outcome.to_string(),
        ]);
    }
    output::print_table(&table);
    println!();
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
    println!("connect:");
    for endpoint in &report.endpoints {
        println!("  {:<8} {}:{}", endpoint.kind, endpoint.dns, endpoint.port);
    }
    let secret = &report.secret;
    let state = if secret.generated.is_empty() {
        "existing passwords kept".to_string()
    } else if secret.kept.is_empty() {
        "passwords generated".to_string()
    } else {
        format!(
            "kept {}, generated {}",
            secret.kept.join(", "),
            secret.generated.join(", ")
        )
    };
    println!(
        "secret:   {} (keys {}; {state})",
        secret.name,
        secret.keys.join(", ")
    );
    if let Some(snapshot) = &report.from_snapshot {
        println!(
            "data:     PVC data-{}-0 created from VolumeSnapshot {snapshot} (passwords of its database)",
            report.name
        );
    }
    if let Some(passwords) = &report.passwords {
        for (key, value) in passwords {
            println!("  {key}={value}");
        }
    }
    if let Some(wait) = &report.wait {
        println!("ready in {:.1}s", wait.elapsed_seconds);
    }
    if let Some(version) = &report.server_version {
        println!("server:   {version}");
        println!("databases: {}", report.databases.join(", "));
    }
}

async fn run_delete(global: &GlobalArgs, args: DeleteArgs) -> Result<i32, Error> {
    kubectl_db::render::validate_name(&args.name)?;
    // Building the client reads only the kubeconfig: still no API call before the question.
    let kube = client::connect(global).await?;
    if args.purge_data && !args.yes {
        let context = client::context_name(global).unwrap_or_else(|| "(none)".into());
        cli::confirm(
            &format!(
                "--purge-data deletes the PVCs (all data) and the Secret of database {} in namespace {} of context {context}",
                args.name, kube.namespace
            ),
            &args.name,
        )?;
    }
    let report = deploy::delete(&kube, &args.name, args.purge_data).await?;
    match args.output {
        OutputFormat::Table => {
            for object in &report.deleted {
                println!("deleted {object}");
            }
            for object in &report.kept {
                println!("kept    {object}");
            }
            for object in &report.not_managed {
                println!(
                    "kept    {object}: not made by kubectl-dbdeploy for {}",
                    report.name
                );
            }
            if !report.kept.is_empty() {
                println!(
                    "(data kept: re-deploying {} reuses it; --purge-data removes it)",
                    report.name
                );
            }
        }
        format => output::print_document(&report, format)?,
    }
    Ok(exit::SUCCESS)
}

async fn run_list(global: &GlobalArgs, args: ListArgs) -> Result<i32, Error> {
    let kube = client::connect(global).await?;
    let databases = deploy::list(&kube, args.all_namespaces).await?;
    match args.output {
        OutputFormat::Table => {
            if databases.is_empty() {
                eprintln!("no databases managed by kubectl-dbdeploy found");
                return Ok(exit::SUCCESS);
            }
            let mut table = output::table(&[
                "namespace",
                "name",
                "engine",
                "ready",
                "image",
                "service",
                "age",
            ]);
            for db in &databases {
                table.add_row(vec![
                    db.namespace.clone(),
                    db.name.clone(),
                    db.engine
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "?".into()),
                    db.ready.clone(),
                    db.image.clone(),
                    db.service.clone(),
                    db.age_seconds.map(age).unwrap_or_default(),
                ]);
            }
            output::print_table(&table);
        }
        format => output::print_document(&databases, format)?,
    }
    Ok(exit::SUCCESS)
}

fn age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
