//! The local test cluster itself (tests/cluster/): node Ready through the API, then the
//! cluster's smoke script — database pods from each image Ready, exec returns the server
//! version, a `standard` PVC binds, a deleted StatefulSet pod comes back with its data —
//! and the CSI snapshot stack's smoke script (PVC, VolumeSnapshot, restore from it).

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;
use kubectl_db::cli::GlobalArgs;

#[tokio::test(flavor = "multi_thread")]
async fn node_is_ready_and_the_api_is_v1_34() {
    let kubeconfig = require_cluster!();
    let global = GlobalArgs {
        kubeconfig: Some(kubeconfig.display().to_string()),
        ..Default::default()
    };
    let kube = kubectl_db::client::connect(&global).await.unwrap();
    let version = kube.client.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "34")
    );
    let nodes: Api<Node> = Api::all(kube.client.clone());
    let list = nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let ready = list.items[0]
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    assert!(ready, "node not Ready");
}

#[test]
fn smoke_script_passes() {
    run_script("tests/cluster/smoke.sh");
}

#[test]
fn csi_smoke_script_passes() {
    run_script("tests/cluster/csi-smoke.sh");
}

fn run_script(path: &str) {
    let kubeconfig = require_cluster!();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let output = std::process::Command::new("bash")
        .arg(script)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{path} failed:\n{stderr}");
    assert!(!stderr.contains("FAIL"), "{stderr}");
}
