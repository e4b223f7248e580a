//! Completion for `kubectl <plugin> <TAB>`. kubectl 1.26+ runs `kubectl_complete-<plugin>`
//! with the words after the plugin name, the partial word last, and reads one candidate per
//! line (`candidate<TAB>description`) ending with a Cobra directive line `:<number>`
//! (<https://kubernetes.io/docs/tasks/extend-kubectl/kubectl-plugins/#shell-completion>).
//! The helpers are two-line shell scripts (completion/kubectl_complete-<plugin>) that run
//! `kubectl-<plugin> __complete <words>` ([`hook`]). clap_complete's engine walks the words
//! against the plugin's own clap definition; this module gives it the values only the
//! environment knows, as `ArgValueCompleter`s: database pods and StatefulSets and namespaces
//! from the cluster (within [`CLUSTER_TIMEOUT`]), contexts, clusters and users from the
//! kubeconfig file (no API call), and prints Cobra's format.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Arg, Command};
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt;
use kube::api::ListParams;

use crate::cli::GlobalArgs;
use crate::client;
use crate::render::managed_selector;
use crate::target::{pod_engine, statefulset_engine};

/// The first argument that makes a plugin print completions instead of running.
pub const REQUEST: &str = "__complete";

/// Cobra's ShellCompDirective values (github.com/spf13/cobra, completions.go).
pub mod directive {
    /// Let the shell complete file names as well.
    pub const DEFAULT: u32 = 0;
    /// Something went wrong; complete nothing.
    pub const ERROR: u32 = 1;
    /// Do not fall back to file names.
    pub const NO_FILE: u32 = 4;
}

/// How long the cluster may take to list names before completion gives up.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(3);

/// Candidates for the word being completed, and the directive for the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completions {
    /// `(candidate, description)`, in the order printed.
    pub candidates: Vec<(String, String)>,
    pub directive: u32,
}

impl Completions {
    /// The lines kubectl reads: `candidate\tdescription` each, then `:<directive>`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (candidate, description) in &self.candidates {
            out.push_str(candidate);
            if !description.is_empty() {
                out.push('\t');
                out.push_str(description);
            }
            out.push('\n');
        }
        out.push_str(&format!(":{}\n", self.directive));
        out
    }
}

/// Which database objects to offer from the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Database pods and StatefulSets (`kubectl dbcheck mysql-0`, `... mysql`).
    Targets,
    /// Database pods only (`--pod`).
    Pods,
    /// StatefulSets dbdeploy manages (`kubectl dbdeploy delete NAME`).
    Managed,
}

/// Which names of the kubeconfig file to offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeconfigNames {
    Contexts,
    Clusters,
    Users,
}

/// Where the values of an argument come from, beyond what clap knows (possible values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cluster(Names),
    Namespaces,
    Kubeconfig(KubeconfigNames),
    /// A file name: the shell completes it (directive 0).
    Files,
}

/// The source of an argument's values, by its id across the four plugins (`target`, `--pod`,
/// dbdeploy delete's `name`, the global kubeconfig flags, file arguments).
pub fn source_of(arg: &Arg) -> Option<Source> {
    if arg.get_value_parser().possible_values().is_some() {
        return None;
    }
    let source = match arg.get_id().as_str() {
        "target" => Source::Cluster(Names::Targets),
        "pod" => Source::Cluster(Names::Pods),
        "name" if arg.is_positional() => Source::Cluster(Names::Managed),
        "namespace" => Source::Namespaces,
        "context" => Source::Kubeconfig(KubeconfigNames::Contexts),
        "cluster" => Source::Kubeconfig(KubeconfigNames::Clusters),
        "user" => Source::Kubeconfig(KubeconfigNames::Users),
        _ if is_file(arg) => Source::Files,
        _ => return None,
    };
    Some(source)
}

fn is_file(arg: &Arg) -> bool {
    use clap::ValueHint;
    matches!(
        arg.get_value_hint(),
        ValueHint::FilePath | ValueHint::AnyPath | ValueHint::DirPath
    ) || arg
        .get_value_names()
        .is_some_and(|names| names.iter().any(|n| n.contains("FILE")))
        || matches!(arg.get_id().as_str(), "file" | "kubeconfig")
}

