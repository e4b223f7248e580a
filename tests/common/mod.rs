//! Shared by the integration tests: access to the local test cluster (tests/cluster/),
//! throwaway namespaces, and the binaries run with a clean environment.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
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

/// Returns from the test early, with the printed reason, when there is no cluster.
#[macro_export]
macro_rules! require_cluster {
    () => {
        match common::kubeconfig() {
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

    /// A binary of this package with a clean environment pointed at the test cluster.
    pub fn bin(&self, name: &str) -> assert_cmd::Command {
        let mut cmd = clean_bin(name);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .args(["-n", &self.name]);
        cmd
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var("KDB_KEEP_NAMESPACES").is_ok() {
            return;
        }
        let kubeconfig = self.kubeconfig.display().to_string();
        let name = self.name.clone();
        // Drop cannot await, and the test's client may live on a runtime that is blocked
        // right now (a current-thread #[tokio::test]): use a fresh client on a thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
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
        })
        .join();
    }
}

/// A binary of this package with the environment cleared (no user kubeconfig, no colour,
/// fixed terminal width), so results do not depend on the machine.
pub fn clean_bin(name: &str) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin(name).expect("binary built by cargo");
    let home = std::env::temp_dir().join("kdb-test-home");
    let _ = std::fs::create_dir_all(&home);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "120");
    cmd
}
