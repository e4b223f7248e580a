//! Backups on a backup PVC (`pvc:NAME/FILE`), read through a short-lived pod that mounts
//! the claim read-only (restricted Pod Security, the schedule's image and uid) and streams
//! over exec: [`list`] what is there, [`fetch`] one backup and its `.sha256` into a local
//! directory, where `verify` and `restore` read it as any local file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Pod, PodSpec, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, ResourceExt};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::{manifest, schedule};
use crate::client::Kube;
use crate::error::{Error, Result};
use crate::exec::{self, ExecStatus};
use crate::render::cronjob as render;
use crate::wait::within;

/// A location on a backup PVC: `pvc:NAME` or `pvc:NAME/FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvcLocation {
    pub claim: String,
    pub file: Option<String>,
}

/// Parses `pvc:NAME[/FILE]`; `None` when `text` is not a PVC location. A file is a plain
/// name on the volume (no directories, no `..`).
pub fn parse(text: &str) -> Option<Result<PvcLocation>> {
    let rest = text.strip_prefix("pvc:")?;
    let (claim, file) = match rest.split_once('/') {
        Some((claim, file)) => (claim, Some(file)),
        None => (rest, None),
    };
    let plain = |f: &str| !f.is_empty() && !f.contains('/') && !f.starts_with('.');
    if crate::render::validate_name(claim).is_err() || file.is_some_and(|f| !plain(f)) {
        return Some(Err(Error::Usage(format!(
            "invalid location {text:?}: expected pvc:NAME or pvc:NAME/FILE"
        ))));
    }
    Some(Ok(PvcLocation {
        claim: claim.into(),
        file: file.map(String::from),
    }))
}

/// A backup file on the PVC.
#[derive(Debug, Clone, Serialize)]
pub struct PvcBackup {
    pub name: String,
    pub bytes: u64,
    /// Last modification (UTC, RFC 3339).
    pub modified: String,
    /// Its `.sha256` is beside it.
    pub checksum: bool,
    /// Its manifest is beside it (`drill` and `verify --deep` need one).
    pub manifest: bool,
}

/// The reader pod: a pod that mounts the claim read-only and sleeps until deleted.
struct Reader {
    pods: Api<Pod>,
    name: String,
}

const READER_LIFETIME: Duration = Duration::from_secs(3600);

impl Reader {
    async fn start(kube: &Kube, claim: &str, budget: Duration) -> Result<Reader> {
        let cron_job = writer_of(kube, claim).await?;
        let pod = reader_pod(&cron_job, claim)?;
        let name = pod.name_any();
        let pods: Api<Pod> = kube.api();
        pods.create(&PostParams::default(), &pod)
            .await
            .map_err(Error::api(format!("create pod {}/{name}", kube.namespace)))?;
        let reader = Reader { pods, name };
        let running = |p: Option<&Pod>| {
            p.and_then(|p| p.status.as_ref()?.phase.clone())
                .is_some_and(|phase| phase != "Pending")
        };
        let what = format!(
            "pod {}/{} to mount PVC {claim}",
            kube.namespace, reader.name
        );
        let wait = async {
            await_condition(kube.watch_api::<Pod>(), &reader.name, running)
                .await
                .map_err(|source| Error::Watch {
                    what: format!("pod {}", reader.name),
                    source,
                })
        };
        if let Err(err) = within(budget, what, wait).await {
            reader.stop().await;
            return Err(err);
        }
        Ok(reader)
    }

    /// Deletes the pod. A refusal is said, not fatal (what was read is read), but the pod
    /// would hold the claim mounted for up to an hour, so the user is told.
    async fn stop(self) {
        let deleted = self
            .pods
            .delete(&self.name, &DeleteParams::default().grace_period(0))
            .await;
        match deleted {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => {
                let reason = match err {
                    kube::Error::Api(status) => status.message,
                    other => other.to_string(),
                };
                eprintln!(
                    "warning: failed to delete the reader pod {}, left behind until its deadline: {reason}",
                    self.name
                );
            }
        }
    }
}

