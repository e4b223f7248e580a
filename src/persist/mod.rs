//! `kubectl dbpersist`: the guide's persistence test with evidence. Write a unique marker
//! row into `testdb.persistent_test`, read it back, record the pod's UID and its volumes'
//! PVC UIDs, delete the pod, watch until the StatefulSet has replaced it (same name, new
//! UID, Ready), read the marker again and check every PVC is the same object.
//!
//! [`plan`] only reads (so the binary can say which pod it will delete and ask); [`run`]
//! does the test and returns a [`PersistReport`] whatever happens after the delete —
//! failure, timeout or Ctrl-C — so the user always sees the state last seen.

mod print;
pub mod report;
pub mod sql;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use crate::client::Kube;
use crate::engine::{Engine, Query};
use crate::error::{Error, Result};
use crate::exec::{self, ExecOutput};
use crate::output::Progress;
use crate::target::{self, statefulset_pods};
use crate::wait::{event_time, pod_ready, pod_state, warning_about};

pub use report::{ClaimRecord, PersistReport, PodRecord, Step, StepResult, Verdict};
use sql::Created;

/// Time limit of the API calls made outside watches.
const API_TIMEOUT: Duration = Duration::from_secs(30);

/// Time limit of one SQL exec.
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// Step names, as shown in the report.
pub mod steps {
    pub const STORAGE: &str = "check data volume";
    pub const WRITE: &str = "write marker";
    pub const READ_BEFORE: &str = "read marker";
    pub const RECORD: &str = "record pod and volumes";
    pub const DELETE: &str = "delete pod";
    pub const WAIT: &str = "wait for new pod";
    pub const READ_AFTER: &str = "read marker after restart";
    pub const VOLUMES: &str = "compare volumes";
    pub const CLEANUP: &str = "remove test data";
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct PersistOptions {
    /// A pod (`mysql-0`) or a StatefulSet (`mysql`).
    pub target: String,
    /// The pod to test when the target is a StatefulSet: a name or an ordinal.
    pub pod: Option<String>,
    /// Budget for the replacement pod to become Ready and its server to answer.
    pub timeout: Duration,
    /// Leave the marker row (and what was created for it) in place.
    pub keep: bool,
    /// Run the test even when the data directory is not on a PersistentVolumeClaim, which
    /// destroys the pod's data; without it such a pod is a FAIL from its spec alone.
    pub delete_ephemeral_data: bool,
}

impl PersistOptions {
    /// Checks the options before any API call.
    pub fn validate(&self) -> Result<()> {
        if self.timeout.is_zero() {
            return Err(Error::Usage("--timeout must be more than 0".into()));
        }
        for name in std::iter::once(&self.target).chain(self.pod.as_ref()) {
            if !is_dns_label(name) {
                return Err(Error::Usage(format!(
                    "invalid name {name:?}: expected a pod or StatefulSet name such as mysql-0 or mysql"
                )));
            }
        }
        Ok(())
    }
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The pod the test will delete, decided before anything changes.
#[derive(Debug, Clone)]
pub struct Plan {
    pub namespace: String,
    pub pod_name: String,
    pub statefulset: String,
    pub engine: Engine,
    pub container: String,
    /// The pod as it is now.
    pub record: PodRecord,
    /// Why the data directory would not survive the delete (`None`: it is on a PVC).
    pub ephemeral: Option<String>,
}

impl Plan {
    /// Whether the test may delete the pod: its data is on a PVC, or the user said
    /// `--delete-ephemeral-data`. When not, [`run`] reports FAIL without writing anything.
    pub fn may_delete(&self, options: &PersistOptions) -> bool {
        self.ephemeral.is_none() || options.delete_ephemeral_data
    }

    /// How to make the data persistent, for a FAIL from the pod spec.
    pub fn storage_fix(&self) -> String {
        format!(
            "fix: put the data directory ({}) on a PersistentVolumeClaim: a volumeClaimTemplates entry in StatefulSet {}/{} (it cannot be added in place: `kubectl dbbackup dump {}`, recreate the StatefulSet with it, `kubectl dbbackup restore`), or deploy with `kubectl dbdeploy`; --delete-ephemeral-data runs the test anyway and destroys this pod's data",
            self.engine.data_mount(),
            self.namespace,
            self.statefulset,
            self.pod_name
        )
    }

