//! Gathering the facts: every API read runs concurrently, and so do the commands run in the
//! container, each with its own timeout, so one slow answer cannot hang the report.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, PersistentVolume, PersistentVolumeClaim, Pod, PodSpec, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, LogParams};
use kube::{Api, ResourceExt};
use serde::Serialize;

use super::combined::{self, Part, PartName};
use super::facts::{Facts, InsideFacts, ObjectKeys, Outcome, RefKind, Run};
use super::podspec::references;
use crate::client::Kube;
use crate::error::{Error, Result};
use crate::exec;
use crate::render::claim_name;
use crate::target::Target;
use crate::wait::within;

/// Knobs of a check run.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Budget of each command run in the pod.
    pub exec_timeout: Duration,
    /// Budget of each API read.
    pub api_timeout: Duration,
    /// `--logs=N`: add the database container's last N log lines to the report.
    pub logs: Option<i64>,
    /// `backup.recent` warns when the newest scheduled backup is older.
    pub backup_max_age: Duration,
    /// The database container (`-c`), when the pod has several; default: found by engine.
    pub container: Option<String>,
}

/// The end of one container's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogTail {
    /// The lines, oldest first.
    pub lines: Vec<String>,
    /// Why the log could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The database container's recent log (`--logs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Logs {
    pub container: String,
    /// How many lines were asked for (each log has at most this many).
    pub tail_lines: i64,
    pub current: LogTail,
    /// The container before its last restart; `null` when it never restarted.
    pub previous: Option<LogTail>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            exec_timeout: Duration::from_secs(10),
            api_timeout: Duration::from_secs(30),
            logs: None,
            backup_max_age: Duration::from_secs(26 * 3600),
            container: None,
        }
    }
}

/// Reads everything the rules need about `target`.
pub async fn collect(kube: &Kube, target: &Target, options: &CheckOptions) -> Result<Facts> {
    let ns = target.namespace.clone();
    let budget = options.api_timeout;
    let spec: Option<PodSpec> = target_spec(target);
    let claim_names = claim_names(target, spec.as_ref());
    let references = spec.as_ref().map(references).unwrap_or_default();
    let wanted: BTreeSet<(RefKind, String)> = references
        .iter()
        .map(|r| (r.kind, r.name.clone()))
        .collect();

    let claims = async {
        let api: Api<PersistentVolumeClaim> = kube.api();
        let reads = claim_names.iter().map(|name| {
            let api = api.clone();
            let ns = ns.clone();
            async move {
                let claim = within(
                    budget,
                    format!("the API server to return PVC {ns}/{name}"),
                    async {
                        api.get_opt(name)
                            .await
                            .map_err(Error::api(format!("read PVC {ns}/{name}")))
                    },
                )
                .await?;
                Ok::<_, Error>((name.clone(), claim))
            }
        });
        let claims = futures::future::try_join_all(reads).await?;
        let (volumes, volume_errors) = bound_volumes(kube, &claims, budget).await;
        Ok::<_, Error>((claims, volumes, volume_errors))
    };
    let classes = async {
        let api: Api<StorageClass> = kube.api_all();
        within(budget, "the API server to return StorageClasses", async {
            api.list(&ListParams::default())
                .await
                .map_err(Error::api("list StorageClasses"))
        })
        .await
        .map(|l| l.items)
        .map_err(|e| error_text(&e))
    };
    let services = async {
        let api: Api<Service> = kube.api();
        within(budget, "the API server to return Services", async {
            api.list(&ListParams::default())
                .await
                .map_err(Error::api(format!("list Services in {ns}")))
        })
        .await
        .map(|l| l.items)
    };
    let slices = async {
        let api: Api<EndpointSlice> = kube.api();
        within(budget, "the API server to return EndpointSlices", async {
            api.list(&ListParams::default())
                .await
                .map_err(Error::api(format!("list EndpointSlices in {ns}")))
        })
        .await
        .map(|l| l.items)
    };
    let objects = join_all(wanted.into_iter().map(|(kind, name)| async move {
        let keys = object_keys(kube, kind, &name, budget).await;
        ((kind, name), keys)
    }));
    let events = async {
        let api: Api<Event> = kube.api();
        within(budget, "the API server to return events", async {
            api.list(&ListParams::default())
                .await
                .map_err(Error::api(format!("list events in {ns}")))
        })
        .await
        .map(|l| l.items)
        .map_err(|e| error_text(&e))
    };
    let usage = pod_usage(kube, target, budget);
    let in_pod = in_pod(kube, target, spec.as_ref(), options);

    let (claims, classes, services, slices, objects, events, usage, (previous_logs, inside)) = tokio::join!(
        claims, classes, services, slices, objects, events, usage, in_pod
    );
    let (claims, volumes, volume_errors) = claims?;
    let services = services?;

    let events = events.map(|list| about_database(list.iter(), target, &claim_names, &services));

    Ok(Facts {
        namespace: ns,
        pod_name: target.pod_name.clone(),
        engine: target.engine,
        container: target.container.clone(),
        pod: target.pod.clone(),
        statefulset: target.statefulset.clone(),
        claims,
        storage_classes: classes,
        volumes,
        volume_errors,
        services,
        endpoint_slices: slices?,
        objects: objects.into_iter().collect(),
        events,
        previous_logs,
        usage,
        inside,
        now: k8s_openapi::jiff::Timestamp::now(),
    })
}

