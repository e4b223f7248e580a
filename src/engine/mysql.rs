//! MySQL and MariaDB: configuration file and in-container commands. The client tools'
//! names (`mysql` or `mariadb`, `mysqldump` or `mariadb-dump`, `mysqladmin` or
//! `mariadb-admin`) are chosen here and nowhere else.

use std::collections::BTreeMap;

use super::commands::{Commands, Query, RowHash, rows};
use super::marker::{Created, DATABASE, TABLE};
use super::{Engine, image_repository, image_version, tag_version};
use crate::exec::script_command as script;

/// Settings dbdeploy owns: the data directory, socket and port the manifests depend on.
pub const RESERVED: &[&str] = &["datadir", "socket", "port", "bind-address"];

pub(super) fn config_file(engine: Engine, image: &str, settings: &[(String, String)]) -> String {
    // MySQL 8 already defaults to utf8mb4 / utf8mb4_0900_ai_ci; naming that collation would
    // stop MariaDB (often deployed under mysql:* names) and MySQL 5.7, which lack it.
    let collation = match (engine, tag_version(image)) {
        (Engine::Mysql, Some((major, _))) if major >= 8 => None,
        (Engine::Mysql, None) => None,
        _ => Some("utf8mb4_unicode_ci"),
    };
    // Not emitted on purpose: default-authentication-plugin (stops MySQL 8.4 from starting)
    // and innodb_log_file_size (deprecated since 8.0.30).
    let mut merged: Vec<(String, String)> = vec![
        ("datadir".into(), engine.data_dir().into()),
        ("character-set-server".into(), "utf8mb4".into()),
        ("skip-name-resolve".into(), String::new()),
        ("max_connections".into(), "200".into()),
        ("innodb_buffer_pool_size".into(), "256M".into()),
        ("innodb_flush_log_at_trx_commit".into(), "1".into()),
        ("sync_binlog".into(), "1".into()),
    ];
    if let Some(collation) = collation {
        merged.insert(2, ("collation-server".into(), collation.into()));
    }
    for (key, value) in settings {
        match merged.iter_mut().find(|(k, _)| same_option(k, key)) {
            Some(entry) => entry.1 = value.clone(),
            None => merged.push((key.clone(), value.clone())),
        }
    }
    let mut text =
        String::from("# Rendered by kubectl-dbdeploy; change with --set key=value.\n[mysqld]\n");
    for (key, value) in merged {
        if value.is_empty() {
            text.push_str(&format!("{key}\n"));
        } else {
            text.push_str(&format!("{key} = {value}\n"));
        }
    }
    text.push_str("\n[client]\ndefault-character-set = utf8mb4\n");
    text
}

/// mysqld treats `-` and `_` in option names alike.
fn same_option(a: &str, b: &str) -> bool {
    a.replace('-', "_")
        .eq_ignore_ascii_case(&b.replace('-', "_"))
}

/// Sets `$VAR` to the name of a client tool the container has, the MariaDB name first:
/// MariaDB 11 images ship only the `mariadb*` names, MySQL images only the `mysql*` ones,
/// MariaDB 10.x both. The one place the names are chosen at run time.
macro_rules! pick {
    ($var:literal, $mysql:literal, $mariadb:literal) => {
        concat!(
            $var,
            "=",
            $mysql,
            "; command -v ",
            $mariadb,
            " >/dev/null 2>&1 && ",
            $var,
            "=",
            $mariadb,
            "; "
        )
    };
}
/// `$c`: the SQL client.
macro_rules! client {
    () => {
        pick!("c", "mysql", "mariadb")
    };
}
/// `$a`: the admin tool.
macro_rules! admin {
    () => {
        pick!("a", "mysqladmin", "mariadb-admin")
    };
}
/// `$d`: the dump tool.
macro_rules! dumper {
    () => {
        pick!("d", "mysqldump", "mariadb-dump")
    };
}

/// The session that holds a snapshot's read lock: the client reading SQL from stdin,
/// unbuffered so each answer arrives at once, ended by `timeout` after `"$2"` seconds
/// whatever happens to the caller (the server drops the lock of a session that ends).
/// `"$1"` (the snapshot label) is not used.
const QUIESCE_SESSION: &str = concat!(
    client!(),
    r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec timeout "$2" "$c" -uroot -N -B --unbuffered"#
);

