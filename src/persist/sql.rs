//! The guide's marker table, `testdb.persistent_test (id, data, created_at)`, as SQL per
//! engine, and the parsing of what the server printed. Pure: text in, text out.
//!
//! All of it is fed on the stdin of the engine's `sql_script()` (tab-separated rows, no
//! headers). In PostgreSQL `testdb` is a database of its own, as in MySQL; psql creates it
//! with `\gexec` when missing and switches to it with `\connect`.

use crate::engine::Engine;

/// The database the guide's test uses.
pub const DATABASE: &str = "testdb";
/// The guide's test table.
pub const TABLE: &str = "persistent_test";

/// What existed before the marker was written, so cleanup removes only what we added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Created {
    /// The `testdb` database was created by this run.
    pub database: bool,
    /// The `persistent_test` table was created by this run.
    pub table: bool,
}

/// A marker row as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerRow {
    pub id: i64,
    pub data: String,
    pub created_at: String,
}

/// Marker text: only letters, digits, spaces, `-` and `:`, so it can sit in an SQL string
/// literal without escaping.
pub fn is_safe_marker(marker: &str) -> bool {
    !marker.is_empty()
        && marker.len() <= 255
        && marker
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | ':' | '.'))
}

/// SQL that creates `testdb.persistent_test` if missing, inserts the marker and prints three
/// lines: did the database exist (0/1), did the table exist (0/1), the new row's id.
pub fn write_marker(engine: Engine, marker: &str) -> String {
    match engine {
        Engine::Mysql | Engine::Mariadb => format!(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '{DATABASE}';\n\
             SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{DATABASE}' AND table_name = '{TABLE}';\n\
             CREATE DATABASE IF NOT EXISTS {DATABASE};\n\
             CREATE TABLE IF NOT EXISTS {DATABASE}.{TABLE} (\n  id INT AUTO_INCREMENT PRIMARY KEY,\n  data VARCHAR(255),\n  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP\n);\n\
             INSERT INTO {DATABASE}.{TABLE} (data) VALUES ('{marker}');\n\
             SELECT LAST_INSERT_ID();\n"
        ),
        Engine::Postgres => format!(
            "SELECT COUNT(*) FROM pg_database WHERE datname = '{DATABASE}';\n\
             SELECT 'CREATE DATABASE {DATABASE}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE}')\\gexec\n\
             \\connect {DATABASE}\n\
             SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name = '{TABLE}';\n\
             CREATE TABLE IF NOT EXISTS {TABLE} (\n  id SERIAL PRIMARY KEY,\n  data VARCHAR(255),\n  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP\n);\n\
             INSERT INTO {TABLE} (data) VALUES ('{marker}') RETURNING id;\n"
        ),
    }
}

/// Parses the three lines `write_marker` prints.
pub fn parse_write(stdout: &str) -> Option<(Created, i64)> {
    let lines: Vec<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let [database, table, id] = lines.as_slice() else {
        return None;
    };
    let existed = |text: &str| text.parse::<i64>().ok().map(|n| n > 0);
    Some((
        Created {
            database: !existed(database)?,
            table: !existed(table)?,
        },
        id.parse().ok()?,
    ))
}

/// SQL that prints the marker's rows: `id <TAB> data <TAB> created_at`.
pub fn read_marker(engine: Engine, marker: &str) -> String {
    match engine {
        Engine::Mysql | Engine::Mariadb => format!(
            "SELECT id, data, created_at FROM {DATABASE}.{TABLE} WHERE data = '{marker}';\n"
        ),
        Engine::Postgres => format!(
            "\\connect {DATABASE}\nSELECT id, data, created_at FROM {TABLE} WHERE data = '{marker}';\n"
        ),
    }
}

/// Parses the rows `read_marker` prints.
pub fn parse_rows(stdout: &str) -> Vec<MarkerRow> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let id = fields.next()?.trim().parse().ok()?;
            let data = fields.next()?.to_string();
            let created_at = fields.next().unwrap_or_default().trim().to_string();
            Some(MarkerRow {
                id,
                data,
                created_at,
            })
        })
        .collect()
}

/// SQL that removes what this run added: the whole database or table when it created them,
/// else only the marker row. The PostgreSQL drop runs from the default database (a database
/// cannot be dropped while connected to it).
pub fn remove_marker(engine: Engine, marker: &str, created: Created) -> String {
    match (engine, created) {
        (_, Created { database: true, .. }) => format!("DROP DATABASE IF EXISTS {DATABASE};\n"),
        (Engine::Mysql | Engine::Mariadb, Created { table: true, .. }) => {
            format!("DROP TABLE IF EXISTS {DATABASE}.{TABLE};\n")
        }
        (Engine::Mysql | Engine::Mariadb, _) => {
            format!("DELETE FROM {DATABASE}.{TABLE} WHERE data = '{marker}';\n")
        }
        (Engine::Postgres, Created { table: true, .. }) => {
            format!("\\connect {DATABASE}\nDROP TABLE IF EXISTS {TABLE};\n")
        }
        (Engine::Postgres, _) => {
            format!("\\connect {DATABASE}\nDELETE FROM {TABLE} WHERE data = '{marker}';\n")
        }
    }
}

/// SQL that answers as soon as the server accepts queries.
pub const PING: &str = "SELECT 1;\n";