/// The events about the database: its StatefulSet, pod, claims and the namespace's
/// Services (`events` are of the database's namespace).
pub(super) fn about_database<'a>(
    events: impl Iterator<Item = &'a Event>,
    target: &Target,
    claim_names: &[String],
    services: &[Service],
) -> Vec<Event> {
    let mut about: BTreeSet<&str> = claim_names.iter().map(String::as_str).collect();
    about.insert(&target.pod_name);
    if let Some(sts) = &target.statefulset {
        about.insert(sts.metadata.name.as_deref().unwrap_or_default());
    }
    about.extend(services.iter().filter_map(|s| s.metadata.name.as_deref()));
    events
        .filter(|e| {
            e.involved_object
                .name
                .as_deref()
                .is_some_and(|n| about.contains(n))
        })
        .cloned()
        .collect()
}

/// The error with the API's own reason (a 403 names the verb and resource it refused).
pub(super) fn error_text(err: &Error) -> String {
    err.chain()
}

/// The key names of a Secret (values are dropped here and never reach the report).
pub(super) fn secret_keys(secret: Secret) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = secret.data.unwrap_or_default().into_keys().collect();
    keys.extend(secret.string_data.unwrap_or_default().into_keys());
    keys
}

/// The key names of a ConfigMap.
pub(super) fn config_map_keys(map: ConfigMap) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = map.data.unwrap_or_default().into_keys().collect();
    keys.extend(map.binary_data.unwrap_or_default().into_keys());
    keys
}

/// The pod's spec, else its StatefulSet template's.
pub(super) fn target_spec(target: &Target) -> Option<PodSpec> {
    match &target.pod {
        Some(pod) => pod.spec.clone(),
        None => target
            .statefulset
            .as_ref()
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.template.spec.clone()),
    }
}

/// What is read in and about the pod itself: the previous container's log (when it
/// restarted) and the in-container commands.
pub(super) async fn in_pod(
    kube: &Kube,
    target: &Target,
    spec: Option<&PodSpec>,
    options: &CheckOptions,
) -> (Option<String>, InsideFacts) {
    tokio::join!(
        previous_logs(kube, target, options.api_timeout),
        inside_facts(kube, target, spec, options)
    )
}

