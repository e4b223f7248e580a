//! The report of a persistence test (also the `-o json` schema, docs/dbpersist.md) and the
//! pure decisions over recorded pods: where the data lives, whether the volumes survived.

use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use super::{Plan, sql, steps};
use crate::engine::Engine;
use crate::exit;
use crate::wait::WarningEvent;

/// The outcome of the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// The marker came back and every PVC is the same object.
    Pass,
    /// A step failed; `failed_step` and `message` say which and what was seen.
    Fail,
    /// Ctrl-C after the delete; the report holds the state last seen.
    Interrupted,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Interrupted => "INTERRUPTED",
        })
    }
}

/// How one step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum StepResult {
    Passed,
    Failed,
    /// Done, with a problem that does not change the verdict (cleanup trouble).
    Warning,
    Skipped,
    Interrupted,
}

impl std::fmt::Display for StepResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StepResult::Passed => "ok",
            StepResult::Failed => "FAIL",
            StepResult::Warning => "warn",
            StepResult::Skipped => "skipped",
            StepResult::Interrupted => "interrupted",
        })
    }
}

/// One step of the test, with how long it took and what it saw.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Step {
    pub name: String,
    pub result: StepResult,
    pub seconds: f64,
    pub detail: String,
}

/// A PersistentVolumeClaim a pod mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClaimRecord {
    /// The pod's volume name.
    pub volume: String,
    /// The PVC's name.
    pub claim: String,
    /// The PVC's UID (none if the PVC does not exist).
    pub uid: Option<String>,
    /// The PersistentVolume it is bound to.
    pub persistent_volume: Option<String>,
}

/// A pod as recorded before the delete or after the replacement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PodRecord {
    pub uid: String,
    pub node: Option<String>,
    /// Every PVC the pod mounts (from `spec.volumes[].persistentVolumeClaim`).
    pub claims: Vec<ClaimRecord>,
    /// What holds the database's data directory, e.g. `PersistentVolumeClaim data-mysql-0`.
    pub data_volume: Option<String>,
}

impl PodRecord {
    /// One line: uid, node and volumes.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "uid {} on node {}",
            self.uid,
            self.node.as_deref().unwrap_or("none")
        );
        if self.claims.is_empty() {
            text.push_str("; no PersistentVolumeClaim");
            if let Some(data) = &self.data_volume {
                text.push_str(&format!(" (data directory on {data})"));
            }
        }
        for claim in &self.claims {
            text.push_str(&format!("; {}", describe_claim(claim)));
        }
        text
    }
}

fn describe_claim(claim: &ClaimRecord) -> String {
    format!(
        "PVC {} uid {} (PV {})",
        claim.claim,
        claim.uid.as_deref().unwrap_or("missing"),
        claim.persistent_volume.as_deref().unwrap_or("none")
    )
}

/// The marker row.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Marker {
    pub database: String,
    pub table: String,
    /// The unique text in the `data` column.
    pub data: String,
    pub id: Option<i64>,
    pub created_at: Option<String>,
}

/// What `kubectl dbpersist` did and found; the `-o json` schema.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PersistReport {
    pub verdict: Verdict,
    /// The process exit code: 0 pass, 1 fail, 3 timeout or cluster error, 130 interrupted.
    pub exit_code: i32,
    /// One line: why it passed, or the failed step and what was seen.
    pub message: String,
    pub failed_step: Option<String>,
    pub namespace: String,
    pub pod: String,
    pub statefulset: String,
    pub engine: Engine,
    pub container: String,
    pub marker: Marker,
    /// The pod before the delete.
    pub before: Option<PodRecord>,
    /// Its replacement, once Ready.
    pub after: Option<PodRecord>,
    pub steps: Vec<Step>,
    /// The last state seen of the pod or server while waiting.
    pub last_seen: Option<String>,
    /// Warning events about the pod while waiting (FailedScheduling, BackOff...).
    pub warnings: Vec<WarningEvent>,
    /// `--keep`: the test data was left in place.
    pub kept_test_data: bool,
    pub total_seconds: f64,
    #[serde(skip)]
    in_progress: Option<(String, Instant)>,
}

