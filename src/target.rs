//! Resolving what the user names (`mysql-0`, `mysql`) to a pod, its database engine and
//! container — from dbdeploy's labels, or for hand-made deployments (the guide's YAML,
//! `app: mysql`) from the container image and ports.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::{Api, ResourceExt};

use crate::client::Kube;
use crate::engine::{ENGINE_LABEL, Engine};
use crate::error::{Error, Result};

/// A database pod and how to talk to it.
#[derive(Debug, Clone)]
pub struct Target {
    pub namespace: String,
    pub pod_name: String,
    pub pod: Option<Pod>,
    pub engine: Engine,
    /// The database container's name.
    pub container: String,
    /// The StatefulSet that owns the pod, if any.
    pub statefulset: Option<StatefulSet>,
}

/// The engine and container of a pod spec: the label first, then image, then ports.
pub fn engine_of(
    labels: &BTreeMap<String, String>,
    containers: &[Container],
) -> Option<(Engine, String)> {
    let labelled = labels.get(ENGINE_LABEL).and_then(|n| Engine::from_name(n));
    for container in containers {
        let image = container.image.clone().unwrap_or_default();
        let ports: Vec<i32> = container
            .ports
            .iter()
            .flatten()
            .map(|p| p.container_port)
            .collect();
        if let Some(engine) = Engine::detect(&image, &ports) {
            // The label wins over the image guess (mysql:8.0 may really be MariaDB's image).
            return Some((labelled.unwrap_or(engine), container.name.clone()));
        }
    }
    let first = containers.first()?;
    labelled.map(|engine| (engine, first.name.clone()))
}

/// Which engine a StatefulSet runs, and in which container: [`engine_of`] its pod template.
pub fn statefulset_engine(sts: &StatefulSet) -> Option<(Engine, String)> {
    let template = sts.spec.as_ref().map(|s| &s.template);
    let labels = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    let containers = template
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.as_slice());
    engine_of(
        labels.unwrap_or(&BTreeMap::new()),
        containers.unwrap_or_default(),
    )
}

/// Which engine a pod runs, and in which container: [`engine_of`] its labels and spec.
pub fn pod_engine(pod: &Pod) -> Option<(Engine, String)> {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice());
    engine_of(pod.labels(), containers.unwrap_or_default())
}

/// Pod names of a StatefulSet, `<name>-0` .. `<name>-(replicas-1)`.
pub fn statefulset_pods(sts: &StatefulSet) -> Vec<String> {
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    (0..replicas)
        .map(|i| format!("{}-{i}", sts.name_any()))
        .collect()
}

/// The StatefulSet that owns a pod, by owner reference.
pub fn owner_statefulset(pod: &Pod) -> Option<String> {
    pod.owner_references()
        .iter()
        .find(|o| o.kind == "StatefulSet")
        .map(|o| o.name.clone())
}

/// Resolves `name` as a pod, else as a StatefulSet (its pod `-0`, or the one `pod` names).
/// The pod itself may be missing (e.g. not yet created); the engine then comes from the
/// StatefulSet's template.
pub async fn resolve(kube: &Kube, name: &str) -> Result<Target> {
    let ns = kube.namespace.clone();
    let pods: Api<Pod> = kube.api();
    let sts_api: Api<StatefulSet> = kube.api();
    if let Some(pod) = pods
        .get_opt(name)
        .await
        .map_err(Error::api(format!("read pod {ns}/{name}")))?
    {
        let statefulset = match owner_statefulset(&pod) {
            Some(owner) => sts_api
                .get_opt(&owner)
                .await
                .map_err(Error::api(format!("read StatefulSet {ns}/{owner}")))?,
            None => None,
        };
        let (engine, container) = pod_engine(&pod).ok_or_else(|| {
            Error::NotFound(format!(
                "pod {ns}/{name} does not look like PostgreSQL, MySQL or MariaDB (no engine label, image or port matched)"
            ))
        })?;
        return Ok(Target {
            namespace: ns,
            pod_name: name.to_string(),
            pod: Some(pod),
            engine,
            container,
            statefulset,
        });
    }
    let Some(sts) = sts_api
        .get_opt(name)
        .await
        .map_err(Error::api(format!("read StatefulSet {ns}/{name}")))?
    else {
        return Err(Error::NotFound(format!(
            "no pod or StatefulSet named {name} in namespace {ns}"
        )));
    };
    let (engine, container) = statefulset_engine(&sts).ok_or_else(|| {
        Error::NotFound(format!(
            "StatefulSet {ns}/{name} does not look like PostgreSQL, MySQL or MariaDB"
        ))
    })?;
    let pod_name = format!("{name}-0");
    let pod = pods
        .get_opt(&pod_name)
        .await
        .map_err(Error::api(format!("read pod {ns}/{pod_name}")))?;
    Ok(Target {
        namespace: ns,
        pod_name,
        pod,
        engine,
        container,
        statefulset: Some(sts),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    fn container(name: &str, image: &str, port: i32) -> Container {
        Container {
            name: name.into(),
            image: Some(image.into()),
            ports: Some(vec![ContainerPort {
                container_port: port,
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn guide_yaml_is_recognised_by_image() {
        let labels = BTreeMap::from([("app".to_string(), "mysql".to_string())]);
        let found = engine_of(&labels, &[container("mysql", "mysql:8.0", 3306)]);
        assert_eq!(found, Some((Engine::Mysql, "mysql".into())));
    }

    #[test]
    fn label_beats_image_and_sidecars_are_skipped() {
        let labels = BTreeMap::from([(ENGINE_LABEL.to_string(), "mariadb".to_string())]);
        let found = engine_of(
            &labels,
            &[
                container("exporter", "prom/exporter:1", 9104),
                container("db", "mysql:8.0", 3306),
            ],
        );
        assert_eq!(found, Some((Engine::Mariadb, "db".into())));
    }

    #[test]
    fn a_statefulset_runs_what_its_pod_template_says() {
        let sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db"},
            "spec": {
                "selector": {},
                "serviceName": "db",
                "template": {
                    "metadata": {"labels": {ENGINE_LABEL: "mariadb"}},
                    "spec": {"containers": [{"name": "db", "image": "mysql:8.0"}]}
                }
            }
        }))
        .unwrap();
        assert_eq!(
            statefulset_engine(&sts),
            Some((Engine::Mariadb, "db".into()))
        );
        assert_eq!(statefulset_engine(&StatefulSet::default()), None);
    }
}
