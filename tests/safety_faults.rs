//! Control-plane faults (issue #8): kube-apiserver stopped and restarted while
//! `dbdeploy --wait` waits. It must recover (watches re-established) and finish, or fail with
//! exit 3 and a clear message once --timeout passes: never a panic, never a hang.
//!
//! These tests stop the local cluster's API server (tests/cluster/cluster.sh
//! restart-apiserver), which disturbs anyone else using the cluster at that moment, so they
//! run only with `KDB_TEST_FAULTS=1` (and `KDB_TEST_KUBECONFIG`), one at a time, with
//! outages of at most ~20 s.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{SMALL, TestNamespace};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;
use kubectl_db::engine::Engine;

/// The tests share one API server. A test that restarts it holds this for writing, so no
/// two outages overlap and no other test of this file runs during one (an exec stream
/// open across a restart is cut, which is not what those tests are about). The others
/// hold it for reading and may run side by side.
static OUTAGE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// [`require_cluster!`] that also needs `KDB_TEST_FAULTS=1`: returns early without it.
macro_rules! require_faults {
    () => {{
        let kubeconfig = require_cluster!();
        if !faults_enabled() {
            return;
        }
        kubeconfig
    }};
}

fn faults_enabled() -> bool {
    if std::env::var("KDB_TEST_FAULTS").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipped: stops the API server; set KDB_TEST_FAULTS=1 to run");
    false
}

fn cluster_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/cluster.sh")
}

