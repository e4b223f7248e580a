//! Shared by the integration tests: access to the local test cluster (tests/cluster/),
//! throwaway namespaces, and the binaries run with a clean environment (process.rs), the
//! databases in them (db.rs) and the files the tests write (files.rs). One copy of each
//! helper: a test file that needs another one adds it here.
// Each test crate uses a part of the toolbox.
#![allow(dead_code, unused_imports)]

mod db;
mod files;
mod process;

pub use db::*;
pub use files::*;
pub use process::*;

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, PostParams};
use kubectl_db::cli::GlobalArgs;
use kubectl_db::client::{self, Kube};

/// dbdeploy flags for test databases: small requests, so several fit on the 2-core node.
pub const SMALL: &[&str] = &[
    "--cpu",
    "50m",
    "--memory",
    "128Mi",
    "--memory-limit",
    "1Gi",
    "--storage-size",
    "1Gi",
];

/// Image of the locally built PostgreSQL 15 (tests/cluster/images).
pub fn postgres_image() -> String {
    std::env::var("KDB_TEST_POSTGRES_IMAGE").unwrap_or_else(|_| "localhost/kdb/postgres:15".into())
}

/// Image of the locally built MariaDB 10.11.
pub fn mariadb_image() -> String {
    std::env::var("KDB_TEST_MARIADB_IMAGE").unwrap_or_else(|_| "localhost/kdb/mariadb:10.11".into())
}

/// The test cluster's kubeconfig, from `KDB_TEST_KUBECONFIG`. Without it the test is
/// skipped with a printed reason — unless `KDB_REQUIRE_CLUSTER=1` (CI), where that fails.
pub fn kubeconfig() -> Option<PathBuf> {
    match std::env::var_os("KDB_TEST_KUBECONFIG") {
        Some(path) => Some(PathBuf::from(path)),
        None if std::env::var("KDB_REQUIRE_CLUSTER").as_deref() == Ok("1") => {
            panic!(
                "KDB_REQUIRE_CLUSTER=1 but KDB_TEST_KUBECONFIG is not set: start tests/cluster/cluster.sh up"
            )
        }
        None => {
            eprintln!(
                "skipped: no test cluster (set KDB_TEST_KUBECONFIG; see tests/cluster/cluster.sh)"
            );
            None
        }
    }
}

/// A tool the test needs (kubectl, Krew) is missing: skip with the printed reason, or fail
/// under `KDB_REQUIRE_CLUSTER=1` (CI), where tests/cluster/cluster.sh provides every tool.
pub fn missing_tool(reason: &str) {
    if std::env::var("KDB_REQUIRE_CLUSTER").as_deref() == Ok("1") {
        panic!("KDB_REQUIRE_CLUSTER=1 but {reason}: run tests/cluster/cluster.sh build");
    }
    eprintln!("skipped: {reason}");
}

/// One `#[tokio::test]` per line, each running an async fn of this file for one engine:
/// `engine_tests! { check_postgres: check(Postgres), check_mariadb: check(Mariadb) }`.
#[macro_export]
macro_rules! engine_tests {
    ($($test:ident: $run:ident($engine:ident)),+ $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $test() {
            $run(kubectl_db::engine::Engine::$engine).await;
        }
    )+};
}

/// Returns from the test early, with the printed reason, when there is no cluster.
#[macro_export]
macro_rules! require_cluster {
    () => {
        match $crate::common::kubeconfig() {
            Some(path) => path,
            None => return,
        }
    };
}

/// A namespace that exists for one test and is deleted when dropped.
pub struct TestNamespace {
    pub name: String,
    pub kubeconfig: PathBuf,
    pub kube: Kube,
}

