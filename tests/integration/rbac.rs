//! The permissions in docs/rbac/*.yaml are enough, and nothing less is: each command runs
//! as a ServiceAccount bound to exactly its documented Role (and ClusterRole) on the test
//! cluster and succeeds (sufficient) — with a token from the TokenRequest API and kubectl's
//! `--server --token --certificate-authority`, no kubeconfig at all. Then, for every verb on
//! every resource of every rule (read from the YAML, not copied here), the same runs under
//! the Role without that one verb, impersonated (`--as system:serviceaccount:NS:NAME` with
//! the admin's kubeconfig), must stop on it: exit 3 with the API's reason naming the verb
//! and resource and a hint — or, for the optional reads the docs call optional, a report
//! that names the refused permission (minimal).

use crate::common;

use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
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

/// How a run authenticates as an [`Identity`].
enum Login {
    /// kubectl's `--server URL --token T --certificate-authority FILE`, no kubeconfig.
    Token {
        server: String,
        token: String,
        ca_file: PathBuf,
    },
    /// The admin's kubeconfig and `--as system:serviceaccount:NS:NAME`.
    Impersonate(String),
}

/// A ServiceAccount bound to the given rules; cluster-wide objects are removed on drop.
struct Identity {
    name: String,
    login: Login,
    cluster_objects: Vec<String>,
    client: kube::Client,
}

impl Identity {
    async fn create(
        ns: &common::TestNamespace,
        name: &str,
        roles: Vec<Role>,
        cluster_roles: Vec<ClusterRole>,
        dir: Option<&Path>,
    ) -> Identity {
        let client = ns.kube.client.clone();
        let pp = PostParams::default();
        // One (group, resource, verb, namespaced) per rule, to wait for RBAC to see the binding.
        let granted: Vec<(String, String, String, bool)> = roles
            .iter()
            .map(|r| (r.rules.clone().unwrap_or_default(), true))
            .chain(
                cluster_roles
                    .iter()
                    .map(|r| (r.rules.clone().unwrap_or_default(), false)),
            )
            .flat_map(|(rules, namespaced)| {
                rules.into_iter().filter_map(move |rule| {
                    Some((
                        rule.api_groups?.first()?.clone(),
                        rule.resources?.first()?.clone(),
                        rule.verbs.first()?.clone(),
                        namespaced,
                    ))
                })
            })
            .collect();
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
        wait_authorized(&client, &ns.name, name, &granted).await;
        let login = match dir {
            Some(dir) => token_login(ns, &sa_api, name, dir).await,
            None => Login::Impersonate(format!("system:serviceaccount:{}:{name}", ns.name)),
        };
        Identity {
            name: name.to_string(),
            login,
            cluster_objects,
            client,
        }
    }

