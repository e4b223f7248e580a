//! Safety promises of PRODUCT.md, each proven on the local cluster (issue #8): restricted
//! Pod Security, idempotence, no secret leaks (output, logs, process command lines), no data
//! loss on delete, bad input (property tests), interrupted work. docs/safety.md has the table.
//! The control-plane fault test lives in tests/safety_faults.rs (its own binary, run serially).

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::TestNamespace;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::DeleteParams;
use kubectl_db::engine::Engine;
use kubectl_db::exec;
use proptest::prelude::*;
use serde_json::Value;

use common::{deploy_args, deploy_json, names_in, secret_data, shell, sql, text};

const RESTRICTED: &[(&str, &str)] = &[
    ("pod-security.kubernetes.io/enforce", "restricted"),
    ("pod-security.kubernetes.io/enforce-version", "latest"),
];

// ---------------------------------------------------------------------------------------
// 1. Restricted Pod Security

async fn restricted(engine: Engine) {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "psa", RESTRICTED).await;
    let report = deploy_json(&ns, &deploy_args(engine));
    assert_eq!(report["wait"]["ready"], true, "{report}");
    // The pod exists (admitted under `restricted`) and is Ready.
    let pods: Api<Pod> = ns.kube.api();
    let pod = pods.get(&format!("{}-0", engine.as_str())).await.unwrap();
    assert!(
        common::is_ready(&pod),
        "pod not Ready in a restricted namespace"
    );
}

engine_tests! {
    restricted_pod_security_postgres: restricted(Postgres),
    restricted_pod_security_mariadb: restricted(Mariadb),
    restricted_pod_security_mysql: restricted(Mysql),
}

// ---------------------------------------------------------------------------------------
// 2. Idempotence

/// resourceVersion of every object the report lists, by "Kind/name".
async fn resource_versions(ns: &TestNamespace, report: &Value) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    for object in report["objects"].as_array().unwrap() {
        let kind = object["kind"].as_str().unwrap();
        let name = object["name"].as_str().unwrap();
        let object = ns.api_for(kind).get(name).await.unwrap();
        let version = object.metadata.resource_version;
        versions.insert(format!("{kind}/{name}"), version.unwrap());
    }
    // The data volume and the pod belong to the database too.
    let pvcs: Api<PersistentVolumeClaim> = ns.kube.api();
    for pvc in pvcs.list(&Default::default()).await.unwrap() {
        versions.insert(
            format!("PersistentVolumeClaim/{}", pvc.metadata.name.unwrap()),
            pvc.metadata.resource_version.unwrap(),
        );
    }
    versions
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_deploys_change_nothing_after_the_first() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "idem", RESTRICTED).await;
    let args = deploy_args(Engine::Postgres);
    let first = deploy_json(&ns, &args);
    assert!(first["objects"].as_array().unwrap().len() >= 5, "{first}");
    let versions = resource_versions(&ns, &first).await;
    let secret = secret_data(&ns, "postgres-secret").await;
    let pods: Api<Pod> = ns.kube.api();
    let pod_uid = pods.get("postgres-0").await.unwrap().metadata.uid;
    for run in 2..=10 {
        let report = deploy_json(&ns, &args);
        for object in report["objects"].as_array().unwrap() {
            assert_eq!(object["outcome"], "unchanged", "run {run}: {object}");
        }
        assert_eq!(
            resource_versions(&ns, &report).await,
            versions,
            "run {run} changed an object"
        );
        assert_eq!(
            secret_data(&ns, "postgres-secret").await,
            secret,
            "run {run} changed the Secret's data"
        );
    }
    assert_eq!(
        pods.get("postgres-0").await.unwrap().metadata.uid,
        pod_uid,
        "the pod was replaced"
    );
}

// ---------------------------------------------------------------------------------------
// 3. No secret leaks