/// A real query over TCP: the images' init-time server has networking off.
const READINESS: &str = r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysql -uroot -h127.0.0.1 -P3306 -N -B -e 'SELECT 1' >/dev/null"#;
const READINESS_EITHER: &str = concat!(
    client!(),
    r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec "$c" -uroot -h127.0.0.1 -P3306 -N -B -e 'SELECT 1' >/dev/null"#
);

/// `mysqladmin ping` exits 0 whenever the server answers, even to a refused login.
const LIVENESS: &str = r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysqladmin -uroot -h127.0.0.1 -P3306 --connect-timeout=4 ping >/dev/null"#;
const LIVENESS_EITHER: &str = concat!(
    admin!(),
    r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec "$a" -uroot -h127.0.0.1 -P3306 --connect-timeout=4 ping >/dev/null"#
);

/// Arguments after the script go to the client (the variables of [`MysqlFamily::sql`]).
const SQL_STDIN: &str = concat!(
    client!(),
    r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec "$c" -uroot -N -B --default-character-set=utf8mb4 "$@""#
);

/// The user's client as the application user (MYSQL_USER) in its database. No history
/// file, as for psql.
const CLIENT: &str = concat!(
    client!(),
    r#"MYSQL_PWD="${MYSQL_PASSWORD:-}" MYSQL_HISTFILE=/dev/null exec "$c" --user="${MYSQL_USER:-}" --database="${MYSQL_DATABASE:-}" --default-character-set=utf8mb4 "$@""#
);
/// The user's client as root, in the application database.
const CLIENT_ADMIN: &str = concat!(
    client!(),
    r#"MYSQL_PWD="${MYSQL_ROOT_PASSWORD:-}" MYSQL_HISTFILE=/dev/null exec "$c" --user=root --database="${MYSQL_DATABASE:-}" --default-character-set=utf8mb4 "$@""#
);

/// Whether an image surely has the `mysql*` client names: MySQL's, and MariaDB's before 11
/// (their probes stay byte for byte those of earlier releases, so a re-deploy does not
/// restart the pod). A MariaDB image of 11 or later, or of unknown version (`latest`, a
/// digest), chooses in the container.
pub(super) fn has_mysql_names(engine: Engine, image: &str) -> bool {
    let repository = image_repository(image);
    let name = repository.rsplit('/').next().unwrap_or(repository);
    let mariadb = engine == Engine::Mariadb || name.contains("mariadb");
    !mariadb || image_version(image).is_some_and(|(major, _)| major < 11)
}

