//! `backup.schedule` and `backup.recent`: does a `kubectl dbbackup schedule` back this
//! database up, did its last run succeed, and is the newest good backup younger than
//! `--backup-max-age`. Read from the CronJob and its Jobs (their pods' termination
//! messages carry each run's result), not from the PVC. Skipped for databases with no
//! schedule, so reports of databases backed up otherwise stay as they were.

use std::time::Duration;

use jiff::Timestamp;

use crate::backup::schedule::{self, ScheduleInfo};
use crate::backup::schedule_run::{self, JobRun};
use crate::client::Kube;
use crate::error::{Error, Result};
use crate::output::age;

use super::{Check, Verdict};

const SCHEDULE: &str = "backup.schedule";
const RECENT: &str = "backup.recent";

/// What a schedule's objects say: the CronJob and its runs, newest first.
pub type Found = Result<Option<(ScheduleInfo, Vec<JobRun>)>>;

/// Reads the schedule of `database` and judges it.
pub async fn check(kube: &Kube, database: &str, max_age: Duration, budget: Duration) -> Vec<Check> {
    // Both reads always happen, so a refused one is named the same way with or without a
    // schedule (docs/rbac.md: optional reads).
    let read = async {
        let (schedules, runs) = tokio::join!(
            schedule::list(kube, Some(database)),
            schedule_run::runs(kube, database)
        );
        let (schedules, runs) = (schedules?, runs?);
        Ok(schedules.into_iter().next().map(|info| (info, runs)))
    };
    let found = match tokio::time::timeout(budget, read).await {
        Ok(found) => found,
        Err(_) => Err(Error::Timeout {
            what: "the API server to return CronJobs and Jobs".into(),
            after: budget,
        }),
    };
    judge(database, found, max_age, Timestamp::now())
}

/// The verdicts on what was read (pure).
pub fn judge(database: &str, found: Found, max_age: Duration, now: Timestamp) -> Vec<Check> {
    let (info, runs) = match found {
        Ok(Some(found)) => found,
        Ok(None) => {
            let evidence = format!(
                "no schedule: no kubectl dbbackup schedule backs up {database} (`kubectl dbbackup schedule {database} --at 02:30` sets one up)"
            );
            return vec![
                Check::new(SCHEDULE, Verdict::Skipped, evidence.clone()),
                Check::new(RECENT, Verdict::Skipped, evidence),
            ];
        }
        Err(err) => {
            let evidence = format!("could not read the backup schedule: {}", err.chain());
            return vec![
                Check::new(SCHEDULE, Verdict::Skipped, evidence.clone()),
                Check::new(RECENT, Verdict::Skipped, evidence),
            ];
        }
    };
    vec![
        schedule_check(database, &info, &runs),
        recent_check(database, &info, &runs, max_age, now),
    ]
}

fn schedule_check(database: &str, info: &ScheduleInfo, runs: &[JobRun]) -> Check {
    let what = format!(
        "CronJob {} runs {} ({})",
        info.cron_job,
        info.schedule,
        info.time_zone
            .as_deref()
            .unwrap_or("the controller's time zone")
    );
    let last = runs.iter().find(|r| r.state != "running");
    let when = |run: &JobRun| run.age_seconds.map_or("?".into(), age);
    match last {
        Some(run) if run.state == "failed" => {
            let failed_in_a_row = runs
                .iter()
                .filter(|r| r.state != "running")
                .take_while(|r| r.state == "failed")
                .count();
            Check::new(
                SCHEDULE,
                Verdict::Fail,
                format!(
                    "{what}; the last {} failed, Job {} {} ago: {}",
                    if failed_in_a_row > 1 { format!("{failed_in_a_row} runs") } else { "run".into() },
                    run.job,
                    when(run),
                    run.reason.as_deref().unwrap_or("no reason recorded")
                ),
            )
            .fix(format!(
                "`kubectl logs job/{}` shows the dump's output; once the cause is fixed, `kubectl dbbackup schedule run-now {database}` checks it",
                run.job
            ))
        }
        _ if info.suspended => Check::new(
            SCHEDULE,
            Verdict::Warn,
            format!("{what}, but it is suspended"),
        )
        .fix(format!(
            "`kubectl patch cronjob {} -p '{{\"spec\":{{\"suspend\":false}}}}'`",
            info.cron_job
        )),
        Some(run) => Check::new(
            SCHEDULE,
            Verdict::Ok,
            format!(
                "{what}; the last run succeeded {} ago (Job {})",
                when(run),
                run.job
            ),
        ),
        None => Check::new(
            SCHEDULE,
            Verdict::Ok,
            format!("{what}; no run has finished yet"),
        ),
    }
}

