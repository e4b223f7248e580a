//! Binary-level tests: exit codes and messages of real runs, with a clean environment.
//! Bad input must exit 2 before any API call — the kubeconfig here points at a port
//! nothing listens on, so any API call would turn into exit 3 instead.

use crate::common;

/// Runs dbdeploy against the unreachable cluster; returns (exit code, stdout, stderr).
fn dbdeploy(args: &[&str]) -> (i32, String, String) {
    common::output(common::unreachable_bin("kubectl-dbdeploy").args(args))
}

fn usage_error(args: &[&str]) -> String {
    let (code, stdout, stderr) = dbdeploy(args);
    assert_eq!(code, 2, "args {args:?}\nstdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.is_empty(),
        "nothing on stdout for an error: {stdout}"
    );
    stderr
}

#[test]
fn unknown_engine_is_a_usage_error() {
    let stderr = usage_error(&["oracle"]);
    assert!(
        stderr.contains("unrecognized subcommand 'oracle'"),
        "{stderr}"
    );
}

#[test]
fn invalid_name_is_a_usage_error() {
    assert_eq!(
        usage_error(&["postgres", "--name", "My_DB"]),
        "error: invalid name \"My_DB\": use at most 52 lower-case letters, digits and '-', starting with a letter and ending with a letter or digit\n"
    );
}

#[test]
fn bad_quantity_is_a_usage_error() {
    assert_eq!(
        usage_error(&["mysql", "--storage-size", "10GB"]),
        "error: invalid --storage-size \"10GB\": expected a Kubernetes quantity such as 500m, 1, 512Mi or 10Gi\n"
    );
}

#[test]
fn several_replicas_are_refused() {
    assert_eq!(
        usage_error(&["mariadb", "--replicas", "3"]),
        "error: --replicas 3 is refused: without replication each pod would hold its own, different copy of the data behind one Service. Run 1 replica.\n"
    );
}

#[test]
fn malformed_set_is_a_usage_error() {
    let stderr = usage_error(&["postgres", "--set", "max_connections"]);
    assert!(stderr.contains("expected key=value"), "{stderr}");
    assert_eq!(
        usage_error(&["postgres", "--set", "bad key=1"]),
        "error: invalid --set key \"bad key\": use letters, digits, '_', '-' or '.', starting with a letter\n"
    );
    let stderr = usage_error(&["mysql", "--set", "datadir=/tmp"]);
    assert!(stderr.contains("managed by dbdeploy"), "{stderr}");
}