/// The schedule's CronJob that writes to `claim`: its image and uid read the files.
async fn writer_of(kube: &Kube, claim: &str) -> Result<CronJob> {
    let api: Api<CronJob> = kube.api();
    let all = schedule::list(kube, None).await?;
    let Some(info) = all.iter().find(|s| s.pvc.as_deref() == Some(claim)) else {
        return Err(Error::NotFound(format!(
            "no kubectl dbbackup schedule writes to PVC {}/{claim}",
            kube.namespace
        )));
    };
    api.get(&info.cron_job).await.map_err(Error::api(format!(
        "read CronJob {}/{}",
        kube.namespace, info.cron_job
    )))
}

/// The reader pod of `claim`, from the schedule's job template (pure).
fn reader_pod(cron_job: &CronJob, claim: &str) -> Result<Pod> {
    let template = cron_job
        .spec
        .as_ref()
        .and_then(|s| s.job_template.spec.as_ref())
        .map(|s| s.template.clone())
        .ok_or_else(|| {
            Error::NotFound(format!(
                "CronJob {} has no pod template",
                cron_job.name_any()
            ))
        })?;
    let mut spec: PodSpec = template.spec.unwrap_or_default();
    let mut container = spec.containers.first().cloned().ok_or_else(|| {
        Error::NotFound(format!("CronJob {} has no container", cron_job.name_any()))
    })?;
    container.name = "reader".into();
    container.command = Some(vec!["sleep".into(), READER_LIFETIME.as_secs().to_string()]);
    container.args = None;
    // No database access: no credentials in the reader.
    container.env = None;
    container.volume_mounts = Some(vec![VolumeMount {
        name: "backups".into(),
        mount_path: render::BACKUP_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    }]);
    spec.containers = vec![container];
    spec.active_deadline_seconds = Some(READER_LIFETIME.as_secs() as i64);
    spec.termination_grace_period_seconds = Some(0);
    spec.volumes = Some(vec![Volume {
        name: "backups".into(),
        persistent_volume_claim: Some(
            k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                read_only: Some(true),
            },
        ),
        ..Default::default()
    }]);
    let mut labels = template.metadata.and_then(|m| m.labels).unwrap_or_default();
    labels.retain(|k, _| !k.ends_with("-client"));
    let suffix: u32 = rand::random::<u32>() % 100_000;
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(format!("{claim}-reader-{suffix}")),
            namespace: cron_job.namespace(),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(spec),
        ..Default::default()
    })
}

const LIST_SCRIPT: &str = r#"cd "$1" || exit 1
for f in *.sql.gz *.sql; do
  [ -f "$f" ] || continue
  c=no; [ -f "$f.sha256" ] && c=yes
  m=no; [ -f "$f$2" ] && m=yes
  printf '%s\t%s\t%s\t%s\t%s\n' "$f" "$(wc -c < "$f" | tr -d ' ')" "$(date -u -r "$f" +%Y-%m-%dT%H:%M:%SZ)" "$c" "$m"
done"#;

/// The backups on `claim`, newest first (by name: they carry their UTC time).
pub async fn list(kube: &Kube, claim: &str, budget: Duration) -> Result<Vec<PvcBackup>> {
    let reader = Reader::start(kube, claim, budget).await?;
    let command = exec::script_command(LIST_SCRIPT, &[render::BACKUP_DIR, manifest::PASSES_SUFFIX]);
    let output = exec::run(
        &kube.exec_pods(),
        &reader.name,
        Some("reader"),
        &command,
        None,
        budget,
    )
    .await;
    reader.stop().await;
    let output = output?;
    let name = format!("the file list of PVC {claim}");
    let text = output.into_stdout(&name, "ls")?;
    let mut found: Vec<PvcBackup> = text
        .lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            Some(PvcBackup {
                name: f.next()?.into(),
                bytes: f.next()?.parse().ok()?,
                modified: f.next()?.into(),
                checksum: f.next()? == "yes",
                manifest: f.next() == Some("yes"),
            })
        })
        .collect();
    found.sort_by(|a, b| b.name.cmp(&a.name));
    Ok(found)
}

/// Copies `file`, its `.sha256` and its manifest (a scheduled backup's passes, when there)
/// from `claim` into `dir`; returns the local path.
pub async fn fetch(
    kube: &Kube,
    claim: &str,
    file: &str,
    dir: &Path,
    budget: Duration,
) -> Result<PathBuf> {
    let reader = Reader::start(kube, claim, budget).await?;
    let result = async {
        let local = dir.join(file);
        let manifest = format!("{file}{}", manifest::PASSES_SUFFIX);
        copy_out(
            kube,
            &reader.name,
            &manifest,
            &dir.join(&manifest),
            budget,
            true,
        )
        .await?;
        for name in [format!("{file}.sha256"), file.to_string()] {
            copy_out(kube, &reader.name, &name, &dir.join(&name), budget, false).await?;
        }
        Ok(local)
    }
    .await;
    reader.stop().await;
    result
}

