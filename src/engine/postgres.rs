//! PostgreSQL: configuration file and in-container commands.

use super::Engine;
use super::commands::{Commands, Query, RowHash, shell_quote};
use super::marker::{Created, DATABASE, TABLE};
use crate::exec::script_command as script;

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
const READINESS: &str = r#"PGPASSWORD="$POSTGRES_PASSWORD" exec psql -X -h 127.0.0.1 -p 5432 -U "${POSTGRES_USER:-postgres}" -d "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" -tAc 'SELECT 1' >/dev/null"#;

const LIVENESS: &str = r#"exec pg_isready -q -h 127.0.0.1 -p 5432 -U "${POSTGRES_USER:-postgres}""#;

/// A fast shutdown (disconnect clients, checkpoint, stop): SIGINT to the postmaster, PID 1.
/// Not `pg_ctl stop -w`: the hook would outlive the container it stops and be reported as
/// FailedPreStopHook. kubelet's SIGTERM after the hook is ignored during a fast shutdown.
const PRE_STOP: &str = "kill -INT 1";

/// Over the local socket, where the images trust the local user; PGPASSWORD covers
/// setups whose pg_hba.conf asks for one. Arguments after the script go to psql.
const SQL_STDIN: &str = r#"PGPASSWORD="${POSTGRES_PASSWORD:-}" exec psql -X -q -v ON_ERROR_STOP=1 -tA -F '	' -U "${POSTGRES_USER:-postgres}" -d "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" "$@""#;

/// The user's client: the image makes POSTGRES_USER the superuser, so the application
/// user and the admin are one role. Over the local socket, as [`SQL_STDIN`]. No history
/// file: the root file system is read-only, and what was typed (an `ALTER ROLE ...
/// PASSWORD`) stays out of the pod.
const CLIENT: &str = r#"PGPASSWORD="${POSTGRES_PASSWORD:-}" PSQL_HISTORY=/dev/null exec psql -U "${POSTGRES_USER:-postgres}" -d "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" "$@""#;

/// Every database and the roles; arguments after the script go to pg_dumpall.
const DUMP_ALL: &str = r#"PGPASSWORD="${POSTGRES_PASSWORD:-}" exec pg_dumpall -w -U "${POSTGRES_USER:-postgres}" "$@""#;
/// --create: the file makes its own database, so restoring needs no name.
const DUMP_ONE: &str = r#"PGPASSWORD="${POSTGRES_PASSWORD:-}" exec pg_dump -w -U "${POSTGRES_USER:-postgres}" --create -d "$1""#;

/// One database for a parallel dump, without `--create`: for the databases every instance
/// has, which pg_dumpall dumps the same way (the restore connects to them instead).
const DUMP_IN_PLACE: &str = r#"PGPASSWORD="${POSTGRES_PASSWORD:-}" exec pg_dump -w -U "${POSTGRES_USER:-postgres}" -d "$1""#;
/// What pg_dumpall dumps (templates but template1 are left out, as are databases a failed
/// DROP DATABASE left invalid: `datconnlimit = -2`).
/// The databases of a parallel dump with their size on disk (0 where the role may not
/// connect to one: `pg_database_size` would refuse the whole list).
const PART_DATABASES: &str = r#"PGPASSWORD="${POSTGRES_PASSWORD:-}" exec psql -X -w -tA -F '	' -U "${POSTGRES_USER:-postgres}" -d postgres -c "SELECT datname, CASE WHEN has_database_privilege(oid, 'CONNECT') THEN pg_database_size(oid) ELSE 0 END FROM pg_database WHERE datallowconn AND datconnlimit <> -2 AND datname <> 'template0' ORDER BY 1""#;
/// One part of a parallel dump on stdin, into `"$1"`: `postgres` for a part that creates
/// its database (the file drops and re-creates it), else the database itself.
const RESTORE_PART: &str = r#"PGPASSWORD="${POSTGRES_PASSWORD:-}" exec psql -X -q -w -v ON_ERROR_STOP=1 -U "${POSTGRES_USER:-postgres}" -d "$1""#;
/// Databases every instance has: dumped and restored in place, never re-created.
const DEFAULT_DATABASES: &[&str] = &["postgres", "template1"];

