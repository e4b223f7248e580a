//! `kubectl dbbackup schedule` on the local cluster, in a namespace that enforces the
//! restricted Pod Security Standard (so every pod the schedule and the PVC reader create is
//! admitted under it): runs that leave verified backups with their manifests on the PVC,
//! retention (sidecars included), a drill of a scheduled backup, a restore of one into a
//! second instance, a failing run that leaves no file and that dbcheck reports, and the
//! schedule flags refused before any API call.

use crate::common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kubectl_db::engine::Engine;
use serde_json::Value;

const RESTRICTED: (&str, &str) = ("pod-security.kubernetes.io/enforce", "restricted");

/// The backup files on the schedule's PVC, by name, so oldest first (`dbbackup list pvc:NAME`).
fn backups(ns: &common::TestNamespace) -> Vec<Value> {
    let list = common::json(
        ns.bin("kubectl-dbbackup")
            .args(["list", "pvc:postgres-backups"]),
    );
    list["backups"].as_array().unwrap().clone()
}

/// Every file on the schedule's PVC, sorted: listed by a pod made from the CronJob's own
/// (restricted) pod template, which `list` does not show (checksums, manifests, partials).
async fn files_on_pvc(ns: &common::TestNamespace) -> Vec<String> {
    let cron_jobs: Api<CronJob> = ns.kube.api();
    let cron_job = cron_jobs.get("postgres-backup").await.unwrap();
    let template = cron_job.spec.unwrap().job_template.spec.unwrap().template;
    let mut spec = template.spec.unwrap();
    let container = &mut spec.containers[0];
    container.command = Some(vec!["ls".into(), "-A".into(), "/backups".into()]);
    container.env = None;
    let name = format!("files-{}", rand::random::<u32>() % 100_000);
    let pod = Pod {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        spec: Some(spec),
        ..Default::default()
    };
    let pods: Api<Pod> = ns.kube.api();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let ended = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.phase.as_deref())
            .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
    };
    let wait = await_condition(pods.clone(), &name, ended);
    tokio::time::timeout(Duration::from_secs(180), wait)
        .await
        .expect("the listing pod ended within 3 minutes")
        .unwrap();
    let listing = pods.logs(&name, &Default::default()).await.unwrap();
    pods.delete(&name, &Default::default()).await.unwrap();
    let mut names: Vec<String> = listing.lines().map(String::from).collect();
    names.sort();
    names
}

