//! Scheduled backups as Kubernetes objects: a CronJob whose pod runs the database's own
//! image and dump tool against the database's Service, writes the dump to a backup PVC
//! with the same guarantees as `dbbackup dump` (temporary name, exit status and trailer
//! checked, `.sha256` beside it, renamed only then), then applies retention; and the PVC.
//! Pure: every value (names, schedule, credentials' references) is an input.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::backup::format::{Compression, DumpKind};
use crate::backup::manifest;
use crate::engine::Engine;

/// `app.kubernetes.io/managed-by` of the CronJob, its Jobs' pods and the backup PVC.
pub const MANAGED_BY: &str = "kubectl-dbbackup";
/// `app.kubernetes.io/component` of the same objects.
pub const COMPONENT: &str = "backup";
/// The database a schedule backs up (on the CronJob, the PVC and the pods).
pub const DATABASE_LABEL: &str = "kubectl-db.io/backup-of";
/// Annotations that record the schedule's settings, for `schedule list` and dbcheck.
pub const PVC_ANNOTATION: &str = "kubectl-db.io/backup-pvc";
pub const KEEP_ANNOTATION: &str = "kubectl-db.io/keep";
pub const KEEP_WITHIN_ANNOTATION: &str = "kubectl-db.io/keep-within";
/// Where the backup PVC is mounted in the job's pod.
pub const BACKUP_DIR: &str = "/backups";
/// Longest CronJob name: the controller appends `-<11 digits>` to name its Jobs (63).
pub const CRON_JOB_NAME_MAX: usize = 52;

/// The CronJob of database `name`.
pub fn cron_job_name(database: &str) -> String {
    format!("{database}-backup")
}

/// The backup PVC `--to pvc` creates when no name is given.
pub fn default_claim_name(database: &str) -> String {
    format!("{database}-backups")
}

/// A backup PVC to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClaim {
    pub size: String,
    /// None: the cluster's default StorageClass.
    pub storage_class: Option<String>,
}

/// Everything the objects are made of.
#[derive(Debug, Clone)]
pub struct BackupSchedule {
    pub namespace: String,
    /// The StatefulSet backed up.
    pub database: String,
    pub engine: Engine,
    /// The database container's image: its dump tool is the server's own version.
    pub image: String,
    /// A uid the image runs as (the database pod's).
    pub uid: i64,
    /// The database container's credential variables, as references to its own Secret
    /// (and ConfigMap); never values.
    pub credentials: Vec<EnvVar>,
    /// DNS name of the database pod the dump connects to.
    pub host: String,
    /// That pod's name (recorded in the manifest).
    pub pod: String,
    /// 5-field cron expression.
    pub schedule: String,
    pub time_zone: String,
    pub claim: String,
    /// The claim to create, when it does not exist yet.
    pub new_claim: Option<NewClaim>,
    /// Newest backups kept (0: no count rule).
    pub keep: u32,
    /// Backups younger than this are kept (0: no age rule).
    pub keep_within: Duration,
    pub compression: Compression,
    /// Time limit of one run (the Job's activeDeadlineSeconds).
    pub timeout: Duration,
}

/// The rendered objects, in apply order.
#[derive(Debug, Clone)]
pub struct ScheduleObjects {
    pub claim: Option<PersistentVolumeClaim>,
    pub cron_job: CronJob,
}

impl ScheduleObjects {
    /// The objects as JSON values (for `--dry-run=client -o yaml`).
    pub fn to_values(&self) -> Vec<serde_json::Value> {
        let mut values = Vec::new();
        if let Some(claim) = &self.claim {
            values.push(serde_json::to_value(claim).unwrap_or_default());
        }
        values.push(serde_json::to_value(&self.cron_job).unwrap_or_default());
        values
    }
}

