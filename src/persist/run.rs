//! Running the test on a planned pod, one function per step: judge the storage, write and
//! read the marker, record and delete the pod, wait for its replacement, read the marker
//! again, compare the volumes, clean up.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Preconditions};

use super::plan::{Plan, record_pod};
use super::report::{PersistReport, PodRecord, StepResult};
use super::sql::{self, Created};
use super::{EXEC_TIMEOUT, PersistOptions, api, run_sql, sql_failure, steps};
use crate::cli::exit;
use crate::client::Kube;
use crate::error::Result;
use crate::output::Progress;
use crate::wait;

/// A unique marker: the tool's name, the time and a random suffix.
pub fn new_marker() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    format!(
        "kubectl-dbpersist {} {:08x}",
        now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        rand::random::<u32>()
    )
}

/// Runs the test on the planned pod. Returns `Err` only for cluster errors before the pod
/// is deleted (nothing was deleted then); from the delete on, every outcome is a report.
pub async fn run(
    kube: &Kube,
    plan: &Plan,
    options: &PersistOptions,
    progress: &Progress,
) -> Result<PersistReport> {
    let started = Instant::now();
    let marker = new_marker();
    let mut report = PersistReport::new(plan, &marker, options.keep);
    if !judge_storage(plan, options, progress, &mut report) {
        return Ok(report.finish(started));
    }
    let Some(created) = write_marker(kube, plan, progress, &mut report).await? else {
        return Ok(report.finish(started));
    };
    if !read_before(kube, plan, &mut report).await? {
        cleanup(kube, plan, &mut report, created).await;
        return Ok(report.finish(started));
    }
    let Some(before) = record_and_delete(kube, plan, progress, &mut report).await? else {
        cleanup(kube, plan, &mut report, created).await;
        return Ok(report.finish(started));
    };

    // From here on the database is down until the StatefulSet replaces the pod: whatever
    // happens, including Ctrl-C, the user gets the report with what was seen last.
    let deadline = tokio::time::Instant::now() + options.timeout;
    let interrupted = tokio::select! {
        () = after_delete(kube, plan, options, &before, created, deadline, progress, &mut report) => false,
        _ = crate::cli::interrupted() => true,
    };
    if interrupted {
        report.interrupt();
    }
    Ok(report.finish(started))
}

/// Judges the storage from the pod spec before anything is written: a pod whose data dies
/// with it is a FAIL as it stands, and deleting it would only destroy that data. False:
/// the test ends here.
fn judge_storage(
    plan: &Plan,
    options: &PersistOptions,
    progress: &Progress,
    report: &mut PersistReport,
) -> bool {
    let step = Instant::now();
    match &plan.ephemeral {
        None => {
            let volume = plan.record.data_volume.as_deref();
            let detail = format!(
                "data directory on {}",
                volume.unwrap_or("a PersistentVolumeClaim")
            );
            report.pass(steps::STORAGE, step, detail);
            true
        }
        Some(reason) if options.delete_ephemeral_data => {
            let detail = format!(
                "{reason}; testing anyway (--delete-ephemeral-data): the pod's data is lost"
            );
            progress.println(format!("warning: pod {}: {detail}", plan.pod_name));
            report.push(steps::STORAGE, StepResult::Warning, step, detail);
            true
        }
        Some(reason) => {
            let seen = format!(
                "{reason}; nothing was written or deleted. {}",
                plan.storage_fix()
            );
            report.fail(steps::STORAGE, step, seen, exit::UNHEALTHY);
            report.before = Some(plan.record.clone());
            false
        }
    }
}

/// Writes the marker row; `None` when that failed (the report says why).
async fn write_marker(
    kube: &Kube,
    plan: &Plan,
    progress: &Progress,
    report: &mut PersistReport,
) -> Result<Option<Created>> {
    progress.set(format!(
        "writing the marker into {}.{} in pod {}",
        sql::DATABASE,
        sql::TABLE,
        plan.pod_name
    ));
    let step = Instant::now();
    let script = plan.engine.commands().write_marker(&report.marker.data);
    let output = run_sql(kube, plan, &script, EXEC_TIMEOUT).await?;
    let parsed = sql::parse_write(&output.stdout_text());
    match (output.status.success(), parsed) {
        (true, Some((created, id))) => {
            report.marker.id = Some(id);
            report.pass(steps::WRITE, step, write_detail(created, id));
            Ok(Some(created))
        }
        (true, None) => {
            let seen = format!("unexpected output {:?}", output.stdout_text());
            report.fail(steps::WRITE, step, seen, exit::UNHEALTHY);
            Ok(None)
        }
        (false, _) => {
            report.fail(steps::WRITE, step, sql_failure(&output), exit::UNHEALTHY);
            Ok(None)
        }
    }
}