    /// One line saying what will be deleted, for the announcement and the confirmation.
    pub fn describe(&self) -> String {
        let claims = if self.record.claims.is_empty() {
            "no PersistentVolumeClaim".to_string()
        } else {
            self.record
                .claims
                .iter()
                .map(|c| format!("PVC {}", c.claim))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "pod {}/{} (uid {}, node {}, {claims}) of StatefulSet {}",
            self.namespace,
            self.pod_name,
            self.record.uid,
            self.record.node.as_deref().unwrap_or("none"),
            self.statefulset
        )
    }
}

/// Resolves the target to one Ready StatefulSet pod, refusing what the test must not touch:
/// a pod no StatefulSet would recreate, or a StatefulSet of several pods with none named.
pub async fn plan(kube: &Kube, options: &PersistOptions) -> Result<Plan> {
    let target = within(
        format!("resolve {} in namespace {}", options.target, kube.namespace),
        async { target::resolve(kube, &options.target).await },
    )
    .await?;
    let ns = target.namespace.clone();
    let named_pod = target.pod_name == options.target;
    let Some(sts) = target.statefulset.clone() else {
        return Err(Error::Refused(format!(
            "pod {ns}/{} is not managed by a StatefulSet: deleting it would leave the database without a pod; dbpersist only tests StatefulSet pods",
            target.pod_name
        )));
    };
    let sts_name = sts.name_any();
    let members = statefulset_pods(&sts);
    let pod_name = match &options.pod {
        Some(pod) => {
            let wanted = if pod.chars().all(|c| c.is_ascii_digit()) {
                format!("{sts_name}-{pod}")
            } else {
                pod.clone()
            };
            if named_pod && wanted != target.pod_name {
                return Err(Error::Refused(format!(
                    "TARGET names pod {} but --pod names {wanted}; give one of them",
                    target.pod_name
                )));
            }
            if !members.contains(&wanted) {
                return Err(Error::Refused(format!(
                    "pod {wanted} is not a pod of StatefulSet {ns}/{sts_name} (its pods: {})",
                    members.join(", ")
                )));
            }
            wanted
        }
        None if !named_pod && members.len() > 1 => {
            return Err(Error::Refused(format!(
                "StatefulSet {ns}/{sts_name} has {} replicas, each with its own data: name the pod to delete with --pod (e.g. --pod {sts_name}-0)",
                members.len()
            )));
        }
        None => target.pod_name.clone(),
    };
    let pods: Api<Pod> = kube.api();
    let pod = within(
        format!("read pod {ns}/{pod_name}"),
        api(pods.get_opt(&pod_name)),
    )
    .await?
    .ok_or_else(|| {
        Error::Failed(format!(
            "pod {ns}/{pod_name} does not exist; the test needs it running and Ready"
        ))
    })?;
    if !pod_ready(&pod) {
        return Err(Error::Failed(format!(
            "pod {ns}/{pod_name} is not Ready ({}); run `kubectl dbcheck {pod_name}` and fix it before testing persistence",
            pod_state(&pod)
        )));
    }
    let record = record_pod(kube, &pod, target.engine, &target.container).await?;
    let ephemeral = report::ephemeral_data(&pod, target.engine, &target.container);
    Ok(Plan {
        namespace: ns,
        pod_name,
        statefulset: sts_name,
        engine: target.engine,
        container: target.container,
        record,
        ephemeral,
    })
}

/// The pod's UID and node, and every PVC it mounts with the PVC's UID and bound volume.
pub async fn record_pod(
    kube: &Kube,
    pod: &Pod,
    engine: Engine,
    container: &str,
) -> Result<PodRecord> {
    let pvcs: Api<PersistentVolumeClaim> = kube.api();
    let mut claims = Vec::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let Some(source) = &volume.persistent_volume_claim else {
            continue;
        };
        let what = format!(
            "read PersistentVolumeClaim {}/{}",
            kube.namespace, source.claim_name
        );
        let pvc = within(what, api(pvcs.get_opt(&source.claim_name))).await?;
        claims.push(ClaimRecord {
            volume: volume.name.clone(),
            claim: source.claim_name.clone(),
            uid: pvc.as_ref().and_then(|p| p.metadata.uid.clone()),
            persistent_volume: pvc
                .as_ref()
                .and_then(|p| p.spec.as_ref())
                .and_then(|s| s.volume_name.clone()),
        });
    }
    Ok(PodRecord {
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        claims,
        data_volume: report::data_volume(pod, engine, container),
    })
}

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