    /// A binary run as this ServiceAccount in the test namespace.
    fn bin(&self, ns: &common::TestNamespace, name: &str) -> assert_cmd::Command {
        let mut cmd = ns.bin(name);
        match &self.login {
            Login::Token {
                server,
                token,
                ca_file,
            } => {
                // No kubeconfig at all: HOME is the clean command's empty one.
                cmd.env_remove("KUBECONFIG")
                    .args(["--server", server, "--token", token])
                    .arg("--certificate-authority")
                    .arg(ca_file);
            }
            Login::Impersonate(user) => {
                cmd.args(["--as", user]);
            }
        }
        cmd
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        let client = self.client.clone();
        let names = std::mem::take(&mut self.cluster_objects);
        common::block_on_thread(async move {
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
    }
}

/// A token of the ServiceAccount from the TokenRequest API, with the admin kubeconfig's
/// server and its CA written to a file in `dir`.
async fn token_login(
    ns: &common::TestNamespace,
    accounts: &Api<ServiceAccount>,
    name: &str,
    dir: &Path,
) -> Login {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let (server, ca) = admin_server_and_ca(&ns.kubeconfig);
    let ca_file = dir.join(format!("{name}-ca.crt"));
    std::fs::write(&ca_file, ca).unwrap();
    Login::Token {
        server,
        token,
        ca_file,
    }
}

/// The admin kubeconfig's server URL and CA certificate (PEM).
fn admin_server_and_ca(admin: &Path) -> (String, Vec<u8>) {
    let admin = kube::config::Kubeconfig::read_from(admin).unwrap();
    let cluster = admin.clusters[0].cluster.clone().unwrap();
    let ca: k8s_openapi::ByteString = serde_json::from_value(serde_json::json!(
        cluster.certificate_authority_data.unwrap()
    ))
    .unwrap();
    (cluster.server.unwrap(), ca.0)
}

/// Waits until the authorizer allows what the new bindings grant: RBAC is read from a cache
/// that may lag the objects just created by a moment.
async fn wait_authorized(
    client: &kube::Client,
    namespace: &str,
    account: &str,
    granted: &[(String, String, String, bool)],
) {
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    for (group, resource, verb, namespaced) in granted {
        let (resource, subresource) = match resource.split_once('/') {
            Some((r, s)) => (r.to_string(), Some(s.to_string())),
            None => (resource.clone(), None),
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(format!("system:serviceaccount:{namespace}:{account}")),
                groups: Some(vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{namespace}"),
                    "system:authenticated".into(),
                ]),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(group.clone()),
                    resource: Some(resource),
                    subresource,
                    verb: Some(verb.clone()),
                    namespace: namespaced.then(|| namespace.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        loop {
            let answer = reviews
                .create(&PostParams::default(), &review)
                .await
                .unwrap();
            if answer.status.is_some_and(|s| s.allowed) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "RBAC never allowed {verb} {group}/{:?} for {account}",
                review.spec.resource_attributes
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

/// One verb on one resource of one rule of a documented Role or ClusterRole.
#[derive(Debug, Clone)]
struct Atom {
    /// Index in roles followed by cluster roles.
    object: usize,
    rule: usize,
    group: String,
    resource: String,
    verb: String,
}

impl std::fmt::Display for Atom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {} ({group})", self.verb, self.resource)
    }
}

fn rules_of(roles: &[Role], cluster_roles: &[ClusterRole]) -> Vec<Vec<PolicyRule>> {
    roles
        .iter()
        .map(|r| r.rules.clone().unwrap_or_default())
        .chain(
            cluster_roles
                .iter()
                .map(|r| r.rules.clone().unwrap_or_default()),
        )
        .collect()
}

/// Every verb on every resource of every rule, from the YAML.
fn atoms(roles: &[Role], cluster_roles: &[ClusterRole]) -> Vec<Atom> {
    let mut atoms = Vec::new();
    for (object, rules) in rules_of(roles, cluster_roles).iter().enumerate() {
        for (index, rule) in rules.iter().enumerate() {
            assert!(
                rule.resource_names.is_none() && rule.non_resource_urls.is_none(),
                "rules with resourceNames or nonResourceURLs are not handled here"
            );
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    for verb in &rule.verbs {
                        atoms.push(Atom {
                            object,
                            rule: index,
                            group: group.clone(),
                            resource: resource.clone(),
                            verb: verb.clone(),
                        });
                    }
                }
            }
        }
    }
    atoms
}

/// The documented objects with exactly one verb on one resource taken away.
fn without(
    roles: &[Role],
    cluster_roles: &[ClusterRole],
    atom: &Atom,
) -> (Vec<Role>, Vec<ClusterRole>) {
    let mut rules = rules_of(roles, cluster_roles);
    let rule = rules[atom.object].remove(atom.rule);
    for group in rule.api_groups.iter().flatten() {
        for resource in rule.resources.iter().flatten() {
            let verbs: Vec<String> = rule
                .verbs
                .iter()
                .filter(|v| {
                    !(*group == atom.group && *resource == atom.resource && **v == atom.verb)
                })
                .cloned()
                .collect();
            if !verbs.is_empty() {
                rules[atom.object].push(PolicyRule {
                    api_groups: Some(vec![group.clone()]),
                    resources: Some(vec![resource.clone()]),
                    verbs,
                    ..Default::default()
                });
            }
        }
    }
    let mut roles = roles.to_vec();
    let mut cluster_roles = cluster_roles.to_vec();
    for (i, role) in roles.iter_mut().enumerate() {
        role.rules = Some(rules[i].clone());
    }
    let offset = roles.len();
    for (i, role) in cluster_roles.iter_mut().enumerate() {
        role.rules = Some(rules[offset + i].clone());
    }
    (roles, cluster_roles)
}

/// What a run printed, with JSON's escaped quotes undone so messages read as printed.
fn combined(stdout: &str, stderr: &str) -> String {
    format!("{stdout}\n{stderr}").replace("\\\"", "\"")
}

/// True when the output names the refused verb and resource.
fn names_refusal(text: &str, atom: &Atom) -> bool {
    text.contains(&format!(
        "cannot {} resource \"{}\"",
        atom.verb, atom.resource
    )) && text.contains(&format!("in API group \"{}\"", atom.group))
}

/// Something to prepare before a run (as the test's admin identity).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Before {
    Nothing,
    /// The shared database is up and Ready (dbpersist deletes its pod).
    DatabaseReady,
    /// A throwaway database `victim` exists with its PVC, for `dbdeploy delete`.
    Victim,
    /// No database `fresh`: the run deploys it and waits (watches) until it is ready.
    NoFresh,
    /// A VolumeSnapshot `rbac-delete-me` of the shared database, for `snapshot delete`.
    SnapshotToDelete,
    /// A ready VolumeSnapshot `rbac-seed` of the shared database, for `--from-snapshot`.
    Seed,
    /// The shared database has no backup schedule: `schedule` creates its CronJob.
    NoSchedule,
    /// The shared database's schedule writes to PVC `rbac-backups` (which holds the backup
    /// `{backup}`), for what reads, runs or deletes it.
    Scheduled,
}

/// What a run must show under the full Role.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Success,
    /// dbcheck: a report (healthy or not), exit 0 or 1.
    Report,
    /// snapshot: on a cluster without the VolumeSnapshot API it gets as far as saying so;
    /// with it (the CSI stack of tests/cluster), it succeeds.
    Snapshot,
}

