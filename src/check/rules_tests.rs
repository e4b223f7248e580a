//! Rules fed with objects recorded from the local cluster (testdata/broken-namespace.json:
//! `kubectl get -o json` of a namespace holding one healthy and six broken databases).
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodSpec};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::*;
use crate::check::facts::{InsideFacts, ObjectKeys, Outcome, RefKind, Run};
use crate::check::podspec::references;
use crate::engine::Engine;

fn recorded() -> Value {
    serde_json::from_str(include_str!("testdata/broken-namespace.json")).unwrap()
}

fn items<T: serde::de::DeserializeOwned>(all: &Value, kind: &str) -> Vec<T> {
    all[kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect()
}

/// Facts for one recorded pod, assembled the way `collect` does; every referenced
/// Secret/ConfigMap has the keys the pod asks for, except those in `missing`.
pub(crate) fn facts(pod_name: &str, missing: &[&str]) -> Facts {
    let all = recorded();
    let pods: Vec<Pod> = items(&all, "pods");
    let pod = pods.into_iter().find(|p| p.name_any() == pod_name).unwrap();
    let sts_name = crate::target::owner_statefulset(&pod).unwrap();
    let statefulset = items::<StatefulSet>(&all, "statefulsets")
        .into_iter()
        .find(|s| s.name_any() == sts_name);
    let claims_all: Vec<PersistentVolumeClaim> = items(&all, "pvc");
    let claims = pod
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| {
            (
                c.claim_name.clone(),
                claims_all
                    .iter()
                    .find(|p| p.name_any() == c.claim_name)
                    .cloned(),
            )
        })
        .collect();
    let mut objects: BTreeMap<(RefKind, String), ObjectKeys> = BTreeMap::new();
    for r in references(pod.spec.as_ref().unwrap()) {
        let keys = objects
            .entry((r.kind, r.name.clone()))
            .or_insert_with(|| Ok(Some(BTreeSet::new())));
        if let (Ok(Some(keys)), Some(key)) = (keys, r.key)
            && !missing.contains(&key.as_str())
        {
            keys.insert(key);
        }
    }
    let events: Vec<Event> = items(&all, "events");
    Facts {
        namespace: pod.namespace().unwrap(),
        pod_name: pod_name.into(),
        engine: Engine::Postgres,
        container: "postgres".into(),
        pod: Some(pod),
        statefulset,
        claims,
        storage_classes: Ok(items(&all, "storageclasses")),
        volumes: Vec::new(),
        volume_errors: Vec::new(),
        services: items(&all, "services"),
        endpoint_slices: items(&all, "endpointslices"),
        objects,
        events: Ok(events
            .into_iter()
            .filter(|e| {
                e.involved_object
                    .name
                    .as_deref()
                    .is_some_and(|n| n.contains(&sts_name))
            })
            .collect()),
        previous_logs: None,
        usage: Err("no metrics API (metrics-server is not installed)".into()),
        inside: InsideFacts::not_run("container is not running"),
        now: Timestamp::now(),
    }
}

fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks.iter().find(|c| c.name == name).unwrap()
}

fn ran(stdout: &str) -> Outcome {
    Outcome::Done(Run {
        success: true,
        status: "exit status 0".into(),
        stdout: stdout.into(),
        stderr: String::new(),
        millis: 5,
    })
}

#[test]
fn missing_storage_class_is_named_with_the_classes_that_exist() {
    let checks = diagnose(&facts("noclass-0", &[]));
    let pvc = find(&checks, "pvc.bound");
    assert_eq!(pvc.verdict, Verdict::Fail);
    assert!(
        pvc.evidence
            .contains("StorageClass \"nope\" does not exist (classes: standard (default))"),
        "{pvc:?}"
    );
    assert!(
        pvc.fix
            .as_deref()
            .unwrap()
            .contains("--storage-class standard")
    );
    assert!(
        find(&checks, "pod.scheduling")
            .fix
            .as_deref()
            .unwrap()
            .contains("pvc.bound")
    );
}

#[test]
fn unreadable_storage_classes_are_named_for_a_pending_claim() {
    let mut facts = facts("noclass-0", &[]);
    facts.storage_classes = Err("failed to list StorageClasses: storageclasses.storage.k8s.io is forbidden: User \"u\" cannot list resource \"storageclasses\"".into());
    let checks = diagnose(&facts);
    let pvc = find(&checks, "pvc.bound");
    assert_eq!(pvc.verdict, Verdict::Fail);
    assert!(
        pvc.evidence
            .contains("could not check its StorageClass: failed to list StorageClasses"),
        "{pvc:?}"
    );
}

#[test]
fn unreadable_volumes_are_named_by_the_reclaim_policy_check() {
    let mut facts = facts("noclass-0", &[]);
    facts.volumes.clear();
    facts.volume_errors = vec!["failed to read PersistentVolume pv-1: forbidden".into()];
    let checks = diagnose(&facts);
    let check = find(&checks, "pv.reclaim-policy");
    assert_eq!(check.verdict, Verdict::Skipped);
    assert!(
        check
            .evidence
            .contains("could not read the PersistentVolume: failed to read PersistentVolume pv-1"),
        "{check:?}"
    );
}