/// True when a client's error text means the server is not (yet) accepting connections,
/// as opposed to a query that ran and failed. A pod can be Ready before that when its
/// readiness probe is weaker than a query (the guide's `mysqladmin ping`), or has none.
pub fn server_not_answering(stderr: &str) -> bool {
    const SIGNS: &[&str] = &[
        "can't connect to local",        // MySQL/MariaDB ERROR 2002
        "can't connect to mysql server", // ERROR 2003
        "lost connection to",            // ERROR 2013
        "server has gone away",          // ERROR 2006
        "connection refused",
        "the database system is starting up",
        "the database system is shutting down",
        "the database system is in recovery mode",
        "no such file or directory", // the socket is not there yet
    ];
    let lower = stderr.to_ascii_lowercase();
    SIGNS.iter().any(|sign| lower.contains(sign))
}

/// The lines of a client's stderr that carry the error (`ERROR 1146 ...`, `psql: error:`,
/// `FATAL:`), without the statement echo mysql adds around them; else its last lines.
pub fn error_text(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("ERROR") || l.contains("FATAL") || l.contains("error:"))
        .collect();
    let chosen = if errors.is_empty() {
        &lines[lines.len().saturating_sub(3)..]
    } else {
        &errors[..]
    };
    chosen.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_marker_sql_uses_the_guides_table() {
        let sql = write_marker(Engine::Mysql, "kubectl-dbpersist abc");
        assert!(sql.contains("CREATE DATABASE IF NOT EXISTS testdb;"));
        assert!(sql.contains("CREATE TABLE IF NOT EXISTS testdb.persistent_test ("));
        assert!(sql.contains("created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP"));
        assert!(sql.contains("VALUES ('kubectl-dbpersist abc')"));
        assert!(
            read_marker(Engine::Mariadb, "m")
                .contains("FROM testdb.persistent_test WHERE data = 'm'")
        );
    }

    #[test]
    fn postgres_creates_and_switches_to_testdb() {
        let sql = write_marker(Engine::Postgres, "m");
        assert!(sql.contains("\\gexec\n\\connect testdb\n"));
        assert!(sql.contains("id SERIAL PRIMARY KEY"));
        assert!(sql.contains("RETURNING id;"));
        assert!(read_marker(Engine::Postgres, "m").starts_with("\\connect testdb\n"));
    }

    #[test]
    fn write_output_says_what_existed() {
        assert_eq!(
            parse_write("0\n0\n1\n"),
            Some((
                Created {
                    database: true,
                    table: true
                },
                1
            ))
        );
        assert_eq!(
            parse_write("1\n1\n42\n"),
            Some((
                Created {
                    database: false,
                    table: false
                },
                42
            ))
        );
        assert_eq!(
            parse_write("1\n0\n7"),
            Some((
                Created {
                    database: false,
                    table: true
                },
                7
            ))
        );
        assert_eq!(parse_write("1\n"), None);
        assert_eq!(parse_write("x\n1\n2\n"), None);
    }

    #[test]
    fn rows_are_tab_separated() {
        let rows = parse_rows("3\tkubectl-dbpersist x\t2026-11-25 12:00:00\n");
        assert_eq!(
            rows,
            vec![MarkerRow {
                id: 3,
                data: "kubectl-dbpersist x".into(),
                created_at: "2026-11-25 12:00:00".into()
            }]
        );
        assert!(parse_rows("").is_empty());
    }

    #[test]
    fn cleanup_removes_only_what_this_run_added() {
        let all = Created {
            database: true,
            table: true,
        };
        assert_eq!(
            remove_marker(Engine::Postgres, "m", all),
            "DROP DATABASE IF EXISTS testdb;\n"
        );
        let table = Created {
            database: false,
            table: true,
        };
        assert_eq!(
            remove_marker(Engine::Mysql, "m", table),
            "DROP TABLE IF EXISTS testdb.persistent_test;\n"
        );
        let row = Created::default();
        assert_eq!(
            remove_marker(Engine::Postgres, "m", row),
            "\\connect testdb\nDELETE FROM persistent_test WHERE data = 'm';\n"
        );
    }

    #[test]
    fn error_text_keeps_the_error_lines() {
        let mysql = "--------------\nSELECT id FROM testdb.persistent_test\n--------------\n\nERROR 1146 (42S02) at line 1: Table 'testdb.persistent_test' doesn't exist\n";
        assert_eq!(
            error_text(mysql),
            "ERROR 1146 (42S02) at line 1: Table 'testdb.persistent_test' doesn't exist"
        );
        assert_eq!(error_text("a\nb\nc\nd\n"), "b | c | d");
    }

    #[test]
    fn markers_are_safe_sql_literals() {
        assert!(is_safe_marker(
            "kubectl-dbpersist 2026-11-25T12:00:00Z 9f3a"
        ));
        assert!(!is_safe_marker("x'; DROP TABLE t; --"));
        assert!(!is_safe_marker(""));
    }

    #[test]
    fn connection_errors_are_told_apart_from_query_errors() {
        assert!(server_not_answering(
            "ERROR 2002 (HY000): Can't connect to local server through socket '/run/mysqld/mysqld.sock' (2)"
        ));
        assert!(server_not_answering(
            "psql: error: connection to server on socket \"/var/run/postgresql/.s.PGSQL.5432\" failed: No such file or directory"
        ));
        assert!(!server_not_answering(
            "ERROR 1146 (42S02) at line 1: Table 'testdb.persistent_test' doesn't exist"
        ));
        assert!(!server_not_answering(
            "\\connect: connection to server on socket \"/var/run/postgresql/.s.PGSQL.5432\" failed: FATAL:  database \"testdb\" does not exist"
        ));
    }
}
