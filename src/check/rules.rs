//! Pure diagnosis rules over objects already fetched from the API server: StatefulSet, pod,
//! PVCs and their classes, Services and EndpointSlices, referenced Secret/ConfigMap keys,
//! probes, security context and events. No I/O here, so every rule is tested with
//! recorded objects. Rules that read the results of commands run in the pod are in
//! [`super::inside`].

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, Event, PersistentVolume, PersistentVolumeClaim, Pod, PodSpec,
    Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::inside::{self, InsideFacts};
use super::{Check, Verdict};
use crate::engine::Engine;
use crate::wait::pod_state;

/// Key names of a Secret or ConfigMap (`None`: it does not exist), or why it could not be read.
pub type ObjectKeys = Result<Option<BTreeSet<String>>, String>;

/// Everything the rules look at, fetched by [`super::collect`].
#[derive(Debug, Clone)]
pub struct Facts {
    pub namespace: String,
    pub pod_name: String,
    pub engine: Engine,
    /// The database container's name.
    pub container: String,
    pub pod: Option<Pod>,
    pub statefulset: Option<StatefulSet>,
    /// Claims the pod uses (or will use), with the object when it exists.
    pub claims: Vec<(String, Option<PersistentVolumeClaim>)>,
    /// Every StorageClass, or why they could not be read.
    pub storage_classes: Result<Vec<StorageClass>, String>,
    /// The PersistentVolumes bound to the claims.
    pub volumes: Vec<PersistentVolume>,
    /// Services of the namespace that select the pod or are named after the StatefulSet.
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    /// Keys of each referenced Secret/ConfigMap (`None` = it does not exist), or why it
    /// could not be read. Values are never fetched into these facts.
    pub objects: BTreeMap<(RefKind, String), ObjectKeys>,
    /// Events about the StatefulSet, pod, PVCs and Services.
    pub events: Result<Vec<Event>, String>,
    /// Last lines of the previous container's log, when it restarted.
    pub previous_logs: Option<String>,
    /// Results of the commands run inside the container.
    pub inside: InsideFacts,
    pub now: Timestamp,
}

impl Facts {
    /// The pod's spec, else the StatefulSet template's.
    pub fn pod_spec(&self) -> Option<&PodSpec> {
        match &self.pod {
            Some(pod) => pod.spec.as_ref(),
            None => self
                .statefulset
                .as_ref()?
                .spec
                .as_ref()?
                .template
                .spec
                .as_ref(),
        }
    }

    /// The pod's labels, else the StatefulSet template's.
    pub fn pod_labels(&self) -> BTreeMap<String, String> {
        match &self.pod {
            Some(pod) => pod.labels().clone(),
            None => self
                .statefulset
                .as_ref()
                .and_then(|s| s.spec.as_ref())
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default(),
        }
    }

    /// The database container's spec.
    pub fn container_spec(&self) -> Option<&Container> {
        self.pod_spec()?
            .containers
            .iter()
            .find(|c| c.name == self.container)
    }

    /// The database container's status.
    pub fn container_status(&self) -> Option<&ContainerStatus> {
        self.pod
            .as_ref()?
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find(|c| c.name == self.container)
    }

    /// True when the database container is running (so commands can be run in it).
    pub fn container_running(&self) -> bool {
        self.pod
            .as_ref()
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
            && self
                .container_status()
                .and_then(|s| s.state.as_ref())
                .is_some_and(|s| s.running.is_some())
    }

    /// Whether the pod's Ready condition is True, and since when.
    pub fn ready_since(&self) -> Option<Timestamp> {
        let conditions = self.pod.as_ref()?.status.as_ref()?.conditions.as_ref()?;
        let ready = conditions
            .iter()
            .find(|c| c.type_ == "Ready" && c.status == "True")?;
        Some(
            ready
                .last_transition_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(Timestamp::UNIX_EPOCH),
        )
    }

    /// Warning events, newest first.
    pub fn warnings(&self) -> Vec<&Event> {
        let mut events: Vec<&Event> = self
            .events
            .as_ref()
            .map(|e| {
                e.iter()
                    .filter(|e| e.type_.as_deref() == Some("Warning"))
                    .collect()
            })
            .unwrap_or_default();
        events.sort_by_key(|e| std::cmp::Reverse(event_time(e)));
        events
    }

    /// Warning events about one object (`kind`, `name`), newest first.
    pub fn warnings_about(&self, kind: &str, name: &str) -> Vec<&Event> {
        self.warnings()
            .into_iter()
            .filter(|e| {
                e.involved_object.kind.as_deref() == Some(kind)
                    && e.involved_object.name.as_deref() == Some(name)
            })
            .collect()
    }
}

/// Runs every rule; the order is the report's order.
pub fn diagnose(facts: &Facts) -> Vec<Check> {
    vec![
        statefulset(facts),
        pod_scheduling(facts),
        pod_image(facts),
        pod_containers(facts),
        pod_ready(facts),
        pvc_bound(facts),
        pv_reclaim_policy(facts),
        inside::volume_usage(facts),
        service_headless(facts),
        service_endpoints(facts),
        config_references(facts),
        security_context(facts),
        inside::datadir_permissions(facts),
        probes_configured(facts),
        inside::probe_readiness(facts),
        inside::db_server(facts),
        inside::db_connections(facts),
        inside::db_status(facts),
        events(facts),
    ]
}

