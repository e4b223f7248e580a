//! `kubectl dbpersist` end to end on the local cluster: PASS for PostgreSQL and MariaDB as
//! dbdeploy deploys them, FAIL from the pod spec (nothing written or deleted) for a
//! hand-made StatefulSet whose data is on an emptyDir, and with --delete-ephemeral-data the
//! lost marker; PASS for a guide-style hand-made StatefulSet (label `app` only), refusal
//! without --yes off a terminal, refusal of a
//! StatefulSet of several replicas, Ctrl-C and timeout after the delete (report still
//! printed, exit 130 / 3), and bad input refused before any API call.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestNamespace, sql};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, Pod, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Secret, SecretKeySelector, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use kubectl_db::deploy::{self, DeployOptions};
use kubectl_db::engine::Engine;
use kubectl_db::output::Progress;
use kubectl_db::render::{DeploySpec, Resources};
use serde_json::Value;

/// Deploys a database the way `kubectl dbdeploy` does (its library flow), small enough
/// for the 2-core test machine, and waits until it is ready.
async fn dbdeploy(ns: &TestNamespace, engine: Engine, image: &str) {
    let mut spec = DeploySpec::new(engine, &ns.name);
    spec.image = image.into();
    spec.storage_size = "1Gi".into();
    spec.resources = Resources {
        cpu_request: "50m".into(),
        cpu_limit: "1".into(),
        memory_request: "128Mi".into(),
        memory_limit: "1Gi".into(),
    };
    let options = DeployOptions {
        spec,
        dry_run: Default::default(),
        wait: true,
        timeout: Duration::from_secs(240),
        force_conflicts: false,
        from_snapshot: None,
    };
    let (report, _) = deploy::deploy(&ns.kube, &options, &Progress::spinner(false))
        .await
        .expect("deploy");
    assert!(
        report.wait.as_ref().is_some_and(|w| w.ready),
        "{engine} did not become ready"
    );
}

/// Runs dbpersist and returns (exit code, JSON report or Null, stderr).
fn persist(ns: &TestNamespace, args: &[&str]) -> (Option<i32>, Value, String) {
    let output = ns.bin("kubectl-dbpersist").args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code(), report, stderr)
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step {name:?} in {report:#}"))
}

fn assert_pass(report: &Value, pod: &str) {
    assert_eq!(report["verdict"], "PASS", "{report:#}");
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["pod"], pod);
    let before = &report["before"];
    let after = &report["after"];
    assert_ne!(before["uid"], after["uid"], "the pod was not replaced");
    assert_eq!(before["claims"], after["claims"], "PVCs changed");
    assert_eq!(before["claims"][0]["claim"], format!("data-{pod}"));
    assert!(
        before["claims"][0]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );
    for name in [
        "check data volume",
        "write marker",
        "read marker",
        "record pod and volumes",
        "delete pod",
        "wait for new pod",
        "read marker after restart",
        "compare volumes",
    ] {
        assert_eq!(step(report, name)["result"], "passed", "{name}: {report:#}");
        assert!(step(report, name)["seconds"].as_f64().is_some());
    }
    assert!(
        report["marker"]["data"]
            .as_str()
            .unwrap()
            .starts_with("kubectl-dbpersist ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_from_dbdeploy_passes_and_cleans_up() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "persist-pg", &[]).await;
    dbdeploy(&ns, Engine::Postgres, &common::postgres_image()).await;

    let (code, report, stderr) = persist(
        &ns,
        &["postgres-0", "--yes", "--timeout", "4m", "-o", "json"],
    );
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    assert_pass(&report, "postgres-0");
    assert!(
        stderr.contains(&format!("will delete pod {}/postgres-0 (uid ", ns.name)),
        "{stderr}"
    );
    let cleanup = step(&report, "remove test data");
    assert_eq!(cleanup["result"], "passed", "{report:#}");
    assert_eq!(cleanup["detail"], "dropped database testdb");
    let databases = sql(
        &ns,
        Engine::Postgres,
        "postgres-0",
        Engine::Postgres.list_databases_sql(),
    )
    .await;
    assert!(
        !databases.lines().any(|d| d == "testdb"),
        "testdb left behind: {databases}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_from_dbdeploy_passes_and_keeps_the_row_with_keep() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "persist-maria", &[]).await;
    dbdeploy(&ns, Engine::Mariadb, &common::mariadb_image()).await;

    // By StatefulSet name, table output, --keep.
    let output = ns
        .bin("kubectl-dbpersist")
        .args(["mariadb", "--yes", "--keep"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "PASS  mariadb {}/mariadb-0 (StatefulSet mariadb)",
            ns.name
        )),
        "{stdout}"
    );
    for line in [
        "read marker after restart",
        "compare volumes",
        "kept (--keep)",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from\n{stdout}");
    }
    let marker = stdout
        .lines()
        .find_map(|l| l.strip_prefix("marker:"))
        .and_then(|l| l.split('\'').nth(1))
        .unwrap_or_else(|| panic!("no marker line in\n{stdout}"))
        .to_string();
    let rows = sql(
        &ns,
        Engine::Mariadb,
        "mariadb-0",
        &format!("SELECT COUNT(*) FROM testdb.persistent_test WHERE data = '{marker}';"),
    )
    .await;
    assert_eq!(rows, "1", "--keep left the marker row");
}

fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), name.to_string())])
}

