//! What dbcheck knows about one database once collection is done: the objects read from
//! the API server and the results of the commands run in its container. [`super::collect`]
//! fills it; the rules ([`super::rules`] and the files it dispatches to) only read it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, Event, PersistentVolume, PersistentVolumeClaim, Pod, PodSpec,
    Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::engine::Engine;
use crate::wait::event_time;

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
    /// Why bound PersistentVolumes could not be read (e.g. no cluster-wide permission).
    pub volume_errors: Vec<String>,
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
    /// Resource use of each container from the metrics API (`name -> (cpu, memory)`), or
    /// why there is none (no metrics-server).
    pub usage: Result<BTreeMap<String, (String, String)>, String>,
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

/// How one in-pod command went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not run; the text says why (e.g. the container is not running).
    NotRun(String),
    /// Could not be run or did not finish (exec refused, timed out).
    Error(String),
    /// Ran to completion.
    Done(Run),
}

/// A finished command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Run {
    /// Exit status 0.
    pub success: bool,
    /// `exit status N` or the API's message.
    pub status: String,
    pub stdout: String,
    pub stderr: String,
    pub millis: u64,
}

/// Results of every in-pod command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsideFacts {
    pub readiness: Outcome,
    pub permissions: Outcome,
    pub sql: Outcome,
    pub status: Outcome,
    pub volume: Outcome,
}

impl InsideFacts {
    /// Every command not run, for the same reason.
    pub fn not_run(why: &str) -> Self {
        let o = Outcome::NotRun(why.to_string());
        InsideFacts {
            readiness: o.clone(),
            permissions: o.clone(),
            sql: o.clone(),
            status: o.clone(),
            volume: o,
        }
    }
}

/// One line per event: `Kind/name Reason (xN): message`.
pub fn event_line(event: &Event) -> String {
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
