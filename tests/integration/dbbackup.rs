//! `kubectl dbbackup` on the local cluster: round trips for PostgreSQL and MariaDB (binary
//! and non-ASCII data, row counts and content checksums), a dump cut off by the pod's
//! deletion, truncated files refused by `verify` and `restore`. Volume snapshots on the
//! cluster's CSI class: consistent under a writer, restored with `dbdeploy --from-snapshot`,
//! the lock released (also on SIGTERM), listed and deleted, and their errors. Plus the usage
//! errors that never reach the API.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{SMALL, TestNamespace};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;
use kubectl_db::engine::Engine;
use kubectl_db::exec;
use serde_json::Value;

use common::{gunzip, names_in, sha256_line, text};

struct Db<'a> {
    ns: &'a TestNamespace,
    engine: Engine,
    pod: String,
}

impl<'a> Db<'a> {
    async fn deploy(ns: &'a TestNamespace, engine: Engine, image: &str) -> Db<'a> {
        Db::deploy_as(ns, engine, image, engine.as_str(), &[]).await
    }

    /// Deploys database `name` with more dbdeploy flags.
    async fn deploy_as(
        ns: &'a TestNamespace,
        engine: Engine,
        image: &str,
        name: &str,
        extra: &[&str],
    ) -> Db<'a> {
        common::assert_exit(
            ns.bin("kubectl-dbdeploy")
                .args(common::deploy_args_with(engine, image, "4m"))
                .args(["--name", name])
                .args(extra),
            0,
        );
        Db {
            ns,
            engine,
            pod: format!("{name}-0"),
        }
    }

    /// Runs a shell script in the database container; panics unless it exits 0.
    async fn shell(&self, script: &str, stdin: &str) -> String {
        common::shell(self.ns, self.engine, &self.pod, script, stdin).await
    }

    /// SQL as the admin user in the application database (appdb for postgres).
    async fn sql(&self, sql: &str) -> String {
        common::sql(self.ns, self.engine, &self.pod, sql).await
    }

    /// Row count and MD5 of the ordered rows of each table.
    async fn checksums(&self, tables: &[&str]) -> Vec<String> {
        let mut sums = Vec::new();
        for table in tables {
            let query = match self.engine {
                Engine::Postgres => {
                    format!(
                        "SELECT count(*) || ' ' || md5(string_agg(t::text, '|' ORDER BY id)) FROM {table} t;"
                    )
                }
                _ => format!(
                    "SET SESSION group_concat_max_len = 1073741824; SELECT CONCAT(COUNT(*), ' ', MD5(GROUP_CONCAT(MD5(CONCAT_WS('|', id, HEX(v))) ORDER BY id SEPARATOR ''))) FROM appdb.{table};"
                ),
            };
            sums.push(format!("{table}: {}", self.sql(&query).await));
        }
        sums
    }
}

fn dbbackup(ns: &TestNamespace, args: &[&str]) -> std::process::Output {
    ns.bin("kubectl-dbbackup").args(args).output().unwrap()
}

/// Dumps to `file` and returns the report.
fn dump_json(ns: &TestNamespace, target: &str, file: &Path, compress: &str) -> Value {
    common::json(ns.bin("kubectl-dbbackup").args([
        target,
        "-f",
        &file.display().to_string(),
        "--compress",
        compress,
    ]))
}

fn verify_code(file: &Path) -> (Option<i32>, String) {
    let output = common::clean_bin("kubectl-dbbackup")
        .args(["verify", &file.display().to_string()])
        .output()
        .unwrap();
    (output.status.code(), text(&output.stdout))
}

/// A copy of `file` cut to half its size, with (`fresh_checksum`) or without a matching
/// checksum file.
fn truncated_copy(file: &Path, dir: &Path, fresh_checksum: bool) -> PathBuf {
    let name = format!(
        "cut-{}-{}",
        fresh_checksum,
        file.file_name().unwrap().to_string_lossy()
    );
    let cut = dir.join(name);
    let bytes = std::fs::read(file).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let checksum = if fresh_checksum {
        sha256_line(&cut)
    } else {
        std::fs::read_to_string(format!("{}.sha256", file.display())).unwrap()
    };
    std::fs::write(format!("{}.sha256", cut.display()), checksum).unwrap();
    cut
}

/// A truncated file fails `verify` (exit 1) and `restore` refuses it before sending anything.
fn truncated_files_are_refused(ns: &TestNamespace, target: &str, good: &Path, dir: &Path) {
    for fresh in [false, true] {
        let cut = truncated_copy(good, dir, fresh);
        let (code, report) = verify_code(&cut);
        assert_eq!(code, Some(1), "verify of a truncated file: {report}");
        let output = dbbackup(
            ns,
            &["restore", target, "-f", &cut.display().to_string(), "--yes"],
        );
        assert_eq!(
            output.status.code(),
            Some(1),
            "restore of a truncated file: {}",
            text(&output.stderr)
        );
        assert!(
            text(&output.stderr).contains("refusing to restore"),
            "{}",
            text(&output.stderr)
        );
    }
}

const PG_TABLES: &[&str] = &["texts", "blobs", "nums"];

const PG_DATA: &str = r#"
CREATE TABLE texts (id int PRIMARY KEY, s text);
INSERT INTO texts SELECT g, '테스트 데이터 ' || g || E' tab\t quote'' backslash\\ newline\n end' FROM generate_series(1, 20000) g;
CREATE TABLE blobs (id int PRIMARY KEY, b bytea);
INSERT INTO blobs SELECT g, (SELECT decode(string_agg(lpad(to_hex(floor(random() * 256)::int), 2, '0'), ''), 'hex') FROM generate_series(1, 2048) WHERE g > 0) FROM generate_series(1, 1500) g;
INSERT INTO blobs VALUES (0, '\x000a0d5c2709ff'::bytea);
CREATE TABLE nums (id bigint PRIMARY KEY, n numeric, d date, j jsonb);
INSERT INTO nums SELECT g, g * 1.5, date '2000-01-01' + g, jsonb_build_object('k', '값 ' || g) FROM generate_series(1, 10000) g;
"#;

