//! `snapshot`: one CSI VolumeSnapshot (`snapshot.storage.k8s.io/v1`) per PVC of the
//! database pod, waited on until `status.readyToUse`. The snapshot API is a CRD that many
//! clusters lack, so its absence (and a missing class) is a clear message, not a 404.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, ResourceExt};
use serde::Serialize;

use super::format;
use crate::client::Kube;
use crate::error::{Error, Result, is_not_found};
use crate::output::Progress;
use crate::target;
use crate::wait::within;

const GROUP: &str = "snapshot.storage.k8s.io";
const VERSION: &str = "v1";
const DEFAULT_CLASS_ANNOTATION: &str = "snapshot.storage.kubernetes.io/is-default-class";

/// What to snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// Pod or StatefulSet name.
    pub target: String,
    /// VolumeSnapshotClass (default: the cluster's default class).
    pub class: Option<String>,
    /// How long to wait for every snapshot to be ready.
    pub timeout: Duration,
    /// Draw live progress on stderr.
    pub progress: bool,
}

/// One snapshot taken (the `-o json` schema is a list of these inside [`SnapshotReport`]).
#[derive(Debug, Clone, Serialize)]
pub struct TakenSnapshot {
    pub name: String,
    pub pvc: String,
    pub ready: bool,
    /// `status.restoreSize`, when the driver reports it.
    pub restore_size: Option<String>,
}

/// What `snapshot` did.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    pub namespace: String,
    pub pod: String,
    pub class: Option<String>,
    pub snapshots: Vec<TakenSnapshot>,
    pub duration_seconds: f64,
}

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, VERSION, kind))
}

/// Takes the snapshots.
pub async fn snapshot(kube: &Kube, options: &SnapshotOptions) -> Result<SnapshotReport> {
    let started = Instant::now();
    let target = target::resolve(kube, &options.target).await?;
    let Some(pod) = &target.pod else {
        return Err(Error::NotFound(format!(
            "pod {}/{} does not exist",
            target.namespace, target.pod_name
        )));
    };
    let pvcs = pod_pvcs(pod);
    if pvcs.is_empty() {
        return Err(Error::Failed(format!(
            "pod {}/{} has no PersistentVolumeClaim to snapshot",
            target.namespace, target.pod_name
        )));
    }
    let class = check_api_and_class(kube, options.class.as_deref()).await?;

    let api: Api<DynamicObject> = Api::namespaced_with(
        kube.client.clone(),
        &kube.namespace,
        &resource("VolumeSnapshot"),
    );
    let stamp = format::utc_stamp(k8s_openapi::jiff::Timestamp::now());
    let progress = Progress::spinner(options.progress);
    let mut names = Vec::new();
    for pvc in &pvcs {
        let name = format::snapshot_name(pvc, &stamp);
        let mut object =
            DynamicObject::new(&name, &resource("VolumeSnapshot")).within(&kube.namespace);
        let mut spec = serde_json::json!({ "source": { "persistentVolumeClaimName": pvc } });
        if let Some(class) = &options.class {
            spec["volumeSnapshotClassName"] = serde_json::json!(class);
        }
        object.data = serde_json::json!({ "spec": spec });
        api.create(&PostParams::default(), &object)
            .await
            .map_err(Error::api(format!(
                "create VolumeSnapshot {}/{name}",
                kube.namespace
            )))?;
        progress.set(format!("waiting for VolumeSnapshot {name}"));
        names.push((name, pvc.clone()));
    }
    // The wait is a watch, quiet until the snapshot is ready: the stream client (client.rs).
    let watch: Api<DynamicObject> = Api::namespaced_with(
        kube.streams.clone(),
        &kube.namespace,
        &resource("VolumeSnapshot"),
    );
    let mut snapshots = Vec::new();
    for (name, pvc) in names {
        let ready = wait_ready(&watch, &name, options.timeout).await?;
        snapshots.push(TakenSnapshot {
            restore_size: ready
                .data
                .pointer("/status/restoreSize")
                .and_then(|v| v.as_str())
                .map(String::from),
            ready: true,
            name,
            pvc,
        });
    }
    progress.finish();
    Ok(SnapshotReport {
        namespace: kube.namespace.clone(),
        pod: target.pod_name,
        class,
        snapshots,
        duration_seconds: started.elapsed().as_secs_f64(),
    })
}

/// PVC names a pod mounts.
pub fn pod_pvcs(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            v.persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.clone())
        })
        .collect()
}

/// Fails with exit 3 when the snapshot CRDs are not installed or the class does not exist;
/// returns the class that will be used.
async fn check_api_and_class(kube: &Kube, class: Option<&str>) -> Result<Option<String>> {
    if let Err(err) = kube
        .client
        .list_api_group_resources(&format!("{GROUP}/{VERSION}"))
        .await
    {
        if is_not_found(&err) {
            return Err(Error::NotFound(format!(
                "the cluster has no VolumeSnapshot API ({GROUP}/{VERSION}): install the external-snapshotter CRDs and controller and a CSI driver that supports snapshots, or back up with `kubectl dbbackup dump`"
            )));
        }
        return Err(Error::Api {
            action: format!("discover the {GROUP}/{VERSION} API"),
            source: err,
        });
    }
    let classes: Api<DynamicObject> =
        Api::all_with(kube.client.clone(), &resource("VolumeSnapshotClass"));
    if let Some(class) = class {
        return match classes
            .get_opt(class)
            .await
            .map_err(Error::api(format!("read VolumeSnapshotClass {class}")))?
        {
            Some(_) => Ok(Some(class.to_string())),
            None => Err(Error::NotFound(format!(
                "VolumeSnapshotClass {class} does not exist; `kubectl get volumesnapshotclass` lists the classes"
            ))),
        };
    }
    let list = classes
        .list(&Default::default())
        .await
        .map_err(Error::api("list VolumeSnapshotClasses"))?;
    let default = list.items.iter().find(|c| {
        c.annotations()
            .get(DEFAULT_CLASS_ANNOTATION)
            .map(String::as_str)
            == Some("true")
    });
    match default {
        Some(c) => Ok(Some(c.name_any())),
        None => Err(Error::NotFound(
            "no default VolumeSnapshotClass in the cluster; pass --class CLASS (`kubectl get volumesnapshotclass` lists them)"
                .into(),
        )),
    }
}

async fn wait_ready(
    api: &Api<DynamicObject>,
    name: &str,
    timeout: Duration,
) -> Result<DynamicObject> {
    let condition = |obj: Option<&DynamicObject>| {
        obj.is_some_and(|o| {
            o.data
                .pointer("/status/readyToUse")
                .and_then(|v| v.as_bool())
                == Some(true)
                || o.data.pointer("/status/error/message").is_some()
        })
    };
    let found = within(
        timeout,
        format!("VolumeSnapshot {name} to be readyToUse"),
        async {
            kube::runtime::wait::await_condition(api.clone(), name, condition)
                .await
                .map_err(|err| {
                    Error::Failed(format!("failed to watch VolumeSnapshot {name}: {err}"))
                })
        },
    )
    .await?;
    let Some(object) = found else {
        return Err(Error::Failed(format!(
            "VolumeSnapshot {name} was deleted while waiting"
        )));
    };
    if let Some(message) = object
        .data
        .pointer("/status/error/message")
        .and_then(|v| v.as_str())
    {
        return Err(Error::Failed(format!(
            "VolumeSnapshot {name} failed: {message}"
        )));
    }
    Ok(object)
}
