//! `dbbackup schedule TARGET`: backups that run without anyone. Reads the database's
//! StatefulSet (image, uid, the references its container reads credentials from), renders
//! a CronJob (and its backup PVC) with [`crate::render::cronjob`], and server-side-applies
//! them. Also `schedule list` and `schedule delete`; `run-now` is in [`super::schedule_run`].

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PersistentVolumeClaim, SecretKeySelector,
};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use serde::Serialize;

use super::cron::{self, Schedule};
use super::format::Compression;
use crate::apply::{self, Applied, ApplyOptions};
use crate::client::Kube;
use crate::deploy::DryRun;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::render::cronjob::{self as render, BackupSchedule, NewClaim, ScheduleObjects};
use crate::target;

/// What `schedule TARGET` was asked for.
#[derive(Debug, Clone)]
pub struct ScheduleOptions {
    /// Pod or StatefulSet of the database.
    pub target: String,
    /// Validated before any API call ([`cron::schedule`]).
    pub schedule: Schedule,
    /// The backup PVC (default `<name>-backups`).
    pub claim: Option<String>,
    /// Size and class of the PVC when it is created.
    pub size: String,
    pub storage_class: Option<String>,
    pub keep: u32,
    pub keep_within: Duration,
    pub compression: Compression,
    /// Time limit of one run.
    pub timeout: Duration,
    pub dry_run: DryRun,
    pub force_conflicts: bool,
}

/// What `schedule TARGET` did (the `-o json` schema).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ScheduleReport {
    pub namespace: String,
    pub database: String,
    pub engine: Engine,
    pub cron_job: String,
    /// 5-field cron expression.
    pub schedule: String,
    pub time_zone: String,
    /// The next three runs, in the time zone (RFC 3339 with the zone's offset).
    pub next_runs: Vec<String>,
    pub pvc: String,
    /// The PVC is created by this command (it did not exist).
    pub pvc_created: bool,
    /// Newest backups kept (0: no count rule).
    pub keep: u32,
    /// Backups younger than this are kept (0: no age rule).
    pub keep_within_seconds: u64,
    pub compression: Compression,
    /// `client`, `server` or none.
    pub dry_run: Option<String>,
    /// What the apply did to each object (empty with `--dry-run=client`).
    pub applied: Vec<Applied>,
}

/// Parses `--to`: `pvc` or `pvc:NAME`.
pub fn parse_destination(text: &str) -> std::result::Result<Option<String>, String> {
    match text.split_once(':') {
        None if text == "pvc" => Ok(None),
        Some(("pvc", name)) if crate::render::validate_name(name).is_ok() => Ok(Some(name.into())),
        Some(("pvc", name)) => Err(format!("invalid PVC name {name:?} in --to")),
        _ => Err(format!(
            "invalid --to {text:?}: scheduled backups go to a PVC: --to pvc or --to pvc:NAME"
        )),
    }
}

/// Applies (or with `--dry-run=client` only renders) the schedule of one database. Returns
/// the report and the objects, for `-o yaml` of a client dry run.
pub async fn schedule(
    kube: &Kube,
    options: &ScheduleOptions,
    now: jiff::Timestamp,
) -> Result<(ScheduleReport, Vec<serde_json::Value>)> {
    let ns = kube.namespace.clone();
    let target = target::resolve(kube, &options.target, None).await?;
    let Some(sts) = &target.statefulset else {
        return Err(Error::Usage(format!(
            "pod {ns}/{} belongs to no StatefulSet: schedule backs up a StatefulSet's database",
            target.pod_name
        )));
    };
    let database = sts.name_any();
    let cron_job = render::cron_job_name(&database);
    if cron_job.len() > render::CRON_JOB_NAME_MAX {
        return Err(Error::Usage(format!(
            "CronJob name {cron_job} is longer than {} characters",
            render::CRON_JOB_NAME_MAX
        )));
    }
    let claim = options
        .claim
        .clone()
        .unwrap_or_else(|| render::default_claim_name(&database));
    let claims: Api<PersistentVolumeClaim> = kube.api();
    let existing = claims
        .get_opt(&claim)
        .await
        .map_err(Error::api(format!("read PVC {ns}/{claim}")))?;
    let spec = backup_spec(sts, &target.container, target.engine, &ns, options, &claim)?;
    let spec = BackupSchedule {
        new_claim: existing.is_none().then(|| NewClaim {
            size: options.size.clone(),
            storage_class: options.storage_class.clone(),
        }),
        ..spec
    };
    let objects = render::render(&spec);
    let applied = match options.dry_run {
        DryRun::Client => Vec::new(),
        dry_run => apply_objects(kube, &objects, dry_run, options.force_conflicts).await?,
    };
    let next_runs = cron::next_runs(&options.schedule, now, 3)?
        .iter()
        .map(|t| t.timestamp().to_zoned(t.time_zone().clone()).to_string())
        .collect();
    let report = ScheduleReport {
        namespace: ns,
        database,
        engine: target.engine,
        cron_job,
        schedule: options.schedule.cron.clone(),
        time_zone: options.schedule.time_zone.clone(),
        next_runs,
        pvc: claim,
        pvc_created: existing.is_none(),
        keep: options.keep,
        keep_within_seconds: options.keep_within.as_secs(),
        compression: options.compression,
        dry_run: match options.dry_run {
            DryRun::None => None,
            DryRun::Client => Some("client".into()),
            DryRun::Server => Some("server".into()),
        },
        applied,
    };
    Ok((report, objects.to_values()))
}

