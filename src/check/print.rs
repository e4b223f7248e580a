//! How `dbcheck`'s reports read on a terminal (`-o table`).

use std::fmt::Write;

use super::{CheckReport, NamespaceReport, Verdict};
use crate::output::{self, Render, Width};

impl Render for CheckReport {
    fn render(&self, width: Width) -> String {
        let mut text = format!(
            "{} {} in namespace {}{}\n",
            self.engine,
            self.pod,
            self.namespace,
            self.statefulset
                .as_ref()
                .map(|s| format!(" (StatefulSet {s})"))
                .unwrap_or_default()
        );
        let mut table = output::boxed_table(&["check", "verdict", "evidence", "fix"], width);
        for check in &self.checks {
            table.add_row(vec![
                check.name.clone(),
                check.verdict.to_string().to_uppercase(),
                check.evidence.clone(),
                check.fix.clone().unwrap_or_default(),
            ]);
        }
        text.push_str(&output::table_text(&table));
        let s = &self.summary;
        let _ = writeln!(
            text,
            "{}: {} ok, {} warn, {} fail, {} skipped in {:.1}s",
            verdict_word(s.verdict),
            s.ok,
            s.warn,
            s.fail,
            s.skipped,
            self.elapsed_seconds
        );
        text
    }
}

/// One line per database; nothing when none was found (the binary says so on stderr).
impl Render for NamespaceReport {
    fn render(&self, _width: Width) -> String {
        if self.databases.is_empty() {
            return String::new();
        }
        let mut table = output::table(&[
            "namespace",
            "name",
            "engine",
            "verdict",
            "ok",
            "warn",
            "fail",
            "problem",
        ]);
        for db in &self.databases {
            table.add_row(vec![
                db.namespace.clone(),
                db.name.clone(),
                db.engine.to_string(),
                verdict_word(db.verdict).to_string(),
                db.summary.ok.to_string(),
                db.summary.warn.to_string(),
                db.summary.fail.to_string(),
                db.problems.first().cloned().unwrap_or_default(),
            ]);
        }
        let mut text = output::table_text(&table);
        for reason in &self.not_read {
            let _ = writeln!(text, "not checked: {reason}");
        }
        text
    }
}

impl NamespaceReport {
    /// What to tell the user when no database was found (`None` when some were).
    pub fn nothing_found(&self) -> Option<String> {
        self.databases.is_empty().then(|| {
            format!(
                "no databases found{}",
                self.namespace
                    .as_ref()
                    .map(|n| format!(" in namespace {n}"))
                    .unwrap_or_default()
            )
        })
    }
}

fn verdict_word(verdict: Option<Verdict>) -> &'static str {
    match verdict {
        Some(Verdict::Fail) => "FAIL",
        Some(Verdict::Warn) => "WARN",
        Some(Verdict::Ok) => "OK",
        Some(Verdict::Skipped) | None => "SKIPPED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Check, DatabaseSummary, Summary};
    use crate::engine::Engine;

    fn report(checks: Vec<Check>) -> CheckReport {
        CheckReport {
            target: "orders".into(),
            namespace: "shop".into(),
            pod: "orders-0".into(),
            statefulset: Some("orders".into()),
            engine: Engine::Mysql,
            summary: Summary::of(&checks),
            checks,
            elapsed_seconds: 1.234,
        }
    }

    #[test]
    fn healthy_database() {
        let report = report(vec![
            Check::new("statefulset", Verdict::Ok, "1/1 ready"),
            Check::new(
                "pvc.bound",
                Verdict::Ok,
                "data-orders-0 Bound (10Gi, standard)",
            ),
            Check::new("server.version", Verdict::Ok, "MySQL 8.0.40"),
        ]);
        insta::assert_snapshot!(report.render(Width(100)));
    }

    #[test]
    fn failing_database_wraps_evidence_and_fix_to_the_width() {
        let report = report(vec![
            Check::new(
                "pvc.bound",
                Verdict::Fail,
                "data-orders-0 Pending: storageclass.storage.k8s.io \"fast\" not found\nevent ProvisioningFailed x4",
            )
            .fix("create the StorageClass fast, or redeploy with --storage-class set to one that exists (kubectl get storageclass)"),
            Check::new("pod.ready", Verdict::Skipped, "the pod is Pending"),
            Check::new("server.connections", Verdict::Warn, "148 of 151 connections in use")
                .fix("raise max_connections (kubectl dbdeploy mysql --set max_connections=500)"),
        ]);
        insta::assert_snapshot!(report.render(Width(80)));
    }

    fn line(name: &str, verdict: Verdict, problems: &[&str]) -> DatabaseSummary {
        let checks = vec![Check::new("x", verdict, "")];
        DatabaseSummary {
            namespace: "shop".into(),
            name: name.into(),
            pod: format!("{name}-0"),
            engine: Engine::Postgres,
            verdict: Some(verdict),
            summary: Summary::of(&checks),
            problems: problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn namespace_with_a_healthy_and_a_failing_database() {
        let report = NamespaceReport {
            not_read: vec![],
            namespace: Some("shop".into()),
            databases: vec![
                line("orders", Verdict::Ok, &[]),
                line(
                    "users",
                    Verdict::Fail,
                    &["pvc.bound: data-users-0 Pending", "pod.ready: not ready"],
                ),
            ],
            elapsed_seconds: 2.5,
        };
        insta::assert_snapshot!(report.render(Width(100)));
        assert_eq!(report.nothing_found(), None);
    }

    #[test]
    fn namespace_without_databases_prints_nothing_on_stdout() {
        let report = NamespaceReport {
            not_read: vec![],
            namespace: Some("shop".into()),
            databases: vec![],
            elapsed_seconds: 0.1,
        };
        assert_eq!(report.render(Width(100)), "");
        assert_eq!(
            report.nothing_found().as_deref(),
            Some("no databases found in namespace shop")
        );
    }
}
