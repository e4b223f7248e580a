//! `kubectl dbdeploy`: deploy PostgreSQL, MySQL or MariaDB as a StatefulSet.

use std::time::Duration;

use crate::cli::{
    self, AllNamespacesArgs, CompletionArgs, GlobalArgs, OutputArgs, OutputFormat, exit,
    parse_duration,
};
use crate::deploy::{self, DeployOptions, DeployReport, DryRun};
use crate::engine::Engine;
use crate::output::{self, Progress};
use crate::render::{DeploySpec, Resources, defaults, parse_setting};
use crate::{Error, client};
use clap::{Args, CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kubectl dbdeploy",
    bin_name = "kubectl dbdeploy",
    version,
    about = "Deploy PostgreSQL, MySQL or MariaDB on Kubernetes as a StatefulSet, correctly",
    after_help = "Examples:\n  kubectl dbdeploy postgres\n  kubectl dbdeploy mysql --name orders --storage-size 50Gi --set max_connections=500\n  kubectl dbdeploy postgres --dry-run=client -o yaml > postgres.yaml\n  kubectl dbdeploy list -A\n  kubectl dbdeploy credentials orders -o uri --show-password\n  kubectl dbdeploy connect postgres -- -c 'select 1'\n  kubectl dbdeploy delete orders"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(about = deploy_about("PostgreSQL", Engine::Postgres))]
    Postgres(DeployArgs),
    #[command(about = deploy_about("MySQL", Engine::Mysql))]
    Mysql(DeployArgs),
    #[command(about = deploy_about("MariaDB", Engine::Mariadb))]
    Mariadb(DeployArgs),
    /// Delete a database's objects (only those dbdeploy made for it); its PVCs and Secret are kept unless --purge-data
    Delete(DeleteArgs),
    /// List the databases dbdeploy manages
    List(ListArgs),
    /// Print how to connect to a database: in-cluster host names, port, user, database, a URI (the password only with --show-password)
    Credentials(CredentialsArgs),
    /// Open the engine's own client (psql, mysql, mariadb) in the database's pod; arguments after -- go to the client
    Connect(ConnectArgs),
    /// Print a shell completion script
    Completion(CompletionArgs),
}

/// `Deploy PostgreSQL (default image postgres:15-alpine)`: the image from the engine.
fn deploy_about(product: &str, engine: Engine) -> String {
    format!(
        "Deploy {product} (default image {})",
        engine.default_image()
    )
}

#[derive(Args)]
#[command(mut_arg("output", |arg| arg.help("Output: table | wide | json | yaml | name | jsonpath=TEMPLATE | jsonpath-as-json=TEMPLATE (with --dry-run: the manifests)")))]
struct DeployArgs {
    /// Name of the StatefulSet, Services, ConfigMap and Secret (default: the engine's name)
    #[arg(long)]
    name: Option<String>,
    /// Container image (default: the guide's image for the engine); on a re-deploy, another major version than the running one is refused
    #[arg(long)]
    image: Option<String>,
    /// Database created at first start
    #[arg(long, default_value = defaults::DATABASE)]
    database: String,
    /// Application user created at first start (`--user` is kubectl's kubeconfig user)
    #[arg(long, default_value = defaults::USER)]
    db_user: String,
    /// Size of each data volume
    #[arg(long, default_value = defaults::STORAGE_SIZE)]
    storage_size: String,
    /// StorageClass of the data volumes (default: the cluster's default class)
    #[arg(long)]
    storage_class: Option<String>,
    /// CPU request
    #[arg(long, default_value = defaults::CPU_REQUEST)]
    cpu: String,
    /// CPU limit
    #[arg(long, default_value = defaults::CPU_LIMIT)]
    cpu_limit: String,
    /// Memory request
    #[arg(long, default_value = defaults::MEMORY_REQUEST)]
    memory: String,
    /// Memory limit
    #[arg(long, default_value = defaults::MEMORY_LIMIT)]
    memory_limit: String,
    /// Server setting merged into postgresql.conf / my.cnf (repeatable); on a re-deploy the running server must accept every name and value, or nothing is applied
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// Number of pods; more than 1 is refused until replication exists
    #[arg(long, default_value_t = defaults::REPLICAS)]
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
    #[command(flatten)]
    output: OutputArgs,
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
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    scope: AllNamespacesArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// `-o` of `credentials`: the report formats, and a connection URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CredentialsFormat {
    /// Human-readable
    Table,
    /// Stable JSON for scripts
    Json,
    /// The same document as YAML
    Yaml,
    /// A connection URI (postgresql:// or mysql://), percent-encoded
    Uri,
}