const DUMP_SETUP: &str = concat!(
    r#"MYSQL_PWD="${MYSQL_ROOT_PASSWORD:-}"; export MYSQL_PWD; "#,
    client!(),
    dumper!()
);
/// `--single-transaction`: a consistent snapshot of InnoDB without locking writers.
macro_rules! dump_flags {
    () => {
        "-uroot --single-transaction --routines --triggers --events --hex-blob --default-character-set=utf8mb4"
    };
}
/// --databases: CREATE DATABASE and USE are written, as for --all-databases.
const DUMP_ONE: &str = concat!(
    r#"set -- "#,
    dump_flags!(),
    r#" --databases "$1"; "#,
    r#"exec "$d" "$@""#
);
const DUMP_ALL: &str = concat!(r#"exec "$d" "#, dump_flags!(), " --all-databases");
/// The user databases, one name per line (-r: unescaped); no user database at all still
/// makes a complete, empty dump (header and trailer only).
const DUMP_USERS: &str = concat!(
    "set -- ",
    dump_flags!(),
    r#"
dbs=$("$c" -uroot -N -B -r -e "SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN ('mysql','sys','information_schema','performance_schema') ORDER BY 1") || exit 1
if [ -z "$dbs" ]; then exec "$d" "$@" --no-create-info --no-data --skip-routines --skip-triggers --skip-events mysql; fi
IFS='
'
set -f
exec "$d" "$@" --databases $dbs"#
);

/// The user databases as [`DUMP_USERS`] picks them, a line each (-r: unescaped) with
/// their size (data and indexes, the server's estimate).
const PART_DATABASES: &str = concat!(
    r#"MYSQL_PWD="${MYSQL_ROOT_PASSWORD:-}"; export MYSQL_PWD; "#,
    client!(),
    r#"exec "$c" -uroot -N -B -r -e "SELECT s.schema_name, COALESCE(SUM(t.data_length + t.index_length), 0) FROM information_schema.schemata s LEFT JOIN information_schema.tables t ON t.table_schema = s.schema_name WHERE s.schema_name NOT IN ('mysql','sys','information_schema','performance_schema') GROUP BY s.schema_name ORDER BY 1""#
);
/// One part of a parallel dump on stdin; the file names its database (`USE`).
const RESTORE_PART: &str = concat!(
    r#"MYSQL_PWD="${MYSQL_ROOT_PASSWORD:-}"; export MYSQL_PWD; "#,
    client!(),
    r#"exec "$c" -uroot --default-character-set=utf8mb4 --binary-mode"#
);

/// Shell functions that print the SQL re-asserting a MySQL/MariaDB target's accounts from
/// its container's environment, as the images' entrypoints set them up (root@localhost,
/// root@%, MYSQL_USER@% with all rights on MYSQL_DATABASE). Built with shell builtins only
/// (`printf`, parameter expansion), so no password reaches a command line. `FLUSH
/// PRIVILEGES` first loads grant tables the dump may have replaced.
macro_rules! credential_functions {
    () => {
        r#"for v in ROOT_PASSWORD USER PASSWORD DATABASE; do eval "[ -n \"\${MYSQL_$v:-}\" ] || MYSQL_$v=\"\${MARIADB_$v:-}\""; done
kdb_q() {
  s=$1 q=
  while [ -n "$s" ]; do
    r=${s#?}; k=${s%"$r"}; s=$r
    case $k in
      \\) q="$q\\\\" ;;
      \') q="$q''" ;;
      *) q="$q$k" ;;
    esac
  done
}
kdb_id() {
  s=$1 q=
  while [ -n "$s" ]; do
    r=${s#?}; k=${s%"$r"}; s=$r
    case $k in
      \`) q="$q\`\`" ;;
      *) q="$q$k" ;;
    esac
  done
}
kdb_credentials() {
  printf '%s\n' "SET SESSION sql_mode = '';" 'FLUSH PRIVILEGES;'
  if [ -n "${MYSQL_ROOT_PASSWORD:-}" ]; then
    kdb_q "$MYSQL_ROOT_PASSWORD"
    printf '%s\n' "ALTER USER IF EXISTS 'root'@'localhost' IDENTIFIED BY '$q';" "ALTER USER IF EXISTS 'root'@'%' IDENTIFIED BY '$q';"
  fi
  if [ -n "${MYSQL_USER:-}" ] && [ -n "${MYSQL_PASSWORD:-}" ] && [ "$MYSQL_USER" != root ]; then
    kdb_q "$MYSQL_USER"; u=$q
    kdb_q "$MYSQL_PASSWORD"
    printf '%s\n' "CREATE USER IF NOT EXISTS '$u'@'%' IDENTIFIED BY '$q';" "ALTER USER '$u'@'%' IDENTIFIED BY '$q';"
    if [ -n "${MYSQL_DATABASE:-}" ]; then
      kdb_id "$MYSQL_DATABASE"
      printf '%s\n' "GRANT ALL ON \`$q\`.* TO '$u'@'%';"
    fi
  fi
  printf '%s\n' 'FLUSH PRIVILEGES;'
}
"#
    };
}
/// mysql stops at the first error by default.
const RESTORE: &str = concat!(
    credential_functions!(),
    r#"MYSQL_PWD="${MYSQL_ROOT_PASSWORD:-}"; export MYSQL_PWD; "#,
    client!(),
    r#"
{ cat; kdb_credentials; } | "$c" -uroot --default-character-set=utf8mb4 --binary-mode"#
);
const CREDENTIALS: &str = concat!(
    credential_functions!(),
    r#"MYSQL_PWD="${MYSQL_ROOT_PASSWORD:-}"; export MYSQL_PWD; "#,
    client!(),
    r#"
kdb_credentials | "$c" -uroot"#
);

/// The manifest (see [`Commands::manifest`]), in two steps: a first session, with
/// `@kdb_db` (the one database, or NULL for every user database) set by `"$1"`, writes the
/// queries, identifiers quoted by the server; a second runs them. Per table: `COUNT(*)` and
/// the MD5 of the sum of each row's hash (64 bits of the MD5 of its columns' bytes, a NULL
/// told apart from every value), which no order of the rows changes. `-r`: the queries
/// come out unescaped.
const MANIFEST: &str = concat!(
    r#"MYSQL_PWD="${MYSQL_ROOT_PASSWORD:-}"; export MYSQL_PWD; "#,
    client!(),
    r#"
sql=$("$c" -uroot -N -B -r --default-character-set=utf8mb4 "$1" <<'SQL'
SET SESSION group_concat_max_len = 1073741824;
SELECT CONCAT('SELECT ''database'', ', QUOTE(schema_name), ';') FROM information_schema.schemata
WHERE schema_name NOT IN ('mysql', 'sys', 'information_schema', 'performance_schema') AND (@kdb_db IS NULL OR schema_name = @kdb_db)
ORDER BY schema_name;
SELECT CONCAT('SELECT ''table'', ', QUOTE(c.table_schema), ', ', QUOTE(c.table_name), ', COUNT(*), MD5(COALESCE(SUM(CAST(CONV(SUBSTR(MD5(CONCAT_WS(0x1f, ',
  GROUP_CONCAT(CONCAT('IFNULL(CONCAT(0x76, CAST(`', REPLACE(c.column_name, '`', '``'), '` AS BINARY)), 0x6e)') ORDER BY c.ordinal_position SEPARATOR ', '),
  ')), 1, 16), 16, 10) AS UNSIGNED)), 0)) FROM `', REPLACE(c.table_schema, '`', '``'), '`.`', REPLACE(c.table_name, '`', '``'), '`;')