/// The pod's claims; before the pod exists, the ones its StatefulSet will create for it.
pub(super) fn claim_names(target: &Target, spec: Option<&PodSpec>) -> Vec<String> {
    if target.pod.is_some() {
        return spec
            .and_then(|s| s.volumes.as_ref())
            .map(|v| {
                v.iter()
                    .filter_map(|v| {
                        v.persistent_volume_claim
                            .as_ref()
                            .map(|c| c.claim_name.clone())
                    })
                    .collect()
            })
            .unwrap_or_default();
    }
    let Some(sts) = &target.statefulset else {
        return Vec::new();
    };
    let ordinal = target.pod_name.rsplit('-').next().unwrap_or("0");
    sts.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .map(|t| {
            t.iter()
                .map(|c| claim_name(&c.name_any(), &sts.name_any(), ordinal))
                .collect()
        })
        .unwrap_or_default()
}

/// PersistentVolumes of bound claims. They are cluster-scoped and a namespace user may not
/// read them; then the reclaim-policy check is skipped (saying why) rather than the report
/// failing. Returns the volumes read and why the others could not be.
async fn bound_volumes(
    kube: &Kube,
    claims: &[(String, Option<PersistentVolumeClaim>)],
    budget: Duration,
) -> (Vec<PersistentVolume>, Vec<String>) {
    let api: Api<PersistentVolume> = kube.api_all();
    let names: Vec<String> = claims
        .iter()
        .filter_map(|(_, c)| c.as_ref()?.spec.as_ref()?.volume_name.clone())
        .filter(|n| !n.is_empty())
        .collect();
    let reads = names.iter().map(|name| {
        let api = api.clone();
        async move {
            within(
                budget,
                format!("the API server to return PersistentVolume {name}"),
                async {
                    api.get_opt(name)
                        .await
                        .map_err(Error::api(format!("read PersistentVolume {name}")))
                },
            )
            .await
            .map_err(|e| error_text(&e))
        }
    });
    let mut volumes = Vec::new();
    let mut errors = Vec::new();
    for read in join_all(reads).await {
        match read {
            Ok(Some(volume)) => volumes.push(volume),
            Ok(None) => {}
            Err(err) => errors.push(err),
        }
    }
    (volumes, errors)
}

/// The key names of a Secret or ConfigMap (`None`: it does not exist). Values are dropped
/// here and never reach the report.
async fn object_keys(kube: &Kube, kind: RefKind, name: &str, budget: Duration) -> ObjectKeys {
    let ns = &kube.namespace;
    let read = async {
        match kind {
            RefKind::Secret => {
                let api: Api<Secret> = kube.api();
                let secret = api
                    .get_opt(name)
                    .await
                    .map_err(Error::api(format!("read Secret {ns}/{name}")))?;
                Ok(secret.map(secret_keys))
            }
            RefKind::ConfigMap => {
                let api: Api<ConfigMap> = kube.api();
                let map = api
                    .get_opt(name)
                    .await
                    .map_err(Error::api(format!("read ConfigMap {ns}/{name}")))?;
                Ok(map.map(config_map_keys))
            }
        }
    };
    within(
        budget,
        format!("the API server to return {kind} {ns}/{name}"),
        read,
    )
    .await
    .map_err(|e| error_text(&e))
}

/// Whether the database container has a previous instance (it restarted), whose log the
/// API server still keeps.
fn restarted(target: &Target) -> bool {
    target
        .pod
        .as_ref()
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|all| all.iter().find(|c| c.name == target.container))
        .is_some_and(|status| {
            status.restart_count > 0
                || status
                    .last_state
                    .as_ref()
                    .is_some_and(|s| s.terminated.is_some())
        })
}

/// The last 20 lines of the previous container's log, when the container has restarted.
async fn previous_logs(kube: &Kube, target: &Target, budget: Duration) -> Option<String> {
    if !restarted(target) {
        return None;
    }
    // A log that cannot be read is said where the log would be, not silently left out.
    Some(
        read_log(kube, target, true, 20, budget)
            .await
            .unwrap_or_else(|err| format!("(could not read the previous log: {err})")),
    )
}

