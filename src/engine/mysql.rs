//! MySQL and MariaDB: configuration file and in-container commands.

use super::{Engine, tag_version};

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

/// A real query over TCP: the images' init-time server has networking off.
pub(super) const READINESS: &str = r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysql -uroot -h127.0.0.1 -P3306 -N -B -e 'SELECT 1' >/dev/null"#;

/// `mysqladmin ping` exits 0 whenever the server answers, even to a refused login.
pub(super) const LIVENESS: &str = r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysqladmin -uroot -h127.0.0.1 -P3306 --connect-timeout=4 ping >/dev/null"#;

pub(super) const SQL_STDIN: &str =
    r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysql -uroot -N -B --default-character-set=utf8mb4"#;

/// The session that holds a snapshot's read lock: the client reading SQL from stdin,
/// unbuffered so each answer arrives at once, ended by `timeout` after `"$2"` seconds
/// whatever happens to the caller (the server drops the lock of a session that ends).
/// `"$1"` (the snapshot label) is not used.
pub const QUIESCE_SESSION: &str =
    r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec timeout "$2" mysql -uroot -N -B --unbuffered"#;

/// Blocks writes: the connection id after `session` (so another session can end it), then
/// FLUSH TABLES WITH READ LOCK, waiting at most `lock_wait` seconds for running statements
/// (while it waits, every write queues behind it). Prints `marker` when the lock is held.
pub fn quiesce_sql(session: &str, marker: &str, lock_wait: u64) -> String {
    format!(
        "SELECT CONCAT('{session} ', CONNECTION_ID());\nSET SESSION lock_wait_timeout = {lock_wait};\nFLUSH TABLES WITH READ LOCK;\nSELECT '{marker}';\n"
    )
}

/// Ends the quiesce session with connection id `id` from another session: a lock held or
/// still waiting is gone at once.
pub fn end_session_sql(id: u32) -> String {
    format!("KILL {id};\n")
}

/// Lets writes go on, in the same session; prints `marker` when done.
pub fn release_sql(marker: &str) -> String {
    format!("UNLOCK TABLES;\nSELECT '{marker}';\n")
}

#[cfg(test)]
mod tests {
    use super::*;

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