impl TestNamespace {
    /// Creates `kdb-<prefix>-<random>` with optional labels.
    pub async fn create(kubeconfig: &Path, prefix: &str, labels: &[(&str, &str)]) -> Self {
        let suffix: u32 = rand::random::<u32>() % 100_000;
        let name = format!("kdb-{prefix}-{suffix}");
        let global = GlobalArgs {
            kubeconfig: Some(kubeconfig.display().to_string()),
            namespace: Some(name.clone()),
            ..Default::default()
        };
        let kube = client::connect(&global)
            .await
            .expect("connect to the test cluster");
        let api: Api<Namespace> = Api::all(kube.client.clone());
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.clone());
        ns.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        // Pods are refused until the namespace's default ServiceAccount exists (~1 s).
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(kube.client.clone(), &name);
        for _ in 0..300 {
            if sa
                .get_opt("default")
                .await
                .expect("read ServiceAccount")
                .is_some()
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        TestNamespace {
            name,
            kubeconfig: kubeconfig.to_path_buf(),
            kube,
        }
    }

    /// A binary of this package with a clean environment pointed at this namespace.
    pub fn command(&self, name: &str) -> std::process::Command {
        let mut cmd = clean_command(name);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .args(["-n", &self.name]);
        cmd
    }

    /// [`Self::command`] for assert_cmd: run to its end.
    pub fn bin(&self, name: &str) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.command(name))
    }

    /// The API of one kind of object this namespace's databases are made of, by kind name
    /// as in a manifest or a report (`StatefulSet`, `Secret`...).
    pub fn api_for(&self, kind: &str) -> Api<DynamicObject> {
        let resource = match kind {
            "ConfigMap" => ApiResource::erase::<ConfigMap>(&()),
            "Secret" => ApiResource::erase::<Secret>(&()),
            "Service" => ApiResource::erase::<Service>(&()),
            "StatefulSet" => ApiResource::erase::<StatefulSet>(&()),
            "NetworkPolicy" => ApiResource::erase::<NetworkPolicy>(&()),
            "PodDisruptionBudget" => ApiResource::erase::<PodDisruptionBudget>(&()),
            other => panic!("unexpected kind {other}"),
        };
        Api::namespaced_with(self.kube.client.clone(), &self.name, &resource)
    }

    /// [`Self::command`] started in the background (see [`spawn`]).
    pub fn spawn(&self, name: &str, args: &[impl AsRef<std::ffi::OsStr>]) -> std::process::Child {
        spawn(self.command(name).args(args))
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var("KDB_KEEP_NAMESPACES").is_ok() {
            return;
        }
        let kubeconfig = self.kubeconfig.display().to_string();
        let name = self.name.clone();
        block_on_thread(async move {
            let global = GlobalArgs {
                kubeconfig: Some(kubeconfig),
                ..Default::default()
            };
            let Ok(kube) = client::connect(&global).await else {
                return;
            };
            let api: Api<Namespace> = Api::all(kube.client);
            let params = DeleteParams::background();
            let delete = api.delete(&name, &params);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), delete).await;
        });
    }
}

/// Runs a future to its end on a fresh runtime on a thread of its own: `Drop` cannot await,
/// and the test's runtime may be blocked right then (a current-thread `#[tokio::test]`).
pub fn block_on_thread(future: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(future);
    })
    .join();
}

/// A kubeconfig whose server nothing listens on (127.0.0.1:1): any API call fails at once
/// with a refused connection, so a command that exits 2 with it made no API call. Two
/// contexts, `nowhere` (current, namespace `team-a`) and `elsewhere`.
pub fn unreachable_kubeconfig() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join("kdb-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("unreachable.kubeconfig");
        // Written aside and renamed: test binaries running at once never read half a file.
        let part = dir.join(format!("unreachable.kubeconfig.{}", std::process::id()));
        std::fs::write(
            &part,
            "apiVersion: v1\nkind: Config\ncurrent-context: nowhere\nclusters:\n- name: nowhere\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: nowhere\n  context:\n    cluster: nowhere\n    user: nobody\n    namespace: team-a\n- name: elsewhere\n  context:\n    cluster: nowhere\n    user: nobody\nusers:\n- name: nobody\n  user:\n    token: not-a-real-token\n",
        )
        .unwrap();
        std::fs::rename(&part, &path).unwrap();
        path
    })
    .clone()
}

/// A binary of this package with a clean environment and the [`unreachable_kubeconfig`].
pub fn unreachable_bin(name: &str) -> assert_cmd::Command {
    let mut cmd = clean_bin(name);
    cmd.env("KUBECONFIG", unreachable_kubeconfig());
    cmd
}
