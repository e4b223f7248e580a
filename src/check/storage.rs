//! Storage rules: every claim bound (and why not: missing class, no default class,
//! WaitForFirstConsumer, provisioning events), and the volumes' reclaim policy.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;

use super::facts::{Facts, event_line};
use super::verdict::{Check, Verdict};

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

pub(super) fn pvc_bound(facts: &Facts) -> Check {
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
                // Without the classes the cause cannot be told apart: say why they are missing.
                let unread = match classes {
                    Err(err) => format!("; could not check its StorageClass: {err}"),
                    Ok(_) => String::new(),
                };
                Check::new(NAME, Verdict::Fail, format!("{name} {phase}{events_text}{unread}"))
                    .fix("the provisioner has not made a volume: read the events above and the provisioner's logs (kubectl describe pvc)")
            }
        }
    }
}

pub(super) fn pv_reclaim_policy(facts: &Facts) -> Check {
    const NAME: &str = "pv.reclaim-policy";
    if facts.volumes.is_empty() {
        return match facts.volume_errors.first() {
            Some(err) => Check::new(
                NAME,
                Verdict::Skipped,
                format!("could not read the PersistentVolume: {err}"),
            ),
            None => Check::new(NAME, Verdict::Skipped, "no bound PersistentVolume"),
        };
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