/// The job's script. Arguments: backup directory, file name prefix, extension, trailer,
/// trailer match (`exact`|`prefix`), newest kept, minutes kept, minutes after which a
/// `.partial` is a killed run's, the pauses (seconds, space-separated) before each retry,
/// the engine's client setup script, the manifest's header ([`manifest::passes_header`]),
/// how many arguments the manifest query has, then that query and the dump command. The
/// query runs before and after the dump (given the pass before's `snapshot` then, as
/// [`crate::engine::Commands::manifest_query`] says); its raw output goes beside the dump as
/// `FILE.manifest.tsv` (read by [`manifest::from_passes`]), renamed with the `.sha256` only
/// once the dump is complete, and removed with the dump.
/// An attempt that fails on the way to the server (a name that did not resolve, a refused
/// or dropped connection, a server starting up) is made again from the start after the
/// next pause: the job reaches the database by its DNS name, and one resolver hiccup or
/// restart must not cost the night's backup. Any other failure ends the run at once.
/// Its result (or why it failed) goes to the termination log, which the Job's pod status
/// carries: `schedule run-now` and dbcheck read it there, no log access needed.
pub const JOB_SCRIPT: &str = r#"set -u
dir=$1 prefix=$2 ext=$3 trailer=$4 match=$5 keep=$6 within=$7 stale=$8 pauses=$9
setup=${10} header=${11} queried=${12}
shift 12
umask 077
say() { printf '%s\n' "$*" 2>/dev/null > /dev/termination-log || :; }
give_up() { printf 'backup failed: %s\n' "$*" >&2; say "failed: $*"; exit 1; }
# Inside an attempt (a subshell): its reason for the loop below, then the attempt ends.
fail() { printf '%s\n' "$*" > "$reason"; exit 1; }
# The manifest query is the first $queried arguments, the dump the rest; `query SINCE
# ARGS...` appends SINCE (the pass before's snapshot, or empty) to the query. POSIX sh has
# no arrays: the query's arguments are rotated to the end, the others dropped.
query() {
  q_since=$1
  shift
  n=$# i=0
  while [ "$i" -lt "$n" ]; do
    [ "$i" -lt "$queried" ] && set -- "$@" "$1"
    shift; i=$((i + 1))
  done
  "$@" "$q_since"
}
dump() { shift "$queried"; "$@"; }
# Failures on the way to the server, of libpq, mysql/mariadb clients and the resolver.
transient() {
  grep -Eqi 'could not translate host name|name resolution|Name or service not known|Connection refused|could not connect to server|connection to server .* failed|the database system is (starting up|shutting down|in recovery mode)|server closed the connection unexpectedly|terminating connection due to administrator command|Unknown (MySQL|MariaDB) server host|Can.t connect to|Lost connection to|Connection timed out|Connection reset|No route to host' "$1"
}
tab=$(printf '\t')
d='[0-9]'
pattern="$prefix-$d$d$d$d$d$d$d${d}T$d$d$d$d$d${d}Z$ext"
m=.manifest.tsv
for s in '' .sha256 "$m"; do
  find "$dir" -maxdepth 1 -name "$pattern$s.partial" -mmin +"$stale" -exec rm -f {} + 2>/dev/null
done
case $ext in
  .sql.gz) z=gzip ;;
  .sql.zst) z=zstd ;;
  *) z= ;;
esac
[ -z "$z" ] || command -v "$z" >/dev/null 2>&1 || give_up "$z is not in the image"
sh -c "$setup" || give_up "could not set up the database client"
reason=$(mktemp) && result=$(mktemp) || give_up "no scratch file"
trap 'rm -f "$reason" "$result"' EXIT
attempt() (
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
stamp=$(printf '%s' "$now" | tr -d ':-')
file="$dir/$prefix-$stamp$ext"
part="$file.partial"
[ ! -e "$file" ] && [ ! -e "$part" ] || fail "$file already exists"
work=$(mktemp -d) || fail "no scratch directory"
status=$work/status
errors=$work/stderr
passes=$work/passes
# An attempt that fails after its .sha256 and manifest were renamed leaves neither.
trap 'rm -rf "$part" "$file.sha256.partial" "$file$m.partial" "$work"; [ -e "$file" ] || rm -f "$file.sha256" "$file$m"' EXIT
{ printf '%s\ndumped_at\t%s\npass\tbefore\n' "$header" "$now" && query "" "$@" 2>"$errors"; } > "$passes" ||
  fail "the manifest query failed before the dump: $(tail -n 3 "$errors" | tr '\n' ' ')"
# What the server had written by the pass before (PostgreSQL's): the pass after only says
# `unchanged` when nothing was written since, instead of counting every table again.
since=$(sed -n "/^snapshot$tab/{s/^snapshot$tab//p;q;}" "$passes")
: > "$part" || fail "cannot write to $dir"
if [ -n "$z" ]; then
  { dump "$@" 2>"$errors"; echo $? > "$status"; } | "$z" -1 -q -c > "$part" || fail "failed to write $part"
  "$z" -t -q "$part" || fail "the compressed dump is damaged"
  end=$("$z" -d -q -c "$part" | tail -c 4096 | sed 's/[[:space:]]*$//' | grep -v '^$' | tail -n 4)
else
  { dump "$@" 2>"$errors"; echo $? > "$status"; } > "$part" || fail "failed to write $part"
  end=$(tail -c 4096 "$part" | sed 's/[[:space:]]*$//' | grep -v '^$' | tail -n 4)
fi
cat "$errors" >&2
code=$(cat "$status" 2>/dev/null || echo none)
[ "$code" = 0 ] || fail "the dump exited with status $code: $(tail -n 3 "$errors" | tr '\n' ' ')"
complete=no
while IFS= read -r line; do
  case $match in
    exact) [ "$line" = "$trailer" ] && complete=yes ;;
    *) case $line in "$trailer"*) complete=yes ;; esac ;;
  esac