/// When an event last happened.
pub fn event_time(event: &Event) -> Option<Timestamp> {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn event_line(event: &Event) -> String {
    let count = event
        .count
        .filter(|c| *c > 1)
        .map(|c| format!(" (x{c})"))
        .unwrap_or_default();
    format!(
        "{}/{} {}{count}: {}",
        event.involved_object.kind.as_deref().unwrap_or("?"),
        event.involved_object.name.as_deref().unwrap_or("?"),
        event.reason.as_deref().unwrap_or(""),
        event.message.as_deref().unwrap_or("").trim()
    )
}

fn statefulset(facts: &Facts) -> Check {
    const NAME: &str = "statefulset";
    let Some(sts) = &facts.statefulset else {
        return Check::new(
            NAME,
            Verdict::Skipped,
            format!("pod {} has no StatefulSet owner", facts.pod_name),
        );
    };
    let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = sts.status.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let revision = status.update_revision.clone().unwrap_or_default();
    let evidence = format!(
        "{}: {ready}/{want} ready, {updated}/{want} updated, revision {revision}",
        sts.name_any()
    );
    if ready < want {
        return Check::new(NAME, Verdict::Fail, evidence)
            .fix("a pod is not ready; the pod.* checks say why");
    }
    if crate::wait::rollout_complete(sts) {
        Check::new(NAME, Verdict::Ok, evidence)
    } else {
        Check::new(
            NAME,
            Verdict::Warn,
            format!(
                "{evidence}; rollout in progress from {}",
                status.current_revision.unwrap_or_default()
            ),
        )
        .fix("wait for the rollout (kubectl rollout status statefulset); a stuck rollout needs the new pod fixed")
    }
}

fn missing_pod(facts: &Facts, name: &str) -> Check {
    let mut evidence = format!("pod {} does not exist", facts.pod_name);
    if let Some(sts) = &facts.statefulset
        && let Some(event) = facts.warnings_about("StatefulSet", &sts.name_any()).first()
    {
        evidence.push_str(&format!("; {}", event_line(event)));
    }
    Check::new(name, Verdict::Fail, evidence)
        .fix("the StatefulSet controller could not create the pod: read its events (kubectl describe statefulset)")
}

fn pod_scheduling(facts: &Facts) -> Check {
    const NAME: &str = "pod.scheduling";
    let Some(pod) = &facts.pod else {
        return missing_pod(facts, NAME);
    };
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    match conditions.iter().find(|c| c.type_ == "PodScheduled") {
        Some(c) if c.status == "False" => {
            let message = c
                .message
                .clone()
                .unwrap_or_else(|| c.reason.clone().unwrap_or_default());
            Check::new(NAME, Verdict::Fail, format!("unschedulable: {message}"))
                .fix(scheduling_fix(&message, facts))
        }
        Some(c) if c.status == "True" => Check::new(
            NAME,
            Verdict::Ok,
            format!(
                "scheduled on node {}",
                pod.spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default()
            ),
        ),
        _ => Check::new(NAME, Verdict::Warn, "not scheduled yet")
            .fix("wait a moment and run dbcheck again"),
    }
}

fn scheduling_fix(message: &str, facts: &Facts) -> String {
    let requests = facts
        .container_spec()
        .and_then(|c| c.resources.as_ref())
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    let request = |what: &str| {
        requests
            .get(what)
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "?".into())
    };
    if message.contains("Insufficient cpu") {
        format!(
            "no node has {} CPU free to request: lower the request (kubectl dbdeploy ... --cpu 250m) or add a node with more CPU",
            request("cpu")
        )
    } else if message.contains("Insufficient memory") {
        format!(
            "no node has {} memory free to request: lower the request (kubectl dbdeploy ... --memory 512Mi) or add a node with more memory",
            request("memory")
        )
    } else if message.contains("unbound") && message.contains("PersistentVolumeClaim") {
        "the pod waits for its PVC: see pvc.bound".into()
    } else if message.contains("node affinity") || message.contains("node selector") {
        "no node matches the pod's nodeSelector/affinity: fix them or label a node".into()
    } else if message.contains("taint") {
        "every node has a taint the pod does not tolerate: add a toleration or remove the taint"
            .into()
    } else if message.contains("volume node affinity") {
        "the volume lives on a node the pod cannot run on: free that node or move the data".into()
    } else {
        "read the scheduler's message above; kubectl describe node shows what each node has free"
            .into()
    }
}

const PULL_ERRORS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "RegistryUnavailable",
];

fn pod_image(facts: &Facts) -> Check {
    const NAME: &str = "pod.image";
    let image = facts
        .container_spec()
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    if facts.pod.is_none() {
        return Check::new(
            NAME,
            Verdict::Skipped,
            format!("no pod yet (image {image})"),
        );
    }
    let Some(status) = facts.container_status() else {
        return Check::new(
            NAME,
            Verdict::Skipped,
            format!("container not created yet (image {image})"),
        );
    };
    let waiting = status.state.as_ref().and_then(|s| s.waiting.as_ref());
    if let Some(waiting) = waiting
        && let Some(reason) = waiting
            .reason
            .as_deref()
            .filter(|r| PULL_ERRORS.contains(r))
    {
        let detail = waiting
            .message
            .clone()
            .or_else(|| {
                facts
                    .warnings_about("Pod", &facts.pod_name)
                    .iter()
                    .find(|e| e.message.as_deref().is_some_and(|m| m.contains("pull")))
                    .and_then(|e| e.message.clone())
            })
            .unwrap_or_default();
        return Check::new(NAME, Verdict::Fail, format!("{reason} for image {image}: {}", detail.trim())).fix(format!(
            "check that {image} exists (name and tag), that the nodes can reach its registry, and add imagePullSecrets for a private registry; then fix the image (kubectl dbdeploy ... --image)"
        ));
    }
    if status.image_id.is_empty() {
        return Check::new(
            NAME,
            Verdict::Ok,
            format!("{image} (container not started yet)"),
        );
    }
    Check::new(NAME, Verdict::Ok, format!("{image} pulled"))
}

fn pod_containers(facts: &Facts) -> Check {
    const NAME: &str = "pod.containers";
    let Some(status) = facts.container_status() else {
        return Check::new(NAME, Verdict::Skipped, "no container status yet");
    };
    let restarts = status.restart_count;
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    let last_text = last
        .map(|t| {
            format!(
                "; last exit code {} ({})",
                t.exit_code,
                t.reason.clone().unwrap_or_else(|| "no reason".into())
            )
        })
        .unwrap_or_default();
    let logs = facts
        .previous_logs
        .as_deref()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("\nprevious container's last log lines:\n{}", l.trim_end()))
        .unwrap_or_default();
    let waiting = status.state.as_ref().and_then(|s| s.waiting.as_ref());
    let reason = waiting.and_then(|w| w.reason.clone()).unwrap_or_default();
    if reason == "CrashLoopBackOff" || (reason == "RunContainerError") {
        let evidence = format!("{reason}, {restarts} restarts{last_text}{logs}");
        let fix = crash_fix(facts, last.and_then(|t| t.reason.as_deref()));
        return Check::new(NAME, Verdict::Fail, evidence).fix(fix);
    }
    if reason == "CreateContainerConfigError" || reason == "CreateContainerError" {
        let message = waiting.and_then(|w| w.message.clone()).unwrap_or_default();
        return Check::new(NAME, Verdict::Fail, format!("{reason}: {message}"))
            .fix("the container cannot be created: see config.references");
    }
    if PULL_ERRORS.contains(&reason.as_str()) {
        return Check::new(
            NAME,
            Verdict::Skipped,
            format!("not started: {reason} (see pod.image)"),
        );
    }
    if let Some(terminated) = status.state.as_ref().and_then(|s| s.terminated.as_ref()) {
        return Check::new(
            NAME,
            Verdict::Fail,
            format!(
                "terminated with exit code {} ({}){logs}",
                terminated.exit_code,
                terminated.reason.clone().unwrap_or_default()
            ),
        )
        .fix(crash_fix(facts, terminated.reason.as_deref()));
    }
    if restarts > 0 {
        let verdict = if last.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled")) {
            Verdict::Fail
        } else {
            Verdict::Warn
        };
        return Check::new(
            NAME,
            verdict,
            format!("running, {restarts} restarts{last_text}{logs}"),
        )
        .fix(crash_fix(facts, last.and_then(|t| t.reason.as_deref())));
    }
    let state = if status.state.as_ref().is_some_and(|s| s.running.is_some()) {
        "running".to_string()
    } else {
        format!(
            "waiting ({})",
            if reason.is_empty() {
                "starting"
            } else {
                reason.as_str()
            }
        )
    };
    Check::new(NAME, Verdict::Ok, format!("{state}, 0 restarts"))
}