FROM information_schema.columns c JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
WHERE t.table_type = 'BASE TABLE' AND c.table_schema NOT IN ('mysql', 'sys', 'information_schema', 'performance_schema') AND (@kdb_db IS NULL OR c.table_schema = @kdb_db)
GROUP BY c.table_schema, c.table_name ORDER BY c.table_schema, c.table_name;
SQL
) || exit 1
printf '%s\n' "$sql" | "$c" -uroot -N -B --default-character-set=utf8mb4"#
);

/// `database NAME` lines, `account USER@HOST` lines (the `mysql` schema an
/// `--all-databases` dump replaces) and `self USER` (the container's MYSQL_USER).
const USER_DATA: &str = concat!(
    client!(),
    r#"{ echo "SELECT DISTINCT CONCAT('database ', table_schema) FROM information_schema.tables WHERE table_schema NOT IN ('mysql','information_schema','performance_schema','sys');"; echo "SELECT CONCAT('account ', user, '@', host) FROM mysql.user;"; } | MYSQL_PWD="$MYSQL_ROOT_PASSWORD" "$c" -uroot -N -B --default-character-set=utf8mb4 || exit 1
printf 'self %s\n' "${MYSQL_USER:-${MARIADB_USER:-}}""#
);

/// Accounts every MySQL/MariaDB image creates itself.
const DEFAULT_ACCOUNTS: &[&str] = &[
    "",
    "root",
    "mysql",
    "mariadb.sys",
    "PUBLIC",
    "healthcheck",
    "mysql.sys",
    "mysql.session",
    "mysql.infoschema",
];

const OVERVIEW: &str = "SELECT 'version', VERSION();\n\
    SHOW GLOBAL STATUS WHERE Variable_name IN ('Uptime', 'Threads_connected');\n\
    SHOW GLOBAL VARIABLES LIKE 'max_connections';\n\
    SELECT 'database', schema_name FROM information_schema.schemata ORDER BY schema_name;\n";

const STATUS: &str = concat!(
    admin!(),
    r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec "$a" -uroot -h127.0.0.1 -P3306 --connect-timeout=5 status"#
);

/// MySQL and MariaDB (the same tools under two sets of names).
pub(super) struct MysqlFamily(Engine);

pub(super) static MYSQL: MysqlFamily = MysqlFamily(Engine::Mysql);
pub(super) static MARIADB: MysqlFamily = MysqlFamily(Engine::Mariadb);

