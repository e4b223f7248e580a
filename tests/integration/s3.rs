//! `dbbackup -f s3://...` against the local S3 server (tests/cluster/cluster.sh s3-up,
//! versitygw): round trips with Korean text and binary data, `list`, `verify` and `restore`
//! from the object, a dump cut mid-stream that leaves no object and no multipart upload,
//! and the one-line exit-3 errors (wrong credentials, missing bucket, unreachable endpoint).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;
use kubectl_db::engine::Engine;
use kubectl_db::exec;
use serde_json::Value;

use crate::common::{self, TestNamespace, text};

/// The local S3 server, from the env file s3-up writes.
pub(crate) struct S3 {
    vars: HashMap<String, String>,
}

impl S3 {
    /// The server when it runs; otherwise skip (or fail under `KDB_REQUIRE_CLUSTER=1`).
    pub(crate) fn running() -> Option<S3> {
        let state = std::env::var("KDB_CLUSTER_STATE")
            .unwrap_or_else(|_| "/var/tmp/kubectl-db-cluster".into());
        let env = PathBuf::from(state).join("s3/env");
        let vars: HashMap<String, String> = std::fs::read_to_string(&env)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let s3 = S3 { vars };
        let up = s3.vars.contains_key("S3_ENDPOINT")
            && Command::new("curl")
                .args(["-fsS", "-o", "/dev/null", "--max-time", "5"])
                .arg(format!("{}/health", s3.var("S3_ENDPOINT")))
                .status()
                .is_ok_and(|s| s.success());
        if up {
            return Some(s3);
        }
        let reason = format!(
            "the S3 server is not running ({} missing or not answering): run tests/cluster/cluster.sh s3-up",
            env.display()
        );
        if std::env::var("KDB_REQUIRE_CLUSTER").as_deref() == Ok("1") {
            panic!("KDB_REQUIRE_CLUSTER=1 but {reason}");
        }
        eprintln!("skipped: {reason}");
        None
    }

    fn var(&self, name: &str) -> &str {
        self.vars.get(name).map(String::as_str).unwrap_or_default()
    }

    /// The AWS variables a user would set for this server.
    pub(crate) fn configure(&self, cmd: &mut assert_cmd::Command) {
        cmd.env("AWS_ACCESS_KEY_ID", self.var("S3_ACCESS_KEY_ID"))
            .env("AWS_SECRET_ACCESS_KEY", self.var("S3_SECRET_ACCESS_KEY"))
            .env("AWS_REGION", self.var("S3_REGION"))
            .env("AWS_ENDPOINT_URL", self.var("S3_ENDPOINT"));
    }

