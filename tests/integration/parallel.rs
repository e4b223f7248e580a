//! `kubectl dbbackup dump --parallel` on the local cluster: an instance with three databases
//! (PostgreSQL, and MariaDB) dumped over two streams into one archive, which `verify` checks
//! part by part, `list` shows, and `restore` replays into a second instance (the globals
//! first, then the databases concurrently); a damaged part is named and refused. Plus the
//! usage errors that never reach the API.

use crate::common;

use std::path::Path;

use common::{TestNamespace, names_in};
use kubectl_db::engine::Engine;
use serde_json::Value;

/// One of the three databases: its name, the SQL that fills it (run in it), and the SQL
/// that prints its table's row count and a digest of its rows.
struct Data {
    database: &'static str,
    fill: &'static str,
    fingerprint: &'static str,
}

const POSTGRES: &[Data] = &[
    Data {
        database: "appdb",
        fill: "CREATE TABLE orders (id int PRIMARY KEY, item text);
               INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 500) g;",
        fingerprint: "SELECT count(*) || ' ' || md5(string_agg(t::text, '|' ORDER BY id)) FROM orders t;",
    },
    Data {
        database: "sales",
        fill: "CREATE TABLE invoices (id int PRIMARY KEY, amount numeric, note text);
               INSERT INTO invoices SELECT g, g * 1.5, repeat('x', g % 50) FROM generate_series(1, 800) g;",
        fingerprint: "SELECT count(*) || ' ' || md5(string_agg(t::text, '|' ORDER BY id)) FROM invoices t;",
    },
    Data {
        database: "hr",
        fill: r"CREATE TABLE people (id int PRIMARY KEY, name text, photo bytea);
               INSERT INTO people VALUES (1, 'Zoë ''quoted''', '\x00ff10'), (2, E'tab\there', NULL);",
        fingerprint: "SELECT count(*) || ' ' || md5(string_agg(t::text, '|' ORDER BY id)) FROM people t;",
    },
];

const MARIADB: &[Data] = &[
    Data {
        database: "appdb",
        fill: "CREATE TABLE orders (id int PRIMARY KEY, item text);
               INSERT INTO orders SELECT seq, CONCAT('item ', seq) FROM seq_1_to_500;",
        fingerprint: "SELECT CONCAT(COUNT(*), ' ', MD5(GROUP_CONCAT(id, '|', item ORDER BY id))) FROM orders;",
    },
    Data {
        database: "sales",
        fill:
            "CREATE TABLE invoices (id int PRIMARY KEY, amount decimal(10,1), note text);
               INSERT INTO invoices SELECT seq, seq * 1.5, REPEAT('x', seq % 50) FROM seq_1_to_800;",
        fingerprint: "SELECT CONCAT(COUNT(*), ' ', MD5(GROUP_CONCAT(id, '|', amount, '|', note ORDER BY id))) FROM invoices;",
    },
    Data {
        database: "hr",
        fill: r"CREATE TABLE people (id int PRIMARY KEY, name text, photo blob);
               INSERT INTO people VALUES (1, 'Zoë ''quoted''', X'00ff10'), (2, 'tab\there', NULL);",
        fingerprint: "SELECT CONCAT(COUNT(*), ' ', MD5(GROUP_CONCAT(id, '|', name, '|', HEX(COALESCE(photo, '')) ORDER BY id))) FROM people;",
    },
];

