//! The manifest a dump writes beside itself (`FILE.manifest.json`): which databases and
//! tables it holds, each table's row count and content checksum, taken from the source
//! before and after the dump. `drill` compares a restore with it; `verify --deep` lists it.
//! The engine computes the checksums ([`crate::engine::Commands::manifest`]); this module
//! reads their output, merges the two passes and stores the file.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::format::DumpKind;
use super::location::{Location, write_sidecar};
use super::s3::S3Store;
use crate::client::Kube;
use crate::engine::{Engine, RowHash};
use crate::error::{Error, Result};
use crate::exec;

/// The version of the manifest a dump writes: 2 since rows are hashed with
/// [`RowHash::Fast`]. A reader takes 1 too (its checksums are recomputed with
/// [`RowHash::Md5`], see [`row_hash`]) and refuses newer ones.
pub const FORMAT: u32 = 2;

/// The oldest manifest format still read.
const FORMAT_OLDEST: u32 = 1;

/// How a manifest of `format` hashed its rows: `drill` checksums the restore the same way.
pub fn row_hash(format: u32) -> RowHash {
    if format == 1 {
        RowHash::Md5
    } else {
        RowHash::Fast
    }
}

fn readable(format: u32) -> bool {
    (FORMAT_OLDEST..=FORMAT).contains(&format)
}

/// A table's row count and content checksum at one moment. An empty checksum means the
/// table did not exist then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Counted {
    pub rows: u64,
    pub checksum: String,
}

impl Counted {
    /// A table that does not exist.
    pub fn absent() -> Counted {
        Counted {
            rows: 0,
            checksum: String::new(),
        }
    }
}

/// One table: its state before the dump and, when rows changed while the dump ran, after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TableManifest {
    /// `schema.table` (PostgreSQL) or `table` (MySQL/MariaDB).
    pub name: String,
    /// Rows before the dump.
    pub rows: u64,
    /// Content checksum before the dump (independent of row order and physical layout).
    pub checksum: String,
    /// The state after the dump, present only when it differs from the one before: the
    /// table changed while the dump ran, and the dump holds one of the two states (or one
    /// in between).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_dump: Option<Counted>,
}

impl TableManifest {
    /// The state before the dump.
    pub fn before(&self) -> Counted {
        Counted {
            rows: self.rows,
            checksum: self.checksum.clone(),
        }
    }
}

/// One database and its tables, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DatabaseManifest {
    pub name: String,
    pub tables: Vec<TableManifest>,
}

/// `FILE.manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    pub engine: Engine,
    /// The source container's image: `drill` restores into the same one.
    pub image: Option<String>,
    /// Tool that wrote the dump.
    pub kind: DumpKind,
    /// The one database dumped (`--database`), else every user database.
    pub database: Option<String>,
    /// Source pod.
    pub namespace: String,
    pub pod: String,
    /// When the dump started (UTC, RFC 3339).
    pub dumped_at: String,
    pub databases: Vec<DatabaseManifest>,
}

impl Manifest {
    /// `database.table` of every table that changed while the dump ran.
    pub fn changed_during_dump(&self) -> Vec<String> {
        self.tables()
            .filter(|(_, t)| t.after_dump.is_some())
            .map(|(db, t)| format!("{db}.{}", t.name))
            .collect()
    }

    /// Every table with its database's name.
    pub fn tables(&self) -> impl Iterator<Item = (&str, &TableManifest)> {
        self.databases
            .iter()
            .flat_map(|db| db.tables.iter().map(move |t| (db.name.as_str(), t)))
    }
}

/// The suffix of the manifest beside a dump: `FILE.manifest.json`.
pub const SUFFIX: &str = ".manifest.json";

/// The manifest's place beside a dump (a file or an object).
pub fn beside(dump: &Location) -> Location {
    dump.sidecar(SUFFIX)
}

/// Writes the manifest beside the dump, whole (a local file goes under a temporary name
/// first, so a reader never sees half of it). The one place the manifest is written.
pub async fn write_beside(dump: &Location, manifest: &Manifest) -> Result<Location> {
    let text = crate::output::to_json(manifest)?;
    write_sidecar(dump, SUFFIX, text.into_bytes()).await
}