/// psql lines run after the dump, in the same session: the target's own role gets back
/// the password its container (its Secret) has, so a dump of another deployment, or an
/// old one that carries role passwords, cannot lock the target out. The password goes
/// from the environment into a psql variable (a backtick runs `printf`, a shell builtin
/// in the shell psql starts) and from there to the server: never on a command line. The
/// statement is kept out of the server log where the session may do so (superuser).
const CREDENTIAL_LINES: &[&str] = &[
    r#"\set kdb_user `printf %s "${POSTGRES_USER:-postgres}"`"#,
    r#"\set kdb_pw `printf %s "$POSTGRES_PASSWORD"`"#,
    "SELECT rolsuper AS kdb_super FROM pg_catalog.pg_roles WHERE rolname = current_user \\gset",
    "\\if :kdb_super",
    "SET log_statement = 'none';",
    "SET log_min_duration_statement = -1;",
    "SET log_min_error_statement = 'panic';",
    "\\endif",
    "ALTER ROLE :\"kdb_user\" WITH PASSWORD :'kdb_pw';",
    "\\unset kdb_pw",
];

/// The `printf` arguments that print [`CREDENTIAL_LINES`] (constants, quoted for `sh`).
fn credential_lines() -> String {
    let lines: Vec<String> = CREDENTIAL_LINES.iter().map(|l| shell_quote(l)).collect();
    lines.join(" ")
}

/// Databases holding at least one table, one per line (the `postgres` database too: a
/// pg_dumpall file restores into it).
const USER_DATA: &str = r#"export PGPASSWORD="${POSTGRES_PASSWORD:-}"; u="${POSTGRES_USER:-postgres}"
dbs=$(psql -X -w -tA -U "$u" -d postgres -c "SELECT datname FROM pg_database WHERE datallowconn AND datname NOT IN ('template0','template1') ORDER BY 1") || exit 1
printf '%s\n' "$dbs" | while IFS= read -r db; do
  [ -n "$db" ] || continue
  n=$(psql -X -w -tA -U "$u" -d "$db" -c "SELECT count(*) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE c.relkind IN ('r','p','v','m','f') AND s.nspname NOT IN ('pg_catalog','information_schema') AND s.nspname NOT LIKE 'pg_toast%'") || exit 1
  if [ "$n" -gt 0 ]; then echo "$db"; fi
done"#;