impl PersistReport {
    /// An empty report for a planned test.
    pub fn new(plan: &Plan, marker: &str, keep: bool) -> Self {
        PersistReport {
            verdict: Verdict::Pass,
            exit_code: exit::SUCCESS,
            message: String::new(),
            failed_step: None,
            namespace: plan.namespace.clone(),
            pod: plan.pod_name.clone(),
            statefulset: plan.statefulset.clone(),
            engine: plan.engine,
            container: plan.container.clone(),
            marker: Marker {
                database: sql::DATABASE.into(),
                table: sql::TABLE.into(),
                data: marker.into(),
                id: None,
                created_at: None,
            },
            before: None,
            after: None,
            steps: Vec::new(),
            last_seen: None,
            warnings: Vec::new(),
            kept_test_data: keep,
            total_seconds: 0.0,
            in_progress: None,
        }
    }

    /// Marks a long step as started, so an interruption can name it.
    pub fn begin(&mut self, name: &str) {
        self.in_progress = Some((name.to_string(), Instant::now()));
    }

    /// Records a finished step.
    pub fn push(&mut self, name: &str, result: StepResult, started: Instant, detail: String) {
        self.in_progress = None;
        self.steps.push(Step {
            name: name.into(),
            result,
            seconds: round(started.elapsed().as_secs_f64()),
            detail,
        });
    }

    /// Records a step that passed.
    pub fn pass(&mut self, name: &str, started: Instant, detail: String) {
        self.push(name, StepResult::Passed, started, detail);
    }

    /// Records a step that was not run, and why.
    pub fn skip(&mut self, name: &str, detail: String) {
        self.push(name, StepResult::Skipped, Instant::now(), detail);
    }

    /// Records a failed step; the first failure decides the message and exit code.
    pub fn fail(&mut self, name: &str, started: Instant, seen: String, exit_code: i32) {
        if self.verdict == Verdict::Pass {
            self.verdict = Verdict::Fail;
            self.exit_code = exit_code;
            self.failed_step = Some(name.into());
            self.message = format!("{name}: {seen}");
        }
        self.push(name, StepResult::Failed, started, seen);
    }

    /// Ctrl-C: the step in progress is cut short; the report keeps what was seen last.
    pub fn interrupt(&mut self) {
        let last_seen = self
            .last_seen
            .clone()
            .unwrap_or_else(|| "nothing yet".into());
        let step = match self.in_progress.take() {
            Some((name, started)) => {
                self.push(&name, StepResult::Interrupted, started, last_seen.clone());
                name
            }
            None => "the test".into(),
        };
        self.verdict = Verdict::Interrupted;
        self.exit_code = exit::INTERRUPTED;
        self.failed_step = Some(step.clone());
        self.message = format!(
            "interrupted during {step}; last seen: {last_seen}; the StatefulSet {} recreates the pod by itself, and the marker row may remain in {}.{}",
            self.statefulset, self.marker.database, self.marker.table
        );
    }

    /// Sets the total time and, for a pass, the message. A pass needs both deciding steps.
    pub fn finish(mut self, started: Instant) -> Self {
        self.total_seconds = round(started.elapsed().as_secs_f64());
        if self.verdict == Verdict::Pass {
            let passed = |name: &str| {
                self.steps
                    .iter()
                    .any(|s| s.name == name && s.result == StepResult::Passed)
            };
            if passed(steps::READ_AFTER) && passed(steps::VOLUMES) {
                let uids = match (&self.before, &self.after) {
                    (Some(b), Some(a)) => format!(" (uid {} -> {})", b.uid, a.uid),
                    _ => String::new(),
                };
                self.message = format!(
                    "the marker row survived the replacement of pod {}{uids}, on the same PersistentVolumeClaims",
                    self.pod
                );
            } else {
                self.verdict = Verdict::Fail;
                self.exit_code = exit::UNHEALTHY;
                self.message = "the test did not complete".into();
            }
        }
        self
    }
}