/// `data = @marker` compares as bytes: the variable holds a binary string (see
/// [`MysqlFamily::sql`]), so no collation of the column can clash with it.
const MARKER_ROW: &str = "data = @marker";

impl Commands for MysqlFamily {
    fn engine(&self) -> Engine {
        self.0
    }

    fn readiness_probe(&self, image: &str) -> String {
        match has_mysql_names(self.0, image) {
            true => READINESS.into(),
            false => READINESS_EITHER.into(),
        }
    }

    fn liveness_probe(&self, image: &str) -> String {
        match has_mysql_names(self.0, image) {
            true => LIVENESS.into(),
            false => LIVENESS_EITHER.into(),
        }
    }

    /// SIGTERM already makes mysqld shut down cleanly.
    fn pre_stop(&self) -> Option<&'static str> {
        None
    }

    fn sql_script(&self) -> &'static str {
        SQL_STDIN
    }

    /// Each variable becomes a user variable holding the value's bytes, set on connecting
    /// (`--init-command`) from a hex literal: no quoting, whatever the value or sql_mode.
    fn sql(&self, vars: &[(&'static str, &str)]) -> Vec<String> {
        if vars.is_empty() {
            return script(SQL_STDIN, &[]);
        }
        let set: Vec<String> = vars
            .iter()
            .map(|(name, value)| {
                let hex = crate::encoding::hex(value.as_bytes());
                format!("@{name} = X'{hex}'")
            })
            .collect();
        let init = format!("--init-command=SET {}", set.join(", "));
        script(SQL_STDIN, &[&init])
    }

    fn client(&self, admin: bool, args: &[&str]) -> Vec<String> {
        script(if admin { CLIENT_ADMIN } else { CLIENT }, args)
    }

    fn version_sql(&self) -> &'static str {
        "SELECT VERSION();"
    }

    fn list_databases_sql(&self) -> &'static str {
        "SHOW DATABASES;"
    }

    /// Unless `with_credentials`, the user databases (every schema but `mysql`, `sys`,
    /// `information_schema` and `performance_schema`) instead of `--all-databases`, whose
    /// `mysql` schema holds the accounts and their password hashes.
    fn dump(&self, database: Option<&str>, with_credentials: bool) -> Vec<String> {
        match (database, with_credentials) {
            (Some(database), _) => script(&format!("{DUMP_SETUP}{DUMP_ONE}"), &[database]),
            (None, true) => script(&format!("{DUMP_SETUP}{DUMP_ALL}"), &[]),
            (None, false) => script(&format!("{DUMP_SETUP}{DUMP_USERS}"), &[]),
        }
    }

    fn restore(&self) -> Vec<String> {
        script(RESTORE, &[])
    }

    fn part_databases(&self) -> Vec<String> {
        script(PART_DATABASES, &[])
    }

    fn default_databases(&self) -> &'static [&'static str] {
        &[]
    }

    /// The `mysql` schema (accounts and grants), only `with_credentials`.
    fn dump_globals(&self, with_credentials: bool) -> Option<Vec<String>> {
        with_credentials.then(|| script(&format!("{DUMP_SETUP}{DUMP_ONE}"), &["mysql"]))
    }

    fn dump_part(&self, database: &str, _with_credentials: bool) -> Vec<String> {
        script(&format!("{DUMP_SETUP}{DUMP_ONE}"), &[database])
    }

    fn restore_part(&self, _database: &str) -> Vec<String> {
        script(RESTORE_PART, &[])
    }

    /// FLUSH TABLES WITH READ LOCK: writes wait until it is released.
    fn quiesce_method(&self) -> (&'static str, bool) {
        ("read-lock", true)
    }

    fn quiesce_session(&self, label: &str, max_seconds: u64) -> Vec<String> {
        script(QUIESCE_SESSION, &[label, &max_seconds.to_string()])
    }

    /// While the lock waits for running statements, every write queues behind it.
    fn quiesce_sql(&self, session: &str, marker: &str, lock_wait_seconds: u64) -> String {
        format!(
            "SELECT CONCAT('{session} ', CONNECTION_ID());\nSET SESSION lock_wait_timeout = {lock_wait_seconds};\nFLUSH TABLES WITH READ LOCK;\nSELECT '{marker}';\n"
        )
    }

    fn release_sql(&self, marker: &str) -> String {
        format!("UNLOCK TABLES;\nSELECT '{marker}';\n")
    }

    /// A lock held or still waiting is gone at once.
    fn end_session(&self, id: u32) -> Query {
        Query {
            argv: self.sql(&[]),
            sql: format!("KILL {id};\n"),
        }
    }

    /// The local socket still lets root in: the accounts stay in force until a `FLUSH
    /// PRIVILEGES`.
    fn credentials(&self) -> Vec<String> {
        script(CREDENTIALS, &[])
    }

    fn user_data(&self) -> Vec<String> {
        script(USER_DATA, &[])
    }

    /// Databases with tables, and, for a dump that carries the `mysql` schema, `mysql` when
    /// the target has accounts of its own (other than the images' and its MYSQL_USER,
    /// which the restore re-creates).
    fn with_data(&self, listing: &str, dump_has_system_schema: bool) -> Vec<String> {
        let mut databases = Vec::new();
        let mut accounts = Vec::new();
        let mut own = "";
        for line in listing.lines().map(str::trim_end) {
            if let Some(db) = line.strip_prefix("database ") {
                databases.push(db.to_string());
            } else if let Some(account) = line.strip_prefix("account ") {
                accounts.push(account);
            } else if let Some(user) = line.strip_prefix("self ") {
                own = user;
            }
        }
        let mut extra: Vec<&str> = accounts
            .into_iter()
            .filter(|a| {
                let user = a.rsplit_once('@').map_or(*a, |(u, _)| u);
                !DEFAULT_ACCOUNTS.contains(&user) && user != own
            })
            .collect();
        extra.sort_unstable();
        if dump_has_system_schema && !extra.is_empty() {
            databases.push(format!("mysql (accounts {})", extra.join(", ")));
        }
        databases
    }

    /// `@kdb_db` bound like [`MysqlFamily::sql`]'s variables: a hex literal, no quoting.
    /// Both row hashes are MD5 here: MySQL has no faster 64-bit hash of a string (`CRC32`
    /// is 32 bits).
    fn manifest(&self, database: Option<&str>, _row_hash: RowHash) -> Vec<String> {
        let init = match database {
            Some(db) => format!(
                "--init-command=SET @kdb_db = X'{}'",
                crate::encoding::hex(db.as_bytes())
            ),
            None => "--init-command=SET @kdb_db = NULL".into(),
        };
        script(MANIFEST, &[&init])
    }

    fn overview(&self) -> Query {
        Query {
            argv: self.sql(&[]),
            sql: OVERVIEW.into(),
        }
    }

    fn overview_rows(&self, text: &str) -> BTreeMap<String, Vec<String>> {
        rows(text, |key| match key {
            "threads_connected" => "connections",
            other => other,
        })
    }

    fn status(&self) -> Vec<String> {
        script(STATUS, &[])
    }

    fn status_tool(&self) -> &'static str {
        "mysqladmin status"
    }

    fn write_marker(&self, marker: &str) -> Query {
        let sql = format!(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '{DATABASE}';\n\
             SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{DATABASE}' AND table_name = '{TABLE}';\n\
             CREATE DATABASE IF NOT EXISTS {DATABASE};\n\
             CREATE TABLE IF NOT EXISTS {DATABASE}.{TABLE} (\n  id INT AUTO_INCREMENT PRIMARY KEY,\n  data VARCHAR(255),\n  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP\n);\n\
             INSERT INTO {DATABASE}.{TABLE} (data) VALUES (CONVERT(@marker USING utf8mb4));\n\
             SELECT LAST_INSERT_ID();\n"
        );
        self.marker_query(marker, sql)
    }

    fn read_marker(&self, marker: &str) -> Query {
        let sql =
            format!("SELECT id, data, created_at FROM {DATABASE}.{TABLE} WHERE {MARKER_ROW};\n");
        self.marker_query(marker, sql)
    }

    fn remove_marker(&self, marker: &str, created: Created) -> Query {
        let sql = match created {
            Created { database: true, .. } => format!("DROP DATABASE IF EXISTS {DATABASE};\n"),
            Created { table: true, .. } => format!("DROP TABLE IF EXISTS {DATABASE}.{TABLE};\n"),
            _ => format!("DELETE FROM {DATABASE}.{TABLE} WHERE {MARKER_ROW};\n"),
        };
        self.marker_query(marker, sql)
    }
}

