//! `snapshot list` and `snapshot delete`: the VolumeSnapshots this tool took (labelled
//! managed-by kubectl-dbbackup), read back with what their labels and annotations recorded.
//! Also what `dbdeploy --from-snapshot` and dbcheck read about one snapshot.

use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, DynamicObject, ListParams};
use kube::{Api, ResourceExt};
use serde::Serialize;

use super::snapshot::{
    CONSISTENCY_ANNOTATION, DATABASE_LABEL, MANAGED_BY, VERSION_ANNOTATION, check_api, resource,
};
use crate::client::Kube;
use crate::engine::{ENGINE_LABEL, Engine};
use crate::error::{Error, Result};

/// One VolumeSnapshot as `snapshot list` shows it (also its `-o json` schema).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SnapshotInfo {
    pub name: String,
    pub namespace: String,
    /// The PVC it was taken of.
    pub pvc: String,
    pub ready: bool,
    /// `status.restoreSize`, when the driver reports it.
    pub size: Option<String>,
    /// When the snapshot was cut (`status.creationTime`), RFC 3339.
    pub created: Option<String>,
    /// Seconds since it was cut (since the object was created when not cut yet).
    pub age_seconds: Option<i64>,
    /// The database (label), when taken by this tool.
    pub database: Option<String>,
    pub engine: Option<Engine>,
    pub engine_version: Option<String>,
    /// `application`, `crash`, or absent when not taken by this tool.
    pub consistency: Option<String>,
    /// Labelled managed-by kubectl-dbbackup.
    pub managed: bool,
    /// `status.error.message`, when the snapshot failed.
    pub error: Option<String>,
}

/// What a VolumeSnapshot object says (pure: `now` is an input).
pub fn info(object: &DynamicObject, now: Timestamp) -> SnapshotInfo {
    let data = &object.data;
    let text = |pointer: &str| {
        data.pointer(pointer)
            .and_then(|v| v.as_str())
            .map(String::from)
    };
    let labels = object.labels();
    let annotations = object.annotations();
    let created = text("/status/creationTime");
    let since = created.clone().or_else(|| {
        object
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
    });
    let age_seconds = since
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| now.as_second() - t.as_second());
    SnapshotInfo {
        name: object.name_any(),
        namespace: object.namespace().unwrap_or_default(),
        pvc: text("/spec/source/persistentVolumeClaimName").unwrap_or_default(),
        ready: data.pointer("/status/readyToUse").and_then(|v| v.as_bool()) == Some(true),
        size: text("/status/restoreSize"),
        created,
        age_seconds,
        database: labels.get(DATABASE_LABEL).cloned(),
        engine: labels.get(ENGINE_LABEL).and_then(|e| Engine::from_name(e)),
        engine_version: annotations.get(VERSION_ANNOTATION).cloned(),
        consistency: annotations.get(CONSISTENCY_ANNOTATION).cloned(),
        managed: labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str)
            == Some(MANAGED_BY),
        error: text("/status/error/message"),
    }
}

fn snapshots(kube: &Kube) -> Api<DynamicObject> {
    Api::namespaced_with(
        kube.client.clone(),
        &kube.namespace,
        &resource("VolumeSnapshot"),
    )
}

/// The snapshots this tool took in the namespace, of one database when `target` is given
/// (a StatefulSet, or a pod of one, or a pod alone), newest first. With `all`, every
/// VolumeSnapshot of the namespace.
pub async fn list(kube: &Kube, target: Option<&str>, all: bool) -> Result<Vec<SnapshotInfo>> {
    check_api(kube).await?;
    let database = match target {
        Some(name) => Some(
            crate::target::resolve(kube, name, None)
                .await
                .ok()
                .and_then(|t| t.statefulset.map(|s| s.name_any()))
                .or_else(|| {
                    crate::target::TargetRef::parse(name)
                        .ok()
                        .map(|t| t.name().to_string())
                })
                .unwrap_or_else(|| name.to_string()),
        ),
        None => None,
    };
    of_database(kube, database.as_deref(), all).await
}

