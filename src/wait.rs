//! Watch-based waits (never sleep loops): a StatefulSet rolled out with every pod Ready, a
//! deleted pod replaced by a new Ready one, with a live message of what is being waited for
//! and the Warning events the cluster reports meanwhile. Watches are re-established with
//! backoff if the API server goes away. Also the one time limit on any future, [`within`].

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use kube::api::WatchParams;
use kube::runtime::wait::{Condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::Kube;
use crate::error::{Error, Result};
use crate::output::Progress;

/// Runs `work` within `after`, or fails with [`Error::Timeout`] saying what was waited for
/// (`what`: "the API server to return Services", "psql in pod postgres-0"). Every time
/// limit on an API call, exec or stream goes through here.
pub async fn within<T>(
    after: Duration,
    what: impl Into<String>,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(after, work).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            what: what.into(),
            after,
        }),
    }
}

/// A Warning event seen while waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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

type Changes = futures::stream::BoxStream<'static, std::result::Result<Change, watcher::Error>>;

/// Watches objects of one kind: each object applied, or deleted (`true`), as it happens.
fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = std::result::Result<(K, bool), watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(api, config)
        .default_backoff()
        .filter_map(|event| async move {
            match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => Some(Ok((o, false))),
                Ok(watcher::Event::Delete(o)) => Some(Ok((o, true))),
                Ok(_) => None,
                Err(err) => Some(Err(err)),
            }
        })
}

/// What a wait's watches delivered next.
enum Next {
    Change(Change),
    TimedOut,
    Refused(kube::Error),
}

/// The next change before `deadline`. Transient watch errors go to `retrying` (a line for
/// the user) while the watches retry them; a refused watch (401/403) ends the wait.
async fn next_change(
    changes: &mut Changes,
    deadline: tokio::time::Instant,
    mut retrying: impl FnMut(String),
) -> Next {
    loop {
        match tokio::time::timeout_at(deadline, changes.next()).await {
            Err(_) | Ok(None) => return Next::TimedOut,
            Ok(Some(Ok(change))) => return Next::Change(change),
            Ok(Some(Err(err))) => match refusal(err) {
                Ok(source) => return Next::Refused(source),
                Err(err) => {
                    tracing::debug!(%err, "watch error; retrying");
                    retrying(format!("API error while watching, retrying: {err}"));
                }
            },
        }
    }
}

/// Keeps a recent Warning event about one of `ours` and prints it, once: the same event
/// comes back with a higher count.
fn note_warning(
    warnings: &mut Vec<WarningEvent>,
    event: &Event,
    since: k8s_openapi::jiff::Timestamp,
    ours: &dyn Fn(&str, &str) -> bool,
    progress: &Progress,
) {
    let recent = event_time(event).is_some_and(|t| t >= since);
    let Some(warning) = recent.then(|| warning_about(event, ours)).flatten() else {
        return;
    };
    match warnings.iter_mut().find(|w| w.same_as(&warning)) {
        Some(seen) => seen.count = warning.count,
        None => {
            progress.println(format!("warning: {warning}"));
            warnings.push(warning);
        }
    }
}