fn run_now(ns: &common::TestNamespace) -> (i32, Value) {
    let mut cmd = ns.bin("kubectl-dbbackup");
    cmd.args([
        "schedule",
        "run-now",
        "postgres",
        "--timeout",
        "5m",
        "-o",
        "json",
    ]);
    let (code, stdout, stderr) = common::output(&mut cmd);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("exit {code}: {stderr}"));
    (code, report)
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_backups_verify_restore_and_fail_visibly() {
    let kubeconfig = require_cluster!();
    let ns = common::TestNamespace::create(&kubeconfig, "sched", &[RESTRICTED]).await;

    // The namespace really enforces restricted: a pod without hardening is refused.
    let pods: Api<Pod> = ns.kube.api();
    let plain: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "c", "image": common::postgres_image()}]}
    }))
    .unwrap();
    let refused = pods
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &plain,
        )
        .await;
    let refused = format!("{:?}", refused.expect_err("an unhardened pod was admitted"));
    assert!(refused.contains("violates PodSecurity"), "{refused}");

    common::deploy_json(&ns, &common::deploy_args(Engine::Postgres));
    common::sql(
        &ns,
        Engine::Postgres,
        "postgres-0",
        "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('scheduled-42');",
    )
    .await;

    // The objects for GitOps: nothing applied.
    let mut cmd = ns.bin("kubectl-dbbackup");
    cmd.args([
        "schedule",
        "postgres",
        "--every",
        "6h",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    let (code, yaml, stderr) = common::output(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        yaml.contains("kind: CronJob") && yaml.contains("schedule: 0 */6 * * *"),
        "{yaml}"
    );
    assert!(yaml.contains("secretKeyRef"), "{yaml}");

    let report = common::json(ns.bin("kubectl-dbbackup").args([
        "schedule",
        "postgres",
        "--at",
        "02:30",
        "--time-zone",
        "Asia/Seoul",
        "--keep",
        "2",
        "--size",
        "1Gi",
    ]));
    assert_eq!(report["schedule"], "30 2 * * *");
    let runs = report["next_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for run in runs {
        let run = run.as_str().unwrap();
        assert!(run.contains("T02:30:00+09:00[Asia/Seoul]"), "{run}");
    }

    // Two runs, two verified backups with their checksums.
    for _ in 0..2 {
        let (code, run) = run_now(&ns);
        assert_eq!(code, 0, "{run}");
        assert_eq!(run["run"]["state"], "succeeded", "{run}");
    }
    let files = backups(&ns);
    assert_eq!(files.len(), 2, "{files:?}");
    for file in &files {
        assert_eq!(file["checksum"], "present");
        assert_eq!(file["manifest"], true, "{file}");
        let location = format!("pvc:postgres-backups/{}", file["file"].as_str().unwrap());
        let report = common::json(ns.bin("kubectl-dbbackup").args(["verify", &location]));
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["dump_kind"], "postgres-cluster");
    }
    // `verify --deep` lists what the scheduled backup holds, from its manifest.
    let location = format!(
        "pvc:postgres-backups/{}",
        files[0]["file"].as_str().unwrap()
    );
    let deep = common::json(
        ns.bin("kubectl-dbbackup")
            .args(["verify", "--deep", &location]),
    );
    assert_eq!(deep["ok"], true, "{deep}");
    assert_eq!(deep["manifest"]["pod"], "postgres-0", "{deep}");
    assert_eq!(deep["manifest"]["image"], common::postgres_image().as_str());
    let kept = kept_table(&deep["manifest"]);
    assert_eq!(kept["rows"], 1, "{deep}");

    // --keep 1: the next good run leaves exactly one.
    common::json(ns.bin("kubectl-dbbackup").args([
        "schedule",
        "sts/postgres",
        "--at",
        "02:30",
        "--keep",
        "1",
    ]));
    let (code, run) = run_now(&ns);
    assert_eq!(code, 0, "{run}");
    let files = backups(&ns);
    assert_eq!(files.len(), 1, "{files:?}");
    let newest = files[0]["file"].as_str().unwrap().to_string();
    assert_eq!(run["run"]["file"], newest.as_str());
    // Retention took the older backups' checksums and manifests with them.
    let with_sidecars = |file: &str| {
        vec![
            file.to_string(),
            format!("{file}.manifest.tsv"),
            format!("{file}.sha256"),
        ]
    };
    assert_eq!(files_on_pvc(&ns).await, with_sidecars(&newest));

    // A drill of the scheduled backup, straight from the PVC: restored into a throwaway
    // instance, every table compared with the manifest the job took.
    let location = format!("pvc:postgres-backups/{newest}");
    let drill =
        common::json(
            ns.bin("kubectl-dbbackup")
                .args(["drill", "--timeout", "5m", &location]),
        );
    assert_eq!(drill["passed"], true, "{drill:#}");
    assert_eq!(
        drill["file"],
        location.as_str(),
        "named as typed, not the local copy"
    );
    assert_eq!(drill["source"], format!("{}/postgres-0", ns.name).as_str());
    let tables = drill["tables"].as_array().unwrap();
    let kept = tables
        .iter()
        .find(|t| t["table"] == "public.kept")
        .unwrap_or_else(|| panic!("kept was not compared: {drill:#}"));
    assert_eq!(kept["result"], "pass", "{kept}");
    assert_eq!(kept["found_rows"], 1, "{kept}");
    assert_eq!(kept["expected_checksum"], kept["found_checksum"], "{kept}");

    // Restored into a second instance straight from the PVC.
    let mut second = common::deploy_args(Engine::Postgres);
    second.extend(["--name".to_string(), "second".to_string()]);
    common::deploy_json(&ns, &second);
    let location = format!("pvc:postgres-backups/{newest}");
    common::json(
        ns.bin("kubectl-dbbackup")
            .args(["restore", "second", "-f", &location, "--yes"]),
    );
    let rows = common::sql(&ns, Engine::Postgres, "second-0", "SELECT v FROM kept;").await;
    assert_eq!(rows.trim(), "scheduled-42");

    // A stopped database: the run fails, no new file appears, dbcheck says why.
    let sts: Api<StatefulSet> = ns.kube.api();
    sts.patch(
        "postgres",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 0}})),
    )
    .await
    .unwrap();
    let (code, run) = run_now(&ns);
    assert_eq!(code, 1, "{run}");
    assert_eq!(run["run"]["state"], "failed");
    let reason = run["run"]["reason"].as_str().unwrap().to_string();
    // The first thing the run asks the stopped database is the manifest's query.
    assert!(
        reason.contains("the manifest query failed before the dump"),
        "{reason}"
    );
    let files = backups(&ns);
    assert_eq!(files.len(), 1, "a failed run left a file: {files:?}");
    assert_eq!(files[0]["file"], newest.as_str());
    assert_eq!(
        files_on_pvc(&ns).await,
        with_sidecars(&newest),
        "a failed run left a manifest, a checksum or a partial"
    );
    let mut cmd = ns.bin("kubectl-dbcheck");
    cmd.args(["postgres", "-o", "json"]);
    let (code, stdout, stderr) = common::output(&mut cmd);
    assert_eq!(code, 1, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {report}"))
            .clone()
    };
    let schedule = check("backup.schedule");
    assert_eq!(schedule["verdict"], "fail", "{schedule}");
    assert!(
        schedule["evidence"].as_str().unwrap().contains(&reason),
        "{schedule}"
    );
    assert_eq!(check("backup.recent")["verdict"], "ok");
    // The namespace summary says the same from its lists (no per-database reads).
    let mut cmd = ns.bin("kubectl-dbcheck");
    cmd.args(["-o", "json"]);
    let (code, stdout, stderr) = common::output(&mut cmd);
    assert_eq!(code, 1, "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    common::assert_valid(&summary);
    let line = summary["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "postgres")
        .unwrap_or_else(|| panic!("no postgres in {summary}"))
        .clone();
    let problems: Vec<&str> = line["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        problems.iter().any(|p| p.starts_with("backup.schedule: ")),
        "{line:#}"
    );
    // The second database has no schedule: skipped, saying so.
    let mut cmd = ns.bin("kubectl-dbcheck");
    cmd.args(["second", "-o", "json"]);
    let (_, stdout, _) = common::output(&mut cmd);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let skipped = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "backup.schedule")
        .unwrap()
        .clone();
    assert_eq!(skipped["verdict"], "skipped");
    assert!(
        skipped["evidence"]
            .as_str()
            .unwrap()
            .starts_with("no schedule")
    );

    // Delete keeps the PVC and its backups.
    let mut cmd = ns.bin("kubectl-dbbackup");
    cmd.args(["schedule", "delete", "statefulset/postgres"]);
    let (code, stdout, stderr) = common::output(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("PVC postgres-backups and the backups on it are kept"),
        "{stdout}"
    );
}