#[test]
fn unschedulable_pod_gets_the_scheduler_reason_and_the_request() {
    let checks = diagnose(&facts("bigcpu-0", &[]));
    let scheduling = find(&checks, "pod.scheduling");
    assert_eq!(scheduling.verdict, Verdict::Fail);
    assert!(scheduling.evidence.contains("Insufficient cpu"));
    assert!(
        scheduling
            .fix
            .as_deref()
            .unwrap()
            .contains("no node has 64 CPU free"),
        "{scheduling:?}"
    );
    // WaitForFirstConsumer: the PVC waits for the pod, which is explained, not blamed.
    assert_eq!(find(&checks, "pvc.bound").verdict, Verdict::Warn);
}

#[test]
fn image_pull_failure_names_the_image() {
    let checks = diagnose(&facts("nopull-0", &[]));
    let image = find(&checks, "pod.image");
    assert_eq!(image.verdict, Verdict::Fail);
    assert!(image.evidence.contains("localhost/kdb/none:1"));
    assert_eq!(find(&checks, "pod.containers").verdict, Verdict::Skipped);
}

#[test]
fn crash_loop_shows_the_log_and_names_the_bad_setting() {
    let mut facts = facts("badconf-0", &[]);
    facts.previous_logs = Some(
        "LOG:  invalid value for parameter \"shared_buffers\": \"notanumber\"\nFATAL:  configuration file \"/etc/postgresql/kubectl-db/postgresql.conf\" contains errors\n".into(),
    );
    let checks = diagnose(&facts);
    let containers = find(&checks, "pod.containers");
    assert_eq!(containers.verdict, Verdict::Fail);
    assert!(containers.evidence.contains("CrashLoopBackOff"));
    assert!(
        containers
            .evidence
            .contains("previous container's last log lines:\nLOG:  invalid value")
    );
    let fix = containers.fix.as_deref().unwrap();
    assert!(
        fix.contains("shared_buffers") && fix.contains("--set"),
        "{fix}"
    );
}

#[test]
fn a_literal_password_in_a_probe_is_flagged_without_being_shown() {
    let mut facts = facts("good-0", &[]);
    let pod = facts.pod.as_mut().unwrap();
    let container = &mut pod.spec.as_mut().unwrap().containers[0];
    container.readiness_probe = Some(k8s_openapi::api::core::v1::Probe {
        exec: Some(k8s_openapi::api::core::v1::ExecAction {
            command: Some(vec![
                "mysqladmin".into(),
                "-uroot".into(),
                "-pS3cretValue".into(),
                "ping".into(),
            ]),
        }),
        ..Default::default()
    });
    let check = probes_configured(&facts);
    assert_eq!(check.verdict, Verdict::Warn);
    assert!(check.evidence.contains("password on its command line"));
    let shown = format!("{check:?}");
    assert!(!shown.contains("S3cretValue"), "{shown}");
}

#[test]
fn readiness_failing_while_the_server_answers_blames_the_probe() {
    let mut facts = facts("notready-0", &[]);
    facts.inside.readiness = Outcome::Done(Run {
        success: false,
        status: "exit status 1".into(),
        millis: 3,
        ..Default::default()
    });
    facts.inside.sql = ran(
        "version\tPostgreSQL 15.20\nuptime\t59\nconnections\t1\nmax_connections\t100\ndatabase\tappdb\n",
    );
    let checks = diagnose(&facts);
    assert_eq!(find(&checks, "pod.ready").verdict, Verdict::Fail);
    let probe = find(&checks, "probe.readiness");
    assert_eq!(probe.verdict, Verdict::Fail);
    assert!(
        probe
            .fix
            .as_deref()
            .unwrap()
            .contains("probe's command itself is wrong")
    );
    assert_eq!(
        find(&checks, "db.server").evidence,
        "PostgreSQL 15.20; up 59s; databases: appdb"
    );
    assert_eq!(
        find(&checks, "db.connections").evidence,
        "1 of max_connections 100"
    );
}

#[test]
fn service_without_ready_endpoints_or_with_a_wrong_selector_fails() {
    let checks = diagnose(&facts("notready-0", &[]));
    let endpoints = find(&checks, "service.endpoints");
    assert_eq!(endpoints.verdict, Verdict::Fail);
    assert!(
        endpoints.evidence.contains("no ready endpoints"),
        "{endpoints:?}"
    );

    let mut facts = facts("good-0", &[]);
    for service in &mut facts.services {
        if service.name_any() == "good" {
            service.spec.as_mut().unwrap().selector =
                Some(BTreeMap::from([("app".to_string(), "nothing".to_string())]));
        }
    }
    let endpoints = find(&diagnose(&facts), "service.endpoints").clone();
    assert_eq!(endpoints.verdict, Verdict::Fail);
    assert!(
        endpoints
            .evidence
            .contains("selects app=nothing and matches no pod"),
        "{endpoints:?}"
    );
    assert!(endpoints.fix.unwrap().contains("app=good"));
}