/// A hand-made StatefulSet in the guide's style: label `app: <name>` only, no dbdeploy
/// labels, passwords from a Secret. `persistent` puts the data on a volumeClaimTemplate,
/// otherwise on an emptyDir; `schedulable: false` keeps its pods Pending (cheap).
fn hand_made(
    name: &str,
    engine: Engine,
    image: &str,
    replicas: i32,
    persistent: bool,
    schedulable: bool,
) -> StatefulSet {
    // mariadb's uid; the local postgres image runs as any uid (fsGroup makes the volume its).
    let uid = 999;
    let (password_key, mut env) = match engine {
        Engine::Postgres => (
            "POSTGRES_PASSWORD",
            vec![EnvVar {
                name: "PGDATA".into(),
                value: Some(engine.data_dir().into()),
                ..Default::default()
            }],
        ),
        _ => ("MYSQL_ROOT_PASSWORD", vec![]),
    };
    env.push(EnvVar {
        name: password_key.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: format!("{name}-secret"),
                key: "password".into(),
                optional: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut volumes = vec![
        Volume {
            name: "run".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
    ];
    if !persistent {
        volumes.push(Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
    }
    let mounts = [
        ("data", engine.data_mount()),
        ("run", engine.scratch_dirs()[0].1),
        ("tmp", "/tmp"),
    ]
    .into_iter()
    .map(|(volume, path)| VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        ..Default::default()
    })
    .collect();
    let quantity = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    let probe = Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                engine.commands().readiness_probe(image),
            ]),
        }),
        period_seconds: Some(2),
        timeout_seconds: Some(5),
        ..Default::default()
    };
    let pod_spec = PodSpec {
        security_context: Some(PodSecurityContext {
            run_as_user: Some(uid),
            run_as_group: Some(uid),
            fs_group: Some(uid),
            ..Default::default()
        }),
        node_selector: (!schedulable)
            .then(|| BTreeMap::from([("kdb-test/no-such-node".to_string(), "x".to_string())])),
        termination_grace_period_seconds: Some(30),
        containers: vec![Container {
            name: engine.container_name().into(),
            image: Some(image.into()),
            image_pull_policy: Some("IfNotPresent".into()),
            env: Some(env),
            volume_mounts: Some(mounts),
            readiness_probe: Some(probe),
            resources: Some(ResourceRequirements {
                requests: quantity(&[("cpu", "50m"), ("memory", "128Mi")]),
                limits: quantity(&[("memory", "1Gi")]),
                ..Default::default()
            }),
            ..Default::default()
        }],
        volumes: Some(volumes),
        ..Default::default()
    };
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: quantity(&[("storage", "1Gi")]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    StatefulSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(name)),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            service_name: Some(name.into()),
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(name)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(name)),
                    ..Default::default()
                }),
                spec: Some(pod_spec),
            },
            volume_claim_templates: persistent.then(|| vec![claim]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates the StatefulSet (and its password Secret); waits for it when its pods can run.
async fn create_hand_made(ns: &TestNamespace, sts: StatefulSet, wait: bool) {
    let name = sts.metadata.name.clone().unwrap();
    let secrets: Api<Secret> = ns.kube.api();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(format!("{name}-secret")),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(
            "password".to_string(),
            kubectl_db::deploy::generate_password(),
        )])),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let api: Api<StatefulSet> = ns.kube.api();
    api.create(&PostParams::default(), &sts).await.unwrap();
    if wait {
        let seen = kubectl_db::wait::statefulset_ready(
            &ns.kube,
            &name,
            Duration::from_secs(240),
            &Progress::spinner(false),
        )
        .await
        .unwrap();
        assert!(
            seen.ready,
            "{name} did not become ready: {:?}",
            seen.diagnosis()
        );
    }
}

