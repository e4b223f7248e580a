//! How `dbbackup`'s reports read on a terminal (`-o table`).

use std::fmt::Write;

use indicatif::HumanBytes;

use super::manifest::Manifest;
use super::snapshot_list::{self, SnapshotInfo};
use super::{Compression, DumpReport, RestoreReport, SnapshotReport, VerifyReport};
use crate::output::{self, Render, Width};

/// With `-f -` stdout is the dump itself: the binary prints this on stderr.
impl Render for DumpReport {
    fn render(&self, _width: Width) -> String {
        let rate = (self.bytes_raw as f64 / self.duration_seconds.max(0.001)) as u64;
        let ended = match self.parallel {
            Some(_) => "every part: remote exit status 0, its trailer present".to_string(),
            None => format!(
                "remote {}, trailer {:?} present",
                self.remote_status,
                self.kind.trailer()
            ),
        };
        let mut text = format!(
            "dumped {}/{} ({}) to {}\n  {} SQL, {} written ({}) in {:.1}s ({}/s)\n  sha256 {}\n  {ended}\n",
            self.namespace,
            self.pod,
            self.engine,
            self.file,
            HumanBytes(self.bytes_raw),
            HumanBytes(self.bytes_written),
            self.compressed(),
            self.duration_seconds,
            HumanBytes(rate),
            self.sha256,
        );
        if let Some(checksum) = &self.checksum_file {
            let _ = writeln!(text, "  checksum file {checksum}");
        }
        if let Some(manifest) = &self.manifest_file {
            let _ = writeln!(text, "  manifest {manifest}");
        }
        if !self.changed_during_dump.is_empty() {
            let _ = writeln!(
                text,
                "  changed while the dump ran (a drill accepts their state before or after it): {}",
                self.changed_during_dump
                    .iter()
                    .map(|t| output::shown(t))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some(parallel) = self.parallel {
            let _ = writeln!(
                text,
                "  archive of {} parts, {parallel} streams at once:",
                self.parts.len()
            );
            for part in &self.parts {
                let _ = writeln!(
                    text,
                    "    {}  {}  {} SQL, {} written",
                    part.file,
                    part.database.as_deref().unwrap_or("(globals)"),
                    HumanBytes(part.bytes_raw),
                    HumanBytes(part.bytes)
                );
            }
        }
        if let Some(note) = &self.note {
            let _ = writeln!(text, "  note: {note}");
        }
        text
    }
}

impl DumpReport {
    /// The file's compression and where it was done.
    fn compressed(&self) -> String {
        match (self.compression, self.stream_compression) {
            (Compression::None, Compression::None) => "none".into(),
            (file, Compression::None) => format!("{file}, compressed here"),
            (file, stream) if file == stream => format!("{file}, compressed in the pod"),
            (file, stream) => format!("{file}; {stream} in the pod"),
        }
    }
}

impl Render for VerifyReport {
    fn render(&self, _width: Width) -> String {
        let archive = !self.parts.is_empty();
        let trailer = match (self.kind, self.complete) {
            (Some(_), true) if archive => "ok (in every part)".into(),
            (Some(_), false) if archive => "MISSING (see the parts)".into(),
            (Some(kind), true) => format!("ok ({:?})", kind.trailer()),
            (Some(kind), false) => format!("MISSING ({:?})", kind.trailer()),
            (None, _) => "unknown dump format".into(),
        };
        let mut text = format!(
            "{}: {} ({}, {} SQL)\n  checksum {}\n  trailer  {trailer}\n",
            self.file,
            if self.ok { "OK" } else { "BAD" },
            match archive {
                true => format!("tar of {} files", self.compression),
                false => format!("{} file", self.compression),
            },
            HumanBytes(self.bytes_raw),
            if self.checksum_ok { "ok" } else { "FAILED" },
        );
        if !self.parts.is_empty() {
            let _ = writeln!(text, "  archive of {} parts:", self.parts.len());
        }
        for part in &self.parts {
            let _ = writeln!(
                text,
                "    {}  {}  checksum {}, trailer {}",
                part.file,
                part.database.as_deref().unwrap_or("(globals)"),
                if part.checksum_ok { "ok" } else { "FAILED" },
                if part.complete { "ok" } else { "MISSING" }
            );
        }
        for problem in &self.problems {
            let _ = writeln!(text, "  problem: {problem}");
        }
        if let Some(manifest) = &self.manifest {
            text.push_str(&contents(manifest));
        }
        text
    }
}

/// What a dump holds, from its manifest (`verify --deep`).
fn contents(manifest: &Manifest) -> String {
    let tables = manifest.tables().count();
    let rows: u64 = manifest.tables().map(|(_, t)| t.rows).sum();
    let mut text = format!(
        "  manifest: {} databases, {tables} tables, {rows} rows; dumped from {}/{} ({}) at {}\n",
        manifest.databases.len(),
        manifest.namespace,
        manifest.pod,
        manifest.image.as_deref().unwrap_or("image unknown"),
        manifest.dumped_at
    );
    let mut table = output::table(&["database", "table", "rows"]);
    for db in &manifest.databases {
        if db.tables.is_empty() {
            table.add_row(vec![
                output::shown(&db.name).into_owned(),
                "-".into(),
                "-".into(),
            ]);
        }
        for t in &db.tables {
            let rows = match &t.after_dump {
                Some(after) => format!("{} ({} after the dump)", t.rows, after.rows),
                None => t.rows.to_string(),
            };
            table.add_row(vec![
                output::shown(&db.name).into_owned(),
                output::shown(&t.name).into_owned(),
                rows,
            ]);
        }
    }
    text.push_str(&output::table_text(&table));
    text
}

impl Render for RestoreReport {
    fn render(&self, _width: Width) -> String {
        let mut text = format!(
            "restored {} into {}/{} ({})\n  {} sent in {:.1}s; remote {}\n",
            self.file,
            self.namespace,
            self.pod,
            self.engine,
            match self.stream_compression {
                Compression::None => format!("{} SQL", HumanBytes(self.bytes_sent)),
                wire => format!("{} of {wire}-compressed SQL", HumanBytes(self.bytes_sent)),
            },
            self.duration_seconds,
            self.remote_status
        );
        if !self.databases_with_data.is_empty() {
            let _ = writeln!(
                text,
                "  databases that held data before: {}",
                self.databases_with_data.join(", ")
            );
        }
        if let Some(parallel) = self.parallel {
            let _ = writeln!(
                text,
                "  an archive: the globals first, then the databases, {parallel} at once"
            );
        }
        text
    }
}

impl Render for SnapshotReport {
    fn render(&self, _width: Width) -> String {
        let mut table = output::table(&["snapshot", "pvc", "ready", "size"]);
        for s in &self.snapshots {
            table.add_row(vec![
                s.name.clone(),
                s.pvc.clone(),
                s.ready.to_string(),
                s.restore_size.clone().unwrap_or_default(),
            ]);
        }
        format!(
            "{}\n{}\n",
            output::table_text(&table).trim_end(),
            consistency_line(self)
        )
    }
}

/// How the snapshot was made consistent, in one line.
fn consistency_line(report: &SnapshotReport) -> String {
    let what = format!("{} {}", report.engine.product(), report.engine_version);
    match &report.quiesce {
        None => format!("{what}: crash-consistent (not quiesced); the server recovers it on start"),
        Some(q) if q.writes_paused => format!(
            "{what}: application-consistent, writes paused {:.2}s ({}; quiesce took {:.2}s)",
            q.held_seconds, q.method, q.quiesce_seconds
        ),
        Some(q) => format!(
            "{what}: application-consistent, {} held {:.2}s, writes not paused (quiesce took {:.2}s)",
            q.method, q.held_seconds, q.quiesce_seconds
        ),
    }
}

impl Render for Vec<SnapshotInfo> {
    fn render(&self, _width: Width) -> String {
        let mut table = output::table(&["name", "pvc", "ready", "size", "age", "consistent"]);
        for s in self {
            table.add_row(vec![
                s.name.clone(),
                s.pvc.clone(),
                s.ready.to_string(),
                s.size.clone().unwrap_or_default(),
                s.age_seconds.map(snapshot_list::age).unwrap_or_default(),
                s.consistency.clone().unwrap_or_else(|| "unknown".into()),
            ]);
        }
        output::table_text(&table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::quiesce::QuiesceReport;
    use crate::backup::snapshot::TakenSnapshot;
    use crate::backup::{Compression, DumpKind};
    use crate::engine::Engine;
    use crate::exec::ExecStatus;

    const WIDTH: Width = Width(100);

    fn dump() -> DumpReport {
        DumpReport {
            file: "orders-20261203T080000Z.sql.gz".into(),
            checksum_file: Some("orders-20261203T080000Z.sql.gz.sha256".into()),
            namespace: "shop".into(),
            pod: "orders-0".into(),
            engine: Engine::Postgres,
            database: None,
            kind: DumpKind::PostgresCluster,
            compression: Compression::Gzip,
            compressed_in_pod: true,
            stream_compression: Compression::Zstd,
            bytes_raw: 52_428_800,
            bytes_written: 7_340_032,
            sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            duration_seconds: 4.0,
            remote_status: ExecStatus::Success,
            manifest_file: Some("orders-20261203T080000Z.sql.gz.manifest.json".into()),
            changed_during_dump: vec!["appdb.public.orders".into()],
            parallel: None,
            parts: vec![],
            note: None,
        }
    }

    fn part(place: usize, database: Option<&str>) -> crate::backup::archive::Part {
        crate::backup::archive::Part {
            file: crate::backup::archive::part_file_name(place, database, Compression::Gzip),
            database: database.map(String::from),
            kind: match database {
                None => DumpKind::PostgresCluster,
                Some(_) => DumpKind::PostgresDatabase,
            },
            bytes: 1_000 * (place as u64 + 1),
            bytes_raw: 10_000 * (place as u64 + 1),
            sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn a_parallel_dump_its_check_and_its_restore() {
        let dumped = DumpReport {
            file: "orders-20261203T080000Z.tar".into(),
            checksum_file: Some("orders-20261203T080000Z.tar.sha256".into()),
            manifest_file: Some("orders-20261203T080000Z.tar.manifest.json".into()),
            changed_during_dump: vec![],
            parallel: Some(2),
            parts: vec![
                part(0, None),
                part(1, Some("appdb")),
                part(2, Some("reports")),
            ],
            ..dump()
        };
        insta::assert_snapshot!("dump_parallel", dumped.render(WIDTH));
        let fell_back = DumpReport {
            note: Some("--parallel 4: 1 user database, so one stream: the serial dump".into()),
            changed_during_dump: vec![],
            ..dump()
        };
        assert!(
            fell_back.render(WIDTH).ends_with(
                "  note: --parallel 4: 1 user database, so one stream: the serial dump\n"
            )
        );
        let checked =
            |place: usize, database: Option<&str>, ok: bool| crate::backup::archive::PartCheck {
                file: part(place, database).file,
                database: database.map(String::from),
                kind: Some(part(place, database).kind),
                bytes: 1_000,
                bytes_raw: 10_000,
                sha256: "ab".repeat(32),
                checksum_ok: ok,
                complete: true,
            };
        let verified = VerifyReport {
            file: "orders-20261203T080000Z.tar".into(),
            parts: vec![
                checked(0, None, true),
                checked(1, Some("appdb"), true),
                checked(2, Some("reports"), false),
            ],
            problems: vec![
                "002-reports.sql.gz: checksum mismatch: the part has 00, the index says ab".into(),
            ],
            ok: false,
            ..verified()
        };
        insta::assert_snapshot!("verify_parallel", verified.render(WIDTH));
        let restored = RestoreReport {
            file: "orders-20261203T080000Z.tar".into(),
            namespace: "shop".into(),
            pod: "orders-0".into(),
            engine: Engine::Postgres,
            kind: DumpKind::PostgresCluster,
            databases_with_data: vec![],
            bytes_sent: 30_000,
            stream_compression: Compression::None,
            duration_seconds: 1.5,
            remote_status: ExecStatus::Success,
            parallel: Some(2),
        };
        assert!(
            restored
                .render(WIDTH)
                .ends_with("  an archive: the globals first, then the databases, 2 at once\n")
        );
    }

    #[test]
    fn dump_to_a_file_and_to_stdout() {
        insta::assert_snapshot!("dump_to_file", dump().render(WIDTH));
        let to_stdout = DumpReport {
            file: "-".into(),
            checksum_file: None,
            engine: Engine::Mariadb,
            database: Some("appdb".into()),
            kind: DumpKind::Mysql,
            compression: Compression::Zstd,
            duration_seconds: 0.0,
            manifest_file: None,
            changed_during_dump: vec![],
            ..dump()
        };
        insta::assert_snapshot!("dump_to_stdout", to_stdout.render(WIDTH));
    }

    #[test]
    fn a_dump_says_where_it_was_compressed() {
        let said = |compression, stream_compression| {
            DumpReport {
                compression,
                stream_compression,
                ..dump()
            }
            .compressed()
        };
        use Compression::{Gzip, None, Zstd};
        assert_eq!(said(Gzip, Zstd), "gzip; zstd in the pod");
        assert_eq!(said(None, Gzip), "none; gzip in the pod");
        assert_eq!(said(Zstd, Zstd), "zstd, compressed in the pod");
        assert_eq!(said(Gzip, None), "gzip, compressed here");
        assert_eq!(said(None, None), "none");
    }

    fn verified() -> VerifyReport {
        VerifyReport {
            file: "orders.sql.gz".into(),
            compression: Compression::Gzip,
            bytes: 7_340_032,
            bytes_raw: 52_428_800,
            sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            expected_sha256: Some(
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            ),
            checksum_ok: true,
            kind: Some(DumpKind::PostgresCluster),
            complete: true,
            problems: vec![],
            ok: true,
            parts: vec![],
            manifest: None,
        }
    }

    #[test]
    fn verify_ok_and_bad() {
        insta::assert_snapshot!("verify_ok", verified().render(WIDTH));
        let bad = VerifyReport {
            expected_sha256: Some("0000".into()),
            checksum_ok: false,
            complete: false,
            problems: vec![
                "checksum mismatch: orders.sql.gz.sha256 records 0000".into(),
                "no completion trailer: the dump was cut off".into(),
            ],
            ok: false,
            ..verified()
        };
        insta::assert_snapshot!("verify_bad", bad.render(WIDTH));
        let unknown = VerifyReport { kind: None, ..bad };
        let deep = VerifyReport {
            manifest: Some(crate::backup::drill::tests::manifest()),
            ..verified()
        };
        insta::assert_snapshot!("verify_deep", deep.render(WIDTH));
        assert!(
            unknown
                .render(WIDTH)
                .contains("  trailer  unknown dump format\n")
        );
    }

    #[test]
    fn restore_into_an_empty_and_a_used_database() {
        let restored = RestoreReport {
            file: "orders.sql.gz".into(),
            namespace: "shop".into(),
            pod: "orders-0".into(),
            engine: Engine::Mysql,
            kind: DumpKind::Mysql,
            databases_with_data: vec![],
            bytes_sent: 7_340_032,
            stream_compression: Compression::Zstd,
            duration_seconds: 12.34,
            remote_status: ExecStatus::Success,
            parallel: None,
        };
        insta::assert_snapshot!("restore_empty", restored.render(WIDTH));
        let replaced = RestoreReport {
            databases_with_data: vec!["appdb".into(), "reports".into()],
            ..restored
        };
        insta::assert_snapshot!("restore_replaced", replaced.render(WIDTH));
    }

    #[test]
    fn snapshots_ready_and_not() {
        let report = SnapshotReport {
            namespace: "shop".into(),
            pod: "orders-0".into(),
            database: "orders".into(),
            engine: Engine::Mariadb,
            engine_version: "10.11".into(),
            consistency: "application",
            quiesce: Some(QuiesceReport {
                method: "read-lock",
                writes_paused: true,
                held_seconds: 0.41,
                quiesce_seconds: 0.02,
            }),
            class: Some("csi-snapclass".into()),
            snapshots: vec![
                TakenSnapshot {
                    name: "data-orders-0-20261203t080000z".into(),
                    pvc: "data-orders-0".into(),
                    ready: true,
                    restore_size: Some("10Gi".into()),
                },
                TakenSnapshot {
                    name: "wal-orders-0-20261203t080000z".into(),
                    pvc: "wal-orders-0".into(),
                    ready: false,
                    restore_size: None,
                },
            ],
            duration_seconds: 3.2,
        };
        insta::assert_snapshot!(report.render(WIDTH));
        let crash = SnapshotReport {
            engine: Engine::Postgres,
            engine_version: "15.8".into(),
            consistency: "crash",
            quiesce: None,
            ..report
        };
        insta::assert_snapshot!("snapshots_crash_consistent", crash.render(WIDTH));
    }

    #[test]
    fn snapshot_list() {
        let list = vec![
            SnapshotInfo {
                name: "data-orders-0-20261203t080000z".into(),
                pvc: "data-orders-0".into(),
                ready: true,
                size: Some("1Gi".into()),
                namespace: "shop".into(),
                created: Some("2026-12-03T08:00:01Z".into()),
                age_seconds: Some(7260),
                database: Some("orders".into()),
                engine: Some(Engine::Mariadb),
                engine_version: Some("10.11".into()),
                consistency: Some("application".into()),
                managed: true,
                error: None,
            },
            SnapshotInfo {
                name: "by-hand".into(),
                namespace: "shop".into(),
                pvc: "data-orders-0".into(),
                error: Some("snapshotting non-CSI volumes is not supported".into()),
                ..SnapshotInfo::default()
            },
        ];
        insta::assert_snapshot!(list.render(WIDTH));
        // `snapshot list -o json` is this list; `snapshot delete -o json` one element.
        insta::assert_snapshot!("snapshot_list_json", output::to_json(&list).unwrap());
    }
}
