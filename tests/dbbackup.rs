//! `kubectl dbbackup` on the local cluster: round trips for PostgreSQL and MariaDB (binary
//! and non-ASCII data, row counts and content checksums), a dump cut off by the pod's
//! deletion, truncated files refused by `verify` and `restore`, and the snapshot API's
//! absence. Plus the usage errors that never reach the API.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::TestNamespace;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;
use kubectl_db::engine::Engine;
use kubectl_db::exec;
use serde_json::Value;

use common::SMALL;

struct Db<'a> {
    ns: &'a TestNamespace,
    engine: Engine,
    pod: String,
}

impl<'a> Db<'a> {
    async fn deploy(ns: &'a TestNamespace, engine: Engine, image: &str) -> Db<'a> {
        let output = ns
            .bin("kubectl-dbdeploy")
            .args([engine.as_str(), "--image", image, "--timeout", "4m"])
            .args(SMALL)
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "dbdeploy: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Db {
            ns,
            engine,
            pod: format!("{}-0", engine.as_str()),
        }
    }

    /// Runs a shell script in the database container; panics unless it exits 0.
    async fn shell(&self, script: &str, stdin: &str) -> String {
        let pods: Api<Pod> = self.ns.kube.api();
        let command = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        let output = exec::run(
            &pods,
            &self.pod,
            Some(self.engine.container_name()),
            &command,
            Some(stdin.as_bytes()),
            Duration::from_secs(300),
        )
        .await
        .unwrap();
        assert!(
            output.status.success(),
            "{script}: {} {}",
            output.status,
            output.stderr_text()
        );
        output.stdout_text()
    }