/// The API error in a watch error that retrying cannot fix: the user may not list or
/// watch the resource (401, 403). The watcher would retry it until the deadline and the
/// user would see a timeout instead of the permission that is missing.
pub fn refusal(err: watcher::Error) -> std::result::Result<kube::Error, watcher::Error> {
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
) -> Result<WaitReport> {
    let started = Instant::now();
    let since =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(5);
    let selector = crate::render::app_selector(name);
    let config = watcher::Config::default().timeout(60);
    // Watches may be quiet for long: the stream client has no read timeout (client.rs).
    let sts = watch(
        kube.watch_api::<StatefulSet>(),
        config.clone().fields(&format!("metadata.name={name}")),
    )
    .try_filter_map(|(s, deleted)| async move { Ok((!deleted).then(|| Change::Sts(Box::new(s)))) });
    let pods = watch(kube.watch_api::<Pod>(), config.clone().labels(&selector))
        .map_ok(|(p, deleted)| Change::Pod(Box::new(p), deleted));
    let pvcs = watch(
        kube.watch_api::<PersistentVolumeClaim>(),
        config.clone().labels(&selector),
    )
    .map_ok(|(p, deleted)| Change::Pvc(Box::new(p), deleted));
    let events =
        watch(kube.watch_api::<Event>(), config).try_filter_map(|(e, deleted)| async move {
            Ok((!deleted).then(|| Change::Event(Box::new(e))))
        });
    let mut changes: Changes = futures::stream::select_all(vec![
        sts.boxed(),
        pods.boxed(),
        pvcs.boxed(),
        events.boxed(),
    ])
    .boxed();

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
        let retrying = |line: String| progress.set(format!("waiting for {name}: {line}"));
        let change = match next_change(&mut changes, deadline, retrying).await {
            Next::Change(change) => change,
            Next::TimedOut => break,
            Next::Refused(source) => {
                return Err(Error::Api {
                    action: format!(
                        "watch StatefulSet {}/{name}, its pods, PVCs and events",
                        kube.namespace
                    ),
                    source,
                });
            }
        };
        match change {
            Change::Sts(s) => sts = Some(*s),
            Change::Pod(pod, deleted) => {
                let pod_name = pod.name_any();
                if deleted {
                    pod_objects.remove(&pod_name);
                    report.pods.remove(&pod_name);
                } else {
                    report.pods.insert(pod_name.clone(), pod_state(&pod));
                    pod_objects.insert(pod_name, *pod);
                }
            }
            Change::Pvc(pvc, deleted) => {
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
            Change::Event(event) => {
                note_warning(&mut report.warnings, &event, since, &ours, progress);
            }
        }
    }
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Waits until pod `name` exists with a UID other than `old_uid` and is Ready (the
/// StatefulSet has replaced the deleted pod), until `deadline` (`Ok(None)` then).
/// `last_seen` (one line about the old or new pod) and `warnings` (Warning events about
/// the pod) are the caller's and kept current, so they survive this future being dropped
/// (Ctrl-C). A refused watch (401/403) is an error at once.
pub async fn replacement_ready(
    kube: &Kube,
    name: &str,
    old_uid: &str,
    deadline: tokio::time::Instant,
    progress: &Progress,
    last_seen: &mut Option<String>,
    warnings: &mut Vec<WarningEvent>,
) -> Result<Option<Pod>> {
    let since =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(2);
    let config = watcher::Config::default().timeout(60);
    let pods = watch(
        kube.watch_api::<Pod>(),
        config.clone().fields(&format!("metadata.name={name}")),
    )
    .map_ok(|(p, deleted)| Change::Pod(Box::new(p), deleted));
    let events = watch(
        kube.watch_api::<Event>(),
        config.fields(&format!("involvedObject.name={name}")),
    )
    .try_filter_map(|(e, deleted)| async move {
        Ok((!deleted).then(|| Change::Event(Box::new(e))))
    });
    let mut changes: Changes = futures::stream::select(pods.boxed(), events.boxed()).boxed();
    let ours = |kind: &str, object: &str| kind == "Pod" && object == name;

    *last_seen = Some(format!(
        "pod {name} (uid {}) terminating",
        short_uid(old_uid)
    ));
    loop {
        let waiting = |seen: &str| format!("waiting for a new pod {name}: {seen}");
        progress.set(waiting(last_seen.as_deref().unwrap_or("")));
        let retrying = |line: String| {
            progress.set(waiting(&line));
            *last_seen = Some(line);
        };
        let change = match next_change(&mut changes, deadline, retrying).await {
            Next::Change(change) => change,
            Next::TimedOut => return Ok(None),
            Next::Refused(source) => {
                return Err(Error::Api {
                    action: format!("watch pod {}/{name}", kube.namespace),
                    source,
                });
            }
        };
        match change {
            Change::Pod(pod, deleted) => {
                let seen = replacement_state(&pod, old_uid, deleted);
                tracing::debug!(seen, "pod change");
                *last_seen = Some(seen);
                let new = pod.metadata.uid.as_deref() != Some(old_uid);
                if new && !deleted && pod_ready(&pod) {
                    return Ok(Some(*pod));
                }
            }
            Change::Event(event) => note_warning(warnings, &event, since, &ours, progress),
            Change::Sts(_) | Change::Pvc(..) => {}
        }
    }
}

/// A started watch of one pod, for [`PodWatch::gone`].
pub struct PodWatch {
    changes: futures::stream::BoxStream<'static, std::result::Result<Option<Pod>, watcher::Error>>,
    uid: String,
    action: String,
}

/// Starts watching pod `name` (of UID `uid`) for its deletion or replacement: the watch's
/// first list happens here, within `budget`, so a refused permission or a pod already
/// gone shows before the caller starts what the watch guards.
pub async fn watch_pod(kube: &Kube, name: &str, uid: &str, budget: Duration) -> Result<PodWatch> {
    let mut watch = PodWatch {
        changes: watcher::watch_object(kube.watch_api::<Pod>(), name)
            .default_backoff()
            .boxed(),
        uid: uid.to_string(),
        action: format!("watch pod {}/{name}", kube.namespace),
    };
    // One watch request first, dropped at once: a refused watch shows here, not half-way
    // through what the watch guards (the watcher below lists first and watches later).
    let field = format!("metadata.name={name}");
    let pods = kube.watch_api::<Pod>();
    let params = WatchParams::default().fields(&field).timeout(1);
    let probe = async {
        let started = pods.watch(&params, "0").await;
        started.map(drop).map_err(Error::api(watch.action.clone()))
    };
    let what = format!("the API server to watch pod {}/{name}", kube.namespace);
    within(budget, what, probe).await?;
    let what = format!("the API server to list pod {}/{name}", kube.namespace);
    if within(budget, what, watch.next_gone()).await? {
        return Err(Error::Failed(format!(
            "pod {}/{name} was deleted or replaced",
            kube.namespace
        )));
    }
    Ok(watch)
}

impl PodWatch {
    /// Returns once the pod is gone, terminating or replaced (another UID): kube's
    /// `await_condition(is_deleted(uid))`, plus terminating, and with the watcher's backoff
    /// (`await_condition` ends at the first API error). Transient API trouble is retried
    /// for as long as the caller waits; a refused watch (401/403) is an error at once.
    pub async fn gone(mut self) -> Result<()> {
        while !self.next_gone().await? {}
        Ok(())
    }

    /// Whether the next state of the pod is gone (see [`PodWatch::gone`]).
    async fn next_gone(&mut self) -> Result<bool> {
        let terminating =
            |pod: Option<&Pod>| pod.is_some_and(|p| p.metadata.deletion_timestamp.is_some());
        let gone = conditions::is_deleted(&self.uid).or(terminating);
        loop {
            match self.changes.next().await {
                Some(Ok(pod)) => return Ok(gone.matches_object(pod.as_ref())),
                Some(Err(err)) => match refusal(err) {
                    Ok(source) => {
                        let action = self.action.clone();
                        return Err(Error::Api { action, source });
                    }
                    Err(err) => tracing::debug!(%err, "pod watch error; retrying"),
                },
                // The watcher never ends; if it did, nothing more can be seen.
                None => std::future::pending::<()>().await,
            }
        }
    }
}

/// One line about a pod while its replacement is awaited.
fn replacement_state(pod: &Pod, old_uid: &str, deleted: bool) -> String {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let short = short_uid(uid);
    match (uid == old_uid, deleted) {
        (true, true) => {
            format!("old pod (uid {short}) gone; waiting for the StatefulSet to create a new one")
        }
        (true, false) => format!("old pod (uid {short}): {}", pod_state(pod)),
        (false, true) => format!("new pod (uid {short}) was deleted"),
        (false, false) => format!("new pod (uid {short}): {}", pod_state(pod)),
    }
}

/// The first 8 characters of a UID, enough to tell two pods apart in progress lines.
pub fn short_uid(uid: &str) -> &str {
    uid.get(..8).unwrap_or(uid)
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
