//! `kubectl dbbackup dump --parallel` on the local cluster: a PostgreSQL instance with three
//! databases dumped over two streams into one archive, which `verify` checks part by part,
//! `list` shows, and `restore` replays into a second instance (globals first, then the
//! databases concurrently). Plus the usage errors that never reach the API.

use crate::common;

use std::path::Path;

use common::{TestNamespace, names_in};
use kubectl_db::engine::Engine;
use serde_json::Value;

/// Each database's tables, and a query that fingerprints its rows.
const DATABASES: &[(&str, &str)] = &[
    (
        "appdb",
        "CREATE TABLE orders (id int PRIMARY KEY, item text);\
         INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 500) g;",
    ),
    (
        "sales",
        "CREATE TABLE invoices (id int PRIMARY KEY, amount numeric, note text);\
         INSERT INTO invoices SELECT g, g * 1.5, repeat('x', g % 50) FROM generate_series(1, 800) g;",
    ),
    (
        "hr",
        "CREATE TABLE people (id int PRIMARY KEY, name text, photo bytea);\
         INSERT INTO people VALUES (1, 'Zoë ''quoted''', '\\x00ff10'), (2, E'tab\\there', NULL);",
    ),
];

/// Row count and MD5 of the rows of `database`'s table, read through psql in `pod`.
async fn fingerprint(ns: &TestNamespace, pod: &str, database: &str) -> String {
    let table = match database {
        "appdb" => "orders",
        "sales" => "invoices",
        _ => "people",
    };
    let sql = format!(
        "\\connect {database}\nSELECT count(*) || ' ' || md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t;\n"
    );
    common::sql(ns, Engine::Postgres, pod, &sql).await
}

fn dbbackup(ns: &TestNamespace, args: &[&str]) -> (i32, String, String) {
    common::output(ns.bin("kubectl-dbbackup").args(args))
}

fn json(ns: &TestNamespace, args: &[&str]) -> Value {
    common::json(ns.bin("kubectl-dbbackup").args(args))
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_parallel_dump_verify_list_and_restore() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "bk-par", &[]).await;
    // Both instances at once: the deploys wait on the node, not on each other.
    let deploys: Vec<_> = ["pga", "pgb"]
        .iter()
        .map(|name| {
            let mut args = common::deploy_args(Engine::Postgres);
            args.extend(["--name".into(), name.to_string()]);
            ns.spawn("kubectl-dbdeploy", &args)
        })
        .collect();
    for child in deploys {
        common::exited(child.wait_with_output().unwrap(), 0, "dbdeploy");
    }
    for (database, sql) in DATABASES {
        let create = match *database {
            "appdb" => String::new(),
            _ => format!("CREATE DATABASE {database};\n"),
        };
        common::sql(
            &ns,
            Engine::Postgres,
            "pga-0",
            &format!("{create}\\connect {database}\n{sql}\n"),
        )
        .await;
    }
    let mut expected = Vec::new();
    for (database, _) in DATABASES {
        expected.push(fingerprint(&ns, "pga-0", database).await);
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.tar");
    let shown = file.display().to_string();
    let dumped = json(&ns, &["pga", "-f", &shown, "--parallel", "2"]);
    assert_eq!(dumped["parallel"], 2, "{dumped}");
    let parts = dumped["parts"].as_array().unwrap();
    let databases: Vec<&str> = parts
        .iter()
        .map(|p| p["database"].as_str().unwrap_or("(globals)"))
        .collect();
    // The globals first, then every database pg_dumpall would dump, by name.
    assert_eq!(
        databases,
        ["(globals)", "appdb", "hr", "postgres", "sales", "template1"],
        "{dumped}"
    );
    assert_eq!(dumped["kind"], "postgres-cluster");
    assert!(dumped["manifest_file"].is_string(), "{dumped}");
    // Only the archive and what sits beside it: no part or .partial file is left.
    assert_eq!(
        names_in(dir.path()),
        ["all.tar", "all.tar.manifest.json", "all.tar.sha256"]
    );
    assert_eq!(
        common::sha256_line(&file),
        std::fs::read_to_string(format!("{shown}.sha256")).unwrap()
    );

    // verify: the whole file and each part, by its own checksum and trailer.
    let verified = json(&ns, &["verify", &shown]);
    assert_eq!(verified["ok"], true, "{verified}");
    let checked = verified["parts"].as_array().unwrap();
    assert_eq!(checked.len(), 6);
    assert!(
        checked
            .iter()
            .all(|p| p["checksum_ok"] == true && p["complete"] == true)
    );
    let deep = json(&ns, &["verify", "--deep", &shown]);
    let manifest_dbs: Vec<&str> = deep["manifest"]["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    for (database, _) in DATABASES {
        assert!(manifest_dbs.contains(database), "{deep}");
    }

    // list: the archive, its engine and its parts.
    let listed = json(&ns, &["list", &dir.path().display().to_string()]);
    let backups = listed["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "{listed}");
    assert_eq!(backups[0]["file"], "all.tar");
    assert_eq!(backups[0]["engine"], "PostgreSQL");
    assert_eq!(backups[0]["parts"], 6);
    assert_eq!(backups[0]["checksum"], "present");

    // restore into the second instance: every database reads back as it was.
    let restored = json(&ns, &["restore", "pgb", "-f", &shown]);
    assert_eq!(restored["parallel"], 2, "{restored}");
    for ((database, _), expected) in DATABASES.iter().zip(&expected) {
        assert_eq!(
            &fingerprint(&ns, "pgb-0", database).await,
            expected,
            "{database}"
        );
    }
    // Its own password still logs in over TCP.
    common::shell(
        &ns,
        Engine::Postgres,
        "pgb-0",
        r#"PGPASSWORD="$POSTGRES_PASSWORD" psql -X -h 127.0.0.1 -U "$POSTGRES_USER" -d appdb -tAc 'SELECT 1'"#,
        "",
    )
    .await;

    // A damaged part is named by verify and refused by restore, before anything is sent.
    let bad = dir.path().join("bad.tar");
    let (_, placed) = kubectl_db::backup::archive::locate(&file).unwrap();
    let sales = placed
        .iter()
        .find(|p| p.part.database.as_deref() == Some("sales"))
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[sales.offset as usize + 20] ^= 0xff;
    std::fs::write(&bad, &bytes).unwrap();
    common::write_checksum(&bad);
    let (code, out, _) = dbbackup(&ns, &["verify", &bad.display().to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("problem: 004-sales.sql.gz: checksum mismatch"),
        "{out}"
    );
    let (code, _, err) = dbbackup(
        &ns,
        &["restore", "pgb", "-f", &bad.display().to_string(), "--yes"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refusing to restore"), "{err}");
}

/// `--parallel` where it cannot apply: exit 2 with the reason, before any API call (the
/// kubeconfig points nowhere).
#[test]
fn parallel_usage_errors_never_reach_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar").display().to_string();
    for (args, says) in [
        (
            vec!["pg", "-f", file.as_str(), "--parallel", "0"],
            "at least 1",
        ),
        (
            vec![
                "pg",
                "-f",
                file.as_str(),
                "--parallel",
                "2",
                "--database",
                "appdb",
            ],
            "--database",
        ),
        (vec!["pg", "-f", "-", "--parallel", "2"], "not -f -"),
        (
            vec!["pg", "-f", "s3://bucket/x.tar", "--parallel", "2"],
            "s3://",
        ),
    ] {
        let (code, _, stderr) =
            common::output(common::unreachable_bin("kubectl-dbbackup").args(&args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert!(!Path::new(&file).exists());
}