impl MysqlFamily {
    fn marker_query(&self, marker: &str, sql: String) -> Query {
        Query {
            argv: self.sql(&[("marker", marker)]),
            sql,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the in-container credential functions with a local `sh` (the images' `sh` is
    /// dash or busybox; both have `printf` built in).
    fn credentials_sql(env: &[(&str, &str)]) -> String {
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(concat!(credential_functions!(), "kdb_credentials"))
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    #[test]
    fn credentials_are_escaped_sql() {
        let sql = credentials_sql(&[
            ("MYSQL_ROOT_PASSWORD", r"r'o\o%s`t"),
            ("MYSQL_USER", "app'user"),
            ("MYSQL_PASSWORD", "p w\n'--"),
            ("MYSQL_DATABASE", "app`db"),
        ]);
        assert!(
            sql.starts_with("SET SESSION sql_mode = '';\nFLUSH PRIVILEGES;\n"),
            "{sql}"
        );
        assert!(
            sql.contains(r"ALTER USER IF EXISTS 'root'@'localhost' IDENTIFIED BY 'r''o\\o%s`t';"),
            "{sql}"
        );
        assert!(sql.contains(r"ALTER USER IF EXISTS 'root'@'%' IDENTIFIED BY 'r''o\\o%s`t';"));
        assert!(
            sql.contains("CREATE USER IF NOT EXISTS 'app''user'@'%' IDENTIFIED BY 'p w\n''--';"),
            "{sql}"
        );
        assert!(sql.contains("ALTER USER 'app''user'@'%' IDENTIFIED BY 'p w\n''--';"));
        assert!(
            sql.contains("GRANT ALL ON `app``db`.* TO 'app''user'@'%';"),
            "{sql}"
        );
        assert!(sql.ends_with("FLUSH PRIVILEGES;\n"));
        // MARIADB_* spellings; an absent app user is left alone.
        let sql = credentials_sql(&[("MARIADB_ROOT_PASSWORD", "pw")]);
        assert!(sql.contains("'root'@'%' IDENTIFIED BY 'pw';"), "{sql}");
        assert!(!sql.contains("CREATE USER"));
        // Nothing set (a hand-made database with an empty root password): no ALTER at all.
        assert!(!credentials_sql(&[]).contains("ALTER USER"));
    }

    #[test]
    fn the_image_decides_the_probes_client_names() {
        for (engine, image, mysql_names) in [
            (Engine::Mysql, "mysql:8.0", true),
            (Engine::Mysql, "mysql", true),
            (Engine::Mariadb, "mariadb:10.11", true),
            (Engine::Mariadb, "mysql:8.0", true),
            (Engine::Mariadb, "mariadb:11", false),
            (Engine::Mariadb, "mariadb:latest", false),
            (Engine::Mysql, "quay.io/x/mariadb:11.4", false),
            (Engine::Mysql, "quay.io/x/mariadb", false),
        ] {
            assert_eq!(
                has_mysql_names(engine, image),
                mysql_names,
                "{engine} {image}"
            );
        }
    }

    #[test]
    fn collation_is_only_named_where_the_server_has_it() {
        assert!(config_file(Engine::Mysql, "mysql:5.7", &[]).contains("utf8mb4_unicode_ci"));
        assert!(!config_file(Engine::Mysql, "mysql:8.4", &[]).contains("collation"));
        assert!(!config_file(Engine::Mysql, "mysql:8.0", &[]).contains("0900"));
        assert!(config_file(Engine::Mariadb, "mariadb:11", &[]).contains("utf8mb4_unicode_ci"));
    }

    #[test]
    fn set_replaces_defaults_with_dash_or_underscore() {
        let text = config_file(
            Engine::Mysql,
            "mysql:8.0",
            &[("max-connections".into(), "500".into())],
        );
        assert!(text.contains("max_connections = 500"), "{text}");
        assert!(!text.contains("= 200"));
    }
}