fn round(seconds: f64) -> f64 {
    (seconds * 100.0).round() / 100.0
}

/// What holds the database's data directory in a pod: the volume mounted at (or above)
/// the engine's data directory, by kind.
pub fn data_volume(pod: &Pod, engine: Engine, container: &str) -> Option<String> {
    locate_data(pod, engine, container).map(|(text, _)| text)
}

/// Why the data directory would not survive the pod's deletion, judged from the pod spec
/// alone; `None` when it is on a PersistentVolumeClaim. Anything but a PVC counts: an
/// emptyDir or the container's file system goes with the pod, a generic ephemeral volume's
/// PVC is deleted with it, and a hostPath stays on one node, so a replacement scheduled
/// elsewhere starts empty (and the test's verdict needs a PVC to compare anyway).
pub fn ephemeral_data(pod: &Pod, engine: Engine, container: &str) -> Option<String> {
    let Some((text, kind)) = locate_data(pod, engine, container) else {
        return Some(format!(
            "container {container} is not in the pod spec: where its data directory lives is unknown"
        ));
    };
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("its node");
    let why = match kind {
        DataKind::Claim => return None,
        DataKind::EmptyDir => "an emptyDir is deleted with its pod".to_string(),
        DataKind::ContainerFs => "the container's file system is deleted with the pod".into(),
        DataKind::Ephemeral => "a generic ephemeral volume's PVC is deleted with the pod".into(),
        DataKind::HostPath => format!(
            "a hostPath is a directory of node {node} only: a replacement pod scheduled on another node starts empty"
        ),
        DataKind::Other => "it is not a PersistentVolumeClaim".into(),
    };
    Some(format!("the data directory is on {text}: {why}"))
}

/// The kinds of storage a data directory can be on, as far as persistence goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataKind {
    Claim,
    EmptyDir,
    HostPath,
    Ephemeral,
    ContainerFs,
    Other,
}

/// The data directory: a literal `PGDATA` in the container's env wins (hand-made postgres
/// pods may put it anywhere); otherwise the engine's, which every mount at or above matches.
fn data_dir(container: &k8s_openapi::api::core::v1::Container, engine: Engine) -> String {
    let pgdata = (engine == Engine::Postgres)
        .then(|| {
            container
                .env
                .iter()
                .flatten()
                .find(|e| e.name == "PGDATA")
                .and_then(|e| e.value.clone())
        })
        .flatten()
        .filter(|v| v.starts_with('/'));
    pgdata.unwrap_or_else(|| engine.data_dir().to_string())
}

fn locate_data(pod: &Pod, engine: Engine, container: &str) -> Option<(String, DataKind)> {
    let spec = pod.spec.as_ref()?;
    let container = spec.containers.iter().find(|c| c.name == container)?;
    let data_dir = data_dir(container, engine);
    let data_dir = data_dir.trim_end_matches('/');
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| {
            let path = m.mount_path.trim_end_matches('/');
            data_dir == path || data_dir.starts_with(&format!("{path}/"))
        })
        .max_by_key(|m| m.mount_path.len());
    let Some(mount) = mount else {
        return Some((
            format!("the container's own file system (no volume mounted at {data_dir})"),
            DataKind::ContainerFs,
        ));
    };
    let volume = spec.volumes.iter().flatten().find(|v| v.name == mount.name);
    let (text, kind) = match volume {
        Some(v) if v.persistent_volume_claim.is_some() => (
            v.persistent_volume_claim
                .as_ref()
                .map(|c| format!("PersistentVolumeClaim {}", c.claim_name))
                .unwrap_or_default(),
            DataKind::Claim,
        ),
        Some(v) if v.empty_dir.is_some() => {
            (format!("emptyDir volume {}", v.name), DataKind::EmptyDir)
        }
        Some(v) if v.host_path.is_some() => (
            format!(
                "hostPath volume {} ({})",
                v.name,
                v.host_path
                    .as_ref()
                    .map(|h| h.path.as_str())
                    .unwrap_or_default()
            ),
            DataKind::HostPath,
        ),
        Some(v) if v.ephemeral.is_some() => {
            (format!("ephemeral volume {}", v.name), DataKind::Ephemeral)
        }
        Some(v) => (format!("volume {}", v.name), DataKind::Other),
        None => (
            format!("volume {} (not in the pod spec)", mount.name),
            DataKind::Other,
        ),
    };
    Some((format!("{text} at {}", mount.mount_path), kind))
}

