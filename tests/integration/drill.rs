//! `kubectl dbbackup drill` on the local cluster, one source database per engine: the dump
//! writes its manifest (`verify --deep` lists it without a cluster), a drill of the good
//! dump PASSes, a drill of a copy edited to lose a row (PostgreSQL: and to change a value;
//! trailer and checksum intact, so `verify` accepts it) FAILs naming the table, and a drill
//! interrupted by SIGINT while its throwaway instance starts exits 130. After each, nothing
//! of the throwaway instance is left in the namespace. PostgreSQL: a table written to all
//! through a dump is reported as changed during it. A file without manifest is refused
//! before any API call.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::TestNamespace;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use kubectl_db::engine::Engine;
use serde_json::Value;

/// Two tables (text with Korean, NULLs, binary, numbers; one without a primary key) and an
/// empty database. PostgreSQL also has a table of types its manifest hashes as values
/// (`orders`: `hash_record_extended`) and one of types without such a hash (`json`, `point`,
/// an enum, `xml`...: the hash of the row's text), which a drill checks all the same, and
/// a table and a database with a tab in their names (the manifest's fields are tab-separated).
fn data(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => {
            "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric, note text, data bytea);
INSERT INTO items SELECT g, '상품 ' || g, g * 1.25, CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || g END, decode(md5(g::text), 'hex') FROM generate_series(1, 2000) g;
CREATE TABLE events (at timestamptz, v double precision);
INSERT INTO events SELECT now() - g * interval '1 minute', g / 3.0 FROM generate_series(1, 500) g;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE orders (id bigint PRIMARY KEY, at timestamptz, amount numeric(12,2), who varchar(20), ok bool, tag uuid, day date, blob bytea, n smallint);
INSERT INTO orders SELECT g, now() - g * interval '1 hour', g * 3.5, '고객 ' || g, g % 2 = 0, md5(g::text)::uuid, current_date - g, decode(md5(g::text), 'hex'), CASE WHEN g % 5 = 0 THEN NULL ELSE g % 100 END FROM generate_series(1, 700) g;
CREATE TABLE odd (j json, p point, m mood, x xml, i interval, a numeric[], r int4range, c circle);
INSERT INTO odd SELECT json_build_object('n', g, 'k', 'v' || g), point(g, g / 2.0), (ARRAY['sad','ok','happy']::mood[])[1 + g % 3], xmlelement(name n, g), g * interval '90 minutes', ARRAY[g, g / 3.0], int4range(g, g + 10), circle(point(g, 0), g) FROM generate_series(1, 300) g;
CREATE TABLE \"tab\tand \"\"quote\"\"\" (v int);
INSERT INTO \"tab\tand \"\"quote\"\"\" VALUES (1), (2);
CREATE DATABASE reports;
CREATE DATABASE \"tab\tdb\";
"
        }
        _ => {
            "USE appdb;
CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(100), price DECIMAL(10,2), note VARCHAR(50) NULL, data VARBINARY(32));
INSERT INTO items SELECT seq, CONCAT('상품 ', seq), seq * 1.25, IF(seq % 7 = 0, NULL, CONCAT('n', seq)), UNHEX(MD5(seq)) FROM seq_1_to_2000;
CREATE TABLE events (at DATETIME, v DOUBLE);
INSERT INTO events SELECT NOW() - INTERVAL seq MINUTE, seq / 3 FROM seq_1_to_500;
CREATE TABLE `tab\tand \"quote\"` (v INT);
INSERT INTO `tab\tand \"quote\"` VALUES (1), (2);
CREATE DATABASE reports;
"
        }
    }
}

/// The tables of [`data`] in its application database.
fn table_count(engine: Engine) -> usize {
    match engine {
        Engine::Postgres => 5,
        _ => 3,
    }
}

/// The name of the `items` table in the manifest.
fn items(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "public.items",
        _ => "items",
    }
}

engine_tests! {
    drill_postgres: drill(Postgres),
    drill_mariadb: drill(Mariadb),
}

