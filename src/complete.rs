//! Completion for `kubectl <plugin> <TAB>`. kubectl 1.26+ runs `kubectl_complete-<plugin>`
//! with the words after the plugin name, the partial word last, and reads one candidate per
//! line (`candidate<TAB>description`) ending with a Cobra directive line `:<number>`
//! (<https://kubernetes.io/docs/tasks/extend-kubectl/kubectl-plugins/#shell-completion>).
//! The helper binaries run `kubectl-<plugin> __complete <words>`; the plugin answers from its
//! own clap definition ([`hook`]) and, for database targets, from the cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Command;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::ListParams;

use crate::cli::GlobalArgs;
use crate::client;
use crate::deploy::MANAGED_SELECTOR;
use crate::target::engine_of;

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

/// How long the cluster may take to list database names before completion gives up.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(3);

/// Candidates for the word being completed, and the directive for the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completions {
    /// `(candidate, description)`, in the order printed.
    pub candidates: Vec<(String, String)>,
    pub directive: u32,
}

impl Completions {
    fn new(directive: u32) -> Self {
        Completions {
            candidates: Vec::new(),
            directive,
        }
    }

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

/// What the words say: the static candidates, and the cluster lookup still to do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub completions: Completions,
    /// Names to add from the cluster, found with these global flags.
    pub cluster: Option<(Names, GlobalArgs)>,
    /// The partial word; cluster names are filtered by it.
    pub prefix: String,
}

/// Works out the candidates for the last word of `words` from a binary's clap definition.
/// `default_subcommand` is the subcommand a bare positional runs (`dump` in dbbackup).
pub fn plan(command: &Command, words: &[String], default_subcommand: Option<&str>) -> Plan {
    let mut command = command.clone();
    command.build();
    let (current, done) = match words.split_last() {
        Some((last, rest)) => (last.clone(), rest),
        None => (String::new(), &[][..]),
    };
    let mut global = GlobalArgs::default();
    let mut path: Vec<Command> = vec![command];
    let mut positionals = 0usize;
    let mut pending: Option<clap::Arg> = None;
    let mut only_positionals = false;
    for word in done {
        let cmd = path.last().cloned().unwrap_or_default();
        if let Some(arg) = pending.take() {
            record_global(&mut global, arg.get_id().as_str(), word);
            continue;
        }
        if !only_positionals && word == "--" {
            only_positionals = true;
            continue;
        }
        if !only_positionals && word.starts_with('-') && word.len() > 1 {
            if let Some((arg, inline)) = find_flag(&cmd, word) {
                match inline {
                    Some(value) => record_global(&mut global, arg.get_id().as_str(), &value),
                    None if takes_value(&arg) => pending = Some(arg),
                    None => {}
                }
            }
            continue;
        }
        if positionals == 0
            && let Some(sub) = cmd.find_subcommand(word)
        {
            path.push(sub.clone());
            continue;
        }
        if positionals == 0
            && cmd.has_subcommands()
            && let Some(sub) = default_subcommand.and_then(|d| cmd.find_subcommand(d))
            && path.len() == 1
        {
            path.push(sub.clone());
        }
        positionals += 1;
    }
    let cmd = path.last().cloned().unwrap_or_default();
    let mut plan = Plan {
        completions: Completions::new(directive::NO_FILE),
        cluster: None,
        prefix: current.clone(),
    };
    if let Some(arg) = pending {
        value_candidates(&mut plan, &arg, &current, &global);
        return plan;
    }
    if !only_positionals && current.starts_with('-') {
        if let Some((name, value)) = current.split_once('=')
            && let Some((arg, _)) = find_flag(&cmd, name)
        {
            value_candidates(&mut plan, &arg, value, &global);
            let flag = format!("{name}=");
            for candidate in &mut plan.completions.candidates {
                candidate.0.insert_str(0, &flag);
            }
            plan.prefix = current.clone();
            return plan;
        }
        plan.completions.candidates = flag_candidates(&cmd, &current);
        return plan;
    }
    let mut candidates = Vec::new();
    let mut slot_cmd = cmd.clone();
    if positionals == 0 && cmd.has_subcommands() {
        candidates.extend(
            cmd.get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name().starts_with(&current))
                .map(|s| (s.get_name().to_string(), about(s))),
        );
        // dbcheck and dbpersist take a target or a subcommand at the same place.
        if cmd.get_positionals().next().is_none() {
            match default_subcommand.and_then(|d| cmd.find_subcommand(d)) {
                Some(sub) => slot_cmd = sub.clone(),
                None => {
                    plan.completions.candidates = candidates;
                    return plan;
                }
            }
        }
    }
    plan.completions.candidates = candidates;
    if let Some(arg) = slot_cmd.get_positionals().nth(positionals) {
        let arg = arg.clone();
        value_candidates(&mut plan, &arg, &current, &global);
    }
    plan
}

