//! The runs of a backup schedule: `schedule run-now` (a Job from the CronJob's template,
//! waited on, its result shown) and what each finished Job says — the job's script writes
//! its result (`ok FILE BYTES SHA256 removed=N`) or its reason (`failed: ...`) to the
//! termination log, so the pod's status carries it and no log access is needed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{ListParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;

use super::schedule;
use crate::client::Kube;
use crate::error::{Error, Result};
use crate::output::Progress;
use crate::render::cronjob as render;
use crate::wait::within;

/// How one run of a schedule ended, or that it has not yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JobRun {
    pub job: String,
    /// `succeeded`, `failed` or `running`.
    pub state: String,
    /// When it started and ended (RFC 3339).
    pub started: Option<String>,
    pub finished: Option<String>,
    /// Seconds since it ended.
    pub age_seconds: Option<i64>,
    /// The backup file written (on the PVC).
    pub file: Option<String>,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    /// Old backups retention removed.
    pub removed: Option<u32>,
    /// Why it failed: the job's own words, else the Job's condition.
    pub reason: Option<String>,
}

/// A run as its Job and pods show it (pure; `now` for the age).
pub fn job_run(job: &Job, pods: &[Pod], now: jiff::Timestamp) -> JobRun {
    let status = job.status.as_ref();
    let condition = |type_: &str| {
        status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == type_ && c.status == "True"))
    };
    let failed = condition("Failed");
    let complete = condition("Complete");
    let finished_at = status
        .and_then(|s| s.completion_time.as_ref())
        .map(|t| t.0)
        .or_else(|| {
            failed
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0)
        });
    let message = pods
        .iter()
        .filter(|p| p.labels().get("job-name") == Some(&job.name_any()))
        .rev()
        .find_map(|p| {
            let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
            let terminated = statuses
                .iter()
                .find_map(|c| c.state.as_ref()?.terminated.as_ref())?;
            terminated
                .message
                .clone()
                .or_else(|| terminated.reason.clone())
        });
    let mut run = JobRun {
        job: job.name_any(),
        state: match (complete, failed) {
            (Some(_), _) => "succeeded",
            (None, Some(_)) => "failed",
            _ => "running",
        }
        .into(),
        started: status
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.to_string()),
        finished: finished_at.map(|t| t.to_string()),
        age_seconds: finished_at.map(|t| now.as_second() - t.as_second()),
        file: None,
        bytes: None,
        sha256: None,
        removed: None,
        reason: None,
    };
    let message = message.unwrap_or_default();
    let message = message.trim();
    if let Some(result) = message.strip_prefix("ok ") {
        let fields: Vec<&str> = result.split_whitespace().collect();
        run.file = fields.first().map(|f| f.to_string());
        run.bytes = fields.get(1).and_then(|b| b.parse().ok());
        run.sha256 = fields.get(2).map(|s| s.to_string());
        run.removed = fields
            .get(3)
            .and_then(|r| r.strip_prefix("removed="))
            .and_then(|r| r.parse().ok());
    } else if run.state == "failed" {
        let from_job = failed.map(|c| {
            format!(
                "{}: {}",
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default()
            )
        });
        run.reason = match message.strip_prefix("failed: ") {
            Some(reason) => Some(reason.to_string()),
            None if !message.is_empty() => Some(crate::exec::last_lines(message, 3)),
            None => from_job,
        };
    }
    run
}

/// The runs of database `database`'s schedule, newest first.
pub async fn runs(kube: &Kube, database: &str) -> Result<Vec<JobRun>> {
    let selector = format!("{}={database}", render::DATABASE_LABEL);
    let params = ListParams::default().labels(&selector);
    let jobs: Api<Job> = kube.api();
    let pods: Api<Pod> = kube.api();
    let ns = &kube.namespace;
    let (jobs, pods) = tokio::join!(jobs.list(&params), pods.list(&params));
    let jobs = jobs
        .map_err(Error::api(format!("list Jobs in {ns}")))?
        .items;
    let pods = pods
        .map_err(Error::api(format!("list pods in {ns}")))?
        .items;
    let now = jiff::Timestamp::now();
    let mut runs: Vec<(Option<jiff::Timestamp>, JobRun)> = jobs
        .iter()
        .map(|j| {
            let created = j.metadata.creation_timestamp.as_ref().map(|t| t.0);
            (created, job_run(j, &pods, now))
        })
        .collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.0));
    Ok(runs.into_iter().map(|(_, r)| r).collect())
}

