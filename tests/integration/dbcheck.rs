//! `kubectl dbcheck` on the local cluster: a healthy database is all ok, and each broken
//! state of issue #4 is diagnosed with the right verdict and hint. The broken databases share
//! one namespace and are created together (rendered by dbdeploy, some then altered, applied
//! without waiting); the test then polls dbcheck until the cluster shows each state.

use crate::common;

use std::time::{Duration, Instant};

use common::TestNamespace;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use common::SMALL;

/// Renders a PostgreSQL database with dbdeploy (`--dry-run=client`, no API call), lets the
/// test alter the objects, and creates them without waiting.
async fn deploy(
    ns: &TestNamespace,
    name: &str,
    extra: &[&str],
    alter: impl FnOnce(&mut Vec<Value>),
) {
    let image = common::postgres_image();
    let list = common::json(
        ns.bin("kubectl-dbdeploy")
            .args(["postgres", "--name", name])
            .args(if extra.contains(&"--image") {
                vec![]
            } else {
                vec!["--image", &image]
            })
            .args(
                SMALL
                    .chunks(2)
                    .filter(|pair| !extra.contains(&pair[0]))
                    .flatten(),
            )
            .args(extra)
            .args(["--dry-run=client", "--show-password"]),
    );
    let mut items = list["items"].as_array().unwrap().clone();
    alter(&mut items);
    for item in items {
        create(ns, item).await;
    }
}

async fn create(ns: &TestNamespace, item: Value) {
    let kind = item["kind"].as_str().unwrap();
    ns.api_for(kind)
        .create(
            &PostParams::default(),
            &serde_json::from_value(item).unwrap(),
        )
        .await
        .unwrap();
}

