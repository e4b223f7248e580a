//! Rendered manifests: snapshots per engine and option set (reviewed by eye, in
//! tests/integration/snapshots/), and one test per defect of the guide's manifests that must
//! not return.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use kubectl_db::engine::Engine;
use kubectl_db::output::objects_to_yaml;
use kubectl_db::render::{DeploySpec, Manifests, render};

fn passwords(engine: Engine) -> BTreeMap<String, String> {
    engine
        .password_keys()
        .iter()
        .map(|k| (k.to_string(), format!("test-{}", k.to_lowercase())))
        .collect()
}

fn manifests(spec: &DeploySpec) -> Manifests {
    spec.validate().expect("valid spec");
    render(spec, &passwords(spec.engine))
}

fn pod_spec(m: &Manifests) -> &PodSpec {
    m.stateful_set
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
}

fn db_container(m: &Manifests) -> &Container {
    &pod_spec(m).containers[0]
}

fn all_specs() -> Vec<DeploySpec> {
    let mut specs: Vec<DeploySpec> = Engine::ALL
        .iter()
        .map(|e| DeploySpec::new(*e, "default"))
        .collect();
    let mut mysql84 = DeploySpec::new(Engine::Mysql, "default");
    mysql84.image = "mysql:8.4".into();
    specs.push(mysql84);
    let mut debian_pg = DeploySpec::new(Engine::Postgres, "default");
    debian_pg.image = "postgres:16".into();
    specs.push(debian_pg);
    specs
}

fn yaml(m: &Manifests) -> String {
    objects_to_yaml(&m.to_values(true)).unwrap()
}

#[test]
fn snapshot_postgres_defaults() {
    insta::assert_snapshot!(yaml(&manifests(&DeploySpec::new(
        Engine::Postgres,
        "default"
    ))));
}

#[test]
fn snapshot_mysql_defaults() {
    insta::assert_snapshot!(yaml(&manifests(&DeploySpec::new(Engine::Mysql, "default"))));
}

#[test]
fn snapshot_mariadb_defaults() {
    insta::assert_snapshot!(yaml(&manifests(&DeploySpec::new(
        Engine::Mariadb,
        "default"
    ))));
}

#[test]
fn snapshot_postgres_with_options() {
    let mut spec = DeploySpec::new(Engine::Postgres, "shop");
    spec.name = "orders".into();
    spec.image = "postgres:16.4".into();
    spec.database = "orders".into();
    spec.user = "shop".into();
    spec.storage_size = "50Gi".into();
    spec.storage_class = Some("fast-ssd".into());
    spec.settings = vec![
        ("max_connections".into(), "500".into()),
        ("log_min_duration_statement".into(), "250ms".into()),
    ];
    spec.allow_namespace = true;
    spec.pdb = true;
    insta::assert_snapshot!(yaml(&manifests(&spec)));
}

#[test]
fn rendering_is_deterministic() {
    for spec in all_specs() {
        assert_eq!(yaml(&manifests(&spec)), yaml(&manifests(&spec)));
    }
}

#[test]
fn every_object_has_the_recommended_and_guide_labels() {
    for spec in all_specs() {
        for object in manifests(&spec).to_values(true) {
            let labels = &object["metadata"]["labels"];
            assert_eq!(labels["app"], spec.name.as_str(), "{object}");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "kubectl-dbdeploy");
            assert_eq!(labels["app.kubernetes.io/instance"], spec.name.as_str());
            assert_eq!(labels["app.kubernetes.io/name"], spec.engine.app_name());
        }
    }
}

#[test]
fn headless_and_clusterip_services() {
    let m = manifests(&DeploySpec::new(Engine::Mysql, "default"));
    let headless = m.headless_service.spec.as_ref().unwrap();
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    assert_eq!(
        m.headless_service.metadata.name.as_deref(),
        Some("mysql-headless")
    );
    assert_eq!(m.service.spec.as_ref().unwrap().cluster_ip, None);
    let sts = m.stateful_set.spec.as_ref().unwrap();
    assert_eq!(sts.service_name.as_deref(), Some("mysql-headless"));
    assert_eq!(sts.volume_claim_templates.as_ref().unwrap().len(), 1);
}

#[test]
fn network_policy_admits_only_client_pods_unless_namespace_allowed() {
    let mut spec = DeploySpec::new(Engine::Postgres, "default");
    let m = manifests(&spec);
    let from = m
        .network_policy
        .spec
        .as_ref()
        .unwrap()
        .ingress
        .as_ref()
        .unwrap()[0]
        .from
        .clone()
        .unwrap();
    assert_eq!(from.len(), 1);
    let labels = from[0]
        .pod_selector
        .as_ref()
        .unwrap()
        .match_labels
        .clone()
        .unwrap();
    assert_eq!(
        labels.get("postgres-client").map(String::as_str),
        Some("true")
    );
    spec.allow_namespace = true;
    let from = manifests(&spec)
        .network_policy
        .spec
        .unwrap()
        .ingress
        .unwrap()[0]
        .from
        .clone()
        .unwrap();
    assert_eq!(from.len(), 2);
}