    /// A signed request by curl (the credentials go through its stdin, not its argv);
    /// returns the HTTP status and body.
    fn request(&self, method: &str, path: &str) -> (u16, String) {
        let mut child = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "-w",
                "\n%{http_code}",
                "-X",
                method,
            ])
            .arg("--aws-sigv4")
            .arg(format!("aws:amz:{}:s3", self.var("S3_REGION")))
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-K", "-"])
            .arg(format!("{}{path}", self.var("S3_ENDPOINT")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl runs");
        let user = format!(
            "user = \"{}:{}\"\n",
            self.var("S3_ACCESS_KEY_ID"),
            self.var("S3_SECRET_ACCESS_KEY")
        );
        child
            .stdin
            .take()
            .unwrap()
            .write_all(user.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let body = text(&out.stdout);
        let (body, code) = body.rsplit_once('\n').unwrap_or(("", &body));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// A new, empty bucket.
    pub(crate) fn bucket(&self, prefix: &str) -> String {
        let name = format!("kdb-{prefix}-{}", rand::random::<u32>() % 100_000);
        let (code, body) = self.request("PUT", &format!("/{name}"));
        assert_eq!(code, 200, "create bucket {name}: {body}");
        name
    }

    /// Every key in the bucket.
    pub(crate) fn keys(&self, bucket: &str) -> Vec<String> {
        let (code, body) = self.request("GET", &format!("/{bucket}?list-type=2"));
        assert_eq!(code, 200, "{body}");
        elements(&body, "Key")
    }

    /// Keys of the multipart uploads not completed nor aborted.
    pub(crate) fn uploads(&self, bucket: &str) -> Vec<String> {
        let (code, body) = self.request("GET", &format!("/{bucket}?uploads="));
        assert_eq!(code, 200, "{body}");
        elements(&body, "Key")
    }
}

/// The text of every `<name>` element (S3's XML is flat enough for this).
fn elements(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|part| part.split_once(&close).map(|(v, _)| v.to_string()))
        .collect()
}

pub(crate) fn dbbackup(s3: &S3, ns: &TestNamespace, args: &[&str]) -> (i32, String, String) {
    let mut cmd = ns.bin("kubectl-dbbackup");
    s3.configure(&mut cmd);
    common::output(cmd.args(args))
}

/// `SET NAMES`: the mysql client's default character set would mangle the Korean text.
fn data_sql(engine: Engine) -> (&'static str, &'static str) {
    match engine {
        Engine::Postgres => (
            "CREATE TABLE t (id int PRIMARY KEY, name text, data bytea); \
             INSERT INTO t VALUES (1, '한국어 텍스트', decode('00ff0a0d5c27e2809c', 'hex')), (2, 'second', '\\x00');",
            "SELECT string_agg(id || ' ' || upper(encode(convert_to(name, 'UTF8'), 'hex')) || ' ' || upper(encode(data, 'hex')), ',' ORDER BY id) FROM t;",
        ),
        _ => (
            "SET NAMES utf8mb4; CREATE TABLE appdb.t (id INT PRIMARY KEY, name VARCHAR(40) CHARACTER SET utf8mb4, data BLOB); \
             INSERT INTO appdb.t VALUES (1, '한국어 텍스트', UNHEX('00FF0A0D5C27E2809C')), (2, 'second', UNHEX('00'));",
            "SELECT GROUP_CONCAT(CONCAT(id, ' ', HEX(name), ' ', HEX(data)) ORDER BY id) FROM appdb.t;",
        ),
    }
}

const EXPECTED: &str =
    "1 ED959CEAB5ADEC96B420ED858DEC8AA4ED8AB8 00FF0A0D5C27E2809C,2 7365636F6E64 00";

async fn round_trip(engine: Engine) {
    let kubeconfig = require_cluster!();
    let Some(s3) = S3::running() else { return };
    let ns = TestNamespace::create(&kubeconfig, "s3", &[]).await;
    common::assert_exit(
        ns.bin("kubectl-dbdeploy").args(common::deploy_args(engine)),
        0,
    );
    let pod = format!("{}-0", engine.as_str());
    let (create, query) = data_sql(engine);
    common::sql(&ns, engine, &pod, create).await;
    let before = common::sql(&ns, engine, &pod, query).await;
    assert_eq!(before.trim(), EXPECTED);

    let bucket = s3.bucket("rt");
    let prefix = format!("s3://{bucket}/nightly/");
    // A prefix gets the default file name; KEY.sha256 and KEY.manifest.json land beside it.
    let (code, out, err) = dbbackup(&s3, &ns, &[engine.as_str(), "-f", &prefix, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let object = report["file"].as_str().unwrap().to_string();
    assert!(
        object.starts_with(&prefix) && object.ends_with(".sql.gz"),
        "{object}"
    );
    assert_eq!(report["checksum_file"], format!("{object}.sha256"));
    let key = object
        .trim_start_matches(&format!("s3://{bucket}/"))
        .to_string();
    assert_eq!(
        s3.keys(&bucket),
        [
            key.clone(),
            format!("{key}.manifest.json"),
            format!("{key}.sha256")
        ]
    );
    assert_eq!(report["manifest_file"], format!("{object}.manifest.json"));
    assert!(s3.uploads(&bucket).is_empty());

    // list shows it; verify reads it.
    let (code, out, err) = dbbackup(&s3, &ns, &["list", &prefix, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let entry = &listed["backups"][0];
    assert_eq!(entry["file"], key.rsplit('/').next().unwrap());
    assert_eq!(entry["checksum"], "present");
    assert_eq!(entry["compression"], "gzip");
    let family = if engine == Engine::Postgres {
        "PostgreSQL"
    } else {
        "MySQL/MariaDB"
    };
    assert_eq!(entry["engine"], family);
    let (code, out, _) = dbbackup(&s3, &ns, &["list", &prefix]);
    assert_eq!(code, 0);
    assert!(
        out.trim_start().starts_with("FILE") && out.contains("present"),
        "{out}"
    );
    let (code, out, err) = dbbackup(&s3, &ns, &["verify", &object, "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["ok"], true);
    // --deep reads the manifest object: the table and its rows.
    let (code, out, err) = dbbackup(&s3, &ns, &["verify", "--deep", &object, "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let deep: Value = serde_json::from_str(&out).unwrap();
    let tables: Vec<&Value> = deep["manifest"]["databases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|db| db["tables"].as_array().unwrap())
        .collect();
    assert!(
        tables
            .iter()
            .any(|t| (t["name"] == "public.t" || t["name"] == "t") && t["rows"] == 2),
        "{out}"
    );

    // The same key again: refused without --force, before anything runs.
    let (code, _, err) = dbbackup(&s3, &ns, &[engine.as_str(), "-f", &object]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already exists"), "{err}");

    // Change the data, restore from the object, and the rows are back byte for byte.
    let change = match engine {
        Engine::Postgres => "DELETE FROM t; INSERT INTO t VALUES (9, 'changed', NULL);",
        _ => "DELETE FROM appdb.t; INSERT INTO appdb.t VALUES (9, 'changed', NULL);",
    };
    common::sql(&ns, engine, &pod, change).await;
    let (code, _, err) = dbbackup(
        &s3,
        &ns,
        &["restore", engine.as_str(), "-f", &object, "--yes"],
    );
    assert_eq!(code, 0, "{err}");
    let after = common::sql(&ns, engine, &pod, query).await;
    assert_eq!(after.trim(), EXPECTED);

    // A dump that cannot be written: exit 3, nothing under the key, no upload left.
    let (code, _, err) = dbbackup(
        &s3,
        &ns,
        &[
            engine.as_str(),
            "-f",
            &format!("s3://kdb-no-such-bucket-{}/x.sql.gz", std::process::id()),
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("does not exist"), "{err}");
    let mut cmd = ns.bin("kubectl-dbbackup");
    s3.configure(&mut cmd);
    cmd.env("AWS_SECRET_ACCESS_KEY", "wrong-secret");
    let (code, _, err) = common::output(cmd.args([
        engine.as_str(),
        "-f",
        &format!("s3://{bucket}/denied.sql.gz"),
    ]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(!err.contains("wrong-secret"), "{err}");
    assert_eq!(
        s3.keys(&bucket),
        [
            key.clone(),
            format!("{key}.manifest.json"),
            format!("{key}.sha256")
        ]
    );
    assert_eq!(report["manifest_file"], format!("{object}.manifest.json"));
    assert!(s3.uploads(&bucket).is_empty());

    if engine == Engine::Postgres {
        // A drill straight from the object: its manifest object says what must come back.
        let (code, out, err) = dbbackup(
            &s3,
            &ns,
            &["drill", &object, "--timeout", "5m", "-o", "json"],
        );
        assert_eq!(code, 0, "{out}{err}");
        let drill: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(drill["passed"], true, "{drill:#}");
        assert_eq!(drill["file"], object.as_str());
        cut_dump_leaves_nothing(&s3, &ns, &bucket).await;
    }
}

/// Freezes pg_dump (SIGSTOP) once it has written 40 MiB: more than two of the upload's
/// parts, and far from the end of the ~200 MB dump, so the dump cannot finish before the
/// pod goes (with SIGTERM, postgres lets open sessions run on). Prints `stopped`.
const FREEZE_PG_DUMP: &str = r#"i=0
while [ "$i" -lt 1200 ]; do
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = pg_dump ] || continue
    w=0
    while read -r k v; do [ "$k" = wchar: ] && w=$v; done < "$p/io"
    if [ "$w" -ge 41943040 ]; then kill -STOP "${p#/proc/}" && echo stopped && exit 0; fi
  done
  sleep 0.05
  i=$((i + 1))
done
echo "pg_dump did not write 40 MiB within a minute" >&2
exit 1"#;

/// The pod goes mid-stream: the upload is aborted, no object, no parts.
async fn cut_dump_leaves_nothing(s3: &S3, ns: &TestNamespace, bucket: &str) {
    // ~200 MB of rows, so the dump is still streaming when the pod goes.
    common::sql(ns, Engine::Postgres, "postgres-0", "CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 30) AS s FROM generate_series(1, 200000) g;").await;
    let pods: Api<Pod> = ns.kube.api();
    let freezer = {
        let pods = pods.clone();
        let command = ["sh", "-c", FREEZE_PG_DUMP].map(String::from).to_vec();
        tokio::spawn(async move {
            let container = Some(Engine::Postgres.container_name());
            exec::run(
                &pods,
                "postgres-0",
                container,
                &command,
                None,
                Duration::from_secs(120),
            )
            .await
        })
    };
    // The freezer's exec is up well before the dump's pg_dump starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let object = format!("s3://{bucket}/cut.sql");
    let mut cmd = ns.command("kubectl-dbbackup");
    cmd.env("AWS_ACCESS_KEY_ID", s3.var("S3_ACCESS_KEY_ID"))
        .env("AWS_SECRET_ACCESS_KEY", s3.var("S3_SECRET_ACCESS_KEY"))
        .env("AWS_REGION", s3.var("S3_REGION"))
        .env("AWS_ENDPOINT_URL", s3.var("S3_ENDPOINT"))
        .args(["postgres", "--compress", "none", "-f", &object]);
    let child = common::spawn(&mut cmd);
    let frozen = freezer.await.unwrap().unwrap();
    assert!(
        frozen.status.success() && frozen.stdout_text().trim() == "stopped",
        "{} {}",
        frozen.status,
        frozen.stderr_text()
    );
    // Wait for a part to be uploaded: the upload holds data that must go.
    let started = Instant::now();
    loop {
        let (_, body) = s3.request("GET", &format!("/{bucket}?uploads="));
        let ids = elements(&body, "UploadId");
        if let Some(id) = ids.first() {
            let (_, parts) = s3.request("GET", &format!("/{bucket}/cut.sql?uploadId={id}"));
            if !elements(&parts, "PartNumber").is_empty() {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no part was uploaded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    assert!(stderr.contains("no object was written"), "{stderr}");
    let keys = s3.keys(bucket);
    assert!(!keys.iter().any(|k| k.starts_with("cut.sql")), "{keys:?}");
    assert!(
        s3.uploads(bucket).is_empty(),
        "an incomplete multipart upload was left"
    );
}

engine_tests! {
    postgres_round_trip_through_s3: round_trip(Postgres),
    mariadb_round_trip_through_s3: round_trip(Mariadb),
}

/// Errors without a cluster: one line, exit 3 (2 for bad syntax), nothing written.
#[test]
fn s3_errors_are_one_line_and_exit_3() {
    let Some(s3) = S3::running() else { return };
    let bucket = s3.bucket("err");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = common::clean_bin("kubectl-dbbackup");
        s3.configure(&mut cmd);
        for (k, v) in env {
            cmd.env(k, v);
        }
        common::output(cmd.args(args))
    };
    let one_line = |err: &str| {
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{err}"
        );
    };
    let prefix = format!("s3://{bucket}/");
    let (code, _, err) = run(
        &["list", &prefix],
        &[("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(!err.contains("not-the-secret"), "{err}");
    one_line(&err);

    let (code, _, err) = run(&["verify", "s3://kdb-missing-bucket-x/a.sql.gz"], &[]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("bucket kdb-missing-bucket-x does not exist"),
        "{err}"
    );
    one_line(&err);

    let (code, _, err) = run(
        &["list", &prefix],
        &[("AWS_ENDPOINT_URL", "http://127.0.0.1:1")],
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("cannot connect to http://127.0.0.1:1"),
        "{err}"
    );
    one_line(&err);

    // A missing object: exit 3 too (it is the store's answer), named.
    let (code, _, err) = run(&["verify", &format!("s3://{bucket}/none.sql.gz")], &[]);
    assert_eq!(code, 3, "{err}");
    one_line(&err);

    // Bad syntax never reaches the server.
    let (code, _, err) = run(
        &["verify", "s3://Bad_Bucket/x"],
        &[("AWS_ENDPOINT_URL", "http://127.0.0.1:1")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(s3.keys(&bucket).is_empty() && s3.uploads(&bucket).is_empty());

    // No credentials at all: a usage error, and no request to a metadata service.
    let mut cmd = common::clean_bin("kubectl-dbbackup");
    cmd.env("AWS_ENDPOINT_URL", s3.var("S3_ENDPOINT"));
    let (code, _, err) = common::output(cmd.args(["list", &prefix]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no S3 credentials"), "{err}");

    // An empty prefix lists nothing; a table says so on stderr.
    let (code, out, err) = run(&["list", &prefix], &[]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("no backups in"), "{err}");
}
