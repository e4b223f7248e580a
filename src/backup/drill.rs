//! `drill`: proves that a dump restores. A throwaway instance of the dump's engine
//! (dbdeploy's objects under a unique name, in the one namespace given), the dump restored
//! into it with `restore`, every table counted and checksummed as the manifest written at
//! dump time was, compared with it, then the instance deleted with its volume — also when
//! something fails and on SIGINT/SIGTERM. The source database is never touched.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use rand::RngExt;
use rand::distr::Alphanumeric;
use serde::Serialize;

use super::format::DumpKind;
use super::location::Location;
use super::manifest::{self, Counted, DatabaseManifest, Manifest, TableManifest};
use super::restore::{self, RestoreOptions};
use super::verify::VerifyReport;
use crate::client::Kube;
use crate::deploy::{self, DeleteReport, DeployOptions, DryRun};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::output::Progress;
use crate::render::{DeploySpec, Names, Resources};
use crate::wait::within;

/// How long deleting the throwaway instance may take (its pod's clean shutdown included).
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(300);
/// The smallest volume a throwaway instance gets.
const MIN_STORAGE_GIB: u64 = 1;

/// What to drill and where.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The backup file; `FILE.manifest.json` beside it.
    pub file: Location,
    /// Image of the throwaway instance (default: the source's, from the manifest).
    pub image: Option<String>,
    /// Volume size (default: three times the SQL, at least 1Gi).
    pub storage_size: Option<String>,
    pub storage_class: Option<String>,
    /// Time limit for deploying, restoring and comparing.
    pub timeout: Duration,
    /// Draw live progress on stderr.
    pub progress: bool,
}

/// One table's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The restore holds what the manifest recorded.
    Pass,
    /// It does not (or the table is missing).
    Fail,
    /// Rows changed while the dump ran and the restore matches neither recorded state.
    Changed,
}

/// One table compared (the `-o json` schema's `tables`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TableResult {
    pub database: String,
    pub table: String,
    pub result: Verdict,
    pub expected_rows: u64,
    pub expected_checksum: String,
    /// The table's state after the dump, when it changed while the dump ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_after_dump: Option<Counted>,
    /// None: the table is not in the restored instance.
    pub found_rows: Option<u64>,
    pub found_checksum: Option<String>,
}

/// What a drill found (the `-o json` schema: evidence to keep).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DrillReport {
    pub file: String,
    /// SHA-256 of the file drilled.
    pub sha256: String,
    pub engine: Engine,
    #[serde(rename = "dump_kind")]
    pub kind: DumpKind,
    /// Image of the throwaway instance.
    pub image: String,
    /// Where the dump was taken (`namespace/pod`) and when.
    pub source: String,
    pub dumped_at: String,
    /// The throwaway instance: namespace and name.
    pub namespace: String,
    pub instance: String,
    pub server_version: Option<String>,
    pub tables: Vec<TableResult>,
    /// Databases of the manifest that the restore did not create.
    pub missing_databases: Vec<String>,
    /// Every table passed and no database is missing.
    pub passed: bool,
    pub deploy_seconds: f64,
    pub restore_seconds: f64,
    pub compare_seconds: f64,
    pub total_seconds: f64,
    /// `Kind/name` of every throwaway object deleted afterwards.
    pub deleted: Vec<String>,
}

/// Reads the manifest beside a file already checked with [`restore::check_file`], and
/// refuses (exit 2) a file without one or whose manifest is of another engine family.
pub async fn read_manifest(options: &DrillOptions, kind: DumpKind) -> Result<Manifest> {
    let file = &options.file;
    let at = manifest::beside(file);
    let manifest = manifest::read_beside(file).await?.ok_or_else(|| {
        Error::Refused(format!(
            "no manifest {at}: drill compares the restore with the manifest a dump writes beside its file; dump again with this version (a schedule applied by an older version writes none: apply it again with `kubectl dbbackup schedule`)"
        ))
    })?;
    if manifest.kind != kind {
        return Err(Error::Refused(format!(
            "the manifest {at} describes a {} dump, but {file} is a {} dump",
            manifest.kind.engine_name(),
            kind.engine_name()
        )));
    }
    Ok(manifest)
}

