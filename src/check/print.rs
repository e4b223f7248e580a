//! How `dbcheck`'s reports read on a terminal (`-o table`).

use std::fmt::Write;

use comfy_table::{ColumnConstraint, ContentArrangement, Table};

use super::{Check, CheckReport, LogTail, Logs, NamespaceReport, Summary, Verdict, verdict};
use crate::output::{self, Render, Width};

impl Render for CheckReport {
    /// Checks skipped for one shared reason take one row.
    fn render(&self, width: Width) -> String {
        self.text(width, true)
    }

    /// Every check on its own row.
    fn render_wide(&self, width: Width) -> String {
        self.text(width, false)
    }
}

impl CheckReport {
    /// The target, the verdict with its root cause, the table, the counts and the logs.
    fn text(&self, width: Width, collapse: bool) -> String {
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
        text.push_str(&headline(&self.checks, &self.summary, width));
        text.push('\n');
        text.push_str(&output::table_text(&checks_table(
            &self.checks,
            width,
            collapse,
        )));
        let s = &self.summary;
        let _ = writeln!(
            text,
            "{} ok, {} warn, {} fail, {} skipped in {:.1}s",
            s.ok, s.warn, s.fail, s.skipped, self.elapsed_seconds
        );
        if let Some(logs) = &self.logs {
            text.push_str(&render_logs(logs));
        }
        text
    }
}

/// The verdict and, when something is wrong, the check that explains the others: its
/// evidence's first line and its fix.
fn headline(checks: &[Check], summary: &Summary, width: Width) -> String {
    let Some(cause) = verdict::root_cause(checks) else {
        return match summary.verdict {
            Some(Verdict::Ok) if summary.skipped > 0 => format!(
                "OK: all {} checks that ran passed ({} skipped)\n",
                summary.ok, summary.skipped
            ),
            Some(Verdict::Ok) => format!("OK: all {} checks passed\n", summary.ok),
            _ => "SKIPPED: no check could run\n".to_string(),
        };
    };
    // The evidence in full is in the table: here its first line, cut to the width.
    let first = format!(
        "{}: {}: {}",
        verdict_word(Some(cause.verdict)),
        cause.name,
        cause.evidence.lines().next().unwrap_or_default()
    );
    let width = usize::from(width.0).max(40);
    let mut text = match first.char_indices().nth(width - 1) {
        Some((cut, _)) => format!("{}…\n", &first[..cut]),
        None => format!("{first}\n"),
    };
    // The fix is a command to copy: wrapped, never cut.
    if let Some(fix) = &cause.fix {
        for (i, line) in wrap(fix, width - 5).iter().enumerate() {
            let _ = writeln!(text, "{}{line}", if i == 0 { "fix: " } else { "     " });
        }
    }
    text
}

/// Words into lines of at most `width` characters (a longer word stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// One row of the table: a check, or the checks skipped for one reason.
enum Row<'a> {
    Check(&'a Check),
    Skipped {
        reason: &'a str,
        names: Vec<&'a str>,
    },
}

/// The rows in report order; with `collapse`, checks skipped for the same reason share
/// the row of the first of them.
fn rows(checks: &[Check], collapse: bool) -> Vec<Row<'_>> {
    let same_reason = |check: &Check| {
        checks
            .iter()
            .filter(|c| c.verdict == Verdict::Skipped && c.evidence == check.evidence)
            .count()
    };
    let mut rows = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    for check in checks {
        if !collapse || check.verdict != Verdict::Skipped || same_reason(check) < 2 {
            rows.push(Row::Check(check));
        } else if !done.contains(&check.evidence.as_str()) {
            done.push(&check.evidence);
            rows.push(Row::Skipped {
                reason: &check.evidence,
                names: checks
                    .iter()
                    .filter(|c| c.verdict == Verdict::Skipped && c.evidence == check.evidence)
                    .map(|c| c.name.as_str())
                    .collect(),
            });
        }
    }
    rows
}

