//! `snapshot`: one CSI VolumeSnapshot (`snapshot.storage.k8s.io/v1`) per PVC of the
//! database pod, waited on until `status.readyToUse`. Application-consistent by default:
//! the database is held (quiesce.rs) from just before the VolumeSnapshots are created until
//! each has been cut (`status.creationTime`), not until they are ready to use. The snapshot
//! API is a CRD that many clusters lack, so its absence (and a missing class) is a clear
//! message, not a 404.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, ResourceExt};
use serde::Serialize;

use super::format;
use super::quiesce::{self, QuiesceReport};
use crate::client::Kube;
use crate::engine::{ENGINE_LABEL, Engine};
use crate::error::{Error, Result, is_not_found};
use crate::output::Progress;
use crate::target::{self, Target};

pub(crate) const GROUP: &str = "snapshot.storage.k8s.io";
pub(crate) const VERSION: &str = "v1";
const DEFAULT_CLASS_ANNOTATION: &str = "snapshot.storage.kubernetes.io/is-default-class";
/// `app.kubernetes.io/managed-by` value on the snapshots this tool takes.
pub const MANAGED_BY: &str = "kubectl-dbbackup";
/// The database (StatefulSet, else pod) a snapshot was taken of.
pub const DATABASE_LABEL: &str = "app.kubernetes.io/instance";
/// The server version (`15.14`, `10.11`) the snapshot's data directory belongs to.
pub const VERSION_ANNOTATION: &str = "kubectl-db.io/engine-version";
/// `application` (taken quiesced) or `crash` (`--crash-consistent`).
pub const CONSISTENCY_ANNOTATION: &str = "kubectl-db.io/consistency";
/// How long a read lock waits for running writes before the snapshot gives up.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// What to snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// Pod or StatefulSet, as kubectl writes it (`mysql-0`, `sts/mysql`).
    pub target: String,
    /// The database container (`-c`), when the pod has several; default: found by engine.
    pub container: Option<String>,
    /// VolumeSnapshotClass (default: the cluster's default class).
    pub class: Option<String>,
    /// How long to wait for every snapshot to be ready.
    pub timeout: Duration,
    /// Skip the quiesce: the snapshot is what a power cut would leave.
    pub crash_consistent: bool,
    /// Draw live progress on stderr.
    pub progress: bool,
}

/// One snapshot taken (the `-o json` schema is a list of these inside [`SnapshotReport`]).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TakenSnapshot {
    pub name: String,
    pub pvc: String,
    pub ready: bool,
    /// `status.restoreSize`, when the driver reports it.
    pub restore_size: Option<String>,
}

/// What `snapshot` did.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SnapshotReport {
    pub namespace: String,
    pub pod: String,
    pub database: String,
    pub engine: Engine,
    pub engine_version: String,
    pub class: Option<String>,
    /// `application` or `crash`.
    pub consistency: &'static str,
    /// How the database was held while the snapshots were cut (absent when crash-consistent).
    pub quiesce: Option<QuiesceReport>,
    pub snapshots: Vec<TakenSnapshot>,
    pub duration_seconds: f64,
}

pub(crate) fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, VERSION, kind))
}