/// Starts `cluster.sh restart-apiserver SECONDS` in the background.
fn restart_apiserver(seconds: u32) -> Child {
    Command::new("bash")
        .arg(cluster_script())
        .args(["restart-apiserver", &seconds.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a child up to `limit`: (exit code, stdout, stderr); kills it and returns None
/// if it is still running.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<(Option<i32>, String, String)> {
    common::wait_bounded(child, limit).map(common::split)
}

/// Waits until the StatefulSet exists (dbdeploy has applied and is waiting).
async fn wait_for_statefulset(ns: &TestNamespace, name: &str, child: &mut Child) {
    let api: Api<StatefulSet> = ns.kube.api();
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get_opt(name).await.unwrap().is_none() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "dbdeploy ended before applying"
        );
        assert!(Instant::now() < deadline, "StatefulSet never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the restart to its end and returns how long the API server was away.
fn finish_restart(mut restart: Child) -> Duration {
    let started = Instant::now();
    let result = wait_bounded(&mut restart, Duration::from_secs(120))
        .expect("cluster.sh restart-apiserver hung");
    assert_eq!(
        result.0,
        Some(0),
        "restart-apiserver failed: {}{}",
        result.1,
        result.2
    );
    started.elapsed()
}

/// The API server stopped for ~8 s right after dbdeploy applied, while it waits for
/// readiness: dbdeploy must finish (exit 0, ready) — or exit 3 with a clear message.
#[tokio::test(flavor = "multi_thread")]
async fn deploy_wait_survives_an_apiserver_restart() {
    let kubeconfig = require_faults!();
    let _outage = OUTAGE.write().await;
    let ns = TestNamespace::create(&kubeconfig, "fault", &[]).await;
    let mut args = common::deploy_args_with(Engine::Mariadb, &common::mariadb_image(), "3m");
    args.extend(["-o".into(), "json".into()]);
    let started = Instant::now();
    let mut deploy = ns.spawn("kubectl-dbdeploy", &args);
    wait_for_statefulset(&ns, "mariadb", &mut deploy).await;
    if let Some(report) = outlive_restart(&mut deploy, "dbdeploy", started).await {
        assert_eq!(report["wait"]["ready"], true, "{report}");
    }
}

/// Restarts the API server for ~8 s while `child` (started at `started`) waits, then waits
/// for `child` to end: its JSON report when it exits 0 (it must have still been waiting when
/// the server came back), None when it exits 3 with a message; never a panic or a hang.
async fn outlive_restart(
    child: &mut Child,
    what: &str,
    started: Instant,
) -> Option<serde_json::Value> {
    let restart = restart_apiserver(8);
    let outage = tokio::task::spawn_blocking(move || finish_restart(restart))
        .await
        .unwrap();
    eprintln!("API server back after {:.1}s", outage.as_secs_f64());
    let still_waiting = child.try_wait().unwrap().is_none();
    let (code, stdout, stderr) = wait_bounded(child, Duration::from_secs(200))
        .unwrap_or_else(|| panic!("{what} hung past --timeout 3m after the API server came back"));
    eprintln!(
        "{what}: exit {code:?} after {:.1}s\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    match code {
        Some(0) => {
            let report = serde_json::from_str(&stdout).unwrap();
            assert!(
                still_waiting,
                "inconclusive: {what} finished before the API server came back"
            );
            Some(report)
        }
        Some(3) => {
            assert!(stderr.contains("error:"), "exit 3 without a message");
            None
        }
        other => panic!("{what} exit {other:?}: {stdout}\n{stderr}"),
    }
}

/// The API server away for ~12 s+ past a short --timeout on a database that cannot become
/// ready: exit 3 with a message, soon after the timeout — no hang, no panic.
#[tokio::test(flavor = "multi_thread")]
async fn deploy_wait_fails_cleanly_when_the_apiserver_stays_down() {
    let kubeconfig = require_faults!();
    let _outage = OUTAGE.write().await;
    let ns = TestNamespace::create(&kubeconfig, "fault", &[]).await;
    // An image that does not exist locally: the pod never becomes ready.
    let mut args = vec![
        "postgres",
        "--image",
        "localhost/kdb/does-not-exist:1",
        "--timeout",
        "6s",
    ];
    args.extend_from_slice(SMALL);
    let started = Instant::now();
    let mut deploy = ns.spawn("kubectl-dbdeploy", &args);
    wait_for_statefulset(&ns, "postgres", &mut deploy).await;
    let applied_at = started.elapsed();
    let restart = restart_apiserver(12);
    // dbdeploy must end within its 6 s timeout plus a margin, while the server is down.
    let result = tokio::task::spawn_blocking(move || {
        let result = wait_bounded(&mut deploy, Duration::from_secs(30));
        let ended = started.elapsed();
        (result, ended, finish_restart(restart))
    })
    .await
    .unwrap();
    let (result, ended, outage) = result;
    eprintln!(
        "applied after {:.1}s; dbdeploy ended after {:.1}s; API server back after {:.1}s more",
        applied_at.as_secs_f64(),
        ended.as_secs_f64(),
        outage.as_secs_f64()
    );
    let (code, _stdout, stderr) =
        result.expect("dbdeploy still running 30 s after starting with --timeout 6s (hang)");
    eprintln!("dbdeploy: exit {code:?}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("error:"), "{stderr}");
    assert!(
        ended < applied_at + Duration::from_secs(6 + 10),
        "dbdeploy took {:.1}s, far past --timeout 6s",
        ended.as_secs_f64()
    );
}

/// The API server killed for ~8 s while dbpersist waits for the replacement pod: it must
/// finish with PASS (exit 0) — or exit 3 with a clear message; never a panic or a hang.
#[tokio::test(flavor = "multi_thread")]
async fn persist_survives_an_apiserver_restart() {
    let kubeconfig = require_faults!();
    let _outage = OUTAGE.write().await;
    let ns = TestNamespace::create(&kubeconfig, "fault", &[]).await;
    let args = common::deploy_args_with(Engine::Postgres, &common::postgres_image(), "3m");
    let mut deploy = ns.spawn("kubectl-dbdeploy", &args);
    let (code, _, stderr) = wait_bounded(&mut deploy, Duration::from_secs(240)).unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = ns.kube.api();
    let uid = pods.get("postgres-0").await.unwrap().metadata.uid;

    let started = Instant::now();
    let mut persist = ns.spawn(
        "kubectl-dbpersist",
        &["postgres", "--yes", "--timeout", "3m", "-o", "json"],
    );
    // Once the old pod is going, dbpersist is waiting for its replacement.
    wait_for_deletion(&pods, &uid, &mut persist).await;
    if let Some(report) = outlive_restart(&mut persist, "dbpersist", started).await {
        eprintln!("{report}");
    }
}

/// Waits until dbpersist has deleted postgres-0 (of UID `uid`): the pod is going or gone.
async fn wait_for_deletion(
    pods: &Api<k8s_openapi::api::core::v1::Pod>,
    uid: &Option<String>,
    persist: &mut Child,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pod = pods.get_opt("postgres-0").await.unwrap();
        if pod.is_none_or(|p| p.metadata.deletion_timestamp.is_some() || &p.metadata.uid != uid) {
            return;
        }
        assert!(
            persist.try_wait().unwrap().is_none(),
            "dbpersist ended early"
        );
        assert!(Instant::now() < deadline, "dbpersist never deleted the pod");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// --- Quiet streams and a hung API server (issue #12) -------------------------------------
// These do not touch the shared API server: a hung server is a TCP forwarder this test
// starts and SIGSTOPs (it keeps accepting connections in the kernel's backlog and answers
// nothing), with a copy of the kubeconfig that points at it.

/// A TCP forwarder to the real API server on 127.0.0.1:<port>, started by this test.
struct Forwarder {
    child: Child,
    port: u16,
    kubeconfig: tempfile::NamedTempFile,
}

const FORWARDER: &str = r#"
import socket, sys, threading
upstream = (sys.argv[1], int(sys.argv[2]))
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(128)
print(server.getsockname()[1], flush=True)
def pipe(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    client, _ = server.accept()
    try:
        up = socket.create_connection(upstream)
    except OSError:
        client.close()
        continue
    threading.Thread(target=pipe, args=(client, up), daemon=True).start()
    threading.Thread(target=pipe, args=(up, client), daemon=True).start()
"#;

impl Forwarder {
    /// Starts the forwarder and writes a kubeconfig that reaches the API server through it
    /// (TLS passes through unchanged; the server certificate is for 127.0.0.1).
    fn start(ns: &TestNamespace) -> Forwarder {
        let text = std::fs::read_to_string(&ns.kubeconfig).unwrap();
        let config = kube::config::Kubeconfig::read_from(&ns.kubeconfig).unwrap();
        let server = config.clusters[0]
            .cluster
            .as_ref()
            .and_then(|c| c.server.clone())
            .unwrap();
        let authority = server.trim_start_matches("https://").trim_end_matches('/');
        let (host, upstream_port) = authority.rsplit_once(':').unwrap();
        let mut child = Command::new("python3")
            .args(["-c", FORWARDER, host, upstream_port])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the forwarder");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port: u16 = line.trim().parse().expect("forwarder prints its port");
        let kubeconfig = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            kubeconfig.path(),
            text.replace(&server, &format!("https://{host}:{port}")),
        )
        .unwrap();
        Forwarder {
            child,
            port,
            kubeconfig,
        }
    }

    /// The API server "hangs": connections are accepted (kernel backlog), nothing answers.
    fn hang(&self) {
        common::signal(self.child.id(), "STOP");
    }

    /// A binary of this package reaching the API server only through the forwarder.
    fn spawn(&self, ns: &TestNamespace, bin: &str, args: &[&str]) -> Child {
        let mut cmd = ns.command(bin);
        cmd.env("KUBECONFIG", self.kubeconfig.path()).args(args);
        common::spawn(&mut cmd)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("forwarder on port {} stopped", self.port);
    }
}

/// A pg_dumpall-shaped file whose SQL sleeps `seconds` in the server, with its checksum:
/// the restore's exec stream stays quiet that long.
fn sleeping_dump(dir: &std::path::Path, seconds: u32) -> PathBuf {
    let sql = format!(
        "--\n-- PostgreSQL database cluster dump\n--\n\nSET client_min_messages = warning;\nSELECT pg_sleep({seconds});\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n"
    );
    let file = dir.join(format!("sleep{seconds}.sql"));
    std::fs::write(&file, &sql).unwrap();
    common::write_checksum(&file);
    file
}

/// Deploys the PostgreSQL these tests use (directly, not through the forwarder).
fn deploy_postgres(ns: &TestNamespace) {
    let mut deploy = ns.spawn("kubectl-dbdeploy", &common::deploy_args(Engine::Postgres));
    let (code, _, stderr) = wait_bounded(&mut deploy, Duration::from_secs(300)).unwrap();
    assert_eq!(code, Some(0), "{stderr}");
}

/// A restore whose SQL runs 8 s without a byte on the stream, with --request-timeout 2s:
/// the quiet exec is alive, so it must finish (exit 0). kube's read timeout, which
/// --request-timeout used to set for every connection, cut it after 2 s.
#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_restore_outlives_the_request_timeout() {
    let kubeconfig = require_faults!();
    let _outage = OUTAGE.read().await;
    let ns = TestNamespace::create(&kubeconfig, "quiet", &[]).await;
    deploy_postgres(&ns);
    let dir = tempfile::tempdir().unwrap();
    let file = sleeping_dump(dir.path(), 8);
    let file = file.display().to_string();
    let started = Instant::now();
    let mut restore = ns.spawn(
        "kubectl-dbbackup",
        &[
            "restore",
            "postgres-0",
            "-f",
            &file,
            "--yes",
            "--request-timeout",
            "2s",
            "--timeout",
            "2m",
        ],
    );
    let (code, stdout, stderr) = wait_bounded(&mut restore, Duration::from_secs(150))
        .expect("restore hung past its --timeout");
    let took = started.elapsed();
    eprintln!(
        "restore: exit {code:?} after {:.1}s\n{stdout}{stderr}",
        took.as_secs_f64()
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        took >= Duration::from_secs(8),
        "the restore did not run the 8 s sleep ({:.1}s)",
        took.as_secs_f64()
    );
}

/// Waits for all the commands at once, each on its own clock (started, limit), and checks
/// each ended with exit 3 and a message within its limit.
fn assert_all_end_hung(children: &mut [(&str, Child, Instant, Duration)]) {
    let mut ended: Vec<Option<Duration>> = vec![None; children.len()];
    let give_up = Instant::now()
        + children.iter().map(|c| c.3).max().unwrap_or_default()
        + Duration::from_secs(30);
    while ended.iter().any(Option::is_none) && Instant::now() < give_up {
        for (i, (_, child, started, _)) in children.iter_mut().enumerate() {
            if ended[i].is_none() && child.try_wait().unwrap().is_some() {
                ended[i] = Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (i, (what, child, started, limit)) in children.iter_mut().enumerate() {
        let (code, stdout, stderr) = wait_bounded(child, Duration::ZERO).unwrap_or_else(|| {
            panic!("{what}: still running 30 s past its limit {limit:?} (hang)")
        });
        let took = ended[i].unwrap_or_else(|| started.elapsed());
        eprintln!(
            "{what}: exit {code:?} after {:.1}s\n{stdout}{stderr}",
            took.as_secs_f64()
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert_eq!(code, Some(3), "{what}: {stdout}{stderr}");
        assert!(stderr.contains("error:"), "{what}: no message: {stderr}");
        assert!(
            took <= *limit,
            "{what}: took {:.1}s, more than {limit:?}",
            took.as_secs_f64()
        );
    }
}

/// The API server hangs before the command starts (it accepts connections and answers
/// nothing): every command ends within its own timeout, with exit 3 and a message.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_apiserver_ends_every_command_within_its_timeout() {
    let kubeconfig = require_faults!();
    let _outage = OUTAGE.read().await;
    let ns = TestNamespace::create(&kubeconfig, "hung", &[]).await;
    deploy_postgres(&ns);
    let dir = tempfile::tempdir().unwrap();
    let file = sleeping_dump(dir.path(), 1).display().to_string();
    let dump = dir.path().join("dump.sql.gz").display().to_string();
    let forwarder = Forwarder::start(&ns);
    // Through the forwarder it works.
    let mut list = forwarder.spawn(&ns, "kubectl-dbdeploy", &["list"]);
    let (code, stdout, stderr) = wait_bounded(&mut list, Duration::from_secs(30)).unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("postgres"), "{stdout}");

    forwarder.hang();
    let margin = Duration::from_secs(10);
    let image = common::postgres_image();
    let cases: Vec<(&str, &str, Vec<&str>, u64)> = vec![
        (
            "dbdeploy",
            "kubectl-dbdeploy",
            vec!["postgres", "--image", &image, "--timeout", "8s"],
            8,
        ),
        (
            "dbdeploy list",
            "kubectl-dbdeploy",
            vec!["list", "--request-timeout", "5s"],
            5,
        ),
        (
            "dbcheck",
            "kubectl-dbcheck",
            vec!["postgres-0", "--request-timeout", "5s"],
            5,
        ),
        (
            "dbcheck (default limits)",
            "kubectl-dbcheck",
            vec!["postgres-0"],
            30,
        ),
        (
            "dbpersist",
            "kubectl-dbpersist",
            vec!["postgres-0", "--yes", "--timeout", "8s"],
            8,
        ),
        (
            "dbbackup dump",
            "kubectl-dbbackup",
            vec!["dump", "postgres-0", "-f", &dump, "--timeout", "8s"],
            8,
        ),
        (
            "dbbackup restore",
            "kubectl-dbbackup",
            vec![
                "restore",
                "postgres-0",
                "-f",
                &file,
                "--yes",
                "--timeout",
                "8s",
            ],
            8,
        ),
        (
            "dbbackup snapshot",
            "kubectl-dbbackup",
            vec!["snapshot", "postgres-0", "--timeout", "8s"],
            8,
        ),
    ];
    // All at once: each must end on its own clock.
    let started = Instant::now();
    let mut children: Vec<(&str, Child, Instant, Duration)> = cases
        .iter()
        .map(|(what, bin, args, seconds)| {
            let limit = Duration::from_secs(*seconds) + margin;
            (*what, forwarder.spawn(&ns, bin, args), started, limit)
        })
        .collect();
    assert_all_end_hung(&mut children);
    assert!(
        !std::path::Path::new(&dump).exists(),
        "a dump that never ran left a file"
    );
}

/// The API server hangs while commands run: a dbdeploy waiting for a pod that never gets
/// ready, a restore streaming SQL that sleeps, and a dbpersist waiting for the replacement
/// pod. Each ends within its --timeout (plus a margin) with exit 3.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_apiserver_mid_command_ends_it_within_its_timeout() {
    let kubeconfig = require_faults!();
    let _outage = OUTAGE.read().await;
    let ns = TestNamespace::create(&kubeconfig, "hung", &[]).await;
    deploy_postgres(&ns);
    let forwarder = Forwarder::start(&ns);
    let margin = Duration::from_secs(10);

    // dbdeploy: applied, waiting (watches) for a pod that cannot start.
    let mut args = vec![
        "postgres",
        "--name",
        "neverready",
        "--image",
        "localhost/kdb/does-not-exist:1",
        "--timeout",
        "20s",
    ];
    args.extend_from_slice(SMALL);
    let deploy_started = Instant::now();
    let mut deploy = forwarder.spawn(&ns, "kubectl-dbdeploy", &args);
    wait_for_statefulset(&ns, "neverready", &mut deploy).await;

    // (A restore is not in this test: dbpersist deletes the same pod, and the restore then
    // ends on that deletion, not on the hang; see the stop notes.)
    // dbpersist: the pod deleted, waiting for its replacement.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = ns.kube.api();
    let uid = pods.get("postgres-0").await.unwrap().metadata.uid;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let persist_started = Instant::now();
    let mut persist = forwarder.spawn(
        &ns,
        "kubectl-dbpersist",
        &["postgres-0", "--yes", "--timeout", "30s"],
    );
    wait_for_deletion(&pods, &uid, &mut persist).await;
    assert!(
        deploy.try_wait().unwrap().is_none(),
        "dbdeploy ended before the hang"
    );
    forwarder.hang();
    eprintln!("API server hung (forwarder stopped)");

    let mut children = [
        (
            "dbdeploy --timeout 20s",
            deploy,
            deploy_started,
            Duration::from_secs(20) + margin,
        ),
        (
            "dbpersist --timeout 30s",
            persist,
            persist_started,
            Duration::from_secs(30) + margin,
        ),
    ];
    assert_all_end_hung(&mut children);
}