/// Where a flag's or positional's values come from.
fn value_candidates(plan: &mut Plan, arg: &clap::Arg, current: &str, global: &GlobalArgs) {
    plan.prefix = current.to_string();
    let values = arg.get_possible_values();
    if !values.is_empty() {
        plan.completions.candidates.extend(
            values
                .iter()
                .filter(|v| !v.is_hide_set() && v.get_name().starts_with(current))
                .map(|v| {
                    let help = v.get_help().map(|h| h.to_string()).unwrap_or_default();
                    (v.get_name().to_string(), help)
                }),
        );
        return;
    }
    let names = match arg.get_id().as_str() {
        "target" => Some(Names::Targets),
        "pod" => Some(Names::Pods),
        "name" if arg.is_positional() => Some(Names::Managed),
        "context" => {
            plan.completions
                .candidates
                .extend(contexts(global, current));
            None
        }
        _ if is_file(arg) => {
            plan.completions.directive = directive::DEFAULT;
            None
        }
        _ => None,
    };
    if let Some(names) = names {
        plan.cluster = Some((names, global.clone()));
    }
}

fn is_file(arg: &clap::Arg) -> bool {
    use clap::ValueHint;
    matches!(
        arg.get_value_hint(),
        ValueHint::FilePath | ValueHint::AnyPath | ValueHint::DirPath
    ) || arg
        .get_value_names()
        .is_some_and(|names| names.iter().any(|n| n.contains("FILE")))
        || matches!(arg.get_id().as_str(), "file" | "kubeconfig")
}

fn takes_value(arg: &clap::Arg) -> bool {
    arg.get_action().takes_values()
}

/// The flag a word names (`--namespace`, `--namespace=x`, `-n`, `-nx`), with an inline value.
fn find_flag(cmd: &Command, word: &str) -> Option<(clap::Arg, Option<String>)> {
    if let Some(long) = word.strip_prefix("--") {
        let (name, value) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (long, None),
        };
        return cmd
            .get_arguments()
            .find(|a| {
                a.get_long() == Some(name)
                    || a.get_all_aliases()
                        .is_some_and(|aliases| aliases.contains(&name))
            })
            .map(|a| (a.clone(), value));
    }
    let mut chars = word.strip_prefix('-')?.chars();
    let short = chars.next()?;
    let rest: String = chars.collect();
    let arg = cmd.get_arguments().find(|a| a.get_short() == Some(short))?;
    let value = (takes_value(arg) && !rest.is_empty()).then_some(rest);
    Some((arg.clone(), value))
}

fn record_global(global: &mut GlobalArgs, id: &str, value: &str) {
    let value = Some(value.to_string());
    match id {
        "namespace" => global.namespace = value,
        "kubeconfig" => global.kubeconfig = value,
        "context" => global.context = value,
        "cluster" => global.cluster = value,
        "user" => global.user = value,
        _ => {}
    }
}

fn about(cmd: &Command) -> String {
    cmd.get_about().map(|a| a.to_string()).unwrap_or_default()
}