/// The pod's UID, and whether it is being deleted.
async fn pod_uid(ns: &TestNamespace, pod: &str) -> (String, bool) {
    let pods: Api<Pod> = ns.kube.api();
    let pod = pods.get(pod).await.unwrap();
    (
        pod.metadata.uid.unwrap_or_default(),
        pod.metadata.deletion_timestamp.is_some(),
    )
}

/// The databases the server lists, one per line.
async fn databases(ns: &TestNamespace, engine: Engine, pod: &str) -> String {
    sql(ns, engine, pod, engine.list_databases_sql()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptydir_statefulset_fails_from_its_spec_and_keeps_its_data() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "persist-empty", &[]).await;
    let sts = hand_made(
        "ephemeral",
        Engine::Mariadb,
        &common::mariadb_image(),
        1,
        false,
        true,
    );
    create_hand_made(&ns, sts, true).await;
    let (uid, _) = pod_uid(&ns, "ephemeral-0").await;

    // No flags and no terminal on stdin (a closed pipe, as </dev/null): FAIL from the pod
    // spec, before any write or delete.
    let (code, report, stderr) = persist(&ns, &["ephemeral-0", "-o", "json"]);
    assert_eq!(code, Some(1), "{stderr}\n{report:#}");
    assert_eq!(report["verdict"], "FAIL", "{report:#}");
    assert_eq!(report["exit_code"], 1);
    assert_eq!(report["failed_step"], "check data volume", "{report:#}");
    let message = report["message"].as_str().unwrap();
    for part in [
        "emptyDir volume data at /var/lib/mysql",
        "deleted with its pod",
        "nothing was written or deleted",
        "volumeClaimTemplates",
        "--delete-ephemeral-data",
    ] {
        assert!(message.contains(part), "{part:?} missing from {message}");
    }
    assert_eq!(report["steps"].as_array().unwrap().len(), 1, "{report:#}");
    assert_eq!(step(&report, "check data volume")["result"], "failed");
    assert_eq!(report["before"]["uid"], uid.as_str());
    assert!(report["before"]["claims"].as_array().unwrap().is_empty());
    assert!(report["marker"]["id"].is_null(), "{report:#}");
    assert!(!stderr.contains("will delete"), "{stderr}");
    assert!(stderr.contains("error: check data volume:"), "{stderr}");

    // The table says the same; --yes alone does not change the verdict.
    let output = ns
        .bin("kubectl-dbpersist")
        .args(["ephemeral-0", "--yes"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with(&format!(
            "FAIL  mariadb {}/ephemeral-0 (StatefulSet ephemeral)",
            ns.name
        )),
        "{stdout}"
    );
    assert!(stdout.contains("check data volume"), "{stdout}");
    assert!(!stdout.contains("marker:"), "{stdout}");

    // --delete-ephemeral-data off a terminal still needs --yes.
    let (code, _, stderr) = persist(&ns, &["ephemeral-0", "--delete-ephemeral-data"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("pass --yes"), "{stderr}");

    // Nothing was touched: same pod, and no testdb.
    assert_eq!(pod_uid(&ns, "ephemeral-0").await, (uid.clone(), false));
    let listed = databases(&ns, Engine::Mariadb, "ephemeral-0").await;
    assert!(!listed.lines().any(|d| d == "testdb"), "{listed}");

    // With both flags the test runs and proves the data did not survive.
    let (code, report, stderr) = persist(
        &ns,
        &[
            "ephemeral-0",
            "--delete-ephemeral-data",
            "--yes",
            "--timeout",
            "4m",
            "-o",
            "json",
        ],
    );
    assert_eq!(code, Some(1), "{stderr}\n{report:#}");
    assert_eq!(report["verdict"], "FAIL", "{report:#}");
    assert_eq!(step(&report, "check data volume")["result"], "warning");
    assert_eq!(
        report["failed_step"], "read marker after restart",
        "{report:#}"
    );
    assert_eq!(step(&report, "wait for new pod")["result"], "passed");
    let read = step(&report, "read marker after restart");
    assert_eq!(read["result"], "failed");
    assert!(
        read["detail"].as_str().unwrap().contains("testdb"),
        "{read}"
    );
    let volumes = step(&report, "compare volumes");
    assert_eq!(volumes["result"], "failed");
    assert!(
        volumes["detail"]
            .as_str()
            .unwrap()
            .contains("emptyDir volume data at /var/lib/mysql"),
        "{volumes}"
    );
    assert!(report["before"]["claims"].as_array().unwrap().is_empty());
    assert_ne!(report["after"]["uid"], uid.as_str());
    assert!(
        stderr.contains("error: read marker after restart:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("testing anyway (--delete-ephemeral-data)"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guide_style_postgres_statefulset_passes() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "persist-guide", &[]).await;
    let sts = hand_made(
        "guidepg",
        Engine::Postgres,
        &common::postgres_image(),
        1,
        true,
        true,
    );
    create_hand_made(&ns, sts, true).await;
    let (uid, _) = pod_uid(&ns, "guidepg-0").await;

    // Healthy and on a PVC, but no --yes and no terminal to ask on: refused, untouched.
    let (code, report, stderr) = persist(&ns, &["guidepg", "--timeout", "4m", "-o", "json"]);
    assert_eq!(code, Some(2), "{stderr}\n{report:#}");
    assert!(report.is_null(), "{report:#}");
    assert!(
        stderr.contains(&format!("will delete pod {}/guidepg-0", ns.name)),
        "{stderr}"
    );
    // Where: the namespace above and the kubeconfig context.
    assert!(
        stderr.contains("of StatefulSet guidepg (context "),
        "{stderr}"
    );
    assert!(
        stderr.contains("no terminal") && stderr.contains("pass --yes"),
        "{stderr}"
    );
    assert_eq!(pod_uid(&ns, "guidepg-0").await, (uid, false));
    let listed = databases(&ns, Engine::Postgres, "guidepg-0").await;
    assert!(!listed.lines().any(|d| d == "testdb"), "{listed}");

    let (code, report, stderr) =
        persist(&ns, &["guidepg", "--yes", "--timeout", "4m", "-o", "json"]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    assert_pass(&report, "guidepg-0");
    assert_eq!(report["engine"], "postgres");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_replicas_are_refused_without_pod() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "persist-many", &[]).await;
    let sts = hand_made(
        "many",
        Engine::Mariadb,
        &common::mariadb_image(),
        2,
        true,
        false,
    );
    create_hand_made(&ns, sts, false).await;

    let (code, _, stderr) = persist(&ns, &["many", "--yes"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("has 2 replicas"), "{stderr}");
    assert!(stderr.contains("--pod many-0"), "{stderr}");

    // --pod must name one of its pods.
    let (code, _, stderr) = persist(&ns, &["many", "--pod", "many-7", "--yes"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not a pod of StatefulSet"), "{stderr}");

    // A named pod that is not Ready (Pending: no node matches) is not deleted: the test
    // fails before it starts.
    let (code, _, stderr) = persist(&ns, &["many", "--pod", "0", "--yes"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("many-0") && stderr.contains("is not Ready"),
        "{stderr}"
    );
    assert!(!stderr.contains("will delete"), "{stderr}");
}

#[test]
fn bad_input_is_refused_before_any_api_call() {
    // No kubeconfig at all: exit 2 proves no API call was attempted.
    for args in [
        &["Not_A_Name"][..],
        &["mysql-0", "--timeout", "0"],
        &["mysql-0", "--timeout", "soon"],
        &[],
    ] {
        common::assert_exit(common::clean_bin("kubectl-dbpersist").args(args), 2);
    }
    let output = common::clean_bin("kubectl-dbpersist")
        .args(["completion", "bash"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("kubectl-dbpersist"));
}

/// Runs `dbpersist TARGET --yes -o json`, sends `signal` 4 s after it announced the delete
/// (while it waits for the replacement pod), and returns its output and stderr.
fn interrupt_while_waiting(
    ns: &TestNamespace,
    target: &str,
    signal: &str,
) -> (std::process::Output, String) {
    let child = ns.spawn("kubectl-dbpersist", &[target, "--yes", "-o", "json"]);
    common::signal_after_line(child, "will delete pod", Duration::from_secs(4), signal)
}

/// A hand-made MariaDB StatefulSet whose old pod takes 20 s to terminate, so a signal
/// lands while dbpersist waits for the replacement.
fn slow_stopping(name: &str, persistent: bool) -> StatefulSet {
    let mut sts = hand_made(
        name,
        Engine::Mariadb,
        &common::mariadb_image(),
        1,
        persistent,
        true,
    );
    let pod_spec = sts.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    pod_spec.containers[0].lifecycle = Some(k8s_openapi::api::core::v1::Lifecycle {
        pre_stop: Some(k8s_openapi::api::core::v1::LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["sleep".into(), "20".into()]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    sts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_the_delete_reports_like_ctrl_c() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "persist-term", &[]).await;
    create_hand_made(&ns, slow_stopping("slowterm", true), true).await;
    let (output, rest) = interrupt_while_waiting(&ns, "slowterm-0", "TERM");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no report after SIGTERM ({e}); stderr: {rest}"));
    assert_eq!(output.status.code(), Some(130), "{rest}\n{report:#}");
    assert_eq!(report["verdict"], "INTERRUPTED", "{report:#}");
    assert_eq!(report["exit_code"], 130, "{report:#}");
    assert_eq!(step(&report, "delete pod")["result"], "passed");
    assert_eq!(step(&report, "wait for new pod")["result"], "interrupted");
    assert!(
        rest.contains("error: interrupted during wait for new pod"),
        "{rest}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_after_the_delete_still_reports_what_was_seen() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "persist-int", &[]).await;
    let sts = slow_stopping("slowstop", true);
    create_hand_made(&ns, sts, true).await;

    let (output, rest) = interrupt_while_waiting(&ns, "slowstop-0", "INT");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no report after Ctrl-C ({e}); stderr: {rest}"));
    assert_eq!(output.status.code(), Some(130), "{rest}\n{report:#}");
    assert_eq!(report["verdict"], "INTERRUPTED", "{report:#}");
    assert_eq!(report["failed_step"], "wait for new pod", "{report:#}");
    assert_eq!(step(&report, "delete pod")["result"], "passed");
    assert_eq!(step(&report, "wait for new pod")["result"], "interrupted");
    let last_seen = report["last_seen"].as_str().unwrap();
    assert!(last_seen.contains("old pod"), "{last_seen}");
    assert!(
        rest.contains("error: interrupted during wait for new pod"),
        "{rest}"
    );

    // The StatefulSet brings the pod back by itself; a timeout shorter than the old pod's
    // termination is a FAIL with exit 3 that says what it saw.
    let seen = kubectl_db::wait::statefulset_ready(
        &ns.kube,
        "slowstop",
        Duration::from_secs(120),
        &Progress::spinner(false),
    )
    .await
    .unwrap();
    assert!(seen.ready, "{:?}", seen.diagnosis());
    let (code, report, stderr) = persist(
        &ns,
        &["slowstop-0", "--yes", "--timeout", "5s", "-o", "json"],
    );
    assert_eq!(code, Some(3), "{stderr}\n{report:#}");
    assert_eq!(report["verdict"], "FAIL", "{report:#}");
    assert_eq!(report["failed_step"], "wait for new pod");
    let message = report["message"].as_str().unwrap();
    assert!(
        message.contains("no Ready pod with a new UID within 5s; last seen: old pod"),
        "{message}"
    );
    assert_eq!(step(&report, "remove test data")["result"], "skipped");
}