    // Judge the storage from the pod spec before anything is written: a pod whose data
    // dies with it is a FAIL as it stands, and deleting it would only destroy that data.
    let step = Instant::now();
    match &plan.ephemeral {
        None => report.pass(
            steps::STORAGE,
            step,
            format!(
                "data directory on {}",
                plan.record
                    .data_volume
                    .as_deref()
                    .unwrap_or("a PersistentVolumeClaim")
            ),
        ),
        Some(reason) if options.delete_ephemeral_data => {
            let detail = format!(
                "{reason}; testing anyway (--delete-ephemeral-data): the pod's data is lost"
            );
            progress.println(format!("warning: pod {}: {detail}", plan.pod_name));
            report.push(steps::STORAGE, StepResult::Warning, step, detail);
        }
        Some(reason) => {
            let seen = format!(
                "{reason}; nothing was written or deleted. {}",
                plan.storage_fix()
            );
            report.fail(steps::STORAGE, step, seen, crate::cli::exit::UNHEALTHY);
            report.before = Some(plan.record.clone());
            return Ok(report.finish(started));
        }
    }

    // Write and read back, before anything is deleted.
    progress.set(format!(
        "writing the marker into {}.{} in pod {}",
        sql::DATABASE,
        sql::TABLE,
        plan.pod_name
    ));
    let step = Instant::now();
    let output = run_sql(
        kube,
        plan,
        &plan.engine.commands().write_marker(&marker),
        EXEC_TIMEOUT,
    )
    .await?;
    let created = match (
        output.status.success(),
        sql::parse_write(&output.stdout_text()),
    ) {
        (true, Some((created, id))) => {
            report.marker.id = Some(id);
            report.pass(steps::WRITE, step, write_detail(created, id));
            created
        }
        (true, None) => {
            let seen = format!("unexpected output {:?}", output.stdout_text());
            report.fail(steps::WRITE, step, seen, crate::cli::exit::UNHEALTHY);
            return Ok(report.finish(started));
        }
        (false, _) => {
            report.fail(
                steps::WRITE,
                step,
                sql_failure(&output),
                crate::cli::exit::UNHEALTHY,
            );
            return Ok(report.finish(started));
        }
    };

    let step = Instant::now();
    let output = run_sql(
        kube,
        plan,
        &plan.engine.commands().read_marker(&marker),
        EXEC_TIMEOUT,
    )
    .await?;
    let rows = sql::parse_rows(&output.stdout_text());
    match rows.as_slice() {
        [row] if output.status.success() && Some(row.id) == report.marker.id => {
            report.marker.created_at = Some(row.created_at.clone());
            report.pass(
                steps::READ_BEFORE,
                step,
                format!("row id {} came back, created_at {}", row.id, row.created_at),
            );
        }
        _ => {
            let seen = if output.status.success() {
                format!("{} matching rows", rows.len())
            } else {
                sql_failure(&output)
            };
            report.fail(steps::READ_BEFORE, step, seen, crate::cli::exit::UNHEALTHY);
            cleanup(kube, plan, &mut report, created).await;
            return Ok(report.finish(started));
        }
    }

    // Record what must survive, as close to the delete as possible.
    progress.set(format!("recording pod {} and its volumes", plan.pod_name));
    let step = Instant::now();
    let pods: Api<Pod> = kube.api();
    let what = format!("read pod {}/{}", plan.namespace, plan.pod_name);
    let current = within(what, api(pods.get(&plan.pod_name))).await?;
    let before = record_pod(kube, &current, plan.engine, &plan.container).await?;
    report.pass(steps::RECORD, step, before.summary());
    report.before = Some(before.clone());