/// A private local directory for fetched backups, removed when dropped.
pub struct LocalCopy {
    pub dir: PathBuf,
}

impl LocalCopy {
    /// Creates it under the system's temporary directory, readable by the owner only.
    pub fn create() -> Result<LocalCopy> {
        let dir = std::env::temp_dir().join(format!(
            "kdb-pvc-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).map_err(|source| Error::Io {
            action: "create",
            path: dir.display().to_string(),
            source,
        })?;
        Ok(LocalCopy { dir })
    }
}

impl Drop for LocalCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Exit status of the copy when the file is not there.
const ABSENT: i32 = 66;

/// Copies `name` out of the reader pod; with `optional`, a file that is not there is no
/// error (and leaves no local file).
async fn copy_out(
    kube: &Kube,
    pod: &str,
    name: &str,
    to: &Path,
    budget: Duration,
    optional: bool,
) -> Result<()> {
    let path = format!("{}/{name}", render::BACKUP_DIR);
    let script = format!(r#"[ -e "$1" ] || exit {ABSENT}; exec cat -- "$1""#);
    let command = exec::script_command(&script, &[&path]);
    let io = |action: &'static str| {
        let path = to.display().to_string();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    let work = async {
        let mut process =
            exec::start(&kube.exec_pods(), pod, Some("reader"), &command, false).await?;
        let status = process.take_status();
        let mut out = tokio::fs::File::create(to).await.map_err(io("create"))?;
        if let Some(mut stdout) = process.stdout() {
            tokio::io::copy(&mut stdout, &mut out)
                .await
                .map_err(io("write"))?;
        }
        out.flush().await.map_err(io("write"))?;
        let status = match status {
            Some(status) => status.await,
            None => None,
        };
        process.join().await;
        Ok::<_, Error>(ExecStatus::from_status(status))
    };
    let status = within(budget, format!("reading {path} in pod {pod}"), work).await?;
    let absent = matches!(
        status,
        ExecStatus::Failure {
            code: Some(ABSENT),
            ..
        }
    );
    if optional && absent {
        return tokio::fs::remove_file(to).await.map_err(io("remove"));
    }
    if absent {
        return Err(Error::Failed(format!(
            "failed to read {path} from the backup PVC: it is not there"
        )));
    }
    if !status.success() {
        return Err(Error::Failed(format!(
            "failed to read {path} from the backup PVC: {status}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_says_which_backups_have_a_checksum_and_a_manifest() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "pg-20261203T023000Z.sql.gz",
            "pg-20261203T023000Z.sql.gz.sha256",
            "pg-20261203T023000Z.sql.gz.manifest.tsv",
            "pg-20261202T023000Z.sql",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let output = std::process::Command::new("sh")
            .args(["-c", LIST_SCRIPT, "sh"])
            .arg(dir.path())
            .arg(manifest::PASSES_SUFFIX)
            .output()
            .unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert_eq!(rows[0][0], "pg-20261203T023000Z.sql.gz");
        assert_eq!(rows[0][3..], ["yes", "yes"]);
        assert_eq!(rows[1][0], "pg-20261202T023000Z.sql");
        assert_eq!(rows[1][3..], ["no", "no"]);
    }

    #[test]
    fn pvc_locations() {
        assert!(parse("backup.sql.gz").is_none());
        let at = parse("pvc:pg-backups/pg-20261203T112735Z.sql.gz")
            .unwrap()
            .unwrap();
        assert_eq!(at.claim, "pg-backups");
        assert_eq!(at.file.as_deref(), Some("pg-20261203T112735Z.sql.gz"));
        assert_eq!(parse("pvc:pg-backups").unwrap().unwrap().file, None);
        for bad in [
            "pvc:pg-backups/../x",
            "pvc:pg-backups/a/b",
            "pvc:Bad/x",
            "pvc:",
        ] {
            assert!(parse(bad).unwrap().is_err(), "{bad}");
        }
    }
}