/// Runs the drill; the throwaway instance is deleted whatever happens.
pub async fn drill(
    kube: &Kube,
    options: &DrillOptions,
    verified: &VerifyReport,
    kind: DumpKind,
    manifest: &Manifest,
) -> Result<DrillReport> {
    let started = Instant::now();
    let spec = throwaway_spec(kube, options, verified, manifest)?;
    let name = spec.name.clone();
    let where_ = format!("{}/{name}", spec.namespace);
    let progress = Progress::spinner(options.progress);
    progress.println(format!(
        "drill: restoring {} into a throwaway {} instance {where_} ({})",
        options.file, spec.engine, spec.image
    ));
    let work = run(kube, options, &spec, kind, manifest, &progress);
    let outcome = tokio::select! {
        result = within(options.timeout, format!("the drill in {where_}"), work) => result,
        signal = crate::cli::interrupted() => Err(Error::Interrupted(format!(
            "drill interrupted by {signal}"
        ))),
    };
    progress.set(format!("deleting the throwaway instance {where_}"));
    let cleaned = cleanup(kube, &name).await;
    let result = match (outcome, cleaned) {
        (Ok(mut report), Ok(deleted)) => {
            report.sha256 = verified.sha256.clone();
            report.deleted = deleted;
            report.total_seconds = started.elapsed().as_secs_f64();
            Ok(report)
        }
        (Ok(_), Err(err)) => Err(err),
        (Err(Error::Interrupted(why)), Ok(_)) => Err(Error::Interrupted(format!(
            "{why}; the throwaway instance {where_} was deleted"
        ))),
        (Err(err), Ok(_)) => {
            progress.println(format!(
                "drill: the throwaway instance {where_} was deleted"
            ));
            Err(err)
        }
        (Err(err), Err(cleanup)) => {
            progress.println(format!(
                "error: the throwaway instance {where_} may be left behind: {}; delete it with `kubectl dbdeploy delete {name} --purge-data --yes -n {}`",
                cleanup.chain(),
                spec.namespace
            ));
            Err(err)
        }
    };
    progress.finish();
    result
}

/// The throwaway instance: a unique name, the manifest's image unless `--image`, small
/// requests, a volume three times the SQL.
fn throwaway_spec(
    kube: &Kube,
    options: &DrillOptions,
    verified: &VerifyReport,
    manifest: &Manifest,
) -> Result<DeploySpec> {
    let mut spec = DeploySpec::new(manifest.engine, &kube.namespace);
    spec.name = instance_name(manifest.engine, &random_suffix());
    spec.image = match (&options.image, &manifest.image) {
        (Some(image), _) | (None, Some(image)) => image.clone(),
        (None, None) => {
            return Err(Error::Usage(format!(
                "the manifest of {} records no image; name one with --image",
                options.file
            )));
        }
    };
    spec.storage_size = options
        .storage_size
        .clone()
        .unwrap_or_else(|| storage_for(verified.bytes_raw));
    spec.storage_class = options.storage_class.clone();
    spec.resources = Resources {
        cpu_request: "100m".into(),
        memory_request: "256Mi".into(),
        ..Resources::default()
    };
    spec.validate()?;
    Ok(spec)
}

/// `drill-<engine>-<suffix>`.
pub fn instance_name(engine: Engine, suffix: &str) -> String {
    format!("drill-{}-{suffix}", engine.as_str())
}

fn random_suffix() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(5)
        .map(|b| char::from(b).to_ascii_lowercase())
        .collect()
}

/// Three times the SQL (tables plus indexes plus WAL or redo), in whole GiB, at least 1Gi.
pub fn storage_for(sql_bytes: u64) -> String {
    let gib = (sql_bytes.saturating_mul(3)).div_ceil(1 << 30);
    format!("{}Gi", gib.max(MIN_STORAGE_GIB))
}