/// Takes the snapshots.
pub async fn snapshot(kube: &Kube, options: &SnapshotOptions) -> Result<SnapshotReport> {
    let started = Instant::now();
    let target = target::resolve(kube, &options.target, options.container.as_deref()).await?;
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
    check_csi_volumes(kube, &pvcs, &class).await?;
    let version = match engine_version(kube, &target, pod).await {
        Ok(version) => version,
        // A crash-consistent snapshot of a server that does not answer (the moment one
        // wants a copy most) is still taken: the version comes from the image tag.
        Err(err) if options.crash_consistent => match image_version_of(pod, &target.container) {
            Some(version) => {
                eprintln!(
                    "warning: the server did not answer ({}); version {version} taken from the image",
                    err.chain()
                );
                version
            }
            None => return Err(err),
        },
        Err(err) => return Err(err),
    };
    let database = database_name(&target);
    let consistency = if options.crash_consistent {
        "crash"
    } else {
        "application"
    };
    let stamp = format::utc_stamp(k8s_openapi::jiff::Timestamp::now());
    let objects: Vec<(String, DynamicObject)> = pvcs
        .iter()
        .map(|pvc| {
            let name = format::snapshot_name(pvc, &stamp);
            let meta = SnapshotMeta {
                database: &database,
                engine: target.engine,
                version: &version,
                consistency,
            };
            let object = volume_snapshot(&name, &kube.namespace, pvc, &class.name, &meta);
            (pvc.clone(), object)
        })
        .collect();

    let progress = Progress::spinner(options.progress);
    let held = if options.crash_consistent {
        None
    } else {
        progress.set(format!(
            "quiescing {} in pod {}",
            target.engine.product(),
            target.pod_name
        ));
        let label = objects
            .first()
            .map(|(_, o)| o.name_any())
            .unwrap_or_default();
        Some(
            quiesce::hold(
                &kube.exec_pods(),
                &target.pod_name,
                target.engine,
                &label,
                LOCK_WAIT,
                options.timeout + Duration::from_secs(60),
            )
            .await?,
        )
    };
    let cut = tokio::select! {
        cut = crate::wait::within(
            options.timeout,
            "the VolumeSnapshots to be cut (status.creationTime)",
            create_and_wait_cut(kube, &objects, &progress),
        ) => cut,
        signal = crate::cli::interrupted() => Err(Error::Interrupted(format!(
            "snapshot of pod {}: interrupted by {signal}", target.pod_name
        ))),
    };
    let names: Vec<String> = objects.iter().map(|(_, o)| o.name_any()).collect();
    let quiesce = match (cut, held) {
        (Ok(()), Some(held)) => Some(held.release().await?),
        (Ok(()), None) => None,
        (Err(err), held) => {
            if let Some(held) = held {
                held.abandon().await;
            }
            delete_quietly(kube, &names).await;
            return Err(err);
        }
    };
    let snapshots = wait_all_ready(kube, &objects, options, started, &progress).await?;
    progress.finish();
    Ok(SnapshotReport {
        namespace: kube.namespace.clone(),
        pod: target.pod_name,
        database,
        engine: target.engine,
        engine_version: version,
        class: Some(class.name),
        consistency,
        quiesce,
        snapshots,
        duration_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The database a pod belongs to: its StatefulSet, else the pod itself.
fn database_name(target: &Target) -> String {
    target
        .statefulset
        .as_ref()
        .map(|s| s.name_any())
        .unwrap_or_else(|| target.pod_name.clone())
}

/// The server's `major.minor`, asked from the server (the image tag may say `latest`).
async fn engine_version(kube: &Kube, target: &Target, pod: &Pod) -> Result<String> {
    let (text, _) = crate::deploy::query_server(kube, target.engine, &target.pod_name).await?;
    match crate::engine::server_version(&text) {
        Some((major, Some(minor))) => Ok(format!("{major}.{minor}")),
        Some((major, None)) => Ok(major.to_string()),
        None => Err(Error::Failed(format!(
            "failed to read the server version of pod {}/{}: the version query answered {text:?}",
            target.namespace,
            pod.name_any()
        ))),
    }
}

/// `major[.minor]` of the database container's image tag.
fn image_version_of(pod: &Pod, container: &str) -> Option<String> {
    let image = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == container)?
        .image
        .clone()?;
    match crate::engine::image_version(&image)? {
        (major, Some(minor)) => Some(format!("{major}.{minor}")),
        (major, None) => Some(major.to_string()),
    }
}

/// What the labels and annotations of a snapshot record.
pub struct SnapshotMeta<'a> {
    pub database: &'a str,
    pub engine: Engine,
    pub version: &'a str,
    pub consistency: &'a str,
}

/// The VolumeSnapshot object for one PVC (pure: names and time are inputs).
pub fn volume_snapshot(
    name: &str,
    namespace: &str,
    pvc: &str,
    class: &str,
    meta: &SnapshotMeta,
) -> DynamicObject {
    let mut object = DynamicObject::new(name, &resource("VolumeSnapshot")).within(namespace);
    object.metadata.labels = Some(BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGED_BY.to_string(),
        ),
        (DATABASE_LABEL.to_string(), meta.database.to_string()),
        (ENGINE_LABEL.to_string(), meta.engine.app_name().to_string()),
    ]));
    object.metadata.annotations = Some(BTreeMap::from([
        (VERSION_ANNOTATION.to_string(), meta.version.to_string()),
        (
            CONSISTENCY_ANNOTATION.to_string(),
            meta.consistency.to_string(),
        ),
    ]));
    object.data = serde_json::json!({ "spec": {
        "volumeSnapshotClassName": class,
        "source": { "persistentVolumeClaimName": pvc },
    }});
    object
}