/// Removes the manifest beside a dump, if any (either form): one left from an earlier dump
/// under the same name must not vouch for this one.
pub async fn remove_beside(dump: &Location) -> Result<()> {
    for at in [beside(dump), dump.sidecar(PASSES_SUFFIX)] {
        match at {
            Location::Local(path) => match std::fs::remove_file(&path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::Io {
                        action: "remove",
                        path: path.display().to_string(),
                        source: err,
                    });
                }
                _ => {}
            },
            Location::S3(url) => S3Store::from_env(&url.bucket)?.delete(&url).await?,
        }
    }
    Ok(())
}

/// Reads the manifest beside a dump: `FILE.manifest.json`, else the passes a scheduled
/// backup wrote (`FILE.manifest.tsv`, see [`from_passes`]); `None` when there is neither.
/// The one place it is read.
pub async fn read_beside(dump: &Location) -> Result<Option<Manifest>> {
    let at = beside(dump);
    let Some(bytes) = at.read_small().await? else {
        let passes = dump.sidecar(PASSES_SUFFIX);
        let Some(bytes) = passes.read_small().await? else {
            return Ok(None);
        };
        return from_passes(&String::from_utf8_lossy(&bytes))
            .map(Some)
            .map_err(|detail| {
                Error::Failed(format!("failed to read manifest {passes}: {detail}"))
            });
    };
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|err| Error::Failed(format!("failed to read manifest {at}: {err}")))?;
    if !readable(manifest.format) {
        return Err(Error::Failed(format!(
            "failed to read manifest {at}: format {} is not {FORMAT_OLDEST}..{FORMAT}; a newer kubectl-dbbackup wrote it",
            manifest.format
        )));
    }
    Ok(Some(manifest))
}

/// The suffix of the manifest a scheduled backup writes: the job runs in the database's
/// own image, which may have no JSON tool (the mysql image has no awk, jq or python), so it
/// stores the manifest query's raw output of both passes and the reader builds the
/// [`Manifest`] from it ([`from_passes`]): one format for readers, one parser.
pub const PASSES_SUFFIX: &str = ".manifest.tsv";

/// First line of a passes file, with its version.
const PASSES_MAGIC: &str = "kubectl-db manifest passes";

/// The header of a passes file (without `dumped_at`, which the job adds when it starts):
/// the magic line, then `key<TAB>value` lines. Then come `pass<TAB>before`, the query's
/// output before the dump, `pass<TAB>after` and its output after; [`from_passes`] reads it.
pub fn passes_header(
    engine: Engine,
    image: &str,
    kind: DumpKind,
    namespace: &str,
    pod: &str,
) -> String {
    // A tab or a line break in a value would break the line format; none is valid in them.
    let clean = |value: &str| value.replace(['\t', '\n', '\r'], " ");
    let kind = serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    format!(
        "{PASSES_MAGIC}\t{FORMAT}\nengine\t{}\nimage\t{}\nkind\t{kind}\nnamespace\t{}\npod\t{}",
        engine.as_str(),
        clean(image),
        clean(namespace),
        clean(pod)
    )
}

/// The manifest from a passes file (see [`passes_header`]): the header's values, and the
/// two passes read by [`parse`] and [`merge`]d as `dump` does.
pub fn from_passes(text: &str) -> std::result::Result<Manifest, String> {
    let mut lines = text.lines();
    let format = match lines.next().and_then(|l| l.split_once('\t')) {
        Some((PASSES_MAGIC, version)) => match version.parse() {
            Ok(format) if readable(format) => format,
            _ => {
                return Err(format!(
                    "format {version} is not {FORMAT_OLDEST}..{FORMAT}; a newer kubectl-dbbackup wrote it"
                ));
            }
        },
        _ => return Err("it does not start with the manifest passes header".into()),
    };
    let mut header = std::collections::BTreeMap::new();
    let mut passes: Vec<(&str, String)> = Vec::new();
    for line in lines {
        match (line.split_once('\t'), passes.last_mut()) {
            (Some(("pass", name)), _) => passes.push((name, String::new())),
            (_, Some((_, body))) => {
                body.push_str(line);
                body.push('\n');
            }
            (Some((key, value)), None) => {
                header.insert(key, value);
            }
            (None, None) => return Err(format!("unexpected line {line:?}")),
        }
    }
    let [("before", before), ("after", after)] = passes.as_slice() else {
        let names: Vec<&str> = passes.iter().map(|(name, _)| *name).collect();
        return Err(format!(
            "expected the passes before and after the dump, found {names:?}"
        ));
    };
    let value = |key: &str| {
        header
            .get(key)
            .map(|v| v.to_string())
            .ok_or_else(|| format!("no {key} in its header"))
    };
    let enumerated = |key: &str| -> std::result::Result<serde_json::Value, String> {
        Ok(serde_json::Value::String(value(key)?))
    };
    let engine: Engine = serde_json::from_value(enumerated("engine")?)
        .map_err(|_| format!("unknown engine {:?}", header.get("engine")))?;
    let kind: DumpKind = serde_json::from_value(enumerated("kind")?)
        .map_err(|_| format!("unknown dump kind {:?}", header.get("kind")))?;
    Ok(Manifest {
        format,
        engine,
        image: header
            .get("image")
            .map(|v| v.to_string())
            .filter(|v| !v.is_empty()),
        kind,
        database: None,
        namespace: value("namespace")?,
        pod: value("pod")?,
        dumped_at: value("dumped_at")?,
        databases: {
            let before = read_pass(before, None)?;
            let after = read_pass(after, Some(&before))?;
            merge(before.databases, after.databases)
        },
    })
}

