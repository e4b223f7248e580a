//! The guide's marker table, `testdb.persistent_test (id, data, created_at)`, that
//! dbpersist writes a row into and reads back: its names, and how the output of the
//! engines' marker SQL ([`super::Commands::write_marker`] and friends) is read. The same
//! for every engine: each engine's SQL prints the same columns.

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

/// Parses the three lines the marker write prints.
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

/// Parses the rows the marker read prints.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_output_says_what_existed() {
        let both = Created {
            database: true,
            table: true,
        };
        assert_eq!(parse_write("0\n0\n1\n"), Some((both, 1)));
        assert_eq!(parse_write("1\n1\n42\n"), Some((Created::default(), 42)));
        let table = Created {
            database: false,
            table: true,
        };
        assert_eq!(parse_write("1\n0\n7"), Some((table, 7)));
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
}