/// The manifest (see [`Commands::manifest`]): `"$1"` names the one database, else every
/// database that accepts connections and is not a template; `"$2"` is the row hash (`fast`
/// or `md5`, see [`RowHash`]). Per table, `\gexec` runs one generated query (names quoted
/// by the server's `format('%I')`): the row count and the MD5 of the sum of each row's
/// 64-bit hash, which no order of the rows changes. The row's hash, `fast`: where every
/// column is of a type whose hash is a hash of exactly what its text shows (integers,
/// bool, text and varchar under a deterministic collation — the default, C or POSIX —,
/// bytea, uuid, dates and timestamps, numeric with a fixed scale), the server's
/// `hash_record_extended` (PostgreSQL 14 and later: no text is built, 4-7x cheaper
/// than MD5); else `hashtextextended` of the row's text (bytewise under `COLLATE "C"`;
/// PostgreSQL 11 and later; 2-3x cheaper); else, and for `md5` (format 1), the first 64
/// bits of the MD5 of its text. Types left out hash equal values alike where their text
/// differs (numeric `1.0` and `1.00`, float `-0` and `0`, intervals `1 day` and `24
/// hours`, a case-insensitive collation), or hash an enum by its OID, which a restore
/// changes. The choice depends on the columns only, so a restore of the table into the
/// same image makes the same one. Output settings are fixed so a row's text is the same in
/// any session. `ROW(kdb_r.*)`: a bare alias would name a column of that name instead.
/// JIT is off (PostgreSQL 11 and later): compiling the scan of a 1 GiB table took longer
/// than it saved (1.32-1.42 s with it, 1.04-1.26 s without, on the benchmark's rows).
/// Names come out as JSON strings (`db` and `tbl` lines): a tab or a line break in one
/// cannot shift the fields (the `database` and `table` lines of older jobs had them raw).
const MANIFEST: &str = r#"PGPASSWORD="${POSTGRES_PASSWORD:-}"; export PGPASSWORD; u="${POSTGRES_USER:-postgres}"
h=${2:-fast} since=${3-}
snap=$(psql -X -w -tA -U "$u" -d "${1:-postgres}" -c 'SELECT txid_current_snapshot()') || exit 1
printf 'snapshot\t%s\n' "$snap"
# Nothing was written since the snapshot $3 (xmin:xmax:in-progress) when no transaction was
# in progress then and none has ended since: xmax moves past every one that ends.
case $since in *:*:) [ "${snap#*:}" = "${since#*:}" ] && { printf 'unchanged\n'; exit 0; } ;; esac
one() {
  psql -X -w -q -v ON_ERROR_STOP=1 -v kdb_hash="$h" -tA -F '	' -U "$u" -d "$1" <<'SQL'
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
SET extra_float_digits = 1;
SET bytea_output = 'hex';
SELECT current_setting('server_version_num')::int >= 110000 AS kdb_jit \gset
\if :kdb_jit
SET jit = off;
\endif
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT 'db', to_json(current_database()::text);
\! [ -z "${KDB_HELD:-}" ] || echo ready > "$KDB_HELD"
SELECT format('SELECT ''tbl'', to_json(current_database()::text), %L, count(*), md5(coalesce(sum(%s), 0)::text) FROM %I.%I kdb_r', to_json(n.nspname || '.' || c.relname)::text,
  CASE WHEN :'kdb_hash' = 'fast' AND current_setting('server_version_num')::int >= 140000 AND NOT EXISTS (
      SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        AND NOT (a.atttypid = ANY ('{bool,int2,int4,int8,text,varchar,bytea,uuid,date,timestamp,timestamptz}'::regtype[])
            AND a.attcollation IN (0, 100, 950, 951)
          OR a.atttypid = 'numeric'::regtype AND a.atttypmod >= 0))
    THEN 'hash_record_extended(ROW(kdb_r.*), 0)'
    WHEN :'kdb_hash' = 'fast' AND current_setting('server_version_num')::int >= 110000
    THEN 'hashtextextended(ROW(kdb_r.*)::text COLLATE "C", 0)'
    ELSE '(''x'' || substr(md5(ROW(kdb_r.*)::text), 1, 16))::bit(64)::bigint' END,
  n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
ORDER BY n.nspname, c.relname \gexec
COMMIT;
SQL
}
# Counting while the dump runs (`$KDB_READY`, a FIFO the dump's script reads; see
# `commands::MANIFESTED`): every database's session holds its snapshot before `ready` is
# written there, so the counts are of the data as it was before the dump began, as when
# they run first. Up to 8 databases at once; more, or no FIFO here: one after another.
held() {
  [ -n "${KDB_READY:-}" ] && [ "$n" -ge 1 ] && [ "$n" -le 8 ] || return 2
  d=$(mktemp -d 2>/dev/null) || return 2
  mkfifo "$d/f" 2>/dev/null || { rm -rf "$d"; return 2; }
  exec 6<>"$d/f"
  i=0
  while IFS= read -r db; do
    case $db in =*) ;; *) continue ;; esac
    i=$((i + 1))
    ( KDB_HELD=$d/f; export KDB_HELD; one "${db#=}" >"$d/$i"; echo "end $?" >"$d/f" ) &
  done <<EOF
