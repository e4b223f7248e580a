//! `kubectl dbdeploy` end to end on the local cluster: deploy, ready, query, re-run
//! (nothing changes, passwords kept), delete (data kept), delete --purge-data; delete
//! leaves same-named objects it did not make alone, and deletes nothing without a managed
//! StatefulSet.

use crate::common;

use std::collections::BTreeMap;

use common::TestNamespace;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, PersistentVolumeClaimSpec, Secret, Service, ServicePort,
    ServiceSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kubectl_db::render::Names;

use common::SMALL;

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
    let first = common::deploy_json(&ns, &args);
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
    let secret_before = common::secret_data(&ns, &format!("{engine}-secret")).await;
    for value in secret_before.values() {
        assert!(value.len() >= 32, "generated passwords are 32+ characters");
    }

    // Re-run: server-side apply changes nothing, and the passwords stay.
    let second = common::deploy_json(&ns, &args);
    for object in second["objects"].as_array().unwrap() {
        assert_eq!(object["outcome"], "unchanged", "{object}");
    }
    assert_eq!(second["secret"]["generated"].as_array().unwrap().len(), 0);
    assert_eq!(
        common::secret_data(&ns, &format!("{engine}-secret")).await,
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
            !table.contains(&*String::from_utf8_lossy(value)),
            "password in the summary"
        );
    }

    // list shows it ready.
    let listed = common::deploy_json(&ns, &["list"]);
    assert_eq!(listed["kind"], "DatabaseList");
    assert_eq!(listed["items"][0]["name"], engine);
    assert_eq!(listed["items"][0]["ready"], "1/1");

    // delete keeps the data and the Secret that opens it.
    let pvc = Names::pvc(engine, 0);
    let deleted = common::deploy_json(&ns, &["delete", engine]);
    let kept: Vec<&str> = deleted["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(
        kept.contains(&format!("PersistentVolumeClaim/{pvc}").as_str()),
        "{deleted}"
    );
    assert!(pvc_names(&ns).await.contains(&pvc));
    common::secret_data(&ns, &format!("{engine}-secret")).await;

    // --purge-data without --yes and without a terminal is refused.
    let output = ns
        .bin("kubectl-dbdeploy")
        .args(["delete", engine, "--purge-data"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(pvc_names(&ns).await.contains(&pvc));

    let purged = common::deploy_json(&ns, &["delete", engine, "--purge-data", "--yes"]);
    assert!(
        purged["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == &format!("PersistentVolumeClaim/{pvc}"))
    );
    // PVC deletion is asynchronous (finalizers); it must at least be marked for deletion.
    let api: Api<PersistentVolumeClaim> = ns.kube.api();
    let pvc = api.get_opt(&pvc).await.unwrap();
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
    let output = common::assert_exit(
        ns.bin("kubectl-dbdeploy")
            .args(["mysql", "--dry-run=server", "-o", "yaml"]),
        0,
    );
    let yaml = String::from_utf8_lossy(&output.stdout);
    assert!(yaml.contains("kind: StatefulSet"));
    assert!(
        yaml.contains("uid:"),
        "server-side dry run returns server-filled objects"
    );
    assert!(!yaml.contains("kind: Secret"));
    let listed = common::deploy_json(&ns, &["list"]);
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
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

/// Runs dbdeploy; returns (exit code, stdout, stderr).
fn run(ns: &TestNamespace, args: &[&str]) -> (Option<i32>, String, String) {
    common::split(ns.bin("kubectl-dbdeploy").args(args).output().unwrap())
}

/// Hand-made objects: no labels at all, one data key / port to tell them apart.
fn hand_made_meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    }
}

fn made_by_hand() -> Option<BTreeMap<String, String>> {
    Some(BTreeMap::from([("made".into(), "by hand".into())]))
}

fn hand_made_config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: hand_made_meta(name),
        data: made_by_hand(),
        ..Default::default()
    }
}