async fn create_and_wait_cut(
    kube: &Kube,
    objects: &[(String, DynamicObject)],
    progress: &Progress,
) -> Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        kube.client.clone(),
        &kube.namespace,
        &resource("VolumeSnapshot"),
    );
    for (_, object) in objects {
        let name = object.name_any();
        api.create(&PostParams::default(), object)
            .await
            .map_err(Error::api(format!(
                "create VolumeSnapshot {}/{name}",
                kube.namespace
            )))?;
    }
    let watch = snapshot_watch(kube);
    for (_, object) in objects {
        let name = object.name_any();
        progress.set(format!("waiting for VolumeSnapshot {name} to be cut"));
        wait_for(&watch, &name, "/status/creationTime").await?;
    }
    Ok(())
}

async fn wait_all_ready(
    kube: &Kube,
    objects: &[(String, DynamicObject)],
    options: &SnapshotOptions,
    started: Instant,
    progress: &Progress,
) -> Result<Vec<TakenSnapshot>> {
    let watch = snapshot_watch(kube);
    let mut snapshots = Vec::new();
    for (pvc, object) in objects {
        let name = object.name_any();
        progress.set(format!("waiting for VolumeSnapshot {name} to be ready"));
        let left = options.timeout.saturating_sub(started.elapsed());
        let wait = crate::wait::within(
            left,
            format!("VolumeSnapshot {name} to be readyToUse (the rest of --timeout)"),
            wait_for(&watch, &name, "/status/readyToUse"),
        );
        let ready = tokio::select! {
            ready = wait => ready?,
            signal = crate::cli::interrupted() => return Err(Error::Interrupted(format!(
                "interrupted by {signal} after the snapshots were cut: they stay and become ready on their own"
            ))),
        };
        snapshots.push(TakenSnapshot {
            restore_size: ready
                .data
                .pointer("/status/restoreSize")
                .and_then(|v| v.as_str())
                .map(String::from),
            ready: true,
            name,
            pvc: pvc.clone(),
        });
    }
    Ok(snapshots)
}

/// The wait is a watch, quiet until the snapshot changes: the stream client (client.rs).
fn snapshot_watch(kube: &Kube) -> Api<DynamicObject> {
    Api::namespaced_with(
        kube.streams.clone(),
        &kube.namespace,
        &resource("VolumeSnapshot"),
    )
}

/// Best effort, after a failure: a snapshot cut after the lock was dropped is not what was
/// asked for, and one never cut is of no use.
async fn delete_quietly(kube: &Kube, names: &[String]) {
    let api: Api<DynamicObject> = Api::namespaced_with(
        kube.client.clone(),
        &kube.namespace,
        &resource("VolumeSnapshot"),
    );
    for name in names {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => eprintln!(
                "deleted VolumeSnapshot {}/{name} of the failed snapshot",
                kube.namespace
            ),
            Err(err) if is_not_found(&err) => {}
            Err(err) => eprintln!(
                "warning: VolumeSnapshot {}/{name} of the failed snapshot is left behind: {err}",
                kube.namespace
            ),
        }
    }
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

/// The VolumeSnapshotClass a snapshot uses, and the CSI driver it is for.
#[derive(Debug)]
pub struct SnapshotClass {
    pub name: String,
    pub driver: String,
}

/// Fails with exit 3 when the cluster does not serve `snapshot.storage.k8s.io/v1`.
pub async fn check_api(kube: &Kube) -> Result<()> {
    match kube
        .client
        .list_api_group_resources(&format!("{GROUP}/{VERSION}"))
        .await
    {
        Ok(_) => Ok(()),
        Err(err) if is_not_found(&err) => Err(no_api()),
        Err(err) => Err(Error::Api {
            action: format!("discover the {GROUP}/{VERSION} API"),
            source: err,
        }),
    }
}

/// The error for a cluster without the VolumeSnapshot API.
pub fn no_api() -> Error {
    Error::NotFound(format!(
        "the cluster has no VolumeSnapshot API ({GROUP}/{VERSION}): install the external-snapshotter CRDs and controller and a CSI driver that supports snapshots, or back up with `kubectl dbbackup dump`"
    ))
}