/// Runs the engine's manifest query (rows hashed as a manifest of `format` does) in a
/// database pod and reads its output.
pub async fn take(
    kube: &Kube,
    engine: Engine,
    to: (&str, &str),
    database: Option<&str>,
    format: u32,
    timeout: Duration,
) -> Result<Vec<DatabaseManifest>> {
    let pass = take_pass(kube, engine, to, (database, format), timeout, None).await?;
    Ok(pass.databases)
}

/// The query, as errors name it.
pub const QUERY: &str = "the manifest query (row counts and checksums)";

/// Most of the manifest query's output a pass keeps: a line per table, ~70 bytes, so about
/// 900,000 tables (the 4 MiB any other command's output may take would stop a dump of an
/// instance with ~60,000 tables: every one of them would fail).
pub const OUTPUT_KEEP: usize = 64 << 20;

/// One pass of the manifest query, and the engine's mark of what had been written when it
/// began (PostgreSQL's transaction snapshot; none for MySQL/MariaDB).
#[derive(Debug)]
pub struct Pass {
    pub databases: Vec<DatabaseManifest>,
    pub snapshot: Option<String>,
}

/// [`take`], after `before` (a pass of the same query): when the engine says nothing can
/// have been written since it began, its tables are taken as they are, without a pass.
pub async fn take_pass(
    kube: &Kube,
    engine: Engine,
    (pod, container): (&str, &str),
    (database, format): (Option<&str>, u32),
    timeout: Duration,
    before: Option<&Pass>,
) -> Result<Pass> {
    let what = QUERY;
    let since = before.and_then(|b| b.snapshot.as_deref());
    let output = exec::run_keeping(
        &kube.exec_pods(),
        pod,
        Some(container),
        &engine
            .commands()
            .manifest_since(database, row_hash(format), since),
        None,
        timeout,
        OUTPUT_KEEP,
    )
    .await?;
    if output.stdout_dropped > 0 {
        return Err(Error::Exec {
            pod: pod.into(),
            what: what.into(),
            detail: "its output was too large".into(),
        });
    }
    let text = output.into_stdout(pod, what)?;
    read_pass(&text, before).map_err(|detail| Error::Exec {
        pod: pod.into(),
        what: what.into(),
        detail,
    })
}

/// A pass from the query's output; after `before`, the tables of `before` when the query
/// said nothing was written since (`unchanged`).
pub fn read_pass(text: &str, before: Option<&Pass>) -> std::result::Result<Pass, String> {
    let databases = parse(text)?;
    let snapshot = text
        .lines()
        .find_map(|l| l.strip_prefix("snapshot\t"))
        .map(str::to_string);
    match before {
        Some(before) if text.lines().any(|l| l == "unchanged") => {
            tracing::debug!("nothing written since the pass before: its tables stand");
            Ok(Pass {
                databases: before.databases.clone(),
                snapshot,
            })
        }
        _ => Ok(Pass {
            databases,
            snapshot,
        }),
    }
}