#[derive(Args)]
struct CredentialsArgs {
    /// Name of the database (its StatefulSet)
    name: String,
    /// The superuser's credentials instead of the application user's (MySQL and MariaDB: root; PostgreSQL's application user already is its superuser)
    #[arg(long)]
    admin: bool,
    /// Read the password from its Secret and print it (in the URI too)
    #[arg(long)]
    show_password: bool,
    /// Output: table | json | yaml | uri
    #[arg(
        short,
        long = "output",
        value_name = "OUTPUT",
        value_enum,
        default_value = "table"
    )]
    output: CredentialsFormat,
}

#[derive(Args)]
#[command(
    after_help = "Examples:\n  kubectl dbdeploy connect postgres\n  kubectl dbdeploy connect postgres -- -c 'select 1'\n  kubectl dbdeploy connect mariadb --admin -- -e 'show databases'\n  kubectl dbdeploy connect postgres < schema.sql\n\nOn a terminal the client gets a TTY; otherwise stdin, stdout and stderr are piped and the client's exit status is this command's."
)]
struct ConnectArgs {
    /// Database StatefulSet (its pod -0) or pod
    #[arg(index = 1)]
    name: String,
    /// Log in as the superuser instead of the application user (MySQL and MariaDB: root; PostgreSQL's application user already is its superuser)
    #[arg(long)]
    admin: bool,
    /// Arguments for the client (psql, mysql or mariadb), after --
    #[arg(index = 2, last = true, value_name = "CLIENT-ARGS")]
    client_args: Vec<String>,
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
    match cli.command {
        Command::Postgres(args) => run_deploy(&global, Engine::Postgres, args).await,
        Command::Mysql(args) => run_deploy(&global, Engine::Mysql, args).await,
        Command::Mariadb(args) => run_deploy(&global, Engine::Mariadb, args).await,
        Command::Delete(args) => run_delete(&global, args).await,
        Command::List(args) => run_list(&global, args).await,
        Command::Credentials(args) => run_credentials(&global, args).await,
        Command::Connect(args) => {
            crate::render::validate_name(&args.name)?;
            let kube = client::connect(&global).await?;
            deploy::connect::connect(&kube, &args.name, args.admin, &args.client_args).await
        }
        Command::Completion(args) => {
            args.print(Cli::command(), "kubectl-dbdeploy");
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
        print_objects(&objects, &args.output.format)?;
        if !args.show_password {
            eprintln!(
                "note: Secret {} is left out (it would hold passwords); kubectl dbdeploy generates it at apply time, or add --show-password to include generated ones",
                crate::render::Names::of(&spec.name).secret
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
        print_objects(&server_objects, &args.output.format)?;
        return Ok(exit::SUCCESS);
    }
    if args.show_password {
        report.passwords = Some(read_passwords(&kube, &report).await?);
    }
    output::print_report(&report, &args.output.format)?;
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

fn print_objects(objects: &[serde_json::Value], format: &OutputFormat) -> Result<(), Error> {
    match format {
        OutputFormat::Table | OutputFormat::Wide | OutputFormat::Yaml => {
            print!("{}", output::objects_to_yaml(objects)?);
            Ok(())
        }
        format => output::print_document(
            &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}),
            format,
        ),
    }
}

async fn run_delete(global: &GlobalArgs, args: DeleteArgs) -> Result<i32, Error> {
    crate::render::validate_name(&args.name)?;
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
    output::print_report(&report, &args.output.format)?;
    Ok(exit::SUCCESS)
}

async fn run_list(global: &GlobalArgs, args: ListArgs) -> Result<i32, Error> {
    let kube = client::connect(global).await?;
    let databases = deploy::list(&kube, args.scope.all_namespaces).await?;
    if databases.is_empty() && args.output.format.is_table() {
        eprintln!("no databases managed by kubectl-dbdeploy found");
    }
    output::print_report(&databases, &args.output.format)?;
    Ok(exit::SUCCESS)
}

async fn run_credentials(global: &GlobalArgs, args: CredentialsArgs) -> Result<i32, Error> {
    crate::render::validate_name(&args.name)?;
    let kube = client::connect(global).await?;
    let credentials =
        deploy::credentials::read(&kube, &args.name, args.admin, args.show_password).await?;
    match args.output {
        CredentialsFormat::Uri => println!("{}", credentials.uri),
        CredentialsFormat::Table => output::print_report(&credentials, &OutputFormat::Table)?,
        CredentialsFormat::Json => output::print_report(&credentials, &OutputFormat::Json)?,
        CredentialsFormat::Yaml => output::print_report(&credentials, &OutputFormat::Yaml)?,
    }
    Ok(exit::SUCCESS)
}