/// Fails with exit 3 when the snapshot CRDs are not installed or the class does not exist;
/// returns the class that will be used.
async fn check_api_and_class(kube: &Kube, class: Option<&str>) -> Result<SnapshotClass> {
    check_api(kube).await?;
    let classes: Api<DynamicObject> =
        Api::all_with(kube.client.clone(), &resource("VolumeSnapshotClass"));
    let found = match class {
        Some(class) => classes
            .get_opt(class)
            .await
            .map_err(Error::api(format!("read VolumeSnapshotClass {class}")))?
            .ok_or_else(|| Error::NotFound(format!(
                "VolumeSnapshotClass {class} does not exist; `kubectl get volumesnapshotclass` lists the classes"
            )))?,
        None => classes
            .list(&Default::default())
            .await
            .map_err(Error::api("list VolumeSnapshotClasses"))?
            .items
            .into_iter()
            .find(|c| {
                c.annotations()
                    .get(DEFAULT_CLASS_ANNOTATION)
                    .map(String::as_str)
                    == Some("true")
            })
            .ok_or_else(|| Error::NotFound(
                "no default VolumeSnapshotClass in the cluster; pass --class CLASS (`kubectl get volumesnapshotclass` lists them)"
                    .into(),
            ))?,
    };
    Ok(SnapshotClass {
        name: found.name_any(),
        driver: found
            .data
            .get("driver")
            .and_then(|d| d.as_str())
            .unwrap_or_default()
            .to_string(),
    })
}

/// Refuses (exit 2, nothing created) a volume that is not a CSI volume of the class's
/// driver: the snapshot-controller would accept the VolumeSnapshot and never cut it.
/// Reading PersistentVolumes needs a ClusterRole: without it the check is skipped.
async fn check_csi_volumes(kube: &Kube, pvcs: &[String], class: &SnapshotClass) -> Result<()> {
    let claims: Api<PersistentVolumeClaim> = kube.api();
    let volumes: Api<PersistentVolume> = kube.api_all();
    for pvc in pvcs {
        let claim = claims.get(pvc).await.map_err(Error::api(format!(
            "read PersistentVolumeClaim {}/{pvc}",
            kube.namespace
        )))?;
        let spec = claim.spec.unwrap_or_default();
        let Some(volume) = spec.volume_name.filter(|v| !v.is_empty()) else {
            return Err(Error::Refused(format!(
                "PersistentVolumeClaim {}/{pvc} is not bound to a volume yet: nothing to snapshot",
                kube.namespace
            )));
        };
        let pv = match volumes.get(&volume).await {
            Ok(pv) => pv,
            Err(err) => {
                tracing::debug!(%volume, %err, "cannot read the PersistentVolume; its driver is not checked");
                continue;
            }
        };
        let driver = pv.spec.and_then(|s| s.csi).map(|c| c.driver);
        let class_name = spec.storage_class_name.unwrap_or_default();
        match driver {
            Some(driver) if driver == class.driver => {}
            Some(driver) => {
                return Err(Error::Refused(format!(
                    "PersistentVolumeClaim {}/{pvc} is a volume of CSI driver {driver}, but VolumeSnapshotClass {} is for {}; pass --class with a class of driver {driver}",
                    kube.namespace, class.name, class.driver
                )));
            }
            None => {
                return Err(Error::Refused(format!(
                    "PersistentVolumeClaim {}/{pvc} (StorageClass {class_name:?}) is not a CSI volume: VolumeSnapshots need a CSI driver that supports snapshots; deploy on such a class (`kubectl dbdeploy --storage-class`) or back up with `kubectl dbbackup dump`",
                    kube.namespace
                )));
            }
        }
    }
    Ok(())
}

