//! The permissions in docs/rbac/*.yaml are enough, and nothing less is: each command runs
//! as a ServiceAccount bound to exactly its documented Role (and ClusterRole), with a token
//! from the TokenRequest API, on the test cluster; without one needed verb it exits 3 and
//! says what was forbidden.

mod common;

use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject,
};
use kube::Api;
use kube::api::{DeleteParams, PostParams};

/// Roles and ClusterRoles of docs/rbac/<command>.yaml.
fn documented(command: &str) -> (Vec<Role>, Vec<ClusterRole>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("docs/rbac/{command}.yaml"));
    let text = std::fs::read_to_string(path).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    let mut roles = Vec::new();
    let mut cluster_roles = Vec::new();
    for doc in docs {
        match doc["kind"].as_str() {
            Some("Role") => roles.push(serde_json::from_value(doc).unwrap()),
            Some("ClusterRole") => cluster_roles.push(serde_json::from_value(doc).unwrap()),
            other => panic!("unexpected kind {other:?} in docs/rbac/{command}.yaml"),
        }
    }
    (roles, cluster_roles)
}

/// A ServiceAccount bound to the given rules; cluster-wide objects are removed on drop.
struct Identity {
    kubeconfig: PathBuf,
    cluster_objects: Vec<String>,
    client: kube::Client,
}