#[test]
fn missing_secret_key_is_named_with_the_keys_present_but_no_values() {
    let mut facts = facts("nokey-0", &["POSTGRES_PASSWORD"]);
    if let Some(Ok(Some(keys))) = facts
        .objects
        .get_mut(&(RefKind::Secret, "nokey-secret".into()))
    {
        keys.insert("PASSWORD".into());
    }
    let checks = diagnose(&facts);
    let refs = find(&checks, "config.references");
    assert_eq!(refs.verdict, Verdict::Fail);
    assert!(
        refs.evidence
            .contains("Secret nokey-secret has no key POSTGRES_PASSWORD"),
        "{refs:?}"
    );
    assert!(refs.evidence.contains("keys present: PASSWORD"));
    assert!(
        find(&checks, "pod.containers")
            .evidence
            .contains("CreateContainerConfigError")
    );
}

#[test]
fn unwritable_data_directory_fails_with_the_uid_and_fsgroup_fix() {
    let mut facts = facts("good-0", &[]);
    facts.inside.permissions = ran(
        "id=uid=999 gid=999 groups=999\ndir=/var/lib/postgresql/data/pgdata\nstat=999:999 500\nwritable=no",
    );
    let check = inside::datadir_permissions(&facts);
    assert_eq!(check.verdict, Verdict::Fail);
    assert!(
        check.evidence.contains("999:999 500, NOT writable"),
        "{check:?}"
    );
    assert!(check.fix.unwrap().contains("fsGroup to 999"));
}

#[test]
fn permission_denied_in_the_log_is_diagnosed_without_exec() {
    let mut facts = facts("badconf-0", &[]);
    facts.previous_logs = Some("initdb: error: could not change permissions of directory \"/var/lib/postgresql/data/pgdata\": Operation not permitted\n".into());
    let check = inside::datadir_permissions(&facts);
    assert_eq!(check.verdict, Verdict::Fail);
    assert!(check.fix.unwrap().contains("fsGroup"));
}

#[test]
fn healthy_database_is_ok_and_node_level_events_are_ignored() {
    let mut facts = facts("good-0", &[]);
    facts.inside = InsideFacts {
        readiness: ran(""),
        permissions: ran(
            "id=uid=999 gid=999 groups=999\ndir=/var/lib/postgresql/data/pgdata\nstat=999:999 700\nwritable=yes",
        ),
        sql: ran(
            "version\tPostgreSQL 15.20\nuptime\t3700\nconnections\t1\nmax_connections\t100\ndatabase\tappdb\ndatabase\tpostgres\n",
        ),
        status: ran("127.0.0.1:5432 - accepting connections"),
        volume: ran(
            "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/x 1048576 1000 1047576 1% /var/lib/postgresql/data\n",
        ),
    };
    facts.usage = Ok(BTreeMap::from([(
        "postgres".to_string(),
        ("3m".to_string(), "60Mi".to_string()),
    )]));
    let checks = diagnose(&facts);
    let not_ok: Vec<&Check> = checks
        .iter()
        .filter(|c| c.verdict != Verdict::Ok && c.name != "pv.reclaim-policy")
        .collect();
    assert!(not_ok.is_empty(), "{not_ok:#?}");
    assert!(
        find(&checks, "events")
            .evidence
            .contains("MissingClusterDNS")
    );
    assert_eq!(
        find(&checks, "db.server").evidence,
        "PostgreSQL 15.20; up 61m; databases: appdb, postgres"
    );
}

#[test]
fn references_cover_env_env_from_and_volumes() {
    let spec: PodSpec = serde_json::from_value(serde_json::json!({
        "containers": [{"name": "db", "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                        "envFrom": [{"configMapRef": {"name": "c"}}]}],
        "volumes": [{"name": "conf", "configMap": {"name": "c2", "items": [{"key": "my.cnf", "path": "my.cnf"}]}},
                    {"name": "tls", "secret": {"secretName": "t", "optional": true}}]
    }))
    .unwrap();
    let refs: Vec<String> = references(&spec)
        .iter()
        .map(|r| format!("{} {} {:?} {}", r.kind, r.name, r.key, r.optional))
        .collect();
    assert_eq!(
        refs,
        vec![
            "Secret s Some(\"k\") false",
            "ConfigMap c None false",
            "ConfigMap c2 Some(\"my.cnf\") false",
            "Secret t None true"
        ]
    );
}

#[test]
fn usage_is_compared_with_the_limits() {
    let mut facts = facts("good-0", &[]);
    facts.usage = Ok(BTreeMap::from([(
        "postgres".to_string(),
        ("5m".to_string(), "972Mi".to_string()),
    )]));
    let check = resources_usage(&facts);
    assert_eq!(check.verdict, Verdict::Warn, "{check:?}");
    assert!(
        check.evidence.contains("memory 972Mi of limit 1Gi (95%)"),
        "{check:?}"
    );
}
