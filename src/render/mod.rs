//! Pure rendering: a validated [`DeploySpec`] and the passwords in, Kubernetes objects out.
//! No I/O and nothing random here, so the output is byte-for-byte stable and snapshot-tested.

pub mod cronjob;
pub mod from_snapshot;
mod spec;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapKeySelector, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, KeyToPath, Lifecycle, LifecycleHandler,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecurityContext,
    Service, ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

pub use spec::{DeploySpec, Resources, defaults, parse_setting, validate_name, validate_quantity};

/// Value of [`MANAGED_BY_LABEL`] on everything dbdeploy creates; also its field manager
/// in server-side apply (`crate::apply::FIELD_MANAGER`).
pub const MANAGED_BY: &str = "kubectl-dbdeploy";
/// The recommended label that names the tool managing an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The recommended label that names the database (the instance) an object belongs to.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// The guide's `app: <name>` label, also on hand-made deployments dbcheck looks at.
pub const APP_LABEL: &str = "app";
/// Pod-template annotation that changes when the server configuration does, so a
/// `--set` change rolls the pod (the servers read their config only at start).
pub const CONFIG_HASH_ANNOTATION: &str = "kubectl-db.io/config-hash";
/// Name of the data volume claim template (PVCs are `data-<name>-<ordinal>`).
pub const DATA_VOLUME: &str = "data";
/// Grace period for a clean shutdown: a checkpoint on a busy server takes a while.
pub const TERMINATION_GRACE_SECONDS: i64 = 120;

/// Names of the objects for one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub statefulset: String,
    pub headless_service: String,
    pub service: String,
    pub config_map: String,
    pub secret: String,
    pub network_policy: String,
    pub pdb: String,
}

impl Names {
    /// The guide's naming: `<name>`, `<name>-headless`, `<name>-config`, `<name>-secret`.
    pub fn of(name: &str) -> Self {
        Names {
            statefulset: name.into(),
            headless_service: format!("{name}-headless"),
            service: name.into(),
            config_map: format!("{name}-config"),
            secret: format!("{name}-secret"),
            network_policy: name.into(),
            pdb: name.into(),
        }
    }

    /// The PVC of pod `ordinal`.
    pub fn pvc(name: &str, ordinal: i32) -> String {
        claim_name(DATA_VOLUME, name, ordinal)
    }
}

/// The PVC a StatefulSet makes for pod `ordinal` from its volumeClaimTemplate `template`:
/// `<template>-<statefulset>-<ordinal>` (the StatefulSet controller's naming).
pub fn claim_name(template: &str, statefulset: &str, ordinal: impl std::fmt::Display) -> String {
    format!("{template}-{statefulset}-{ordinal}")
}

/// Whether `claim` is a data PVC of database `name` ([`Names::pvc`] of some ordinal). The
/// ordinal must be all digits, so database `pg` does not claim `data-pg-2-0` of `pg-2`.
pub fn is_data_claim_of(claim: &str, name: &str) -> bool {
    claim
        .strip_prefix(&claim_name(DATA_VOLUME, name, ""))
        .is_some_and(|ordinal| !ordinal.is_empty() && ordinal.chars().all(|c| c.is_ascii_digit()))
}

/// Every object of one database, in the order they are applied.
#[derive(Debug, Clone)]
pub struct Manifests {
    pub config_map: ConfigMap,
    pub secret: Secret,
    pub headless_service: Service,
    pub service: Service,
    pub stateful_set: StatefulSet,
    pub network_policy: NetworkPolicy,
    pub pdb: Option<PodDisruptionBudget>,
}

/// The recommended `app.kubernetes.io/*` labels plus the guide's `app: <name>`.
pub fn labels(spec: &DeploySpec) -> BTreeMap<String, String> {
    let mut labels = selector_labels(&spec.name);
    labels.insert(
        crate::engine::ENGINE_LABEL.into(),
        spec.engine.app_name().into(),
    );
    labels.insert("app.kubernetes.io/component".into(), "database".into());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels
}