fn find<'a>(items: &'a mut [Value], kind: &str, name: &str) -> &'a mut Value {
    items
        .iter_mut()
        .find(|i| i["kind"] == kind && i["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Runs `kubectl dbcheck TARGET -o json`: exit code and report.
fn dbcheck(ns: &TestNamespace, target: &str) -> (i32, Value) {
    let output = ns
        .bin("kubectl-dbcheck")
        .args([target, "-o", "json"])
        .output()
        .unwrap();
    let code = output.status.code().unwrap_or(-1);
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| json!({"error": String::from_utf8_lossy(&output.stderr).to_string()}));
    (code, report)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

/// Polls dbcheck until check `name` has `verdict` and its evidence+fix contain every
/// word of `expect`; returns the last report and an error message on timeout.
fn wait_for(
    ns: &TestNamespace,
    target: &str,
    name: &str,
    verdict: &str,
    expect: &[&str],
    budget: Duration,
) -> Result<(i32, Value), String> {
    let started = Instant::now();
    loop {
        let (code, report) = dbcheck(ns, target);
        let c = check(&report, name);
        let text = format!(
            "{} {}",
            c["evidence"].as_str().unwrap_or(""),
            c["fix"].as_str().unwrap_or("")
        );
        if c["verdict"] == verdict && expect.iter().all(|w| text.contains(w)) {
            return Ok((code, report));
        }
        if started.elapsed() > budget {
            return Err(format!(
                "{target}: {name} never became {verdict} with {expect:?} within {budget:?}; last: {}",
                serde_json::to_string_pretty(&report).unwrap()
            ));
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_and_broken_databases_are_diagnosed() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "check", &[]).await;

    // The healthy database, then seven broken ones, all at once.
    deploy(&ns, "good", &[], |_| {}).await;
    deploy(&ns, "noclass", &["--storage-class", "nope"], |_| {}).await;
    deploy(&ns, "bigcpu", &["--cpu", "64", "--cpu-limit", "64"], |_| {}).await;
    deploy(&ns, "nopull", &["--image", "localhost/kdb/none:1"], |_| {}).await;
    deploy(
        &ns,
        "badconf",
        &["--set", "shared_buffers=notanumber"],
        |_| {},
    )
    .await;
    deploy(&ns, "notready", &[], |items| {
        let sts = find(items, "StatefulSet", "notready");
        sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"] =
            json!(["sh", "-c", "exit 1"]);
    })
    .await;
    deploy(&ns, "nokey", &[], |items| {
        let secret = find(items, "Secret", "nokey-secret");
        secret["data"] = json!({"PASSWORD": "c2VjcmV0"});
    })
    .await;

    // Hand-made, the guide's way: `app: guide` labels only, liveness with a fixed delay.
    for item in guide_style("guide") {
        create(&ns, item).await;
    }

    let long = Duration::from_secs(240);
    let mut failures = Vec::new();

    // 1. PVC Pending: its StorageClass does not exist.
    expect(
        &mut failures,
        wait_for(
            &ns,
            "noclass",
            "pvc.bound",
            "fail",
            &["\"nope\" does not exist", "--storage-class standard"],
            long,
        ),
        1,
    );
    // 2. Unschedulable: no node has 64 CPUs.
    expect(
        &mut failures,
        wait_for(
            &ns,
            "bigcpu-0",
            "pod.scheduling",
            "fail",
            &["Insufficient cpu", "lower the request"],
            long,
        ),
        1,
    );
    // 3. Image cannot be pulled.
    expect(
        &mut failures,
        wait_for(
            &ns,
            "nopull-0",
            "pod.image",
            "fail",
            &["localhost/kdb/none:1", "check that"],
            long,
        ),
        1,
    );
    // 4. CrashLoopBackOff from a bad setting, with the previous container's log lines.
    expect(
        &mut failures,
        wait_for(
            &ns,
            "badconf-0",
            "pod.containers",
            "fail",
            &[
                "CrashLoopBackOff",
                "previous container's last log lines",
                "shared_buffers",
                "--set",
            ],
            long,
        ),
        1,
    );
    // --logs=N: its previous container's last N lines hold the reason, in JSON and table.
    let output = ns
        .bin("kubectl-dbcheck")
        .args(["badconf-0", "--logs=5", "-o", "json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    let previous = report["logs"]["previous"]["lines"].as_array();
    if report["logs"]["tail_lines"] != 5
        || report["logs"]["container"] != "postgres"
        || previous.is_none_or(|l| l.is_empty() || l.len() > 5)
        || !previous.is_some_and(|l| {
            l.iter()
                .any(|l| l.as_str().unwrap_or("").contains("shared_buffers"))
        })
    {
        failures.push(format!("badconf --logs=5: {report}"));
    }
    let (_, table, _) = common::output(ns.bin("kubectl-dbcheck").args(["badconf-0", "--logs"]));
    if !table.contains("Log of the previous container postgres (last 20 lines):") {
        failures.push(format!("badconf --logs table: {table}"));
    }
    // 5. Readiness probe failing while the server runs.
    match wait_for(
        &ns,
        "notready-0",
        "probe.readiness",
        "fail",
        &["exit status 1", "probe's command itself is wrong"],
        long,
    ) {
        Ok((code, report)) => {
            if code != 1
                || check(&report, "pod.ready")["verdict"] != "fail"
                || check(&report, "db.server")["verdict"] != "ok"
            {
                failures.push(format!("notready: {report}"));
            }
        }
        Err(message) => failures.push(message),
    }
    // 7. A Secret key the pod references does not exist.
    expect(
        &mut failures,
        wait_for(
            &ns,
            "nokey-0",
            "config.references",
            "fail",
            &["has no key POSTGRES_PASSWORD", "keys present: PASSWORD"],
            long,
        ),
        1,
    );

    // The healthy one: nothing fails, everything that ran is ok.
    match wait_for(&ns, "good-0", "pod.ready", "ok", &[], long)
        .and_then(|_| wait_for(&ns, "good-0", "db.server", "ok", &["PostgreSQL"], long))
    {
        Ok((code, report)) => {
            let not_ok: Vec<&Value> = report["checks"]
                .as_array()
                .unwrap()
                .iter()
                // The local StorageClass deletes volumes with their claims: a deliberate warning.
                // No metrics-server on the local cluster: resource use is skipped.
                .filter(|c| c["verdict"] != "ok" && c["name"] != "pv.reclaim-policy")
                .filter(|c| !(c["name"] == "resources.usage" && c["verdict"] == "skipped"))
                // No backup schedule here: the backup checks are skipped, saying so.
                .filter(|c| {
                    !(c["name"].as_str().is_some_and(|n| n.starts_with("backup."))
                        && c["verdict"] == "skipped"
                        && c["evidence"]
                            .as_str()
                            .is_some_and(|e| e.starts_with("no schedule")))
                })
                // Local volumes are host directories: their usage is the host disk's, which a
                // busy build machine may fill past the 80% warning. A warning, never a fail.
                .filter(|c| !(c["name"] == "volume.usage" && c["verdict"] == "warn"))
                .collect();
            if code != 0 || !not_ok.is_empty() {
                failures.push(format!("healthy database: exit {code}, not ok: {not_ok:?}"));
            }
            for secret in ["good-secret"] {
                let api: Api<Secret> = ns.kube.api();
                let data = api.get(secret).await.unwrap().data.unwrap();
                let text = report.to_string();
                for value in data.values() {
                    assert!(
                        !text.contains(&*String::from_utf8_lossy(&value.0)),
                        "password in the report"
                    );
                }
            }
        }
        Err(message) => failures.push(message),
    }

    // The hand-made database: engine from the image, the guide's probe defect flagged.
    // Wait for the endpoints too: the pod turns Ready a moment before the StatefulSet's
    // status and the EndpointSlice follow.
    match wait_for(&ns, "guide", "service.endpoints", "ok", &[], long) {
        Ok((code, report)) => {
            let probes = check(&report, "probes.configured");
            if code != 0
                || check(&report, "db.server")["verdict"] != "ok"
                || report["engine"] != "postgres"
                || probes["verdict"] != "warn"
                || !probes["evidence"]
                    .as_str()
                    .unwrap_or("")
                    .contains("liveness without a startupProbe")
            {
                failures.push(format!("guide-style database: exit {code}: {report}"));
            }
        }
        Err(message) => failures.push(message),
    }

    // 6. The ClusterIP Service's selector matches nothing.
    let services: Api<Service> = ns.kube.api();
    let patch = |selector: Value| Patch::Merge(json!({"spec": {"selector": selector}}));
    services
        .patch(
            "good",
            &PatchParams::default(),
            &patch(json!({"app": "nothing", "app.kubernetes.io/instance": null})),
        )
        .await
        .unwrap();
    expect(
        &mut failures,
        wait_for(
            &ns,
            "good-0",
            "service.endpoints",
            "fail",
            &["matches no pod", "app=good"],
            Duration::from_secs(30),
        ),
        1,
    );
    services
        .patch(
            "good",
            &PatchParams::default(),
            &patch(json!({"app": "good", "app.kubernetes.io/instance": "good"})),
        )
        .await
        .unwrap();

    // 8. The data directory is not writable by the server's uid.
    let pods: Api<Pod> = ns.kube.api();
    let chmod = |mode: &'static str| {
        let pods = pods.clone();
        async move {
            let script = format!("chmod {mode} \"$PGDATA\"");
            let out = kubectl_db::exec::shell(
                &pods,
                "good-0",
                Some("postgres"),
                &script,
                Duration::from_secs(20),
            )
            .await
            .unwrap();
            assert!(out.status.success(), "chmod: {}", out.stderr_text());
        }
    };
    chmod("0500").await;
    let result = wait_for(
        &ns,
        "good-0",
        "datadir.permissions",
        "fail",
        &["NOT writable", "fsGroup"],
        Duration::from_secs(30),
    );
    chmod("0700").await;
    expect(&mut failures, result, 1);

    // The healthy database is whole again once its readiness probe passes after the chmod.
    if let Err(message) = wait_for(&ns, "good", "service.endpoints", "ok", &[], long) {
        failures.push(message);
    }

    // Without a target: one line per database, the worst verdict, exit 1.
    let output = ns
        .bin("kubectl-dbcheck")
        .args(["-o", "json"])
        .output()
        .unwrap();
    let all: Value = serde_json::from_slice(&output.stdout).unwrap();
    let lines = all["databases"].as_array().unwrap();
    if output.status.code() != Some(1)
        || lines.len() != 8
        || lines
            .iter()
            .any(|l| l["name"] == "good" && l["verdict"] == "fail")
    {
        failures.push(format!("namespace summary: {all}"));
    }

    assert!(
        failures.is_empty(),
        "{} scenario(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// A StatefulSet, Secret and Services written by hand in the guide's style.
fn guide_style(name: &str) -> Vec<Value> {
    let labels = json!({"app": name});
    let probe = |delay: i32| json!({"exec": {"command": ["sh", "-c", "pg_isready -h 127.0.0.1 -U postgres"]}, "initialDelaySeconds": delay, "periodSeconds": 5});
    vec![
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-secret")},
               "stringData": {"POSTGRES_PASSWORD": "guide-style-password-for-tests"}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("{name}-headless"), "labels": labels},
               "spec": {"clusterIP": "None", "selector": labels, "ports": [{"port": 5432, "name": "postgres"}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
               "spec": {"selector": labels, "ports": [{"port": 5432, "targetPort": 5432, "name": "postgres"}]}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "labels": labels},
               "spec": {"serviceName": format!("{name}-headless"), "replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                   "securityContext": {"runAsUser": 999, "fsGroup": 999},
                   "containers": [{"name": "postgres", "image": common::postgres_image(),
                     "ports": [{"containerPort": 5432, "name": "postgres"}],
                     "env": [{"name": "POSTGRES_USER", "value": "postgres"},
                             {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
                             {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": format!("{name}-secret"), "key": "POSTGRES_PASSWORD"}}}],
                     "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
                     "readinessProbe": probe(5), "livenessProbe": probe(60),
                     "volumeMounts": [{"name": "postgres-storage", "mountPath": "/var/lib/postgresql/data"}]}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "postgres-storage"},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}),
    ]
}

fn expect(failures: &mut Vec<String>, result: Result<(i32, Value), String>, exit: i32) {
    match result {
        Ok((code, report)) if code != exit => {
            failures.push(format!("exit {code}, expected {exit}: {report}"))
        }
        Ok(_) => {}
        Err(message) => failures.push(message),
    }
}

#[test]
fn unreachable_cluster_exits_3_and_bad_usage_exits_2() {
    let kubeconfig = common::unreachable_kubeconfig();
    common::assert_exit(
        common::clean_bin("kubectl-dbcheck").args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--request-timeout",
            "5s",
            "mysql-0",
        ]),
        3,
    );
    let output = common::clean_bin("kubectl-dbcheck")
        .args(["-A", "mysql-0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// Creates a bare pod from JSON and waits until its first container runs (and, with
/// `ready`, until the pod is Ready).
async fn run_pod(ns: &TestNamespace, pod: Value, ready: bool) -> String {
    let name = pod["metadata"]["name"].as_str().unwrap().to_string();
    let pods: Api<Pod> = ns.kube.api();
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).unwrap(),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let pod = pods.get(&name).await.unwrap();
        let is_ready = common::is_ready(&pod);
        let status = pod.status.unwrap_or_default();
        let running = status
            .container_statuses
            .iter()
            .flatten()
            .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
        if running && (is_ready || !ready) {
            return name;
        }
        assert!(
            Instant::now() < deadline,
            "pod {name} never ran: {status:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_password_never_reaches_the_logs() {
    const SECRET: &str = "KdbProbeSecret42";
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "check-redact", &[]).await;
    let secrets: Api<Secret> = ns.kube.api();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "handmade"},
                "stringData": {"root-password": SECRET},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    // A hand-made MariaDB whose readiness probe carries the root password literally, as
    // copied from many a tutorial.
    let pod = run_pod(
        &ns,
        json!({
            "metadata": {"name": "handmade"},
            "spec": {"containers": [{
                "name": "mariadb",
                "image": common::mariadb_image(),
                "imagePullPolicy": "IfNotPresent",
                "env": [{"name": "MARIADB_ROOT_PASSWORD",
                         "valueFrom": {"secretKeyRef": {"name": "handmade", "key": "root-password"}}}],
                "readinessProbe": {
                    "exec": {"command": ["mysqladmin", "-uroot", format!("-p{SECRET}"), "ping"]},
                    "periodSeconds": 2,
                },
                "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
            }]},
        }),
        true,
    )
    .await;
    for verbosity in ["-v", "-vv", "-vvv"] {
        let output = ns
            .bin("kubectl-dbcheck")
            .args([&pod, verbosity])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stdout.contains(SECRET) && !stderr.contains(SECRET),
            "{verbosity} shows the probe's password:\n{stdout}\n{stderr}"
        );
        // The probe's command was run and logged, with its password replaced.
        assert!(stderr.contains("mysqladmin"), "{verbosity}: {stderr}");
        assert!(stderr.contains("-p***"), "{verbosity}: {stderr}");
        // From -vv on kube logs each request's URL: an exec's carries the command.
        if verbosity != "-v" {
            assert!(stderr.contains("command=***"), "{verbosity}: {stderr}");
        }
        assert!(stdout.contains("probe.readiness"), "{verbosity}: {stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_output_kept_for_checks_is_capped() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "check-cap", &[]).await;
    let pod = run_pod(
        &ns,
        json!({
            "metadata": {"name": "chatty"},
            "spec": {"containers": [{
                "name": "postgres",
                "image": common::postgres_image(),
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            }]},
        }),
        false,
    )
    .await;
    // 64 MiB on stdout and 8 MiB on stderr, far beyond the caps.
    let pods: Api<Pod> = ns.kube.api();
    let command = kubectl_db::exec::script_command(
        r#"head -c "$1" /dev/zero | tr '\0' o; head -c "$2" /dev/zero | tr '\0' e >&2; printf END >&2"#,
        &["67108864", "8388608"],
    );
    let output = kubectl_db::exec::run(
        &pods,
        &pod,
        Some("postgres"),
        &command,
        None,
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    assert!(output.status.success(), "{}", output.status);
    assert_eq!(output.stdout.len(), kubectl_db::exec::STDOUT_KEEP);
    assert_eq!(
        output.stdout_dropped,
        (64u64 << 20) - kubectl_db::exec::STDOUT_KEEP as u64
    );
    assert!(output.stdout.iter().all(|&b| b == b'o'));
    assert_eq!(output.stderr.len(), kubectl_db::exec::STDERR_KEEP);
    assert_eq!(
        output.stderr_dropped,
        (8u64 << 20) + 3 - kubectl_db::exec::STDERR_KEEP as u64
    );
    // stderr keeps its end, where the error is.
    assert!(output.stderr.ends_with(b"eeeEND"));
    assert!(output.stdout_text().ends_with("more bytes not kept]"));
    assert!(output.stderr_text().starts_with("[output cut:"));
}