/// Every form a password could take in output: raw, and base64 as the API carries it.
fn secret_forms(secrets: &[BTreeMap<String, Vec<u8>>]) -> Vec<(String, String)> {
    use std::fmt::Write;
    let mut forms = Vec::new();
    for data in secrets {
        for (key, value) in data {
            let raw = text(value);
            assert!(raw.len() >= 16, "{key} is too short to search for");
            forms.push((key.clone(), raw));
            forms.push((format!("{key} (base64)"), base64(value)));
        }
    }
    let mut listing = String::new();
    for (key, _) in &forms {
        let _ = write!(listing, "{key} ");
    }
    eprintln!("searching for: {listing}");
    forms
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn assert_no_secret(what: &str, haystack: &str, forms: &[(String, String)]) {
    for (key, form) in forms {
        assert!(
            !haystack.contains(form.as_str()),
            "{key} appears in {what}:\n{}",
            haystack
                .lines()
                .filter(|l| l.contains(form.as_str()))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Runs a command and checks its stdout and stderr; returns (exit code, stderr).
fn run_checked(
    mut cmd: assert_cmd::Command,
    what: &str,
    forms: &[(String, String)],
) -> (Option<i32>, String) {
    let output = cmd.output().unwrap();
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(
        !stderr.is_empty() || !stdout.is_empty(),
        "{what}: printed nothing (nothing to check)"
    );
    assert_no_secret(&format!("{what} stdout"), &stdout, forms);
    assert_no_secret(&format!("{what} stderr"), &stderr, forms);
    eprintln!(
        "{what}: exit {:?}, {} bytes of output checked",
        output.status.code(),
        stdout.len() + stderr.len()
    );
    (output.status.code(), stderr)
}

/// Reads every process's command line in the container, again and again, until stopped.
/// Returns how many sampling rounds ran and everything they saw, one process per line
/// (`/proc/PID/cmdline:arg0 arg1 ...`). Each exec loops inside the container for a few
/// hundred passes of a single `grep` over all of /proc (one fork a pass), so a client that
/// lives a few milliseconds is still caught. Errors (the pod going away) are skipped.
fn sample_cmdlines(
    ns: &TestNamespace,
    engine: Engine,
    pod: &str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, String)> {
    let pods: Api<Pod> = ns.kube.api();
    let pod = pod.to_string();
    tokio::spawn(async move {
        let script = r#"i=0
while [ "$i" -lt 300 ]; do
  grep -a -H '' /proc/[0-9]*/cmdline 2>/dev/null
  i=$((i + 1))
done | sort -u"#;
        let command = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        let mut seen = String::new();
        let mut samples = 0;
        while !stop.load(Ordering::SeqCst) {
            match exec::run(
                &pods,
                &pod,
                Some(engine.container_name()),
                &command,
                None,
                Duration::from_secs(30),
            )
            .await
            {
                Ok(output) if !output.stdout.is_empty() => {
                    samples += 1;
                    // Arguments are NUL-separated in /proc/PID/cmdline.
                    seen.push_str(&String::from_utf8_lossy(&output.stdout).replace('\0', " "));
                    seen.push('\n');
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        (samples, seen)
    })
}

/// The program names (first word, without its directory) of sampled command lines.
fn programs(seen: &str) -> std::collections::BTreeSet<&str> {
    seen.lines()
        .filter_map(|line| line.split_once("/cmdline:").map(|(_, cmdline)| cmdline))
        .filter_map(|cmdline| cmdline.split_whitespace().next())
        .map(|program| program.rsplit('/').next().unwrap_or(program))
        .collect()
}

/// The database clients a command of the suite runs in the pod (by program name).
fn clients(engine: Engine, what: &str) -> &'static [&'static str] {
    match (engine, what) {
        (Engine::Postgres, "dump") => &["pg_dumpall"],
        (Engine::Postgres, _) => &["psql"],
        (_, "dump") => &["mariadb-dump", "mysqldump"],
        (_, "check") => &["mariadb", "mysql", "mysqladmin", "mariadb-admin"],
        (_, _) => &["mariadb", "mysql"],
    }
}

/// The database pod whose process command lines are sampled while a command runs.
struct Sampled<'a> {
    ns: &'a TestNamespace,
    engine: Engine,
    pod: &'a str,
}

impl Sampled<'_> {
    /// Runs `cmd` (blocking) while sampling command lines in the pod; checks both. The
    /// sampler must have caught a database client the command runs (`clients`): one that saw
    /// nothing would prove nothing about the command lines.
    async fn run(
        &self,
        cmd: assert_cmd::Command,
        what: &str,
        forms: &[(String, String)],
    ) -> (Option<i32>, String) {
        let (result, caught) = self.once(cmd, what, forms).await;
        assert!(
            caught,
            "{what}: the sampler caught none of the clients it looks for"
        );
        result
    }

    /// [`Self::run`] for a short command that may run its client between two samples:
    /// repeated (each run checked) until the sampler has caught a client, at most 8 times.
    async fn run_repeatedly(
        &self,
        make: impl Fn() -> assert_cmd::Command,
        what: &str,
        forms: &[(String, String)],
    ) -> (Option<i32>, String) {
        for _ in 1..8 {
            let (result, caught) = self.once(make(), what, forms).await;
            if caught {
                return result;
            }
        }
        self.run(make(), what, forms).await
    }

    /// One sampled run: its result, and whether the sampler caught a client it looks for.
    async fn once(
        &self,
        cmd: assert_cmd::Command,
        what: &str,
        forms: &[(String, String)],
    ) -> ((Option<i32>, String), bool) {
        let (ns, engine, pod) = (self.ns, self.engine, self.pod);
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample_cmdlines(ns, engine, pod, stop.clone());
        // Give the sampler a head start so it sees the command's processes.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let forms_owned = forms.to_vec();
        let what_owned = what.to_string();
        let result =
            tokio::task::spawn_blocking(move || run_checked(cmd, &what_owned, &forms_owned))
                .await
                .unwrap();
        stop.store(true, Ordering::SeqCst);
        let (samples, seen) = sampler.await.unwrap();
        let programs = programs(&seen);
        let expected = clients(engine, what);
        let caught: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|tool| programs.contains(tool))
            .collect();
        eprintln!(
            "{what}: {samples} sampling rounds of /proc/*/cmdline; clients caught: {caught:?}"
        );
        assert!(samples > 0, "{what}: no /proc sample taken");
        if caught.is_empty() {
            eprintln!(
                "{what}: the sampler caught none of {expected:?} in the pod (programs seen: {programs:?})"
            );
        }
        assert_no_secret(
            &format!("process command lines during {what}"),
            &seen,
            forms,
        );
        (result, !caught.is_empty())
    }
}

async fn no_secret_leaks(engine: Engine) {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "leak", RESTRICTED).await;
    let name = engine.as_str();
    let pod = format!("{name}-0");
    let sampled = Sampled {
        ns: &ns,
        engine,
        pod: &pod,
    };
    let args = deploy_args(engine);
    let mut first = ns.bin("kubectl-dbdeploy");
    first.args(&args).arg("-vvv");
    let output = first.output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let secret = secret_data(&ns, &format!("{name}-secret")).await;
    let mut all_secrets = vec![secret.clone()];
    let mut forms = secret_forms(&all_secrets);
    // The first deploy's output, checked now that the passwords are known.
    assert_no_secret("first deploy stdout", &text(&output.stdout), &forms);
    assert_no_secret("first deploy stderr", &text(&output.stderr), &forms);

    // Probes are running all along: sample while idle first.
    let idle = || {
        let mut idle = ns.bin("kubectl-dbdeploy");
        idle.args(&args).arg("-vvv");
        idle
    };
    sampled.run_repeatedly(idle, "re-deploy", &forms).await;

    let mut list = ns.bin("kubectl-dbdeploy");
    list.args(["list", "-vvv"]);
    assert_eq!(run_checked(list, "list", &forms).0, Some(0));

    let check = || {
        let mut check = ns.bin("kubectl-dbcheck");
        check.args([name, "-vvv"]);
        check
    };
    let (code, stderr) = sampled.run_repeatedly(check, "check", &forms).await;
    assert!(matches!(code, Some(0 | 1)), "check: {stderr}");

    let dir = tempfile::tempdir().unwrap();
    // A small dump's client lives a few milliseconds between the manifest's two passes:
    // repeated until sampled, each run to a new file (dump never overwrites one).
    let attempt = std::cell::Cell::new(0);
    let file_of = |n: u32| dir.path().join(format!("{name}-{n}.sql.gz"));
    let dump = || {
        attempt.set(attempt.get() + 1);
        let mut dump = ns.bin("kubectl-dbbackup");
        dump.arg(name)
            .arg("-f")
            .arg(file_of(attempt.get()))
            .arg("-vvv");
        dump
    };
    let (code, stderr) = sampled.run_repeatedly(dump, "dump", &forms).await;
    assert_eq!(code, Some(0), "dump: {stderr}");
    let file = file_of(attempt.get());
    let file_arg = file.display().to_string();
    // The dump itself holds no password of the Secret (users' hashes are not passwords).
    assert_no_secret("the dump file", &common::gunzip(&file), &forms);

    let mut verify = ns.bin("kubectl-dbbackup");
    verify.args(["verify", &file_arg, "-vvv"]);
    assert_eq!(run_checked(verify, "verify", &forms).0, Some(0));

    let mut restore = ns.bin("kubectl-dbbackup");
    restore.args(["restore", name, "-f", &file_arg, "--yes", "-vvv"]);
    let (code, stderr) = sampled.run(restore, "restore", &forms).await;
    assert_eq!(code, Some(0), "restore: {stderr}");

    // Failure paths: a bad restore (truncated file), a dump of a missing pod, a check with
    // an impossible exec timeout, a deploy that times out.
    let truncated = dir.path().join("truncated.sql.gz");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let mut bad_restore = ns.bin("kubectl-dbbackup");
    bad_restore.args([
        "restore",
        name,
        "-f",
        &truncated.display().to_string(),
        "--yes",
        "-vvv",
    ]);
    let (code, _) = run_checked(bad_restore, "restore of a truncated file", &forms);
    assert_ne!(code, Some(0));

    let mut missing = ns.bin("kubectl-dbbackup");
    missing.args([
        "nosuchdb-0",
        "-f",
        &dir.path().join("x.sql.gz").display().to_string(),
        "-vvv",
    ]);
    let (code, _) = run_checked(missing, "dump of a missing pod", &forms);
    assert_ne!(code, Some(0));

    let mut slow_check = ns.bin("kubectl-dbcheck");
    slow_check.args([name, "--exec-timeout", "1ms", "-vvv"]);
    run_checked(slow_check, "check with exec timeout 1ms", &forms);

    let mut timeout_args = deploy_args(engine);
    timeout_args.extend(["--name".into(), "slow".into()]);
    let at = timeout_args.iter().position(|a| a == "4m").unwrap();
    timeout_args[at] = "2s".into();
    let mut timed_out = ns.bin("kubectl-dbdeploy");
    timed_out.args(&timeout_args).arg("-vvv");
    let output = common::exited(timed_out.output().unwrap(), 3, "deploy past --timeout");
    all_secrets.push(secret_data(&ns, "slow-secret").await);
    forms = secret_forms(&all_secrets);
    assert_no_secret("timed-out deploy stdout", &text(&output.stdout), &forms);
    assert_no_secret("timed-out deploy stderr", &text(&output.stderr), &forms);
    let mut delete_slow = ns.bin("kubectl-dbdeploy");
    delete_slow.args(["delete", "slow", "--purge-data", "--yes", "-vvv"]);
    assert_eq!(
        run_checked(delete_slow, "delete --purge-data", &forms).0,
        Some(0)
    );

    // persist deletes the pod: probes, the preStop hook and the new pod's start are sampled.
    let mut persist = ns.bin("kubectl-dbpersist");
    persist.args([name, "--yes", "--timeout", "4m", "-vvv"]);
    let (code, stderr) = sampled.run(persist, "persist", &forms).await;
    assert_eq!(code, Some(0), "persist: {stderr}");

    let mut delete = ns.bin("kubectl-dbdeploy");
    delete.args(["delete", name, "-vvv"]);
    assert_eq!(run_checked(delete, "delete", &forms).0, Some(0));
}

engine_tests! {
    no_secret_leaks_postgres: no_secret_leaks(Postgres),
    no_secret_leaks_mariadb: no_secret_leaks(Mariadb),
}

// ---------------------------------------------------------------------------------------
// 4. No data loss on delete

async fn delete_keeps_data(engine: Engine) {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "keep", RESTRICTED).await;
    let name = engine.as_str();
    let pod = format!("{name}-0");
    let args = deploy_args(engine);
    deploy_json(&ns, &args);
    let table = match engine {
        Engine::Postgres => "kept_rows",
        _ => "appdb.kept_rows",
    };
    sql(
        &ns,
        engine,
        &pod,
        &format!(
            "CREATE TABLE {table} (id int primary key, v varchar(40)); INSERT INTO {table} VALUES (1, 'survives delete');"
        ),
    )
    .await;
    let secret_before = secret_data(&ns, &format!("{name}-secret")).await;
    let pvcs: Api<PersistentVolumeClaim> = ns.kube.api();
    let pvc_name = kubectl_db::render::Names::pvc(name, 0);
    let uid_before = pvcs.get(&pvc_name).await.unwrap().metadata.uid;

    let deleted = deploy_json(&ns, &["delete", name]);
    assert!(
        deleted["kept"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == &format!("PersistentVolumeClaim/{pvc_name}")),
        "{deleted}"
    );
    // The pod goes; the PVC (same UID, not being deleted) and the Secret stay.
    let pods: Api<Pod> = ns.kube.api();
    let deadline = Instant::now() + Duration::from_secs(120);
    while pods.get_opt(&pod).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "pod not gone after delete");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let pvc = pvcs.get(&pvc_name).await.unwrap();
    assert_eq!(pvc.metadata.uid, uid_before);
    assert!(pvc.metadata.deletion_timestamp.is_none());
    assert_eq!(
        secret_data(&ns, &format!("{name}-secret")).await,
        secret_before
    );

    // --purge-data without --yes and without a terminal: refused, nothing touched.
    let output = ns
        .bin("kubectl-dbdeploy")
        .args(["delete", name, "--purge-data"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("--yes"));
    let pvc = pvcs.get(&pvc_name).await.unwrap();
    assert_eq!(pvc.metadata.uid, uid_before);
    assert!(pvc.metadata.deletion_timestamp.is_none());

    // Redeploy under the same name: the kept passwords open the kept data.
    let again = deploy_json(&ns, &args);
    assert_eq!(again["wait"]["ready"], true);
    assert_eq!(
        again["secret"]["generated"].as_array().unwrap().len(),
        0,
        "{again}"
    );
    assert_eq!(pvcs.get(&pvc_name).await.unwrap().metadata.uid, uid_before);
    let row = sql(
        &ns,
        engine,
        &pod,
        &format!("SELECT v FROM {table} WHERE id = 1;"),
    )
    .await;
    assert_eq!(row.trim(), "survives delete");
    // Password login over TCP (not the local socket) as the application user.
    let login = match engine {
        Engine::Postgres => {
            r#"PGPASSWORD="$POSTGRES_PASSWORD" psql -X -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc 'SELECT v FROM kept_rows'"#
        }
        _ => {
            r#"MYSQL_PWD="$MYSQL_PASSWORD" mariadb -h127.0.0.1 -u"$MYSQL_USER" -N -B -e 'SELECT v FROM appdb.kept_rows' 2>&1 || MYSQL_PWD="$MYSQL_PASSWORD" mysql -h127.0.0.1 -u"$MYSQL_USER" -N -B -e 'SELECT v FROM appdb.kept_rows'"#
        }
    };
    let out = shell(&ns, engine, &pod, login, "").await;
    assert_eq!(out.trim(), "survives delete");
}

engine_tests! {
    delete_keeps_data_postgres: delete_keeps_data(Postgres),
    delete_keeps_data_mariadb: delete_keeps_data(Mariadb),
}

// ---------------------------------------------------------------------------------------
// 5. Bad input

mod bad_input {
    use super::*;
    use kubectl_db::cli::parse_duration;
    use kubectl_db::render::{DeploySpec, parse_setting, validate_name, validate_quantity};

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".*",
            "[a-zA-Z0-9=._/ -]{0,40}",
            "[0-9.]{0,12}[a-zA-Zµ]{0,4}",
            "[-+]?[0-9]{0,30}(\\.[0-9]{0,30})?(e[-+]?[0-9]{1,5})?(ms|s|m|h|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m|u|n)?",
            "([0-9]{1,20}(ms|s|m|h)){1,4}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn validators_never_panic(text in any_text()) {
            let _ = parse_setting(&text);
            // A parsed duration must be usable as a deadline: `now + d` must not overflow
            // (`--timeout 18446744073709551615` once panicked after applying the objects).
            if let Ok(d) = parse_duration(&text) {
                prop_assert!(tokio::time::Instant::now().checked_add(d).is_some(), "{text:?}");
                prop_assert!(std::time::Instant::now().checked_add(d).is_some(), "{text:?}");
            }
            let _ = validate_quantity("--memory", &text);
            let _ = validate_name(&text);
        }

        #[test]
        fn spec_validation_errs_with_a_usage_message(
            engine in prop_oneof![Just(Engine::Postgres), Just(Engine::Mysql), Just(Engine::Mariadb)],
            field in 0usize..9,
            value in any_text(),
            setting in any_text(),
        ) {
            let mut spec = DeploySpec::new(engine, "default");
            match field {
                0 => spec.name = value.clone(),
                1 => spec.namespace = value.clone(),
                2 => spec.image = value.clone(),
                3 => spec.database = value.clone(),
                4 => spec.user = value.clone(),
                5 => spec.storage_size = value.clone(),
                6 => spec.resources.cpu_request = value.clone(),
                7 => spec.resources.memory_limit = value.clone(),
                _ => spec.storage_class = Some(value.clone()),
            }
            if let Ok(pair) = parse_setting(&setting) {
                spec.settings.push(pair);
            }
            if let Err(err) = spec.validate() {
                prop_assert_eq!(err.exit_code(), 2, "{}", err);
                prop_assert!(!err.to_string().is_empty());
            }
        }
    }

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(vec![
                "postgres", "mysql", "mariadb", "delete", "list", "completion", "bash",
                "--name", "--image", "--database", "--db-user", "--storage-size",
                "--storage-class", "--cpu", "--cpu-limit", "--memory", "--memory-limit",
                "--set", "--replicas", "--dry-run", "--dry-run=client", "--timeout", "-o",
                "json", "yaml", "--purge-data", "--yes", "-n", "--namespace", "--context",
                "--request-timeout", "--no-wait", "--pdb", "-A", "", "-", "--", "=",
            ]).prop_map(String::from),
            // A process argument cannot hold a NUL byte.
            2 => any_text().prop_map(|s| s.replace('\0', "")),
        ]
    }

    /// Runs of dbdeploy with random arguments against an unreachable cluster: every failure
    /// is exit 2 (usage) with a message or exit 3 from the connection; never a panic
    /// (exit 101) or a signal. Whatever fails before the connection must be exit 2.
    #[test]
    fn random_dbdeploy_arguments_never_panic() {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 300,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        // Half free-form words, half well-formed commands with random flag values, so both
        // clap's parsing and the validators behind it are reached.
        let flag = prop::sample::select(vec![
            "--name",
            "--image",
            "--database",
            "--db-user",
            "--storage-size",
            "--storage-class",
            "--cpu",
            "--cpu-limit",
            "--memory",
            "--memory-limit",
            "--set",
            "--replicas",
            "--timeout",
            "--request-timeout",
            "-n",
        ]);
        let engine = prop::sample::select(vec!["postgres", "mysql", "mariadb"]);
        let clean = any_text().prop_map(|s| s.replace('\0', ""));
        let structured = (
            engine,
            prop::collection::vec((flag, clean), 1..4),
            any::<bool>(),
        )
            .prop_map(|(engine, pairs, dry)| {
                let mut args = vec![engine.to_string()];
                for (flag, value) in pairs {
                    args.push(format!("{flag}={value}"));
                }
                if dry {
                    args.push("--dry-run=client".into());
                }
                args
            });
        let strategy = prop_oneof![prop::collection::vec(word(), 0..8), structured];
        let codes = std::sync::Mutex::new(BTreeMap::<i32, usize>::new());
        runner
            .run(&strategy, |args| {
                let output = common::unreachable_bin("kubectl-dbdeploy")
                    .args(["--request-timeout", "3s"])
                    .args(&args)
                    .timeout(Duration::from_secs(20))
                    .output()
                    .unwrap();
                let stderr = text(&output.stderr);
                let code = output.status.code();
                prop_assert!(code.is_some(), "{args:?}: killed by a signal: {stderr}");
                let code = code.unwrap();
                *codes.lock().unwrap().entry(code).or_default() += 1;
                prop_assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
                prop_assert!(matches!(code, 0 | 2 | 3), "{args:?}: exit {code}: {stderr}");
                if code == 2 {
                    prop_assert!(
                        stderr.contains("error"),
                        "{args:?}: exit 2 without a message"
                    );
                }
                if code == 3 {
                    // Only a connection failure may give 3: the input was fine.
                    prop_assert!(
                        stderr.contains("127.0.0.1:1") || stderr.contains("connect"),
                        "{args:?}: exit 3 without a connection error: {stderr}"
                    );
                }
                Ok(())
            })
            .unwrap();
        eprintln!("exit codes over 300 runs: {:?}", codes.lock().unwrap());
    }

    fn write_gz(path: &Path, body: &[u8]) {
        use std::io::Write;
        let mut encoder =
            flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), Default::default());
        encoder.write_all(body).unwrap();
        encoder.finish().unwrap();
    }

    /// Bad files are refused by `verify` (exit 1 or 2) and by `restore` before any API call:
    /// the kubeconfig points nowhere, so reaching the cluster would be exit 3.
    #[test]
    fn bad_dump_files_are_refused_before_the_pod() {
        let dir = tempfile::tempdir().unwrap();
        let pg_body =
            b"--\n-- PostgreSQL database cluster dump\n--\nCREATE TABLE t (id int);\n".to_vec();
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("empty.sql.gz", Vec::new(), false),
            ("empty.sql", Vec::new(), false),
            (
                "garbage.sql.gz",
                b"\x1f\x8b\x08\x00garbage that is not deflate".to_vec(),
                false,
            ),
            (
                "random.sql.zst",
                (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
                false,
            ),
            ("notsql.sql", b"hello, this is not a dump\n".to_vec(), false),
            // A PostgreSQL dump without its completion trailer (truncated).
            ("truncated-pg.sql", pg_body.clone(), false),
            ("truncated-pg.sql.gz", pg_body, true),
        ];
        for (name, body, gz) in cases {
            let path = dir.path().join(name);
            if gz {
                write_gz(&path, &body);
            } else {
                std::fs::write(&path, &body).unwrap();
            }
            let file = path.display().to_string();
            common::refused(common::clean_bin("kubectl-dbbackup").args(["verify", &file]));
            let stderr = common::refused(common::unreachable_bin("kubectl-dbbackup").args([
                "restore",
                "postgres-0",
                "-f",
                &file,
                "--yes",
            ]));
            assert!(
                !stderr.contains("127.0.0.1:1"),
                "restore {name} connected: {stderr}"
            );
            assert!(stderr.contains("error"), "restore {name}: no message");
        }
    }
}

