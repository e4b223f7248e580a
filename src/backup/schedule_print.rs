//! How `dbbackup schedule`'s reports read on a terminal (`-o table`).

use std::fmt::Write;

use indicatif::HumanBytes;

use super::schedule::{ScheduleInfo, ScheduleReport};
use super::schedule_run::{JobRun, RunNowReport};
use crate::output::{self, Render, Width};

impl Render for ScheduleReport {
    fn render(&self, _width: Width) -> String {
        let action = match self.dry_run.as_deref() {
            Some("client") => "rendered (client dry run, nothing applied)".to_string(),
            Some(_) => "validated (server dry run, nothing stored)".to_string(),
            None => self
                .applied
                .iter()
                .map(|a| format!("{} {} {}", a.kind, a.name, a.outcome))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let mut text = format!(
            "backups of {}/{} ({}) scheduled: {action}\n",
            self.namespace, self.database, self.engine
        );
        let _ = writeln!(text, "  schedule   {} ({})", self.schedule, self.time_zone);
        for (i, run) in self.next_runs.iter().enumerate() {
            let label = if i == 0 { "next runs" } else { "" };
            let _ = writeln!(text, "  {label:<10} {}", show_time(run));
        }
        let _ = writeln!(
            text,
            "  to         PVC {}{}: {}-<UTC time>{} + .sha256 + .manifest.tsv",
            self.pvc,
            if self.pvc_created { " (new)" } else { "" },
            self.database,
            self.compression_extension()
        );
        let _ = writeln!(
            text,
            "  retention  {}",
            retention(self.keep, self.keep_within_seconds)
        );
        let _ = writeln!(
            text,
            "  run now:   kubectl dbbackup schedule run-now {} -n {}",
            self.database, self.namespace
        );
        text
    }
}

impl ScheduleReport {
    fn compression_extension(&self) -> &'static str {
        self.compression.extension()
    }
}

/// `2026-12-04T02:30:00+09:00[Asia/Seoul]` as `2026-12-04 02:30 +09:00 Asia/Seoul`.
fn show_time(zoned: &str) -> String {
    match zoned.parse::<jiff::Zoned>() {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M %:z %Q").to_string(),
        Err(_) => zoned.to_string(),
    }
}

/// The retention rules in words.
pub fn retention(keep: u32, keep_within_seconds: u64) -> String {
    let within = (keep_within_seconds > 0).then(|| {
        format!(
            "those younger than {}",
            output::age(keep_within_seconds as i64)
        )
    });
    let newest = (keep > 0).then(|| format!("the newest {keep}"));
    match (newest, within) {
        (Some(n), Some(w)) => format!("keep {n} and {w}, after each good dump"),
        (Some(n), None) => format!("keep {n}, after each good dump"),
        (None, Some(w)) => format!("keep {w}, after each good dump"),
        (None, None) => "keep everything".into(),
    }
}

impl Render for Vec<ScheduleInfo> {
    fn render(&self, _width: Width) -> String {
        let mut table = output::table(&[
            "database",
            "cronjob",
            "schedule",
            "time zone",
            "pvc",
            "keep",
            "last run",
            "last success",
        ]);
        for s in self {
            table.add_row(vec![
                s.database.clone(),
                s.cron_job.clone() + if s.suspended { " (suspended)" } else { "" },
                s.schedule.clone(),
                s.time_zone.clone().unwrap_or_else(|| "-".into()),
                s.pvc.clone().unwrap_or_else(|| "-".into()),
                s.keep.map_or("-".into(), |k| k.to_string()),
                s.last_schedule.clone().unwrap_or_else(|| "never".into()),
                s.last_success.clone().unwrap_or_else(|| "never".into()),
            ]);
        }
        output::table_text(&table)
    }
}

/// One line about a finished (or running) run.
pub fn run_line(run: &JobRun) -> String {
    match run.state.as_str() {
        "succeeded" => format!(
            "succeeded: {} ({}, sha256 {}){}",
            run.file.as_deref().unwrap_or("?"),
            HumanBytes(run.bytes.unwrap_or(0)),
            run.sha256.as_deref().unwrap_or("?"),
            match run.removed {
                Some(n) if n > 0 => format!("; retention removed {n} older backup(s)"),
                _ => String::new(),
            }
        ),
        "failed" => format!(
            "FAILED: {}; no backup file was written",
            run.reason.as_deref().unwrap_or("no reason recorded")
        ),
        other => other.to_string(),
    }
}

impl Render for RunNowReport {
    fn render(&self, _width: Width) -> String {
        format!(
            "Job {}/{} of CronJob {} {} in {:.1}s\n  {}\n",
            self.namespace,
            self.run.job,
            self.cron_job,
            if self.run.state == "succeeded" {
                "ran"
            } else {
                "ended"
            },
            self.duration_seconds,
            run_line(&self.run),
        ) + &match (&self.pvc, &self.run.file) {
            (Some(pvc), Some(file)) => format!(
                "  restore:  kubectl dbbackup restore {} -f pvc:{pvc}/{file}\n",
                self.cron_job.trim_end_matches("-backup")
            ),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{Applied, Outcome};
    use crate::backup::Compression;
    use crate::engine::Engine;

    #[test]
    fn schedule_report() {
        let report = ScheduleReport {
            namespace: "shop".into(),
            database: "pg".into(),
            engine: Engine::Postgres,
            cron_job: "pg-backup".into(),
            schedule: "30 2 * * *".into(),
            time_zone: "Asia/Seoul".into(),
            next_runs: vec![
                "2026-12-04T02:30:00+09:00[Asia/Seoul]".into(),
                "2026-12-05T02:30:00+09:00[Asia/Seoul]".into(),
                "2026-12-06T02:30:00+09:00[Asia/Seoul]".into(),
            ],
            pvc: "pg-backups".into(),
            pvc_created: true,
            keep: 7,
            keep_within_seconds: 7 * 86_400,
            compression: Compression::Gzip,
            dry_run: None,
            applied: vec![
                Applied {
                    kind: "PersistentVolumeClaim".into(),
                    name: "pg-backups".into(),
                    outcome: Outcome::Created,
                },
                Applied {
                    kind: "CronJob".into(),
                    name: "pg-backup".into(),
                    outcome: Outcome::Created,
                },
            ],
        };
        insta::assert_snapshot!(report.render(Width(100)));
    }

    #[test]
    fn retention_in_words() {
        assert_eq!(retention(1, 0), "keep the newest 1, after each good dump");
        assert_eq!(
            retention(0, 86_400 * 3),
            "keep those younger than 3d, after each good dump"
        );
        assert_eq!(retention(0, 0), "keep everything");
    }
}