fn flag_candidates(cmd: &Command, current: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        if let Some(long) = arg.get_long() {
            out.push((format!("--{long}"), help.clone()));
        }
        if let Some(short) = arg.get_short() {
            out.push((format!("-{short}"), help));
        }
    }
    out.retain(|(flag, _)| flag.starts_with(current));
    out.sort();
    out
}

fn contexts(global: &GlobalArgs, current: &str) -> Vec<(String, String)> {
    client::load_kubeconfig(global)
        .map(|k| {
            k.contexts
                .into_iter()
                .filter(|c| c.name.starts_with(current))
                .map(|c| (c.name, String::new()))
                .collect()
        })
        .unwrap_or_default()
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
    let managed = ListParams::default().labels(MANAGED_SELECTOR);
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
        let template = sts.spec.as_ref().map(|s| &s.template);
        let labels = template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let containers = template
            .and_then(|t| t.spec.as_ref())
            .map(|s| s.containers.clone())
            .unwrap_or_default();
        if let Some((engine, _)) = engine_of(&labels, &containers) {
            found.insert(sts.name_any(), format!("{engine} StatefulSet"));
        }
    }
    for pod in pods.map_err(crate::Error::api(action))? {
        let containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default();
        if let Some((engine, _)) = engine_of(pod.labels(), &containers) {
            found.insert(pod.name_any(), format!("{engine} pod"));
        }
    }
    Ok(found.into_iter().collect())
}

/// Plans, adds cluster names within [`CLUSTER_TIMEOUT`], and returns what to print. Any
/// cluster error leaves just the static candidates: completion must never print an error.
pub async fn complete(
    command: &Command,
    words: &[String],
    default_subcommand: Option<&str>,
) -> Completions {
    let plan = plan(command, words, default_subcommand);
    let mut completions = plan.completions;
    if let Some((names, global)) = plan.cluster
        && let Ok(Ok(found)) =
            tokio::time::timeout(CLUSTER_TIMEOUT, cluster_names(names, &global)).await
    {
        completions.candidates.extend(
            found
                .into_iter()
                .filter(|(name, _)| name.starts_with(&plan.prefix)),
        );
    }
    completions
}

/// The first argument that makes a plugin print its man page (roff) instead of running.
pub const MAN_REQUEST: &str = "__man";

/// Call first in a plugin's `main`: on `<plugin> __complete <words>` prints the completions
/// for the words and exits, on `<plugin> __man` its man page; otherwise returns and the
/// plugin runs normally.
pub fn hook(command: impl FnOnce() -> Command, default_subcommand: Option<&str>) {
    let mut args = std::env::args();
    let program = args.next().unwrap_or_default();
    match args.next().as_deref() {
        Some(REQUEST) => {}
        Some(MAN_REQUEST) => {
            let name = std::path::Path::new(&program)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(program);
            // `__man SUBCOMMAND`: the subcommand's own page, `kubectl-dbdeploy-postgres(1)`.
            let mut command = command();
            command.build();
            let (command, name) = match args.next() {
                Some(sub) => match command.find_subcommand(&sub) {
                    Some(found) => {
                        let name = format!("{name}-{sub}");
                        let page = found
                            .clone()
                            .display_name(name.clone())
                            .version(env!("CARGO_PKG_VERSION"));
                        (page, name)
                    }
                    None => std::process::exit(crate::cli::exit::USAGE),
                },
                None => (command.display_name(name.clone()), name),
            };
            let code = match print_man(command, &name) {
                Ok(()) => 0,
                Err(_) => crate::cli::exit::UNHEALTHY,
            };
            std::process::exit(code)
        }
        _ => return,
    }
    let words: Vec<String> = args.collect();
    let command = command();
    let output = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime
            .block_on(complete(&command, &words, default_subcommand))
            .render(),
        Err(_) => format!(":{}\n", directive::NO_FILE),
    };
    print!("{output}");
    std::process::exit(0)
}

