//! The API cost of the commands that must not grow with the fleet: a namespace summary of
//! `kubectl dbcheck` sends the same requests (execs aside) for one database and for eight,
//! counted by the client's own request log (src/client.rs).

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::TestNamespace;
use kube::api::PostParams;
use kubectl_db::check::{self, CheckOptions};
use kubectl_db::cli::GlobalArgs;
use kubectl_db::output::Progress;
use serde_json::json;

/// A StatefulSet dbcheck takes for PostgreSQL (the image says so) that runs no server, only
/// `sleep`: eight of them fit on the 2-core test node where eight servers would not.
async fn sleeping_database(ns: &TestNamespace, name: &str) {
    let labels = json!({"app": name});
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {"serviceName": name, "replicas": 1, "selector": {"matchLabels": labels},
          "template": {"metadata": {"labels": labels}, "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "postgres", "image": common::postgres_image(),
              "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"],
              "ports": [{"containerPort": 5432}],
              "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}}]}}}});
    ns.api_for("StatefulSet")
        .create(
            &PostParams::default(),
            &serde_json::from_value(sts).unwrap(),
        )
        .await
        .unwrap();
}

/// The namespace summary with a fresh client: the report and the requests it sent.
async fn summary(ns: &TestNamespace) -> (check::NamespaceReport, BTreeMap<(String, String), u64>) {
    let global = GlobalArgs {
        kubeconfig: Some(ns.kubeconfig.display().to_string()),
        namespace: Some(ns.name.clone()),
        ..Default::default()
    };
    let kube = kubectl_db::client::connect(&global).await.unwrap();
    let report = check::check_all(&kube, false, None, &CheckOptions::default())
        .await
        .unwrap();
    (report, kube.requests.counts())
}

fn split_execs(counts: BTreeMap<(String, String), u64>) -> (BTreeMap<(String, String), u64>, u64) {
    let execs = counts
        .iter()
        .filter(|((verb, _), _)| verb == "exec")
        .map(|(_, n)| n)
        .sum();
    let rest = counts
        .into_iter()
        .filter(|((verb, _), _)| verb != "exec")
        .collect();
    (rest, execs)
}

async fn ready(ns: &TestNamespace, names: &[String]) {
    for name in names {
        kubectl_db::wait::statefulset_ready(
            &ns.kube,
            name,
            Duration::from_secs(180),
            &Progress::spinner(false),
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_summary_costs_the_same_requests_for_one_or_eight_databases() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "perf-check", &[]).await;
    let names: Vec<String> = (0..8).map(|i| format!("db{i}")).collect();
    sleeping_database(&ns, &names[0]).await;
    ready(&ns, &names[..1]).await;
    let (one, one_requests) = summary(&ns).await;

    for name in &names[1..] {
        sleeping_database(&ns, name).await;
    }
    ready(&ns, &names).await;
    let (eight, eight_requests) = summary(&ns).await;

    // Each database is reported, and reported for what it is: a PostgreSQL container with
    // no server in it.
    for (report, count) in [(&one, 1), (&eight, 8)] {
        let lines: Vec<(&str, &str)> = report
            .databases
            .iter()
            .map(|d| (d.name.as_str(), d.pod.as_str()))
            .collect();
        assert_eq!(lines.len(), count, "{report:?}");
        for (line, name) in report.databases.iter().zip(&names) {
            assert_eq!(
                (line.name.as_str(), line.pod.clone()),
                (name.as_str(), format!("{name}-0"))
            );
            assert_eq!(line.engine, kubectl_db::engine::Engine::Postgres);
            assert_eq!(line.verdict, Some(check::Verdict::Fail), "{line:?}");
            assert!(
                line.problems.iter().any(|p| p.starts_with("db.server")),
                "{line:?}"
            );
        }
    }
    let (one_lists, one_execs) = split_execs(one_requests);
    let (eight_lists, eight_execs) = split_execs(eight_requests);
    eprintln!(
        "1 database: {one_lists:?} + {one_execs} execs, {:.2}s",
        one.elapsed_seconds
    );
    eprintln!(
        "8 databases: {eight_lists:?} + {eight_execs} execs, {:.2}s",
        eight.elapsed_seconds
    );
    assert_eq!(one_lists, eight_lists, "requests other than exec differ");
    // The in-container checks of a database run in one exec (src/check/combined.rs); none
    // of these parts needs its own (they end, failing, at once: no server listens).
    assert_eq!(one_execs, 1, "execs for one database");
    assert_eq!(eight_execs, 8 * one_execs);
    assert!(
        one_lists
            .keys()
            .all(|(verb, _)| verb == "list" || verb == "discover"),
        "{one_lists:?}"
    );
}