    // Delete exactly the pod recorded: the UID precondition refuses a pod recreated meanwhile.
    progress.set(format!("deleting pod {}", plan.pod_name));
    let step = Instant::now();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(before.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let what = format!("delete pod {}/{}", plan.namespace, plan.pod_name);
    if let Err(err) = within(what, api(pods.delete(&plan.pod_name, &params))).await {
        let seen = format!("the pod was not deleted: {}", err.chain_with_hint());
        report.fail(steps::DELETE, step, seen, crate::cli::exit::CLUSTER);
        cleanup(kube, plan, &mut report, created).await;
        return Ok(report.finish(started));
    }
    report.pass(
        steps::DELETE,
        step,
        format!("deleted uid {} with its normal grace period", before.uid),
    );

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
    report.begin(steps::WAIT);
    let step = Instant::now();
    let Some(new_pod) =
        wait_for_replacement(kube, plan, &before.uid, deadline, progress, report).await
    else {
        let seen = format!(
            "no Ready pod with a new UID within {}s; last seen: {}",
            options.timeout.as_secs(),
            report.last_seen.clone().unwrap_or_else(|| "nothing".into())
        );
        report.fail(steps::WAIT, step, seen, crate::cli::exit::CLUSTER);
        report.skip(steps::CLEANUP, cleanup_hint(plan, &report.marker.data));
        return;
    };
    let new_record = match record_pod(kube, &new_pod, plan.engine, &plan.container).await {
        Ok(record) => record,
        Err(err) => {
            report.fail(
                steps::WAIT,
                step,
                format!(
                    "failed to read the new pod's volumes: {}",
                    err.chain_with_hint()
                ),
                crate::cli::exit::CLUSTER,
            );
            return;
        }
    };
    report.pass(
        steps::WAIT,
        step,
        format!(
            "new uid {} Ready on node {}",
            new_record.uid,
            new_record.node.as_deref().unwrap_or("none")
        ),
    );
    report.after = Some(new_record.clone());

    report.begin(steps::READ_AFTER);
    let step = Instant::now();
    let marker_gone = match read_after(kube, plan, deadline, progress, report).await {
        ReadAfter::Found(detail) => {
            report.pass(steps::READ_AFTER, step, detail);
            false
        }
        ReadAfter::Missing(seen) => {
            report.fail(steps::READ_AFTER, step, seen, crate::cli::exit::UNHEALTHY);
            false
        }
        ReadAfter::QueryFailed(seen) => {
            report.fail(steps::READ_AFTER, step, seen, crate::cli::exit::UNHEALTHY);
            true
        }
        ReadAfter::NoAnswer(seen) => {
            report.fail(steps::READ_AFTER, step, seen, crate::cli::exit::CLUSTER);
            report.skip(
                steps::VOLUMES,
                "not compared: the server did not answer".into(),
            );
            report.skip(steps::CLEANUP, cleanup_hint(plan, &report.marker.data));
            return;
        }
    };

    let step = Instant::now();
    match report::compare_volumes(before, &new_record) {
        Ok(detail) => report.pass(steps::VOLUMES, step, detail),
        Err(seen) => report.fail(steps::VOLUMES, step, seen, crate::cli::exit::UNHEALTHY),
    }

    if marker_gone {
        report.skip(
            steps::CLEANUP,
            format!(
                "nothing to remove: {}.{} is gone",
                sql::DATABASE,
                sql::TABLE
            ),
        );
    } else {
        cleanup(kube, plan, report, created).await;
    }
}

/// Watches the pod by name until one with a UID other than `old_uid` is Ready.
async fn wait_for_replacement(
    kube: &Kube,
    plan: &Plan,
    old_uid: &str,
    deadline: tokio::time::Instant,
    progress: &Progress,
    report: &mut PersistReport,
) -> Option<Pod> {
    enum Change {
        Pod(Box<Pod>, bool),
        Event(Box<Event>),
    }
    let since =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(2);
    let config = watcher::Config::default().timeout(60);
    let pods: Api<Pod> = kube.watch_api();
    let events: Api<Event> = kube.watch_api();
    let pod_stream = watcher(
        pods,
        config
            .clone()
            .fields(&format!("metadata.name={}", plan.pod_name)),
    )
    .default_backoff()
    .filter_map(|event| async move {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                Some(Ok(Change::Pod(Box::new(pod), false)))
            }
            Ok(watcher::Event::Delete(pod)) => Some(Ok(Change::Pod(Box::new(pod), true))),
            Ok(_) => None,
            Err(err) => Some(Err(err)),
        }
    });
    let event_stream = watcher(
        events,
        config.fields(&format!("involvedObject.name={}", plan.pod_name)),
    )
    .default_backoff()
    .applied_objects()
    .map(|event| event.map(|e| Change::Event(Box::new(e))));
    let mut changes = futures::stream::select(pod_stream.boxed(), event_stream.boxed());

    let short_old = short_uid(old_uid);
    report.last_seen = Some(format!(
        "pod {} (uid {short_old}) terminating",
        plan.pod_name
    ));
    loop {
        progress.set(format!(
            "waiting for a new pod {}: {}",
            plan.pod_name,
            report.last_seen.as_deref().unwrap_or("")
        ));
        let next = match tokio::time::timeout_at(deadline, changes.next()).await {
            Err(_) | Ok(None) => return None,
            Ok(Some(next)) => next,
        };
        match next {
            Ok(Change::Pod(pod, deleted)) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let seen = match (uid == old_uid, deleted) {
                    (true, true) => format!(
                        "old pod (uid {short_old}) gone; waiting for the StatefulSet to create a new one"
                    ),
                    (true, false) => format!("old pod (uid {short_old}): {}", pod_state(&pod)),
                    (false, true) => format!("new pod (uid {}) was deleted", short_uid(&uid)),
                    (false, false) => {
                        format!("new pod (uid {}): {}", short_uid(&uid), pod_state(&pod))
                    }
                };
                tracing::debug!(seen, "pod change");
                report.last_seen = Some(seen);
                if uid != old_uid && !deleted && pod_ready(&pod) {
                    return Some(*pod);
                }
            }
            Ok(Change::Event(event)) => {
                let recent = event_time(&event).is_some_and(|t| t >= since);
                let ours = |kind: &str, name: &str| kind == "Pod" && name == plan.pod_name;
                if let Some(warning) = recent.then(|| warning_about(&event, &ours)).flatten()
                    && !report
                        .warnings
                        .iter()
                        .any(|w| w.reason == warning.reason && w.message == warning.message)
                {
                    progress.println(format!("warning: {warning}"));
                    report.warnings.push(warning);
                }
            }
            Err(err) => match crate::wait::refusal(err) {
                // Retrying a refused watch until the deadline would only hide the reason.
                Ok(source) => {
                    let err = Error::Api {
                        action: format!("watch pod {}/{}", plan.namespace, plan.pod_name),
                        source,
                    };
                    report.last_seen = Some(err.chain_with_hint());
                    return None;
                }
                Err(err) => {
                    tracing::debug!(%err, "watch error; retrying");
                    report.last_seen = Some(format!("API error while watching, retrying: {err}"));
                }
            },
        }
    }
}