/// Runs `sql` in `database` of `pod` through the engine's client.
async fn sql_in(
    ns: &TestNamespace,
    engine: Engine,
    pod: &str,
    database: &str,
    sql: &str,
) -> String {
    let text = match engine {
        Engine::Postgres => format!("\\connect {database}\n{sql}\n"),
        _ => format!("USE `{database}`;\n{sql}\n"),
    };
    common::sql(ns, engine, pod, &text).await
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
    let parts = ["(globals)", "appdb", "hr", "postgres", "sales", "template1"];
    round_trip(&ns, Engine::Postgres, POSTGRES, &parts).await;
    to_s3(&ns, "postgres-a", parts.len()).await;
    // The target's own password still logs in over TCP.
    common::shell(
        &ns,
        Engine::Postgres,
        "postgres-b-0",
        r#"PGPASSWORD="$POSTGRES_PASSWORD" psql -X -h 127.0.0.1 -U "$POSTGRES_USER" -d appdb -tAc 'SELECT 1'"#,
        "",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_parallel_dump_verify_list_and_restore() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "bk-parm", &[]).await;
    // No globals part without --with-credentials: the accounts stay the target's.
    round_trip(&ns, Engine::Mysql, MARIADB, &["appdb", "hr", "sales"]).await;

    // A part that fails (mysqldump stops at a view whose table is gone) stops the others
    // and leaves nothing: no archive, no checksum, no temporary file.
    let broken = "CREATE DATABASE broken;\nUSE broken;\nCREATE TABLE t (id int);\n\
                  CREATE VIEW v AS SELECT id FROM t;\nDROP TABLE t;\n";
    common::sql(&ns, Engine::Mysql, "mysql-a-0", broken).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.tar").display().to_string();
    let (code, _, err) = dbbackup(&ns, &["mysql-a", "-f", &file, "--parallel", "2"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("failed to dump database broken of pod")
            && err.contains("no file was written"),
        "{err}"
    );
    assert!(
        names_in(dir.path()).is_empty(),
        "{:?}",
        names_in(dir.path())
    );
}

/// `--parallel` to an S3 prefix: the archive streams into the upload, which completes with
/// `KEY.sha256` and the manifest beside it and no upload left open; `verify` and `list` read
/// it there; a restore straight from `s3://` is refused (exit 2), nothing sent.
async fn to_s3(ns: &TestNamespace, source: &str, parts: usize) {
    let Some(s3) = crate::s3::S3::running() else {
        return;
    };
    let bucket = s3.bucket("par");
    let prefix = format!("s3://{bucket}/nightly/");
    let mut cmd = ns.bin("kubectl-dbbackup");
    s3.configure(&mut cmd);
    let dumped = common::json(cmd.args([source, "-f", &prefix, "--parallel", "3"]));
    assert_eq!(dumped["parts"].as_array().unwrap().len(), parts, "{dumped}");
    let url = dumped["file"].as_str().unwrap().to_string();
    let key = url.strip_prefix(&format!("s3://{bucket}/")).unwrap();
    assert!(
        key.starts_with("nightly/") && key.ends_with(".tar"),
        "{url}"
    );
    assert_eq!(
        s3.keys(&bucket),
        [
            key.to_string(),
            format!("{key}.manifest.json"),
            format!("{key}.sha256")
        ]
    );
    assert!(s3.uploads(&bucket).is_empty());

    let (code, out, err) = crate::s3::dbbackup(&s3, ns, &["verify", &url, "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let verified: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(verified["parts"].as_array().unwrap().len(), parts);
    let (code, out, err) = crate::s3::dbbackup(&s3, ns, &["list", &prefix, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["backups"][0]["parts"], parts, "{listed}");
    let (code, _, err) = crate::s3::dbbackup(&s3, ns, &["restore", source, "-f", &url, "--yes"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("restore it from a local file"), "{err}");
}

/// Fills three databases of `<engine>-a`, dumps them with `--parallel 2`, verifies, lists
/// and restores the archive into `<engine>-b`, and reads every database back; then damages
/// a part. `parts`: the archive's databases in order (`(globals)` for the globals).
async fn round_trip(ns: &TestNamespace, engine: Engine, data: &[Data], parts: &[&str]) {
    let (a, b) = (format!("{engine}-a"), format!("{engine}-b"));
    let (pod_a, pod_b) = (format!("{a}-0"), format!("{b}-0"));
    // Both instances at once: the deploys wait on the node, not on each other.
    let deploys: Vec<_> = [&a, &b]
        .iter()
        .map(|name| {
            let mut args = common::deploy_args(engine);
            args.extend(["--name".into(), name.to_string()]);
            ns.spawn("kubectl-dbdeploy", &args)
        })
        .collect();
    for child in deploys {
        common::exited(child.wait_with_output().unwrap(), 0, "dbdeploy");
    }
    let mut expected = Vec::new();
    for d in data {
        if d.database != "appdb" {
            let create = format!("CREATE DATABASE {};\n", d.database);
            common::sql(ns, engine, &pod_a, &create).await;
        }
        sql_in(ns, engine, &pod_a, d.database, d.fill).await;
        expected.push(sql_in(ns, engine, &pod_a, d.database, d.fingerprint).await);
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.tar");
    let shown = file.display().to_string();
    let dumped = json(ns, &[&a, "-f", &shown, "--parallel", "2"]);
    assert_eq!(dumped["parallel"], 2, "{dumped}");
    let databases: Vec<&str> = dumped["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["database"].as_str().unwrap_or("(globals)"))
        .collect();
    // The globals first, then every database the serial dump holds, by name.
    assert_eq!(databases, parts, "{dumped}");
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
    let verified = json(ns, &["verify", &shown]);
    assert_eq!(verified["ok"], true, "{verified}");
    let checked = verified["parts"].as_array().unwrap();
    assert_eq!(checked.len(), parts.len());
    assert!(
        checked
            .iter()
            .all(|p| p["checksum_ok"] == true && p["complete"] == true)
    );
    let deep = json(ns, &["verify", "--deep", &shown]);
    let manifest_dbs: Vec<&str> = deep["manifest"]["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    for d in data {
        assert!(manifest_dbs.contains(&d.database), "{deep}");
    }

    // list: the archive, its engine and its parts.
    let listed = json(ns, &["list", &dir.path().display().to_string()]);
    let backups = listed["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "{listed}");
    assert_eq!(backups[0]["file"], "all.tar");
    assert_eq!(backups[0]["parts"], parts.len());
    assert_eq!(backups[0]["checksum"], "present");

    // restore into the second instance: every database reads back as it was.
    let restored = json(ns, &["restore", &b, "-f", &shown]);
    assert_eq!(restored["parallel"], 2, "{restored}");
    // The postgres test image has zstd, the mariadb one not (tests/cluster/images).
    let wire = if engine == Engine::Postgres {
        "zstd"
    } else {
        "none"
    };
    assert_eq!(restored["stream_compression"], wire, "{restored}");
    for (d, expected) in data.iter().zip(&expected) {
        let got = sql_in(ns, engine, &pod_b, d.database, d.fingerprint).await;
        assert_eq!(&got, expected, "{}", d.database);
    }

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
    let (code, out, _) = dbbackup(ns, &["verify", &bad.display().to_string()]);
    assert_eq!(code, 1, "{out}");
    let named = format!("problem: {}: checksum mismatch", sales.part.file);
    assert!(out.contains(&named), "{out}");
    let bad = bad.display().to_string();
    let (code, _, err) = dbbackup(ns, &["restore", &b, "-f", &bad, "--yes"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refusing to restore"), "{err}");
}

/// `--parallel` where it cannot apply: exit 2 with the reason, before any API call (the
/// kubeconfig points nowhere).
#[test]
fn parallel_usage_errors_never_reach_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar").display().to_string();
    let file = file.as_str();
    for (args, says) in [
        (vec!["pg", "-f", file, "--parallel", "0"], "at least 1"),
        (
            vec!["pg", "-f", file, "--parallel", "2", "--database", "appdb"],
            "--database",
        ),
        (vec!["pg", "-f", "-", "--parallel", "2"], "not -f -"),
    ] {
        let (code, _, stderr) =
            common::output(common::unreachable_bin("kubectl-dbbackup").args(&args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert!(!Path::new(file).exists());
}
