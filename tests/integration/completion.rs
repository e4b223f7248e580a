//! Shell completion: the `kubectl_complete-<plugin>` helpers kubectl 1.26+ runs (Cobra's
//! `candidate\tdescription` lines and `:<directive>`), and each binary's `completion` scripts.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PLUGINS: [&str; 4] = ["dbdeploy", "dbcheck", "dbbackup", "dbpersist"];

/// The shipped `kubectl_complete-<plugin>` scripts (completion/).
fn helpers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("completion")
}

/// PATH with this build's plugins first, where the helper scripts find them.
fn path_with_plugins() -> String {
    let bins = assert_cmd::cargo::cargo_bin("kubectl-dbcheck");
    format!(
        "{}:{}",
        bins.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs `kubectl_complete-<plugin> <words>` as kubectl would; returns its stdout.
fn helper(plugin: &str, kubeconfig: &Path, words: &[&str]) -> String {
    let output = std::process::Command::new("timeout")
        .arg("30")
        .arg(helpers_dir().join(format!("kubectl_complete-{plugin}")))
        .args(words)
        .env_clear()
        .env("PATH", path_with_plugins())
        .env("HOME", std::env::temp_dir().join("kdb-test-home"))
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// The candidates without their descriptions, and the directive line.
fn candidates(output: &str) -> (Vec<&str>, &str) {
    let mut lines: Vec<&str> = output.lines().collect();
    let directive = lines.pop().unwrap_or_default();
    (
        lines
            .iter()
            .map(|l| l.split('\t').next().unwrap_or_default())
            .collect(),
        directive,
    )
}

#[test]
fn subcommands_with_descriptions() {
    let out = helper("dbdeploy", &common::unreachable_kubeconfig(), &[""]);
    assert!(
        out.starts_with("postgres\tDeploy PostgreSQL (default image postgres:15-alpine)\n"),
        "{out}"
    );
    let (names, directive) = candidates(&out);
    assert_eq!(
        names,
        [
            "postgres",
            "mysql",
            "mariadb",
            "delete",
            "list",
            "credentials",
            "connect",
            "completion",
            "help"
        ]
    );
    assert_eq!(directive, ":4");
}

#[test]
fn flags_and_flag_values() {
    let kubeconfig = common::unreachable_kubeconfig();
    assert_eq!(
        candidates(&helper("dbdeploy", &kubeconfig, &["mysql", "--storage-"])),
        (vec!["--storage-class", "--storage-size"], ":4")
    );
    assert_eq!(
        candidates(&helper("dbdeploy", &kubeconfig, &["list", "-o", ""])),
        (
            vec![
                "table",
                "wide",
                "json",
                "yaml",
                "name",
                "jsonpath=",
                "jsonpath-as-json="
            ],
            ":4"
        )
    );
    assert_eq!(
        candidates(&helper("dbcheck", &kubeconfig, &["--output=y"])),
        (vec!["--output=yaml"], ":4")
    );
    assert_eq!(
        candidates(&helper("dbbackup", &kubeconfig, &["completion", ""])),
        (vec!["bash", "elvish", "fish", "powershell", "zsh"], ":4")
    );
    // Files: directive 0 lets the shell complete file names.
    assert_eq!(
        candidates(&helper("dbbackup", &kubeconfig, &["verify", ""])),
        (vec![], ":0")
    );
    assert_eq!(
        candidates(&helper("dbbackup", &kubeconfig, &["postgres", "-f", ""])),
        (vec![], ":0")
    );
    // Contexts come from the kubeconfig file, not the cluster.
    assert_eq!(
        candidates(&helper("dbpersist", &kubeconfig, &["--context", "e"])),
        (vec!["elsewhere"], ":4")
    );
    // So do clusters and users.
    assert_eq!(
        candidates(&helper("dbcheck", &kubeconfig, &["--cluster", "n"])),
        (vec!["nowhere"], ":4")
    );
    assert_eq!(
        candidates(&helper("dbbackup", &kubeconfig, &["verify", "--user="])),
        (vec!["--user=nobody"], ":4")
    );
}

#[test]
fn unreachable_cluster_gives_static_candidates_quickly() {
    let start = Instant::now();
    for plugin in ["dbcheck", "dbbackup", "dbpersist"] {
        let out = helper(
            plugin,
            &common::unreachable_kubeconfig(),
            &["-n", "team-a", "my"],
        );
        assert_eq!(out, ":4\n", "{plugin}");
    }
    let out = helper(
        "dbcheck",
        Path::new("/nonexistent/kubeconfig"),
        &["--kubeconfig", "/nonexistent/kubeconfig", ""],
    );
    assert_eq!(candidates(&out), (vec!["completion", "help"], ":4"));
    assert!(start.elapsed() < Duration::from_secs(15));
}

/// A server that never answers (a non-routable address: connecting hangs, it is not
/// refused): names from the cluster give up within the 3 s budget.
#[test]
fn silent_cluster_gives_up_within_the_budget() {
    let dir = std::env::temp_dir().join("kdb-completion-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kubeconfig-silent");
    let text = std::fs::read_to_string(common::unreachable_kubeconfig())
        .unwrap()
        .replace("https://127.0.0.1:1", "https://10.255.255.1:6443");
    std::fs::write(&path, text).unwrap();
    for words in [&["-n", "team-a", "my"][..], &["-n", "te"][..]] {
        let start = Instant::now();
        let out = helper("dbcheck", &path, words);
        assert_eq!(out, ":4\n", "{words:?}");
        assert!(start.elapsed() < Duration::from_secs(6), "{words:?}");
    }
}

#[test]
fn completion_scripts_for_every_shell() {
    for plugin in PLUGINS {
        for shell in ["bash", "zsh", "fish"] {
            let output = common::clean_bin(&format!("kubectl-{plugin}"))
                .args(["completion", shell])
                .output()
                .unwrap();
            assert!(output.status.success(), "{plugin} {shell}: {output:?}");
            let script = String::from_utf8(output.stdout).unwrap();
            assert!(
                script.contains(&format!("kubectl-{plugin}")),
                "{plugin} {shell}"
            );
        }
    }
}

/// Sources `kubectl-<plugin> completion bash` in bash and completes `words` (last = partial).
fn bash_complete(plugin: &str, words: &[&str]) -> Vec<String> {
    let bin = assert_cmd::cargo::cargo_bin(format!("kubectl-{plugin}"));
    let generated = std::process::Command::new(&bin)
        .args(["completion", "bash"])
        .output()
        .unwrap();
    let script = String::from_utf8(generated.stdout).unwrap();
    let registration = script
        .lines()
        .find(|l| l.trim_start().starts_with("complete -F"))
        .unwrap();
    assert!(
        registration.ends_with(&format!(" kubectl-{plugin}")),
        "{registration}"
    );
    let function = registration.split_whitespace().nth(2).unwrap();
    let script = format!(
        "source <({bin} completion bash) && COMP_WORDS=(kubectl-{plugin} {words}) && COMP_CWORD={cword} && {function} kubectl-{plugin} \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\" && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        bin = bin.display(),
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
        cword = words.len(),
    );
    let output = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn bash_script_completes_subcommands_and_flags() {
    assert_eq!(bash_complete("dbdeploy", &["li"]), ["list"]);
    assert_eq!(
        bash_complete("dbdeploy", &["postgres", "--storage-s"]),
        ["--storage-size"]
    );
    assert_eq!(bash_complete("dbbackup", &["ver"]), ["verify"]);
    assert_eq!(bash_complete("dbpersist", &["mysql-0", "--ke"]), ["--keep"]);
    assert_eq!(bash_complete("dbcheck", &["--exec-t"]), ["--exec-timeout"]);
}

/// The cluster part: a deployed database's StatefulSet and pod are offered, by the helper
/// and by kubectl itself (`kubectl __complete dbcheck ...` finds the helper on PATH).
#[tokio::test(flavor = "multi_thread")]
async fn database_names_come_from_the_cluster() {
    let kubeconfig = require_cluster!();
    let ns = common::TestNamespace::create(&kubeconfig, "complete", &[]).await;
    ns.bin("kubectl-dbdeploy")
        .args([
            "postgres",
            "--name",
            "orders",
            "--image",
            &common::postgres_image(),
            "--no-wait",
        ])
        .args(common::SMALL)
        .assert()
        .success();
    // The StatefulSet controller creates the pod a moment after the apply.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = String::new();
    while Instant::now() < deadline {
        out = helper("dbcheck", &kubeconfig, &["-n", &ns.name, "or"]);
        if out.contains("orders-0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        out,
        "orders\tpostgres StatefulSet\norders-0\tpostgres pod\n:4\n"
    );
    // Namespaces for -n come from the cluster too.
    let out = helper("dbcheck", &kubeconfig, &["-n", &ns.name]);
    assert_eq!(candidates(&out), (vec![ns.name.as_str()], ":4"));
    // dbdeploy delete offers the databases it manages; dbpersist --pod offers pods.
    assert_eq!(
        candidates(&helper(
            "dbdeploy",
            &kubeconfig,
            &["delete", "--namespace", &ns.name, ""]
        )),
        (vec!["orders"], ":4")
    );
    assert_eq!(
        candidates(&helper(
            "dbpersist",
            &kubeconfig,
            &["orders", "-n", &ns.name, "--pod", ""]
        )),
        (vec!["orders-0"], ":4")
    );
    assert_eq!(
        candidates(&helper("dbbackup", &kubeconfig, &["-n", &ns.name, ""])),
        (
            vec![
                "dump",
                "verify",
                "restore",
                "drill",
                "list",
                "snapshot",
                "schedule",
                "completion",
                "help",
                "orders",
                "orders-0"
            ],
            ":4"
        )
    );

    let Some(kubectl) = kubectl() else {
        common::missing_tool("no kubectl 1.26+ found for the kubectl part");
        return;
    };
    let path = format!("{}:{}", helpers_dir().display(), path_with_plugins());
    let output = std::process::Command::new("timeout")
        .arg("30")
        .arg(kubectl)
        .args(["__complete", "dbcheck", "-n", &ns.name, "orders-"])
        .env("PATH", path)
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "orders-0\tpostgres pod\n:4\n",
        "{output:?}"
    );
}

/// The cluster's own kubectl build (tests/cluster), which supports plugin completion.
fn kubectl() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".cache/kubectl-db/k8s-v1.34.4/bin/kubectl");
    path.is_file().then_some(path)
}