/// Reads the marker back before anything is deleted; false when it did not come back.
async fn read_before(kube: &Kube, plan: &Plan, report: &mut PersistReport) -> Result<bool> {
    let step = Instant::now();
    let script = plan.engine.commands().read_marker(&report.marker.data);
    let output = run_sql(kube, plan, &script, EXEC_TIMEOUT).await?;
    let rows = sql::parse_rows(&output.stdout_text());
    match rows.as_slice() {
        [row] if output.status.success() && Some(row.id) == report.marker.id => {
            report.marker.created_at = Some(row.created_at.clone());
            let detail = format!("row id {} came back, created_at {}", row.id, row.created_at);
            report.pass(steps::READ_BEFORE, step, detail);
            Ok(true)
        }
        _ => {
            let seen = if output.status.success() {
                format!("{} matching rows", rows.len())
            } else {
                sql_failure(&output)
            };
            report.fail(steps::READ_BEFORE, step, seen, exit::UNHEALTHY);
            Ok(false)
        }
    }
}

/// Records what must survive, as close to the delete as possible, then deletes exactly
/// that pod: the UID precondition refuses a pod recreated meanwhile. `None` when the
/// delete failed (the report says why).
async fn record_and_delete(
    kube: &Kube,
    plan: &Plan,
    progress: &Progress,
    report: &mut PersistReport,
) -> Result<Option<PodRecord>> {
    progress.set(format!("recording pod {} and its volumes", plan.pod_name));
    let step = Instant::now();
    let pods: Api<Pod> = kube.api();
    let name = format!("pod {}/{}", plan.namespace, plan.pod_name);
    let current = api(format!("read {name}"), pods.get(&plan.pod_name)).await?;
    let before = record_pod(kube, &current, plan.engine, &plan.container).await?;
    report.pass(steps::RECORD, step, before.summary());
    report.before = Some(before.clone());

    progress.set(format!("deleting pod {}", plan.pod_name));
    let step = Instant::now();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(before.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    if let Err(err) = api(
        format!("delete {name}"),
        pods.delete(&plan.pod_name, &params),
    )
    .await
    {
        let seen = format!("the pod was not deleted: {}", err.chain_with_hint());
        report.fail(steps::DELETE, step, seen, exit::CLUSTER);
        return Ok(None);
    }
    let detail = format!("deleted uid {} with its normal grace period", before.uid);
    report.pass(steps::DELETE, step, detail);
    Ok(Some(before))
}

/// The steps after the delete.
#[allow(clippy::too_many_arguments)]
async fn after_delete(
    kube: &Kube,
    plan: &Plan,
    options: &PersistOptions,
    before: &PodRecord,
    created: Created,
    deadline: tokio::time::Instant,
    progress: &Progress,
    report: &mut PersistReport,
) {
    let Some(after) = wait_step(kube, plan, options, before, deadline, progress, report).await
    else {
        return;
    };
    report.after = Some(after.clone());
    check_after(
        kube, plan, before, &after, created, deadline, progress, report,
    )
    .await;
}

/// Waits for the replacement pod and records it; `None` when it did not come (the report
/// says what was seen last).
async fn wait_step(
    kube: &Kube,
    plan: &Plan,
    options: &PersistOptions,
    before: &PodRecord,
    deadline: tokio::time::Instant,
    progress: &Progress,
    report: &mut PersistReport,
) -> Option<PodRecord> {
    report.begin(steps::WAIT);
    let step = Instant::now();
    let waited = wait::replacement_ready(
        kube,
        &plan.pod_name,
        &before.uid,
        deadline,
        progress,
        &mut report.last_seen,
        &mut report.warnings,
    )
    .await;
    let new_pod = match waited {
        Ok(Some(pod)) => pod,
        Ok(None) | Err(_) => {
            if let Err(err) = waited {
                report.last_seen = Some(err.chain_with_hint());
            }
            let seen = format!(
                "no Ready pod with a new UID within {}s; last seen: {}",
                options.timeout.as_secs(),
                report.last_seen.as_deref().unwrap_or("nothing")
            );
            report.fail(steps::WAIT, step, seen, exit::CLUSTER);
            report.skip(steps::CLEANUP, cleanup_hint(plan, &report.marker.data));
            return None;
        }
    };
    match record_pod(kube, &new_pod, plan.engine, &plan.container).await {
        Ok(record) => {
            let detail = format!(
                "new uid {} Ready on node {}",
                record.uid,
                record.node.as_deref().unwrap_or("none")
            );
            report.pass(steps::WAIT, step, detail);
            Some(record)
        }
        Err(err) => {
            let seen = format!(
                "failed to read the new pod's volumes: {}",
                err.chain_with_hint()
            );
            report.fail(steps::WAIT, step, seen, exit::CLUSTER);
            None
        }
    }
}

/// Reads the marker from the new pod, compares the volumes, cleans up.
#[allow(clippy::too_many_arguments)]
async fn check_after(
    kube: &Kube,
    plan: &Plan,
    before: &PodRecord,
    after: &PodRecord,
    created: Created,
    deadline: tokio::time::Instant,
    progress: &Progress,
    report: &mut PersistReport,
) {
    report.begin(steps::READ_AFTER);
    let step = Instant::now();
    let marker_gone = match read_after(kube, plan, deadline, progress, report).await {
        ReadAfter::Found(detail) => {
            report.pass(steps::READ_AFTER, step, detail);
            false
        }
        ReadAfter::Missing(seen) => {
            report.fail(steps::READ_AFTER, step, seen, exit::UNHEALTHY);
            false
        }
        ReadAfter::QueryFailed(seen) => {
            report.fail(steps::READ_AFTER, step, seen, exit::UNHEALTHY);
            true
        }
        ReadAfter::NoAnswer(seen) => {
            report.fail(steps::READ_AFTER, step, seen, exit::CLUSTER);
            let skipped = "not compared: the server did not answer".into();
            report.skip(steps::VOLUMES, skipped);
            report.skip(steps::CLEANUP, cleanup_hint(plan, &report.marker.data));
            return;
        }
    };

    let step = Instant::now();
    match super::report::compare_volumes(before, after) {
        Ok(detail) => report.pass(steps::VOLUMES, step, detail),
        Err(seen) => report.fail(steps::VOLUMES, step, seen, exit::UNHEALTHY),
    }

    if marker_gone {
        let detail = format!(
            "nothing to remove: {}.{} is gone",
            sql::DATABASE,
            sql::TABLE
        );
        report.skip(steps::CLEANUP, detail);
    } else {
        cleanup(kube, plan, report, created).await;
    }
}

enum ReadAfter {
    Found(String),
    Missing(String),
    QueryFailed(String),
    NoAnswer(String),
}

/// Reads the marker from the new pod once its server answers (see [`server_answers`]).
async fn read_after(
    kube: &Kube,
    plan: &Plan,
    deadline: tokio::time::Instant,
    progress: &Progress,
    report: &mut PersistReport,
) -> ReadAfter {
    progress.set(format!(
        "reading the marker back from the new pod {}",
        plan.pod_name
    ));
    if let Err(failed) = server_answers(kube, plan, deadline, progress, report).await {
        return failed;
    }
    let script = plan.engine.commands().read_marker(&report.marker.data);
    let output = match run_sql(kube, plan, &script, EXEC_TIMEOUT).await {
        Ok(output) => output,
        Err(err) => return ReadAfter::NoAnswer(err.chain_with_hint()),
    };
    if !output.status.success() {
        return ReadAfter::QueryFailed(query_failure(&sql_failure(&output)));
    }
    let rows = sql::parse_rows(&output.stdout_text());
    match rows.iter().find(|row| Some(row.id) == report.marker.id) {
        Some(row) => ReadAfter::Found(format!(
            "row id {} is back, created_at {}",
            row.id, row.created_at
        )),
        None if rows.is_empty() => ReadAfter::Missing(format!(
            "{}.{} exists but has no row with the marker: the data written before the delete is gone",
            sql::DATABASE,
            sql::TABLE
        )),
        None => {
            let ids: Vec<String> = rows.iter().map(|r| r.id.to_string()).collect();
            let want = report.marker.id.map(|id| id.to_string());
            ReadAfter::Missing(format!(
                "the marker came back with id(s) {} instead of {}",
                ids.join(", "),
                want.unwrap_or_default()
            ))
        }
    }
}

/// What a failed marker query means: the table or database gone is data that did not
/// survive; anything else is the query's failure.
fn query_failure(error: &str) -> String {
    let lower = error.to_ascii_lowercase();
    if lower.contains("doesn't exist")
        || lower.contains("does not exist")
        || lower.contains("unknown database")
    {
        return format!(
            "{}.{} is gone: the data written before the delete did not survive ({error})",
            sql::DATABASE,
            sql::TABLE
        );
    }
    format!("the marker query failed: {error}")
}

/// Waits (within the deadline) for the new pod's server to accept queries: a pod can be
/// Ready before that when its readiness probe is weaker than a query. There is no API
/// object to watch for that, so this one wait retries every second.
async fn server_answers(
    kube: &Kube,
    plan: &Plan,
    deadline: tokio::time::Instant,
    progress: &Progress,
    report: &mut PersistReport,
) -> Result<(), ReadAfter> {
    let ping = plan.engine.commands().ping();
    loop {
        let budget = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(EXEC_TIMEOUT)
            .max(Duration::from_secs(1));
        let waiting = match run_sql(kube, plan, &ping, budget).await {
            Ok(output) if output.status.success() => return Ok(()),
            Ok(output) if sql::server_not_answering(&output.stderr_text()) => sql_failure(&output),
            Ok(output) => {
                return Err(ReadAfter::QueryFailed(format!(
                    "even SELECT 1 failed: {}",
                    sql_failure(&output)
                )));
            }
            Err(err) => err.chain_with_hint(),
        };
        report.last_seen = Some(format!(
            "new pod Ready but the server does not answer yet: {waiting}"
        ));
        progress.set(format!(
            "waiting for the server in pod {} to answer",
            plan.pod_name
        ));
        if tokio::time::Instant::now() + Duration::from_secs(1) >= deadline {
            return Err(ReadAfter::NoAnswer(format!(
                "the server did not answer before the timeout: {waiting}"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Removes the test data unless `--keep`; a failure here is a warning, not a failed test.
async fn cleanup(kube: &Kube, plan: &Plan, report: &mut PersistReport, created: Created) {
    if report.kept_test_data {
        report.skip(
            steps::CLEANUP,
            format!("kept (--keep): {}", cleanup_hint(plan, &report.marker.data)),
        );
        return;
    }
    let step = Instant::now();
    let script = plan
        .engine
        .commands()
        .remove_marker(&report.marker.data, created);
    let warning = match run_sql(kube, plan, &script, EXEC_TIMEOUT).await {
        Ok(output) if output.status.success() => {
            let what = match created {
                Created { database: true, .. } => format!("dropped database {}", sql::DATABASE),
                Created { table: true, .. } => {
                    format!("dropped table {}.{}", sql::DATABASE, sql::TABLE)
                }
                _ => "deleted the marker row".into(),
            };
            report.pass(steps::CLEANUP, step, what);
            return;
        }
        Ok(output) => sql_failure(&output),
        Err(err) => err.chain_with_hint(),
    };
    report.push(steps::CLEANUP, StepResult::Warning, step, warning);
}

fn cleanup_hint(plan: &Plan, marker: &str) -> String {
    format!(
        "the marker row stays in {}.{} of pod {} (data = '{marker}')",
        sql::DATABASE,
        sql::TABLE,
        plan.pod_name
    )
}

fn write_detail(created: Created, id: i64) -> String {
    let made = match created {
        Created { database: true, .. } => format!(
            "created database {} and table {}; ",
            sql::DATABASE,
            sql::TABLE
        ),
        Created { table: true, .. } => format!("created table {}.{}; ", sql::DATABASE, sql::TABLE),
        _ => String::new(),
    };
    format!(
        "{made}inserted row id {id} into {}.{}",
        sql::DATABASE,
        sql::TABLE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_unique_and_safe() {
        let a = new_marker();
        let b = new_marker();
        assert_ne!(a, b);
        assert!(sql::is_safe_marker(&a), "{a}");
        assert!(a.starts_with("kubectl-dbpersist "));
    }

    #[test]
    fn a_missing_table_is_data_that_did_not_survive() {
        assert!(
            query_failure("ERROR 1146 (42S02): Table 'testdb.persistent_test' doesn't exist")
                .contains("is gone: the data written before the delete did not survive")
        );
        assert!(query_failure("ERROR: permission denied").starts_with("the marker query failed"));
    }
}