async fn drill(engine: Engine) {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, &format!("drill-{}", engine.as_str()), &[]).await;
    common::deploy_json(&ns, &common::deploy_args(engine));
    let pod = format!("{}-0", engine.as_str());
    common::sql(&ns, engine, &pod, data(engine)).await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.sql.gz");

    // The dump writes its manifest; `verify --deep` lists it without a cluster.
    let report = common::json(
        ns.bin("kubectl-dbbackup")
            .args(["dump", &pod, "-f"])
            .arg(&good),
    );
    let manifest_file = format!("{}.manifest.json", good.display());
    assert_eq!(report["manifest_file"], manifest_file.as_str());
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_file).unwrap()).unwrap();
    assert_eq!(manifest["engine"], engine.as_str());
    assert_eq!(manifest["image"], common::image(engine).as_str());
    let deep = common::clean_bin("kubectl-dbbackup")
        .args(["verify", "--deep"])
        .arg(&good)
        .assert()
        .code(0);
    let listing = common::text(&deep.get_output().stdout);
    let row = |words: &[&str]| {
        listing
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == words)
    };
    assert!(row(&["appdb", items(engine), "2000"]), "{listing}");
    assert!(row(&["reports", "-", "-"]), "{listing}");

    // A good dump: PASS for every table, exit 0, nothing left behind.
    let passed = common::json(
        ns.bin("kubectl-dbbackup")
            .args(["drill", "--timeout", "5m"])
            .arg(&good),
    );
    assert_eq!(passed["passed"], true, "{passed:#}");
    let tables = passed["tables"].as_array().unwrap();
    assert_eq!(tables.len(), table_count(engine), "{passed:#}");
    for table in tables {
        assert_eq!(table["result"], "pass", "{table}");
        assert_eq!(table["expected_rows"], table["found_rows"], "{table}");
        assert_eq!(
            table["expected_checksum"], table["found_checksum"],
            "{table}"
        );
    }
    assert_eq!(passed["image"], common::image(engine).as_str());
    assert!(passed["restore_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(leftovers(&ns).await, Vec::<String>::new());

    // One row fewer in `items` (PostgreSQL: and one value of `orders` edited), trailer and
    // checksum intact: verify accepts the file, the drill FAILs naming the table, exit 1,
    // nothing left behind.
    let edited = dir.path().join("edited.sql.gz");
    drop_one_row(engine, &good, &edited);
    common::clean_bin("kubectl-dbbackup")
        .arg("verify")
        .arg(&edited)
        .assert()
        .code(0);
    let output = ns
        .bin("kubectl-dbbackup")
        .args(["drill", "--timeout", "5m"])
        .arg(&edited)
        .output()
        .unwrap();
    let stdout = common::text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}{}",
        common::text(&output.stderr)
    );
    let failed_line = stdout
        .lines()
        .find(|l| l.contains(items(engine)))
        .unwrap_or_default();
    assert!(
        failed_line.contains("FAIL")
            && failed_line.contains("2000")
            && failed_line.contains("1999"),
        "{stdout}"
    );
    assert!(stdout.starts_with("drill of "), "{stdout}");
    if engine == Engine::Postgres {
        let orders = stdout
            .lines()
            .find(|l| l.contains("public.orders"))
            .unwrap_or_default();
        assert!(
            orders.contains("FAIL") && orders.contains("700"),
            "{stdout}"
        );
    }
    let edited_tables = if engine == Engine::Postgres { 2 } else { 1 };
    let matched = table_count(engine) - edited_tables;
    assert!(
        stdout.contains(&format!(
            ": FAIL ({matched} of {} tables match)",
            table_count(engine)
        )),
        "{stdout}"
    );
    assert_eq!(leftovers(&ns).await, Vec::<String>::new());

    // SIGINT while the throwaway instance starts: exit 130, the instance deleted.
    let mut child = ns.spawn("kubectl-dbbackup", &["drill", &good.display().to_string()]);
    wait_for_throwaway(&ns, &mut child).await;
    common::signal(child.id(), "INT");
    let output = common::wait_bounded(&mut child, Duration::from_secs(300)).expect("drill ended");
    let stderr = common::text(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    assert!(stderr.contains("was deleted"), "{stderr}");
    assert_eq!(leftovers(&ns).await, Vec::<String>::new());

    if engine == Engine::Postgres {
        changed_during_the_dump(&ns, &pod, dir.path()).await;
    }
}