/// Whether an object's labels say kubectl-dbdeploy made it for the database `name`: the
/// managed-by and instance labels [`labels`] puts on every object (PVCs inherit them from
/// the volumeClaimTemplate). `delete` removes nothing without them.
pub fn made_for(labels: &BTreeMap<String, String>, name: &str) -> bool {
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        && labels.get(INSTANCE_LABEL).map(String::as_str) == Some(name)
}

/// The labels that select the database's pods (immutable once the StatefulSet exists).
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_LABEL.to_string(), name.to_string()),
        (INSTANCE_LABEL.to_string(), name.to_string()),
    ])
}

/// `app=NAME` alone: what the guide's hand-made StatefulSets label their pods and claims
/// with too, so waits on a database dbdeploy did not make still see its pods.
pub fn app_selector(name: &str) -> String {
    to_selector(&BTreeMap::from([(APP_LABEL.to_string(), name.to_string())]))
}

/// The selector of everything dbdeploy manages.
pub fn managed_selector() -> String {
    to_selector(&BTreeMap::from([(
        MANAGED_BY_LABEL.to_string(),
        MANAGED_BY.to_string(),
    )]))
}

fn to_selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The label a client pod needs to reach the database through the NetworkPolicy.
pub fn client_label(name: &str) -> String {
    format!("{name}-client")
}

fn meta(spec: &DeploySpec, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(spec.namespace.clone()),
        labels: Some(labels(spec)),
        ..Default::default()
    }
}

/// Renders every object. `passwords` maps each of the engine's password keys to its value.
pub fn render(spec: &DeploySpec, passwords: &BTreeMap<String, String>) -> Manifests {
    let names = Names::of(&spec.name);
    let config_text = spec.engine.config_file(&spec.image, &spec.settings);
    Manifests {
        config_map: config_map(spec, &names, &config_text),
        secret: secret(spec, &names, passwords),
        headless_service: service(spec, &names.headless_service, true),
        service: service(spec, &names.service, false),
        stateful_set: stateful_set(spec, &names, &config_text),
        network_policy: network_policy(spec, &names),
        pdb: (spec.pdb || spec.replicas > 1).then(|| pdb(spec, &names)),
    }
}

fn config_map(spec: &DeploySpec, names: &Names, config_text: &str) -> ConfigMap {
    let mut data = spec.engine.config_env(&spec.database, &spec.user);
    data.insert(spec.engine.config_path().1.into(), config_text.into());
    ConfigMap {
        metadata: meta(spec, &names.config_map),
        data: Some(data),
        ..Default::default()
    }
}

fn secret(spec: &DeploySpec, names: &Names, passwords: &BTreeMap<String, String>) -> Secret {
    // `data`, not `stringData`: stringData is write-only and makes re-applies look changed.
    let data = spec
        .engine
        .password_keys()
        .iter()
        .map(|key| {
            let value = passwords.get(*key).cloned().unwrap_or_default();
            (key.to_string(), ByteString(value.into_bytes()))
        })
        .collect();
    Secret {
        metadata: meta(spec, &names.secret),
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

fn service(spec: &DeploySpec, name: &str, headless: bool) -> Service {
    Service {
        metadata: meta(spec, name),
        spec: Some(ServiceSpec {
            cluster_ip: headless.then(|| "None".into()),
            // Peers of a headless service must resolve before they are ready (start-up order).
            publish_not_ready_addresses: headless.then_some(true),
            selector: Some(selector_labels(&spec.name)),
            ports: Some(vec![ServicePort {
                name: Some(spec.engine.port_name().into()),
                port: spec.engine.port(),
                target_port: Some(IntOrString::String(spec.engine.port_name().into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            type_: Some("ClusterIP".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn network_policy(spec: &DeploySpec, names: &Names) -> NetworkPolicy {
    let mut from = vec![NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(client_label(&spec.name), "true".into())])),
            ..Default::default()
        }),
        ..Default::default()
    }];
    if spec.allow_namespace {
        from.push(NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..Default::default()
        });
    }
    NetworkPolicy {
        metadata: meta(spec, &names.network_policy),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&spec.name)),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(from),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(spec.engine.port())),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
            }]),
            ..Default::default()
        }),
    }
}