    /// SQL as the admin user in the application database (appdb for postgres).
    async fn sql(&self, sql: &str) -> String {
        self.shell(self.engine.sql_script(), sql).await
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

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Dumps to `file` and returns the report.
fn dump_json(ns: &TestNamespace, target: &str, file: &Path, compress: &str) -> Value {
    let output = dbbackup(
        ns,
        &[
            target,
            "-f",
            &file.display().to_string(),
            "--compress",
            compress,
            "-o",
            "json",
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "dump failed: {}",
        text(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn verify_code(file: &Path) -> (Option<i32>, String) {
    let output = common::clean_bin("kubectl-dbbackup")
        .args(["verify", &file.display().to_string()])
        .output()
        .unwrap();
    (output.status.code(), text(&output.stdout))
}

fn sha256_line(file: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(file).unwrap());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}  {}\n", file.file_name().unwrap().to_string_lossy())
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
    assert_eq!(report["kind"], "postgres-cluster");
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
    dump_json(&ns, "postgres-0", &zst, "zstd");
    assert_eq!(verify_code(&zst).0, Some(0));
    let plain = dir.path().join("pg.sql");
    dump_json(&ns, "postgres-0", &plain, "none");
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
        serde_json::from_slice::<Value>(&output.stdout).unwrap()["kind"],
        "postgres-database"
    );
    assert_eq!(verify_code(&one).0, Some(0));

    // The test cluster has no snapshot CRDs: a clear message, exit 3.
    let output = dbbackup(&ns, &["snapshot", "postgres"]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("no VolumeSnapshot API"),
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
    assert_eq!(report["kind"], "mysql");
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
    dump_json(&ns, "mariadb", &empty, "none");
    assert_eq!(verify_code(&empty).0, Some(0));
    assert!(
        !std::fs::read_to_string(&empty)
            .unwrap()
            .contains("CREATE TABLE")
    );
    let output = dbbackup(
        &ns,
        &["restore", "mariadb-0", "-f", &file.display().to_string()],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(db.checksums(MARIADB_TABLES).await, before);

    truncated_files_are_refused(&ns, "mariadb", &file, dir.path());

    // A PostgreSQL dump is refused by a MariaDB server before anything is sent.
    let pg = dir.path().join("pg.sql");
    std::fs::write(&pg, "--\n-- PostgreSQL database cluster dump\n--\n\nSELECT 1;\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n").unwrap();
    std::fs::write(format!("{}.sha256", pg.display()), sha256_line(&pg)).unwrap();
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
    // ~200 MB of rows, so the dump is still streaming when the pod goes.
    db.sql("CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 30) AS s FROM generate_series(1, 200000) g;").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cut.sql");
    let partial = dir.path().join("cut.sql.partial");

    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kubectl-dbbackup"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KUBECONFIG", &ns.kubeconfig)
        .args([
            "-n",
            &ns.name,
            "postgres",
            "--compress",
            "none",
            "-f",
            &file.display().to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < 4 << 20 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the dump never started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the dump ended before the pod was deleted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A grace period of 1, not 0: a forced deletion lets the replacement pod start while
    // the old postmaster still runs on the same volume (and corrupts it).
    let pods: Api<Pod> = ns.kube.api();
    pods.delete(
        "postgres-0",
        &DeleteParams {
            grace_period_seconds: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("failed to dump pod"), "{stderr}");
    assert!(
        !file.exists(),
        "a cut-off dump appeared under the final name"
    );
    assert!(!partial.exists(), "the .partial file was left behind");
    assert!(!dir.path().join("cut.sql.sha256").exists());
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

/// The names in a directory, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Starts a dump of `target` to `file` with extra flags, without waiting.
fn spawn_dump(
    ns: &TestNamespace,
    target: &str,
    file: &Path,
    extra: &[&str],
) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("kubectl-dbbackup"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KUBECONFIG", &ns.kubeconfig)
        .args(["-n", &ns.name, target, "-f", &file.display().to_string()])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
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
    assert_eq!(names_in(dir.path()), ["d.sql.gz.sha256", "precious"]);

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
        ["d.sql.gz", "d.sql.gz.sha256", "precious"]
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
        assert_eq!(names_in(race.path()), ["r.sql.gz", "r.sql.gz.sha256"]);
    }
}

/// Deploys `names` of one engine at the same time (each deploy waits for its pod).
fn deploy_all<'a>(
    ns: &'a TestNamespace,
    engine: Engine,
    image: &str,
    names: &[&str],
) -> Vec<Db<'a>> {
    let children: Vec<_> = names
        .iter()
        .map(|name| {
            spawn_bin(
                ns,
                "kubectl-dbdeploy",
                &[
                    &[
                        engine.as_str(),
                        "--name",
                        name,
                        "--image",
                        image,
                        "--timeout",
                        "6m",
                    ],
                    SMALL,
                ]
                .concat(),
            )
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "dbdeploy: {}",
            text(&output.stderr)
        );
    }
    names
        .iter()
        .map(|name| Db {
            ns,
            engine,
            pod: format!("{name}-0"),
        })
        .collect()
}

/// A binary of this package, started in the background with a clean environment.
fn spawn_bin(ns: &TestNamespace, name: &str, args: &[&str]) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin(name))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir().join("kdb-test-home"))
        .env("NO_COLOR", "1")
        .env("KUBECONFIG", &ns.kubeconfig)
        .args(["-n", &ns.name])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `kubectl dbbackup ARGS` and returns its output and its peak RSS in KiB (VmHWM,
/// sampled from /proc while it runs).
fn dbbackup_peak_rss(ns: &TestNamespace, args: &[&str]) -> (std::process::Output, u64) {
    let mut child = spawn_bin(ns, "kubectl-dbbackup", args);
    let status = format!("/proc/{}/status", child.id());
    // Drain the pipes meanwhile, so a chatty child never blocks on them.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).unwrap();
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut buf).unwrap();
        buf
    });
    let mut peak = 0u64;
    let exit = loop {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::process::Output {
        status: exit,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    (output, peak)
}

/// Reads a key of a Secret.
async fn secret_value(ns: &TestNamespace, name: &str, key: &str) -> Vec<u8> {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = ns.kube.api();
    let secret = secrets.get(name).await.unwrap();
    secret.data.unwrap()[key].0.clone()
}

/// The SQL text inside a gzip dump.
fn gunzip(file: &Path) -> String {
    let mut sql = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(file).unwrap()),
        &mut sql,
    )
    .unwrap();
    String::from_utf8_lossy(&sql).into_owned()
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

/// Logs in over TCP with the pod's own Secret values (as an application would).
async fn pg_tcp_login(db: &Db<'_>) {
    let out = db
        .shell(
            r#"PGPASSWORD="$POSTGRES_PASSWORD" psql -X -w -h 127.0.0.1 -U "$POSTGRES_USER" -d appdb -tAc 'SELECT current_user'"#,
            "",
        )
        .await;
    assert_eq!(out.trim(), "appuser");
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
    let dbs = deploy_all(
        &ns,
        Engine::Postgres,
        &common::postgres_image(),
        &["pga", "pgb"],
    );
    let (a, b) = (&dbs[0], &dbs[1]);
    assert_ne!(
        secret_value(&ns, "pga-secret", "POSTGRES_PASSWORD").await,
        secret_value(&ns, "pgb-secret", "POSTGRES_PASSWORD").await
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
    let output = dbbackup(&ns, &["restore", "pgb", "-f", &file.display().to_string()]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("postgres"),
        "{}",
        text(&output.stderr)
    );

    let (output, peak_kib) = dbbackup_peak_rss(
        &ns,
        &["restore", "pgb", "-f", &file.display().to_string(), "--yes"],
    );
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
    let output = dbbackup(
        &ns,
        &[
            "pga",
            "--with-credentials",
            "-f",
            &with.display().to_string(),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(gunzip(&with).contains("SCRAM-SHA-256$"));
    let output = dbbackup(
        &ns,
        &["restore", "pgb", "-f", &with.display().to_string(), "--yes"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
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
    let broken = dir.path().join("a-broken.sql");
    std::fs::write(
        &broken,
        [
            &sql[..after],
            "SELECT kdb_fails_on_purpose();\n",
            &sql[after..],
        ]
        .concat(),
    )
    .unwrap();
    drop(sql);
    std::fs::write(format!("{}.sha256", broken.display()), sha256_line(&broken)).unwrap();
    let started = Instant::now();
    let output = dbbackup(
        &ns,
        &[
            "restore",
            "pgb",
            "-f",
            &broken.display().to_string(),
            "--yes",
            "--timeout",
            "5m",
        ],
    );
    let took = started.elapsed();
    let stderr = text(&output.stderr);
    eprintln!("restore stopped early by psql: exit 1 after {took:?}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(60), "took {took:?}: {stderr}");
    assert!(
        stderr.contains("remote exit status 3")
            && stderr.contains("function kdb_fails_on_purpose() does not exist"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the target's own credentials were set again"),
        "{stderr}"
    );
    pg_tcp_login(b).await;

    // One database (pg_dump --create) restores over the existing one.
    b.sql("UPDATE notes SET s = 'changed';").await;
    let one = dir.path().join("a-appdb.sql.gz");
    let output = dbbackup(
        &ns,
        &[
            "pga",
            "--database",
            "appdb",
            "-f",
            &one.display().to_string(),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let output = dbbackup(
        &ns,
        &["restore", "pgb", "-f", &one.display().to_string(), "--yes"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(b.sql(PG_TRICKY_FINGERPRINT).await, expected);
    pg_tcp_login(b).await;
}

/// Logs in over TCP as root and as the app user with the pod's own Secret values.
async fn mariadb_tcp_logins(db: &Db<'_>) {
    let root = db
        .shell(
            r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" mariadb -h 127.0.0.1 -uroot -N -B -e 'SELECT CURRENT_USER()'"#,
            "",
        )
        .await;
    assert!(root.trim().starts_with("root@"), "{root}");
    let app = db
        .shell(
            r#"MYSQL_PWD="$MYSQL_PASSWORD" mariadb -h 127.0.0.1 -u"$MYSQL_USER" -N -B -e 'SELECT COUNT(*) FROM appdb.texts'"#,
            "",
        )
        .await;
    assert_eq!(app.trim(), "20000");
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
    let dbs = deploy_all(
        &ns,
        Engine::Mariadb,
        &common::mariadb_image(),
        &["ma", "mb"],
    );
    let (a, b) = (&dbs[0], &dbs[1]);
    for key in ["MYSQL_ROOT_PASSWORD", "MYSQL_PASSWORD"] {
        assert_ne!(
            secret_value(&ns, "ma-secret", key).await,
            secret_value(&ns, "mb-secret", key).await
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
    let output = dbbackup(&ns, &["restore", "mb", "-f", &file.display().to_string()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    b.sql(reload).await;
    assert_eq!(b.checksums(MARIADB_TABLES).await, before);
    mariadb_tcp_logins(b).await;

    // A whole-server dump with A's accounts; B has an account of its own.
    b.sql("CREATE USER 'reporter'@'%' IDENTIFIED BY 'reporter-pw';")
        .await;
    let with = dir.path().join("a-with.sql.gz");
    let output = dbbackup(
        &ns,
        &[
            "ma",
            "--with-credentials",
            "-f",
            &with.display().to_string(),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(gunzip(&with).contains("USE `mysql`;"));
    let output = dbbackup(&ns, &["restore", "mb", "-f", &with.display().to_string()]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("mysql (accounts reporter@%)"),
        "{}",
        text(&output.stderr)
    );
    let output = dbbackup(
        &ns,
        &["restore", "mb", "-f", &with.display().to_string(), "--yes"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    b.sql(reload).await;
    mariadb_tcp_logins(b).await;
    assert_eq!(b.checksums(MARIADB_TABLES).await, before);

    // The same file with an error after A's grant tables were written: the restore
    // fails, and B's accounts are set again in a session of their own.
    let sql = gunzip(&with);
    let end = sql.rfind("\n-- Dump completed").unwrap() + 1;
    let broken = dir.path().join("a-broken.sql");
    std::fs::write(
        &broken,
        [&sql[..end], "SELECT kdb_fails_on_purpose();\n", &sql[end..]].concat(),
    )
    .unwrap();
    std::fs::write(format!("{}.sha256", broken.display()), sha256_line(&broken)).unwrap();
    let output = dbbackup(
        &ns,
        &[
            "restore",
            "mb",
            "-f",
            &broken.display().to_string(),
            "--yes",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("the target's own credentials were set again"),
        "{}",
        text(&output.stderr)
    );
    b.sql(reload).await;
    mariadb_tcp_logins(b).await;

    // One database.
    b.sql("DELETE FROM appdb.texts WHERE id > 10;").await;
    let one = dir.path().join("a-appdb.sql.gz");
    let output = dbbackup(
        &ns,
        &[
            "ma",
            "--database",
            "appdb",
            "-f",
            &one.display().to_string(),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let output = dbbackup(
        &ns,
        &["restore", "mb", "-f", &one.display().to_string(), "--yes"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(b.checksums(MARIADB_TABLES).await, before);
    mariadb_tcp_logins(b).await;
}