$dbs
EOF
  ready=0 ended=0 bad=0 sent=0
  while [ "$ended" -lt "$i" ] && IFS= read -r line <&6; do
    case $line in
      ready)
        ready=$((ready + 1))
        if [ "$ready" = "$i" ] && [ "$bad" = 0 ]; then echo ready >"$KDB_READY"; sent=1; fi ;;
      "end 0") ended=$((ended + 1)) ;;
      *) ended=$((ended + 1)) bad=1 ;;
    esac
  done
  # A session that failed before the dump began (too many connections at once, say): all
  # again, one after another, where a real failure fails again.
  if [ "$bad$sent" = 10 ]; then rm -rf "$d"; return 2; fi
  j=0
  while [ "$j" -lt "$i" ]; do j=$((j + 1)); cat "$d/$j"; done
  rm -rf "$d"
  return "$bad"
}
if [ -n "${1:-}" ]; then
  case $1 in *"
"*) one "$1"; exit ;; esac
  dbs="=$1" n=1
else
  # One line per name: `=NAME`, or `!` for a name with a line break (pg_dumpall refuses it too).
  dbs=$(psql -X -w -tA -U "$u" -d postgres -c "SELECT CASE WHEN datname ~ E'[\\n\\r]' THEN '!' ELSE '=' || datname END FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1") || exit 1
  n=0
  while IFS= read -r db; do
    case $db in
      =*) n=$((n + 1)) ;;
      !) echo "a database's name holds a line break, which pg_dumpall cannot dump: rename it (ALTER DATABASE ... RENAME TO ...)" >&2; exit 1 ;;
    esac
  done <<EOF
$dbs
EOF
fi
held
r=$?
[ "$r" = 2 ] || exit "$r"
while IFS= read -r db; do
  case $db in =*) one "${db#=}" || exit 1 ;; esac
done <<EOF
$dbs
EOF"#;

const OVERVIEW: &str = "SELECT 'version', version();\n\
    SELECT 'uptime', extract(epoch from now() - pg_postmaster_start_time())::bigint;\n\
    SELECT 'connections', count(*) FROM pg_stat_activity WHERE backend_type = 'client backend';\n\
    SELECT 'max_connections', current_setting('max_connections');\n\
    SELECT 'database', datname FROM pg_database WHERE NOT datistemplate ORDER BY datname;\n";

const STATUS: &str = r#"exec pg_isready -h 127.0.0.1 -p 5432 -U "${POSTGRES_USER:-postgres}""#;

/// PostgreSQL's commands. `testdb` is a database of its own, as in MySQL: psql creates it
/// with `\gexec` when missing and switches to it with `\connect`.
pub(super) struct Postgres;

impl Commands for Postgres {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn readiness_probe(&self, _image: &str) -> String {
        READINESS.into()
    }

    fn liveness_probe(&self, _image: &str) -> String {
        LIVENESS.into()
    }