#[test]
fn schedule_flags_are_checked_before_any_api_call() {
    let mut cmd = common::unreachable_bin("kubectl-dbbackup");
    cmd.args(["schedule", "pg", "--cron", "0 0 * * * *"]);
    let (code, _, stderr) = common::output(&mut cmd);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("exactly 5 fields: minute hour day-of-month month day-of-week"),
        "{stderr}"
    );
    assert!(stderr.contains("6 fields given"), "{stderr}");
    for args in [
        ["--every", "7h"],
        ["--at", "25:00"],
        ["--time-zone", "Mars/Olympus"],
    ] {
        let mut cmd = common::unreachable_bin("kubectl-dbbackup");
        cmd.args(["schedule", "pg"]).args(args);
        if args[0] == "--time-zone" {
            cmd.args(["--at", "02:30"]);
        }
        let (code, _, stderr) = common::output(&mut cmd);
        assert_eq!(code, 2, "{args:?}: {stderr}");
    }
}

/// The `kept` table in a manifest's JSON.
fn kept_table(manifest: &Value) -> Value {
    manifest["databases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|db| db["tables"].as_array().unwrap().iter())
        .find(|t| t["name"] == "public.kept")
        .unwrap_or_else(|| panic!("no public.kept in {manifest}"))
        .clone()
}