/// What the completers of one completion share. clap hands a completer only the word being
/// completed, so the kubeconfig flags typed before it are parsed first and captured here.
#[derive(Clone, Default)]
struct Session {
    global: Arc<GlobalArgs>,
    /// Set when a file argument is being completed: the shell then offers file names.
    files: Arc<AtomicBool>,
}

impl Session {
    fn completer(&self, source: Source) -> ArgValueCompleter {
        let global = Arc::clone(&self.global);
        match source {
            Source::Files => {
                let files = Arc::clone(&self.files);
                ArgValueCompleter::new(move |current: &OsStr| {
                    if !is_flag(current) {
                        files.store(true, Ordering::Relaxed);
                    }
                    Vec::new()
                })
            }
            Source::Kubeconfig(kind) => ArgValueCompleter::new(move |current: &OsStr| {
                candidates(kubeconfig_names(kind, &global), current)
            }),
            Source::Namespaces => ArgValueCompleter::new(move |current: &OsStr| {
                if is_flag(current) {
                    return Vec::new();
                }
                candidates(within_budget(namespace_names(&global)), current)
            }),
            Source::Cluster(names) => ArgValueCompleter::new(move |current: &OsStr| {
                if is_flag(current) {
                    return Vec::new();
                }
                candidates(within_budget(cluster_names(names, &global)), current)
            }),
        }
    }
}

/// The engine also asks a positional's completer when the word is a flag (`--output=j`):
/// no name starts with a dash, so no cluster round trip and no file names for it.
fn is_flag(current: &OsStr) -> bool {
    current.to_string_lossy().starts_with('-')
}

/// The `(name, description)` pairs that start with the partial word.
fn candidates(found: Vec<(String, String)>, current: &OsStr) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    found
        .into_iter()
        .filter(|(name, _)| name.starts_with(current.as_ref()))
        .map(|(name, description)| {
            let help = (!description.is_empty()).then(|| description.into());
            CompletionCandidate::new(name).help(help)
        })
        .collect()
}

/// Runs a cluster lookup within [`CLUSTER_TIMEOUT`]. Any error or timeout gives no names:
/// completion must never hang or print an error.
fn within_budget(
    lookup: impl Future<Output = crate::Result<Vec<(String, String)>>>,
) -> Vec<(String, String)> {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    match runtime.block_on(async { tokio::time::timeout(CLUSTER_TIMEOUT, lookup).await }) {
        Ok(Ok(found)) => found,
        _ => Vec::new(),
    }
}

/// Context, cluster or user names from the kubeconfig file the flags select.
fn kubeconfig_names(kind: KubeconfigNames, global: &GlobalArgs) -> Vec<(String, String)> {
    let Ok(kubeconfig) = client::load_kubeconfig(global) else {
        return Vec::new();
    };
    let names: Vec<String> = match kind {
        KubeconfigNames::Contexts => kubeconfig.contexts.into_iter().map(|c| c.name).collect(),
        KubeconfigNames::Clusters => kubeconfig.clusters.into_iter().map(|c| c.name).collect(),
        KubeconfigNames::Users => kubeconfig.auth_infos.into_iter().map(|u| u.name).collect(),
    };
    names.into_iter().map(|n| (n, String::new())).collect()
}

async fn namespace_names(global: &GlobalArgs) -> crate::Result<Vec<(String, String)>> {
    let mut global = global.clone();
    global.request_timeout = CLUSTER_TIMEOUT;
    let kube = client::connect(&global).await?;
    let list = kube
        .api_all::<Namespace>()
        .list(&ListParams::default())
        .await
        .map_err(crate::Error::api("list namespaces"))?;
    Ok(list
        .items
        .into_iter()
        .map(|ns| (ns.name_any(), String::new()))
        .collect())
}