async fn run(
    kube: &Kube,
    options: &DrillOptions,
    spec: &DeploySpec,
    kind: DumpKind,
    manifest: &Manifest,
    progress: &Progress,
) -> Result<DrillReport> {
    let step = Instant::now();
    let deploy_options = DeployOptions {
        spec: spec.clone(),
        dry_run: DryRun::None,
        wait: true,
        timeout: options.timeout,
        force_conflicts: false,
        from_snapshot: None,
    };
    let (deployed, _) = deploy::deploy(kube, &deploy_options, progress).await?;
    let deploy_seconds = step.elapsed().as_secs_f64();

    let pod = format!("{}-0", spec.name);
    progress.set(format!("restoring into {pod}"));
    let restore_options = RestoreOptions {
        target: pod.clone(),
        container: None,
        file: options.file.clone(),
        // The instance is new: whatever its image created may be replaced.
        yes: true,
        timeout: options.timeout,
        progress: false,
        compress_in_pod: restore::COMPRESS_IN_POD_DEFAULT,
    };
    let restored = restore::restore(kube, &restore_options, kind).await?;

    let step = Instant::now();
    progress.set(format!("counting and checksumming the tables in {pod}"));
    // Hashed as the manifest's own format did (an older manifest's rows, with MD5).
    let found = manifest::take(
        kube,
        spec.engine,
        (&pod, spec.engine.container_name()),
        manifest.database.as_deref(),
        manifest.format,
        options.timeout,
    )
    .await?;
    let (tables, missing_databases) = compare(manifest, &found);
    let passed = missing_databases.is_empty() && tables.iter().all(|t| t.result == Verdict::Pass);
    Ok(DrillReport {
        file: options.file.to_string(),
        sha256: String::new(),
        engine: manifest.engine,
        kind,
        image: spec.image.clone(),
        source: format!("{}/{}", manifest.namespace, manifest.pod),
        dumped_at: manifest.dumped_at.clone(),
        namespace: spec.namespace.clone(),
        instance: spec.name.clone(),
        server_version: deployed.server_version,
        tables,
        missing_databases,
        passed,
        deploy_seconds,
        restore_seconds: restored.duration_seconds,
        compare_seconds: step.elapsed().as_secs_f64(),
        total_seconds: 0.0,
        deleted: Vec::new(),
    })
}

/// Every table of the manifest against what the restore holds, and the manifest's
/// databases the restore lacks. A table that changed during the dump passes when the
/// restore holds its state before or after the dump.
pub fn compare(manifest: &Manifest, found: &[DatabaseManifest]) -> (Vec<TableResult>, Vec<String>) {
    // Keyed by name: an instance may hold hundreds of thousands of tables.
    let by_name: std::collections::BTreeMap<(&str, &str), &TableManifest> = found
        .iter()
        .flat_map(|d| {
            d.tables
                .iter()
                .map(move |t| ((d.name.as_str(), t.name.as_str()), t))
        })
        .collect();
    let lookup = |db: &str, table: &str| -> Option<Counted> {
        by_name.get(&(db, table)).map(|t| t.before())
    };
    let tables = manifest
        .tables()
        .map(|(db, table)| {
            let seen = lookup(db, &table.name);
            let state = seen.clone().unwrap_or_else(Counted::absent);
            let result = if state == table.before() || table.after_dump.as_ref() == Some(&state) {
                Verdict::Pass
            } else if table.after_dump.is_some() {
                Verdict::Changed
            } else {
                Verdict::Fail
            };
            TableResult {
                database: db.to_string(),
                table: table.name.clone(),
                result,
                expected_rows: table.rows,
                expected_checksum: table.checksum.clone(),
                expected_after_dump: table.after_dump.clone(),
                found_rows: seen.as_ref().map(|s| s.rows),
                found_checksum: seen.map(|s| s.checksum),
            }
        })
        .collect();
    let missing = manifest
        .databases
        .iter()
        .filter(|db| !found.iter().any(|f| f.name == db.name))
        .map(|db| db.name.clone())
        .collect();
    (tables, missing)
}