/// The last `lines` lines of the database container's log (`previous`: of the container
/// before its last restart); the error as text.
async fn read_log(
    kube: &Kube,
    target: &Target,
    previous: bool,
    lines: i64,
    budget: Duration,
) -> Result<String, String> {
    let api: Api<Pod> = kube.api();
    let params = LogParams {
        container: Some(target.container.clone()),
        previous,
        tail_lines: Some(lines),
        ..Default::default()
    };
    let pod = &target.pod_name;
    let which = if previous { "previous " } else { "" };
    within(
        budget,
        format!("the API server to return the log of pod {pod}"),
        async {
            api.logs(pod, &params)
                .await
                .map_err(Error::api(format!("read the {which}log of pod {pod}")))
        },
    )
    .await
    .map_err(|e| error_text(&e))
}

/// `dbcheck --logs=N`: the database container's last `lines` log lines, of the running
/// container and, when it restarted, of the one before.
pub async fn logs(kube: &Kube, target: &Target, lines: i64, budget: Duration) -> Logs {
    let tail = |previous| async move {
        match read_log(kube, target, previous, lines, budget).await {
            Ok(text) => LogTail {
                lines: text.lines().map(str::to_string).collect(),
                error: None,
            },
            Err(error) => LogTail {
                lines: Vec::new(),
                error: Some(error),
            },
        }
    };
    let (current, previous) = tokio::join!(tail(false), async {
        match restarted(target) {
            true => Some(tail(true).await),
            false => None,
        }
    });
    Logs {
        container: target.container.clone(),
        tail_lines: lines,
        current,
        previous,
    }
}

/// CPU and memory use per container from the metrics API (metrics-server), when installed.
async fn pod_usage(
    kube: &Kube,
    target: &Target,
    budget: Duration,
) -> Result<BTreeMap<String, (String, String)>, String> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        kube.client.clone(),
        &target.namespace,
        &pod_metrics_resource(),
    );
    let metrics = match tokio::time::timeout(budget, api.get_opt(&target.pod_name)).await {
        Err(_) => return Err("the metrics API did not answer in time".into()),
        Ok(Err(err)) => return Err(metrics_error(err)),
        Ok(Ok(None)) => return Err("no metrics for the pod yet".into()),
        Ok(Ok(Some(metrics))) => metrics,
    };
    Ok(container_usage(&metrics))
}

/// `container -> (cpu, memory)` of a PodMetrics object.
pub(super) fn container_usage(metrics: &DynamicObject) -> BTreeMap<String, (String, String)> {
    let containers = metrics.data["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    containers
        .iter()
        .filter_map(|c| {
            let name = c["name"].as_str()?.to_string();
            let cpu = c["usage"]["cpu"].as_str().unwrap_or("0").to_string();
            let memory = c["usage"]["memory"].as_str().unwrap_or("0").to_string();
            Some((name, (cpu, memory)))
        })
        .collect()
}

/// The PodMetrics API (metrics-server).
pub(super) fn pod_metrics_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics");
    ApiResource::from_gvk_with_plural(&gvk, "pods")
}

/// Why the metrics API gave no answer, in the words of the `resources.usage` check.
pub(super) fn metrics_error(err: kube::Error) -> String {
    match err {
        kube::Error::Api(status) if status.code == 404 || status.code == 503 => {
            "no metrics API (metrics-server is not installed)".into()
        }
        err => {
            let err = Error::Api {
                action: "read pod metrics".into(),
                source: err,
            };
            format!("could not read pod metrics: {}", error_text(&err))
        }
    }
}

/// Where the data volume is mounted in the database container.
fn data_mount(target: &Target, spec: Option<&PodSpec>) -> String {
    let fallback = target.engine.data_mount().to_string();
    let Some(spec) = spec else { return fallback };
    let mut volume_names: BTreeSet<String> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.persistent_volume_claim.is_some())
        .map(|v| v.name.clone())
        .collect();
    if let Some(templates) = target
        .statefulset
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.volume_claim_templates.as_ref())
    {
        volume_names.extend(templates.iter().map(|t| t.name_any()));
    }
    spec.containers
        .iter()
        .find(|c| c.name == target.container)
        .and_then(|c| c.volume_mounts.as_ref())
        .and_then(|mounts| mounts.iter().find(|m| volume_names.contains(&m.name)))
        .map(|m| m.mount_path.clone())
        .unwrap_or(fallback)
}

