//! `kubectl dbcheck`: a health report and diagnosis of one database, or a one-line summary
//! of every database in a namespace. Collect (concurrent API reads and in-pod commands, each
//! with its own timeout), decide (pure rules in [`rules`] and [`inside`]), report.

mod collect;
pub mod inside;
pub mod podspec;
pub mod rules;
pub mod services;
pub mod storage;

use std::time::{Duration, Instant};

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

pub use collect::collect;
pub use rules::Facts;

/// How a check came out. Ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Fine.
    Ok,
    /// Could not be run (e.g. the pod is not running); the evidence says why.
    Skipped,
    /// Works, but something deserves attention.
    Warn,
    /// Broken; the fix says what to do.
    Fail,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::Skipped => "skipped",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        })
    }
}

/// One diagnosis: what was checked, the verdict, what was seen, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable identifier, e.g. `pvc.bound` (listed in docs/dbcheck.md).
    pub name: String,
    pub verdict: Verdict,
    /// What the check saw (may span lines, e.g. log lines).
    pub evidence: String,
    /// What to do, when there is something to do.
    pub fix: Option<String>,
}

impl Check {
    /// A check with no fix.
    pub fn new(name: &str, verdict: Verdict, evidence: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            verdict,
            evidence: evidence.into(),
            fix: None,
        }
    }

    /// Adds the fix.
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// Counts of verdicts and the worst one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub verdict: Option<Verdict>,
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
    pub skipped: usize,
}

impl Summary {
    /// Counts the verdicts of `checks`.
    pub fn of(checks: &[Check]) -> Self {
        let mut summary = Summary::default();
        for check in checks {
            match check.verdict {
                Verdict::Ok => summary.ok += 1,
                Verdict::Warn => summary.warn += 1,
                Verdict::Fail => summary.fail += 1,
                Verdict::Skipped => summary.skipped += 1,
            }
        }
        summary.verdict = checks
            .iter()
            .map(|c| c.verdict)
            .filter(|v| *v != Verdict::Skipped)
            .max()
            .or(checks.first().map(|_| Verdict::Skipped));
        summary
    }
}

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

/// Knobs of a check run.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Budget of each command run in the pod.
    pub exec_timeout: Duration,
    /// Budget of each API read.
    pub api_timeout: Duration,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            exec_timeout: Duration::from_secs(10),
            api_timeout: Duration::from_secs(30),
        }
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
    let facts = collect(kube, &target, options).await?;
    let checks = rules::diagnose(&facts);
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
        .filter(|sts| {
            let template = sts.spec.as_ref().map(|s| &s.template);
            let labels = template
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            let containers = template
                .and_then(|t| t.spec.as_ref())
                .map(|s| s.containers.clone())
                .unwrap_or_default();
            target::engine_of(&labels, &containers).is_some()
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_the_worst_verdict_and_ignores_skipped() {
        let checks = vec![
            Check::new("a", Verdict::Ok, ""),
            Check::new("b", Verdict::Skipped, ""),
            Check::new("c", Verdict::Warn, ""),
        ];
        let summary = Summary::of(&checks);
        assert_eq!(summary.verdict, Some(Verdict::Warn));
        assert_eq!(
            (summary.ok, summary.warn, summary.fail, summary.skipped),
            (1, 1, 0, 1)
        );
        assert_eq!(Summary::of(&checks[1..2]).verdict, Some(Verdict::Skipped));
    }
}