/// Deletes every object of the throwaway instance that dbdeploy made for it (labels
/// checked, UID precondition), then waits until its pod and volume claim are gone.
async fn cleanup(kube: &Kube, name: &str) -> Result<Vec<String>> {
    let work = async {
        let names = Names::of(name);
        let claim = Names::pvc(name, 0);
        let mut report = DeleteReport {
            name: name.into(),
            namespace: kube.namespace.clone(),
            deleted: Vec::new(),
            kept: Vec::new(),
            not_managed: Vec::new(),
        };
        deploy::remove_if_ours::<StatefulSet>(kube, &names.statefulset, name, &mut report).await?;
        deploy::remove_if_ours::<Service>(kube, &names.service, name, &mut report).await?;
        deploy::remove_if_ours::<Service>(kube, &names.headless_service, name, &mut report).await?;
        deploy::remove_if_ours::<ConfigMap>(kube, &names.config_map, name, &mut report).await?;
        deploy::remove_if_ours::<NetworkPolicy>(kube, &names.network_policy, name, &mut report)
            .await?;
        deploy::remove_if_ours::<Secret>(kube, &names.secret, name, &mut report).await?;
        deploy::remove_if_ours::<PersistentVolumeClaim>(kube, &claim, name, &mut report).await?;
        gone::<Pod>(kube, &format!("{name}-0")).await?;
        gone::<PersistentVolumeClaim>(kube, &claim).await?;
        Ok(report.deleted)
    };
    let what = format!("the throwaway instance {}/{name} to go", kube.namespace);
    within(CLEANUP_TIMEOUT, what, work).await
}

/// Waits until the object no longer exists.
async fn gone<K>(kube: &Kube, name: &str) -> Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = kube.watch_api();
    let kind = K::kind(&Default::default()).to_string();
    kube::runtime::wait::await_condition(api, name, |object: Option<&K>| object.is_none())
        .await
        .map(drop)
        .map_err(|source| Error::Watch {
            what: format!("{kind} {}/{name}", kube.namespace),
            source,
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backup::manifest::{FORMAT, TableManifest};

    fn table(name: &str, rows: u64, checksum: &str) -> TableManifest {
        TableManifest {
            name: name.into(),
            rows,
            checksum: checksum.into(),
            after_dump: None,
        }
    }

    pub(crate) fn manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            engine: Engine::Postgres,
            image: Some("postgres:15".into()),
            kind: DumpKind::PostgresCluster,
            database: None,
            namespace: "shop".into(),
            pod: "orders-0".into(),
            dumped_at: "2026-12-03T08:00:00Z".into(),
            databases: vec![
                DatabaseManifest {
                    name: "appdb".into(),
                    tables: vec![
                        table("public.items", 3, "aaa"),
                        TableManifest {
                            after_dump: Some(Counted {
                                rows: 6,
                                checksum: "ccc".into(),
                            }),
                            ..table("public.log", 5, "bbb")
                        },
                        table("public.orders", 10, "ddd"),
                    ],
                },
                DatabaseManifest {
                    name: "empty".into(),
                    tables: vec![],
                },
            ],
        }
    }

    #[test]
    fn tables_pass_on_their_recorded_state_and_fail_otherwise() {
        let mut found = manifest().databases;
        found.pop();
        let (results, missing) = compare(&manifest(), &found);
        assert!(results.iter().all(|r| r.result == Verdict::Pass));
        assert_eq!(missing, ["empty"]);

        // The state after the dump also passes; a third one is only "changed".
        found[0].tables[1] = table("public.log", 6, "ccc");
        assert_eq!(compare(&manifest(), &found).0[1].result, Verdict::Pass);
        found[0].tables[1] = table("public.log", 7, "eee");
        assert_eq!(compare(&manifest(), &found).0[1].result, Verdict::Changed);

        // Rows lost, or a table missing: FAIL, with what was found.
        found[0].tables[2] = table("public.orders", 9, "xxx");
        found[0].tables.remove(0);
        let (results, _) = compare(&manifest(), &found);
        assert_eq!(results[0].result, Verdict::Fail);
        assert_eq!(results[0].found_rows, None);
        assert_eq!(results[2].result, Verdict::Fail);
        assert_eq!(results[2].found_rows, Some(9));
        assert_eq!(results[2].expected_rows, 10);
    }

    #[test]
    fn throwaway_names_and_sizes() {
        let name = instance_name(Engine::Mariadb, &random_suffix());
        assert!(
            name.starts_with("drill-mariadb-") && name.len() == 19,
            "{name}"
        );
        crate::render::validate_name(&name).unwrap();
        assert_eq!(storage_for(0), "1Gi");
        assert_eq!(storage_for(300 << 20), "1Gi");
        assert_eq!(storage_for(1 << 30), "3Gi");
    }
}