/// What to do about a container that keeps exiting, from its termination reason and log.
pub fn crash_fix(facts: &Facts, reason: Option<&str>) -> String {
    let logs = facts.previous_logs.clone().unwrap_or_default();
    let lower = logs.to_lowercase();
    if reason == Some("OOMKilled") {
        let limit = facts
            .container_spec()
            .and_then(|c| c.resources.as_ref())
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "its".into());
        return format!(
            "the server used more than {limit} memory limit: raise it (kubectl dbdeploy ... --memory-limit) or lower the server's buffers (shared_buffers / innodb_buffer_pool_size)"
        );
    }
    let bad_setting = [
        "invalid value for parameter",
        "unrecognized configuration parameter",
        "unknown variable",
        "unknown option",
        "configuration file",
        "invalid value",
    ];
    if let Some(line) = logs
        .lines()
        .find(|l| bad_setting.iter().any(|p| l.to_lowercase().contains(p)))
    {
        return format!(
            "the server rejects its configuration ({}): fix or remove that setting (kubectl dbdeploy ... --set key=value) and the pod restarts with it",
            line.trim()
        );
    }
    if lower.contains("permission denied") || lower.contains("operation not permitted") {
        return inside::permission_fix(facts);
    }
    if lower.contains("database files are incompatible")
        || lower.contains("upgrade") && lower.contains("data directory")
    {
        return "the data directory was created by another major version: use the image version that created it, or dump and restore".into();
    }
    if lower.contains("no space left") {
        return "the volume is full: expand the PVC or free space".into();
    }
    format!(
        "read the log lines above (kubectl logs {} --previous for more)",
        facts.pod_name
    )
}

fn pod_ready(facts: &Facts) -> Check {
    const NAME: &str = "pod.ready";
    let Some(pod) = &facts.pod else {
        return missing_pod(facts, NAME);
    };
    if facts.ready_since().is_some() {
        return Check::new(NAME, Verdict::Ok, pod_state(pod));
    }
    if facts.container_running() {
        let probe_event = facts
            .warnings_about("Pod", &facts.pod_name)
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Unhealthy"))
            .map(|e| format!("; {}", event_line(e)))
            .unwrap_or_default();
        return Check::new(
            NAME,
            Verdict::Fail,
            format!("{}{probe_event}", pod_state(pod)),
        )
        .fix("the server runs but its readiness probe fails: see probe.readiness");
    }
    Check::new(NAME, Verdict::Fail, pod_state(pod))
        .fix("the container is not running: see the pod.* checks above")
}