#[test]
fn pdb_only_when_asked_for_a_single_replica() {
    let mut spec = DeploySpec::new(Engine::Postgres, "default");
    assert!(
        manifests(&spec).pdb.is_none(),
        "a PDB on 1 replica blocks drains forever"
    );
    spec.pdb = true;
    assert!(manifests(&spec).pdb.is_some());
}

#[test]
fn config_change_changes_the_pod_template() {
    let annotations = |spec: &DeploySpec| {
        manifests(spec)
            .stateful_set
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
    };
    let mut spec = DeploySpec::new(Engine::Postgres, "default");
    let before = annotations(&spec);
    spec.settings = vec![("work_mem".into(), "8MB".into())];
    let after = annotations(&spec);
    assert_ne!(
        before, after,
        "servers read config only at start: a change must roll the pod"
    );
}

// --- The guide's defects (PRODUCT.md §3), one test each. ---

#[test]
fn defect_1_postgres_config_is_applied_via_config_file() {
    let m = manifests(&DeploySpec::new(Engine::Postgres, "default"));
    let c = db_container(&m);
    let mounts = c.volume_mounts.as_ref().unwrap();
    assert!(
        mounts
            .iter()
            .all(|v| v.mount_path != "/docker-entrypoint-initdb.d"),
        "initdb.d only runs *.sh/*.sql: config mounted there is never applied"
    );
    let config_mount = mounts.iter().find(|v| v.name == "config").unwrap();
    assert!(
        !config_mount
            .mount_path
            .starts_with("/var/lib/postgresql/data")
    );
    let args = c.args.as_ref().unwrap().join(" ");
    assert_eq!(
        args,
        format!("-c config_file={}/postgresql.conf", config_mount.mount_path)
    );
    let conf = &m.config_map.data.as_ref().unwrap()["postgresql.conf"];
    assert!(conf.contains("listen_addresses = '*'"));
}

#[test]
fn defect_2_no_root_init_container_or_chown_and_fsgroup_on_root_mismatch() {
    for spec in all_specs() {
        let m = manifests(&spec);
        let pod = pod_spec(&m);
        assert!(pod.init_containers.is_none(), "{:?}", spec.engine);
        let text = serde_json::to_string(&m.stateful_set).unwrap();
        assert!(!text.contains("chown"));
        let sc = pod.security_context.as_ref().unwrap();
        assert_eq!(sc.fs_group, sc.run_as_user);
        assert_eq!(sc.fs_group_change_policy.as_deref(), Some("OnRootMismatch"));
    }
}

#[test]
fn defect_3_mysql_config_is_mounted_in_conf_d() {
    for engine in [Engine::Mysql, Engine::Mariadb] {
        let m = manifests(&DeploySpec::new(engine, "default"));
        let mounts = db_container(&m).volume_mounts.clone().unwrap();
        let config = mounts.iter().find(|v| v.name == "config").unwrap();
        assert_eq!(config.mount_path, "/etc/mysql/conf.d");
        assert!(
            m.config_map
                .data
                .as_ref()
                .unwrap()
                .contains_key("kubectl-db.cnf")
        );
    }
}

#[test]
fn defect_4_alpine_postgres_runs_as_uid_70() {
    let m = manifests(&DeploySpec::new(Engine::Postgres, "default"));
    let sc = pod_spec(&m).security_context.clone().unwrap();
    assert_eq!(sc.run_as_user, Some(70));
    assert_eq!(sc.fs_group, Some(70));
}

#[test]
fn defect_5_only_settings_valid_for_the_image() {
    for spec in all_specs()
        .into_iter()
        .filter(|s| s.engine != Engine::Postgres)
    {
        let m = manifests(&spec);
        let cnf = &m.config_map.data.as_ref().unwrap()["kubectl-db.cnf"];
        assert!(
            !cnf.contains("default-authentication-plugin"),
            "{}",
            spec.image
        );
        assert!(
            !cnf.contains("default_authentication_plugin"),
            "{}",
            spec.image
        );
        assert!(!cnf.contains("innodb_log_file_size"), "{}", spec.image);
        // MariaDB and MySQL 5.7 lack utf8mb4_0900_ai_ci, and MySQL 8 defaults to it.
        assert!(!cnf.contains("0900"), "{}", spec.image);
    }
}