struct Run {
    bin: &'static str,
    args: Vec<String>,
    before: Before,
    expect: Expect,
}

impl Run {
    fn new(bin: &'static str, args: &[&str], before: Before, expect: Expect) -> Run {
        Run {
            bin,
            args: args.iter().map(|a| a.to_string()).collect(),
            before,
            expect,
        }
    }
}

/// The database every run shares, its dump, and the admin's view of it.
struct Shared {
    ns: common::TestNamespace,
    dir: tempfile::TempDir,
    deploy_args: Vec<String>,
    snapshot_api: bool,
    counter: std::sync::atomic::AtomicUsize,
    /// The file name of the backup the admin's `schedule run-now` wrote to `rbac-backups`.
    backup: std::sync::OnceLock<String>,
}

impl Shared {
    fn unique(&self) -> usize {
        self.counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    async fn prepare(&self, before: Before) {
        match before {
            Before::Nothing => {}
            Before::DatabaseReady => self.database_ready("postgres").await,
            Before::Victim => self.victim().await,
            Before::NoFresh => self.no_fresh().await,
            Before::SnapshotToDelete => {
                self.volume_snapshot("rbac-delete-me").await;
            }
            Before::NoSchedule => self.no_schedule().await,
            Before::Scheduled => self.scheduled().await,
            Before::Seed => {
                let snapshots = self.volume_snapshot("rbac-seed").await;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
                loop {
                    let seed = snapshots.get("rbac-seed").await.unwrap();
                    if seed.data.pointer("/status/readyToUse") == Some(&serde_json::json!(true)) {
                        return;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "rbac-seed never became ready"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Creates (as the admin) a VolumeSnapshot of the shared database's claim, labelled as
    /// `kubectl dbbackup snapshot` labels its own, unless it exists.
    async fn volume_snapshot(&self, name: &str) -> Api<kube::api::DynamicObject> {
        let resource = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "snapshot.storage.k8s.io",
            "v1",
            "VolumeSnapshot",
        ));
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(self.ns.kube.client.clone(), &self.ns.name, &resource);
        let object: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {"name": name, "labels": {
                "app.kubernetes.io/managed-by": "kubectl-dbbackup",
                "app.kubernetes.io/instance": "postgres",
                "app.kubernetes.io/name": "postgresql"},
                "annotations": {"kubectl-db.io/engine-version": "15",
                                "kubectl-db.io/consistency": "crash"}},
            "spec": {"source": {"persistentVolumeClaimName": "data-postgres-0"}}
        }))
        .unwrap();
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            // Still there (or still being deleted after the last run): the run finds it.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => panic!("create VolumeSnapshot {name}: {err}"),
        }
        api
    }