fn class_list(classes: &[StorageClass]) -> String {
    let names: Vec<String> = classes
        .iter()
        .map(|c| {
            if is_default_class(c) {
                format!("{} (default)", c.name_any())
            } else {
                c.name_any()
            }
        })
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// True for the class marked as the cluster's default.
pub fn is_default_class(class: &StorageClass) -> bool {
    [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|a| class.annotations().get(*a).map(String::as_str) == Some("true"))
}

fn pvc_bound(facts: &Facts) -> Check {
    const NAME: &str = "pvc.bound";
    if facts.claims.is_empty() {
        return Check::new(NAME, Verdict::Warn, "the pod has no PersistentVolumeClaim: its data is lost with the container")
            .fix("store the data on a PVC (volumeClaimTemplates in the StatefulSet), as kubectl dbdeploy does");
    }
    let mut results: Vec<Check> = facts
        .claims
        .iter()
        .map(|(name, claim)| one_claim(facts, name, claim.as_ref()))
        .collect();
    results.sort_by_key(|c| std::cmp::Reverse(c.verdict));
    let worst = results[0].clone();
    let evidence: Vec<String> = results.iter().map(|c| c.evidence.clone()).collect();
    Check {
        name: NAME.into(),
        verdict: worst.verdict,
        evidence: evidence.join("\n"),
        fix: worst.fix,
    }
}

fn one_claim(facts: &Facts, name: &str, claim: Option<&PersistentVolumeClaim>) -> Check {
    const NAME: &str = "pvc.bound";
    let Some(claim) = claim else {
        return Check::new(NAME, Verdict::Fail, format!("PVC {name} does not exist"))
            .fix("the StatefulSet controller creates it from volumeClaimTemplates: read the StatefulSet's events");
    };
    let phase = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    let spec = claim.spec.clone().unwrap_or_default();
    let class_name = spec.storage_class_name.clone();
    if phase == "Bound" {
        let size = claim
            .status
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_default();
        return Check::new(
            NAME,
            Verdict::Ok,
            format!(
                "{name} Bound to {} ({size}, class {})",
                spec.volume_name.unwrap_or_default(),
                class_name.unwrap_or_else(|| "none".into())
            ),
        );
    }
    let events: Vec<String> = facts
        .warnings_about("PersistentVolumeClaim", name)
        .into_iter()
        .take(2)
        .map(event_line)
        .collect();
    let events_text = if events.is_empty() {
        String::new()
    } else {
        format!("; {}", events.join("; "))
    };
    let classes = facts.storage_classes.as_ref();
    match (class_name.as_deref(), classes) {
        (Some(class), Ok(classes)) if !class.is_empty() && !classes.iter().any(|c| c.name_any() == class) => {
            Check::new(
                NAME,
                Verdict::Fail,
                format!("{name} {phase}: StorageClass {class:?} does not exist (classes: {}){events_text}", class_list(classes)),
            )
            .fix(format!(
                "a PVC's class cannot be changed: delete PVC {name} and the StatefulSet, then re-deploy with an existing class (kubectl dbdeploy ... --storage-class {}) or none for the default, or create StorageClass {class}",
                classes.iter().find(|c| is_default_class(c)).or(classes.first()).map(|c| c.name_any()).unwrap_or_else(|| "CLASS".into())
            ))
        }
        (None, Ok(classes)) if !classes.iter().any(is_default_class) => Check::new(
            NAME,
            Verdict::Fail,
            format!("{name} {phase}: no StorageClass named and the cluster has no default class (classes: {}){events_text}", class_list(classes)),
        )
        .fix("name a class (kubectl dbdeploy ... --storage-class CLASS) or mark one default (annotation storageclass.kubernetes.io/is-default-class=true)"),
        (class, classes) => {
            let class = class.and_then(|c| classes.ok()?.iter().find(|k| k.name_any() == c)).or_else(|| {
                classes.ok()?.iter().find(|c| is_default_class(c))
            });
            let waits = class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer");
            let scheduled = facts.pod.as_ref().and_then(|p| p.spec.as_ref()).and_then(|s| s.node_name.as_ref()).is_some();
            if waits && !scheduled && events.is_empty() {
                Check::new(
                    NAME,
                    Verdict::Warn,
                    format!("{name} {phase}: class {} is WaitForFirstConsumer, so the volume is made only once the pod is scheduled, and it is not", class.map(|c| c.name_any()).unwrap_or_default()),
                )
                .fix("the PVC follows the pod: see pod.scheduling")
            } else {
                Check::new(NAME, Verdict::Fail, format!("{name} {phase}{events_text}"))
                    .fix("the provisioner has not made a volume: read the events above and the provisioner's logs (kubectl describe pvc)")
            }
        }
    }
}

fn pv_reclaim_policy(facts: &Facts) -> Check {
    const NAME: &str = "pv.reclaim-policy";
    if facts.volumes.is_empty() {
        return Check::new(NAME, Verdict::Skipped, "no bound PersistentVolume");
    }
    let deletes: Vec<String> = facts
        .volumes
        .iter()
        .filter(|pv| {
            pv.spec
                .as_ref()
                .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
                == Some("Delete")
        })
        .map(|pv| pv.name_any())
        .collect();
    if deletes.is_empty() {
        let names: Vec<String> = facts.volumes.iter().map(|v| v.name_any()).collect();
        return Check::new(NAME, Verdict::Ok, format!("{}: Retain", names.join(", ")));
    }
    Check::new(
        NAME,
        Verdict::Warn,
        format!("{}: reclaimPolicy Delete, so deleting the PVC deletes the data", deletes.join(", ")),
    )
    .fix(format!(
        "for production data: kubectl patch pv {} -p '{{\"spec\":{{\"persistentVolumeReclaimPolicy\":\"Retain\"}}}}'",
        deletes[0]
    ))
}

fn selects(service: &Service, labels: &BTreeMap<String, String>) -> bool {
    match service.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        Some(selector) if !selector.is_empty() => {
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        }
        _ => false,
    }
}

fn selector_text(service: &Service) -> String {
    let selector = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn service_headless(facts: &Facts) -> Check {
    const NAME: &str = "service.headless";
    let governing = facts
        .statefulset
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.service_name.clone());
    let ns = &facts.namespace;
    match governing.filter(|n| !n.is_empty()) {
        Some(name) => match facts.services.iter().find(|s| s.name_any() == name) {
            None => Check::new(NAME, Verdict::Fail, format!("the StatefulSet's serviceName {name} has no Service, so {}.{name}.{ns}.svc does not resolve", facts.pod_name))
                .fix(format!("create the headless Service {name} (clusterIP: None) selecting the pods")),
            Some(service) if !is_headless(service) => Check::new(
                NAME,
                Verdict::Fail,
                format!("Service {name} governs the StatefulSet but has clusterIP {}, so pods get no stable DNS names", service.spec.as_ref().and_then(|s| s.cluster_ip.clone()).unwrap_or_default()),
            )
            .fix(format!("recreate {name} with clusterIP: None (clusterIP cannot be changed in place)")),
            Some(_) => Check::new(NAME, Verdict::Ok, format!("{name} (clusterIP None): {}.{name}.{ns}.svc.cluster.local", facts.pod_name)),
        },
        None => Check::new(NAME, Verdict::Skipped, "no StatefulSet serviceName"),
    }
}

fn service_endpoints(facts: &Facts) -> Check {
    const NAME: &str = "service.endpoints";
    let labels = facts.pod_labels();
    let sts_name = facts.statefulset.as_ref().map(|s| s.name_any());
    let app = labels.get("app").cloned();
    let candidates: Vec<&Service> = facts
        .services
        .iter()
        .filter(|s| !is_headless(s))
        .filter(|s| {
            selects(s, &labels)
                || Some(s.name_any()) == sts_name
                || (app.is_some() && Some(s.name_any()) == app)
        })
        .collect();
    if candidates.is_empty() {
        return Check::new(NAME, Verdict::Warn, "no ClusterIP Service selects the pod: clients have no stable address")
            .fix("create a ClusterIP Service selecting the pod's labels on the database port (kubectl dbdeploy does)");
    }
    let mut results: Vec<Check> = candidates
        .iter()
        .map(|s| one_service(facts, s, &labels))
        .collect();
    results.sort_by_key(|c| std::cmp::Reverse(c.verdict));
    let worst = results[0].clone();
    Check {
        name: NAME.into(),
        verdict: worst.verdict,
        evidence: results
            .iter()
            .map(|c| c.evidence.clone())
            .collect::<Vec<_>>()
            .join("\n"),
        fix: worst.fix,
    }
}