async fn apply_objects(
    kube: &Kube,
    objects: &ScheduleObjects,
    dry_run: DryRun,
    force_conflicts: bool,
) -> Result<Vec<Applied>> {
    let options = ApplyOptions {
        server_dry_run: dry_run == DryRun::Server,
        force_conflicts,
    };
    let mut applied = Vec::new();
    if let Some(claim) = &objects.claim {
        let (_, done) = apply::apply(&kube.api(), claim, options).await?;
        applied.push(done);
    }
    let (_, done) = apply::apply(&kube.api::<CronJob>(), &objects.cron_job, options).await?;
    applied.push(done);
    Ok(applied)
}

/// The render input from the database's StatefulSet (pure).
pub fn backup_spec(
    sts: &StatefulSet,
    container_name: &str,
    engine: Engine,
    namespace: &str,
    options: &ScheduleOptions,
    claim: &str,
) -> Result<BackupSchedule> {
    let database = sts.name_any();
    let pod_spec = sts.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let container = pod_spec
        .and_then(|p| p.containers.iter().find(|c| c.name == container_name))
        .ok_or_else(|| {
            Error::NotFound(format!(
                "StatefulSet {namespace}/{database} has no container {container_name}"
            ))
        })?;
    let image = container.image.clone().ok_or_else(|| {
        Error::NotFound(format!(
            "container {container_name} of StatefulSet {namespace}/{database} names no image"
        ))
    })?;
    // The uid the database itself runs as: the image surely supports it.
    let uid = container
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_spec?.security_context.as_ref()?.run_as_user)
        .filter(|uid| *uid > 0)
        .unwrap_or_else(|| engine.uid(&image));
    let service = sts
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    // The pod the dump of `dbbackup dump` reads from: `-0`, by its stable DNS name.
    let host = match service {
        Some(service) => format!("{database}-0.{service}"),
        None => database.clone(),
    };
    Ok(BackupSchedule {
        namespace: namespace.into(),
        database: database.clone(),
        engine,
        image,
        uid,
        credentials: credentials(container, engine, &format!("{namespace}/{database}"))?,
        host,
        pod: format!("{database}-0"),
        schedule: options.schedule.cron.clone(),
        time_zone: options.schedule.time_zone.clone(),
        claim: claim.into(),
        new_claim: None,
        keep: options.keep,
        keep_within: options.keep_within,
        compression: options.compression,
        timeout: options.timeout,
    })
}

/// The variables the engine's dump command reads, and whether each is a password.
fn dump_variables(engine: Engine) -> &'static [(&'static str, bool)] {
    match engine {
        Engine::Postgres => &[("POSTGRES_USER", false), ("POSTGRES_PASSWORD", true)],
        Engine::Mysql | Engine::Mariadb => &[("MYSQL_ROOT_PASSWORD", true)],
    }
}