#[tokio::test(flavor = "multi_thread")]
async fn postgres_round_trip() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "bk-pg", &[]).await;
    let db = Db::deploy(&ns, Engine::Postgres, &common::postgres_image()).await;
    db.sql(PG_DATA).await;
    let before = db.checksums(PG_TABLES).await;
    let dir = tempfile::tempdir().unwrap();

    let file = dir.path().join("pg.sql.gz");
    let report = dump_json(&ns, "postgres", &file, "gzip");
    assert_eq!(report["remote_status"]["result"], "success");
    assert_eq!(report["dump_kind"], "postgres-cluster");
    // The image has zstd (as the official ones do): the stream is compressed with it in the
    // pod and rewritten as gzip here, the file as the client would write it (the same
    // SQL; restored below).
    assert_eq!(report["compressed_in_pod"], true, "{report}");
    assert_eq!(report["stream_compression"], "zstd", "{report}");
    let on_client = dir.path().join("client.sql.gz");
    let client_report = common::json(ns.bin("kubectl-dbbackup").args([
        "postgres",
        "-f",
        &on_client.display().to_string(),
        "--compress-in-pod=false",
    ]));
    assert_eq!(client_report["compressed_in_pod"], false);
    assert_eq!(client_report["stream_compression"], "none");
    assert_eq!(client_report["bytes_raw"], report["bytes_raw"]);
    assert_eq!(verify_code(&on_client).0, Some(0));
    // The same SQL but for pg_dump's random `\restrict` keys.
    let sql = |file: &Path| {
        common::gunzip(file)
            .lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(sql(&on_client), sql(&file));
    assert!(
        report["bytes_raw"].as_u64().unwrap() > 3_000_000,
        "{report}"
    );
    assert_eq!(
        std::fs::read_to_string(format!("{}.sha256", file.display())).unwrap(),
        sha256_line(&file)
    );
    assert_eq!(verify_code(&file).0, Some(0));
    let zst = dir.path().join("pg.sql.zst");
    let report = dump_json(&ns, "postgres-0", &zst, "zstd");
    // Stored as the pod's zstd wrote it.
    assert_eq!(report["stream_compression"], "zstd", "{report}");
    assert_eq!(verify_code(&zst).0, Some(0));
    let plain = dir.path().join("pg.sql");
    let report = dump_json(&ns, "postgres-0", &plain, "none");
    // Compressed on the way all the same, and written out as SQL here.
    assert_eq!(report["stream_compression"], "zstd", "{report}");
    let sql = std::fs::read_to_string(&plain).unwrap();
    assert!(sql.contains("테스트 데이터"));
    assert!(
        sql.trim_end()
            .ends_with("-- PostgreSQL database cluster dump complete\n--")
    );

    // The target holds data: refused without --yes, nothing changed.
    let output = dbbackup(
        &ns,
        &["restore", "postgres", "-f", &file.display().to_string()],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("appdb"),
        "{}",
        text(&output.stderr)
    );
    // With --yes the databases in the file replace the live ones.
    let output = dbbackup(
        &ns,
        &[
            "restore",
            "postgres",
            "-f",
            &zst.display().to_string(),
            "--yes",
            // The SQL as it is on the stream; the default (zstd) is restored below.
            "--compress-in-pod=false",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(db.checksums(PG_TABLES).await, before);

    // Drop the whole database, restore into the emptied server.
    db.shell(
        r#"PGPASSWORD="$POSTGRES_PASSWORD" psql -X -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -c 'DROP DATABASE appdb WITH (FORCE)'"#,
        "",
    )
    .await;
    let output = dbbackup(
        &ns,
        &[
            "restore",
            "postgres",
            "-f",
            &file.display().to_string(),
            "-o",
            "json",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let restored: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(restored["remote_status"]["result"], "success");
    // Compressed here, decompressed by the image's zstd.
    assert_eq!(restored["stream_compression"], "zstd", "{restored}");
    assert_eq!(db.checksums(PG_TABLES).await, before);

    truncated_files_are_refused(&ns, "postgres", &file, dir.path());
    truncated_files_are_refused(&ns, "postgres", &plain, dir.path());

    // One database: pg_dump --create, its own trailer.
    let one = dir.path().join("appdb.sql.gz");
    let output = dbbackup(
        &ns,
        &[
            "postgres",
            "--database",
            "appdb",
            "-f",
            &one.display().to_string(),
            "-o",
            "json",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        serde_json::from_slice::<Value>(&output.stdout).unwrap()["dump_kind"],
        "postgres-database"
    );
    assert_eq!(verify_code(&one).0, Some(0));

    // The manifest's pass before the dump runs in the dump's exec: when it fails (a
    // database whose name holds a line break, which pg_dumpall refuses too), the dump never
    // starts and nothing is left behind.
    db.shell(
        r#"PGPASSWORD="$POSTGRES_PASSWORD" psql -X -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -c 'CREATE DATABASE "line
break"'"#,
        "",
    )
    .await;
    let refused = dir.path().join("refused.sql.gz");
    let output = dbbackup(&ns, &["postgres", "-f", &refused.display().to_string()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("the manifest query") && stderr.contains("holds a line break"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|name| name.starts_with("refused"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    db.shell(
        r#"PGPASSWORD="$POSTGRES_PASSWORD" psql -X -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -c 'DROP DATABASE "line
break"'"#,
        "",
    )
    .await;

    // A volume of the default class `standard` (hostPath, not CSI) cannot be snapshotted:
    // refused before anything is created, exit 2. (A cluster without the snapshot API is
    // tested with a mocked API server in src/backup/snapshot.rs.)
    let output = dbbackup(&ns, &["snapshot", "postgres"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("is not a CSI volume"),
        "{}",
        text(&output.stderr)
    );
}

const MARIADB_TABLES: &[&str] = &["texts", "blobs"];

const MARIADB_DATA: &str = r#"
USE appdb;
CREATE TABLE appdb.texts (id INT PRIMARY KEY, v TEXT) DEFAULT CHARSET = utf8mb4;
INSERT INTO appdb.texts SELECT seq, CONCAT('테스트 데이터 ', seq, ' tab\t quote'' backslash\\ newline\n end') FROM seq_1_to_20000;
CREATE TABLE appdb.blobs (id INT PRIMARY KEY, v LONGBLOB);
INSERT INTO appdb.blobs SELECT seq, CONCAT(RANDOM_BYTES(1024), RANDOM_BYTES(1024)) FROM seq_1_to_1500;
INSERT INTO appdb.blobs VALUES (0, UNHEX('000A0D5C2709FF'));
"#;

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_round_trip() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "bk-maria", &[]).await;
    let db = Db::deploy(&ns, Engine::Mariadb, &common::mariadb_image()).await;
    db.sql(MARIADB_DATA).await;
    let before = db.checksums(MARIADB_TABLES).await;
    let dir = tempfile::tempdir().unwrap();

    let file = dir.path().join("maria.sql.zst");
    let report = dump_json(&ns, "mariadb", &file, "zstd");
    assert_eq!(report["dump_kind"], "mysql");
    // This test image has gzip but no zstd (tests/cluster/images): gzip on the stream,
    // rewritten as zstd here, and restored below.
    assert_eq!(report["stream_compression"], "gzip", "{report}");
    assert!(
        report["bytes_raw"].as_u64().unwrap() > 3_000_000,
        "{report}"
    );
    assert_eq!(verify_code(&file).0, Some(0));

    let output = dbbackup(
        &ns,
        &["restore", "mariadb", "-f", &file.display().to_string()],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    db.sql("DROP DATABASE appdb;").await;
    // A server without any user database still dumps: a complete, empty file.
    let empty = dir.path().join("empty.sql");
    let report = dump_json(&ns, "mariadb", &empty, "none");
    assert_eq!(report["stream_compression"], "gzip", "{report}");
    assert_eq!(verify_code(&empty).0, Some(0));
    assert!(
        !std::fs::read_to_string(&empty)
            .unwrap()
            .contains("CREATE TABLE")
    );
    let output = dbbackup(
        &ns,
        &[
            "restore",
            "mariadb-0",
            "-f",
            &file.display().to_string(),
            "-o",
            "json",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    // No zstd in this image: found before the restore ran, then the SQL as it is.
    let restored: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(restored["stream_compression"], "none", "{restored}");
    assert_eq!(db.checksums(MARIADB_TABLES).await, before);

    truncated_files_are_refused(&ns, "mariadb", &file, dir.path());

    // A PostgreSQL dump is refused by a MariaDB server before anything is sent.
    let pg = dir.path().join("pg.sql");
    std::fs::write(&pg, "--\n-- PostgreSQL database cluster dump\n--\n\nSELECT 1;\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n").unwrap();
    common::write_checksum(&pg);
    assert_eq!(verify_code(&pg).0, Some(0));
    let output = dbbackup(
        &ns,
        &[
            "restore",
            "mariadb",
            "-f",
            &pg.display().to_string(),
            "--yes",
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("PostgreSQL dump"),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dump_of_a_deleted_pod_leaves_no_file() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "bk-cut", &[]).await;
    let db = Db::deploy(&ns, Engine::Postgres, &common::postgres_image()).await;
    // ~200 MB of rows of hex digits (compressing about 2:1 like much real data), so the dump
    // is still streaming when the pod goes, compressed in the pod or not.
    db.sql("CREATE TABLE big AS SELECT g AS id, (SELECT string_agg(md5((g * 31 + i)::text), '') FROM generate_series(1, 30) i) AS s FROM generate_series(1, 200000) g;").await;
    let dir = tempfile::tempdir().unwrap();
    for (name, compress) in [("cut.sql.gz", "gzip"), ("cut.sql", "none")] {
        kubectl_db::wait::statefulset_ready(
            &ns.kube,
            "postgres",
            Duration::from_secs(240),
            &kubectl_db::output::Progress::spinner(false),
        )
        .await
        .unwrap();
        let file = dir.path().join(name);
        let partial = dir.path().join(format!("{name}.partial"));
        let mut child = ns.spawn(
            "kubectl-dbbackup",
            &[
                "postgres",
                "--compress",
                compress,
                "-f",
                &file.display().to_string(),
            ],
        );
        common::wait_for_bytes(&mut child, &partial, 4 << 20, Duration::from_secs(120));
        // The client stands still until the pod is gone: a stream that is fast enough
        // (zstd in the pod) could otherwise end within the pod's grace period.
        common::signal(child.id(), "STOP");
        // A grace period of 1, not 0: a forced deletion lets the replacement pod start while
        // the old postmaster still runs on the same volume (and corrupts it).
        let pods: Api<Pod> = ns.kube.api();
        let uid = pods.get("postgres-0").await.unwrap().metadata.uid;
        pods.delete(
            "postgres-0",
            &DeleteParams {
                grace_period_seconds: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while pods
            .get_opt("postgres-0")
            .await
            .unwrap()
            .and_then(|p| p.metadata.uid)
            == uid
        {
            assert!(
                Instant::now() < deadline,
                "{compress}: postgres-0 was not deleted"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        common::signal(child.id(), "CONT");
        let output = child.wait_with_output().unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{compress}: {stderr}");
        assert!(
            stderr.contains("failed to dump pod"),
            "{compress}: {stderr}"
        );
        assert!(
            !file.exists(),
            "{compress}: a cut-off dump appeared under the final name"
        );
        assert!(
            !partial.exists(),
            "{compress}: the .partial file was left behind"
        );
        assert!(!dir.path().join(format!("{name}.sha256")).exists());
    }
}

#[test]
fn bad_input_is_refused_before_any_api_call() {
    // No kubeconfig at all: reaching the API would fail with exit 3, not 2.
    let run = |args: &[&str]| {
        common::clean_bin("kubectl-dbbackup")
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(
        run(&["verify", "/nonexistent.sql.gz"]).status.code(),
        Some(2)
    );
    assert_eq!(
        run(&["restore", "db", "-f", "/nonexistent.sql.gz"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(&["db", "--database", "-x"]).status.code(), Some(2));
    // --with-credentials dumps the whole server: not with one database.
    assert_eq!(
        run(&["db", "--database", "appdb", "--with-credentials"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(&["db", "-f", "-", "-o", "json"]).status.code(), Some(2));
    assert_eq!(run(&["db", "--compress", "lz4"]).status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("old.sql.gz");
    std::fs::write(&existing, b"old").unwrap();
    let output = run(&["db", "-f", &existing.display().to_string()]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(std::fs::read(&existing).unwrap(), b"old");
    // A checksum file alone is refused too: a new dump would leave it vouching for nothing.
    let lone = dir.path().join("lone.sql.gz");
    std::fs::write(dir.path().join("lone.sql.gz.sha256"), b"old sum").unwrap();
    let output = run(&["db", "-f", &lone.display().to_string()]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("--force"));
    // A planted FILE.partial (here a symlink) is refused, even with --force.
    let planted = dir.path().join("planted.sql.gz");
    std::os::unix::fs::symlink(&existing, dir.path().join("planted.sql.gz.partial")).unwrap();
    let output = run(&["db", "-f", &planted.display().to_string(), "--force"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert_eq!(std::fs::read(&existing).unwrap(), b"old");
}

/// Starts a dump of `target` to `file` with extra flags, without waiting.
fn spawn_dump(
    ns: &TestNamespace,
    target: &str,
    file: &Path,
    extra: &[&str],
) -> std::process::Child {
    ns.spawn(
        "kubectl-dbbackup",
        &[&[target, "-f", &file.display().to_string()], extra].concat(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn dump_files_are_exclusive_private_and_never_clobbered() {
    use std::os::unix::fs::PermissionsExt;
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "bk-files", &[]).await;
    let db = Db::deploy(&ns, Engine::Postgres, &common::postgres_image()).await;
    // ~30 MB of SQL: each dump streams for a moment, so concurrent ones overlap.
    db.sql("CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 10) AS s FROM generate_series(1, 100000) g;").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.sql.gz");
    let checksum = dir.path().join("d.sql.gz.sha256");
    let path = file.display().to_string();

    // A symlink planted at FILE.partial is not followed: its target is unchanged, and the
    // dump is refused.
    let precious = dir.path().join("precious");
    std::fs::write(&precious, b"precious").unwrap();
    let planted = dir.path().join("d.sql.gz.partial");
    std::os::unix::fs::symlink(&precious, &planted).unwrap();
    let output = dbbackup(&ns, &["postgres", "-f", &path]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("d.sql.gz.partial exists"));
    assert_eq!(std::fs::read(&precious).unwrap(), b"precious");
    assert!(planted.symlink_metadata().unwrap().file_type().is_symlink());
    std::fs::remove_file(&planted).unwrap();

    // A dump: the file is the owner's only (0600), and matches its checksum.
    let output = dbbackup(&ns, &["postgres", "-f", &path]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    assert_eq!(verify_code(&file).0, Some(0));
    let first = std::fs::read(&file).unwrap();
    let first_sum = std::fs::read(&checksum).unwrap();

    // An existing file, or its checksum file alone, is refused without --force.
    let output = dbbackup(&ns, &["postgres", "-f", &path]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert_eq!(std::fs::read(&file).unwrap(), first);
    assert_eq!(std::fs::read(&checksum).unwrap(), first_sum);
    std::fs::remove_file(&file).unwrap();
    let output = dbbackup(&ns, &["postgres", "-f", &path]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("d.sql.gz.sha256 already exists"));
    assert_eq!(std::fs::read(&checksum).unwrap(), first_sum);
    assert_eq!(
        names_in(dir.path()),
        ["d.sql.gz.manifest.json", "d.sql.gz.sha256", "precious"]
    );

    // --force replaces both; a symlink at FILE is replaced, not written through.
    std::os::unix::fs::symlink(&precious, &file).unwrap();
    let output = dbbackup(&ns, &["postgres", "-f", &path, "--force"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(std::fs::read(&precious).unwrap(), b"precious");
    assert!(std::fs::symlink_metadata(&file).unwrap().is_file());
    assert_eq!(verify_code(&file).0, Some(0));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    assert_eq!(
        names_in(dir.path()),
        [
            "d.sql.gz",
            "d.sql.gz.manifest.json",
            "d.sql.gz.sha256",
            "precious"
        ]
    );

    // Two dumps to one path at once: one wins whole, the other exits 2 and leaves nothing;
    // the file always matches its checksum. With --force too: never two writers of one file.
    for (round, extra) in [&[][..], &[][..], &["--force"][..]].iter().enumerate() {
        let race = tempfile::tempdir().unwrap();
        let file = race.path().join("r.sql.gz");
        let children = [
            spawn_dump(&ns, "postgres", &file, extra),
            spawn_dump(&ns, "postgres", &file, extra),
        ];
        let outputs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let codes: Vec<_> = outputs.iter().map(|o| o.status.code()).collect();
        let stderr: Vec<_> = outputs.iter().map(|o| text(&o.stderr)).collect();
        eprintln!("round {round} {extra:?}: exits {codes:?}: {stderr:?}");
        assert!(
            codes.contains(&Some(0)),
            "round {round}: {codes:?} {stderr:?}"
        );
        if extra.is_empty() {
            let mut sorted = codes.clone();
            sorted.sort();
            assert_eq!(sorted, [Some(0), Some(2)], "round {round}: {stderr:?}");
        } else {
            // With --force the second may start after the first finished and replace it.
            assert!(
                codes.iter().all(|c| matches!(c, Some(0 | 2))),
                "round {round}: {codes:?} {stderr:?}"
            );
        }
        assert_eq!(verify_code(&file).0, Some(0), "round {round}");
        assert_eq!(
            names_in(race.path()),
            ["r.sql.gz", "r.sql.gz.manifest.json", "r.sql.gz.sha256"]
        );
    }
}

/// Deploys `names` of one engine at the same time (each deploy waits for its pod).
fn deploy_all<'a, const N: usize>(
    ns: &'a TestNamespace,
    engine: Engine,
    names: [&str; N],
) -> [Db<'a>; N] {
    let image = common::image(engine);
    let children: Vec<_> = names
        .iter()
        .map(|name| {
            let mut args = common::deploy_args_with(engine, &image, "6m");
            args.extend(["--name".into(), name.to_string()]);
            ns.spawn("kubectl-dbdeploy", &args)
        })
        .collect();
    for child in children {
        common::exited(child.wait_with_output().unwrap(), 0, "dbdeploy");
    }
    names.map(|name| Db {
        ns,
        engine,
        pod: format!("{name}-0"),
    })
}

/// Lines that look like `CREATE DATABASE` statements but sit in a table comment, a
/// function body and COPY data: a restore must leave them byte for byte as they are.
const PG_TRICKY: &str = r#"
CREATE TABLE notes (s text, id int PRIMARY KEY);
COMMENT ON TABLE notes IS 'first line
CREATE DATABASE x'';
last line';
CREATE FUNCTION tricky() RETURNS text LANGUAGE sql AS $body$SELECT 'a
CREATE DATABASE x'';
b'::text$body$;
INSERT INTO notes VALUES ('CREATE DATABASE x'';', 1), (E'CREATE DATABASE y;\nCREATE DATABASE z', 2);
CREATE TABLE big (id int PRIMARY KEY, b bytea);
ALTER TABLE big ALTER COLUMN b SET STORAGE EXTERNAL;
INSERT INTO big SELECT 1, decode(repeat('0123456789abcdef', 6553600), 'hex');
"#;

/// What must survive a round trip unchanged (texts compared whole, the bytea by MD5).
const PG_TRICKY_FINGERPRINT: &str = "SELECT obj_description('notes'::regclass, 'pg_class') || '|' || (SELECT prosrc FROM pg_proc WHERE proname = 'tricky') || '|' || (SELECT string_agg(s, '|' ORDER BY id) FROM notes) || '|' || (SELECT length(b) || ' ' || md5(b) FROM big);";

/// Runs `kubectl dbbackup ARGS`; panics with its stderr unless it exits `code`; its stderr.
fn dbbackup_exits(ns: &TestNamespace, args: &[&str], code: i32) -> String {
    text(&common::assert_exit(ns.bin("kubectl-dbbackup").args(args), code).stderr)
}

/// `restore TARGET -f FILE`, with `--yes` when `yes`; panics unless it exits `code`; its
/// stderr.
fn restore(ns: &TestNamespace, target: &str, file: &Path, yes: bool, code: i32) -> String {
    let file = file.display().to_string();
    let mut args = vec!["restore", target, "-f", &file];
    if yes {
        args.push("--yes");
    }
    dbbackup_exits(ns, &args, code)
}

/// Dumps the whole server `target` with its accounts' passwords (`--with-credentials`).
fn dump_with_credentials(ns: &TestNamespace, target: &str, file: &Path) {
    let file = file.display().to_string();
    dbbackup_exits(ns, &[target, "--with-credentials", "-f", &file], 0);
}

/// DIR/a-broken.sql: the dump `sql` with a failing statement at byte `at`, and its checksum.
fn broken_dump(sql: &str, at: usize, dir: &Path) -> PathBuf {
    let broken = dir.join("a-broken.sql");
    let text = [&sql[..at], "SELECT kdb_fails_on_purpose();\n", &sql[at..]].concat();
    std::fs::write(&broken, text).unwrap();
    common::write_checksum(&broken);
    broken
}

/// A restore that fails after the dump's accounts were written: exit 1, and the target's
/// own credentials set again.
fn restore_fails_and_resets_credentials(ns: &TestNamespace, target: &str, broken: &Path) -> String {
    let stderr = restore(ns, target, broken, true, 1);
    assert!(
        stderr.contains("the target's own credentials were set again"),
        "{stderr}"
    );
    stderr
}

/// Dumps database appdb of `from` (pg_dump --create, or one MariaDB database) and restores it
/// into `to`.
fn restore_one_database(ns: &TestNamespace, from: &str, to: &str, dir: &Path) {
    let one = dir.join("a-appdb.sql.gz");
    let file = one.display().to_string();
    dbbackup_exits(ns, &[from, "--database", "appdb", "-f", &file], 0);
    restore(ns, to, &one, true, 0);
}

const PG_TCP_LOGIN: &str = r#"PGPASSWORD="$POSTGRES_PASSWORD" psql -X -w -h 127.0.0.1 -U "$POSTGRES_USER" -d appdb -tAc 'SELECT current_user'"#;

/// Logs in over TCP with the pod's own Secret values (as an application would).
async fn pg_tcp_login(db: &Db<'_>) {
    assert_eq!(db.shell(PG_TCP_LOGIN, "").await.trim(), "appuser");
}

/// pg_dumpall of deployment A restored into deployment B (different passwords): B's
/// Secret still logs in over TCP, with a new dump and with one that carries A's role
/// passwords; lines that look like CREATE DATABASE in a comment, a function body and COPY
/// data come back unchanged; a 50 MB bytea row (one 100 MB line) restores with a flat
/// client memory; a single-database dump restores; and B's `postgres` database counts as
/// data the restore would write into.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_restore_into_another_deployment() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "bk-pgx", &[]).await;
    let [a, b] = &deploy_all(&ns, Engine::Postgres, ["pga", "pgb"]);
    assert_ne!(
        common::secret_data(&ns, "pga-secret").await["POSTGRES_PASSWORD"],
        common::secret_data(&ns, "pgb-secret").await["POSTGRES_PASSWORD"]
    );
    a.sql(PG_TRICKY).await;
    let expected = a.sql(PG_TRICKY_FINGERPRINT).await;
    assert!(expected.starts_with("first line\nCREATE DATABASE x';\nlast line|SELECT 'a\nCREATE DATABASE x'';\nb'::text|CREATE DATABASE x';|CREATE DATABASE y;\nCREATE DATABASE z|52428800 "), "{expected}");
    b.shell(
        r#"psql -X -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -c 'CREATE TABLE keep_me (id int)'"#,
        "",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();

    // A new dump carries no role password.
    let file = dir.path().join("a.sql.gz");
    dump_json(&ns, "pga", &file, "gzip");
    let sql = gunzip(&file);
    assert!(sql.contains("CREATE ROLE appuser;"));
    assert!(
        !sql.contains("SCRAM-SHA-256$"),
        "the dump carries a password hash"
    );
    drop(sql);

    // B's `postgres` database holds a table: refused without --yes, and named.
    let stderr = restore(&ns, "pgb", &file, false, 2);
    assert!(stderr.contains("postgres"), "{stderr}");

    let (output, peak_kib) = common::wait_with_peak_rss(ns.spawn(
        "kubectl-dbbackup",
        &["restore", "pgb", "-f", &file.display().to_string(), "--yes"],
    ));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(b.sql(PG_TRICKY_FINGERPRINT).await, expected);
    pg_tcp_login(b).await;
    eprintln!("restore of a 100 MB COPY line: peak RSS {} KiB", peak_kib);
    assert!(peak_kib > 0, "VmHWM was never sampled");
    assert!(
        peak_kib < 64 << 10,
        "the restore peaked at {peak_kib} KiB for a 100 MB line"
    );

    // A dump that carries A's password hashes (as older versions made): B still logs in.
    let with = dir.path().join("a-with.sql.gz");
    dump_with_credentials(&ns, "pga", &with);
    assert!(gunzip(&with).contains("SCRAM-SHA-256$"));
    restore(&ns, "pgb", &with, true, 0);
    pg_tcp_login(b).await;
    assert_eq!(b.sql(PG_TRICKY_FINGERPRINT).await, expected);

    // The same file with an error right after A's password was set, early in the file
    // (the 100 MB line follows): psql stops there, and so does the restore, at once and
    // not at its --timeout, with psql's error; B's password is set again in a session of
    // its own.
    let sql = gunzip(&with);
    let role = sql.find("\nALTER ROLE appuser WITH").unwrap() + 1;
    let after = role + sql[role..].find('\n').unwrap() + 1;
    assert!(sql[role..after].contains(" PASSWORD 'SCRAM-SHA-256$"));
    assert!(
        sql.len() - after > 100 << 20,
        "{} bytes follow",
        sql.len() - after
    );
    let broken = broken_dump(&sql, after, dir.path());
    drop(sql);
    let started = Instant::now();
    let stderr = restore_fails_and_resets_credentials(&ns, "pgb", &broken);
    let took = started.elapsed();
    eprintln!("restore stopped early by psql: exit 1 after {took:?}");
    assert!(took < Duration::from_secs(60), "took {took:?}: {stderr}");
    assert!(
        stderr.contains("remote exit status 3")
            && stderr.contains("function kdb_fails_on_purpose() does not exist"),
        "{stderr}"
    );
    pg_tcp_login(b).await;

    // One database (pg_dump --create) restores over the existing one.
    b.sql("UPDATE notes SET s = 'changed';").await;
    restore_one_database(&ns, "pga", "pgb", dir.path());
    assert_eq!(b.sql(PG_TRICKY_FINGERPRINT).await, expected);
    pg_tcp_login(b).await;
}

// `timeout`: one such login once hung until the exec's 300 s limit (2026-12-05, not
// reproduced); exit 124 then says which step it was, and sooner.
const MARIADB_TCP_ROOT: &str = r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" timeout 60 mariadb --connect-timeout=20 -h 127.0.0.1 -uroot -N -B -e 'SELECT CURRENT_USER()'"#;
const MARIADB_TCP_APP: &str = r#"MYSQL_PWD="$MYSQL_PASSWORD" timeout 60 mariadb --connect-timeout=20 -h 127.0.0.1 -u"$MYSQL_USER" -N -B -e 'SELECT COUNT(*) FROM appdb.texts'"#;

/// Logs in over TCP as root and as the app user with the pod's own Secret values.
async fn mariadb_tcp_logins(db: &Db<'_>) {
    let root = db.shell(MARIADB_TCP_ROOT, "").await;
    assert!(root.trim().starts_with("root@"), "{root}");
    assert_eq!(db.shell(MARIADB_TCP_APP, "").await.trim(), "20000");
}

/// A MariaDB dump of deployment A restored into deployment B: B's root and app user log in
/// over TCP with B's Secret afterwards (also after the grant tables are reloaded, as a
/// restart would), with a new dump (no `mysql` schema) and with one that carries A's
/// accounts; B's own extra accounts make such a dump need --yes; a single-database dump
/// restores.
#[tokio::test(flavor = "multi_thread")]
async fn mariadb_restore_into_another_deployment() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "bk-mx", &[]).await;
    let [a, b] = &deploy_all(&ns, Engine::Mariadb, ["ma", "mb"]);
    for key in ["MYSQL_ROOT_PASSWORD", "MYSQL_PASSWORD"] {
        assert_ne!(
            common::secret_data(&ns, "ma-secret").await[key],
            common::secret_data(&ns, "mb-secret").await[key]
        );
    }
    a.sql(MARIADB_DATA).await;
    let before = a.checksums(MARIADB_TABLES).await;
    let dir = tempfile::tempdir().unwrap();
    // What a restart does: the grant tables on disk become the ones in force.
    let reload = "FLUSH PRIVILEGES;";

    let file = dir.path().join("a.sql.gz");
    dump_json(&ns, "ma", &file, "gzip");
    let sql = gunzip(&file);
    assert!(sql.contains("USE `appdb`;"));
    assert!(
        !sql.contains("USE `mysql`;"),
        "the dump carries the mysql schema"
    );
    drop(sql);
    restore(&ns, "mb", &file, false, 0);
    b.sql(reload).await;
    assert_eq!(b.checksums(MARIADB_TABLES).await, before);
    mariadb_tcp_logins(b).await;

    // A whole-server dump with A's accounts; B has an account of its own.
    b.sql("CREATE USER 'reporter'@'%' IDENTIFIED BY 'reporter-pw';")
        .await;
    let with = dir.path().join("a-with.sql.gz");
    dump_with_credentials(&ns, "ma", &with);
    assert!(gunzip(&with).contains("USE `mysql`;"));
    let stderr = restore(&ns, "mb", &with, false, 2);
    assert!(stderr.contains("mysql (accounts reporter@%)"), "{stderr}");
    restore(&ns, "mb", &with, true, 0);
    b.sql(reload).await;
    mariadb_tcp_logins(b).await;
    assert_eq!(b.checksums(MARIADB_TABLES).await, before);

    // The same file with an error after A's grant tables were written: the restore
    // fails, and B's accounts are set again in a session of their own.
    let sql = gunzip(&with);
    let end = sql.rfind("\n-- Dump completed").unwrap() + 1;
    restore_fails_and_resets_credentials(&ns, "mb", &broken_dump(&sql, end, dir.path()));
    b.sql(reload).await;
    mariadb_tcp_logins(b).await;

    // One database.
    b.sql("DELETE FROM appdb.texts WHERE id > 10;").await;
    restore_one_database(&ns, "ma", "mb", dir.path());
    assert_eq!(b.checksums(MARIADB_TABLES).await, before);
    mariadb_tcp_logins(b).await;
}

// --- Volume snapshots, on the cluster's CSI StorageClass (tests/cluster/csi). ---

const CSI_CLASS: &str = "csi-hostpath";

/// The writer's table, as the admin SQL script addresses it.
fn writer_table(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "w",
        _ => "appdb.w",
    }
}

fn writer_ddl(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => {
            "CREATE TABLE w (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp());"
        }
        _ => {
            "CREATE TABLE appdb.w (id INT PRIMARY KEY, at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6));"
        }
    }
}

impl Db<'_> {
    /// Starts a writer in the pod: rows `first..first+count` of the writer's table, one
    /// each 20 ms, each committed on its own (the client's autocommit). Runs on in the pod
    /// when the returned stream is dropped, until it has written them all.
    async fn start_writer(&self, first: u32, count: u32) -> exec::Process {
        let script = r#"i=$1; end=$(($1 + $2)); while [ "$i" -lt "$end" ]; do printf 'INSERT INTO %s (id) VALUES (%s);\n' "$3" "$i"; i=$((i + 1)); sleep 0.02; done | sh -c "$4""#;
        let first = first.to_string();
        let count = count.to_string();
        let command = exec::script_command(
            script,
            &[
                &first,
                &count,
                writer_table(self.engine),
                self.engine.sql_script(),
            ],
        );
        let pods: Api<Pod> = self.ns.kube.api();
        exec::start(
            &pods,
            &self.pod,
            Some(self.engine.container_name()),
            &command,
            false,
        )
        .await
        .unwrap()
    }

    /// (count, min id, max id) of the writer's rows below `limit`.
    async fn written(&self, limit: u32) -> (u64, u64, u64) {
        let table = writer_table(self.engine);
        let out = self
            .sql(&format!(
                "SELECT COUNT(*), COALESCE(MIN(id), 0), COALESCE(MAX(id), 0) FROM {table} WHERE id < {limit};"
            ))
            .await;
        let v: Vec<u64> = out.split_whitespace().map(|n| n.parse().unwrap()).collect();
        (v[0], v[1], v[2])
    }

    /// Longest pause between two consecutive writer rows, in seconds.
    async fn longest_pause(&self) -> f64 {
        let table = writer_table(self.engine);
        let sql = match self.engine {
            Engine::Postgres => format!(
                "SELECT COALESCE(MAX(EXTRACT(EPOCH FROM at - prev)), 0) FROM (SELECT at, LAG(at) OVER (ORDER BY id) AS prev FROM {table}) g;"
            ),
            _ => format!(
                "SELECT COALESCE(MAX(TIMESTAMPDIFF(MICROSECOND, prev, at)) / 1e6, 0) FROM (SELECT at, LAG(at) OVER (ORDER BY id) AS prev FROM {table}) g;"
            ),
        };
        self.sql(&sql).await.trim().parse().unwrap()
    }

    async fn wait_written(&self, at_least: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.written(u32::MAX).await.0 < at_least {
            assert!(
                Instant::now() < deadline,
                "the writer never wrote {at_least} rows"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

fn json(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&output.stdout), text(&output.stderr)))
}

/// Snapshot under a writer, more rows after, restore into a new instance: every row
/// committed before the snapshot is there, none written after it, and the copy is healthy.
async fn snapshot_round_trip(engine: Engine, image: &str) {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, &format!("snap-{engine}"), &[]).await;
    let db = Db::deploy_as(&ns, engine, image, "src", &["--storage-class", CSI_CLASS]).await;
    db.sql(writer_ddl(engine)).await;
    let _writer = db.start_writer(1, 4000).await;
    db.wait_written(40).await;

    let before = db.written(u32::MAX).await.2;
    let output = dbbackup(&ns, &["snapshot", "src", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let after = db.written(u32::MAX).await.2;
    let report = json(&output);
    eprintln!("snapshot report: {report}");
    assert_eq!(report["consistency"], "application");
    assert_eq!(report["database"], "src");
    let quiesce = &report["quiesce"];
    assert_eq!(
        quiesce["writes_paused"],
        engine != Engine::Postgres,
        "{report}"
    );
    assert!(quiesce["held_seconds"].as_f64().unwrap() < 10.0, "{report}");
    let name = report["snapshots"][0]["name"].as_str().unwrap().to_string();
    assert_eq!(report["snapshots"][0]["pvc"], "data-src-0");
    assert_eq!(report["snapshots"][0]["ready"], true);

    // The writer goes on: rows after the snapshot, and it was never held up for long.
    db.wait_written(after + 30).await;
    let pause = db.longest_pause().await;
    assert!(pause < 10.0, "writes stopped for {pause}s");

    // list: table and JSON.
    let output = dbbackup(&ns, &["snapshot", "list", "src", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let list = json(&output);
    assert_eq!(list["kind"], "SnapshotList", "{list}");
    let list = &list["items"];
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], name.as_str());
    assert_eq!(list[0]["ready"], true);
    assert_eq!(list[0]["consistency"], "application");
    assert_eq!(list[0]["engine"], engine.as_str());
    let output = dbbackup(&ns, &["snapshot", "list"]);
    let table = text(&output.stdout);
    assert!(
        table.contains("CONSISTENT") && table.contains(&name) && table.contains("application"),
        "{table}"
    );

    // dbcheck of the source names its newest snapshot.
    let output = ns
        .bin("kubectl-dbcheck")
        .args(["src", "-o", "json"])
        .output()
        .unwrap();
    let check = json(&output);
    let newest = check["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "snapshot.newest")
        .unwrap()
        .clone();
    assert_eq!(newest["verdict"], "ok", "{newest}");
    assert!(
        newest["evidence"].as_str().unwrap().contains(&name),
        "{newest}"
    );

    // Restore into a new instance.
    let output = ns
        .bin("kubectl-dbdeploy")
        .args([
            engine.as_str(),
            "--name",
            "copy",
            "--image",
            image,
            "--timeout",
            "4m",
        ])
        .args(SMALL)
        .args(["--from-snapshot", &name, "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(json(&output)["from_snapshot"], name.as_str());
    let copy = Db {
        ns: &ns,
        engine,
        pod: "copy-0".into(),
    };
    let (count, min, max) = copy.written(u32::MAX).await;
    eprintln!("{engine}: before {before}, restored {count} rows ({min}..={max}), after {after}");
    assert!(
        count > 0 && min == 1 && max == count,
        "not a prefix: {count} rows {min}..={max}"
    );
    assert!(
        before <= max && max <= after,
        "{before} <= {max} <= {after}"
    );
    let output = ns
        .bin("kubectl-dbcheck")
        .args(["copy", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert_eq!(json(&output)["summary"]["fail"], 0);
    let pods: Api<Pod> = ns.kube.api();
    let log = pods.logs("copy-0", &Default::default()).await.unwrap();
    let recovery: Vec<&str> = log
        .lines()
        .filter(|l| {
            [
                "recovery",
                "redo",
                "not properly shut down",
                "crash",
                "InnoDB: Starting",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .collect();
    eprintln!(
        "{engine} copy's server log on start:\n{}",
        recovery.join("\n")
    );
    // The original is untouched: still there, still written to.
    assert!(db.written(u32::MAX).await.0 > after);

    // delete: ours, and a hand-made one only with --any.
    let output = dbbackup(&ns, &["snapshot", "delete", &name, "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(json(&output)["name"], name.as_str());
    no_snapshots_left(&ns).await;
}

/// Waits until `snapshot list` is empty (a deleted VolumeSnapshot goes once its
/// finalizers are done).
async fn no_snapshots_left(ns: &TestNamespace) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = json(&dbbackup(ns, &["snapshot", "list", "-o", "json"]));
        if list["items"] == serde_json::json!([]) {
            return;
        }
        assert!(Instant::now() < deadline, "snapshots left: {list}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_snapshot_holds_what_was_committed_before_it() {
    snapshot_round_trip(Engine::Postgres, &common::postgres_image()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_snapshot_holds_what_was_committed_before_it() {
    snapshot_round_trip(Engine::Mariadb, &common::mariadb_image()).await;
}

/// Names of the VolumeSnapshots in the namespace, as `snapshot list --all` shows them.
fn snapshot_names(ns: &TestNamespace) -> Vec<String> {
    let list = json(&dbbackup(ns, &["snapshot", "list", "--all", "-o", "json"]));
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

/// Starts `snapshot src` and returns once its VolumeSnapshot exists, i.e. while the read
/// lock is held and the driver copies the volume (the data makes that take seconds).
async fn snapshot_holding_the_lock(ns: &TestNamespace) -> std::process::Child {
    let before = snapshot_names(ns);
    let child = ns.spawn("kubectl-dbbackup", &["snapshot", "src"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while snapshot_names(ns).len() == before.len() {
        assert!(Instant::now() < deadline, "no VolumeSnapshot was created");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child
}

/// A write from another session, in the background; returns when it completed.
fn write_in_background(pods: &Api<Pod>, id: u32) -> tokio::task::JoinHandle<Instant> {
    let pods = pods.clone();
    tokio::spawn(async move {
        let command = vec![
            "sh".into(),
            "-c".into(),
            Engine::Mariadb.sql_script().into(),
        ];
        let sql = format!("INSERT INTO appdb.w (id) VALUES ({id});");
        let out = exec::run(
            &pods,
            "src-0",
            Some("mariadb"),
            &command,
            Some(sql.as_bytes()),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
        assert!(out.status.success(), "{}", out.stderr_text());
        Instant::now()
    })
}

fn finish(mut child: std::process::Child) -> (Option<i32>, String) {
    let code = child.wait().unwrap().code();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (code, stderr)
}

/// The read lock is released: a write issued while the snapshot is being cut completes
/// right after the cut, and right after a SIGTERM to the snapshot command mid-wait (which
/// then deletes the snapshot it had created and exits 130).
#[tokio::test(flavor = "multi_thread")]
async fn the_read_lock_is_released_after_the_cut_and_on_sigterm() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "snap-lock", &[]).await;
    let image = common::mariadb_image();
    let db = Db::deploy_as(
        &ns,
        Engine::Mariadb,
        &image,
        "src",
        &["--storage-class", CSI_CLASS],
    )
    .await;
    db.sql(writer_ddl(Engine::Mariadb)).await;
    // ~250 MB the driver copies while the lock is held: a cut of a few seconds.
    db.sql("USE appdb; CREATE TABLE appdb.big (id INT PRIMARY KEY, v LONGBLOB); INSERT INTO appdb.big SELECT seq, REPEAT(MD5(seq), 31250) FROM seq_1_to_250;")
        .await;
    let pods: Api<Pod> = ns.kube.api();

    let snapshot = snapshot_holding_the_lock(&ns).await;
    let write = write_in_background(&pods, 1);
    let (code, stderr) = finish(snapshot);
    let exited = Instant::now();
    assert_eq!(code, Some(0), "{stderr}");
    let written = write.await.unwrap();
    assert!(
        written < exited + Duration::from_secs(5),
        "the write completed {:?} after the snapshot",
        written.saturating_duration_since(exited)
    );

    let snapshot = snapshot_holding_the_lock(&ns).await;
    let write = write_in_background(&pods, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let blocked = !write.is_finished();
    let signalled = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &snapshot.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, stderr) = finish(snapshot);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    let written = write.await.unwrap();
    let after = written.saturating_duration_since(signalled);
    assert!(
        after < Duration::from_secs(5),
        "the write waited {after:?} after SIGTERM"
    );
    eprintln!(
        "write held by the lock until SIGTERM: {blocked}; completed {after:?} after it\n{stderr}"
    );
    assert!(
        blocked,
        "the write was not held by the lock: the cut was too fast to signal mid-wait"
    );
    // The interrupted run's snapshot is being deleted (the snapshot-controller lets it go
    // once the driver's copy is done); the first one stays.
    let snapshots: Api<kube::api::DynamicObject> = Api::namespaced_with(
        ns.kube.client.clone(),
        &ns.name,
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "snapshot.storage.k8s.io",
            "v1",
            "VolumeSnapshot",
        )),
    );
    let list = snapshots.list(&Default::default()).await.unwrap();
    let kept: Vec<_> = list
        .items
        .iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .collect();
    assert_eq!(kept.len(), 1, "{:?}", snapshot_names(&ns));
}

/// Clear messages and documented exit codes; nothing is created by a refusal.
#[tokio::test(flavor = "multi_thread")]
async fn snapshot_errors() {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, "snap-err", &[]).await;
    let image = common::postgres_image();
    let _db = Db::deploy_as(
        &ns,
        Engine::Postgres,
        &image,
        "src",
        &["--storage-class", CSI_CLASS],
    )
    .await;

    let output = dbbackup(&ns, &["snapshot", "src", "--class", "no-such-class"]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("VolumeSnapshotClass no-such-class does not exist"),
        "{}",
        text(&output.stderr)
    );

    // A database pod with no PVC.
    let pods: Api<Pod> = ns.kube.api();
    let bare: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bare"},
        "spec": {"containers": [{"name": "postgres", "image": image, "command": ["sleep", "600"]}]}
    }))
    .unwrap();
    pods.create(&Default::default(), &bare).await.unwrap();
    let output = dbbackup(&ns, &["snapshot", "bare"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("has no PersistentVolumeClaim"),
        "{}",
        text(&output.stderr)
    );

    // --from-snapshot of a missing snapshot, and of one that is not ready (its PVC does
    // not exist, so it is never cut).
    let deploy_from = |snap: &str| {
        ns.bin("kubectl-dbdeploy")
            .args(["postgres", "--name", "copy", "--image", &image])
            .args(SMALL)
            .args(["--from-snapshot", snap])
            .output()
            .unwrap()
    };
    let output = deploy_from("missing");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("VolumeSnapshot"),
        "{}",
        text(&output.stderr)
    );
    assert!(
        text(&output.stderr).contains("missing does not exist"),
        "{}",
        text(&output.stderr)
    );
    let snapshots: Api<kube::api::DynamicObject> = Api::namespaced_with(
        ns.kube.client.clone(),
        &ns.name,
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "snapshot.storage.k8s.io",
            "v1",
            "VolumeSnapshot",
        )),
    );
    let pending: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": "pending", "labels": {
            "app.kubernetes.io/managed-by": "kubectl-dbbackup",
            "app.kubernetes.io/instance": "src",
            "app.kubernetes.io/name": "postgresql"},
            "annotations": {"kubectl-db.io/engine-version": "15.14",
                            "kubectl-db.io/consistency": "application"}},
        "spec": {"source": {"persistentVolumeClaimName": "no-such-claim"}}
    }))
    .unwrap();
    snapshots
        .create(&Default::default(), &pending)
        .await
        .unwrap();
    let output = deploy_from("pending");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("not ready"),
        "{}",
        text(&output.stderr)
    );
    // Nothing was created by either refusal.
    let sets: Api<k8s_openapi::api::apps::v1::StatefulSet> = ns.kube.api();
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = ns.kube.api();
    assert!(sets.get_opt("copy").await.unwrap().is_none());
    assert!(claims.get_opt("data-copy-0").await.unwrap().is_none());

    // delete: a snapshot this tool did not take only with --any; a missing one is exit 3.
    let mut by_hand = pending.clone();
    by_hand.metadata.name = Some("by-hand".into());
    by_hand.metadata.labels = None;
    snapshots
        .create(&Default::default(), &by_hand)
        .await
        .unwrap();
    let output = dbbackup(&ns, &["snapshot", "delete", "by-hand"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("--any"),
        "{}",
        text(&output.stderr)
    );
    let output = dbbackup(&ns, &["snapshot", "delete", "by-hand", "--any"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let output = dbbackup(&ns, &["snapshot", "delete", "by-hand"]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
}