/// Database names in the namespace the flags select: `(name, "<engine> pod|StatefulSet")`.
pub async fn cluster_names(
    names: Names,
    global: &GlobalArgs,
) -> crate::Result<Vec<(String, String)>> {
    let mut global = global.clone();
    global.request_timeout = CLUSTER_TIMEOUT;
    let kube = client::connect(&global).await?;
    let sts_api = kube.api::<StatefulSet>();
    let pod_api = kube.api::<Pod>();
    let managed = ListParams::default().labels(&managed_selector());
    let (statefulsets, pods) = tokio::join!(
        async {
            match names {
                Names::Pods => Ok(Vec::new()),
                Names::Managed => sts_api.list(&managed).await.map(|l| l.items),
                Names::Targets => sts_api.list(&ListParams::default()).await.map(|l| l.items),
            }
        },
        async {
            match names {
                Names::Managed => Ok(Vec::new()),
                _ => pod_api.list(&ListParams::default()).await.map(|l| l.items),
            }
        }
    );
    let action = "list database pods and StatefulSets";
    let mut found = BTreeMap::new();
    for sts in statefulsets.map_err(crate::Error::api(action))? {
        if let Some((engine, _)) = statefulset_engine(&sts) {
            found.insert(sts.name_any(), format!("{engine} StatefulSet"));
        }
    }
    for pod in pods.map_err(crate::Error::api(action))? {
        if let Some((engine, _)) = pod_engine(&pod) {
            found.insert(pod.name_any(), format!("{engine} pod"));
        }
    }
    Ok(found.into_iter().collect())
}

/// The kubeconfig flags among the words typed before the one being completed, parsed by
/// clap itself (errors ignored: the command line is unfinished).
fn typed_globals(command: &Command, done: &[String]) -> GlobalArgs {
    let words = std::iter::once(command.get_name()).chain(done.iter().map(String::as_str));
    let mut global = GlobalArgs::default();
    let Ok(matches) = command
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(words)
    else {
        return global;
    };
    // Global flags may be given at any level; the deepest one is what clap would use.
    let mut level = Some(&matches);
    while let Some(matches) = level {
        let value = |id: &str| matches.try_get_one::<String>(id).ok().flatten().cloned();
        global.namespace = value("namespace").or(global.namespace);
        global.kubeconfig = value("kubeconfig").or(global.kubeconfig);
        global.context = value("context").or(global.context);
        global.cluster = value("cluster").or(global.cluster);
        global.user = value("user").or(global.user);
        // kubectl's connection flags reach the cluster the same way as for a run.
        global.server = value("server").or(global.server);
        global.certificate_authority =
            value("certificate_authority").or(global.certificate_authority);
        global.client_certificate = value("client_certificate").or(global.client_certificate);
        global.client_key = value("client_key").or(global.client_key);
        global.tls_server_name = value("tls_server_name").or(global.tls_server_name);
        global.as_user = value("as_user").or(global.as_user);
        global.as_uid = value("as_uid").or(global.as_uid);
        if let Ok(Some(token)) = matches.try_get_one::<crate::cli::Token>("token") {
            global.token = Some(token.clone());
        }
        if let Ok(Some(groups)) = matches.try_get_many::<String>("as_group") {
            global.as_group = groups.cloned().collect();
        }
        if let Ok(Some(true)) = matches.try_get_one::<bool>("insecure_skip_tls_verify") {
            global.insecure_skip_tls_verify = true;
        }
        level = matches.subcommand().map(|(_, sub)| sub);
    }
    global
}

/// Adds the completers to every argument of the command and its subcommands.
fn with_completers(mut command: Command, session: &Session) -> Command {
    let sources: Vec<(String, Source)> = command
        .get_arguments()
        .filter_map(|arg| source_of(arg).map(|s| (arg.get_id().to_string(), s)))
        .collect();
    for (id, source) in sources {
        let completer = session.completer(source);
        command = command.mut_arg(id, |arg| arg.add(completer));
    }
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in subcommands {
        command = command.mut_subcommand(name, |sub| with_completers(sub, session));
    }
    command
}