// Wrong-engine dump and truncated real dumps, on the cluster.

#[tokio::test(flavor = "multi_thread")]
async fn wrong_engine_dump_is_refused_before_anything_is_sent() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "wrong", RESTRICTED).await;
    deploy_json(&ns, &deploy_args(Engine::Postgres));
    deploy_json(&ns, &deploy_args(Engine::Mariadb));
    let dir = tempfile::tempdir().unwrap();
    let pg_file = dir.path().join("pg.sql.gz");
    common::assert_exit(
        ns.bin("kubectl-dbbackup")
            .args(["postgres", "-f", &pg_file.display().to_string()]),
        0,
    );
    let before = sql(&ns, Engine::Mariadb, "mariadb-0", "SHOW DATABASES;").await;
    // A PostgreSQL dump restored into MariaDB.
    let stderr = common::refused(ns.bin("kubectl-dbbackup").args([
        "restore",
        "mariadb",
        "-f",
        &pg_file.display().to_string(),
        "--yes",
    ]));
    assert!(stderr.to_lowercase().contains("postgres"), "{stderr}");
    assert_eq!(
        sql(&ns, Engine::Mariadb, "mariadb-0", "SHOW DATABASES;").await,
        before
    );

    // A truncated real dump: refused by verify and restore; the database is untouched.
    let bytes = std::fs::read(&pg_file).unwrap();
    let cut = dir.path().join("cut.sql.gz");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let stderr = common::refused(ns.bin("kubectl-dbbackup").args([
        "restore",
        "postgres",
        "-f",
        &cut.display().to_string(),
        "--yes",
        "-v",
    ]));
    assert!(!stderr.contains("exec"), "an exec was started: {stderr}");
}