    /// SIGTERM is a "smart" shutdown that waits for every client to leave.
    fn pre_stop(&self) -> Option<&'static str> {
        Some(PRE_STOP)
    }

    fn sql_script(&self) -> &'static str {
        SQL_STDIN
    }

    /// psql variables (`-v name=value`), which the SQL quotes itself: `:'name'`.
    fn sql(&self, vars: &[(&'static str, &str)]) -> Vec<String> {
        let args: Vec<String> = vars
            .iter()
            .flat_map(|(name, value)| ["-v".to_string(), format!("{name}={value}")])
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        script(SQL_STDIN, &args)
    }

    fn client(&self, _admin: bool, args: &[&str]) -> Vec<String> {
        script(CLIENT, args)
    }

    fn version_sql(&self) -> &'static str {
        "SELECT version();"
    }

    fn list_databases_sql(&self) -> &'static str {
        "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname;"
    }

    /// Unless `with_credentials`, pg_dumpall runs with `--no-role-passwords` (roles and
    /// their rights are kept, their passwords are not).
    fn dump(&self, database: Option<&str>, with_credentials: bool) -> Vec<String> {
        match database {
            Some(database) => script(DUMP_ONE, &[database]),
            None if with_credentials => script(DUMP_ALL, &[]),
            None => script(DUMP_ALL, &["--no-role-passwords"]),
        }
    }

    fn part_databases(&self) -> Vec<String> {
        script(PART_DATABASES, &[])
    }

    fn default_databases(&self) -> &'static [&'static str] {
        DEFAULT_DATABASES
    }

    /// Roles and tablespaces (`pg_dumpall --globals-only`), with role passwords only
    /// `with_credentials`.
    fn dump_globals(&self, with_credentials: bool) -> Option<Vec<String>> {
        let mut args = vec!["--globals-only"];
        if !with_credentials {
            args.push("--no-role-passwords");
        }
        Some(script(DUMP_ALL, &args))
    }

    /// `pg_dump --create`, as pg_dumpall does; the default databases in place.
    fn dump_part(&self, database: &str, _with_credentials: bool) -> Vec<String> {
        if DEFAULT_DATABASES.contains(&database) {
            script(DUMP_IN_PLACE, &[database])
        } else {
            script(DUMP_ONE, &[database])
        }
    }

    fn restore_part(&self, database: &str) -> Vec<String> {
        if DEFAULT_DATABASES.contains(&database) {
            script(RESTORE_PART, &[database])
        } else {
            script(RESTORE_PART, &["postgres"])
        }
    }

    /// `-d postgres`: the file drops and re-creates the databases it contains, so the
    /// session must not sit in one of them.
    fn restore(&self) -> Vec<String> {
        let text = format!(
            r#"PGPASSWORD="${{POSTGRES_PASSWORD:-}}"; export PGPASSWORD
{{ cat; if [ -n "${{POSTGRES_PASSWORD:-}}" ]; then printf '%s\n' {}; fi; }} | psql -X -q -w -v ON_ERROR_STOP=1 -U "${{POSTGRES_USER:-postgres}}" -d postgres"#,
            credential_lines()
        );
        script(&text, &[])
    }

    /// Non-exclusive backup mode: writes go on, full-page writes are forced.
    fn quiesce_method(&self) -> (&'static str, bool) {
        ("backup-mode", false)
    }

    fn quiesce_session(&self, label: &str, max_seconds: u64) -> Vec<String> {
        script(QUIESCE_SESSION, &[label, &max_seconds.to_string()])
    }

    fn quiesce_sql(&self, session: &str, marker: &str, _lock_wait_seconds: u64) -> String {
        quiesce_sql(session, marker)
    }

    fn release_sql(&self, marker: &str) -> String {
        release_sql(marker)
    }

    /// The session's backup is aborted with it.
    fn end_session(&self, id: u32) -> Query {
        Query {
            argv: self.sql(&[]),
            sql: end_session_sql(id),
        }
    }

    /// The local socket still lets the target's own user in: the images trust it.
    fn credentials(&self) -> Vec<String> {
        let text = format!(
            r#"PGPASSWORD="${{POSTGRES_PASSWORD:-}}"; export PGPASSWORD; [ -n "$PGPASSWORD" ] || exit 0
printf '%s\n' {} | psql -X -q -w -v ON_ERROR_STOP=1 -U "${{POSTGRES_USER:-postgres}}" -d postgres"#,
            credential_lines()
        );
        script(&text, &[])
    }

    fn user_data(&self) -> Vec<String> {
        script(USER_DATA, &[])
    }

    fn with_data(&self, listing: &str, _dump_has_system_schema: bool) -> Vec<String> {
        listing
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    fn manifest(&self, database: Option<&str>, row_hash: RowHash) -> Vec<String> {
        self.manifest_since(database, row_hash, None)
    }

    fn manifest_since(
        &self,
        database: Option<&str>,
        row_hash: RowHash,
        since: Option<&str>,
    ) -> Vec<String> {
        let mut argv = self.manifest_query(database, row_hash);
        argv.push(since.unwrap_or_default().to_string());
        argv
    }

    fn manifest_query(&self, database: Option<&str>, row_hash: RowHash) -> Vec<String> {
        let hash = match row_hash {
            RowHash::Fast => "fast",
            RowHash::Md5 => "md5",
        };
        script(MANIFEST, &[database.unwrap_or_default(), hash])
    }

    fn overview(&self) -> Query {
        Query {
            argv: self.sql(&[]),
            sql: OVERVIEW.into(),
        }
    }

    fn status(&self) -> Vec<String> {
        script(STATUS, &[])
    }

    fn status_tool(&self) -> &'static str {
        "pg_isready"
    }

    fn write_marker(&self, marker: &str) -> Query {
        let sql = format!(
            "SELECT COUNT(*) FROM pg_database WHERE datname = '{DATABASE}';\n\
             SELECT 'CREATE DATABASE {DATABASE}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE}')\\gexec\n\
             \\connect {DATABASE}\n\
             SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name = '{TABLE}';\n\
             CREATE TABLE IF NOT EXISTS {TABLE} (\n  id SERIAL PRIMARY KEY,\n  data VARCHAR(255),\n  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP\n);\n\
             INSERT INTO {TABLE} (data) VALUES (:'marker') RETURNING id;\n"
        );
        marker_query(marker, sql)
    }

    fn read_marker(&self, marker: &str) -> Query {
        let sql = format!(
            "\\connect {DATABASE}\nSELECT id, data, created_at FROM {TABLE} WHERE data = :'marker';\n"
        );
        marker_query(marker, sql)
    }

    /// A database cannot be dropped while connected to it: that drop runs from the
    /// default database.
    fn remove_marker(&self, marker: &str, created: Created) -> Query {
        let sql = match created {
            Created { database: true, .. } => format!("DROP DATABASE IF EXISTS {DATABASE};\n"),
            Created { table: true, .. } => {
                format!("\\connect {DATABASE}\nDROP TABLE IF EXISTS {TABLE};\n")
            }
            _ => format!("\\connect {DATABASE}\nDELETE FROM {TABLE} WHERE data = :'marker';\n"),
        };
        marker_query(marker, sql)
    }
}