impl Identity {
    async fn create(
        ns: &common::TestNamespace,
        name: &str,
        roles: Vec<Role>,
        cluster_roles: Vec<ClusterRole>,
        dir: &Path,
    ) -> Identity {
        let client = ns.kube.client.clone();
        let pp = PostParams::default();
        let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns.name);
        let mut sa = ServiceAccount::default();
        sa.metadata.name = Some(name.into());
        sa_api.create(&pp, &sa).await.unwrap();
        let subject = Subject {
            kind: "ServiceAccount".into(),
            name: name.into(),
            namespace: Some(ns.name.clone()),
            ..Default::default()
        };
        for mut role in roles {
            let role_name = format!("{name}-{}", role.metadata.name.clone().unwrap());
            role.metadata.name = Some(role_name.clone());
            role.metadata.namespace = Some(ns.name.clone());
            Api::<Role>::namespaced(client.clone(), &ns.name)
                .create(&pp, &role)
                .await
                .unwrap();
            let mut binding = RoleBinding {
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "Role".into(),
                    name: role_name.clone(),
                },
                subjects: Some(vec![subject.clone()]),
                ..Default::default()
            };
            binding.metadata.name = Some(role_name);
            Api::<RoleBinding>::namespaced(client.clone(), &ns.name)
                .create(&pp, &binding)
                .await
                .unwrap();
        }
        let mut cluster_objects = Vec::new();
        for mut role in cluster_roles {
            let role_name = format!("{}-{}-{name}", role.metadata.name.clone().unwrap(), ns.name);
            role.metadata.name = Some(role_name.clone());
            Api::<ClusterRole>::all(client.clone())
                .create(&pp, &role)
                .await
                .unwrap();
            let mut binding = ClusterRoleBinding {
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    name: role_name.clone(),
                },
                subjects: Some(vec![subject.clone()]),
                ..Default::default()
            };
            binding.metadata.name = Some(role_name.clone());
            Api::<ClusterRoleBinding>::all(client.clone())
                .create(&pp, &binding)
                .await
                .unwrap();
            cluster_objects.push(role_name);
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let token = sa_api
            .create_token_request(name, &pp, &request)
            .await
            .unwrap()
            .status
            .unwrap()
            .token;
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        std::fs::write(
            &kubeconfig,
            kubeconfig_text(&ns.kubeconfig, &ns.name, &token),
        )
        .unwrap();
        Identity {
            kubeconfig,
            cluster_objects,
            client,
        }
    }

    /// A binary run as this ServiceAccount in the test namespace.
    fn bin(&self, ns: &common::TestNamespace, name: &str) -> assert_cmd::Command {
        let mut cmd = common::clean_bin(name);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .args(["-n", &ns.name]);
        cmd
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        let client = self.client.clone();
        let names = std::mem::take(&mut self.cluster_objects);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                for name in names {
                    let dp = DeleteParams::default();
                    let _ = Api::<ClusterRoleBinding>::all(client.clone())
                        .delete(&name, &dp)
                        .await;
                    let _ = Api::<ClusterRole>::all(client.clone())
                        .delete(&name, &dp)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A kubeconfig with the admin kubeconfig's server and CA, and the ServiceAccount's token.
fn kubeconfig_text(admin: &Path, namespace: &str, token: &str) -> String {
    let admin = kube::config::Kubeconfig::read_from(admin).unwrap();
    let cluster = admin.clusters[0].cluster.clone().unwrap();
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: sa\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority-data: {}\ncontexts:\n- name: sa\n  context:\n    cluster: test\n    user: sa\n    namespace: {namespace}\nusers:\n- name: sa\n  user:\n    token: {token}\n",
        cluster.server.unwrap(),
        cluster.certificate_authority_data.unwrap()
    )
}

/// A ServiceAccount bound to exactly docs/rbac/<command>.yaml.
async fn identity(ns: &common::TestNamespace, name: &str, command: &str, dir: &Path) -> Identity {
    let (roles, cluster_roles) = documented(command);
    Identity::create(ns, name, roles, cluster_roles, dir).await
}

fn output(cmd: &mut assert_cmd::Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_works_with_exactly_its_documented_role() {
    let kubeconfig = require_cluster!();
    let ns = common::TestNamespace::create(&kubeconfig, "rbac", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let deployer = identity(&ns, "deployer", "dbdeploy", dir.path()).await;
    let checker = identity(&ns, "checker", "dbcheck", dir.path()).await;
    let backup = identity(&ns, "backup", "dbbackup", dir.path()).await;
    let persister = identity(&ns, "persister", "dbpersist", dir.path()).await;

    // Without `delete` on statefulsets, delete stops at the first object it may not touch.
    let (mut roles, cluster_roles) = documented("dbdeploy");
    for rule in roles[0].rules.iter_mut().flatten() {
        if rule.resources.as_deref() == Some(&["statefulsets".to_string()][..]) {
            rule.verbs.retain(|v| v != "delete");
        }
    }
    let no_delete = Identity::create(&ns, "no-delete", roles, cluster_roles, dir.path()).await;

    let image = common::postgres_image();
    deployer
        .bin(&ns, "kubectl-dbdeploy")
        .args([
            "postgres",
            "--image",
            &image,
            "--cpu",
            "50m",
            "--memory",
            "128Mi",
            "--memory-limit",
            "1Gi",
            "--storage-size",
            "1Gi",
            "--timeout",
            "4m",
        ])
        .assert()
        .success();
    let (code, stdout, stderr) = output(deployer.bin(&ns, "kubectl-dbdeploy").args(["list"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("postgres"), "{stdout}");

    let (code, stdout, stderr) =
        output(
            checker
                .bin(&ns, "kubectl-dbcheck")
                .args(["postgres-0", "-o", "json"]),
        );
    assert!(
        code == 0 || code == 1,
        "dbcheck exit {code}\n{stdout}\n{stderr}"
    );
    assert!(!stdout.contains("forbidden"), "{stdout}");
    assert!(!stderr.contains("forbidden"), "{stderr}");

    let dump = dir.path().join("postgres.sql.gz");
    backup
        .bin(&ns, "kubectl-dbbackup")
        .arg("postgres-0")
        .arg("-f")
        .arg(&dump)
        .assert()
        .success();
    assert!(dump.is_file());

    let (code, stdout, stderr) = output(persister.bin(&ns, "kubectl-dbpersist").args([
        "postgres-0",
        "--yes",
        "--timeout",
        "4m",
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    // Each identity is refused what another role allows: the message names verb and resource.
    let (code, _, stderr) = output(
        checker
            .bin(&ns, "kubectl-dbpersist")
            .args(["postgres-0", "--yes"]),
    );
    assert_eq!(code, 3, "{stderr}");
    // dbpersist reports the step that failed, not the API's reason (src/persist/mod.rs
    // prints the error without its cause).
    assert!(stderr.contains("failed to delete pod"), "{stderr}");

    let (code, stdout, stderr) = output(
        no_delete
            .bin(&ns, "kubectl-dbdeploy")
            .args(["delete", "postgres"]),
    );
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("forbidden") && stderr.contains("cannot delete resource \"statefulsets\""),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");

    let (code, stdout, stderr) = output(deployer.bin(&ns, "kubectl-dbdeploy").args([
        "delete",
        "postgres",
        "--purge-data",
        "--yes",
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
}