/// kubectl's look: no borders, three spaces between columns, fitted to `width`; CHECK and
/// VERDICT never wrap, EVIDENCE and FIX wrap inside their own columns.
fn checks_table(checks: &[Check], width: Width, collapse: bool) -> Table {
    let mut table = Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(width.0)
        .set_header(["CHECK", "VERDICT", "EVIDENCE", "FIX"]);
    for row in rows(checks, collapse) {
        table.add_row(match row {
            Row::Check(check) => vec![
                check.name.clone(),
                check.verdict.to_string().to_uppercase(),
                check.evidence.clone(),
                check.fix.clone().unwrap_or_default(),
            ],
            Row::Skipped { reason, names } => vec![
                format!("{} checks", names.len()),
                "SKIPPED".into(),
                format!("{reason} ({})", names.join(", ")),
                String::new(),
            ],
        });
    }
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if i == 3 { 0 } else { 3 }));
        if i < 2 {
            column.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
    table
}

/// `--logs`: the current container's lines, then the previous one's, indented.
fn render_logs(logs: &Logs) -> String {
    let mut text = String::new();
    let mut part = |title: String, tail: &LogTail| {
        let _ = writeln!(text, "\n{title}:");
        if let Some(error) = &tail.error {
            let _ = writeln!(text, "  (could not read it: {error})");
        } else if tail.lines.is_empty() {
            let _ = writeln!(text, "  (empty)");
        }
        for line in &tail.lines {
            let _ = writeln!(text, "  {line}");
        }
    };
    let n = logs.tail_lines;
    part(
        format!("Log of container {} (last {n} lines)", logs.container),
        &logs.current,
    );
    if let Some(previous) = &logs.previous {
        part(
            format!(
                "Log of the previous container {} (last {n} lines)",
                logs.container
            ),
            previous,
        );
    }
    text
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
            logs: None,
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

    #[test]
    fn logs_of_the_current_and_previous_container() {
        let mut report = report(vec![Check::new("statefulset", Verdict::Ok, "1/1 ready")]);
        report.logs = Some(Logs {
            container: "mysql".into(),
            tail_lines: 2,
            current: LogTail {
                lines: vec![],
                error: Some("failed to read the log of pod orders-0: container is waiting".into()),
            },
            previous: Some(LogTail {
                lines: vec![
                    "[ERROR] unknown variable 'innodb_buffer_pool=1G'".into(),
                    "[ERROR] Aborting".into(),
                ],
                error: None,
            }),
        });
        insta::assert_snapshot!(report.render(Width(100)));
    }

    /// The report of a pod of the recorded broken namespace (src/check/testdata), as seen
    /// at a fixed time so the ages in the evidence do not move.
    fn recorded(pod: &str, previous_log: Option<&str>) -> CheckReport {
        let mut facts = crate::check::rules::tests::facts(pod, &[]);
        facts.now = "2026-11-25T13:10:00Z".parse().unwrap();
        facts.previous_logs = previous_log.map(str::to_string);
        let checks = crate::check::rules::diagnose(&facts);
        let mut report = report(checks);
        report.engine = Engine::Postgres;
        report.pod = pod.into();
        report.statefulset = pod.strip_suffix("-0").map(str::to_string);
        report.summary = Summary::of(&report.checks);
        report
    }

    #[test]
    fn a_pending_claim_is_the_root_cause_and_the_skipped_checks_share_a_row() {
        let report = recorded("noclass-0", None);
        insta::assert_snapshot!("noclass", report.render(Width(120)));
        insta::assert_snapshot!("noclass_wide", report.render_wide(Width(120)));
    }

    #[test]
    fn a_crash_loop_is_the_root_cause_with_the_fix_from_its_log() {
        let log = "LOG:  invalid value for parameter \"shared_buffers\": \"notanumber\"\nFATAL:  configuration file \"/etc/postgresql/kubectl-db/postgresql.conf\" contains errors";
        let report = recorded("badconf-0", Some(log));
        insta::assert_snapshot!("badconf", report.render(Width(100)));
    }

    #[test]
    fn a_narrow_terminal_wraps_evidence_and_fix_in_their_columns_only() {
        let report = recorded("nopull-0", None);
        let text = report.render(Width(80));
        assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
        insta::assert_snapshot!("nopull_80", text);
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
