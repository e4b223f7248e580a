//! The databases of a test namespace: deploy them with dbdeploy, run shell and SQL in their
//! pods, read their Secrets.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kubectl_db::engine::Engine;
use kubectl_db::exec;
use serde_json::Value;

use super::{SMALL, TestNamespace, json, mariadb_image, postgres_image};

/// The locally built image that runs `engine` (mysql runs the MariaDB image).
pub fn image(engine: Engine) -> String {
    match engine {
        Engine::Postgres => postgres_image(),
        Engine::Mysql | Engine::Mariadb => mariadb_image(),
    }
}

/// The dbdeploy arguments for `engine` with its local image: a 4-minute wait, small requests.
pub fn deploy_args(engine: Engine) -> Vec<String> {
    deploy_args_with(engine, &image(engine), "4m")
}

/// [`deploy_args`] with another image and wait.
pub fn deploy_args_with(engine: Engine, image: &str, timeout: &str) -> Vec<String> {
    [engine.as_str(), "--image", image, "--timeout", timeout]
        .iter()
        .chain(SMALL)
        .map(|s| s.to_string())
        .collect()
}

/// Runs `dbdeploy ARGS -o json` in the namespace; panics with stderr unless it exits 0.
pub fn deploy_json(ns: &TestNamespace, args: &[impl AsRef<OsStr>]) -> Value {
    json(ns.bin("kubectl-dbdeploy").args(args))
}

/// Runs a shell script in the database container with `stdin`; panics unless it exits 0.
pub async fn shell(
    ns: &TestNamespace,
    engine: Engine,
    pod: &str,
    script: &str,
    stdin: &str,
) -> String {
    let pods: Api<Pod> = ns.kube.api();
    let command = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    let output = exec::run(
        &pods,
        pod,
        Some(engine.container_name()),
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

/// SQL through the engine's own client as the admin user, in the application database
/// (passwords from the pod's environment); panics unless it succeeds.
pub async fn sql(ns: &TestNamespace, engine: Engine, pod: &str, sql: &str) -> String {
    shell(ns, engine, pod, engine.sql_script(), sql).await
}

/// The data of a Secret, by key.
pub async fn secret_data(ns: &TestNamespace, name: &str) -> BTreeMap<String, Vec<u8>> {
    let api: Api<Secret> = ns.kube.api();
    api.get(name)
        .await
        .unwrap()
        .data
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