/// The candidates for the last of `words` (the partial word, possibly empty) from a plugin's
/// clap definition.
pub fn complete(command: Command, words: &[String]) -> Completions {
    let mut words = words.to_vec();
    if words.is_empty() {
        words.push(String::new());
    }
    let (current, done) = words.split_last().unwrap_or((&words[0], &[]));
    let session = Session {
        global: Arc::new(typed_globals(&command, done)),
        files: Arc::default(),
    };
    let mut command = with_completers(command, &session);
    let args: Vec<OsString> = std::iter::once(OsString::from(command.get_name()))
        .chain(words.iter().map(OsString::from))
        .collect();
    let index = args.len() - 1;
    let found =
        clap_complete::engine::complete(&mut command, args, index, None).unwrap_or_default();
    // Flags are offered once the word starts with a dash, as kubectl's own completion does.
    let flags = current.starts_with('-');
    let mut candidates: Vec<(String, String)> = found
        .into_iter()
        .map(|c| {
            let value = c.get_value().to_string_lossy().into_owned();
            let help = c
                .get_help()
                .map(|h| h.to_string().lines().next().unwrap_or_default().to_string())
                .unwrap_or_default();
            (value, help)
        })
        .filter(|(value, _)| flags || !value.starts_with('-'))
        .collect();
    if flags {
        // Flags in alphabetical order (the engine lists them in declaration order).
        candidates.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let directive = if session.files.load(Ordering::Relaxed) {
        directive::DEFAULT
    } else {
        directive::NO_FILE
    };
    Completions {
        candidates,
        directive,
    }
}

/// Call first in a plugin's `main`: on `<plugin> __complete <words>` prints the completions
/// for the words and exits; otherwise returns and the plugin runs normally.
pub fn hook(command: impl FnOnce() -> Command) {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(REQUEST)) {
        return;
    }
    let words: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    print!("{}", complete(command(), &words).render());
    std::process::exit(crate::exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ArgAction;

    fn words(text: &str) -> Vec<String> {
        text.split(' ').map(String::from).collect()
    }

    /// A plugin-shaped command; `--kubeconfig` is always a missing file, so no test here
    /// reaches a cluster (tests/integration/completion.rs does, with the real plugins).
    fn command() -> Command {
        Command::new("kubectl dbx")
            .arg(
                Arg::new("namespace")
                    .short('n')
                    .long("namespace")
                    .global(true),
            )
            .arg(Arg::new("kubeconfig").long("kubeconfig").global(true))
            .arg(Arg::new("context").long("context").global(true))
            .arg(
                Arg::new("quiet")
                    .short('q')
                    .long("quiet")
                    .action(ArgAction::SetTrue)
                    .global(true),
            )
            .subcommand(
                Command::new("dump")
                    .about("Dump it")
                    .arg(Arg::new("target").required(true))
                    .arg(Arg::new("file").short('f').long("file")),
            )
            .subcommand(
                Command::new("verify")
                    .about("Verify it")
                    .arg(Arg::new("file").value_parser(clap::value_parser!(std::path::PathBuf))),
            )
            .subcommand(
                Command::new("completion")
                    .arg(Arg::new("shell").value_parser(["bash", "zsh", "fish"])),
            )
    }

    fn run(text: &str) -> Completions {
        let text = format!("--kubeconfig /nonexistent/kubeconfig {text}");
        complete(command(), &words(&text))
    }

    fn names(c: &Completions) -> Vec<&str> {
        c.candidates.iter().map(|(c, _)| c.as_str()).collect()
    }

    #[test]
    fn subcommands_then_their_arguments() {
        let c = run("");
        assert_eq!(names(&c), ["dump", "verify", "completion", "help"]);
        assert_eq!(c.candidates[0].1, "Dump it");
        assert_eq!(names(&run("completion ")), ["bash", "zsh", "fish"]);
        let c = run("completion z");
        assert_eq!(c.render(), "zsh\n:4\n");
    }

    #[test]
    fn the_flags_typed_before_the_word_select_the_cluster() {
        let command = command();
        let global = typed_globals(
            &command,
            &words("-n team dump --kubeconfig /k --quiet --context=c"),
        );
        assert_eq!(global.namespace.as_deref(), Some("team"));
        assert_eq!(global.kubeconfig.as_deref(), Some("/k"));
        assert_eq!(global.context.as_deref(), Some("c"));
        // An unfinished line (`-n` without its value) still gives what is there.
        let global = typed_globals(&command, &words("--kubeconfig /k dump -n"));
        assert_eq!(global.kubeconfig.as_deref(), Some("/k"));
        assert_eq!(global.namespace, None);
    }

    #[test]
    fn connection_flags_typed_before_the_word_reach_the_cluster_too() {
        use clap::{CommandFactory, Parser};
        #[derive(Parser)]
        struct Plugin {
            #[command(flatten)]
            global: GlobalArgs,
        }
        let command = Plugin::command();
        let global = typed_globals(
            &command,
            &words(
                "--server https://api:6443 --token t0k --insecure-skip-tls-verify --as jane --as-group a --as-group b -n x",
            ),
        );
        assert_eq!(global.server.as_deref(), Some("https://api:6443"));
        assert_eq!(global.token.as_ref().map(|t| t.expose()), Some("t0k"));
        assert!(global.insecure_skip_tls_verify);
        assert_eq!(global.as_user.as_deref(), Some("jane"));
        assert_eq!(global.as_group, ["a", "b"]);
        assert_eq!(global.namespace.as_deref(), Some("x"));
    }

    #[test]
    fn sources_by_argument() {
        let mut command = command();
        command.build();
        let source = |sub: &str, id: &str| {
            let cmd = command.find_subcommand(sub).unwrap();
            source_of(cmd.get_arguments().find(|a| a.get_id() == id).unwrap())
        };
        assert_eq!(
            source("dump", "target"),
            Some(Source::Cluster(Names::Targets))
        );
        assert_eq!(source("dump", "file"), Some(Source::Files));
        assert_eq!(source("dump", "namespace"), Some(Source::Namespaces));
        assert_eq!(
            source("dump", "context"),
            Some(Source::Kubeconfig(KubeconfigNames::Contexts))
        );
        assert_eq!(source("completion", "shell"), None);
        assert_eq!(source("dump", "quiet"), None);
    }

    #[test]
    fn arguments_beside_subcommands_complete_too() {
        // dbbackup's shape: `kubectl dbbackup mysql-0` dumps, dump's arguments at the top.
        let command = command()
            .args_conflicts_with_subcommands(true)
            .subcommand_negates_reqs(true)
            .arg(Arg::new("target").required(true))
            .arg(Arg::new("file").short('f').long("file"));
        let run = |text: &str| {
            let text = format!("--kubeconfig /nonexistent/kubeconfig {text}");
            complete(command.clone(), &words(&text))
        };
        assert_eq!(names(&run("v")), ["verify"]);
        assert_eq!(names(&run("mysql-0 --f")), ["--file"]);
        assert_eq!(run("mysql-0 -f ").directive, directive::DEFAULT);
    }

    #[test]
    fn flags_and_their_values() {
        let c = run("dump --");
        for flag in ["--file", "--help", "--kubeconfig", "--namespace", "--quiet"] {
            assert!(names(&c).contains(&flag), "{flag}: {c:?}");
        }
        // Flags only once the word starts with a dash.
        assert!(names(&run("dump x ")).is_empty());
        assert_eq!(run("dump x -f ").directive, directive::DEFAULT);
        assert_eq!(run("verify ").directive, directive::DEFAULT);
        assert_eq!(run("dump x ").directive, directive::NO_FILE);
        assert_eq!(names(&run("completion --namespace=x --quiet b")), ["bash"]);
    }

    #[test]
    fn contexts_come_from_the_kubeconfig_file() {
        let dir = std::env::temp_dir().join(format!("kdb-complete-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c1\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: east\n  context:\n    cluster: c1\n    user: u1\n- name: west\n  context:\n    cluster: c1\n    user: u1\nusers:\n- name: u1\n  user: {}\n",
        )
        .unwrap();
        let line = |rest: &str| words(&format!("--kubeconfig {} {rest}", path.display()));
        let c = complete(command(), &line("--context w"));
        assert_eq!(names(&c), ["west"]);
        let c = complete(command(), &line("--context="));
        assert_eq!(names(&c), ["--context=east", "--context=west"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rendering_is_cobra_format() {
        let c = Completions {
            candidates: vec![
                ("mysql-0".into(), "mysql pod".into()),
                ("b".into(), String::new()),
            ],
            directive: directive::NO_FILE,
        };
        assert_eq!(c.render(), "mysql-0\tmysql pod\nb\n:4\n");
    }
}