fn pdb(spec: &DeploySpec, names: &Names) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(spec, &names.pdb),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&spec.name)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn exec_probe(script: String, period: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["sh".into(), "-c".into(), script]),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        success_threshold: Some(1),
        ..Default::default()
    }
}

fn env_from_config(names: &Names, key: &str) -> EnvVar {
    EnvVar {
        name: key.into(),
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: names.config_map.clone(),
                key: key.into(),
                optional: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn env_from_secret(names: &Names, key: &str) -> EnvVar {
    EnvVar {
        name: key.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: names.secret.clone(),
                key: key.into(),
                optional: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The container security context of the restricted Pod Security Standard (no privilege
/// escalation, read-only root, non-root, no capabilities): the database's and the backup
/// job's containers share it.
pub(crate) fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..Default::default()
    }
}

fn quantities(pairs: [(&str, &str); 2]) -> BTreeMap<String, Quantity> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

fn container(spec: &DeploySpec, names: &Names) -> Container {
    let engine = spec.engine;
    let mut env: Vec<EnvVar> = engine
        .config_env(&spec.database, &spec.user)
        .keys()
        .map(|key| env_from_config(names, key))
        .collect();
    env.extend(
        engine
            .password_keys()
            .iter()
            .map(|key| env_from_secret(names, key)),
    );

    let (config_dir, _) = engine.config_path();
    let mut mounts = vec![
        VolumeMount {
            name: DATA_VOLUME.into(),
            mount_path: engine.data_mount().into(),
            ..Default::default()
        },
        VolumeMount {
            name: "config".into(),
            mount_path: config_dir.into(),
            read_only: Some(true),
            ..Default::default()
        },
    ];
    mounts.extend(
        engine
            .scratch_dirs()
            .iter()
            .map(|(name, path)| VolumeMount {
                name: (*name).into(),
                mount_path: (*path).into(),
                ..Default::default()
            }),
    );

    let args = engine.server_args();
    let commands = engine.commands();
    Container {
        name: engine.container_name().into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: (!args.is_empty()).then_some(args),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some(engine.port_name().into()),
            container_port: engine.port(),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        volume_mounts: Some(mounts),
        // Start-up (initdb, crash recovery) gets its own budget of 10 minutes; liveness only
        // starts counting once the server has answered, so recovery is never killed.
        startup_probe: Some(exec_probe(commands.liveness_probe(&spec.image), 5, 120)),
        readiness_probe: Some(exec_probe(commands.readiness_probe(&spec.image), 10, 3)),
        liveness_probe: Some(exec_probe(commands.liveness_probe(&spec.image), 20, 3)),
        lifecycle: commands.pre_stop().map(|script| Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["sh".into(), "-c".into(), script.into()]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(quantities([
                ("cpu", &spec.resources.cpu_request),
                ("memory", &spec.resources.memory_request),
            ])),
            limits: Some(quantities([
                ("cpu", &spec.resources.cpu_limit),
                ("memory", &spec.resources.memory_limit),
            ])),
            ..Default::default()
        }),
        security_context: Some(restricted_container()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    }
}

fn stateful_set(spec: &DeploySpec, names: &Names, config_text: &str) -> StatefulSet {
    let engine = spec.engine;
    let uid = engine.uid(&spec.image);
    let (_, config_file) = engine.config_path();
    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: names.config_map.clone(),
            items: Some(vec![KeyToPath {
                key: config_file.into(),
                path: config_file.into(),
                mode: None,
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }];
    volumes.extend(engine.scratch_dirs().iter().map(|(name, _)| Volume {
        name: (*name).into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }));

    let pod_labels = labels(spec);
    let config_hash =
        crate::backup::format::hex(&Sha256::digest(config_text.as_bytes()))[..16].to_string();

    let pod_spec = PodSpec {
        // The pod never talks to the API server.
        automount_service_account_token: Some(false),
        // Service links would inject e.g. MYSQL_PORT=tcp://..., which the images misread.
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        // fsGroup makes the volume writable by the server's uid; no root init container
        // and no chown. OnRootMismatch skips the recursive walk on every restart.
        security_context: Some(PodSecurityContext {
            run_as_user: Some(uid),
            run_as_group: Some(uid),
            fs_group: Some(uid),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        containers: vec![container(spec, names)],
        volumes: Some(volumes),
        ..Default::default()
    };

    let mut claim_spec = PersistentVolumeClaimSpec {
        access_modes: Some(vec!["ReadWriteOnce".into()]),
        resources: Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([(
                "storage".to_string(),
                Quantity(spec.storage_size.clone()),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    // No class named unless asked: "standard" does not exist on most managed clusters, and
    // leaving it out picks the cluster's default class.
    claim_spec.storage_class_name = spec.storage_class.clone();

    StatefulSet {
        metadata: meta(spec, &names.statefulset),
        spec: Some(StatefulSetSpec {
            service_name: Some(names.headless_service.clone()),
            replicas: Some(spec.replicas),
            pod_management_policy: Some("OrderedReady".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: None,
            }),
            // The data outlives the StatefulSet: only `delete --purge-data` removes PVCs.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&spec.name)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_string(),
                        config_hash,
                    )])),
                    ..Default::default()
                }),
                spec: Some(pod_spec),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(DATA_VOLUME.into()),
                    labels: Some(labels(spec)),
                    ..Default::default()
                },
                spec: Some(claim_spec),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Manifests {
    /// All objects as JSON values in apply order; the Secret only when `with_secret`.
    pub fn to_values(&self, with_secret: bool) -> Vec<serde_json::Value> {
        let mut values = vec![to_value(&self.config_map)];
        if with_secret {
            values.push(to_value(&self.secret));
        }
        values.push(to_value(&self.headless_service));
        values.push(to_value(&self.service));
        values.push(to_value(&self.stateful_set));
        values.push(to_value(&self.network_policy));
        if let Some(pdb) = &self.pdb {
            values.push(to_value(pdb));
        }
        values
    }
}

fn to_value<T: serde::Serialize>(object: &T) -> serde_json::Value {
    // k8s-openapi types always serialize; Null would only hide a bug in a snapshot.
    serde_json::to_value(object).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_claims_are_named_and_matched_by_exact_name_and_ordinal() {
        assert_eq!(Names::pvc("pg", 0), "data-pg-0");
        assert!(is_data_claim_of("data-pg-0", "pg"));
        assert!(is_data_claim_of("data-pg-12", "pg"));
        assert!(
            !is_data_claim_of("data-pg-2-0", "pg"),
            "database pg-2's PVC"
        );
        assert!(!is_data_claim_of("data-pg-", "pg"));
        assert!(!is_data_claim_of("data-pgx-0", "pg"));
        assert!(!is_data_claim_of("wal-pg-0", "pg"));
    }

    #[test]
    fn selectors_are_the_labels_put_on_the_objects() {
        assert_eq!(app_selector("pg"), "app=pg");
        assert_eq!(
            selector_labels("pg"),
            BTreeMap::from([
                ("app".to_string(), "pg".to_string()),
                ("app.kubernetes.io/instance".to_string(), "pg".to_string())
            ])
        );
        assert_eq!(
            managed_selector(),
            "app.kubernetes.io/managed-by=kubectl-dbdeploy"
        );
    }
}
