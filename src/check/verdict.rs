//! The result of a rule: a named check with its verdict, evidence and fix, and the counts
//! of a report.

use serde::Serialize;

/// How a check came out. Ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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

/// Checks that only echo another one's cause (a pod not ready, hence no endpoints), and
/// `pod.scheduling`, which a PVC that cannot bind also fails: they explain less than the
/// checks that name a cause. Their rank: the later in this list, the less they explain.
pub const CONSEQUENCES: &[&[&str]] = &[
    &["pod.scheduling"],
    &["statefulset", "pod.ready", "service.endpoints", "events"],
];

/// How much less than a cause a check explains: 0 for a cause, then its tier.
fn consequence_rank(name: &str) -> usize {
    CONSEQUENCES
        .iter()
        .position(|tier| tier.contains(&name))
        .map_or(0, |tier| tier + 1)
}

/// The failed, then the warned checks; within each, the checks that name a cause come
/// before those that follow from one ([`CONSEQUENCES`]), otherwise in report order.
pub fn by_cause(checks: &[Check]) -> Vec<&Check> {
    let mut problems: Vec<&Check> = checks
        .iter()
        .filter(|c| c.verdict >= Verdict::Warn)
        .collect();
    problems.sort_by_key(|c| (std::cmp::Reverse(c.verdict), consequence_rank(&c.name)));
    problems
}

/// The check that explains the others: the first of [`by_cause`], `None` when nothing
/// failed or warned.
pub fn root_cause(checks: &[Check]) -> Option<&Check> {
    by_cause(checks).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_cause_is_the_worst_check_that_names_a_cause() {
        let checks = vec![
            Check::new("statefulset", Verdict::Fail, "0/1 ready"),
            Check::new("pod.scheduling", Verdict::Fail, "unbound immediate PVCs"),
            Check::new("security.context", Verdict::Warn, "may run as root"),
            Check::new("pod.ready", Verdict::Fail, "not ready"),
            Check::new("pvc.bound", Verdict::Fail, "Pending"),
            Check::new("db.server", Verdict::Skipped, "not running"),
        ];
        assert_eq!(
            root_cause(&checks).map(|c| c.name.as_str()),
            Some("pvc.bound")
        );
        let names: Vec<&str> = by_cause(&checks).iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "pvc.bound",
                "pod.scheduling",
                "statefulset",
                "pod.ready",
                "security.context"
            ]
        );
        assert_eq!(root_cause(&checks[5..]), None);
        // Unschedulable for CPU: the scheduler's check is the cause.
        assert_eq!(
            root_cause(&checks[..4]).map(|c| c.name.as_str()),
            Some("pod.scheduling")
        );
    }

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