/// The snapshots labelled with `database` (all when `None`), newest first, without the
/// API discovery [`list`] starts with.
pub async fn of_database(
    kube: &Kube,
    database: Option<&str>,
    all: bool,
) -> Result<Vec<SnapshotInfo>> {
    let mut selector = Vec::new();
    if !all {
        selector.push(format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    }
    if let Some(database) = database {
        selector.push(format!("{DATABASE_LABEL}={database}"));
    }
    let list = snapshots(kube)
        .list(&ListParams::default().labels(&selector.join(",")))
        .await
        .map_err(Error::api(format!(
            "list VolumeSnapshots in {}",
            kube.namespace
        )))?;
    let now = Timestamp::now();
    let mut infos: Vec<SnapshotInfo> = list.items.iter().map(|o| info(o, now)).collect();
    infos.sort_by(|a, b| a.age_seconds.cmp(&b.age_seconds).then(a.name.cmp(&b.name)));
    Ok(infos)
}

/// One snapshot, or `None` when it does not exist.
pub async fn get(kube: &Kube, name: &str) -> Result<Option<SnapshotInfo>> {
    check_api(kube).await?;
    let found = snapshots(kube)
        .get_opt(name)
        .await
        .map_err(Error::api(format!(
            "read VolumeSnapshot {}/{name}",
            kube.namespace
        )))?;
    Ok(found.map(|o| info(&o, Timestamp::now())))
}

/// Deletes a snapshot this tool took; one it did not take only with `any`. Refused
/// (exit 2) before anything is deleted otherwise.
pub async fn delete(kube: &Kube, name: &str, any: bool) -> Result<SnapshotInfo> {
    let Some(found) = get(kube, name).await? else {
        return Err(Error::NotFound(format!(
            "VolumeSnapshot {}/{name} does not exist; `kubectl dbbackup snapshot list` lists them",
            kube.namespace
        )));
    };
    if !found.managed && !any {
        return Err(Error::Refused(format!(
            "VolumeSnapshot {}/{name} was not taken by kubectl dbbackup (no app.kubernetes.io/managed-by={MANAGED_BY} label); pass --any to delete it anyway",
            kube.namespace
        )));
    }
    snapshots(kube)
        .delete(name, &DeleteParams::default())
        .await
        .map_err(Error::api(format!(
            "delete VolumeSnapshot {}/{name}",
            kube.namespace
        )))?;
    Ok(found)
}

pub use crate::output::age;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_reads_status_labels_and_annotations() {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {
                "name": "data-pg-0-20261203t080000z",
                "namespace": "ns",
                "creationTimestamp": "2026-12-03T08:00:00Z",
                "labels": {
                    "app.kubernetes.io/managed-by": "kubectl-dbbackup",
                    "app.kubernetes.io/instance": "pg",
                    "app.kubernetes.io/name": "postgresql"
                },
                "annotations": {
                    "kubectl-db.io/engine-version": "15.14",
                    "kubectl-db.io/consistency": "application"
                }
            },
            "spec": {"source": {"persistentVolumeClaimName": "data-pg-0"}},
            "status": {"readyToUse": true, "restoreSize": "1Gi",
                       "creationTime": "2026-12-03T08:00:01Z"}
        }))
        .unwrap();
        let now: Timestamp = "2026-12-03T09:00:01Z".parse().unwrap();
        let info = info(&object, now);
        assert_eq!(info.pvc, "data-pg-0");
        assert!(info.ready && info.managed);
        assert_eq!(info.age_seconds, Some(3600));
        assert_eq!(info.engine, Some(Engine::Postgres));
        assert_eq!(info.engine_version.as_deref(), Some("15.14"));
        assert_eq!(info.consistency.as_deref(), Some("application"));
        assert_eq!(info.database.as_deref(), Some("pg"));

        let bare: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": "by-hand", "namespace": "ns"},
            "spec": {"source": {"persistentVolumeClaimName": "x"}},
            "status": {"readyToUse": false, "error": {"message": "boom"}}
        }))
        .unwrap();
        let info = super::info(&bare, now);
        assert!(!info.ready && !info.managed);
        assert_eq!((info.engine, info.age_seconds), (None, None));
        assert_eq!(info.error.as_deref(), Some("boom"));
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(42), "42s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(3 * 3600), "3h");
        assert_eq!(age(5 * 86_400), "5d");
    }
}