/// A table written to all through a dump is reported as changed during it, and in the
/// manifest carries its state after the dump; the tables nobody wrote are not.
async fn changed_during_the_dump(ns: &TestNamespace, pod: &str, dir: &Path) {
    let engine = Engine::Postgres;
    common::sql(
        ns,
        engine,
        pod,
        "CREATE TABLE ticker (n int); CREATE TABLE ticker_stop ();",
    )
    .await;
    // Nobody writing: the pass after the dump finds the server's snapshot where it was and
    // counts nothing again. (Autovacuum's ANALYZE ends a transaction and makes it count
    // again, correctly: so one quiet dump of three is enough.)
    let mut skipped = false;
    for round in 0..3 {
        let quiet = dir.join(format!("quiet-{round}.sql.gz"));
        let output = ns
            .bin("kubectl-dbbackup")
            .args(["dump", pod, "-v", "-f"])
            .arg(&quiet)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        if String::from_utf8_lossy(&output.stderr).contains("nothing written since the pass before")
        {
            skipped = true;
            break;
        }
    }
    assert!(skipped, "the pass after a quiet dump was never skipped");
    // One row every 50 ms, each committed, until told to stop (at most 2 minutes).
    let ticker = common::sql(
        ns,
        engine,
        pod,
        "DO $$ BEGIN FOR i IN 1..2400 LOOP EXIT WHEN EXISTS (SELECT FROM ticker_stop); INSERT INTO ticker VALUES (i); COMMIT; PERFORM pg_sleep(0.05); END LOOP; END $$;",
    );
    let file = dir.join("ticking.sql.gz");
    let dump = async {
        let started = Instant::now();
        while common::sql(ns, engine, pod, "SELECT count(*) FROM ticker;")
            .await
            .trim()
            == "0"
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the ticker never wrote"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut command = ns.bin("kubectl-dbbackup");
        command.args(["dump", pod, "-f"]).arg(&file);
        let report = tokio::task::spawn_blocking(move || common::json(&mut command))
            .await
            .unwrap();
        common::sql(ns, engine, pod, "INSERT INTO ticker_stop DEFAULT VALUES;").await;
        report
    };
    let (_, report) = tokio::join!(ticker, dump);
    assert_eq!(
        report["changed_during_dump"],
        serde_json::json!(["appdb.public.ticker"]),
        "{report:#}"
    );
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}.manifest.json", file.display())).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["format"], 2);
    let ticker = manifest["databases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|db| db["tables"].as_array().unwrap())
        .find(|t| t["name"] == "public.ticker")
        .unwrap();
    let (before, after) = (&ticker["rows"], &ticker["after_dump"]["rows"]);
    assert!(
        after.as_u64().unwrap() > before.as_u64().unwrap(),
        "{ticker}"
    );
    // The pass before counts while the dump runs, in snapshots taken before it began: it
    // never saw more rows than the dump holds.
    let sql = common::gunzip(&file);
    let copy = sql
        .split("COPY public.ticker (n) FROM stdin;\n")
        .nth(1)
        .expect("the dump has the ticker's rows");
    let dumped = copy.lines().take_while(|l| *l != "\\.").count() as u64;
    assert!(
        before.as_u64().unwrap() <= dumped && dumped <= after.as_u64().unwrap(),
        "before {before}, dumped {dumped}, after {after}"
    );
}