fn hand_made_service(name: &str) -> Service {
    let port = ServicePort {
        port: 8080,
        ..Default::default()
    };
    Service {
        metadata: hand_made_meta(name),
        spec: Some(ServiceSpec {
            ports: Some(vec![port]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn hand_made_secret(name: &str) -> Secret {
    Secret {
        metadata: hand_made_meta(name),
        string_data: made_by_hand(),
        ..Default::default()
    }
}

fn hand_made_pvc(name: &str) -> PersistentVolumeClaim {
    let storage = BTreeMap::from([("storage".to_string(), Quantity("1Gi".into()))]);
    PersistentVolumeClaim {
        metadata: hand_made_meta(name),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(storage),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Replaces an object by a hand-made one of the same name; returns the new object's UID.
async fn replace<K>(ns: &TestNamespace, object: K) -> String
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = ns.kube.api();
    let name = object.meta().name.clone().unwrap();
    let _ = api.delete(&name, &DeleteParams::foreground()).await;
    for _ in 0..100 {
        if api.get_opt(&name).await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let created = api.create(&PostParams::default(), &object).await.unwrap();
    created.meta().uid.clone().unwrap()
}

/// The object's UID, `None` when it is gone or being deleted.
async fn live_uid<K>(ns: &TestNamespace, name: &str) -> Option<String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = ns.kube.api();
    api.get_opt(name)
        .await
        .unwrap()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .and_then(|o| o.meta().uid.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_leaves_alone_what_dbdeploy_did_not_make() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "del-own", &[]).await;
    let image = common::postgres_image();
    let mut args = vec!["postgres", "--name", "own", "--image", &image, "--no-wait"];
    args.extend_from_slice(SMALL);
    common::deploy_json(&ns, &args);

    // Same names as the database's objects, made by hand: no labels.
    let config_uid = replace(&ns, hand_made_config_map("own-config")).await;
    let service_uid = replace(&ns, hand_made_service("own")).await;
    let secret_uid = replace(&ns, hand_made_secret("own-secret")).await;
    let pvc_api: Api<PersistentVolumeClaim> = ns.kube.api();
    pvc_api
        .create(
            &PostParams::default(),
            &hand_made_pvc(&Names::pvc("own", 1)),
        )
        .await
        .unwrap();

    let (code, stdout, stderr) = run(&ns, &["delete", "own", "--purge-data", "--yes"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    for line in [
        "deleted StatefulSet/own",
        "deleted Service/own-headless",
        "deleted NetworkPolicy/own",
        "kept    ConfigMap/own-config: not made by kubectl-dbdeploy for own",
        "kept    Service/own: not made by kubectl-dbdeploy for own",
        "kept    Secret/own-secret: not made by kubectl-dbdeploy for own",
        "kept    PersistentVolumeClaim/data-own-1: not made by kubectl-dbdeploy for own",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from\n{stdout}");
    }
    assert_eq!(
        live_uid::<ConfigMap>(&ns, "own-config").await,
        Some(config_uid)
    );
    assert_eq!(live_uid::<Service>(&ns, "own").await, Some(service_uid));
    assert_eq!(
        live_uid::<Secret>(&ns, "own-secret").await,
        Some(secret_uid)
    );
    assert!(
        live_uid::<PersistentVolumeClaim>(&ns, &Names::pvc("own", 1))
            .await
            .is_some()
    );
    // What dbdeploy made is gone (the PVC at least marked for deletion: finalizers).
    assert_eq!(live_uid::<StatefulSet>(&ns, "own").await, None);
    assert_eq!(live_uid::<Service>(&ns, "own-headless").await, None);
    assert_eq!(live_uid::<NetworkPolicy>(&ns, "own").await, None);
    if stdout.contains("deleted PersistentVolumeClaim/data-own-0") {
        assert_eq!(
            live_uid::<PersistentVolumeClaim>(&ns, &Names::pvc("own", 0)).await,
            None
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_without_a_managed_statefulset_deletes_nothing() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "del-none", &[]).await;
    let api: Api<ConfigMap> = ns.kube.api();
    let uid = api
        .create(
            &PostParams::default(),
            &hand_made_config_map("ghost-config"),
        )
        .await
        .unwrap()
        .metadata
        .uid;
    let secrets: Api<Secret> = ns.kube.api();
    let secret_uid = secrets
        .create(&PostParams::default(), &hand_made_secret("ghost-secret"))
        .await
        .unwrap()
        .metadata
        .uid;

    for args in [
        &["delete", "ghost"][..],
        &["delete", "ghost", "-o", "json"],
        &["delete", "ghost", "--purge-data", "--yes"],
    ] {
        let (code, stdout, stderr) = run(&ns, args);
        assert_eq!(code, Some(2), "{args:?}: {stdout}\n{stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(
            stderr.contains(&format!(
                "error: no StatefulSet ghost made by kubectl-dbdeploy in namespace {}: nothing was deleted",
                ns.name
            )),
            "{args:?}: {stderr}"
        );
        assert_eq!(live_uid::<ConfigMap>(&ns, "ghost-config").await, uid);
        assert_eq!(live_uid::<Secret>(&ns, "ghost-secret").await, secret_uid);
    }
}

async fn generation(ns: &TestNamespace, name: &str) -> Option<i64> {
    let api: Api<StatefulSet> = ns.kube.api();
    api.get(name).await.unwrap().metadata.generation
}

/// A running database is re-deployed with each refused change: exit 2 with the reason in
/// stderr, and the StatefulSet untouched; then a valid change still goes through.
async fn redeploy_is_checked(
    engine: &str,
    image: &str,
    refused: &[(&[&str], &[&str])],
    accepted: &[&str],
) {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, &format!("redeploy-{engine}"), &[]).await;
    let mut args = vec![engine, "--image", image, "--timeout", "4m"];
    args.extend_from_slice(SMALL);
    let first = common::deploy_json(&ns, &args);
    assert!(first["wait"]["ready"].as_bool().unwrap(), "{first}");
    let before = generation(&ns, engine).await;
    let config: Api<ConfigMap> = ns.kube.api();
    let config_version = config
        .get(&format!("{engine}-config"))
        .await
        .unwrap()
        .metadata
        .resource_version;

    for (extra, expected) in refused {
        let mut again = args.clone();
        match extra {
            // A new image replaces the first deploy's.
            ["--image", image] => again[2] = image,
            _ => again.extend_from_slice(extra),
        }
        let (code, stdout, stderr) = run(&ns, &again);
        assert_eq!(code, Some(2), "{extra:?}: {stdout}\n{stderr}");
        assert!(stdout.is_empty(), "{extra:?}: {stdout}");
        for part in *expected {
            assert!(
                stderr.contains(part),
                "{extra:?}: {part:?} missing from {stderr}"
            );
        }
        assert!(stderr.contains("nothing was applied"), "{stderr}");
        assert_eq!(
            generation(&ns, engine).await,
            before,
            "{extra:?} changed the StatefulSet"
        );
    }
    assert_eq!(
        config
            .get(&format!("{engine}-config"))
            .await
            .unwrap()
            .metadata
            .resource_version,
        config_version,
        "a refused re-deploy changed the ConfigMap"
    );

    // A valid setting is not refused: the check is not a blanket refusal.
    let mut again = args.clone();
    again.extend_from_slice(accepted);
    again.push("--no-wait");
    let (code, stdout, stderr) = run(&ns, &again);
    assert_eq!(code, Some(0), "{accepted:?}: {stdout}\n{stderr}");
    assert_ne!(
        generation(&ns, engine).await,
        before,
        "{accepted:?} was not applied"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_redeploy_refuses_unknown_settings_and_major_upgrades() {
    redeploy_is_checked(
        "postgres",
        &common::postgres_image(),
        &[
            (
                &["--set", "no_such_setting=1"],
                &["--set no_such_setting=1: unknown setting", "PostgreSQL 15"],
            ),
            (
                &["--set", "max_connections=banana"],
                &["--set max_connections=banana: \"banana\" is not a number"],
            ),
            (
                &["--set", "shared_buffers=1Mb"],
                &["valid units for this setting are B, kB, MB, GB, TB"],
            ),
            (
                &["--image", "localhost/kdb/postgres:16"],
                &[
                    "PostgreSQL 15",
                    "to PostgreSQL 16 is a major version change",
                    "kubectl dbbackup dump postgres-0",
                    "kubectl dbbackup restore postgres-16-0",
                ],
            ),
        ],
        &["--set", "max_connections=150"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_redeploy_refuses_unknown_variables() {
    redeploy_is_checked(
        "mariadb",
        &common::mariadb_image(),
        &[
            (
                &["--set", "no_such_variable=1"],
                &["--set no_such_variable=1: unknown variable", "MariaDB"],
            ),
            (&["--set", "max_connections=banana"], &["is not a number"]),
            (
                &["--image", "localhost/kdb/mariadb:11.4"],
                &["major version change", "kubectl dbbackup dump mariadb-0"],
            ),
        ],
        &["--set", "max-connections=300"],
    )
    .await;
}