enum ReadAfter {
    Found(String),
    Missing(String),
    QueryFailed(String),
    NoAnswer(String),
}

/// Reads the marker from the new pod, first waiting (within the deadline) for its server to
/// accept queries: a pod can be Ready before that when its readiness probe is weaker than a
/// query. There is no API object to watch for that, so this one wait retries every second.
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
    let ping = plan.engine.commands().ping();
    loop {
        let budget = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(EXEC_TIMEOUT);
        let waiting = match run_sql(kube, plan, &ping, budget.max(Duration::from_secs(1))).await {
            Ok(output) if output.status.success() => break,
            Ok(output) if sql::server_not_answering(&output.stderr_text()) => sql_failure(&output),
            Ok(output) => {
                return ReadAfter::QueryFailed(format!(
                    "even SELECT 1 failed: {}",
                    sql_failure(&output)
                ));
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
            return ReadAfter::NoAnswer(format!(
                "the server did not answer before the timeout: {waiting}"
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let output = match run_sql(
        kube,
        plan,
        &plan.engine.commands().read_marker(&report.marker.data),
        EXEC_TIMEOUT,
    )
    .await
    {
        Ok(output) => output,
        Err(err) => return ReadAfter::NoAnswer(err.chain_with_hint()),
    };
    if !output.status.success() {
        let error = sql_failure(&output);
        let lower = error.to_ascii_lowercase();
        if lower.contains("doesn't exist")
            || lower.contains("does not exist")
            || lower.contains("unknown database")
        {
            return ReadAfter::QueryFailed(format!(
                "{}.{} is gone: the data written before the delete did not survive ({error})",
                sql::DATABASE,
                sql::TABLE
            ));
        }
        return ReadAfter::QueryFailed(format!("the marker query failed: {error}"));
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
        None => ReadAfter::Missing(format!(
            "the marker came back with id(s) {} instead of {}",
            rows.iter()
                .map(|r| r.id.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            report
                .marker
                .id
                .map(|id| id.to_string())
                .unwrap_or_default()
        )),
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
    let query = plan
        .engine
        .commands()
        .remove_marker(&report.marker.data, created);
    match run_sql(kube, plan, &query, EXEC_TIMEOUT).await {
        Ok(output) if output.status.success() => {
            let what = match created {
                Created { database: true, .. } => format!("dropped database {}", sql::DATABASE),
                Created { table: true, .. } => {
                    format!("dropped table {}.{}", sql::DATABASE, sql::TABLE)
                }
                _ => "deleted the marker row".into(),
            };
            report.pass(steps::CLEANUP, step, what);
        }
        Ok(output) => report.push(
            steps::CLEANUP,
            StepResult::Warning,
            step,
            sql_failure(&output),
        ),
        Err(err) => report.push(
            steps::CLEANUP,
            StepResult::Warning,
            step,
            err.chain_with_hint(),
        ),
    }
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

/// What a failed SQL run said: its stderr's last lines, or its exit status.
fn sql_failure(output: &ExecOutput) -> String {
    let stderr = output.stderr_text();
    if stderr.is_empty() {
        output.status.to_string()
    } else {
        sql::error_text(&stderr)
    }
}

async fn run_sql(kube: &Kube, plan: &Plan, query: &Query, timeout: Duration) -> Result<ExecOutput> {
    let pods: Api<Pod> = kube.exec_pods();
    exec::run(
        &pods,
        &plan.pod_name,
        Some(&plan.container),
        &query.argv,
        Some(query.sql.as_bytes()),
        timeout,
    )
    .await
}

/// Runs one API call (or a few) within [`API_TIMEOUT`]; `what` names it in errors.
async fn within<T>(what: String, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(API_TIMEOUT, call).await {
        Ok(result) => result.map_err(|err| match err {
            Error::Api { action, source } if action.is_empty() => Error::Api {
                action: what,
                source,
            },
            other => other,
        }),
        Err(_) => Err(Error::Timeout {
            what,
            after: API_TIMEOUT,
        }),
    }
}

/// Adapts a kube call to [`within`] (the action is filled in there).
async fn api<T>(call: impl std::future::Future<Output = Result<T, kube::Error>>) -> Result<T> {
    call.await.map_err(Error::api(String::new()))
}

/// The first 8 characters of a UID, enough to tell two pods apart in progress lines.
fn short_uid(uid: &str) -> &str {
    uid.get(..8).unwrap_or(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(target: &str, pod: Option<&str>) -> PersistOptions {
        PersistOptions {
            target: target.into(),
            pod: pod.map(Into::into),
            timeout: Duration::from_secs(300),
            keep: false,
            delete_ephemeral_data: false,
        }
    }

    #[test]
    fn options_are_checked_before_any_api_call() {
        assert!(options("mysql-0", None).validate().is_ok());
        assert!(options("mysql", Some("1")).validate().is_ok());
        assert!(matches!(
            options("MySQL", None).validate(),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            options("mysql", Some("a b")).validate(),
            Err(Error::Usage(_))
        ));
        let mut zero = options("mysql", None);
        zero.timeout = Duration::ZERO;
        assert!(matches!(zero.validate(), Err(Error::Usage(_))));
    }

    #[test]
    fn markers_are_unique_and_safe() {
        let a = new_marker();
        let b = new_marker();
        assert_ne!(a, b);
        assert!(sql::is_safe_marker(&a), "{a}");
        assert!(a.starts_with("kubectl-dbpersist "));
    }
}