fn recent_check(
    database: &str,
    info: &ScheduleInfo,
    runs: &[JobRun],
    max_age: Duration,
    now: Timestamp,
) -> Check {
    // The Jobs say which file; the CronJob remembers its last success after its Jobs are gone.
    let from_jobs = runs
        .iter()
        .filter(|r| r.state == "succeeded")
        .filter_map(|r| Some((r.age_seconds?, r.file.clone())))
        .min_by_key(|(age, _)| *age);
    let from_cron_job = info
        .last_success
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| (now.as_second() - t.as_second(), None));
    let newest = [from_jobs, from_cron_job]
        .into_iter()
        .flatten()
        .min_by_key(|(age, _)| *age);
    let limit = max_age.as_secs() as i64;
    let fix = format!(
        "`kubectl dbbackup schedule run-now {database}` runs one now; `kubectl dbcheck` shows why runs fail (backup.schedule)"
    );
    match newest {
        None => Check::new(
            RECENT,
            Verdict::Warn,
            format!("no good backup of {database} yet"),
        )
        .fix(fix),
        Some((seconds, file)) => {
            let file = file
                .map(|f| format!(" ({f} on PVC {})", info.pvc.as_deref().unwrap_or("?")))
                .unwrap_or_default();
            if seconds <= limit {
                Check::new(
                    RECENT,
                    Verdict::Ok,
                    format!("newest good backup is {} old{file}", age(seconds)),
                )
            } else {
                Check::new(
                    RECENT,
                    Verdict::Warn,
                    format!(
                        "newest good backup is {} old{file}, older than --backup-max-age {}",
                        age(seconds),
                        age(limit)
                    ),
                )
                .fix(fix)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(last_success: Option<&str>) -> ScheduleInfo {
        ScheduleInfo {
            namespace: "ns".into(),
            database: "pg".into(),
            cron_job: "pg-backup".into(),
            schedule: "30 2 * * *".into(),
            time_zone: Some("Etc/UTC".into()),
            suspended: false,
            pvc: Some("pg-backups".into()),
            keep: Some(7),
            last_schedule: None,
            last_success: last_success.map(String::from),
            active: 0,
        }
    }

    fn run(job: &str, state: &str, age: i64) -> JobRun {
        JobRun {
            job: job.into(),
            state: state.into(),
            started: None,
            finished: None,
            age_seconds: Some(age),
            file: (state == "succeeded").then(|| format!("{job}.sql.gz")),
            bytes: Some(10),
            sha256: None,
            removed: None,
            reason: (state == "failed")
                .then(|| "the dump exited with status 2: connection refused".into()),
        }
    }

    const DAY: Duration = Duration::from_secs(26 * 3600);

    fn verdicts(checks: &[Check]) -> Vec<(Verdict, &str)> {
        checks
            .iter()
            .map(|c| (c.verdict, c.evidence.as_str()))
            .collect()
    }

    #[test]
    fn no_schedule_skips_both() {
        let now = Timestamp::now();
        let checks = judge("pg", Ok(None), DAY, now);
        assert!(checks.iter().all(|c| c.verdict == Verdict::Skipped));
        assert!(
            checks[0].evidence.starts_with("no schedule"),
            "{}",
            checks[0].evidence
        );
    }

    #[test]
    fn good_failed_and_stale_backups() {
        let now: Timestamp = "2026-12-03T12:00:00Z".parse().unwrap();
        let good = judge(
            "pg",
            Ok(Some((info(None), vec![run("b", "succeeded", 3600)]))),
            DAY,
            now,
        );
        assert_eq!(
            verdicts(&good),
            [
                (
                    Verdict::Ok,
                    "CronJob pg-backup runs 30 2 * * * (Etc/UTC); the last run succeeded 60m ago (Job b)"
                ),
                (
                    Verdict::Ok,
                    "newest good backup is 60m old (b.sql.gz on PVC pg-backups)"
                ),
            ]
        );
        let runs = vec![
            run("c", "failed", 60),
            run("b", "failed", 120),
            run("a", "succeeded", 30 * 3600),
        ];
        let failed = judge("pg", Ok(Some((info(None), runs))), DAY, now);
        assert_eq!(failed[0].verdict, Verdict::Fail);
        assert_eq!(
            failed[0].evidence,
            "CronJob pg-backup runs 30 2 * * * (Etc/UTC); the last 2 runs failed, Job c 60s ago: the dump exited with status 2: connection refused"
        );
        assert!(
            failed[0]
                .fix
                .as_deref()
                .unwrap()
                .contains("kubectl logs job/c")
        );
        assert_eq!(failed[1].verdict, Verdict::Warn);
        assert!(
            failed[1].evidence.contains("30h old"),
            "{}",
            failed[1].evidence
        );
        // Jobs cleaned up by the history limit: the CronJob's last success still counts.
        let remembered = judge(
            "pg",
            Ok(Some((info(Some("2026-12-03T11:00:00Z")), vec![]))),
            DAY,
            now,
        );
        assert_eq!(
            verdicts(&remembered)[1],
            (Verdict::Ok, "newest good backup is 60m old")
        );
        let never = judge("pg", Ok(Some((info(None), vec![]))), DAY, now);
        assert_eq!(never[0].verdict, Verdict::Ok);
        assert_eq!(
            verdicts(&never)[1],
            (Verdict::Warn, "no good backup of pg yet")
        );
    }
}
