//! Deciding which pod the test will delete, before anything changes: the target resolved
//! to one Ready StatefulSet pod, with its UID, node and volumes recorded.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::{Api, ResourceExt};

use super::report::{self, ClaimRecord, PodRecord};
use super::{API_TIMEOUT, PersistOptions, api};
use crate::client::Kube;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::target::{self, statefulset_pods};
use crate::wait::{pod_ready, pod_state, within};

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
        API_TIMEOUT,
        format!(
            "the API server to resolve {} in namespace {}",
            options.target, kube.namespace
        ),
        target::resolve(kube, &options.target, options.container.as_deref()),
    )
    .await?;
    let ns = target.namespace.clone();
    let Some(sts) = &target.statefulset else {
        return Err(Error::Refused(format!(
            "pod {ns}/{} is not managed by a StatefulSet: deleting it would leave the database without a pod; dbpersist only tests StatefulSet pods",
            target.pod_name
        )));
    };
    let sts_name = sts.name_any();
    let pod_name = choose_pod(
        options,
        &target.pod_name,
        &ns,
        &sts_name,
        &statefulset_pods(sts),
    )?;
    let pods: Api<Pod> = kube.api();
    let pod = api(format!("read pod {ns}/{pod_name}"), pods.get_opt(&pod_name))
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

/// The pod to delete among the StatefulSet's `members`: the one TARGET or `--pod` names
/// (`--pod` as a name or an ordinal), or the only one.
fn choose_pod(
    options: &PersistOptions,
    resolved: &str,
    ns: &str,
    sts_name: &str,
    members: &[String],
) -> Result<String> {
    let named_pod = target::TargetRef::parse(&options.target).is_ok_and(|t| t.names_pod(resolved));
    match &options.pod {
        Some(pod) => {
            let wanted = if pod.chars().all(|c| c.is_ascii_digit()) {
                format!("{sts_name}-{pod}")
            } else {
                pod.clone()
            };
            if named_pod && wanted != resolved {
                return Err(Error::Refused(format!(
                    "TARGET names pod {resolved} but --pod names {wanted}; give one of them"
                )));
            }
            if !members.contains(&wanted) {
                return Err(Error::Refused(format!(
                    "pod {wanted} is not a pod of StatefulSet {ns}/{sts_name} (its pods: {})",
                    members.join(", ")
                )));
            }
            Ok(wanted)
        }
        None if !named_pod && members.len() > 1 => Err(Error::Refused(format!(
            "StatefulSet {ns}/{sts_name} has {} replicas, each with its own data: name the pod to delete with --pod (e.g. --pod {sts_name}-0)",
            members.len()
        ))),
        None => Ok(resolved.to_string()),
    }
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
        let action = format!(
            "read PersistentVolumeClaim {}/{}",
            kube.namespace, source.claim_name
        );
        let pvc = api(action, pvcs.get_opt(&source.claim_name)).await?;
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