#[test]
fn kubeconfig_names_are_checked_and_db_user_is_not_kubectl_user() {
    // --user is kubectl's kubeconfig user; kube would silently go anonymous on a typo.
    assert_eq!(
        usage_error(&["list", "--user", "appuser"]),
        "error: user \"appuser\" is not in the kubeconfig (it has: nobody)\n"
    );
    assert!(
        usage_error(&["list", "--context", "prod"])
            .contains("context \"prod\" is not in the kubeconfig")
    );
    let (code, stdout, _) = dbdeploy(&[
        "postgres",
        "--db-user",
        "shop",
        "--dry-run=client",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0);
    assert!(stdout.contains("\"POSTGRES_USER\": \"shop\""), "{stdout}");
}

#[test]
fn purge_without_yes_and_without_a_terminal_is_refused() {
    let stderr = usage_error(&["delete", "postgres", "--purge-data"]);
    assert!(stderr.contains("pass --yes"), "{stderr}");
    // The question says where the data would go: database, namespace and context.
    assert!(
        stderr.contains("of database postgres in namespace team-a of context nowhere"),
        "{stderr}"
    );
    let stderr = usage_error(&["delete", "postgres", "--purge-data", "-n", "prod"]);
    assert!(
        stderr.contains("in namespace prod of context nowhere"),
        "{stderr}"
    );
}

#[test]
fn unreachable_cluster_is_exit_3_with_a_hint() {
    let (code, _, stderr) = dbdeploy(&["list", "--request-timeout", "5s"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.starts_with("error: failed to list StatefulSets"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
}

#[test]
fn client_dry_run_prints_manifests_without_any_api_call() {
    let (code, stdout, stderr) = dbdeploy(&["postgres", "--dry-run=client", "-o", "yaml"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("kind: StatefulSet"));
    // The context's namespace, read from the kubeconfig file, not from the API.
    assert!(stdout.contains("namespace: team-a"), "{stdout}");
    assert!(
        !stdout.contains("kind: Secret"),
        "generated passwords are not printed"
    );
    assert!(
        stderr.contains("Secret postgres-secret is left out"),
        "{stderr}"
    );

    let (code, stdout, _) = dbdeploy(&["mysql", "--dry-run=client", "-o", "json", "-n", "db"]);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(list["kind"], "List");
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["metadata"]["namespace"] == "db")
    );
}

#[test]
fn help_and_version_read_as_kubectl_plugins() {
    for bin in [
        "kubectl-dbdeploy",
        "kubectl-dbcheck",
        "kubectl-dbbackup",
        "kubectl-dbpersist",
    ] {
        let output = common::clean_bin(bin).arg("--help").output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{bin}");
        let help = String::from_utf8_lossy(&output.stdout);
        let name = bin.replace("kubectl-", "kubectl ");
        assert!(help.contains(&format!("Usage: {name}")), "{bin}: {help}");
        for flag in [
            "--kubeconfig",
            "--context",
            "--namespace",
            "--request-timeout",
        ] {
            assert!(help.contains(flag), "{bin} lacks {flag}");
        }
        let output = common::clean_bin(bin).arg("--version").output().unwrap();
        assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn completion_scripts_are_generated() {
    let output = common::clean_bin("kubectl-dbdeploy")
        .args(["completion", "bash"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let script = String::from_utf8_lossy(&output.stdout);
    assert!(script.contains("complete -F"), "{script}");
    assert!(script.contains("--storage-size"));
}

#[test]
fn dbbackup_database_names_are_names_never_connection_strings() {
    // pg_dump and psql read a database name with '=' (or a postgresql:// prefix) as a
    // connection string: these would dump another server, or run with other options.
    for database in [
        "host=elsewhere dbname=x",
        "dbname=appdb",
        "postgresql://elsewhere/appdb",
        "app db",
        "app;db",
        "$(id)",
    ] {
        let output = common::unreachable_bin("kubectl-dbbackup")
            .args(["postgres", "--database", database, "-f", "-"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{database:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{database:?}");
        assert!(
            stderr.contains("invalid --database") && stderr.contains("plain database name"),
            "{database:?}: {stderr}"
        );
    }
    // A plain name passes validation and goes on to the (unreachable) cluster: exit 3.
    common::assert_exit(
        common::unreachable_bin("kubectl-dbbackup").args([
            "postgres",
            "--database",
            "app_db-2",
            "-f",
            "-",
        ]),
        3,
    );
}

#[test]
fn impersonation_needs_a_user_and_a_ca_excludes_skipping_verification() {
    assert_eq!(
        usage_error(&["list", "--as-group", "admins"]),
        "error: --as-group and --as-uid impersonate a user's groups and uid: name the user with --as\n"
    );
    assert!(usage_error(&["list", "--as-uid", "42"]).contains("--as"));
    assert!(
        usage_error(&[
            "list",
            "--certificate-authority",
            "/ca.crt",
            "--insecure-skip-tls-verify"
        ])
        .contains("exclude each other")
    );
}

#[test]
fn a_server_and_a_token_need_no_kubeconfig_and_the_token_is_never_printed() {
    // No KUBECONFIG and an empty HOME: without --server that is a kubeconfig error...
    let (code, _, stderr) = common::output(common::clean_bin("kubectl-dbdeploy").arg("list"));
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("failed to load kubeconfig"), "{stderr}");
    // ...with it, the run gets as far as the (unreachable) server.
    let (code, stdout, stderr) = common::output(common::clean_bin("kubectl-dbdeploy").args([
        "list",
        "-vvv",
        "--server",
        "https://127.0.0.1:1",
        "--token",
        "s3cr3t-t0ken",
        "--insecure-skip-tls-verify",
    ]));
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("failed to list"), "{stderr}");
    assert!(
        !stdout.contains("s3cr3t") && !stderr.contains("s3cr3t"),
        "{stdout}\n{stderr}"
    );
}

#[test]
fn targets_are_parsed_as_kubectl_writes_them_before_any_api_call() {
    let run = |bin: &str, args: &[&str]| common::output(common::unreachable_bin(bin).args(args));
    let (code, stdout, stderr) = run("kubectl-dbcheck", &["deploy/mysql"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("unknown resource type \"deploy\"; a target is POD, pod/NAME or sts/NAME"),
        "{stderr}"
    );
    for (bin, args) in [
        ("kubectl-dbbackup", &["sts/My_DB"][..]),
        ("kubectl-dbbackup", &["restore", "pod/", "-f", "x.sql"]),
        ("kubectl-dbpersist", &["statefulsets/a/b", "--yes"]),
        ("kubectl-dbbackup", &["snapshot", "list", "svc/x"]),
    ] {
        let (code, _, stderr) = run(bin, args);
        assert_eq!(code, 2, "{bin} {args:?}: {stderr}");
        assert!(
            stderr.contains("invalid target"),
            "{bin} {args:?}: {stderr}"
        );
    }
    // A selector and a target exclude each other.
    let (code, _, stderr) = run("kubectl-dbcheck", &["-l", "app=mysql", "mysql-0"]);
    assert_eq!(code, 2, "{stderr}");
    // Well-formed ones get as far as the (unreachable) cluster: exit 3.
    for args in [
        &["sts/mysql"][..],
        &["po/mysql-0", "-c", "db"],
        &["-l", "app=mysql"],
    ] {
        let (code, _, stderr) = run(
            "kubectl-dbcheck",
            &[args, &["--request-timeout", "2s"]].concat(),
        );
        assert_eq!(code, 3, "{args:?}: {stderr}");
    }
}

#[test]
fn every_output_format_of_kubectl_on_an_offline_report() {
    // verify reads a local file only: every -o form without a cluster.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty.sql");
    std::fs::write(&file, "").unwrap();
    let file = file.display().to_string();
    let verify = |format: &str| {
        common::output(common::clean_bin("kubectl-dbbackup").args(["verify", &file, "-o", format]))
    };
    let (_, stdout, stderr) = verify("json");
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stdout}{stderr}"));
    assert_eq!(report["apiVersion"], "kubectl-db/v1");
    assert_eq!(report["kind"], "VerifyReport");
    assert!(
        stdout
            .starts_with("{\n  \"apiVersion\": \"kubectl-db/v1\",\n  \"kind\": \"VerifyReport\",")
    );
    let (_, stdout, _) = verify("yaml");
    assert!(
        stdout.starts_with("apiVersion: kubectl-db/v1\nkind: VerifyReport\n"),
        "{stdout}"
    );
    let (_, stdout, _) = verify("name");
    assert_eq!(stdout, format!("{file}\n"));
    let (_, stdout, _) = verify("jsonpath={.kind} {.ok}");
    assert_eq!(stdout, "VerifyReport false");
    let (_, stdout, _) = verify("jsonpath-as-json={.kind}");
    assert_eq!(stdout, "[\n  \"VerifyReport\"\n]\n");
    let (code, stdout, stderr) = verify("jsonpath={.items[}");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stdout.is_empty() && stderr.contains("invalid JSONPath"),
        "{stderr}"
    );
    // A dry run's manifests by name, as `kubectl apply --dry-run -o name` prints them.
    let (code, stdout, stderr) = dbdeploy(&["postgres", "--dry-run=client", "-o", "name"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("statefulset.apps/postgres\n"), "{stdout}");
    assert!(stdout.contains("service/postgres\n"), "{stdout}");
}

#[test]
fn verdicts_are_coloured_only_when_asked_or_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty.sql");
    std::fs::write(&file, "").unwrap();
    let verify = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = common::clean_bin("kubectl-dbbackup");
        cmd.arg("verify").arg(&file).args(args);
        cmd.env_remove("NO_COLOR");
        for (name, value) in env {
            cmd.env(name, value);
        }
        common::output(&mut cmd).1
    };
    const ESC: char = '\x1b';
    // Not a terminal: plain, unless forced.
    assert!(!verify(&[], &[]).contains(ESC));
    assert!(verify(&["--color", "always"], &[]).contains("\x1b[31mFAILED\x1b[0m"));
    assert!(verify(&[], &[("CLICOLOR_FORCE", "1")]).contains(ESC));
    assert!(!verify(&[], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]).contains(ESC));
    assert!(!verify(&["--color", "never"], &[("CLICOLOR_FORCE", "1")]).contains(ESC));
    // Documents are never coloured.
    assert!(!verify(&["--color", "always", "-o", "json"], &[]).contains(ESC));
}