fn one_service(facts: &Facts, service: &Service, labels: &BTreeMap<String, String>) -> Check {
    const NAME: &str = "service.endpoints";
    let name = service.name_any();
    let dns = format!("{name}.{}.svc.cluster.local", facts.namespace);
    let labels_text = labels
        .iter()
        .filter(|(k, _)| k.as_str() == "app" || k.starts_with("app.kubernetes.io/instance"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    if !selects(service, labels) {
        return Check::new(
            NAME,
            Verdict::Fail,
            format!("Service {name} selects {} and matches no pod of this database (pod labels {labels_text})", selector_text(service)),
        )
        .fix(format!("set Service {name}'s selector to the pod's labels: {labels_text}"));
    }
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let container_ports = facts
        .container_spec()
        .and_then(|c| c.ports.clone())
        .unwrap_or_default();
    for port in &ports {
        let target = port
            .target_port
            .clone()
            .unwrap_or(IntOrString::Int(port.port));
        let found = match &target {
            IntOrString::Int(n) => {
                *n == facts.engine.port() || container_ports.iter().any(|p| p.container_port == *n)
            }
            IntOrString::String(s) => container_ports
                .iter()
                .any(|p| p.name.as_deref() == Some(s.as_str())),
        };
        if !found {
            let shown = match &target {
                IntOrString::Int(n) => n.to_string(),
                IntOrString::String(s) => s.clone(),
            };
            return Check::new(NAME, Verdict::Fail, format!("Service {name} targets port {shown}, which the database container does not expose"))
                .fix(format!("set the Service's targetPort to {} (the server's port)", facts.engine.port()));
        }
    }
    let slices: Vec<&EndpointSlice> = facts
        .endpoint_slices
        .iter()
        .filter(|s| s.labels().get("kubernetes.io/service-name") == Some(&name))
        .collect();
    let ready: Vec<String> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .flat_map(|e| e.addresses.clone())
        .collect();
    let port_text = ports
        .first()
        .map(|p| p.port.to_string())
        .unwrap_or_default();
    if ready.is_empty() {
        let total: usize = slices.iter().map(|s| s.endpoints.len()).sum();
        return Check::new(NAME, Verdict::Fail, format!("{dns}:{port_text} has no ready endpoints ({total} not ready): clients cannot connect"))
            .fix("the Service sends traffic only to Ready pods: see pod.ready");
    }
    Check::new(
        NAME,
        Verdict::Ok,
        format!(
            "{dns}:{port_text} -> {} ready endpoint(s): {}",
            ready.len(),
            ready.join(", ")
        ),
    )
}

/// Whether a reference is to a Secret or a ConfigMap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefKind {
    Secret,
    ConfigMap,
}

impl std::fmt::Display for RefKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RefKind::Secret => "Secret",
            RefKind::ConfigMap => "ConfigMap",
        })
    }
}

/// A key (or a whole object, for envFrom) of a Secret or ConfigMap the pod needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub kind: RefKind,
    pub name: String,
    pub key: Option<String>,
    pub optional: bool,
    /// Where the pod uses it, e.g. `env POSTGRES_PASSWORD of container postgres`.
    pub used_by: String,
}