/// Writes the man page of a binary, generated from its clap definition, to stdout.
fn print_man(command: Command, name: &str) -> std::io::Result<()> {
    clap_mangen::Man::new(command)
        .title(name.to_uppercase())
        .section("1")
        .manual("kubectl-db")
        .render(&mut std::io::stdout().lock())
}

/// The `kubectl_complete-<plugin>` helper: runs `kubectl-<plugin> __complete <args>` from
/// the helper's own directory, else from PATH. Without the plugin: just a directive.
pub fn helper(plugin_binary: &str) -> ! {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(plugin_binary)))
        .filter(|path| path.is_file());
    let program = beside.unwrap_or_else(|| plugin_binary.into());
    let status = std::process::Command::new(program)
        .arg(REQUEST)
        .args(std::env::args_os().skip(1))
        .status();
    match status {
        Ok(status) if status.success() => std::process::exit(0),
        _ => {
            println!(":{}", directive::NO_FILE);
            std::process::exit(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn words(text: &str) -> Vec<String> {
        let mut words: Vec<String> = text.split(' ').map(String::from).collect();
        if text.is_empty() {
            words = vec![String::new()];
        }
        words
    }

    fn command() -> Command {
        Command::new("kubectl dbx")
            .arg(
                Arg::new("namespace")
                    .short('n')
                    .long("namespace")
                    .global(true),
            )
            .arg(Arg::new("kubeconfig").long("kubeconfig").global(true))
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

    fn names(plan: &Plan) -> Vec<&str> {
        plan.completions
            .candidates
            .iter()
            .map(|(c, _)| c.as_str())
            .collect()
    }

    #[test]
    fn subcommands_then_their_arguments() {
        let p = plan(&command(), &words(""), None);
        assert_eq!(names(&p), ["dump", "verify", "completion", "help"]);
        assert!(p.cluster.is_none());
        let p = plan(&command(), &words("completion "), None);
        assert_eq!(names(&p), ["bash", "zsh", "fish"]);
        let p = plan(&command(), &words("completion z"), None);
        assert_eq!(names(&p), ["zsh"]);
        assert_eq!(p.completions.render(), "zsh\n:4\n");
    }

    #[test]
    fn targets_come_from_the_cluster_with_the_flags_given() {
        let p = plan(
            &command(),
            &words("-n team dump --kubeconfig /k --quiet my"),
            None,
        );
        let (names, global) = p.cluster.expect("a cluster lookup");
        assert_eq!(names, Names::Targets);
        assert_eq!(global.namespace.as_deref(), Some("team"));
        assert_eq!(global.kubeconfig.as_deref(), Some("/k"));
        assert_eq!(p.prefix, "my");
    }

    #[test]
    fn default_subcommand_offers_subcommands_and_targets() {
        let p = plan(&command(), &words("v"), Some("dump"));
        assert_eq!(names(&p), ["verify"]);
        assert_eq!(p.cluster.map(|c| c.0), Some(Names::Targets));
        // A bare target runs dump: its flags come next.
        let p = plan(&command(), &words("mysql-0 --f"), Some("dump"));
        assert_eq!(names(&p), ["--file"]);
    }

    #[test]
    fn flags_and_their_values() {
        let p = plan(&command(), &words("dump --"), None);
        assert_eq!(
            names(&p),
            ["--file", "--help", "--kubeconfig", "--namespace", "--quiet"]
        );
        let p = plan(&command(), &words("dump x -f "), None);
        assert_eq!(p.completions.directive, directive::DEFAULT);
        let p = plan(&command(), &words("verify "), None);
        assert_eq!(p.completions.directive, directive::DEFAULT);
        let p = plan(&command(), &words("dump -n"), None);
        assert_eq!(names(&p), ["-n"]);
        let p = plan(
            &command(),
            &words("completion --namespace=x --quiet b"),
            None,
        );
        assert_eq!(names(&p), ["bash"]);
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