done <<EOF
$end
EOF
[ "$complete" = yes ] || fail "the dump ended without its trailer \"$trailer\" (cut off)"
{ printf 'pass\tafter\n' && query "$since" "$@" 2>"$errors"; } >> "$passes" ||
  fail "the manifest query failed after the dump: $(tail -n 3 "$errors" | tr '\n' ' ')"
sum=$(sha256sum "$part" | cut -d ' ' -f 1) || fail "could not checksum $part"
printf '%s  %s\n' "$sum" "${file##*/}" > "$file.sha256.partial" || fail "failed to write $file.sha256"
cat "$passes" > "$file$m.partial" || fail "failed to write $file$m"
sync
mv "$file.sha256.partial" "$file.sha256" && mv "$file$m.partial" "$file$m" && mv "$part" "$file" ||
  fail "failed to rename $part"
sync
printf '%s %s\n' "$file" "$sum" > "$result"
)
left=$pauses
while :; do
  : > "$reason"
  attempt "$@" && break
  why=$(cat "$reason")
  [ -n "$why" ] || why="the attempt ended without saying why"
  pause=${left%% *} left=${left#"${left%% *}"} left=${left# }
  if [ -z "$pause" ] || ! transient "$reason"; then give_up "$why"; fi
  printf 'attempt failed, again in %s s: %s\n' "$pause" "$why" >&2
  sleep "$pause"
done
read -r file sum < "$result"
size=$(wc -c < "$file" | tr -d ' ')
n=0
removed=0
for f in $(find "$dir" -maxdepth 1 -type f -name "$pattern" | sort -r); do
  n=$((n + 1))
  [ "$f" = "$file" ] && continue
  [ "$keep" -eq 0 ] && [ "$within" -eq 0 ] && continue
  [ "$keep" -gt 0 ] && [ "$n" -le "$keep" ] && continue
  [ "$within" -gt 0 ] && [ -n "$(find "$f" -mmin -"$within")" ] && continue
  rm -f "$f.sha256" "$f$m" "$f.manifest.json" "$f" && removed=$((removed + 1)) && echo "removed ${f##*/} (retention)"
done
echo "backup complete: ${file##*/} $size bytes sha256 $sum"
say "ok ${file##*/} $size $sum removed=$removed"
"#;

/// How the trailer is matched: pg_dump's exactly, mysqldump's by its start (a date follows).
fn trailer_match(kind: DumpKind) -> &'static str {
    match kind {
        DumpKind::Mysql => "prefix",
        _ => "exact",
    }
}

/// Seconds the job waits before each new attempt after a failure on the way to the server
/// (see [`JOB_SCRIPT`]): four attempts within 100 s, long enough for a resolver or a
/// database pod that restarts (on the loaded 2-core test cluster a pod's name once went
/// unresolved for 84 s: three attempts within 40 s were not enough).
const RETRY_PAUSES: &str = "10 30 60";