fn marker_query(marker: &str, sql: String) -> Query {
    Query {
        argv: Postgres.sql(&[("marker", marker)]),
        sql,
    }
}

/// The session that holds a snapshot's backup mode: psql reading SQL from stdin, the
/// backup label in `"$1"` (psql variable `label`), ended by `timeout` after `"$2"` seconds
/// whatever happens to the caller (PostgreSQL aborts a non-exclusive backup whose session
/// ends, so a lost session never leaves the server in backup mode).
const QUIESCE_SESSION: &str = r#"PGPASSWORD="${POSTGRES_PASSWORD:-}" exec timeout "$2" psql -X -q -v ON_ERROR_STOP=1 -tA -v label="$1" -U "${POSTGRES_USER:-postgres}" -d "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}""#;

/// Start of backup mode: the session's backend PID after `session` (so another session can
/// end it), a checkpoint (so the one `pg_backup_start` waits for is short), then
/// non-exclusive backup mode (`pg_start_backup` before 15). Writes go on; full-page writes
/// are forced until the backup stops. Prints `marker` when done.
fn quiesce_sql(session: &str, marker: &str) -> String {
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
fn release_sql(marker: &str) -> String {
    format!(
        "\\if :kdb_pg15\nSELECT lsn FROM pg_backup_stop(false);\n\
         \\else\nSELECT lsn FROM pg_stop_backup(false, false);\n\\endif\n\
         \\echo {marker}\n"
    )
}

/// Ends the quiesce session with backend PID `pid` from another session (its backup is
/// aborted with it).
fn end_session_sql(pid: u32) -> String {
    format!("SELECT pg_terminate_backend({pid});\n")
}
