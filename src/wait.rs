//! Watch-based waits (never sleep loops): a StatefulSet rolled out with every pod Ready,
//! with a live message of what is being waited for and the Warning events the cluster
//! reports meanwhile. Watches are re-established with backoff if the API server goes away.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde::Serialize;

use crate::client::Kube;
use crate::output::Progress;

/// A Warning event seen while waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WarningEvent {
    /// `Kind/name` of the object the event is about.
    pub object: String,
    pub reason: String,
    pub message: String,
    pub count: i32,
}

impl WarningEvent {
    /// Same object, reason and message (the count may differ).
    pub fn same_as(&self, other: &WarningEvent) -> bool {
        self.object == other.object && self.reason == other.reason && self.message == other.message
    }
}

impl std::fmt::Display for WarningEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.object,
            self.reason,
            self.message.trim()
        )
    }
}

/// What the wait saw last.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WaitReport {
    /// Whether everything became ready in time.
    pub ready: bool,
    /// How long it took (or how long it waited).
    pub elapsed_seconds: f64,
    /// One line per pod: its phase and why it is not ready.
    pub pods: BTreeMap<String, String>,
    /// PVC name to phase.
    pub pvcs: BTreeMap<String, String>,
    /// Warning events about the StatefulSet, its pods and PVCs.
    pub warnings: Vec<WarningEvent>,
}

impl WaitReport {
    /// What the cluster showed, one line per pod, PVC and Warning event.
    pub fn diagnosis(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.pods.is_empty() {
            lines.push("no pods were created (see the StatefulSet's events)".to_string());
        }
        lines.extend(
            self.pods
                .iter()
                .map(|(pod, state)| format!("pod {pod}: {state}")),
        );
        lines.extend(
            self.pvcs
                .iter()
                .map(|(pvc, phase)| format!("PVC {pvc}: {phase}")),
        );
        lines.extend(self.warnings.iter().map(|w| format!("event: {w}")));
        lines
    }
}