/// Runs the in-container commands when the container is running: all in one exec, then
/// each part that had no complete result there on its own exec (see [`combined`]).
async fn inside_facts(
    kube: &Kube,
    target: &Target,
    spec: Option<&PodSpec>,
    options: &CheckOptions,
) -> InsideFacts {
    let running = target
        .pod
        .as_ref()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .and_then(|p| p.status.as_ref()?.container_statuses.as_ref())
        .and_then(|s| s.iter().find(|c| c.name == target.container))
        .and_then(|s| s.state.as_ref())
        .is_some_and(|s| s.running.is_some());
    if !running {
        let state = target
            .pod
            .as_ref()
            .map(crate::wait::pod_state)
            .unwrap_or_else(|| "no pod".into());
        return InsideFacts::not_run(&format!(
            "container {} is not running ({state})",
            target.container
        ));
    }
    let probe_command =
        spec.and_then(|s| s.containers.iter().find(|c| c.name == target.container))
            .and_then(|c| c.readiness_probe.as_ref())
            .map(|p| {
                p.exec.as_ref().and_then(|e| e.command.clone()).ok_or(
                    "the readiness probe is not an exec probe; kubelet runs it from the node",
                )
            })
            .unwrap_or(Err("no readiness probe configured"));
    let commands = target.engine.commands();
    let mount = data_mount(target, spec);
    let overview = commands.overview();
    let permissions = commands.permissions(&mount);
    let status = commands.status();
    let volume = commands.volume(&mount);
    let mut parts = vec![
        Part::new(PartName::Permissions, &permissions, None),
        Part::new(PartName::Volume, &volume, None),
        Part::new(PartName::Status, &status, None),
        Part::new(PartName::Sql, &overview.argv, Some(&overview.sql)),
    ];
    if let Ok(command) = &probe_command {
        parts.push(Part::new(PartName::Readiness, command, None));
    }
    let pods: Api<Pod> = kube.exec_pods();
    let pod = target.pod_name.as_str();
    let container = target.container.as_str();
    let timeout = options.exec_timeout;
    let combined = combined::run(&pods, pod, container, &parts, timeout).await;
    let not_run = probe_command.as_ref().err().map(|why| why.to_string());
    let outcome = |name: PartName| {
        let at = parts.iter().position(|part| part.name == name);
        let part = at.map(|at| (parts[at], combined.get(at).cloned().flatten()));
        let why = not_run.clone().unwrap_or_default();
        let pods = &pods;
        async move {
            match part {
                Some((_, Some(run))) => Outcome::Done(run),
                // Not complete in the combined run: on its own exec, as before it existed,
                // so an odd pod (no `sh`, a hung server, a missing tool) reads the same.
                Some((part, None)) => {
                    let stdin = part.stdin.map(str::as_bytes);
                    timed(pods, pod, container, part.argv, stdin, timeout).await
                }
                None => Outcome::NotRun(why),
            }
        }
    };
    let (readiness, permissions, sql, status, volume) = tokio::join!(
        outcome(PartName::Readiness),
        outcome(PartName::Permissions),
        outcome(PartName::Sql),
        outcome(PartName::Status),
        outcome(PartName::Volume),
    );
    InsideFacts {
        readiness,
        permissions,
        sql,
        status,
        volume,
    }
}

async fn timed(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    command: &[String],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Outcome {
    let started = Instant::now();
    match exec::run(pods, pod, Some(container), command, stdin, timeout).await {
        Ok(output) => Outcome::Done(Run {
            success: output.status.success(),
            status: output.status.to_string(),
            stdout: output.stdout_text(),
            stderr: output.stderr_text(),
            millis: started.elapsed().as_millis() as u64,
        }),
        // With the cause and hint: a refused exec must say it was refused.
        Err(err) => Outcome::Error(err.chain_with_hint()),
    }
}