/// Reads `database<TAB>NAME` and `table<TAB>DB<TAB>TABLE<TAB>ROWS<TAB>CHECKSUM` lines, and
/// `db` and `tbl` lines of the same shape whose names are JSON strings (PostgreSQL's: a
/// name may hold a tab; older scheduled jobs still write the raw lines).
pub fn parse(text: &str) -> std::result::Result<Vec<DatabaseManifest>, String> {
    let mut databases: Vec<DatabaseManifest> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let decoded: Vec<String>;
        let fields: Vec<&str> = match fields.as_slice() {
            ["db", name] => {
                decoded = vec![json_name(name, line)?];
                vec!["database", &decoded[0]]
            }
            ["tbl", db, table, rows, checksum] => {
                decoded = vec![json_name(db, line)?, json_name(table, line)?];
                vec!["table", &decoded[0], &decoded[1], rows, checksum]
            }
            _ => fields,
        };
        match fields.as_slice() {
            ["database", name] => {
                if !databases.iter().any(|d| d.name == *name) {
                    databases.push(DatabaseManifest {
                        name: name.to_string(),
                        tables: Vec::new(),
                    });
                }
            }
            ["table", db, table, rows, checksum] => {
                let rows = rows
                    .parse()
                    .map_err(|_| format!("unexpected row count in {line:?}"))?;
                let table = TableManifest {
                    name: table.to_string(),
                    rows,
                    checksum: checksum.to_string(),
                    after_dump: None,
                };
                match databases.iter_mut().find(|d| d.name == *db) {
                    Some(found) => found.tables.push(table),
                    None => databases.push(DatabaseManifest {
                        name: db.to_string(),
                        tables: vec![table],
                    }),
                }
            }
            // Read by `take_pass`.
            ["snapshot", _] | ["unchanged"] => {}
            _ => return Err(format!("unexpected line {line:?}")),
        }
    }
    databases.sort_by(|a, b| a.name.cmp(&b.name));
    for db in &mut databases {
        db.tables.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(databases)
}

/// A name written as a JSON string.
fn json_name(field: &str, line: &str) -> std::result::Result<String, String> {
    serde_json::from_str(field).map_err(|_| format!("unexpected name in line {line:?}"))
}