/// Every PVC mounted before is mounted again, with the same UID and bound volume.
/// `Err` says what changed, or that there was no PVC to begin with.
pub fn compare_volumes(before: &PodRecord, after: &PodRecord) -> Result<String, String> {
    if before.claims.is_empty() {
        return Err(format!(
            "the pod mounts no PersistentVolumeClaim; its data directory is on {}, which does not outlive the pod",
            before.data_volume.as_deref().unwrap_or("an unknown volume")
        ));
    }
    let mut same = Vec::new();
    let mut changed = Vec::new();
    for old in &before.claims {
        let Some(new) = after.claims.iter().find(|c| c.volume == old.volume) else {
            changed.push(format!(
                "volume {} (PVC {}) is no longer mounted",
                old.volume, old.claim
            ));
            continue;
        };
        if new.claim != old.claim {
            changed.push(format!(
                "volume {} now mounts PVC {} instead of {}",
                old.volume, new.claim, old.claim
            ));
        } else if new.uid != old.uid {
            changed.push(format!(
                "PVC {} has uid {} instead of {}: it was recreated, with a new volume",
                old.claim,
                new.uid.as_deref().unwrap_or("none (deleted)"),
                old.uid.as_deref().unwrap_or("none")
            ));
        } else if new.persistent_volume != old.persistent_volume {
            changed.push(format!(
                "PVC {} is bound to PV {} instead of {}",
                old.claim,
                new.persistent_volume.as_deref().unwrap_or("none"),
                old.persistent_volume.as_deref().unwrap_or("none")
            ));
        } else {
            same.push(format!("{} unchanged", describe_claim(old)));
        }
    }
    if changed.is_empty() {
        Ok(same.join("; "))
    } else {
        Err(changed.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, EmptyDirVolumeSource, EnvVar, EphemeralVolumeSource, HostPathVolumeSource,
        PersistentVolumeClaimVolumeSource, PodSpec, Volume, VolumeMount,
    };

    fn claim(volume: &str, name: &str, uid: &str, pv: &str) -> ClaimRecord {
        ClaimRecord {
            volume: volume.into(),
            claim: name.into(),
            uid: Some(uid.into()),
            persistent_volume: Some(pv.into()),
        }
    }

    fn record(uid: &str, claims: Vec<ClaimRecord>) -> PodRecord {
        PodRecord {
            uid: uid.into(),
            node: Some("n1".into()),
            claims,
            data_volume: None,
        }
    }

    #[test]
    fn same_pvc_passes() {
        let before = record("a", vec![claim("data", "data-mysql-0", "u1", "pv1")]);
        let after = record("b", vec![claim("data", "data-mysql-0", "u1", "pv1")]);
        assert_eq!(
            compare_volumes(&before, &after),
            Ok("PVC data-mysql-0 uid u1 (PV pv1) unchanged".into())
        );
    }

    #[test]
    fn recreated_pvc_fails() {
        let before = record("a", vec![claim("data", "data-mysql-0", "u1", "pv1")]);
        let after = record("b", vec![claim("data", "data-mysql-0", "u2", "pv2")]);
        let err = compare_volumes(&before, &after).unwrap_err();
        assert!(err.contains("uid u2 instead of u1"), "{err}");
        let gone = record("b", vec![]);
        assert!(
            compare_volumes(&before, &gone)
                .unwrap_err()
                .contains("no longer mounted")
        );
    }

    #[test]
    fn no_pvc_at_all_fails() {
        let mut before = record("a", vec![]);
        before.data_volume = Some("emptyDir volume data at /var/lib/mysql".into());
        let err = compare_volumes(&before, &record("b", vec![])).unwrap_err();
        assert!(err.contains("no PersistentVolumeClaim"), "{err}");
        assert!(err.contains("emptyDir volume data"), "{err}");
    }

    fn pod(mount: &str, volume: Volume) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "mysql".into(),
                    volume_mounts: Some(vec![
                        VolumeMount {
                            name: volume.name.clone(),
                            mount_path: mount.into(),
                            ..Default::default()
                        },
                        VolumeMount {
                            name: "run".into(),
                            mount_path: "/var/run/mysqld".into(),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }],
                volumes: Some(vec![volume]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn data_volume_names_what_holds_the_data_directory() {
        let empty = Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        };
        assert_eq!(
            data_volume(&pod("/var/lib/mysql", empty), Engine::Mysql, "mysql").as_deref(),
            Some("emptyDir volume data at /var/lib/mysql")
        );
        let pvc = Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: "data-mysql-0".into(),
                read_only: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            data_volume(
                &pod("/var/lib/mysql", pvc.clone()),
                Engine::Mariadb,
                "mysql"
            )
            .as_deref(),
            Some("PersistentVolumeClaim data-mysql-0 at /var/lib/mysql")
        );
        let none = data_volume(&pod("/srv", pvc), Engine::Mysql, "mysql").unwrap_or_default();
        assert!(
            none.starts_with("the container's own file system"),
            "{none}"
        );
    }

    fn volume(name: &str) -> Volume {
        Volume {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_pvc_counts_as_persistent_storage() {
        let pvc = Volume {
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: "data-mysql-0".into(),
                read_only: None,
            }),
            ..volume("data")
        };
        assert_eq!(
            ephemeral_data(&pod("/var/lib/mysql", pvc.clone()), Engine::Mysql, "mysql"),
            None
        );

        let empty = Volume {
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..volume("data")
        };
        let why = ephemeral_data(&pod("/var/lib/mysql", empty), Engine::Mysql, "mysql").unwrap();
        assert!(
            why.contains("emptyDir volume data at /var/lib/mysql")
                && why.contains("deleted with its pod"),
            "{why}"
        );

        let mut host = pod(
            "/var/lib/mysql",
            Volume {
                host_path: Some(HostPathVolumeSource {
                    path: "/srv/mysql".into(),
                    type_: None,
                }),
                ..volume("data")
            },
        );
        host.spec.as_mut().unwrap().node_name = Some("node-a".into());
        let why = ephemeral_data(&host, Engine::Mariadb, "mysql").unwrap();
        assert!(
            why.contains("hostPath volume data (/srv/mysql)") && why.contains("node node-a"),
            "{why}"
        );

        let generic = Volume {
            ephemeral: Some(EphemeralVolumeSource::default()),
            ..volume("data")
        };
        let why = ephemeral_data(&pod("/var/lib/mysql", generic), Engine::Mysql, "mysql").unwrap();
        assert!(why.contains("ephemeral volume data"), "{why}");

        // Mounted elsewhere: the data directory is in the container's own file system.
        let why = ephemeral_data(&pod("/srv", pvc.clone()), Engine::Mysql, "mysql").unwrap();
        assert!(why.contains("the container's own file system"), "{why}");

        // An unknown container is not assumed persistent.
        assert!(ephemeral_data(&pod("/var/lib/mysql", pvc), Engine::Mysql, "other").is_some());
    }

    #[test]
    fn a_literal_pgdata_says_where_postgres_keeps_its_data() {
        let pvc = Volume {
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: "data-pg-0".into(),
                read_only: None,
            }),
            ..volume("data")
        };
        let mut custom = pod("/pgdata", pvc);
        custom.spec.as_mut().unwrap().containers[0].env = Some(vec![EnvVar {
            name: "PGDATA".into(),
            value: Some("/pgdata/15".into()),
            ..Default::default()
        }]);
        assert_eq!(ephemeral_data(&custom, Engine::Postgres, "mysql"), None);
        // Without it, the engine's default directory is not under /pgdata.
        custom.spec.as_mut().unwrap().containers[0].env = None;
        assert!(ephemeral_data(&custom, Engine::Postgres, "mysql").is_some());
    }
}
