//! How a drill's report reads on a terminal (`-o table`): one row per table, PASS/FAIL.

use std::fmt::Write;

use super::drill::{DrillReport, TableResult, Verdict};
use crate::output::{self, Render, Width};

/// Checksums are shown to this many characters in the table (in full in `-o json`).
const SHORT: usize = 12;

impl Render for DrillReport {
    fn render(&self, _width: Width) -> String {
        let passed = self
            .tables
            .iter()
            .filter(|t| t.result == Verdict::Pass)
            .count();
        // A dump of databases without tables proves only that it restores: say so.
        let matched = match self.tables.len() {
            0 => "the dump holds no tables to compare".to_string(),
            all => format!("{passed} of {all} tables match"),
        };
        let mut text = format!(
            "drill of {}: {} ({matched})\n  dumped from {} at {}; restored into {}/{} ({}{})\n",
            self.file,
            if self.passed { "PASS" } else { "FAIL" },
            self.source,
            self.dumped_at,
            self.namespace,
            self.instance,
            self.image,
            self.server_version
                .as_deref()
                .map(|v| format!(", {}", short_version(v)))
                .unwrap_or_default(),
        );
        if !self.tables.is_empty() {
            let mut table = output::table(&[
                "database",
                "table",
                "result",
                "rows expected",
                "rows found",
                "checksum expected",
                "checksum found",
            ]);
            for t in &self.tables {
                table.add_row(row(t));
            }
            text.push_str(&output::table_text(&table));
        }
        for db in &self.missing_databases {
            let db = output::shown(db);
            let _ = writeln!(text, "FAIL: database {db} is not in the restore");
        }
        let _ = writeln!(
            text,
            "  deploy {:.1}s, restore {:.1}s, compare {:.1}s, total {:.1}s",
            self.deploy_seconds, self.restore_seconds, self.compare_seconds, self.total_seconds
        );
        if !self.deleted.is_empty() {
            let _ = writeln!(text, "  deleted {}", self.deleted.join(", "));
        }
        text
    }
}

fn row(t: &TableResult) -> Vec<String> {
    let result = match t.result {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Changed => "CHANGED",
    };
    let expected_rows = match &t.expected_after_dump {
        Some(after) => format!("{} or {}", t.expected_rows, after.rows),
        None => t.expected_rows.to_string(),
    };
    let expected_checksum = match &t.expected_after_dump {
        Some(after) => format!(
            "{} or {}",
            short(&t.expected_checksum),
            short(&after.checksum)
        ),
        None => short(&t.expected_checksum),
    };
    vec![
        output::shown(&t.database).into(),
        output::shown(&t.table).into(),
        result.into(),
        expected_rows,
        t.found_rows
            .map(|r| r.to_string())
            .unwrap_or_else(|| "missing".into()),
        expected_checksum,
        t.found_checksum.as_deref().map(short).unwrap_or_default(),
    ]
}

fn short(checksum: &str) -> String {
    match checksum {
        "" => "(none)".into(),
        c => c.chars().take(SHORT).collect(),
    }
}

/// `PostgreSQL 15.8 on x86_64...` -> `PostgreSQL 15.8`; MariaDB's `10.11.6-MariaDB-...` whole.
fn short_version(version: &str) -> &str {
    version.split(" on ").next().unwrap_or(version).trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::DumpKind;
    use crate::backup::manifest::Counted;
    use crate::engine::Engine;

    fn result(table: &str, verdict: Verdict, expected: u64, found: Option<u64>) -> TableResult {
        TableResult {
            database: "appdb".into(),
            table: table.into(),
            result: verdict,
            expected_rows: expected,
            expected_checksum: "5d41402abc4b2a76b9719d911017c592".into(),
            expected_after_dump: None,
            found_rows: found,
            found_checksum: found.map(|n| match n == expected {
                true => "5d41402abc4b2a76b9719d911017c592".into(),
                false => "7d793037a0760186574b0282f2f435e7".into(),
            }),
        }
    }

    fn report() -> DrillReport {
        DrillReport {
            file: "orders.sql.gz".into(),
            sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            engine: Engine::Postgres,
            kind: DumpKind::PostgresCluster,
            image: "postgres:15".into(),
            source: "shop/orders-0".into(),
            dumped_at: "2026-12-03T08:00:00Z".into(),
            namespace: "shop".into(),
            instance: "drill-postgres-x7k2p".into(),
            server_version: Some("PostgreSQL 15.8 on x86_64-pc-linux-musl, compiled by gcc".into()),
            tables: vec![
                result("public.items", Verdict::Pass, 3, Some(3)),
                result("public.orders", Verdict::Pass, 20_000, Some(20_000)),
            ],
            missing_databases: vec![],
            passed: true,
            deploy_seconds: 21.4,
            restore_seconds: 3.21,
            compare_seconds: 0.8,
            total_seconds: 29.9,
            deleted: vec![
                "StatefulSet/drill-postgres-x7k2p".into(),
                "Service/drill-postgres-x7k2p".into(),
                "PersistentVolumeClaim/data-drill-postgres-x7k2p-0".into(),
            ],
        }
    }

    #[test]
    fn drill_pass_and_fail() {
        insta::assert_snapshot!("drill_pass", report().render(Width(100)));
        let mut changed = result("public.log", Verdict::Changed, 5, Some(7));
        changed.expected_after_dump = Some(Counted {
            rows: 6,
            checksum: "e4da3b7fbbce2345d7772b0674a318d5".into(),
        });
        let failed = DrillReport {
            tables: vec![
                result("public.items", Verdict::Fail, 3, None),
                changed,
                result("public.orders", Verdict::Fail, 20_000, Some(19_990)),
            ],
            missing_databases: vec!["reports".into()],
            passed: false,
            ..report()
        };
        insta::assert_snapshot!("drill_fail", failed.render(Width(100)));
        // `-o json` is the report itself: evidence to keep.
        insta::assert_snapshot!("drill_json", output::to_json(&failed).unwrap());
    }
}
