//! The guide's marker table, `testdb.persistent_test (id, data, created_at)`: its SQL is
//! the engine's ([`crate::engine::Commands::write_marker`] and friends, with the marker
//! passed as the client's variable), the reading of its output is in
//! [`crate::engine::marker`]. Here: what a client's error text means. Pure: text in, text
//! out.

pub use crate::engine::marker::{Created, DATABASE, MarkerRow, TABLE, parse_rows, parse_write};

/// Marker text: only letters, digits, spaces, `-`, `:` and `.`, so the hint that names it
/// (`data = '...'`) can be pasted into SQL as it is.
pub fn is_safe_marker(marker: &str) -> bool {
    !marker.is_empty()
        && marker.len() <= 255
        && marker
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | ':' | '.'))
}

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
