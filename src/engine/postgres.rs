//! PostgreSQL: configuration file and in-container commands.

use super::Engine;

/// Settings dbdeploy owns: paths and the port, which the manifests depend on.
pub const RESERVED: &[&str] = &[
    "config_file",
    "data_directory",
    "hba_file",
    "ident_file",
    "port",
];

/// The guide's postgresql.conf, less `min_wal_size`/`max_wal_size` (1 GB / 4 GB of WAL
/// would fill a small volume; the server's defaults scale better).
const DEFAULTS: &[(&str, &str)] = &[
    ("listen_addresses", "*"),
    ("port", "5432"),
    ("max_connections", "100"),
    ("shared_buffers", "128MB"),
    ("effective_cache_size", "512MB"),
    ("maintenance_work_mem", "64MB"),
    ("checkpoint_completion_target", "0.9"),
    ("wal_buffers", "16MB"),
    ("default_statistics_target", "100"),
    ("random_page_cost", "4"),
    ("effective_io_concurrency", "2"),
    ("work_mem", "4MB"),
];

pub(super) fn server_args() -> Vec<String> {
    let (dir, file) = Engine::Postgres.config_path();
    vec!["-c".into(), format!("config_file={dir}/{file}")]
}

pub(super) fn config_file(settings: &[(String, String)]) -> String {
    let mut merged: Vec<(String, String)> = DEFAULTS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (key, value) in settings {
        match merged.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
            Some(entry) => entry.1 = value.clone(),
            None => merged.push((key.clone(), value.clone())),
        }
    }
    let mut text = String::from("# Rendered by kubectl-dbdeploy; change with --set key=value.\n");
    for (key, value) in merged {
        // Quoting every value is valid for every setting type.
        text.push_str(&format!("{key} = '{}'\n", value.replace('\'', "''")));
    }
    text
}

/// Connection over TCP with the password from the container's own environment.
pub(super) const READINESS: &str = r#"PGPASSWORD="$POSTGRES_PASSWORD" exec psql -X -h 127.0.0.1 -p 5432 -U "${POSTGRES_USER:-postgres}" -d "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" -tAc 'SELECT 1' >/dev/null"#;

pub(super) const LIVENESS: &str =
    r#"exec pg_isready -q -h 127.0.0.1 -p 5432 -U "${POSTGRES_USER:-postgres}""#;

/// A fast shutdown (disconnect clients, checkpoint, stop): SIGINT to the postmaster, PID 1.
/// Not `pg_ctl stop -w`: the hook would outlive the container it stops and be reported as
/// FailedPreStopHook. kubelet's SIGTERM after the hook is ignored during a fast shutdown.
pub(super) const PRE_STOP: &str = "kill -INT 1";

/// Over the local socket, where the images trust the local user; PGPASSWORD covers
/// setups whose pg_hba.conf asks for one.
pub(super) const SQL_STDIN: &str = r#"PGPASSWORD="${POSTGRES_PASSWORD:-}" exec psql -X -q -v ON_ERROR_STOP=1 -tA -F '	' -U "${POSTGRES_USER:-postgres}" -d "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}""#;

/// The session that holds a snapshot's backup mode: psql reading SQL from stdin, the
/// backup label in `"$1"` (psql variable `label`), ended by `timeout` after `"$2"` seconds
/// whatever happens to the caller (PostgreSQL aborts a non-exclusive backup whose session
/// ends, so a lost session never leaves the server in backup mode).
pub const QUIESCE_SESSION: &str = r#"PGPASSWORD="${POSTGRES_PASSWORD:-}" exec timeout "$2" psql -X -q -v ON_ERROR_STOP=1 -tA -v label="$1" -U "${POSTGRES_USER:-postgres}" -d "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}""#;

/// Start of backup mode: the session's backend PID after `session` (so another session can
/// end it), a checkpoint (so the one `pg_backup_start` waits for is short), then
/// non-exclusive backup mode (`pg_start_backup` before 15). Writes go on; full-page writes
/// are forced until the backup stops. Prints `marker` when done.
pub fn quiesce_sql(session: &str, marker: &str) -> String {
    format!(
        "SELECT '{session} ' || pg_backend_pid();\n\
         SELECT current_setting('server_version_num')::int >= 150000 AS kdb_pg15 \\gset\n\
         CHECKPOINT;\n\
         \\if :kdb_pg15\nSELECT pg_backup_start(:'label', true);\n\
         \\else\nSELECT pg_start_backup(:'label', true, false);\n\\endif\n\
         \\echo {marker}\n"
    )
}

/// End of backup mode, in the same session; prints `marker` when done.
pub fn release_sql(marker: &str) -> String {
    format!(
        "\\if :kdb_pg15\nSELECT lsn FROM pg_backup_stop(false);\n\
         \\else\nSELECT lsn FROM pg_stop_backup(false, false);\n\\endif\n\
         \\echo {marker}\n"
    )
}

/// Ends the quiesce session with backend PID `pid` from another session (its backup is
/// aborted with it).
pub fn end_session_sql(pid: u32) -> String {
    format!("SELECT pg_terminate_backend({pid});\n")
}
