//! `kubectl dbdeploy` end to end on the local cluster: deploy, ready, query, re-run
//! (nothing changes, passwords kept), delete (data kept), delete --purge-data.

mod common;

use common::TestNamespace;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::Api;
use serde_json::Value;

use common::SMALL;

fn run_json(ns: &TestNamespace, args: &[&str]) -> Value {
    let output = ns
        .bin("kubectl-dbdeploy")
        .args(args)
        .args(["-o", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "dbdeploy {args:?} failed:\n{stderr}"
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

async fn secret_data(
    ns: &TestNamespace,
    name: &str,
) -> std::collections::BTreeMap<String, k8s_openapi::ByteString> {
    let api: Api<Secret> = ns.kube.api();
    api.get(name).await.unwrap().data.unwrap()
}

async fn pvc_names(ns: &TestNamespace) -> Vec<String> {
    let api: Api<PersistentVolumeClaim> = ns.kube.api();
    let list = api.list(&Default::default()).await.unwrap();
    list.items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect()
}

async fn full_cycle(engine: &str, image: &str, version_word: &str) {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, engine, &[]).await;

    let mut args = vec![engine, "--image", image, "--timeout", "4m"];
    args.extend_from_slice(SMALL);
    let first = run_json(&ns, &args);
    assert!(
        first["objects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["outcome"] == "created"),
        "{first}"
    );
    assert!(first["wait"]["ready"].as_bool().unwrap());
    let version = first["server_version"].as_str().unwrap();
    assert!(
        version.contains(version_word),
        "version query returned {version:?}"
    );
    let databases: Vec<&str> = first["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(databases.contains(&"appdb"), "{databases:?}");
    assert!(first.get("passwords").is_none());
    let secret_before = secret_data(&ns, &format!("{engine}-secret")).await;
    for value in secret_before.values() {
        assert!(
            value.0.len() >= 32,
            "generated passwords are 32+ characters"
        );
    }

    // Re-run: server-side apply changes nothing, and the passwords stay.
    let second = run_json(&ns, &args);
    for object in second["objects"].as_array().unwrap() {
        assert_eq!(object["outcome"], "unchanged", "{object}");
    }
    assert_eq!(second["secret"]["generated"].as_array().unwrap().len(), 0);
    assert_eq!(
        secret_data(&ns, &format!("{engine}-secret")).await,
        secret_before
    );
    let stdout = ns
        .bin("kubectl-dbdeploy")
        .args(&args)
        .output()
        .unwrap()
        .stdout;
    let table = String::from_utf8_lossy(&stdout);
    for value in secret_before.values() {
        assert!(
            !table.contains(&*String::from_utf8_lossy(&value.0)),
            "password in the summary"
        );
    }

    // list shows it ready.
    let listed = run_json(&ns, &["list"]);
    assert_eq!(listed[0]["name"], engine);
    assert_eq!(listed[0]["ready"], "1/1");

    // delete keeps the data and the Secret that opens it.
    let deleted = run_json(&ns, &["delete", engine]);
    let kept: Vec<&str> = deleted["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(
        kept.contains(&format!("PersistentVolumeClaim/data-{engine}-0").as_str()),
        "{deleted}"
    );
    assert!(pvc_names(&ns).await.contains(&format!("data-{engine}-0")));
    secret_data(&ns, &format!("{engine}-secret")).await;

    // --purge-data without --yes and without a terminal is refused.
    let output = ns
        .bin("kubectl-dbdeploy")
        .args(["delete", engine, "--purge-data"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(pvc_names(&ns).await.contains(&format!("data-{engine}-0")));

    let purged = run_json(&ns, &["delete", engine, "--purge-data", "--yes"]);
    assert!(
        purged["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == &format!("PersistentVolumeClaim/data-{engine}-0"))
    );
    // PVC deletion is asynchronous (finalizers); it must at least be marked for deletion.
    let api: Api<PersistentVolumeClaim> = ns.kube.api();
    let pvc = api.get_opt(&format!("data-{engine}-0")).await.unwrap();
    assert!(pvc.is_none_or(|p| p.metadata.deletion_timestamp.is_some()));
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_full_cycle() {
    full_cycle("postgres", &common::postgres_image(), "PostgreSQL 15").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_full_cycle() {
    full_cycle("mariadb", &common::mariadb_image(), "MariaDB").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_dry_run_validates_and_stores_nothing() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "dryrun", &[]).await;
    let output = ns
        .bin("kubectl-dbdeploy")
        .args(["mysql", "--dry-run=server", "-o", "yaml"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let yaml = String::from_utf8_lossy(&output.stdout);
    assert!(yaml.contains("kind: StatefulSet"));
    assert!(
        yaml.contains("uid:"),
        "server-side dry run returns server-filled objects"
    );
    assert!(!yaml.contains("kind: Secret"));
    let listed = run_json(&ns, &["list"]);
    assert_eq!(
        listed.as_array().unwrap().len(),
        0,
        "dry run stored nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_exits_3_with_the_reason() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "timeout", &[]).await;
    let output = ns
        .bin("kubectl-dbdeploy")
        .args([
            "postgres",
            "--image",
            "localhost/kdb/does-not-exist:1",
            "--timeout",
            "20s",
        ])
        .args(SMALL)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("timed out after 20s"), "{stderr}");
    assert!(
        stderr.contains("pod postgres-0:"),
        "the pod's state is shown: {stderr}"
    );
    assert!(
        stderr.contains("ErrImagePull") || stderr.contains("ImagePullBackOff"),
        "{stderr}"
    );
    assert!(stderr.contains("kubectl dbcheck postgres-0"), "{stderr}");
}