/// The manifest from the passes before and after the dump: a table whose state differs
/// between them (or that exists in one only) gets its state after the dump in `after_dump`.
pub fn merge(before: Vec<DatabaseManifest>, after: Vec<DatabaseManifest>) -> Vec<DatabaseManifest> {
    // Keyed by name: an instance may hold hundreds of thousands of tables.
    let mut merged: BTreeMap<String, BTreeMap<String, TableManifest>> = before
        .into_iter()
        .map(|db| {
            let tables = db.tables.into_iter().map(|t| (t.name.clone(), t)).collect();
            (db.name, tables)
        })
        .collect();
    for db_after in after {
        let tables = merged.entry(db_after.name).or_default();
        let mut seen = BTreeSet::new();
        for table in db_after.tables {
            let state = table.before();
            match tables.get_mut(&table.name) {
                Some(known) if known.before() != state => known.after_dump = Some(state),
                Some(_) => {}
                None => {
                    let new = TableManifest {
                        name: table.name.clone(),
                        rows: 0,
                        checksum: String::new(),
                        after_dump: Some(state),
                    };
                    tables.insert(table.name.clone(), new);
                }
            }
            seen.insert(table.name);
        }
        for known in tables.values_mut() {
            if known.after_dump.is_none()
                && !known.checksum.is_empty()
                && !seen.contains(&known.name)
            {
                known.after_dump = Some(Counted::absent());
            }
        }
    }
    merged
        .into_iter()
        .map(|(name, tables)| DatabaseManifest {
            name,
            tables: tables.into_values().collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_written_as_json_may_hold_tabs_and_line_breaks() {
        let text = "snapshot\t10:10:\ndb\t\"tab\\tname\"\n\
            tbl\t\"tab\\tname\"\t\"public.we\\tird \\\"q\\\" \\n x\"\t2\tabc\n\
            db\t\"appdb\"\ndatabase\told\ttab\n";
        let read = parse(text);
        // A raw line with a tab in its name is what older lines could not tell apart.
        assert_eq!(
            read.unwrap_err(),
            "unexpected line \"database\\told\\ttab\""
        );
        let databases = parse(text.rsplit_once("database").unwrap().0).unwrap();
        let names: Vec<&str> = databases.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["appdb", "tab\tname"]);
        let table = &databases[1].tables[0];
        assert_eq!(table.name, "public.we\tird \"q\" \n x");
        assert_eq!((table.rows, table.checksum.as_str()), (2, "abc"));
        // The raw lines of older jobs still read; a name that is not JSON is refused.
        let old = parse("database\tappdb\ntable\tappdb\tpublic.t\t1\tabc\n").unwrap();
        assert_eq!(old[0].tables[0].name, "public.t");
        assert!(parse("db\tappdb\n").is_err());
    }

    const BEFORE: &str = "database\tappdb\ndatabase\tempty\ntable\tappdb\tpublic.b\t2\tbbb\ntable\tappdb\tpublic.a\t1\taaa\ntable\tappdb\tpublic.gone\t5\tggg\n";

    #[test]
    fn output_is_read_into_sorted_databases_and_tables() {
        let dbs = parse(BEFORE).unwrap();
        assert_eq!(dbs.len(), 2);
        assert_eq!(dbs[0].name, "appdb");
        let names: Vec<&str> = dbs[0].tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["public.a", "public.b", "public.gone"]);
        assert_eq!(dbs[0].tables[1].rows, 2);
        assert!(dbs[1].tables.is_empty());
        assert!(parse("table\tappdb\tt\tmany\tx\n").is_err());
        assert!(parse("ERROR: no\n").is_err());
    }

    #[test]
    fn tables_that_changed_during_the_dump_carry_their_state_after() {
        let after = "database\tappdb\ndatabase\tempty\ntable\tappdb\tpublic.a\t1\taaa\ntable\tappdb\tpublic.b\t3\tccc\ntable\tappdb\tpublic.new\t1\tnnn\n";
        let merged = merge(parse(BEFORE).unwrap(), parse(after).unwrap());
        let manifest = Manifest {
            format: FORMAT,
            engine: Engine::Postgres,
            image: Some("postgres:15".into()),
            kind: DumpKind::PostgresCluster,
            database: None,
            namespace: "shop".into(),
            pod: "pg-0".into(),
            dumped_at: "2026-12-03T08:00:00Z".into(),
            databases: merged,
        };
        assert_eq!(
            manifest.changed_during_dump(),
            ["appdb.public.b", "appdb.public.gone", "appdb.public.new"]
        );
        let tables: Vec<&TableManifest> = manifest.tables().map(|(_, t)| t).collect();
        assert_eq!(tables[0].after_dump, None);
        assert_eq!(
            tables[1].after_dump,
            Some(Counted {
                rows: 3,
                checksum: "ccc".into()
            })
        );
        assert_eq!(tables[2].after_dump, Some(Counted::absent()));
        assert_eq!(tables[3].before(), Counted::absent());

        // Written beside the dump and read back unchanged.
        let dir = tempfile::tempdir().unwrap();
        let dump = Location::Local(dir.path().join("pg.sql.gz"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(read_beside(&dump)).unwrap(), None);
        let written = dir.path().join("pg.sql.gz.manifest.json");
        assert_eq!(
            rt.block_on(write_beside(&dump, &manifest)).unwrap(),
            Location::Local(written.clone())
        );
        assert_eq!(
            rt.block_on(read_beside(&dump)).unwrap(),
            Some(manifest.clone())
        );
        let newer = std::fs::read_to_string(&written)
            .unwrap()
            .replace("\"format\": 2", "\"format\": 3");
        std::fs::write(&written, newer).unwrap();
        let err = rt.block_on(read_beside(&dump)).unwrap_err();
        assert!(err.to_string().contains("format 3"), "{err}");
    }

    /// What a scheduled backup's job writes: header, `dumped_at`, both passes.
    fn passes(before: &str, after: &str) -> String {
        let header = passes_header(Engine::Mysql, "mysql:8.4", DumpKind::Mysql, "shop", "db-0");
        format!(
            "{header}\ndumped_at\t2026-12-03T02:30:00Z\npass\tbefore\n{before}pass\tafter\n{after}"
        )
    }

    #[test]
    fn a_scheduled_backups_passes_are_read_as_a_manifest() {
        // MySQL's batch output escapes a tab, a line break and a backslash in a name; a
        // quote is data. The name reaches the manifest as the query printed it, as in `dump`.
        let before =
            "database\tshop\ntable\tshop\tit's \\\\ \\t \"q\"\t1\tc1\ntable\tshop\torders\t2\to2\n";
        let after =
            "database\tshop\ntable\tshop\tit's \\\\ \\t \"q\"\t1\tc1\ntable\tshop\torders\t3\to3\n";
        let manifest = from_passes(&passes(before, after)).unwrap();
        assert_eq!(manifest.engine, Engine::Mysql);
        assert_eq!(manifest.kind, DumpKind::Mysql);
        assert_eq!(manifest.image.as_deref(), Some("mysql:8.4"));
        assert_eq!(
            (manifest.namespace.as_str(), manifest.pod.as_str()),
            ("shop", "db-0")
        );
        assert_eq!(manifest.dumped_at, "2026-12-03T02:30:00Z");
        assert_eq!(manifest.database, None);
        let names: Vec<&str> = manifest.tables().map(|(_, t)| t.name.as_str()).collect();
        assert_eq!(names, [r#"it's \\ \t "q""#, "orders"]);
        assert_eq!(manifest.changed_during_dump(), ["shop.orders"]);
        // The same manifest as `dump` writes from the same two outputs.
        assert_eq!(
            manifest.databases,
            merge(parse(before).unwrap(), parse(after).unwrap())
        );
        // A job never writes a value with a tab or a line break into the header.
        assert!(
            passes_header(
                Engine::Postgres,
                "a\tb\nc",
                DumpKind::PostgresCluster,
                "n",
                "p"
            )
            .contains("image\ta b c\n")
        );
    }

    #[test]
    fn format_1_manifests_are_still_read_and_compared_with_md5() {
        assert_eq!(row_hash(FORMAT), RowHash::Fast);
        assert_eq!(row_hash(1), RowHash::Md5);
        // A scheduled backup applied by an older version writes format-1 passes.
        let old = passes("database\tshop\n", "database\tshop\n").replacen(
            &format!("passes\t{FORMAT}"),
            "passes\t1",
            1,
        );
        assert_eq!(from_passes(&old).unwrap().format, 1);
        let dir = tempfile::tempdir().unwrap();
        let dump = Location::Local(dir.path().join("pg.sql.gz"));
        let json = dir.path().join("pg.sql.gz.manifest.json");
        std::fs::write(
            &json,
            r#"{"format": 1, "engine": "postgres", "image": "postgres:15",
                "kind": "postgres-cluster", "database": null, "namespace": "shop",
                "pod": "pg-0", "dumped_at": "2026-12-01T00:00:00Z", "databases": []}"#,
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let read = rt.block_on(read_beside(&dump)).unwrap().unwrap();
        assert_eq!(row_hash(read.format), RowHash::Md5);
        // Format 0 never existed.
        std::fs::write(
            &json,
            std::fs::read_to_string(&json)
                .unwrap()
                .replace("\"format\": 1", "\"format\": 0"),
        )
        .unwrap();
        assert!(rt.block_on(read_beside(&dump)).is_err());
    }

    #[test]
    fn a_cut_or_foreign_passes_file_is_refused() {
        let good = passes("database\tshop\n", "database\tshop\n");
        assert!(from_passes(&good).is_ok());
        let cut = good[..good.find("pass\tafter").unwrap()].to_string();
        let err = from_passes(&cut).unwrap_err();
        assert!(err.contains("before and after"), "{err}");
        let newer = good.replacen("passes\t2", "passes\t3", 1);
        assert!(from_passes(&newer).unwrap_err().contains("format 3"));
        assert!(from_passes("{\"format\": 1}").is_err());
        let bad_row = passes("table\tshop\tt\tmany\tx\n", "");
        assert!(from_passes(&bad_row).unwrap_err().contains("row count"));
        let no_pod = good.replace("pod\tdb-0\n", "");
        assert!(from_passes(&no_pod).unwrap_err().contains("no pod"));
    }

    #[test]
    fn the_passes_beside_a_dump_are_found_when_it_has_no_json_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let dump = Location::Local(dir.path().join("db-20261203T023000Z.sql.gz"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let tsv = dir.path().join("db-20261203T023000Z.sql.gz.manifest.tsv");
        std::fs::write(&tsv, passes("database\tshop\n", "database\tshop\n")).unwrap();
        let read = rt.block_on(read_beside(&dump)).unwrap().unwrap();
        assert_eq!(read.pod, "db-0");
        // A damaged one is an error naming the file, not a missing manifest.
        std::fs::write(&tsv, "garbage").unwrap();
        let err = rt.block_on(read_beside(&dump)).unwrap_err().to_string();
        assert!(err.contains("manifest.tsv"), "{err}");
        // Both go when a dump under the same name starts over.
        rt.block_on(remove_beside(&dump)).unwrap();
        assert!(!tsv.exists());
    }
}