/// The job container's command: [`JOB_SCRIPT`], its arguments, then the engine's dump
/// command (all databases, no credentials: what `dbbackup dump` does by default).
pub fn job_command(spec: &BackupSchedule) -> Vec<String> {
    let kind = DumpKind::for_engine(spec.engine, false);
    let (_, setup) = spec.engine.remote_client(&spec.host);
    // A run that was killed left its .partial; no run lives longer than the timeout.
    let stale_minutes = spec.timeout.as_secs().div_ceil(60) + 1;
    // The rows hashed as the header's format says.
    let query = spec
        .engine
        .commands()
        .manifest_query(None, manifest::row_hash(manifest::FORMAT));
    let mut command = vec![
        "sh".to_string(),
        "-c".into(),
        JOB_SCRIPT.into(),
        "kdb-backup".into(),
        BACKUP_DIR.into(),
        spec.database.clone(),
        spec.compression.extension().into(),
        kind.trailer().into(),
        trailer_match(kind).into(),
        spec.keep.to_string(),
        spec.keep_within.as_secs().div_ceil(60).to_string(),
        stale_minutes.to_string(),
        RETRY_PAUSES.into(),
        setup.into(),
        manifest::passes_header(spec.engine, &spec.image, kind, &spec.namespace, &spec.pod),
        query.len().to_string(),
    ];
    command.extend(query);
    command.extend(spec.engine.commands().dump(None, false));
    command
}

fn labels(spec: &BackupSchedule) -> BTreeMap<String, String> {
    BTreeMap::from([
        (super::MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        ("app.kubernetes.io/component".into(), COMPONENT.into()),
        (DATABASE_LABEL.into(), spec.database.clone()),
    ])
}

fn meta(spec: &BackupSchedule, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(spec.namespace.clone()),
        labels: Some(labels(spec)),
        ..Default::default()
    }
}

/// Renders the CronJob, and the PVC when one is to be created.
pub fn render(spec: &BackupSchedule) -> ScheduleObjects {
    ScheduleObjects {
        claim: spec.new_claim.as_ref().map(|new| claim(spec, new)),
        cron_job: cron_job(spec),
    }
}

fn claim(spec: &BackupSchedule, new: &NewClaim) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(spec, &spec.claim),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: new.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(new.size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container(spec: &BackupSchedule) -> Container {
    let (client_env, _) = spec.engine.remote_client(&spec.host);
    let mut env: Vec<EnvVar> = client_env
        .into_iter()
        .map(|(name, value)| EnvVar {
            name: name.into(),
            value: Some(value),
            ..Default::default()
        })
        .collect();
    env.extend(spec.credentials.iter().cloned());
    let quantities = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect::<BTreeMap<_, _>>()
    };
    Container {
        name: "backup".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(job_command(spec)),
        env: Some(env),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "backups".into(),
                mount_path: BACKUP_DIR.into(),
                ..Default::default()
            },
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..Default::default()
            },
        ]),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", "50m"), ("memory", "64Mi")])),
            limits: Some(quantities(&[("memory", "512Mi")])),
            ..Default::default()
        }),
        security_context: Some(super::restricted_container()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    }
}

fn pod_spec(spec: &BackupSchedule) -> PodSpec {
    PodSpec {
        // The job never talks to the API server: no token, no ServiceAccount of its own.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        restart_policy: Some("Never".into()),
        // fsGroup makes the backup volume writable by the image's uid (restricted PSS: no
        // root, no chown).
        security_context: Some(PodSecurityContext {
            run_as_user: Some(spec.uid),
            run_as_group: Some(spec.uid),
            fs_group: Some(spec.uid),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        containers: vec![container(spec)],
        volumes: Some(vec![
            Volume {
                name: "backups".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: spec.claim.clone(),
                    read_only: None,
                }),
                ..Default::default()
            },
            Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
        ]),
        ..Default::default()
    }
}