/// Waits until the snapshot has `pointer` (creationTime, or readyToUse true) or an error.
async fn wait_for(api: &Api<DynamicObject>, name: &str, pointer: &str) -> Result<DynamicObject> {
    let condition = |obj: Option<&DynamicObject>| {
        obj.is_some_and(|o| {
            o.data
                .pointer(pointer)
                .is_some_and(|v| v.as_bool().unwrap_or(!v.is_null()))
                || o.data.pointer("/status/error/message").is_some()
        })
    };
    // The callers bound this wait with their own deadline.
    let found = kube::runtime::wait::await_condition(api.clone(), name, condition)
        .await
        .map_err(|source| Error::Watch {
            what: format!("VolumeSnapshot {name}"),
            source,
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A client whose API server answers every request with `status` and `body`.
    fn mocked(status: u16, body: &'static str) -> Kube {
        let service = tower::service_fn(
            move |_request: http::Request<kube::client::Body>| async move {
                http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(body.as_bytes().to_vec()))
            },
        );
        let client = kube::Client::new(service, "default");
        Kube {
            client: client.clone(),
            streams: client,
            namespace: "default".into(),
            requests: Default::default(),
        }
    }

    // Discovery is readable by every user, so a cluster that serves the snapshot API cannot
    // hide it: its absence is shown to the code by a mocked 404.
    #[tokio::test]
    async fn a_cluster_without_the_snapshot_api_is_named_with_exit_3() {
        let kube = mocked(
            404,
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"the server could not find the requested resource"}"#,
        );
        let err = check_api(&kube).await.unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert!(err.to_string().contains("no VolumeSnapshot API"), "{err}");
        let err = crate::backup::snapshot_list::list(&kube, None, false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no VolumeSnapshot API"), "{err}");
        let forbidden = mocked(
            403,
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,"message":"forbidden"}"#,
        );
        let err = check_api(&forbidden).await.unwrap_err();
        assert!(err.to_string().starts_with("failed to discover"), "{err}");
    }

    /// A cluster that serves the snapshot API with one VolumeSnapshotClass, not marked
    /// default: without --class nothing can be chosen; a named class that is missing is
    /// named. (The shared test cluster has a default class that other tests rely on.)
    #[tokio::test]
    async fn no_default_class_and_an_unknown_class_are_refused_before_any_write() {
        let service = tower::service_fn(|request: http::Request<kube::client::Body>| async move {
            let path = request.uri().path().to_string();
            assert_eq!(request.method(), http::Method::GET, "{path}: only reads");
            let (status, body) = match path.as_str() {
                "/apis/snapshot.storage.k8s.io/v1" => (
                    200,
                    r#"{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"snapshot.storage.k8s.io/v1","resources":[{"name":"volumesnapshots","singularName":"volumesnapshot","namespaced":true,"kind":"VolumeSnapshot","verbs":["get","list","create"]}]}"#,
                ),
                "/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses" => (
                    200,
                    r#"{"apiVersion":"snapshot.storage.k8s.io/v1","kind":"VolumeSnapshotClassList","metadata":{},"items":[{"apiVersion":"snapshot.storage.k8s.io/v1","kind":"VolumeSnapshotClass","metadata":{"name":"slow"},"driver":"ebs.csi.aws.com","deletionPolicy":"Delete"}]}"#,
                ),
                "/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses/slow" => (
                    200,
                    r#"{"apiVersion":"snapshot.storage.k8s.io/v1","kind":"VolumeSnapshotClass","metadata":{"name":"slow"},"driver":"ebs.csi.aws.com","deletionPolicy":"Delete"}"#,
                ),
                _ => (
                    404,
                    r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"not found"}"#,
                ),
            };
            http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(body.as_bytes().to_vec()))
        });
        let client = kube::Client::new(service, "default");
        let kube = Kube {
            client: client.clone(),
            streams: client,
            namespace: "default".into(),
            requests: Default::default(),
        };
        let err = check_api_and_class(&kube, None).await.unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert!(
            err.to_string().contains("no default VolumeSnapshotClass"),
            "{err}"
        );
        let err = check_api_and_class(&kube, Some("fast")).await.unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert!(
            err.to_string()
                .contains("VolumeSnapshotClass fast does not exist"),
            "{err}"
        );
        let class = check_api_and_class(&kube, Some("slow")).await.unwrap();
        assert_eq!(
            (class.name.as_str(), class.driver.as_str()),
            ("slow", "ebs.csi.aws.com")
        );
    }

    #[test]
    fn snapshots_carry_database_engine_version_and_consistency() {
        let meta = SnapshotMeta {
            database: "pg",
            engine: Engine::Postgres,
            version: "15.14",
            consistency: "application",
        };
        let object = volume_snapshot("data-pg-0-x", "ns", "data-pg-0", "csi-snap", &meta);
        let value = serde_json::to_value(&object).unwrap();
        assert_eq!(value["apiVersion"], "snapshot.storage.k8s.io/v1");
        assert_eq!(value["kind"], "VolumeSnapshot");
        assert_eq!(
            value["metadata"]["labels"]["app.kubernetes.io/instance"],
            "pg"
        );
        assert_eq!(
            value["metadata"]["labels"]["app.kubernetes.io/name"],
            "postgresql"
        );
        assert_eq!(
            value["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "kubectl-dbbackup"
        );
        assert_eq!(
            value["metadata"]["annotations"][VERSION_ANNOTATION],
            "15.14"
        );
        assert_eq!(
            value["metadata"]["annotations"][CONSISTENCY_ANNOTATION],
            "application"
        );
        assert_eq!(value["spec"]["volumeSnapshotClassName"], "csi-snap");
        assert_eq!(
            value["spec"]["source"]["persistentVolumeClaimName"],
            "data-pg-0"
        );
    }
}