/// Every Secret/ConfigMap key a pod spec refers to (env, envFrom, volumes).
pub fn references(spec: &PodSpec) -> Vec<Reference> {
    let mut refs = Vec::new();
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for container in containers {
        for env in container.env.iter().flatten() {
            let used_by = format!("env {} of container {}", env.name, container.name);
            let Some(source) = &env.value_from else {
                continue;
            };
            if let Some(s) = &source.secret_key_ref {
                refs.push(Reference {
                    kind: RefKind::Secret,
                    name: s.name.clone(),
                    key: Some(s.key.clone()),
                    optional: s.optional == Some(true),
                    used_by: used_by.clone(),
                });
            }
            if let Some(c) = &source.config_map_key_ref {
                refs.push(Reference {
                    kind: RefKind::ConfigMap,
                    name: c.name.clone(),
                    key: Some(c.key.clone()),
                    optional: c.optional == Some(true),
                    used_by,
                });
            }
        }
        for from in container.env_from.iter().flatten() {
            let used_by = format!("envFrom of container {}", container.name);
            if let Some(s) = &from.secret_ref {
                refs.push(Reference {
                    kind: RefKind::Secret,
                    name: s.name.clone(),
                    key: None,
                    optional: s.optional == Some(true),
                    used_by: used_by.clone(),
                });
            }
            if let Some(c) = &from.config_map_ref {
                refs.push(Reference {
                    kind: RefKind::ConfigMap,
                    name: c.name.clone(),
                    key: None,
                    optional: c.optional == Some(true),
                    used_by,
                });
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        let used_by = format!("volume {}", volume.name);
        if let Some(s) = &volume.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            push_volume_refs(
                &mut refs,
                RefKind::Secret,
                name,
                s.items.as_deref(),
                s.optional == Some(true),
                &used_by,
            );
        }
        if let Some(c) = &volume.config_map {
            push_volume_refs(
                &mut refs,
                RefKind::ConfigMap,
                c.name.clone(),
                c.items.as_deref(),
                c.optional == Some(true),
                &used_by,
            );
        }
    }
    refs
}

fn push_volume_refs(
    refs: &mut Vec<Reference>,
    kind: RefKind,
    name: String,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
    optional: bool,
    used_by: &str,
) {
    match items {
        Some(items) if !items.is_empty() => refs.extend(items.iter().map(|item| Reference {
            kind,
            name: name.clone(),
            key: Some(item.key.clone()),
            optional,
            used_by: used_by.to_string(),
        })),
        _ => refs.push(Reference {
            kind,
            name,
            key: None,
            optional,
            used_by: used_by.to_string(),
        }),
    }
}

fn config_references(facts: &Facts) -> Check {
    const NAME: &str = "config.references";
    let refs = facts.pod_spec().map(references).unwrap_or_default();
    if refs.is_empty() {
        return Check::new(
            NAME,
            Verdict::Ok,
            "the pod references no Secret or ConfigMap",
        );
    }
    let mut problems = Vec::new();
    let mut unreadable = Vec::new();
    for r in &refs {
        match facts.objects.get(&(r.kind, r.name.clone())) {
            Some(Ok(None)) if !r.optional => problems.push(format!(
                "{} {} does not exist ({})",
                r.kind, r.name, r.used_by
            )),
            Some(Ok(Some(keys))) => {
                if let Some(key) = &r.key
                    && !r.optional
                    && !keys.contains(key)
                {
                    let present = keys.iter().cloned().collect::<Vec<_>>().join(", ");
                    problems.push(format!(
                        "{} {} has no key {key} ({}; keys present: {present})",
                        r.kind, r.name, r.used_by
                    ));
                }
            }
            Some(Err(why)) => unreadable.push(format!("{} {}: {why}", r.kind, r.name)),
            _ => {}
        }
    }
    if let Some(first) = problems.first().cloned() {
        let fix = refs
            .iter()
            .find(|r| first.starts_with(&format!("{} {} ", r.kind, r.name)))
            .map(|r| match (&r.kind, &r.key) {
                (RefKind::Secret, Some(key)) => format!(
                    "add key {key} to Secret {} (kubectl patch secret {} --type merge -p '{{\"stringData\":{{\"{key}\":\"...\"}}}}'), or fix the reference in the StatefulSet; the pod starts once it exists",
                    r.name, r.name
                ),
                (RefKind::ConfigMap, Some(key)) => format!("add key {key} to ConfigMap {} or fix the reference in the StatefulSet", r.name),
                (kind, None) => format!("create {kind} {} or fix the reference in the StatefulSet", r.name),
            })
            .unwrap_or_default();
        return Check::new(NAME, Verdict::Fail, problems.join("\n")).fix(fix);
    }
    if !unreadable.is_empty() {
        return Check::new(
            NAME,
            Verdict::Warn,
            format!("could not read: {}", unreadable.join("; ")),
        )
        .fix("grant get on secrets/configmaps in this namespace to check them (docs/rbac.md)");
    }
    let objects: BTreeSet<String> = refs
        .iter()
        .map(|r| format!("{} {}", r.kind, r.name))
        .collect();
    Check::new(
        NAME,
        Verdict::Ok,
        format!(
            "{} references, all present: {}",
            refs.len(),
            objects.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

fn security_context(facts: &Facts) -> Check {
    const NAME: &str = "security.context";
    let Some(spec) = facts.pod_spec() else {
        return Check::new(NAME, Verdict::Skipped, "no pod spec");
    };
    let pod_sc = spec.security_context.clone().unwrap_or_default();
    let sc = facts
        .container_spec()
        .and_then(|c| c.security_context.clone())
        .unwrap_or_default();
    let run_as_user = sc.run_as_user.or(pod_sc.run_as_user);
    let non_root = sc.run_as_non_root.or(pod_sc.run_as_non_root) == Some(true);
    let mut parts = vec![
        format!(
            "runAsUser {}",
            run_as_user
                .map(|u| u.to_string())
                .unwrap_or_else(|| "(image default)".into())
        ),
        format!(
            "fsGroup {}",
            pod_sc
                .fs_group
                .map(|g| g.to_string())
                .unwrap_or_else(|| "unset".into())
        ),
    ];
    if non_root {
        parts.push("runAsNonRoot".into());
    }
    if sc.read_only_root_filesystem == Some(true) {
        parts.push("readOnlyRootFilesystem".into());
    }
    let evidence = parts.join(", ");
    if sc.privileged == Some(true) {
        return Check::new(NAME, Verdict::Warn, format!("{evidence}, privileged"))
            .fix("a database needs no privileges: remove privileged: true");
    }
    if run_as_user.is_some_and(|u| u != 0) && pod_sc.fs_group.is_none() {
        return Check::new(NAME, Verdict::Warn, format!("{evidence}: a fresh volume may not be writable by that uid"))
            .fix("set the pod's fsGroup to the server's uid with fsGroupChangePolicy: OnRootMismatch (no chown init container needed)");
    }
    if run_as_user == Some(0) || (run_as_user.is_none() && !non_root) {
        return Check::new(NAME, Verdict::Warn, format!("{evidence}: may run as root")).fix(
            "run as the image's database uid: runAsUser/runAsGroup/fsGroup and runAsNonRoot: true",
        );
    }
    Check::new(NAME, Verdict::Ok, evidence)
}

fn probes_configured(facts: &Facts) -> Check {
    const NAME: &str = "probes.configured";
    let Some(container) = facts.container_spec() else {
        return Check::new(NAME, Verdict::Skipped, "no container spec");
    };
    let describe = |kind: &str, probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        probe.as_ref().map(|p| {
            let how = if p.exec.is_some() {
                "exec"
            } else if p.tcp_socket.is_some() {
                "tcpSocket"
            } else if p.http_get.is_some() {
                "httpGet"
            } else {
                "grpc"
            };
            format!("{kind} {how} every {}s", p.period_seconds.unwrap_or(10))
        })
    };
    let found: Vec<String> = [
        describe("readiness", &container.readiness_probe),
        describe("liveness", &container.liveness_probe),
        describe("startup", &container.startup_probe),
    ]
    .into_iter()
    .flatten()
    .collect();
    let evidence = if found.is_empty() {
        "no probes".to_string()
    } else {
        found.join(", ")
    };
    let commands: Vec<String> = [
        &container.readiness_probe,
        &container.liveness_probe,
        &container.startup_probe,
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| p.exec.as_ref()?.command.as_ref().map(|c| c.join(" ")))
    .collect();
    if commands
        .iter()
        .any(|c| c.contains("-p$") || c.contains("-p\"$") || c.contains("--password="))
    {
        return Check::new(NAME, Verdict::Warn, format!("{evidence}; a probe passes a password on its command line"))
            .fix("read it from the environment instead (MYSQL_PWD=\"$MYSQL_ROOT_PASSWORD\" mysqladmin ...): command lines show in the process list");
    }
    if container.readiness_probe.is_none() {
        return Check::new(NAME, Verdict::Warn, evidence)
            .fix("add a readinessProbe that runs a real query, so the Service only routes to a server that answers");
    }
    if container.liveness_probe.is_some() && container.startup_probe.is_none() {
        return Check::new(NAME, Verdict::Warn, format!("{evidence}; liveness without a startupProbe"))
            .fix("add a startupProbe: a liveness probe with a fixed initial delay kills a server still in crash recovery, in a loop");
    }
    Check::new(NAME, Verdict::Ok, evidence)
}

/// Warning reasons about the node's setup, not the database (e.g. a kubelet without cluster DNS).
const NODE_LEVEL_REASONS: &[&str] = &["MissingClusterDNS", "DNSConfigForming"];

fn events(facts: &Facts) -> Check {
    const NAME: &str = "events";
    let warnings = match &facts.events {
        Ok(_) => facts.warnings(),
        Err(why) => {
            return Check::new(
                NAME,
                Verdict::Skipped,
                format!("could not read events: {why}"),
            );
        }
    };
    // Node-level configuration warnings repeat on every pod and say nothing about the database.
    let (node_level, warnings): (Vec<&Event>, Vec<&Event>) = warnings
        .into_iter()
        .partition(|e| NODE_LEVEL_REASONS.contains(&e.reason.as_deref().unwrap_or("")));
    let node_note = node_level
        .first()
        .map(|e| {
            format!(
                " (ignored, about the node rather than the database: {})",
                e.reason.as_deref().unwrap_or("")
            )
        })
        .unwrap_or_default();
    if warnings.is_empty() {
        return Check::new(NAME, Verdict::Ok, format!("no Warning events{node_note}"));
    }
    let mut lines: Vec<String> = Vec::new();
    for line in warnings.iter().map(|e| event_line(e)) {
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    let total = lines.len();
    lines.truncate(5);
    let more = if total > 5 {
        format!("\n(+{} more)", total - 5)
    } else {
        String::new()
    };
    // Warnings from before the pod became Ready (probes failing during initdb, a volume
    // still being made) are history, not a problem.
    if let Some(since) = facts.ready_since()
        && warnings
            .iter()
            .all(|e| event_time(e).is_some_and(|t| t <= since))
    {
        return Check::new(
            NAME,
            Verdict::Ok,
            format!(
                "{} Warning event(s), all from before the pod became ready; latest: {}",
                warnings.len(),
                lines[0]
            ),
        );
    }
    Check::new(NAME, Verdict::Warn, format!("{}{more}", lines.join("\n")))
        .fix("the checks above explain the cause; kubectl get events --field-selector type=Warning lists them all")
}

#[cfg(test)]
mod tests {
    //! Rules fed with objects recorded from the local cluster (testdata/broken-namespace.json:
    //! `kubectl get -o json` of a namespace holding one healthy and six broken databases).
    use super::*;
    use crate::check::inside::{Outcome, Run};
    use serde_json::Value;

    fn recorded() -> Value {
        serde_json::from_str(include_str!("testdata/broken-namespace.json")).unwrap()
    }

    fn items<T: serde::de::DeserializeOwned>(all: &Value, kind: &str) -> Vec<T> {
        all[kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| serde_json::from_value(v.clone()).unwrap())
            .collect()
    }

    /// Facts for one recorded pod, assembled the way `collect` does; every referenced
    /// Secret/ConfigMap has the keys the pod asks for, except those in `missing`.
    fn facts(pod_name: &str, missing: &[&str]) -> Facts {
        let all = recorded();
        let pods: Vec<Pod> = items(&all, "pods");
        let pod = pods.into_iter().find(|p| p.name_any() == pod_name).unwrap();
        let sts_name = crate::target::owner_statefulset(&pod).unwrap();
        let statefulset = items::<StatefulSet>(&all, "statefulsets")
            .into_iter()
            .find(|s| s.name_any() == sts_name);
        let claims_all: Vec<PersistentVolumeClaim> = items(&all, "pvc");
        let claims = pod
            .spec
            .as_ref()
            .unwrap()
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|c| {
                (
                    c.claim_name.clone(),
                    claims_all
                        .iter()
                        .find(|p| p.name_any() == c.claim_name)
                        .cloned(),
                )
            })
            .collect();
        let mut objects: BTreeMap<(RefKind, String), Result<Option<BTreeSet<String>>, String>> =
            BTreeMap::new();
        for r in references(pod.spec.as_ref().unwrap()) {
            let keys = objects
                .entry((r.kind, r.name.clone()))
                .or_insert_with(|| Ok(Some(BTreeSet::new())));
            if let (Ok(Some(keys)), Some(key)) = (keys, r.key) {
                if !missing.contains(&key.as_str()) {
                    keys.insert(key);
                }
            }
        }
        let events: Vec<Event> = items(&all, "events");
        Facts {
            namespace: pod.namespace().unwrap(),
            pod_name: pod_name.into(),
            engine: Engine::Postgres,
            container: "postgres".into(),
            pod: Some(pod),
            statefulset,
            claims,
            storage_classes: Ok(items(&all, "storageclasses")),
            volumes: Vec::new(),
            services: items(&all, "services"),
            endpoint_slices: items(&all, "endpointslices"),
            objects,
            events: Ok(events
                .into_iter()
                .filter(|e| {
                    e.involved_object
                        .name
                        .as_deref()
                        .is_some_and(|n| n.contains(&sts_name))
                })
                .collect()),
            previous_logs: None,
            inside: InsideFacts::not_run("container is not running"),
            now: Timestamp::now(),
        }
    }

    fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks.iter().find(|c| c.name == name).unwrap()
    }

    fn ran(stdout: &str) -> Outcome {
        Outcome::Done(Run {
            success: true,
            status: "exit status 0".into(),
            stdout: stdout.into(),
            stderr: String::new(),
            millis: 5,
        })
    }

    #[test]
    fn missing_storage_class_is_named_with_the_classes_that_exist() {
        let checks = diagnose(&facts("noclass-0", &[]));
        let pvc = find(&checks, "pvc.bound");
        assert_eq!(pvc.verdict, Verdict::Fail);
        assert!(
            pvc.evidence
                .contains("StorageClass \"nope\" does not exist (classes: standard (default))"),
            "{pvc:?}"
        );
        assert!(
            pvc.fix
                .as_deref()
                .unwrap()
                .contains("--storage-class standard")
        );
        assert!(
            find(&checks, "pod.scheduling")
                .fix
                .as_deref()
                .unwrap()
                .contains("pvc.bound")
        );
    }

    #[test]
    fn unschedulable_pod_gets_the_scheduler_reason_and_the_request() {
        let checks = diagnose(&facts("bigcpu-0", &[]));
        let scheduling = find(&checks, "pod.scheduling");
        assert_eq!(scheduling.verdict, Verdict::Fail);
        assert!(scheduling.evidence.contains("Insufficient cpu"));
        assert!(
            scheduling
                .fix
                .as_deref()
                .unwrap()
                .contains("no node has 64 CPU free"),
            "{scheduling:?}"
        );
        // WaitForFirstConsumer: the PVC waits for the pod, which is explained, not blamed.
        assert_eq!(find(&checks, "pvc.bound").verdict, Verdict::Warn);
    }

    #[test]
    fn image_pull_failure_names_the_image() {
        let checks = diagnose(&facts("nopull-0", &[]));
        let image = find(&checks, "pod.image");
        assert_eq!(image.verdict, Verdict::Fail);
        assert!(image.evidence.contains("localhost/kdb/none:1"));
        assert_eq!(find(&checks, "pod.containers").verdict, Verdict::Skipped);
    }

    #[test]
    fn crash_loop_shows_the_log_and_names_the_bad_setting() {
        let mut facts = facts("badconf-0", &[]);
        facts.previous_logs = Some(
            "LOG:  invalid value for parameter \"shared_buffers\": \"notanumber\"\nFATAL:  configuration file \"/etc/postgresql/kubectl-db/postgresql.conf\" contains errors\n".into(),
        );
        let checks = diagnose(&facts);
        let containers = find(&checks, "pod.containers");
        assert_eq!(containers.verdict, Verdict::Fail);
        assert!(containers.evidence.contains("CrashLoopBackOff"));
        assert!(
            containers
                .evidence
                .contains("previous container's last log lines:\nLOG:  invalid value")
        );
        let fix = containers.fix.as_deref().unwrap();
        assert!(
            fix.contains("shared_buffers") && fix.contains("--set"),
            "{fix}"
        );
    }

    #[test]
    fn readiness_failing_while_the_server_answers_blames_the_probe() {
        let mut facts = facts("notready-0", &[]);
        facts.inside.readiness = Outcome::Done(Run {
            success: false,
            status: "exit status 1".into(),
            millis: 3,
            ..Default::default()
        });
        facts.inside.sql = ran(
            "version\tPostgreSQL 15.20\nuptime\t59\nconnections\t1\nmax_connections\t100\ndatabase\tappdb\n",
        );
        let checks = diagnose(&facts);
        assert_eq!(find(&checks, "pod.ready").verdict, Verdict::Fail);
        let probe = find(&checks, "probe.readiness");
        assert_eq!(probe.verdict, Verdict::Fail);
        assert!(
            probe
                .fix
                .as_deref()
                .unwrap()
                .contains("probe's command itself is wrong")
        );
        assert_eq!(
            find(&checks, "db.server").evidence,
            "PostgreSQL 15.20; up 59s; databases: appdb"
        );
        assert_eq!(
            find(&checks, "db.connections").evidence,
            "1 of max_connections 100"
        );
    }

    #[test]
    fn service_without_ready_endpoints_or_with_a_wrong_selector_fails() {
        let checks = diagnose(&facts("notready-0", &[]));
        let endpoints = find(&checks, "service.endpoints");
        assert_eq!(endpoints.verdict, Verdict::Fail);
        assert!(
            endpoints.evidence.contains("no ready endpoints"),
            "{endpoints:?}"
        );

        let mut facts = facts("good-0", &[]);
        for service in &mut facts.services {
            if service.name_any() == "good" {
                service.spec.as_mut().unwrap().selector =
                    Some(BTreeMap::from([("app".to_string(), "nothing".to_string())]));
            }
        }
        let endpoints = find(&diagnose(&facts), "service.endpoints").clone();
        assert_eq!(endpoints.verdict, Verdict::Fail);
        assert!(
            endpoints
                .evidence
                .contains("selects app=nothing and matches no pod"),
            "{endpoints:?}"
        );
        assert!(endpoints.fix.unwrap().contains("app=good"));
    }

    #[test]
    fn missing_secret_key_is_named_with_the_keys_present_but_no_values() {
        let mut facts = facts("nokey-0", &["POSTGRES_PASSWORD"]);
        if let Some(Ok(Some(keys))) = facts
            .objects
            .get_mut(&(RefKind::Secret, "nokey-secret".into()))
        {
            keys.insert("PASSWORD".into());
        }
        let checks = diagnose(&facts);
        let refs = find(&checks, "config.references");
        assert_eq!(refs.verdict, Verdict::Fail);
        assert!(
            refs.evidence
                .contains("Secret nokey-secret has no key POSTGRES_PASSWORD"),
            "{refs:?}"
        );
        assert!(refs.evidence.contains("keys present: PASSWORD"));
        assert!(
            find(&checks, "pod.containers")
                .evidence
                .contains("CreateContainerConfigError")
        );
    }

    #[test]
    fn unwritable_data_directory_fails_with_the_uid_and_fsgroup_fix() {
        let mut facts = facts("good-0", &[]);
        facts.inside.permissions = ran(
            "id=uid=999 gid=999 groups=999\ndir=/var/lib/postgresql/data/pgdata\nstat=999:999 500\nwritable=no",
        );
        let check = inside::datadir_permissions(&facts);
        assert_eq!(check.verdict, Verdict::Fail);
        assert!(
            check.evidence.contains("999:999 500, NOT writable"),
            "{check:?}"
        );
        assert!(check.fix.unwrap().contains("fsGroup to 999"));
    }

    #[test]
    fn permission_denied_in_the_log_is_diagnosed_without_exec() {
        let mut facts = facts("badconf-0", &[]);
        facts.previous_logs = Some("initdb: error: could not change permissions of directory \"/var/lib/postgresql/data/pgdata\": Operation not permitted\n".into());
        let check = inside::datadir_permissions(&facts);
        assert_eq!(check.verdict, Verdict::Fail);
        assert!(check.fix.unwrap().contains("fsGroup"));
    }

    #[test]
    fn healthy_database_is_ok_and_node_level_events_are_ignored() {
        let mut facts = facts("good-0", &[]);
        facts.inside = InsideFacts {
            readiness: ran(""),
            permissions: ran(
                "id=uid=999 gid=999 groups=999\ndir=/var/lib/postgresql/data/pgdata\nstat=999:999 700\nwritable=yes",
            ),
            sql: ran(
                "version\tPostgreSQL 15.20\nuptime\t3700\nconnections\t1\nmax_connections\t100\ndatabase\tappdb\ndatabase\tpostgres\n",
            ),
            status: ran("127.0.0.1:5432 - accepting connections"),
            volume: ran(
                "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/x 1048576 1000 1047576 1% /var/lib/postgresql/data\n",
            ),
        };
        let checks = diagnose(&facts);
        let not_ok: Vec<&Check> = checks
            .iter()
            .filter(|c| c.verdict != Verdict::Ok && c.name != "pv.reclaim-policy")
            .collect();
        assert!(not_ok.is_empty(), "{not_ok:#?}");
        assert!(
            find(&checks, "events")
                .evidence
                .contains("MissingClusterDNS")
        );
        assert_eq!(
            find(&checks, "db.server").evidence,
            "PostgreSQL 15.20; up 61m; databases: appdb, postgres"
        );
    }

    #[test]
    fn references_cover_env_env_from_and_volumes() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [{"name": "db", "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                            "envFrom": [{"configMapRef": {"name": "c"}}]}],
            "volumes": [{"name": "conf", "configMap": {"name": "c2", "items": [{"key": "my.cnf", "path": "my.cnf"}]}},
                        {"name": "tls", "secret": {"secretName": "t", "optional": true}}]
        }))
        .unwrap();
        let refs: Vec<String> = references(&spec)
            .iter()
            .map(|r| format!("{} {} {:?} {}", r.kind, r.name, r.key, r.optional))
            .collect();
        assert_eq!(
            refs,
            vec![
                "Secret s Some(\"k\") false",
                "ConfigMap c None false",
                "ConfigMap c2 Some(\"my.cnf\") false",
                "Secret t None true"
            ]
        );
    }
}