#[test]
fn defect_6_no_password_on_command_lines_and_readiness_runs_a_query() {
    for spec in all_specs() {
        let m = manifests(&spec);
        let c = db_container(&m);
        let mut commands: Vec<String> = [&c.readiness_probe, &c.liveness_probe, &c.startup_probe]
            .into_iter()
            .flatten()
            .map(|p| p.exec.as_ref().unwrap().command.as_ref().unwrap().join(" "))
            .collect();
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
            commands.push(
                hook.exec
                    .as_ref()
                    .unwrap()
                    .command
                    .as_ref()
                    .unwrap()
                    .join(" "),
            );
        }
        for command in &commands {
            assert!(
                !command.contains(" -p\"") && !command.contains(" -p$"),
                "{command}"
            );
            assert!(!command.contains("--password"), "{command}");
        }
        let readiness = &commands[0];
        assert!(
            readiness.contains("SELECT 1"),
            "readiness must run a real query: {readiness}"
        );
        let text = serde_json::to_string(&m.stateful_set).unwrap();
        for password in passwords(spec.engine).values() {
            assert!(
                !text.contains(password.as_str()),
                "password leaked into the StatefulSet"
            );
        }
    }
}

#[test]
fn defect_8_no_storage_class_unless_asked() {
    let mut spec = DeploySpec::new(Engine::Postgres, "default");
    let vct = |m: &Manifests| {
        m.stateful_set
            .spec
            .as_ref()
            .unwrap()
            .volume_claim_templates
            .clone()
            .unwrap()
    };
    assert_eq!(
        vct(&manifests(&spec))[0]
            .spec
            .as_ref()
            .unwrap()
            .storage_class_name,
        None
    );
    spec.storage_class = Some("gp3".into());
    assert_eq!(
        vct(&manifests(&spec))[0]
            .spec
            .as_ref()
            .unwrap()
            .storage_class_name
            .as_deref(),
        Some("gp3")
    );
}

#[test]
fn defect_10_grace_period_allows_a_clean_shutdown() {
    for spec in all_specs() {
        let grace = pod_spec(&manifests(&spec))
            .termination_grace_period_seconds
            .unwrap();
        assert!(grace >= 60, "{grace}");
    }
}

#[test]
fn defect_11_startup_probe_protects_crash_recovery() {
    for spec in all_specs() {
        let m = manifests(&spec);
        let c = db_container(&m);
        let startup = c.startup_probe.as_ref().expect("startupProbe");
        let budget = startup.period_seconds.unwrap() * startup.failure_threshold.unwrap();
        assert!(budget >= 300, "start-up budget {budget}s");
        let liveness = c.liveness_probe.as_ref().unwrap();
        assert!(liveness.initial_delay_seconds.unwrap_or(0) < 60);
    }
}

#[test]
fn defect_12_pods_meet_the_restricted_pod_security_standard() {
    for spec in all_specs() {
        let m = manifests(&spec);
        let pod = pod_spec(&m);
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let csc = db_container(&m).security_context.clone().unwrap();
        assert_eq!(csc.allow_privilege_escalation, Some(false));
        assert_eq!(csc.read_only_root_filesystem, Some(true));
        assert_eq!(
            csc.capabilities.unwrap().drop.unwrap(),
            vec!["ALL".to_string()]
        );
        // A read-only root needs writable scratch space where the image writes.
        let mounts = db_container(&m).volume_mounts.clone().unwrap();
        assert!(mounts.iter().any(|v| v.mount_path == "/tmp"));
        for volume in pod.volumes.as_ref().unwrap() {
            assert!(
                volume.host_path.is_none(),
                "hostPath is not allowed by restricted"
            );
        }
    }
}

/// `delete` removes only objects `made_for` the database: every rendered object (and the
/// volumeClaimTemplate the PVCs inherit from) must pass, and nothing else may.
#[test]
fn every_rendered_object_is_recognised_as_made_for_its_database() {
    use kubectl_db::render::made_for;
    for spec in all_specs() {
        let m = manifests(&spec);
        let mut all: Vec<&BTreeMap<String, String>> = vec![
            m.config_map.metadata.labels.as_ref().unwrap(),
            m.secret.metadata.labels.as_ref().unwrap(),
            m.headless_service.metadata.labels.as_ref().unwrap(),
            m.service.metadata.labels.as_ref().unwrap(),
            m.stateful_set.metadata.labels.as_ref().unwrap(),
            m.network_policy.metadata.labels.as_ref().unwrap(),
        ];
        let templates = m.stateful_set.spec.as_ref().unwrap();
        for claim in templates.volume_claim_templates.iter().flatten() {
            all.push(claim.metadata.labels.as_ref().unwrap());
        }
        if let Some(pdb) = &m.pdb {
            all.push(pdb.metadata.labels.as_ref().unwrap());
        }
        for labels in all {
            assert!(made_for(labels, &spec.name), "{labels:?}");
            assert!(!made_for(labels, "other"), "{labels:?}");
        }
    }
    let guide = BTreeMap::from([("app".to_string(), "postgres".to_string())]);
    assert!(!made_for(&guide, "postgres"));
    let foreign = BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            "helm".to_string(),
        ),
        (
            "app.kubernetes.io/instance".to_string(),
            "postgres".to_string(),
        ),
    ]);
    assert!(!made_for(&foreign, "postgres"));
}
