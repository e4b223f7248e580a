//! `kubectl dbcheck`: a health report and diagnosis of one database, or a one-line summary
//! of every database in a namespace. Collect (concurrent API reads and in-pod commands, each
//! with its own timeout), decide (pure rules in [`rules`] and [`inside`]), report.

pub mod backups;
mod collect;
pub mod facts;
pub mod inside;
pub mod podspec;
mod print;
pub mod rules;
pub mod services;
pub mod snapshots;
pub mod storage;
pub mod verdict;

use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde::Serialize;

use crate::client::Kube;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::target;
pub(crate) use crate::wait::within;
pub use collect::{CheckOptions, collect};
pub use facts::Facts;
pub use verdict::{Check, Summary, Verdict};

/// The report of one database: the `-o json` schema (docs/dbcheck.md).
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// What the user named.
    pub target: String,
    pub namespace: String,
    pub pod: String,
    pub statefulset: Option<String>,
    pub engine: Engine,
    pub checks: Vec<Check>,
    pub summary: Summary,
    pub elapsed_seconds: f64,
}

impl CheckReport {
    /// True when no check failed.
    pub fn healthy(&self) -> bool {
        self.summary.fail == 0
    }
}

/// Checks one database named by a pod or StatefulSet name.
pub async fn check(kube: &Kube, name: &str, options: &CheckOptions) -> Result<CheckReport> {
    let started = Instant::now();
    let target = within(
        options.api_timeout,
        format!("the API server to return pod or StatefulSet {name}"),
        target::resolve(kube, name),
    )
    .await?;
    let database = target
        .statefulset
        .as_ref()
        .map_or(target.pod_name.clone(), |s| s.name_any());
    let (facts, snapshot, backups) = tokio::join!(
        collect(kube, &target, options),
        snapshots::newest(kube, &database, options.api_timeout),
        backups::check(kube, &database, options.backup_max_age, options.api_timeout)
    );
    let mut checks = rules::diagnose(&facts?);
    checks.push(snapshot);
    checks.extend(backups);
    Ok(CheckReport {
        target: name.to_string(),
        namespace: target.namespace.clone(),
        pod: target.pod_name.clone(),
        statefulset: target.statefulset.as_ref().map(|s| s.name_any()),
        engine: target.engine,
        summary: Summary::of(&checks),
        checks,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    })
}

/// One line of the namespace-wide report.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseSummary {
    pub namespace: String,
    pub name: String,
    pub pod: String,
    pub engine: Engine,
    pub verdict: Option<Verdict>,
    pub summary: Summary,
    /// `name: evidence` of each failed, then warned, check.
    pub problems: Vec<String>,
}

/// The report of every database in a namespace (or all): the `-o json` schema without a target.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceReport {
    /// The namespace, or `null` with `-A`.
    pub namespace: Option<String>,
    pub databases: Vec<DatabaseSummary>,
    pub elapsed_seconds: f64,
}

impl NamespaceReport {
    /// True when no database has a failed check.
    pub fn healthy(&self) -> bool {
        self.databases.iter().all(|d| d.summary.fail == 0)
    }
}

/// Checks every StatefulSet that runs a database (dbdeploy's or hand-made), four at a time.
pub async fn check_all(
    kube: &Kube,
    all_namespaces: bool,
    options: &CheckOptions,
) -> Result<NamespaceReport> {
    let started = Instant::now();
    let api: Api<StatefulSet> = if all_namespaces {
        kube.api_all()
    } else {
        kube.api()
    };
    let list = within(
        options.api_timeout,
        "the API server to return StatefulSets",
        async {
            api.list(&ListParams::default())
                .await
                .map_err(Error::api("list StatefulSets"))
        },
    )
    .await?;
    let databases: Vec<(String, String)> = list
        .items
        .iter()
        .filter(|sts| target::statefulset_engine(sts).is_some())
        .map(|sts| {
            (
                sts.namespace().unwrap_or_else(|| kube.namespace.clone()),
                sts.name_any(),
            )
        })
        .collect();
    let mut lines: Vec<DatabaseSummary> = futures::stream::iter(databases)
        .map(|(namespace, name)| async move {
            let scoped = kube.in_namespace(namespace);
            check(&scoped, &name, options)
                .await
                .map(|report| summarize(&name, report))
        })
        .buffer_unordered(4)
        .try_collect()
        .await?;
    lines.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(NamespaceReport {
        namespace: (!all_namespaces).then(|| kube.namespace.clone()),
        databases: lines,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    })
}

fn summarize(name: &str, report: CheckReport) -> DatabaseSummary {
    // Checks that only echo another one's cause (a pod not ready, hence no endpoints) go
    // after the checks that name the cause, so the one-line summary shows the cause.
    const CONSEQUENCES: &[&str] = &["statefulset", "pod.ready", "service.endpoints", "events"];
    let mut problems: Vec<&Check> = report
        .checks
        .iter()
        .filter(|c| c.verdict >= Verdict::Warn)
        .collect();
    problems.sort_by_key(|c| {
        (
            std::cmp::Reverse(c.verdict),
            CONSEQUENCES.contains(&c.name.as_str()),
        )
    });
    DatabaseSummary {
        namespace: report.namespace.clone(),
        name: name.to_string(),
        pod: report.pod.clone(),
        engine: report.engine,
        verdict: report.summary.verdict,
        problems: problems
            .iter()
            .map(|c| {
                format!(
                    "{}: {}",
                    c.name,
                    c.evidence.lines().next().unwrap_or_default()
                )
            })
            .collect(),
        summary: report.summary,
    }
}