/// The dump's credential variables as the database container gets them: its own `env`
/// references (a Secret's key, a ConfigMap's key) copied as references, and keys of an
/// `envFrom` Secret/ConfigMap as `secretKeyRef`/`configMapKeyRef` (optional: the key may
/// not be there). A password given as a literal value is refused: it would be copied.
pub fn credentials(container: &Container, engine: Engine, what: &str) -> Result<Vec<EnvVar>> {
    let mut found = Vec::new();
    for (name, password) in dump_variables(engine) {
        if let Some(var) = container.env.iter().flatten().find(|v| v.name == *name) {
            if var.value_from.is_none() && *password {
                return Err(Error::Refused(format!(
                    "{name} of StatefulSet {what} is a literal value, not a Secret reference; \
                     a schedule never copies a password: move it into a Secret"
                )));
            }
            found.push(var.clone());
            continue;
        }
        if let Some(var) = from_env_from(container, name) {
            found.push(var);
        } else if *password {
            return Err(Error::NotFound(format!(
                "the database container of StatefulSet {what} gets no {name}: the backup job \
                 could not log in"
            )));
        }
    }
    Ok(found)
}

/// `name` from the container's `envFrom` (the last source wins, as in the kubelet).
fn from_env_from(container: &Container, name: &str) -> Option<EnvVar> {
    container
        .env_from
        .iter()
        .flatten()
        .rev()
        .find_map(|source| {
            let key = name.strip_prefix(source.prefix.as_deref().unwrap_or(""))?;
            let value_from = if let Some(secret) = &source.secret_ref {
                EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret.name.clone(),
                        key: key.into(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                }
            } else {
                let map = source.config_map_ref.as_ref()?;
                EnvVarSource {
                    config_map_key_ref: Some(k8s_openapi::api::core::v1::ConfigMapKeySelector {
                        name: map.name.clone(),
                        key: key.into(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                }
            };
            Some(EnvVar {
                name: name.into(),
                value_from: Some(value_from),
                ..Default::default()
            })
        })
}

/// One schedule, for `schedule list` and dbcheck.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ScheduleInfo {
    pub namespace: String,
    pub database: String,
    pub cron_job: String,
    pub schedule: String,
    pub time_zone: Option<String>,
    pub suspended: bool,
    pub pvc: Option<String>,
    pub keep: Option<u32>,
    /// When the last run started and last succeeded (RFC 3339).
    pub last_schedule: Option<String>,
    pub last_success: Option<String>,
    /// Runs going on now.
    pub active: usize,
}

/// What a CronJob made by `schedule` records (pure).
pub fn info(cron_job: &CronJob) -> ScheduleInfo {
    let annotations = cron_job.annotations();
    let spec = cron_job.spec.as_ref();
    let status = cron_job.status.as_ref();
    ScheduleInfo {
        namespace: cron_job.namespace().unwrap_or_default(),
        database: cron_job
            .labels()
            .get(render::DATABASE_LABEL)
            .cloned()
            .unwrap_or_default(),
        cron_job: cron_job.name_any(),
        schedule: spec.map(|s| s.schedule.clone()).unwrap_or_default(),
        time_zone: spec.and_then(|s| s.time_zone.clone()),
        suspended: spec.and_then(|s| s.suspend).unwrap_or(false),
        pvc: annotations.get(render::PVC_ANNOTATION).cloned(),
        keep: annotations
            .get(render::KEEP_ANNOTATION)
            .and_then(|k| k.parse().ok()),
        last_schedule: status
            .and_then(|s| s.last_schedule_time.as_ref())
            .map(|t| t.0.to_string()),
        last_success: status
            .and_then(|s| s.last_successful_time.as_ref())
            .map(|t| t.0.to_string()),
        active: status.and_then(|s| s.active.as_ref()).map_or(0, Vec::len),
    }
}

pub(crate) fn managed_selector(database: Option<&str>) -> String {
    let mut selector = format!("{}={}", crate::render::MANAGED_BY_LABEL, render::MANAGED_BY);
    if let Some(database) = database {
        selector.push_str(&format!(",{}={database}", render::DATABASE_LABEL));
    }
    selector
}

/// The schedules in the namespace (of one database), by CronJob name.
pub async fn list(kube: &Kube, database: Option<&str>) -> Result<Vec<ScheduleInfo>> {
    let api: Api<CronJob> = kube.api();
    let database = database.map(|d| d.split_once('/').map_or(d, |(_, name)| name));
    let params = ListParams::default().labels(&managed_selector(database));
    let list = api
        .list(&params)
        .await
        .map_err(Error::api(format!("list CronJobs in {}", kube.namespace)))?;
    let mut found: Vec<ScheduleInfo> = list.items.iter().map(info).collect();
    found.sort_by(|a, b| a.cron_job.cmp(&b.cron_job));
    Ok(found)
}

/// The CronJob of a database named by pod, StatefulSet or the CronJob's own name; checked
/// to be one `schedule` made.
pub async fn find(kube: &Kube, name: &str) -> Result<CronJob> {
    let ns = &kube.namespace;
    let api: Api<CronJob> = kube.api();
    // kubectl's KIND/NAME (`sts/pg`, `pod/pg-0`, `cronjob/pg-backup`): the name is looked up.
    let name = name.split_once('/').map_or(name, |(_, name)| name);
    // A StatefulSet, its pod (`NAME-0`), or the CronJob itself; a StatefulSet's own name
    // may end in digits (`db-2`), so that comes first.
    let pod_of = name
        .rsplit_once('-')
        .filter(|(_, ordinal)| !ordinal.is_empty() && ordinal.chars().all(|c| c.is_ascii_digit()))
        .map(|(sts, _)| render::cron_job_name(sts));
    let candidates = [
        Some(render::cron_job_name(name)),
        pod_of,
        Some(name.to_string()),
    ];
    for candidate in candidates.into_iter().flatten() {
        let found = api
            .get_opt(&candidate)
            .await
            .map_err(Error::api(format!("read CronJob {ns}/{candidate}")))?;
        if let Some(cron_job) = found {
            if cron_job
                .labels()
                .get(crate::render::MANAGED_BY_LABEL)
                .map(String::as_str)
                != Some(render::MANAGED_BY)
            {
                return Err(Error::Refused(format!(
                    "CronJob {ns}/{candidate} was not made by kubectl dbbackup schedule; left alone"
                )));
            }
            return Ok(cron_job);
        }
    }
    Err(Error::NotFound(format!(
        "no backup schedule for {name} in namespace {ns} (`kubectl dbbackup schedule list` shows them)"
    )))
}

/// What `schedule delete` removed.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Deleted {
    pub namespace: String,
    pub cron_job: String,
    /// The backup PVC, which is kept with the backups on it.
    pub pvc_kept: Option<String>,
}

/// Deletes a schedule's CronJob and its Jobs; the PVC and the backups on it stay.
pub async fn delete(kube: &Kube, name: &str) -> Result<Deleted> {
    let cron_job = find(kube, name).await?;
    let info = info(&cron_job);
    let api: Api<CronJob> = kube.api();
    api.delete(&info.cron_job, &DeleteParams::background())
        .await
        .map_err(Error::api(format!(
            "delete CronJob {}/{}",
            kube.namespace, info.cron_job
        )))?;
    Ok(Deleted {
        namespace: kube.namespace.clone(),
        cron_job: info.cron_job,
        pvc_kept: info.pvc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(json: serde_json::Value) -> Container {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn credentials_are_references_never_values() {
        let dbdeploy = container(serde_json::json!({
            "name": "postgres",
            "env": [
                {"name": "POSTGRES_USER", "valueFrom": {"configMapKeyRef": {"name": "pg-config", "key": "POSTGRES_USER"}}},
                {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "pg-secret", "key": "POSTGRES_PASSWORD"}}},
                {"name": "PGDATA", "value": "/x"}
            ]
        }));
        let vars = credentials(&dbdeploy, Engine::Postgres, "ns/pg").unwrap();
        assert_eq!(vars, dbdeploy.env.clone().unwrap()[..2]);

        let literal = container(serde_json::json!({
            "name": "mysql", "env": [{"name": "MYSQL_ROOT_PASSWORD", "value": "hunter2"}]
        }));
        let err = credentials(&literal, Engine::Mysql, "ns/my").unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::USAGE);
        assert!(!err.to_string().contains("hunter2"));

        let env_from = container(serde_json::json!({
            "name": "mysql", "envFrom": [{"secretRef": {"name": "my-secret"}}]
        }));
        let vars = credentials(&env_from, Engine::Mysql, "ns/my").unwrap();
        let reference = vars[0]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (reference.name.as_str(), reference.key.as_str()),
            ("my-secret", "MYSQL_ROOT_PASSWORD")
        );

        let none = container(serde_json::json!({"name": "mysql"}));
        assert!(credentials(&none, Engine::Mysql, "ns/my").is_err());
    }

    #[test]
    fn destinations_are_pvcs() {
        assert_eq!(parse_destination("pvc"), Ok(None));
        assert_eq!(parse_destination("pvc:nightly"), Ok(Some("nightly".into())));
        assert!(parse_destination("s3://bucket/x").is_err());
        assert!(parse_destination("pvc:Bad_Name").is_err());
    }
}