fn cron_job(spec: &BackupSchedule) -> CronJob {
    let mut pod_labels = labels(spec);
    // Let the pod through the database's NetworkPolicy (dbdeploy's client label).
    pod_labels.insert(super::client_label(&spec.database), "true".into());
    let mut metadata = meta(spec, &cron_job_name(&spec.database));
    metadata.annotations = Some(BTreeMap::from([
        (PVC_ANNOTATION.to_string(), spec.claim.clone()),
        (KEEP_ANNOTATION.to_string(), spec.keep.to_string()),
        (
            KEEP_WITHIN_ANNOTATION.to_string(),
            format!("{}s", spec.keep_within.as_secs()),
        ),
    ]));
    CronJob {
        metadata,
        spec: Some(CronJobSpec {
            schedule: spec.schedule.clone(),
            time_zone: Some(spec.time_zone.clone()),
            // One backup at a time: two dumps would compete for the server and the volume.
            concurrency_policy: Some("Forbid".into()),
            // A run missed by more than an hour (controller down) is skipped, not run late.
            starting_deadline_seconds: Some(3600),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(spec)),
                    ..Default::default()
                }),
                spec: Some(JobSpec {
                    // A failed run fails its Job at once (kubectl get jobs, events, dbcheck);
                    // the next scheduled run tries again.
                    backoff_limit: Some(0),
                    active_deadline_seconds: Some(spec.timeout.as_secs() as i64),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(pod_labels),
                            ..Default::default()
                        }),
                        spec: Some(pod_spec(spec)),
                    },
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVarSource, SecretKeySelector};

    pub(crate) fn spec(engine: Engine) -> BackupSchedule {
        BackupSchedule {
            namespace: "shop".into(),
            database: "pg".into(),
            engine,
            image: "postgres:15".into(),
            uid: 999,
            credentials: vec![EnvVar {
                name: engine.password_keys()[0].into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "pg-secret".into(),
                        key: engine.password_keys()[0].into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            host: "pg-0.pg-headless".into(),
            pod: "pg-0".into(),
            schedule: "0 */6 * * *".into(),
            time_zone: "Asia/Seoul".into(),
            claim: "pg-backups".into(),
            new_claim: Some(NewClaim {
                size: "10Gi".into(),
                storage_class: None,
            }),
            keep: 7,
            keep_within: Duration::from_secs(7 * 86_400),
            compression: Compression::Gzip,
            timeout: Duration::from_secs(6 * 3600),
        }
    }

    const PG_DUMP: &str = "--\n-- PostgreSQL database cluster dump\n--\n\nCREATE ROLE x;\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n";

    /// A stand-in manifest query: one database, one table of one row.
    const QUERY: &str = r"printf 'database\tappdb\ntable\tappdb\tpublic.t\t1\tabc\n'";

    /// The job's script to run here, with `query` and `dump` (shell scripts) standing in
    /// for the engine's manifest query and pg_dumpall.
    fn job_here(
        dir: &std::path::Path,
        ext: &str,
        (keep, within): (u32, u64),
        query: &str,
        dump: &str,
    ) -> std::process::Command {
        let header = manifest::passes_header(
            Engine::Postgres,
            "postgres:15",
            DumpKind::PostgresCluster,
            "shop",
            "pg-0",
        );
        // Retries without waiting.
        let pauses = "0 0";
        let mut command = std::process::Command::new("/bin/sh");
        command
            .args(["-c", JOB_SCRIPT, "kdb-backup"])
            .arg(dir)
            .args([
                "pg",
                ext,
                "-- PostgreSQL database cluster dump complete",
                "exact",
            ])
            .args([
                keep.to_string(),
                within.to_string(),
                "361".into(),
                pauses.into(),
                ":".into(),
                header,
                "3".into(),
            ])
            .args(["sh", "-c", query])
            .args(["sh", "-c", dump]);
        command
    }

    /// Runs it: did it succeed, and what it printed.
    fn finish(command: &mut std::process::Command) -> (bool, String) {
        let output = command.output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    }

    fn run_job_with(
        dir: &std::path::Path,
        ext: &str,
        rules: (u32, u64),
        query: &str,
        dump: &str,
    ) -> (bool, String) {
        finish(&mut job_here(dir, ext, rules, query, dump))
    }

    fn run_job(
        dir: &std::path::Path,
        ext: &str,
        keep: u32,
        within: u64,
        dump: &str,
    ) -> (bool, String) {
        run_job_with(dir, ext, (keep, within), QUERY, dump)
    }

    /// A stand-in dump command that prints `text`.
    fn dump_of(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dump.sql");
        std::fs::write(&path, text).unwrap();
        let command = format!("cat '{}'", path.display());
        (dir, command)
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn read_manifest(dump: &std::path::Path) -> Option<manifest::Manifest> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let at = crate::backup::location::Location::Local(dump.to_path_buf());
        rt.block_on(manifest::read_beside(&at)).unwrap()
    }

    #[test]
    fn the_job_writes_what_verify_and_drill_accept() {
        for ext in [".sql.gz", ".sql.zst", ".sql"] {
            let dir = tempfile::tempdir().unwrap();
            let (_source, dump) = dump_of(PG_DUMP);
            let (ok, text) = run_job(dir.path(), ext, 7, 0, &dump);
            assert!(ok, "{text}");
            assert!(text.contains("backup complete: pg-"), "{text}");
            let names = names(dir.path());
            assert_eq!(names.len(), 3, "{names:?}");
            assert!(names[0].ends_with(ext), "{names:?}");
            assert_eq!(names[1], format!("{}.manifest.tsv", names[0]));
            assert_eq!(names[2], format!("{}.sha256", names[0]));
            let file = dir.path().join(&names[0]);
            let report = crate::backup::verify(&file).unwrap();
            assert!(report.ok, "{report:?}");
            assert_eq!(report.kind, Some(DumpKind::PostgresCluster));
            // The manifest drill reads: the header's values, the table, and the time the
            // file is named after.
            let found = read_manifest(&file).unwrap();
            assert_eq!(found.kind, DumpKind::PostgresCluster);
            assert_eq!(found.image.as_deref(), Some("postgres:15"));
            assert_eq!(format!("{}/{}", found.namespace, found.pod), "shop/pg-0");
            assert_eq!(
                format!("pg-{}{ext}", found.dumped_at.replace([':', '-'], "")),
                names[0]
            );
            let tables: Vec<_> = found.tables().map(|(db, t)| (db, t.clone())).collect();
            assert_eq!(tables.len(), 1);
            assert_eq!(tables[0].0, "appdb");
            assert_eq!(
                (tables[0].1.rows, tables[0].1.after_dump.clone()),
                (1, None)
            );
        }
    }

    #[test]
    fn a_table_written_during_the_dump_keeps_both_states() {
        let dir = tempfile::tempdir().unwrap();
        let (source, dump) = dump_of(PG_DUMP);
        // Counts the calls: the second (after the dump) sees two rows.
        let calls = source.path().join("calls");
        let query = format!(
            r"echo x >> '{0}'; n=$(wc -l < '{0}'); printf 'database\tappdb\ntable\tappdb\tpublic.t\t%s\tsum%s\n' $n $n",
            calls.display()
        );
        let (ok, text) = run_job_with(dir.path(), ".sql.gz", (0, 0), &query, &dump);
        assert!(ok, "{text}");
        let found = read_manifest(&dir.path().join(&names(dir.path())[0])).unwrap();
        assert_eq!(found.changed_during_dump(), ["appdb.public.t"]);
        let (_, table) = found.tables().next().unwrap();
        assert_eq!((table.rows, table.checksum.as_str()), (1, "sum1"));
        assert_eq!(
            table.after_dump,
            Some(manifest::Counted {
                rows: 2,
                checksum: "sum2".into()
            })
        );
    }

    /// The pass after gets the pass before's snapshot (the query's last argument; empty
    /// before): a query that finds nothing written since says `unchanged`, and the manifest
    /// keeps the pass before's tables, unchanged by the dump.
    #[test]
    fn the_pass_after_is_given_the_snapshot_of_the_pass_before() {
        let dir = tempfile::tempdir().unwrap();
        let (source, dump) = dump_of(PG_DUMP);
        let calls = source.path().join("calls");
        // `sh -c QUERY SINCE`: the snapshot arrives as $0.
        let query = format!(
            r#"echo "[$0]" >> '{0}'; printf 'snapshot\t7:7:\n'; if [ "$0" = 7:7: ]; then echo unchanged; else printf 'database\tappdb\ntable\tappdb\tpublic.t\t5\tsum5\n'; fi"#,
            calls.display()
        );
        let (ok, text) = run_job_with(dir.path(), ".sql.gz", (0, 0), &query, &dump);
        assert!(ok, "{text}");
        assert_eq!(std::fs::read_to_string(&calls).unwrap(), "[]\n[7:7:]\n");
        let file = dir.path().join(&names(dir.path())[0]);
        let passes = std::fs::read_to_string(format!("{}.manifest.tsv", file.display())).unwrap();
        assert!(
            passes.contains("pass\tafter\nsnapshot\t7:7:\nunchanged\n"),
            "{passes}"
        );
        let found = read_manifest(&file).unwrap();
        assert!(found.changed_during_dump().is_empty());
        let tables: Vec<_> = found.tables().map(|(db, t)| (db, t.clone())).collect();
        assert_eq!(tables.len(), 1, "{tables:?}");
        assert_eq!(
            (tables[0].0, tables[0].1.rows, tables[0].1.checksum.as_str()),
            ("appdb", 5, "sum5")
        );
    }

    #[test]
    fn failures_on_the_way_to_the_server_are_tried_again_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let (source, good) = dump_of(PG_DUMP);
        let calls = source.path().join("calls");
        let count = |calls: &std::path::Path| {
            std::fs::read_to_string(calls)
                .map(|t| t.lines().count())
                .unwrap_or(0)
        };
        // The name of the database's pod not resolving once (a resolver hiccup): the
        // second attempt makes the backup, and only it is there.
        let once = format!(
            "echo x >> '{0}'; if [ $(wc -l < '{0}') -lt 2 ]; then echo 'pg_dump: error: could not translate host name \"pg-0.pg-headless\" to address: Temporary failure in name resolution' >&2; exit 1; fi; {good}",
            calls.display()
        );
        let (ok, text) = run_job(dir.path(), ".sql.gz", 7, 0, &once);
        assert!(ok, "{text}");
        assert!(
            text.contains("attempt failed, again in 0 s: the dump exited with status 1: pg_dump: error: could not translate host name"),
            "{text}"
        );
        assert_eq!(count(&calls), 2);
        let files = names(dir.path());
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(files[0].ends_with(".sql.gz"), "{files:?}");

        // Always refused: three attempts, then the last reason.
        let dir = tempfile::tempdir().unwrap();
        std::fs::remove_file(&calls).unwrap();
        let refused = format!(
            "echo x >> '{}'; echo 'psql: error: connection to server at \"pg-0.pg-headless\" (10.244.0.9), port 5432 failed: Connection refused' >&2; exit 2",
            calls.display()
        );
        let (ok, text) = run_job_with(dir.path(), ".sql.gz", (7, 0), &refused, &good);
        assert!(!ok);
        assert!(
            text.contains("backup failed: the manifest query failed before the dump: psql: error: connection to server"),
            "{text}"
        );
        assert_eq!(count(&calls), 3, "{text}");

        // A wrong password is not a hiccup: one attempt.
        std::fs::remove_file(&calls).unwrap();
        let wrong = format!(
            "echo x >> '{}'; echo 'psql: error: FATAL:  password authentication failed for user \"postgres\"' >&2; exit 2",
            calls.display()
        );
        let (ok, text) = run_job_with(dir.path(), ".sql.gz", (7, 0), &wrong, &good);
        assert!(!ok);
        assert!(!text.contains("attempt failed"), "{text}");
        assert_eq!(count(&calls), 1, "{text}");
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }

    #[test]
    fn a_failed_or_cut_dump_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let (ok, text) = run_job(
            dir.path(),
            ".sql.gz",
            7,
            0,
            "echo 'connection refused' >&2; exit 2",
        );
        assert!(!ok);
        assert!(
            text.contains("the dump exited with status 2: connection refused"),
            "{text}"
        );
        // An image without the compressor: said before anything is dumped.
        let (_good, dump) = dump_of(PG_DUMP);
        let mut job = job_here(dir.path(), ".sql.zst", (7, 0), QUERY, &dump);
        let (ok, text) = finish(job.env("PATH", dir.path().join("nothing")));
        assert!(!ok);
        assert!(
            text.contains("backup failed: zstd is not in the image"),
            "{text}"
        );
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
        let (source, cut) =
            dump_of("--\n-- PostgreSQL database cluster dump\nCOPY t FROM stdin;\n1\n");
        for ext in [".sql.gz", ".sql.zst", ".sql"] {
            let (ok, text) = run_job(dir.path(), ext, 7, 0, &cut);
            assert!(!ok);
            assert!(text.contains("without its trailer"), "{ext}: {text}");
            assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
        }

        // The manifest query failing before the dump, or after a good one: no file either.
        let (_good, dump) = dump_of(PG_DUMP);
        let refused = "echo 'FATAL: password authentication failed' >&2; exit 2";
        let (ok, text) = run_job_with(dir.path(), ".sql.gz", (7, 0), refused, &dump);
        assert!(!ok);
        assert!(
            text.contains("the manifest query failed before the dump: FATAL: password"),
            "{text}"
        );
        let calls = source.path().join("calls");
        let second_fails = format!(
            "echo x >> '{0}'; [ $(wc -l < '{0}') -lt 2 ] || exit 3; {QUERY}",
            calls.display()
        );
        let (ok, text) = run_job_with(dir.path(), ".sql.gz", (7, 0), &second_fails, &dump);
        assert!(!ok);
        assert!(
            text.contains("the manifest query failed after the dump"),
            "{text}"
        );
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));

        // The last rename (the dump's) failing: the .sha256 and manifest already renamed
        // are removed too, so no sidecar vouches for a file that is not there.
        let tools = tempfile::tempdir().unwrap();
        let mv = tools.path().join("mv");
        crate::testing::write_executable(
            &mv,
            "#!/bin/sh\ncase $1 in *.sql.gz.partial) echo 'mv: device full' >&2; exit 1;; esac\nexec /bin/mv \"$@\"\n",
        );
        let path = format!(
            "{}:{}",
            tools.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut job = job_here(dir.path(), ".sql.gz", (7, 0), QUERY, &dump);
        let (ok, text) = finish(job.env("PATH", path));
        assert!(!ok);
        assert!(text.contains("failed to rename"), "{text}");
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }

    #[test]
    fn retention_runs_after_a_good_dump_only() {
        let dir = tempfile::tempdir().unwrap();
        let old = |stamp: &str, days: u64| {
            let path = dir.path().join(format!("pg-{stamp}.sql.gz"));
            std::fs::write(&path, "old").unwrap();
            for sidecar in [".sha256", ".manifest.tsv"] {
                std::fs::write(dir.path().join(format!("pg-{stamp}.sql.gz{sidecar}")), "x")
                    .unwrap();
            }
            let when = std::time::SystemTime::now() - Duration::from_secs(days * 86_400);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
        };
        old("20200101T000000Z", 10);
        old("20200102T000000Z", 1);
        // Another database's backups on the same volume are not ours to remove.
        std::fs::write(dir.path().join("pg-2-20200101T000000Z.sql.gz"), "other").unwrap();
        let (ok, _) = run_job(dir.path(), ".sql.gz", 1, 0, "exit 1");
        assert!(!ok);
        assert_eq!(names(dir.path()).len(), 7, "a failed run removes nothing");
        let (_source, dump) = dump_of(PG_DUMP);
        // Within 2 days: the one of a day ago stays, the one of 10 days goes with its
        // checksum and manifest.
        let (ok, text) = run_job(dir.path(), ".sql.gz", 0, 2 * 1440, &dump);
        assert!(ok, "{text}");
        let left = names(dir.path());
        assert!(
            !left.iter().any(|n| n.starts_with("pg-20200101")),
            "{left:?}"
        );
        for name in ["", ".sha256", ".manifest.tsv"] {
            let name = format!("pg-20200102T000000Z.sql.gz{name}");
            assert!(left.contains(&name), "{left:?}");
        }
        // Keep 1: only the newest (a second later: file names are stamped to the second).
        std::thread::sleep(Duration::from_millis(1100));
        let (ok, text) = run_job(dir.path(), ".sql.gz", 1, 0, &dump);
        assert!(ok, "{text}");
        let left = names(dir.path());
        assert_eq!(left.len(), 4, "{left:?}");
        assert!(left.contains(&"pg-2-20200101T000000Z.sql.gz".to_string()));
    }

    #[test]
    fn postgres_schedule_objects() {
        let objects = render(&spec(Engine::Postgres));
        let yaml = crate::output::objects_to_yaml(&objects.to_values()).unwrap();
        insta::assert_snapshot!(yaml);
    }

    #[test]
    fn mariadb_cron_job_into_an_existing_claim() {
        let mut spec = spec(Engine::Mariadb);
        spec.new_claim = None;
        spec.image = "mariadb:10.11".into();
        spec.compression = Compression::None;
        spec.keep_within = Duration::ZERO;
        let objects = render(&spec);
        assert!(objects.claim.is_none());
        let yaml = crate::output::objects_to_yaml(&objects.to_values()).unwrap();
        insta::assert_snapshot!(yaml);
    }
}
