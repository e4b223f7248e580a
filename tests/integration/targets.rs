//! Targets as kubectl writes them, on the test cluster: `pod/NAME` and `-c` on a hand-made
//! pod whose first container is not the database, `-l` for dbcheck (every match) and
//! dbbackup (exactly one), `sts/NAME`; the reports validate against docs/schema/. No database is deployed by dbdeploy: one bare pod
//! and two StatefulSets scaled to 0 are enough to resolve against.

use crate::common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

/// A StatefulSet of 0 replicas that looks like PostgreSQL, labelled `team=shop`.
fn idle_statefulset(name: &str) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"team": "shop"}},
        "spec": {
            "replicas": 0,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "team": "shop"}},
                "spec": {"containers": [{"name": "postgres", "image": common::postgres_image()}]}
            }
        }
    }))
    .unwrap()
}

/// A bare PostgreSQL pod whose first container is a sidecar of the same image: the
/// database is in container `db`, which only `-c db` names.
fn two_container_pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "two", "labels": {"app": "two"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "sidecar", "image": common::postgres_image(),
                 "command": ["sleep", "3600"],
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}},
                {"name": "db", "image": common::postgres_image(),
                 "env": [{"name": "POSTGRES_PASSWORD", "value": "targets-test"}],
                 "ports": [{"containerPort": 5432}],
                 "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
                 "readinessProbe": {"exec": {"command": ["pg_isready", "-U", "postgres", "-h", "127.0.0.1"]},
                                    "periodSeconds": 1}}
            ]
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn targets_selectors_and_containers_as_kubectl_takes_them() {
    let kubeconfig = require_cluster!();
    let ns = common::TestNamespace::create(&kubeconfig, "targets", &[]).await;
    let pp = PostParams::default();
    let statefulsets: Api<StatefulSet> = ns.kube.api();
    for name in ["a", "b"] {
        statefulsets
            .create(&pp, &idle_statefulset(name))
            .await
            .unwrap();
    }
    let pods: Api<Pod> = ns.kube.api();
    pods.create(&pp, &two_container_pod()).await.unwrap();
    let ready = kube::runtime::wait::await_condition(pods.clone(), "two", |pod: Option<&Pod>| {
        pod.is_some_and(kubectl_db::wait::pod_ready)
    });
    tokio::time::timeout(Duration::from_secs(180), ready)
        .await
        .expect("pod two never became ready")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name).display().to_string();
    let run = |bin: &str, args: &[&str]| common::output(ns.bin(bin).args(args));

    // -c picks the database among the pod's containers; a missing one is named.
    let (code, _, stderr) = run(
        "kubectl-dbbackup",
        &["pod/two", "-c", "db", "-f", &file("one.sql.gz")],
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run("kubectl-dbcheck", &["po/two", "-c", "nope"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "pod {}/two has no container nope (it has: sidecar, db)",
            ns.name
        )),
        "{stderr}"
    );

    // dbbackup -l: the one database it matches (a pod no StatefulSet owns, here)...
    let (code, stdout, stderr) = run(
        "kubectl-dbbackup",
        &[
            "-l",
            "app=two",
            "-c",
            "db",
            "-f",
            &file("two.sql.gz"),
            "-o",
            "json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["pod"], "two", "{stdout}");
    crate::schema::assert_valid(&report);
    // ...and never one of several, nor one of none.
    let (code, _, stderr) = run(
        "kubectl-dbbackup",
        &["-l", "team=shop", "-f", &file("x.sql.gz")],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("-l team=shop matches 2 databases")
            && stderr.contains("statefulset/a, statefulset/b"),
        "{stderr}"
    );
    let (code, _, stderr) = run(
        "kubectl-dbbackup",
        &["-l", "team=none", "-f", &file("x.sql.gz")],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("no database matches -l team=none"),
        "{stderr}"
    );
    assert!(!dir.path().join("x.sql.gz").exists());

    // dbcheck -l: every database it matches, one line each.
    let (code, stdout, stderr) = run("kubectl-dbcheck", &["-l", "team=shop", "-o", "json"]);
    assert!(code == 0 || code == 1, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    crate::schema::assert_valid(&report);
    let names: Vec<&str> = report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"], "{stdout}");

    // sts/NAME is the StatefulSet only, pod/NAME the pod only.
    let (code, stdout, stderr) = run("kubectl-dbcheck", &["sts/a", "-o", "json"]);
    assert!(code == 0 || code == 1, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["statefulset"], "a", "{stdout}");
    crate::schema::assert_valid(&report);
    let (code, _, stderr) = run("kubectl-dbcheck", &["pod/a"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains(&format!("no pod named a in namespace {}", ns.name)),
        "{stderr}"
    );
    let (code, _, stderr) = run("kubectl-dbcheck", &["statefulset/two"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("no StatefulSet named two"), "{stderr}");

    // Lists are documents too: {apiVersion, kind, items}, valid under their schema.
    for (bin, args) in [
        ("kubectl-dbdeploy", &["list", "-o", "json"][..]),
        (
            "kubectl-dbbackup",
            &["snapshot", "list", "--all", "-o", "json"],
        ),
    ] {
        let (code, stdout, stderr) = run(bin, args);
        if code == 3 && stderr.contains("VolumeSnapshot") {
            continue; // a cluster without the snapshot API
        }
        assert_eq!(code, 0, "{bin} {args:?}: {stderr}");
        let list: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(list["items"], json!([]), "{stdout}");
        crate::schema::assert_valid(&list);
    }
}
