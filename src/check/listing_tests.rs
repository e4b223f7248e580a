//! The summary's join: objects of two namespaces listed together land on the right
//! database, and what could not be listed is said where a check needs it.

use super::*;
use crate::check::Verdict;
use crate::engine::Engine;
use serde_json::{Value, json};

fn object<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).unwrap()
}

fn statefulset(ns: &str, name: &str, image: &str) -> StatefulSet {
    object(json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": {"selector": {}, "serviceName": name, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {
                "containers": [{"name": "db", "image": image,
                    "envFrom": [{"secretRef": {"name": format!("{name}-secret")}}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            }},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}
    }))
}

fn pod(ns: &str, name: &str) -> Pod {
    object(json!({"metadata": {"namespace": ns, "name": name},
        "spec": {"containers": [{"name": "db", "image": "postgres:15",
            "envFrom": [{"secretRef": {"name": "pg-secret"}}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{name}")}}]}}))
}

fn named<K: DeserializeOwned>(ns: &str, name: &str, extra: Value) -> K {
    let mut value = json!({"metadata": {"namespace": ns, "name": name}});
    if let (Some(v), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
        v.extend(extra.clone());
    }
    object(value)
}

fn event(ns: &str, about: &str) -> Event {
    named(
        ns,
        &format!("{about}.1"),
        json!({"involvedObject": {"name": about}, "type": "Warning"}),
    )
}

/// Two namespaces with a database called `pg` each, and a web server in `a`.
fn listing() -> Listing {
    Listing {
        statefulsets: vec![
            statefulset("a", "pg", "postgres:15"),
            statefulset("a", "web", "nginx:1"),
            statefulset("b", "pg", "postgres:15"),
        ],
        pods: vec![pod("a", "pg-0"), pod("b", "web-0")],
        claims: vec![
            named("a", "data-pg-0", json!({"spec": {"volumeName": "pv-a"}})),
            named("b", "data-pg-0", json!({"spec": {"volumeName": "pv-b"}})),
        ],
        services: vec![named("a", "pg", json!({})), named("b", "pg", json!({}))],
        slices: vec![named("b", "pg-x", json!({"endpoints": []}))],
        events: Ok(vec![
            event("a", "pg-0"),
            event("b", "pg-0"),
            event("a", "web-0"),
        ]),
        secrets: Ok(BTreeMap::from([(
            ("a".to_string(), "pg-secret".to_string()),
            BTreeSet::from(["POSTGRES_PASSWORD".to_string()]),
        )])),
        config_maps: Ok(BTreeMap::new()),
        classes: Ok(vec![]),
        volumes: Ok(vec![
            named("", "pv-a", json!({})),
            named("", "pv-b", json!({})),
        ]),
        metrics: Ok(vec![]),
        snapshots: Ok(vec![]),
        schedules: Ok((vec![], vec![])),
    }
}

#[test]
fn databases_are_the_statefulsets_that_run_one_with_their_own_pod() {
    let targets = listing().databases();
    let found: Vec<(String, String, bool, Engine)> = targets
        .iter()
        .map(|t| {
            (
                t.namespace.clone(),
                t.pod_name.clone(),
                t.pod.is_some(),
                t.engine,
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("a".into(), "pg-0".into(), true, Engine::Postgres),
            // b's pod list has web-0 only: pg-0 of namespace a is not taken for it.
            ("b".into(), "pg-0".into(), false, Engine::Postgres),
        ]
    );
}

#[test]
fn each_database_gets_the_objects_of_its_own_namespace() {
    let listing = listing();
    let targets = listing.databases();
    let a = listing.facts(&targets[0], Timestamp::UNIX_EPOCH);
    let claims: Vec<(String, Option<String>)> = a
        .claims
        .iter()
        .map(|(n, c)| (n.clone(), c.as_ref().and_then(|c| c.namespace())))
        .collect();
    assert_eq!(claims, [("data-pg-0".into(), Some("a".into()))]);
    assert_eq!(
        a.volumes.iter().map(|v| v.name_any()).collect::<Vec<_>>(),
        ["pv-a"]
    );
    assert_eq!(
        a.services.iter().map(|s| s.namespace()).collect::<Vec<_>>(),
        [Some("a".into())]
    );
    assert!(a.endpoint_slices.is_empty());
    let events = a.events.as_ref().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].namespace().as_deref(), Some("a"));
    // The pod's own reference, joined with the Secret's key names of its namespace.
    assert_eq!(
        a.objects[&(RefKind::Secret, "pg-secret".to_string())],
        Ok(Some(BTreeSet::from(["POSTGRES_PASSWORD".to_string()])))
    );
    assert_eq!(a.usage, Err("no metrics for the pod yet".to_string()));

    // The pod of b does not exist: its claim comes from the template, the Secret is missing.
    let b = listing.facts(&targets[1], Timestamp::UNIX_EPOCH);
    assert_eq!(
        b.volumes.iter().map(|v| v.name_any()).collect::<Vec<_>>(),
        ["pv-b"]
    );
    assert_eq!(
        b.objects[&(RefKind::Secret, "pg-secret".to_string())],
        Ok(None)
    );
    assert_eq!(b.endpoint_slices.len(), 1);
}

#[test]
fn what_could_not_be_listed_reaches_the_checks_that_need_it() {
    let refused = |what: &str| format!("failed to list {what}: forbidden");
    let listing = Listing {
        secrets: Err(refused("Secrets")),
        volumes: Err(refused("PersistentVolumes")),
        metrics: Err("no metrics API (metrics-server is not installed)".into()),
        events: Err(refused("events")),
        ..listing()
    };
    // The summary says what it could not read: its lines show only failed checks.
    assert_eq!(
        listing.not_read(),
        [
            refused("events"),
            refused("Secrets"),
            refused("PersistentVolumes")
        ]
    );
    let facts = listing.facts(&listing.databases()[0], Timestamp::UNIX_EPOCH);
    assert_eq!(
        facts.objects[&(RefKind::Secret, "pg-secret".to_string())],
        Err(refused("Secrets"))
    );
    assert_eq!(facts.volume_errors, [refused("PersistentVolumes")]);
    assert_eq!(facts.events, Err(refused("events")));
    assert!(facts.usage.unwrap_err().contains("metrics-server"));
    // No bound claim, no volume to read: the refusal does not matter to it.
    let unbound = Listing {
        claims: vec![],
        ..listing
    };
    let facts = unbound.facts(&unbound.databases()[0], Timestamp::UNIX_EPOCH);
    assert!(facts.volume_errors.is_empty());
}

#[test]
fn snapshots_are_judged_per_database_and_namespace() {
    let snapshot = |ns: &str, db: &str| SnapshotInfo {
        name: format!("{db}-snap"),
        namespace: ns.into(),
        pvc: format!("data-{db}-0"),
        ready: true,
        size: None,
        created: None,
        age_seconds: Some(60),
        database: Some(db.into()),
        engine: Some(Engine::Postgres),
        engine_version: None,
        consistency: None,
        managed: true,
        error: None,
    };
    let listing = Listing {
        snapshots: Ok(vec![snapshot("b", "pg"), snapshot("a", "other")]),
        ..listing()
    };
    let a = listing.snapshot_check("a", "pg");
    assert_eq!(
        (a.verdict, a.evidence.as_str()),
        (Verdict::Ok, "no snapshot of pg taken by kubectl dbbackup")
    );
    let b = listing.snapshot_check("b", "pg");
    assert!(
        b.evidence.starts_with("newest ready snapshot pg-snap"),
        "{}",
        b.evidence
    );
    let unreadable = Listing {
        snapshots: Err(snapshots::judge("", Err(crate::backup::snapshot::no_api()))),
        ..listing
    };
    assert_eq!(
        unreadable.snapshot_check("a", "pg").verdict,
        Verdict::Skipped
    );
}

#[test]
fn backup_checks_use_the_schedule_of_their_own_namespace() {
    use crate::render::cronjob::DATABASE_LABEL;
    let labels =
        |db: &str| json!({"app.kubernetes.io/managed-by": "kubectl-dbbackup", DATABASE_LABEL: db});
    let cron_job: CronJob = object(json!({
        "metadata": {"namespace": "b", "name": "pg-backup", "labels": labels("pg")},
        "spec": {"schedule": "30 2 * * *", "jobTemplate": {}}
    }));
    // b's last run failed; a has no schedule at all.
    let job: Job = object(json!({
        "metadata": {"namespace": "b", "name": "pg-backup-1", "labels": labels("pg"),
            "creationTimestamp": "2026-12-03T02:30:00Z"},
        "status": {"startTime": "2026-12-03T02:30:00Z", "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit"}]}
    }));
    let listing = Listing {
        schedules: Ok((vec![cron_job], vec![job])),
        ..listing()
    };
    let now: Timestamp = "2026-12-03T12:00:00Z".parse().unwrap();
    let day = Duration::from_secs(26 * 3600);
    let a = listing.backup_checks("a", "pg", day, now);
    assert!(a.iter().all(|c| c.verdict == Verdict::Skipped), "{a:?}");
    assert!(a[0].evidence.starts_with("no schedule"), "{a:?}");
    let b = listing.backup_checks("b", "pg", day, now);
    assert_eq!(b[0].name, "backup.schedule");
    assert_eq!(b[0].verdict, Verdict::Fail, "{b:?}");
    let unreadable = Listing {
        schedules: Err("failed to list CronJobs in b: forbidden".into()),
        ..listing
    };
    let c = unreadable.backup_checks("b", "pg", day, now);
    assert!(c[0].evidence.contains("forbidden"), "{c:?}");
    assert_eq!(c[0].verdict, Verdict::Skipped);
}
