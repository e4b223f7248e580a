//! `kubectl dbcheck`: a health report and diagnosis of one database, or a one-line summary
//! of every database in a namespace. Collect (concurrent API reads and in-pod commands, each
//! with its own timeout), decide (pure rules in [`rules`] and [`inside`]), report.

pub mod backups;
mod collect;
mod combined;
pub mod facts;
pub mod inside;
pub mod listing;
pub mod podspec;
mod print;
pub mod rules;
pub mod services;
pub mod snapshots;
pub mod storage;
pub mod verdict;

use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use kube::ResourceExt;
use serde::Serialize;

use crate::client::Kube;
use crate::engine::Engine;
use crate::error::Result;
use crate::target::{self, Target};
pub(crate) use crate::wait::within;
pub use collect::{CheckOptions, LogTail, Logs, collect};
pub use facts::Facts;
pub use verdict::{Check, Summary, Verdict};

/// The report of one database: the `-o json` schema (docs/dbcheck.md).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CheckReport {
    /// What the user named.
    pub target: String,
    pub namespace: String,
    pub pod: String,
    pub statefulset: Option<String>,
    pub engine: Engine,
    pub checks: Vec<Check>,
    pub summary: Summary,
    /// The database container's recent log, with `--logs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<Logs>,
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
        target::resolve(kube, name, options.container.as_deref()),
    )
    .await?;
    let database = target
        .statefulset
        .as_ref()
        .map_or(target.pod_name.clone(), |s| s.name_any());
    let logs = async {
        match options.logs {
            Some(lines) => Some(collect::logs(kube, &target, lines, options.api_timeout).await),
            None => None,
        }
    };
    let (facts, snapshot, backups, logs) = tokio::join!(
        collect(kube, &target, options),
        snapshots::newest(kube, &database, options.api_timeout),
        backups::check(kube, &database, options.backup_max_age, options.api_timeout),
        logs
    );
    let mut checks = rules::diagnose(&facts?);
    checks.push(snapshot);
    checks.extend(backups);
    tracing::debug!("{}", kube.requests);
    Ok(report(name, &target, checks, logs, started))
}

fn report(
    name: &str,
    target: &Target,
    checks: Vec<Check>,
    logs: Option<Logs>,
    started: Instant,
) -> CheckReport {
    CheckReport {
        target: name.to_string(),
        namespace: target.namespace.clone(),
        pod: target.pod_name.clone(),
        statefulset: target.statefulset.as_ref().map(|s| s.name_any()),
        engine: target.engine,
        summary: Summary::of(&checks),
        checks,
        logs,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    }
}

/// One line of the namespace-wide report.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NamespaceReport {
    /// The namespace, or `null` with `-A`.
    pub namespace: Option<String>,
    pub databases: Vec<DatabaseSummary>,
    /// What could not be read for the checks (a refused list, with the API's reason).
    pub not_read: Vec<String>,
    pub elapsed_seconds: f64,
}

impl NamespaceReport {
    /// True when no database has a failed check.
    pub fn healthy(&self) -> bool {
        self.databases.iter().all(|d| d.summary.fail == 0)
    }
}

/// Databases whose in-pod commands run at once in a summary (each runs four or five).
const DATABASES_AT_ONCE: usize = 8;

/// Checks every StatefulSet that runs a database (dbdeploy's or hand-made): each kind of
/// object is listed once ([`listing::Listing`]), so the API requests are the same for one
/// database or fifty; only the in-pod commands grow with the databases. With `-l SELECTOR`,
/// the databases it matches ([`target::databases`]), each checked on its own.
pub async fn check_all(
    kube: &Kube,
    all_namespaces: bool,
    selector: Option<&str>,
    options: &CheckOptions,
) -> Result<NamespaceReport> {
    let started = Instant::now();
    let (mut lines, not_read) = match selector {
        None => {
            let listing = listing::Listing::read(kube, all_namespaces, options.api_timeout).await?;
            (
                summarize_listed(kube, &listing, options).await,
                listing.not_read(),
            )
        }
        Some(selector) => (
            summarize_selected(kube, all_namespaces, selector, options).await?,
            Vec::new(),
        ),
    };
    lines.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    tracing::debug!("{}", kube.requests);
    Ok(NamespaceReport {
        namespace: (!all_namespaces).then(|| kube.namespace.clone()),
        databases: lines,
        not_read,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The summary lines of every database in `listing`, from the lists plus each pod's own
/// commands.
async fn summarize_listed(
    kube: &Kube,
    listing: &listing::Listing,
    options: &CheckOptions,
) -> Vec<DatabaseSummary> {
    futures::stream::iter(listing.databases())
        .map(|target| async move {
            let started = Instant::now();
            let scoped = kube.in_namespace(target.namespace.clone());
            let mut facts = listing.facts(&target, k8s_openapi::jiff::Timestamp::now());
            let spec = collect::target_spec(&target);
            (facts.previous_logs, facts.inside) =
                collect::in_pod(&scoped, &target, spec.as_ref(), options).await;
            let name = target
                .statefulset
                .as_ref()
                .map_or(target.pod_name.clone(), |s| s.name_any());
            let mut checks = rules::diagnose(&facts);
            checks.push(listing.snapshot_check(&target.namespace, &name));
            checks.extend(listing.backup_checks(
                &target.namespace,
                &name,
                options.backup_max_age,
                k8s_openapi::jiff::Timestamp::now(),
            ));
            summarize(&name, report(&name, &target, checks, None, started))
        })
        .buffer_unordered(DATABASES_AT_ONCE)
        .collect()
        .await
}

/// The summary lines of the databases `selector` matches, each checked as `dbcheck TARGET`
/// would (a selector usually matches few, so the per-database reads cost little).
async fn summarize_selected(
    kube: &Kube,
    all_namespaces: bool,
    selector: &str,
    options: &CheckOptions,
) -> Result<Vec<DatabaseSummary>> {
    let databases = within(
        options.api_timeout,
        "the API server to return StatefulSets",
        target::databases(kube, all_namespaces, Some(selector)),
    )
    .await?;
    futures::stream::iter(databases)
        .map(|database| async move {
            let scoped = kube.in_namespace(database.namespace);
            check(&scoped, &database.target, options)
                .await
                .map(|report| summarize(&database.name, report))
        })
        .buffer_unordered(DATABASES_AT_ONCE)
        .try_collect()
        .await
}

fn summarize(name: &str, report: CheckReport) -> DatabaseSummary {
    // The cause first, so the one-line summary shows it (see verdict::by_cause).
    let problems = verdict::by_cause(&report.checks);
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