// ---------------------------------------------------------------------------------------
// 6. Interrupted work

#[tokio::test(flavor = "multi_thread")]
async fn interrupted_dump_and_restore_leave_nothing_final() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "intr", RESTRICTED).await;
    let engine = Engine::Postgres;
    deploy_json(&ns, &deploy_args(engine));
    // ~100 MB of SQL so the dump and restore take a few seconds.
    sql(
        &ns,
        engine,
        "postgres-0",
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g+1)::text) || md5((g+2)::text) AS v FROM generate_series(1, 1000000) g;",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let pods: Api<Pod> = ns.kube.api();

    // SIGINT or SIGTERM during a dump: exit 130, no file under the final name, no .partial
    // left; and nothing of the dump left in the pod (pg_dump blocked on a stream nobody
    // reads would hold its COPY, snapshot and table locks for hours), ended without
    // PostgreSQL taking it for a crashed backend (it restarts the server then).
    for signal in ["INT", "TERM"] {
        let output = interrupt_dump(&ns, dir.path(), signal);
        let stderr = text(&output.stderr);
        eprintln!(
            "SIG{signal} dump: exit {:?}: {stderr}",
            output.status.code()
        );
        assert_eq!(output.status.code(), Some(130), "SIG{signal}: {stderr}");
        assert!(
            stderr.contains(&format!("interrupted by SIG{signal}")),
            "{stderr}"
        );
        let left = names_in(dir.path());
        assert!(left.is_empty(), "SIG{signal} dump left {left:?}: {stderr}");
        wait_for_copy(&pods, engine, false).await;
        only_the_server_runs(&pods, engine).await;
    }
    let log = pods
        .logs(
            "postgres-0",
            &kube::api::LogParams {
                container: Some(engine.container_name().to_string()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for crash in [
        "terminated by signal",
        "terminating any other active server processes",
    ] {
        assert!(!log.contains(crash), "the server restarted: {log}");
    }
    // A complete dump to restore from.
    let good = dir.path().join("good.sql.gz");
    let output = ns
        .bin("kubectl-dbbackup")
        .args(["postgres", "-f", &good.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));

    // The pod deleted mid-dump: non-zero, nothing under the final name.
    let cut = dir.path().join("cut.sql");
    let cut_partial = dir.path().join("cut.sql.partial");
    let mut dump = dump_to(&ns, &cut);
    common::wait_for_bytes(&mut dump, &cut_partial, 1_000_000, Duration::from_secs(60));
    pods.delete("postgres-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let output = tokio::task::spawn_blocking(move || dump.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = text(&output.stderr);
    eprintln!(
        "dump with its pod deleted: exit {:?}: {stderr}",
        output.status.code()
    );
    assert_ne!(output.status.code(), Some(0), "cut dump exited 0");
    assert!(!cut.exists(), "cut dump left {}", cut.display());
    assert!(!cut_partial.exists(), "cut dump left its .partial");

    wait_ready(&pods, "postgres-0").await;

    // SIGTERM in the middle of a restore: exit 130, and it says what that may have left.
    let mut restore = spawn_restore(&ns, &good);
    wait_for_copy(&pods, engine, true).await;
    common::signal(restore.id(), "TERM");
    let output = tokio::task::spawn_blocking(move || {
        common::wait_bounded(&mut restore, Duration::from_secs(60))
    })
    .await
    .unwrap()
    .expect("restore still running 60 s after SIGTERM (killed)");
    let stderr = text(&output.stderr);
    eprintln!("SIGTERM restore: exit {:?}: {stderr}", output.status.code());
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert!(stderr.contains("half restored"), "{stderr}");
    // The server ends the cut-off COPY by itself once the stream is gone.
    wait_for_copy(&pods, engine, false).await;

    // Delete the pod in the middle of a restore.
    let mut restore = spawn_restore(&ns, &good);
    // The restore replaces `big` (DROP ... CREATE ... COPY): delete the pod once the COPY runs.
    wait_for_copy(&pods, engine, true).await;
    pods.delete("postgres-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let deleted_at = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        common::wait_bounded(&mut restore, Duration::from_secs(90))
    })
    .await
    .unwrap();
    let Some(output) = output else {
        panic!("restore still running 90 s after its pod was deleted (hang; killed)");
    };
    let stderr = text(&output.stderr);
    let stdout = text(&output.stdout);
    let error = stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!(
        "restore with its pod deleted: exit {:?} after {:.1}s\n{stdout}\n{error}",
        output.status.code(),
        deleted_at.elapsed().as_secs_f64()
    );
    assert!(
        matches!(output.status.code(), Some(c) if c != 0),
        "cut restore: exit {:?}: {stdout}",
        output.status.code()
    );
    assert!(
        error.contains("restor"),
        "the failure does not say the restore broke: {error}"
    );
}

/// Starts a dump of postgres to `file`, uncompressed, without waiting.
fn dump_to(ns: &TestNamespace, file: &Path) -> std::process::Child {
    ns.spawn(
        "kubectl-dbbackup",
        &[
            "postgres",
            "-f",
            &file.display().to_string(),
            "--compress",
            "none",
        ],
    )
}

/// Starts a dump to `dir/sig<signal>.sql`, signals it once 1 MB is written, and returns
/// how it ended.
fn interrupt_dump(ns: &TestNamespace, dir: &Path, signal: &str) -> std::process::Output {
    let mut child = dump_to(ns, &dir.join(format!("sig{signal}.sql")));
    let partial = dir.join(format!("sig{signal}.sql.partial"));
    common::wait_for_bytes(&mut child, &partial, 1_000_000, Duration::from_secs(60));
    common::signal(child.id(), signal);
    child.wait_with_output().unwrap()
}

/// Starts `restore postgres -f FILE --yes -v`, without waiting.
fn spawn_restore(ns: &TestNamespace, file: &Path) -> std::process::Child {
    ns.spawn(
        "kubectl-dbbackup",
        &[
            "restore",
            "postgres",
            "-f",
            &file.display().to_string(),
            "--yes",
            "-v",
        ],
    )
}

/// Runs `script` in postgres-0 every `pause` until `done` says so (`Ok`), failing with its
/// last `Err` after `within`. An exec that fails counts as printing nothing.
async fn poll_postgres(
    pods: &Api<Pod>,
    engine: Engine,
    script: &str,
    (within, pause): (Duration, Duration),
    done: impl Fn(&str) -> Result<(), String>,
) {
    let command = ["sh", "-c", script].map(String::from);
    let deadline = Instant::now() + within;
    loop {
        let stdout = exec::run(
            pods,
            "postgres-0",
            Some(engine.container_name()),
            &command,
            None,
            Duration::from_secs(10),
        )
        .await
        .map(|o| o.stdout_text())
        .unwrap_or_default();
        let Err(why) = done(&stdout) else {
            return;
        };
        assert!(Instant::now() < deadline, "{why}");
        tokio::time::sleep(pause).await;
    }
}

/// Waits until postgres-0's container runs nothing but the server's own processes (and
/// the shell that looks).
async fn only_the_server_runs(pods: &Api<Pod>, engine: Engine) {
    let list = r#"for p in /proc/[0-9]*; do
  [ "${p#/proc/}" != "$$" ] && read -r c <"$p/comm" 2>/dev/null && echo "${p#/proc/} $c"
done"#;
    let every = (Duration::from_secs(30), Duration::from_millis(200));
    poll_postgres(pods, engine, list, every, |listed| {
        let others: Vec<&str> = listed
            .lines()
            .filter(|line| !line.ends_with(" postgres"))
            .collect();
        if others.is_empty() && !listed.is_empty() {
            return Ok(());
        }
        Err(format!("left running in the pod: {others:?}"))
    })
    .await;
}

/// Waits until a COPY runs in postgres-0 (`running`), or until none does.
async fn wait_for_copy(pods: &Api<Pod>, engine: Engine, running: bool) {
    // Polled from the `postgres` database: the restore drops and recreates appdb.
    let poll = r#"exec psql -X -tA -U "$POSTGRES_USER" -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'COPY%' AND pid <> pg_backend_pid()""#;
    let every = (Duration::from_secs(90), Duration::from_millis(100));
    poll_postgres(pods, engine, poll, every, |activity| {
        let copying = !matches!(activity.trim(), "0" | "");
        if copying == running && !activity.trim().is_empty() {
            return Ok(());
        }
        Err(format!(
            "a COPY never {}",
            if running { "ran" } else { "ended" }
        ))
    })
    .await;
}

async fn wait_ready(pods: &Api<Pod>, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Ok(Some(pod)) = pods.get_opt(name).await
            && pod.metadata.deletion_timestamp.is_none()
            && common::is_ready(&pod)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{name} not Ready again");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