/// The Job `schedule run-now` creates from the CronJob's template (pure): owned by the
/// CronJob, marked as started by hand, as `kubectl create job --from=cronjob/...` does.
pub fn manual_job(cron_job: &CronJob, now: jiff::Timestamp) -> Result<Job> {
    let name = cron_job.name_any();
    let template = cron_job
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .ok_or_else(|| Error::NotFound(format!("CronJob {name} has no spec")))?;
    let suffix = format!("-now-{}", now.as_second());
    let base = &name[..name.len().min(63 - suffix.len())];
    let owner = cron_job.controller_owner_ref(&()).map(|o| OwnerReference {
        block_owner_deletion: Some(true),
        ..o
    });
    let metadata = template.metadata.unwrap_or_default();
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(format!("{base}{suffix}")),
            namespace: cron_job.namespace(),
            labels: metadata.labels,
            annotations: Some(BTreeMap::from([(
                "cronjob.kubernetes.io/instantiate".to_string(),
                "manual".to_string(),
            )])),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        spec: template.spec,
        ..Default::default()
    })
}

/// What `schedule run-now` saw (the `-o json` schema).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunNowReport {
    pub namespace: String,
    pub cron_job: String,
    pub pvc: Option<String>,
    pub run: JobRun,
    pub duration_seconds: f64,
}

/// Starts a run of the schedule of `name` now and waits (at most `timeout`) for its end.
pub async fn run_now(
    kube: &Kube,
    name: &str,
    timeout: Duration,
    progress: &Progress,
) -> Result<RunNowReport> {
    let started = Instant::now();
    let cron_job = schedule::find(kube, name).await?;
    let info = schedule::info(&cron_job);
    let job = manual_job(&cron_job, jiff::Timestamp::now())?;
    let job_name = job.name_any();
    let ns = kube.namespace.clone();
    let jobs: Api<Job> = kube.api();
    jobs.create(&PostParams::default(), &job)
        .await
        .map_err(Error::api(format!("create Job {ns}/{job_name}")))?;
    progress.set(format!("waiting for Job {job_name}"));
    let finished = |job: Option<&Job>| {
        job.and_then(|j| j.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            })
    };
    let what = format!("Job {ns}/{job_name} to finish (it goes on; `kubectl get job {job_name}`)");
    let wait = async {
        await_condition(kube.watch_api::<Job>(), &job_name, finished)
            .await
            .map_err(|source| Error::Watch {
                what: format!("Job {ns}/{job_name}"),
                source,
            })
    };
    let done = within(timeout, what, wait).await?;
    let done = done.unwrap_or(job);
    let pods: Api<Pod> = kube.api();
    let pods = pods
        .list(&ListParams::default().labels(&format!("job-name={job_name}")))
        .await
        .map_err(Error::api(format!("list pods of Job {ns}/{job_name}")))?;
    progress.finish();
    Ok(RunNowReport {
        namespace: ns,
        cron_job: info.cron_job,
        pvc: info.pvc,
        run: job_run(&done, &pods.items, jiff::Timestamp::now()),
        duration_seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(conditions: serde_json::Value) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pg-backup-29", "creationTimestamp": "2026-12-03T10:00:00Z"},
            "status": {
                "startTime": "2026-12-03T10:00:00Z",
                "completionTime": "2026-12-03T10:00:30Z",
                "conditions": conditions
            }
        }))
        .unwrap()
    }

    fn pod(message: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pg-backup-29-x", "labels": {"job-name": "pg-backup-29"}},
            "status": {"containerStatuses": [{
                "name": "backup", "image": "postgres:15", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "message": message}}
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn a_run_says_what_it_wrote_or_why_it_failed() {
        let now: jiff::Timestamp = "2026-12-03T11:00:30Z".parse().unwrap();
        let ok = job(serde_json::json!([{"type": "Complete", "status": "True"}]));
        let sum = "a".repeat(64);
        let run = job_run(
            &ok,
            &[pod(&format!(
                "ok pg-20261203T100000Z.sql.gz 1234 {sum} removed=2\n"
            ))],
            now,
        );
        assert_eq!(run.state, "succeeded");
        assert_eq!(run.file.as_deref(), Some("pg-20261203T100000Z.sql.gz"));
        assert_eq!(
            (run.bytes, run.removed, run.age_seconds),
            (Some(1234), Some(2), Some(3600))
        );

        let failed = job(serde_json::json!([{"type": "Failed", "status": "True",
            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]));
        let run = job_run(
            &failed,
            &[pod(
                "failed: the dump exited with status 1: pg_dumpall: error: connection refused\n",
            )],
            now,
        );
        assert_eq!(run.state, "failed");
        assert_eq!(
            run.reason.as_deref(),
            Some("the dump exited with status 1: pg_dumpall: error: connection refused")
        );
        // No pod left (deadline exceeded): the Job's own reason.
        let run = job_run(&failed, &[], now);
        assert_eq!(
            run.reason.as_deref(),
            Some("BackoffLimitExceeded: Job has reached the specified backoff limit")
        );
        assert_eq!(
            job_run(&job(serde_json::json!([])), &[], now).state,
            "running"
        );
    }
}
