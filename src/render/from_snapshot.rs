//! `dbdeploy --from-snapshot`: the data PVC of pod 0, pre-created with a VolumeSnapshot as
//! its `dataSource` so the StatefulSet finds it and the server starts on the snapshot's data,
//! and the checks that refuse a snapshot the new server could not open.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, TypedLocalObjectReference};

use super::{DeploySpec, Manifests, Names, labels};
use crate::backup::snapshot_list::SnapshotInfo;
use crate::engine::{image_version, server_version};

/// Why a snapshot cannot seed this deployment (`None`: it can). The message names the
/// snapshot and what to do.
pub fn refusal(spec: &DeploySpec, name: &str, snapshot: Option<&SnapshotInfo>) -> Option<String> {
    let Some(snapshot) = snapshot else {
        return Some(format!(
            "VolumeSnapshot {}/{name} does not exist; `kubectl dbbackup snapshot list` lists the snapshots",
            spec.namespace
        ));
    };
    if let Some(error) = &snapshot.error {
        return Some(format!(
            "VolumeSnapshot {name} is not ready to use: {error}"
        ));
    }
    if !snapshot.ready {
        return Some(format!(
            "VolumeSnapshot {name} is not ready to use yet; wait until `kubectl dbbackup snapshot list` shows it ready"
        ));
    }
    let (Some(engine), Some(version)) = (snapshot.engine, snapshot.engine_version.as_deref())
    else {
        return Some(format!(
            "VolumeSnapshot {name} was not taken by `kubectl dbbackup snapshot` (no engine and version labels): its data directory cannot be checked"
        ));
    };
    if engine != spec.engine {
        return Some(format!(
            "VolumeSnapshot {name} holds a {} data directory, not {}",
            engine.product(),
            spec.engine.product()
        ));
    }
    let Some(image) = image_version(&spec.image) else {
        return Some(format!(
            "the image {} names no version to compare with the snapshot's {} {version}; pass --image with a version tag",
            spec.image,
            engine.product()
        ));
    };
    let Some(old) = server_version(version) else {
        return Some(format!(
            "VolumeSnapshot {name} records an unreadable server version {version:?}"
        ));
    };
    engine
        .version_change(old, image)
        .err()
        .map(|why| format!("VolumeSnapshot {name} cannot seed {}: {why}", spec.image))
}

/// The PVC pod 0 of the StatefulSet claims, as its volumeClaimTemplate would create it,
/// plus the snapshot as `dataSource`.
pub fn restored_claim(
    spec: &DeploySpec,
    manifests: &Manifests,
    snapshot: &str,
) -> PersistentVolumeClaim {
    let template = manifests
        .stateful_set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .and_then(|t| t.first())
        .cloned()
        .unwrap_or_default();
    let mut claim = PersistentVolumeClaim {
        metadata: template.metadata,
        spec: template.spec,
        ..Default::default()
    };
    claim.metadata.name = Some(Names::pvc(&spec.name, 0));
    claim.metadata.namespace = Some(spec.namespace.clone());
    claim.metadata.labels = Some(labels(spec));
    if let Some(claim_spec) = claim.spec.as_mut() {
        claim_spec.data_source = Some(TypedLocalObjectReference {
            api_group: Some("snapshot.storage.k8s.io".into()),
            kind: "VolumeSnapshot".into(),
            name: snapshot.into(),
        });
    }
    claim
}

/// Bytes of a Kubernetes quantity (`10Gi`, `500M`, `1073741824`); `None` when unparsable.
pub fn quantity_bytes(text: &str) -> Option<u128> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    };
    Some((number * factor as f64).ceil() as u128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;

    fn snapshot(engine: Engine, version: &str, ready: bool) -> SnapshotInfo {
        SnapshotInfo {
            name: "snap".into(),
            namespace: "ns".into(),
            pvc: "data-pg-0".into(),
            ready,
            size: Some("1Gi".into()),
            created: None,
            age_seconds: Some(5),
            database: Some("pg".into()),
            engine: Some(engine),
            engine_version: Some(version.into()),
            consistency: Some("application".into()),
            managed: true,
            error: None,
        }
    }

    #[test]
    fn only_a_ready_snapshot_of_the_same_engine_and_major_version_seeds_a_database() {
        let spec = DeploySpec::new(Engine::Postgres, "ns");
        assert_eq!(
            refusal(
                &spec,
                "snap",
                Some(&snapshot(Engine::Postgres, "15.14", true))
            ),
            None
        );
        let missing = refusal(&spec, "snap", None).unwrap();
        assert!(missing.contains("does not exist"), "{missing}");
        let pending = refusal(
            &spec,
            "snap",
            Some(&snapshot(Engine::Postgres, "15.14", false)),
        );
        assert!(pending.unwrap().contains("not ready"));
        let other = refusal(
            &spec,
            "snap",
            Some(&snapshot(Engine::Mariadb, "10.11", true)),
        );
        assert_eq!(
            other.unwrap(),
            "VolumeSnapshot snap holds a MariaDB data directory, not PostgreSQL"
        );
        let major = refusal(
            &spec,
            "snap",
            Some(&snapshot(Engine::Postgres, "16.4", true)),
        );
        assert!(major.unwrap().contains("major version change"));
        let mut by_hand = snapshot(Engine::Postgres, "15.14", true);
        by_hand.engine = None;
        assert!(
            refusal(&spec, "snap", Some(&by_hand))
                .unwrap()
                .contains("not taken by")
        );
    }

    #[test]
    fn the_restored_claim_is_pod_zeros_with_the_snapshot_as_source() {
        let mut spec = DeploySpec::new(Engine::Postgres, "ns");
        spec.name = "copy".into();
        spec.storage_class = Some("csi-hostpath".into());
        let manifests = super::super::render(&spec, &Default::default());
        let claim = restored_claim(&spec, &manifests, "snap");
        assert_eq!(claim.metadata.name.as_deref(), Some("data-copy-0"));
        let claim_spec = claim.spec.unwrap();
        assert_eq!(
            claim_spec.storage_class_name.as_deref(),
            Some("csi-hostpath")
        );
        let source = claim_spec.data_source.unwrap();
        assert_eq!(
            (source.kind.as_str(), source.name.as_str()),
            ("VolumeSnapshot", "snap")
        );
        assert!(super::super::made_for(
            &claim.metadata.labels.unwrap(),
            "copy"
        ));
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("1Gi"), Some(1 << 30));
        assert_eq!(quantity_bytes("500M"), Some(500_000_000));
        assert_eq!(quantity_bytes("1.5Ki"), Some(1536));
        assert_eq!(quantity_bytes("12"), Some(12));
        assert_eq!(quantity_bytes("x"), None);
    }
}