/// One line that says where a pod is: phase, container waiting/terminated reason, readiness.
pub fn pod_state(pod: &Pod) -> String {
    let Some(status) = &pod.status else {
        return "no status yet".into();
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return "Terminating".into();
    }
    let phase = status.phase.clone().unwrap_or_else(|| "Unknown".into());
    if phase == "Pending"
        && let Some(cond) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    {
        return format!(
            "Pending: unschedulable: {}",
            cond.message
                .clone()
                .unwrap_or_else(|| cond.reason.clone().unwrap_or_default())
        );
    }
    for cs in status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
    {
        if let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = waiting.reason.clone().unwrap_or_else(|| "Waiting".into());
            let mut text = format!("{phase}: {} {reason}", cs.name);
            if let Some(message) = &waiting.message {
                text.push_str(&format!(" ({})", first_line(message)));
            }
            if let Some(last) = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
                text.push_str(&format!(
                    "; last exit {} {}",
                    last.exit_code,
                    last.reason.clone().unwrap_or_default()
                ));
            }
            return text;
        }
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if ready {
        format!("{phase}, ready")
    } else {
        format!("{phase}, not ready")
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// True when the pod's Ready condition is True and it is not being deleted.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// True when the StatefulSet's controller has rolled out the current spec to every replica
/// and all of them are ready.
pub fn rollout_complete(sts: &StatefulSet) -> bool {
    let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &sts.status else {
        return false;
    };
    let generation = sts.metadata.generation.unwrap_or(0);
    status.observed_generation.unwrap_or(0) >= generation
        && status.ready_replicas.unwrap_or(0) >= want
        && status.updated_replicas.unwrap_or(0) >= want
        && status.replicas == want
        && (status.update_revision.is_none() || status.current_revision == status.update_revision)
}

/// Converts an event to a [`WarningEvent`] when it is a Warning about one of `objects`.
pub fn warning_about(event: &Event, objects: &dyn Fn(&str, &str) -> bool) -> Option<WarningEvent> {
    if event.type_.as_deref() != Some("Warning") {
        return None;
    }
    let kind = event.involved_object.kind.clone().unwrap_or_default();
    let name = event.involved_object.name.clone().unwrap_or_default();
    if !objects(&kind, &name) {
        return None;
    }
    Some(WarningEvent {
        object: format!("{kind}/{name}"),
        reason: event.reason.clone().unwrap_or_default(),
        message: event.message.clone().unwrap_or_default(),
        count: event.count.unwrap_or(1),
    })
}

/// When an event last happened: lastTimestamp, else eventTime, else its creation.
pub fn event_time(event: &Event) -> Option<k8s_openapi::jiff::Timestamp> {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

enum Change {
    Sts(Box<StatefulSet>),
    Pod(Box<Pod>, bool),
    Pvc(Box<PersistentVolumeClaim>, bool),
    Event(Box<Event>),
}

/// The API error in a watch error that retrying cannot fix: the user may not list or
/// watch the resource (401, 403). The watcher would retry it until the deadline and the
/// user would see a timeout instead of the permission that is missing.
pub fn refusal(err: watcher::Error) -> Result<kube::Error, watcher::Error> {
    let refused = |code: u16| code == 401 || code == 403;
    match err {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e)
            if matches!(&e, kube::Error::Api(s) if refused(s.code)) =>
        {
            Ok(e)
        }
        watcher::Error::WatchError(status) if refused(status.code) => Ok(kube::Error::Api(status)),
        other => Err(other),
    }
}

/// Waits until the StatefulSet `name` is rolled out and all its pods are Ready, or until
/// `timeout`. Transient API trouble is not an error: watches retry until the deadline, and
/// the report says what was last seen. A refused watch (401/403) is an error at once.
pub async fn statefulset_ready(
    kube: &Kube,
    name: &str,
    timeout: Duration,
    progress: &Progress,
) -> crate::Result<WaitReport> {
    let started = Instant::now();
    let since =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(5);
    let selector = crate::render::selector(name);
    let config = watcher::Config::default().timeout(60);
    // Watches may be quiet for long: the stream client has no read timeout (client.rs).
    let sts_api: Api<StatefulSet> = kube.watch_api();
    let pods: Api<Pod> = kube.watch_api();
    let pvcs: Api<PersistentVolumeClaim> = kube.watch_api();
    let events: Api<Event> = kube.watch_api();

    let sts_stream = watcher(
        sts_api,
        config.clone().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .applied_objects()
    .map_ok(|s| Change::Sts(Box::new(s)));
    let pod_stream = watcher(pods, config.clone().labels(&selector))
        .default_backoff()
        .filter_map(|e| async move {
            match e {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                    Some(Ok(Change::Pod(Box::new(p), false)))
                }
                Ok(watcher::Event::Delete(p)) => Some(Ok(Change::Pod(Box::new(p), true))),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            }
        });
    let pvc_stream = watcher(pvcs, config.clone().labels(&selector))
        .default_backoff()
        .filter_map(|e| async move {
            match e {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                    Some(Ok(Change::Pvc(Box::new(p), false)))
                }
                Ok(watcher::Event::Delete(p)) => Some(Ok(Change::Pvc(Box::new(p), true))),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            }
        });
    let event_stream = watcher(events, config)
        .default_backoff()
        .applied_objects()
        .map_ok(|e| Change::Event(Box::new(e)));
    let mut changes = futures::stream::select_all(vec![
        sts_stream.boxed(),
        pod_stream.boxed(),
        pvc_stream.boxed(),
        event_stream.boxed(),
    ]);

    let pod_prefix = format!("{name}-");
    let ours = |kind: &str, object: &str| match kind {
        "StatefulSet" => object == name,
        "Pod" => object
            .strip_prefix(&pod_prefix)
            .is_some_and(|o| o.parse::<u32>().is_ok()),
        "PersistentVolumeClaim" => crate::render::is_data_claim_of(object, name),
        _ => false,
    };

    let mut report = WaitReport::default();
    let mut sts: Option<StatefulSet> = None;
    let mut pod_objects: BTreeMap<String, Pod> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let done = sts.as_ref().is_some_and(rollout_complete)
            && !pod_objects.is_empty()
            && pod_objects.values().all(pod_ready);
        if done {
            report.ready = true;
            break;
        }
        progress.set(waiting_message(name, sts.as_ref(), &report));
        let next = match tokio::time::timeout_at(deadline, changes.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(next)) => next,
        };
        match next {
            Ok(Change::Sts(s)) => sts = Some(*s),
            Ok(Change::Pod(pod, deleted)) => {
                let pod_name = pod.name_any();
                if deleted {
                    pod_objects.remove(&pod_name);
                    report.pods.remove(&pod_name);
                } else {
                    report.pods.insert(pod_name.clone(), pod_state(&pod));
                    pod_objects.insert(pod_name, *pod);
                }
            }
            Ok(Change::Pvc(pvc, deleted)) => {
                let phase = pvc
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_default();
                if deleted {
                    report.pvcs.remove(&pvc.name_any());
                } else {
                    report.pvcs.insert(pvc.name_any(), phase);
                }
            }
            Ok(Change::Event(event)) => {
                let recent = event_time(&event).is_some_and(|t| t >= since);
                if let Some(warning) = recent.then(|| warning_about(&event, &ours)).flatten() {
                    // The same event comes back with a higher count; show it once.
                    match report.warnings.iter_mut().find(|w| w.same_as(&warning)) {
                        Some(seen) => seen.count = warning.count,
                        None => {
                            progress.println(format!("warning: {warning}"));
                            report.warnings.push(warning);
                        }
                    }
                }
            }
            Err(err) => match refusal(err) {
                Ok(source) => {
                    return Err(crate::Error::Api {
                        action: format!(
                            "watch StatefulSet {}/{name}, its pods, PVCs and events",
                            kube.namespace
                        ),
                        source,
                    });
                }
                Err(err) => {
                    tracing::debug!(%err, "watch error; retrying");
                    progress.set(format!("waiting for {name}: API error, retrying: {err}"));
                }
            },
        }
    }
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn waiting_message(name: &str, sts: Option<&StatefulSet>, report: &WaitReport) -> String {
    if let Some((pvc, phase)) = report
        .pvcs
        .iter()
        .find(|(_, phase)| phase.as_str() != "Bound")
    {
        return format!("waiting for PVC {pvc} to bind ({phase})");
    }
    if let Some((pod, state)) = report.pods.iter().find(|(_, s)| !s.ends_with(", ready")) {
        return format!("waiting for pod {pod}: {state}");
    }
    match sts.and_then(|s| s.status.as_ref()) {
        Some(status) => format!(
            "waiting for StatefulSet {name}: {}/{} ready, {} updated",
            status.ready_replicas.unwrap_or(0),
            status.replicas,
            status.updated_replicas.unwrap_or(0)
        ),
        None => format!("waiting for StatefulSet {name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, PodCondition, PodStatus,
    };

    #[test]
    fn pod_state_names_the_waiting_reason() {
        let pod = Pod {
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "postgres".into(),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("ErrImagePull".into()),
                            message: Some("pull failed\nmore".into()),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            pod_state(&pod),
            "Pending: postgres ErrImagePull (pull failed)"
        );
        assert!(!pod_ready(&pod));
    }

    #[test]
    fn unschedulable_is_explained() {
        let pod = Pod {
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                conditions: Some(vec![PodCondition {
                    type_: "PodScheduled".into(),
                    status: "False".into(),
                    message: Some("0/1 nodes are available: 1 Insufficient cpu.".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(pod_state(&pod).contains("Insufficient cpu"));
    }
}