    /// Deletes (as the admin) the shared database's CronJob, if there, and waits until it is
    /// gone; its Jobs go in the background.
    async fn no_schedule(&self) {
        let api: Api<k8s_openapi::api::batch::v1::CronJob> = self.ns.kube.api();
        let _ = api
            .delete(SCHEDULE_CRON_JOB, &DeleteParams::background())
            .await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while api.get_opt(SCHEDULE_CRON_JOB).await.unwrap().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "CronJob {SCHEDULE_CRON_JOB} never went away"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Applies (as the admin) the shared database's schedule to PVC `rbac-backups`, unless
    /// its CronJob is there.
    async fn scheduled(&self) {
        let api: Api<k8s_openapi::api::batch::v1::CronJob> = self.ns.kube.api();
        if api.get_opt(SCHEDULE_CRON_JOB).await.unwrap().is_some() {
            return;
        }
        let (code, _, stderr) = common::output(self.ns.bin("kubectl-dbbackup").args([
            "schedule",
            "postgres-0",
            "--at",
            "03:00",
            "--to",
            "pvc:rbac-backups",
        ]));
        assert_eq!(code, 0, "{stderr}");
    }

    /// The schedule and one backup on its PVC, made once by the admin (a real dump Job):
    /// `list`, `verify` and `restore` of `pvc:` locations read it.
    async fn scheduled_backup(&self) {
        self.scheduled().await;
        let (code, stdout, stderr) = common::output(self.ns.bin("kubectl-dbbackup").args([
            "schedule",
            "run-now",
            "postgres",
            "--timeout",
            "5m",
            "-o",
            "json",
        ]));
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let file = report["run"]["file"].as_str().unwrap().to_string();
        self.backup.set(file).unwrap();
    }

    /// Deletes the database `fresh` (if there) and waits until its pod and PVC are gone.
    async fn no_fresh(&self) {
        let (code, _, stderr) = common::output(self.ns.bin("kubectl-dbdeploy").args([
            "delete",
            "fresh",
            "--purge-data",
            "--yes",
        ]));
        // 2: no database `fresh` (delete refuses to act on what it did not make).
        assert!(code == 0 || code == 2, "{stderr}");
        self.gone("fresh").await;
    }

    /// Waits until pod NAME-0 and PVC data-NAME-0 are not being deleted any more.
    async fn gone(&self, name: &str) {
        let pods: Api<k8s_openapi::api::core::v1::Pod> = self.ns.kube.api();
        let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = self.ns.kube.api();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        loop {
            let pod = pods.get_opt(&format!("{name}-0")).await.unwrap();
            let pvc = claims
                .get_opt(&kubectl_db::render::Names::pvc(name, 0))
                .await
                .unwrap();
            let pod_going = pod.is_some_and(|p| p.metadata.deletion_timestamp.is_some());
            let going = pod_going || pvc.is_some_and(|p| p.metadata.deletion_timestamp.is_some());
            if !going {
                return;
            }
            if pod_going {
                // A throwaway database: no need to sit out its shutdown grace period.
                let _ = pods
                    .delete(
                        &format!("{name}-0"),
                        &DeleteParams {
                            grace_period_seconds: Some(0),
                            ..DeleteParams::default()
                        },
                    )
                    .await;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the last {name} never went away"
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    async fn database_ready(&self, name: &str) {
        let seen = kubectl_db::wait::statefulset_ready(
            &self.ns.kube,
            name,
            std::time::Duration::from_secs(180),
            &kubectl_db::output::Progress::spinner(false),
        )
        .await
        .unwrap();
        assert!(seen.ready, "{name} not ready: {:?}", seen.diagnosis());
    }

    /// (Re)creates the throwaway database and waits until its PVC exists. After a delete
    /// that went through, the old pod and PVC are first let go: a StatefulSet re-created
    /// while its PVC is terminating would wait on that PVC forever.
    async fn victim(&self) {
        self.gone("victim").await;
        let mut args: Vec<String> = vec![
            "postgres".into(),
            "--name".into(),
            "victim".into(),
            "--no-wait".into(),
            // With a PDB, so that `delete` has one of each kind to delete.
            "--pdb".into(),
        ];
        args.extend(self.deploy_args[1..].iter().cloned());
        let (code, _, stderr) = common::output(self.ns.bin("kubectl-dbdeploy").args(&args));
        assert_eq!(code, 0, "{stderr}");
        let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = self.ns.kube.api();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        loop {
            let pvc = pvcs.get_opt("data-victim-0").await.unwrap();
            if pvc.is_some_and(|p| p.metadata.deletion_timestamp.is_none()) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "PVC data-victim-0 never appeared"
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Runs as `identity`; returns the exit code and everything printed.
    async fn run(&self, identity: &Identity, run: &Run) -> (i32, String) {
        self.prepare(run.before).await;
        let n = self.unique();
        let args: Vec<String> = run
            .args
            .iter()
            .map(|a| {
                let backup = self.backup.get().map_or("", String::as_str);
                a.replace("{dir}", &self.dir.path().display().to_string())
                    .replace("{n}", &n.to_string())
                    .replace("{backup}", backup)
            })
            .collect();
        let mut cmd = identity.bin(&self.ns, run.bin);
        cmd.args(&args).timeout(std::time::Duration::from_secs(300));
        let (code, stdout, stderr) = common::output(&mut cmd);
        eprintln!(
            "  [{}] {} {}: exit {code}",
            identity.name,
            run.bin,
            args.join(" ")
        );
        (code, combined(&stdout, &stderr))
    }
}

/// The CronJob of the shared database's backup schedule.
const SCHEDULE_CRON_JOB: &str = "postgres-backup";

/// The runs of each command: together they use every permission of its Role.
fn runs(command: &str) -> Vec<Run> {
    use Before::*;
    use Expect::*;
    match command {
        "dbdeploy" => vec![
            Run::new("kubectl-dbdeploy", &["list"], Nothing, Success),
            // A new database, applied with --dry-run=server: every object is created, for
            // the authorizer, without being stored.
            Run::new(
                "kubectl-dbdeploy",
                &[
                    "postgres",
                    "--name",
                    "probe{n}",
                    "--pdb",
                    "--dry-run=server",
                    "-o",
                    "json",
                ],
                Nothing,
                Success,
            ),
            // The shared database again: reads, patches, the wait (watches), the query (exec).
            Run::new("kubectl-dbdeploy", &["{deploy}"], Nothing, Success),
            Run::new(
                "kubectl-dbdeploy",
                &["delete", "victim", "--purge-data", "--yes"],
                Victim,
                Success,
            ),
            // A database that is not ready yet: the wait needs its watches' events.
            Run::new("kubectl-dbdeploy", &["{fresh}"], NoFresh, Success),
            // A new database from a snapshot, with --dry-run=server: the claim is created
            // from the snapshot for the authorizer, nothing is stored.
            Run::new("kubectl-dbdeploy", &["{seeded}"], Seed, Success),
        ],
        "dbcheck" => vec![
            Run::new(
                "kubectl-dbcheck",
                &["postgres-0", "-o", "json"],
                Nothing,
                Report,
            ),
            Run::new(
                "kubectl-dbcheck",
                &["pending-0", "-o", "json"],
                Nothing,
                Report,
            ),
            Run::new("kubectl-dbcheck", &["-o", "json"], Nothing, Report),
        ],
        "dbbackup" => vec![
            Run::new(
                "kubectl-dbbackup",
                &["dump", "postgres-0", "-f", "{dir}/dump{n}.sql.gz"],
                Nothing,
                Success,
            ),
            Run::new(
                "kubectl-dbbackup",
                &[
                    "restore",
                    "postgres-0",
                    "-f",
                    "{dir}/shared.sql.gz",
                    "--yes",
                ],
                Nothing,
                Success,
            ),
            Run::new(
                "kubectl-dbbackup",
                &["snapshot", "postgres-0", "--timeout", "1m"],
                Nothing,
                Snapshot,
            ),
            // A named class (get) instead of the default one (list).
            Run::new(
                "kubectl-dbbackup",
                &[
                    "snapshot",
                    "postgres-0",
                    "--class",
                    "csi-hostpath-snapclass",
                    "--crash-consistent",
                    "--timeout",
                    "1m",
                ],
                Nothing,
                Snapshot,
            ),
            Run::new(
                "kubectl-dbbackup",
                &["snapshot", "list", "-o", "json"],
                Nothing,
                Snapshot,
            ),
            Run::new(
                "kubectl-dbbackup",
                &["snapshot", "delete", "rbac-delete-me"],
                SnapshotToDelete,
                Snapshot,
            ),
        ],
        "dbpersist" => vec![Run::new(
            "kubectl-dbpersist",
            &["postgres-0", "--yes", "--timeout", "2m"],
            DatabaseReady,
            Success,
        )],
        // Cheap runs first; `run-now` (a real dump Job) last, so that without a verb an
        // earlier run needs it is never reached. Its precondition, like delete's, is made by
        // the admin, not by the runs before it.
        "dbbackup-schedule" => vec![
            // A new PVC and a new CronJob, applied with --dry-run=server: both are created
            // for the authorizer, nothing is stored.
            Run::new(
                "kubectl-dbbackup",
                &[
                    "schedule",
                    "postgres-0",
                    "--at",
                    "03:00",
                    "--to",
                    "pvc:probe{n}",
                    "--dry-run=server",
                    "-o",
                    "json",
                ],
                NoSchedule,
                Success,
            ),
            Run::new(
                "kubectl-dbbackup",
                &["schedule", "list", "-o", "json"],
                Scheduled,
                Success,
            ),
            // Through the reader pod: created, watched, exec'd into, deleted.
            Run::new(
                "kubectl-dbbackup",
                &["list", "pvc:rbac-backups", "-o", "json"],
                Scheduled,
                Success,
            ),
            Run::new(
                "kubectl-dbbackup",
                &["verify", "pvc:rbac-backups/{backup}", "-o", "json"],
                Scheduled,
                Success,
            ),
            Run::new(
                "kubectl-dbbackup",
                &[
                    "restore",
                    "postgres-0",
                    "-f",
                    "pvc:rbac-backups/{backup}",
                    "--yes",
                ],
                Scheduled,
                Success,
            ),
            Run::new(
                "kubectl-dbbackup",
                &["schedule", "delete", "postgres"],
                Scheduled,
                Success,
            ),
            Run::new(
                "kubectl-dbbackup",
                &[
                    "schedule",
                    "run-now",
                    "postgres",
                    "--timeout",
                    "5m",
                    "-o",
                    "json",
                ],
                Scheduled,
                Success,
            ),
        ],
        other => panic!("no runs for {other}"),
    }
}

fn expected(expect: Expect, code: i32, text: &str) -> bool {
    let clean = !text.contains("forbidden") && !text.contains("403 Forbidden");
    clean
        && match expect {
            Expect::Success => code == 0,
            Expect::Report => code == 0 || code == 1,
            // A cluster without the snapshot API (KDB_CSI=0) gets as far as saying so.
            Expect::Snapshot => (code == 3 && text.contains("no VolumeSnapshot API")) || code == 0,
        }
}

/// Every run succeeds under exactly the documented objects of `command`.
async fn sufficient(shared: &Shared, command: &str, run: Run) {
    let (roles, cluster_roles) = documented(command);
    eprintln!("{command}: the documented Role");
    let full = Identity::create(
        &shared.ns,
        &format!("{command}-full"),
        roles,
        cluster_roles,
        Some(shared.dir.path()),
    )
    .await;
    let (code, text) = shared.run(&full, &run).await;
    assert!(
        expected(run.expect, code, &text),
        "{command} under its documented Role: {} {:?} exit {code}\n{text}",
        run.bin,
        run.args
    );
}

/// Sufficient: every run of the command succeeds under exactly its documented objects.
/// Minimal: without any one verb, some run stops on it and says which. Returns the verbs no
/// run needed, each with what the last run printed.
async fn sufficient_and_minimal(shared: &Shared, command: &str) -> Vec<String> {
    let (roles, cluster_roles) = documented(command);
    let runs: Vec<Run> = runs(command)
        .into_iter()
        .map(|mut run| {
            if run.args == ["{deploy}"] {
                run.args = shared.deploy_args.clone();
            }
            if run.args == ["{seeded}"] {
                run.args = [
                    "postgres",
                    "--name",
                    "seeded{n}",
                    "--from-snapshot",
                    "rbac-seed",
                ]
                .iter()
                .map(|a| a.to_string())
                .collect();
                run.args.extend(shared.deploy_args[1..].iter().cloned());
                run.args
                    .extend(["--dry-run=server".to_string(), "-o".into(), "json".into()]);
            }
            if run.args == ["{fresh}"] {
                run.args = vec!["postgres".into(), "--name".into(), "fresh".into()];
                run.args.extend(shared.deploy_args[1..].iter().cloned());
            }
            run
        })
        // Without the snapshot API there is nothing to start from or delete.
        .filter(|run| {
            shared.snapshot_api || !matches!(run.before, Before::Seed | Before::SnapshotToDelete)
        })
        .collect();
    eprintln!("{command}: the documented Role");
    let full = Identity::create(
        &shared.ns,
        &format!("{command}-full"),
        roles.clone(),
        cluster_roles.clone(),
        Some(shared.dir.path()),
    )
    .await;
    for run in &runs {
        let (code, text) = shared.run(&full, run).await;
        assert!(
            expected(run.expect, code, &text),
            "{command} under its documented Role: {} {:?} exit {code}, expected {:?}\n{text}",
            run.bin,
            run.args,
            run.expect
        );
    }
    drop(full);

    let mut unused = Vec::new();
    for (i, atom) in atoms(&roles, &cluster_roles).iter().enumerate() {
        // Kubernetes 1.35+ checks `create` on pods/exec for WebSocket exec too; this 1.34
        // cluster checks only `get`, so that verb cannot be shown needed here (docs/rbac.md).
        if atom.resource == "pods/exec" && atom.verb == "create" {
            eprintln!("{command}: not checked: {atom} (needed from Kubernetes 1.35 on)");
            continue;
        }
        // run-now's Job is owned by the CronJob with blockOwnerDeletion: only clusters with
        // the OwnerReferencesPermissionEnforcement admission plugin check this (docs/rbac.md).
        if atom.resource == "cronjobs/finalizers" && atom.verb == "update" {
            eprintln!(
                "{command}: not checked: {atom} (needed where OwnerReferencesPermissionEnforcement is enabled)"
            );
            continue;
        }
        // Creating a claim is only dbdeploy --from-snapshot's, which needs the snapshot API.
        let snapshot_only = atom.group == "snapshot.storage.k8s.io"
            || (command == "dbdeploy"
                && atom.resource == "persistentvolumeclaims"
                && atom.verb == "create");
        if snapshot_only && !shared.snapshot_api {
            eprintln!(
                "{command}: not checked: {atom} (the cluster has no VolumeSnapshot API, so snapshot stops before using it)"
            );
            continue;
        }
        eprintln!("{command}: without {atom}");
        let (less, less_cluster) = without(&roles, &cluster_roles, atom);
        let identity = Identity::create(
            &shared.ns,
            &format!("{command}-less-{i}"),
            less,
            less_cluster,
            None,
        )
        .await;
        let mut stopped = None;
        let mut last = String::new();
        for run in &runs {
            let (code, text) = shared.run(&identity, run).await;
            last = text.clone();
            if names_refusal(&text, atom) {
                stopped = Some((code, text));
                break;
            }
            assert!(
                expected(run.expect, code, &text) || text.contains("forbidden"),
                "without {atom}: {} {:?} exit {code} without naming the refusal\n{text}",
                run.bin,
                run.args
            );
        }
        match stopped {
            Some((3, text)) => assert!(
                text.contains("hint:"),
                "without {atom}: exit 3 but no hint\n{text}"
            ),
            // Optional reads, and the reader pod's deletion (docs/rbac.md): the command goes
            // on and its report or a warning says which permission was missing.
            Some((code, _)) => {
                assert!(code == 0 || code == 1, "without {atom}: exit {code}");
                eprintln!("{command}: without {atom}: reported, exit {code} (not fatal)");
            }
            // With the API served, a snapshot of a volume its driver cannot snapshot ends
            // before the wait (list/watch) or a named class (get) come into play: said, not
            // failed.
            None if atom.group == "snapshot.storage.k8s.io" => eprintln!(
                "{command}: not shown needed on this cluster: {atom} (the snapshot ended before using it)"
            ),
            None => {
                let problem = format!(
                    "docs/rbac/{command}.yaml: no run needs {atom}; the last run printed:\n{}",
                    last.chars().take(3000).collect::<String>()
                );
                eprintln!("{problem}");
                unused.push(problem);
            }
        }
    }
    unused
}

#[tokio::test(flavor = "multi_thread")]
async fn every_role_is_sufficient_and_minimal() {
    let kubeconfig = require_cluster!();
    let ns = common::TestNamespace::create(&kubeconfig, "rbac", &[]).await;
    let snapshot_api = ns
        .kube
        .client
        .list_api_group_resources("snapshot.storage.k8s.io/v1")
        .await
        .is_ok();
    let mut deploy_args: Vec<String> = vec![
        "postgres".into(),
        "--image".into(),
        common::postgres_image(),
    ];
    deploy_args.extend(common::SMALL.iter().map(|s| s.to_string()));
    deploy_args.extend(["--timeout".to_string(), "4m".to_string()]);
    if snapshot_api {
        // A CSI volume, so that `snapshot` cuts a snapshot and every verb it needs is used.
        deploy_args.extend(["--storage-class".to_string(), "csi-hostpath".to_string()]);
    }
    let shared = Shared {
        ns,
        dir: tempfile::tempdir().unwrap(),
        deploy_args,
        snapshot_api,
        counter: Default::default(),
        backup: Default::default(),
    };
    // One database for the whole test, deployed (and dumped) once by the admin.
    let (code, _, stderr) =
        common::output(shared.ns.bin("kubectl-dbdeploy").args(&shared.deploy_args));
    assert_eq!(code, 0, "{stderr}");
    let dump = shared.dir.path().join("shared.sql.gz");
    let (code, _, stderr) = common::output(
        shared
            .ns
            .bin("kubectl-dbbackup")
            .args(["dump", "postgres-0", "-f"])
            .arg(&dump),
    );
    assert_eq!(code, 0, "{stderr}");
    // A database whose PVC never binds (no such StorageClass): dbcheck explains it from the
    // cluster's StorageClasses.
    let mut args: Vec<String> = vec![
        "postgres".into(),
        "--name".into(),
        "pending".into(),
        "--storage-class".into(),
        "no-such-class".into(),
        "--no-wait".into(),
    ];
    let shared_args = shared.deploy_args[1..].join(" ");
    let without_class = shared_args.replace(" --storage-class csi-hostpath", "");
    args.extend(without_class.split(' ').map(String::from));
    let (code, _, stderr) = common::output(shared.ns.bin("kubectl-dbdeploy").args(&args));
    assert_eq!(code, 0, "{stderr}");
    // A container that restarted once, so dbcheck reads its previous log (pods/log).
    let pods: Api<k8s_openapi::api::core::v1::Pod> = shared.ns.kube.api();
    let _ = kubectl_db::exec::shell(
        &pods,
        "postgres-0",
        Some("postgres"),
        "kill -INT 1",
        std::time::Duration::from_secs(30),
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let pod = pods.get("postgres-0").await.unwrap();
        let restarted = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.restart_count > 0));
        if restarted && kubectl_db::wait::pod_ready(&pod) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "postgres-0 did not restart"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    // dbcheck first (it needs the restarted container; dbpersist replaces the pod).
    let mut unused = Vec::new();
    for command in ["dbcheck", "dbbackup", "dbpersist", "dbdeploy"] {
        unused.extend(sufficient_and_minimal(&shared, command).await);
    }
    // The schedule last: its CronJob would change what dbcheck reports.
    shared.scheduled_backup().await;
    unused.extend(sufficient_and_minimal(&shared, "dbbackup-schedule").await);
    assert!(unused.is_empty(), "{}", unused.join("\n\n"));
    // drill: sufficient only. Each of its runs deploys and restores a database, so the
    // minimality check (one run per verb) would cost some thirty drills.
    sufficient(
        &shared,
        "dbbackup-drill",
        Run::new(
            "kubectl-dbbackup",
            &["drill", "{dir}/shared.sql.gz", "--timeout", "4m"],
            Before::Nothing,
            Expect::Success,
        ),
    )
    .await;

    let (code, _, stderr) = common::output(shared.ns.bin("kubectl-dbdeploy").args([
        "delete",
        "postgres",
        "--purge-data",
        "--yes",
    ]));
    assert_eq!(code, 0, "{stderr}");
}

/// kubectl's authentication flags on a quick read-only command (dbcheck of a namespace
/// without databases, under dbcheck's documented Role): a ServiceAccount token with the
/// server URL and no kubeconfig at all works, the token never shows in the output even at
/// -vv, and `--as`/`--as-group` are what the API server authorizes.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_and_a_server_url_are_enough_and_impersonation_is_honoured() {
    let kubeconfig = require_cluster!();
    let ns = common::TestNamespace::create(&kubeconfig, "auth", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (roles, cluster_roles) = documented("dbcheck");
    let role_name = format!("ci-{}", roles[0].metadata.name.clone().unwrap());
    let ci = Identity::create(&ns, "ci", roles, cluster_roles, Some(dir.path())).await;
    let Login::Token { server, token, .. } = &ci.login else {
        unreachable!("a token login was asked for")
    };
    let empty = format!("no databases found in namespace {}", ns.name);
    let (code, stdout, stderr) = common::output(ci.bin(&ns, "kubectl-dbcheck").arg("-vv"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&empty), "{stderr}");
    assert!(
        !stdout.contains(token.as_str()) && !stderr.contains(token.as_str()),
        "the token was printed:\n{stdout}\n{stderr}"
    );
    // The CA left out and verification skipped instead.
    let mut cmd = common::clean_bin("kubectl-dbcheck");
    cmd.args(["-n", &ns.name, "--server", server, "--token", token])
        .arg("--insecure-skip-tls-verify");
    let (code, _, stderr) = common::output(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&empty), "{stderr}");
    // A wrong token: the API server's 401, exit 3, and still not the token.
    let mut cmd = common::clean_bin("kubectl-dbcheck");
    cmd.args([
        "-n",
        &ns.name,
        "--server",
        server,
        "--token",
        "not-a-valid-token",
    ])
    .arg("--insecure-skip-tls-verify");
    let (code, _, stderr) = common::output(&mut cmd);
    assert_eq!(code, 3, "{stderr}");
    assert!(!stderr.contains("not-a-valid-token"), "{stderr}");

    // Impersonation: the admin's kubeconfig acting as the ServiceAccount, as a user of a
    // group the Role is bound to, and as one without any binding.
    let impersonated = |args: &[&str]| {
        let mut cmd = ns.bin("kubectl-dbcheck");
        cmd.args(args);
        common::output(&mut cmd)
    };
    let account = format!("system:serviceaccount:{}:ci", ns.name);
    let (code, _, stderr) = impersonated(&["--as", &account]);
    assert_eq!(code, 0, "{stderr}");
    let group = format!("kdb-auditors-{}", ns.name);
    let binding = RoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some("auditors".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: role_name,
        },
        subjects: Some(vec![Subject {
            kind: "Group".into(),
            name: group.clone(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(ns.kube.client.clone(), &ns.name)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    wait_group_authorized(&ns.kube.client, &ns.name, &group).await;
    let (code, _, stderr) =
        impersonated(&["--as", "jane", "--as-group", &group, "--as-uid", "1234"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = impersonated(&["--as", "jane"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("User \"jane\" cannot list resource"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
}

/// Waits until RBAC lets members of `group` list StatefulSets in the namespace.
async fn wait_group_authorized(client: &kube::Client, namespace: &str, group: &str) {
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("jane".into()),
            groups: Some(vec![group.to_string()]),
            resource_attributes: Some(ResourceAttributes {
                group: Some("apps".into()),
                resource: Some("statefulsets".into()),
                verb: Some("list".into()),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !reviews
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .is_some_and(|s| s.allowed)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "RBAC never allowed {group}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