/// A dump without its manifest is refused before any API call (exit 2, the unreachable
/// kubeconfig shows no call was made): nothing is created for a file that cannot be drilled.
#[test]
fn a_dump_without_manifest_is_refused_before_any_api_call() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.sql");
    std::fs::write(
        &file,
        "-- MySQL dump 10.13\nCREATE TABLE t (id int);\n-- Dump completed on 2026-12-03\n",
    )
    .unwrap();
    common::write_checksum(&file);
    let output = common::unreachable_bin("kubectl-dbbackup")
        .arg("drill")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = common::text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("error: no manifest "), "{stderr}");
    assert!(!stderr.contains("127.0.0.1"), "{stderr}");
}

/// Writes a copy of the gzip dump `from` with the first row of `items` removed (a line of
/// pg_dump's COPY, a tuple of mysqldump's INSERT), its checksum file and manifest beside it.
fn drop_one_row(engine: Engine, from: &Path, to: &PathBuf) {
    let sql = common::gunzip(from);
    let edited = match engine {
        Engine::Postgres => {
            let copy = sql.find("COPY public.items ").expect("the COPY of items");
            let row = copy + sql[copy..].find('\n').unwrap() + 1;
            let end = row + sql[row..].find('\n').unwrap() + 1;
            let sql = format!("{}{}", &sql[..row], &sql[end..]);
            // And one value of `orders` (hashed as values, not as text) edited in place.
            let copy = sql.find("COPY public.orders ").expect("the COPY of orders");
            let row = copy + sql[copy..].find('\n').unwrap() + 1;
            let who = row + sql[row..].find("\t고객 ").unwrap();
            format!("{}\t고객X {}", &sql[..who], &sql[who + "\t고객 ".len()..])
        }
        _ => {
            // MariaDB writes one tuple per line, MySQL all on one: `(1,..),\n(2,..)`.
            let insert = sql
                .find("INSERT INTO `items` VALUES")
                .expect("the INSERT of items");
            let first = insert + sql[insert..].find('(').unwrap();
            let after = first + sql[first..].find("),").unwrap() + 2;
            let second = after + sql[after..].find('(').unwrap();
            format!("{}{}", &sql[..first], &sql[second..])
        }
    };
    assert!(edited.len() < sql.len());
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(to).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(edited.as_bytes()).unwrap();
    gz.finish().unwrap();
    common::write_checksum(to);
    std::fs::copy(
        format!("{}.manifest.json", from.display()),
        format!("{}.manifest.json", to.display()),
    )
    .unwrap();
}

/// Waits until the drill's throwaway StatefulSet exists (the drill is under way).
async fn wait_for_throwaway(ns: &TestNamespace, child: &mut std::process::Child) {
    let sets: Api<StatefulSet> = ns.kube.api();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = sets.list(&ListParams::default()).await.unwrap();
        if list
            .items
            .iter()
            .any(|s| s.name_any().starts_with("drill-"))
        {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "the drill ended early");
        assert!(
            Instant::now() < deadline,
            "no throwaway StatefulSet appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every object of a throwaway instance still in the namespace, as `Kind/name`.
async fn leftovers(ns: &TestNamespace) -> Vec<String> {
    async fn named<K>(ns: &TestNamespace, kind: &str) -> Vec<String>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
        <K as kube::Resource>::DynamicType: Default,
    {
        let api: Api<K> = ns.kube.api();
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|o| o.name_any())
            .filter(|n| n.contains("drill-"))
            .map(|n| format!("{kind}/{n}"))
            .collect()
    }
    let mut found = named::<StatefulSet>(ns, "StatefulSet").await;
    found.extend(named::<Pod>(ns, "Pod").await);
    found.extend(named::<Service>(ns, "Service").await);
    found.extend(named::<Secret>(ns, "Secret").await);
    found.extend(named::<ConfigMap>(ns, "ConfigMap").await);
    found.extend(named::<NetworkPolicy>(ns, "NetworkPolicy").await);
    found.extend(named::<PersistentVolumeClaim>(ns, "PersistentVolumeClaim").await);
    found
}
