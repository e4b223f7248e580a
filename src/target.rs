//! Resolving what the user names (`mysql-0`, `mysql`) to a pod, its database engine and
//! container — from dbdeploy's labels, or for hand-made deployments (the guide's YAML,
//! `app: mysql`) from the container image and ports.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::client::Kube;
use crate::engine::{ENGINE_LABEL, Engine};
use crate::error::{Error, Result};

/// A target as kubectl writes one: `NAME` (a pod, else a StatefulSet), `pod/NAME`
/// (`po/`, `pods/`) or `statefulset/NAME` (`sts/`, `statefulsets/`, `statefulset.apps/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetRef {
    /// A bare name: the pod of that name, else the StatefulSet.
    Any(String),
    Pod(String),
    StatefulSet(String),
}

impl TargetRef {
    /// Parses what the user typed; the message says what is wrong (a usage error, exit 2).
    pub fn parse(text: &str) -> std::result::Result<TargetRef, String> {
        let (kind, name) = match text.split_once('/') {
            Some((kind, name)) => (Some(kind), name),
            None => (None, text),
        };
        check_object_name(text, name)?;
        let kind = kind.map(str::to_ascii_lowercase);
        match kind.as_deref() {
            None => Ok(TargetRef::Any(name.into())),
            Some("pod" | "pods" | "po") => Ok(TargetRef::Pod(name.into())),
            Some(
                "statefulset" | "statefulsets" | "sts" | "statefulset.apps" | "statefulsets.apps",
            ) => Ok(TargetRef::StatefulSet(name.into())),
            Some(other) => Err(format!(
                "invalid target {text:?}: unknown resource type {other:?}; a target is POD, pod/NAME or sts/NAME"
            )),
        }
    }

    /// The object's name, without its kind.
    pub fn name(&self) -> &str {
        match self {
            TargetRef::Any(name) | TargetRef::Pod(name) | TargetRef::StatefulSet(name) => name,
        }
    }

    /// Whether this names the pod `pod` itself rather than its StatefulSet.
    pub fn names_pod(&self, pod: &str) -> bool {
        match self {
            TargetRef::Pod(_) => true,
            TargetRef::Any(name) => name == pod,
            TargetRef::StatefulSet(_) => false,
        }
    }
}

impl std::fmt::Display for TargetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetRef::Any(name) => write!(f, "{name}"),
            TargetRef::Pod(name) => write!(f, "pod/{name}"),
            TargetRef::StatefulSet(name) => write!(f, "statefulset/{name}"),
        }
    }
}

/// clap's value parser for TARGET arguments: checked before any API call (exit 2), kept as
/// typed (the flows parse it again in [`resolve`]).
pub fn parse_target(text: &str) -> std::result::Result<String, String> {
    TargetRef::parse(text).map(|_| text.to_string())
}

/// A pod or StatefulSet name is a DNS subdomain (RFC 1123): at most 253 characters of
/// lower-case letters, digits, '-' and '.', starting and ending with a letter or digit.
fn check_object_name(text: &str, name: &str) -> std::result::Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid target {text:?}: a pod or StatefulSet name is lower-case letters, digits, '-' and '.' (POD, pod/NAME or sts/NAME)"
        ))
    }
}

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

/// The engine and container of a pod spec, in the container `-c` names when given (which
/// must exist); the engine from the label, else that container's image or ports, else
/// [`engine_of`] the whole pod.
pub fn engine_in(
    labels: &BTreeMap<String, String>,
    containers: &[Container],
    wanted: Option<&str>,
    what: &str,
) -> Result<(Engine, String)> {
    let not_a_database = || {
        Error::NotFound(format!(
            "{what} does not look like PostgreSQL, MySQL or MariaDB (no engine label, image or port matched)"
        ))
    };
    let Some(wanted) = wanted else {
        return engine_of(labels, containers).ok_or_else(not_a_database);
    };
    let Some(container) = containers.iter().find(|c| c.name == wanted) else {
        let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
        return Err(Error::NotFound(format!(
            "{what} has no container {wanted} (it has: {})",
            names.join(", ")
        )));
    };
    let engine = engine_of(labels, std::slice::from_ref(container))
        .or_else(|| engine_of(labels, containers))
        .map(|(engine, _)| engine)
        .ok_or_else(not_a_database)?;
    Ok((engine, wanted.to_string()))
}

/// Resolves a target as kubectl writes it ([`TargetRef`]): a bare name as a pod, else as a
/// StatefulSet (its pod `-0`); `pod/NAME` and `sts/NAME` as that kind only. The pod itself
/// may be missing (e.g. not yet created); the engine then comes from the StatefulSet's
/// template. `container` is `-c`: the database container when the pod has several.
pub async fn resolve(kube: &Kube, text: &str, container: Option<&str>) -> Result<Target> {
    let wanted = TargetRef::parse(text).map_err(Error::Usage)?;
    let name = wanted.name();
    let ns = kube.namespace.clone();
    let pods: Api<Pod> = kube.api();
    let sts_api: Api<StatefulSet> = kube.api();
    if !matches!(wanted, TargetRef::StatefulSet(_)) {
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
            let containers = pod.spec.as_ref().map(|s| s.containers.as_slice());
            let (engine, container) = engine_in(
                pod.labels(),
                containers.unwrap_or_default(),
                container,
                &format!("pod {ns}/{name}"),
            )?;
            return Ok(Target {
                namespace: ns,
                pod_name: name.to_string(),
                pod: Some(pod),
                engine,
                container,
                statefulset,
            });
        }
        if matches!(wanted, TargetRef::Pod(_)) {
            return Err(Error::NotFound(format!(
                "no pod named {name} in namespace {ns}"
            )));
        }
    }
    let Some(sts) = sts_api
        .get_opt(name)
        .await
        .map_err(Error::api(format!("read StatefulSet {ns}/{name}")))?
    else {
        let what = match wanted {
            TargetRef::StatefulSet(_) => "StatefulSet",
            _ => "pod or StatefulSet",
        };
        return Err(Error::NotFound(format!(
            "no {what} named {name} in namespace {ns}"
        )));
    };
    let template = sts.spec.as_ref().map(|s| &s.template);
    let labels = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let containers = template
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.as_slice());
    let (engine, container) = engine_in(
        &labels,
        containers.unwrap_or_default(),
        container,
        &format!("StatefulSet {ns}/{name}"),
    )?;
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

/// A database a label selector matched.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Selected {
    pub namespace: String,
    /// `statefulset/NAME`, or `pod/NAME` for a pod no StatefulSet owns.
    pub target: String,
    /// The StatefulSet's or pod's name.
    pub name: String,
}

/// The databases of the namespace (every namespace with `all_namespaces`): every
/// StatefulSet that runs one; with `-l SELECTOR`, those the selector matches, by their own
/// labels or their pods' (`app=mysql` is usually on the pods), and database pods no
/// StatefulSet owns that it matches.
pub async fn databases(
    kube: &Kube,
    all_namespaces: bool,
    selector: Option<&str>,
) -> Result<Vec<Selected>> {
    let (sts_api, pod_api): (Api<StatefulSet>, Api<Pod>) = if all_namespaces {
        (kube.api_all(), kube.api_all())
    } else {
        (kube.api(), kube.api())
    };
    let params = match selector {
        Some(selector) => ListParams::default().labels(selector),
        None => ListParams::default(),
    };
    let namespace_of = |ns: Option<String>| ns.unwrap_or_else(|| kube.namespace.clone());
    let mut found = std::collections::BTreeSet::new();
    let statefulsets = sts_api
        .list(&params)
        .await
        .map_err(Error::api("list StatefulSets"))?;
    for sts in statefulsets
        .items
        .iter()
        .filter(|s| statefulset_engine(s).is_some())
    {
        found.insert(Selected {
            namespace: namespace_of(sts.namespace()),
            target: format!("statefulset/{}", sts.name_any()),
            name: sts.name_any(),
        });
    }
    if selector.is_some() {
        let pods = pod_api
            .list(&params)
            .await
            .map_err(Error::api("list pods"))?;
        for pod in pods.items.iter().filter(|p| pod_engine(p).is_some()) {
            let (kind, name) = match owner_statefulset(pod) {
                Some(owner) => ("statefulset", owner),
                None => ("pod", pod.name_any()),
            };
            found.insert(Selected {
                namespace: namespace_of(pod.namespace()),
                target: format!("{kind}/{name}"),
                name,
            });
        }
    }
    Ok(found.into_iter().collect())
}

/// The target a command acts on: `target` as typed, or the one database `selector` matches.
pub async fn named_or_selected(
    kube: &Kube,
    target: Option<&str>,
    selector: Option<&str>,
) -> Result<String> {
    match (target, selector) {
        (Some(target), None) => Ok(target.to_string()),
        (None, Some(selector)) => select_one(kube, selector).await,
        _ => Err(Error::Usage(
            "name a database (POD, pod/NAME, sts/NAME) or select one with -l SELECTOR".into(),
        )),
    }
}

/// The one database `-l SELECTOR` matches in the namespace, as a target; none is not
/// found, several are refused (exit 2): a command that acts on one database does not
/// guess which.
pub async fn select_one(kube: &Kube, selector: &str) -> Result<String> {
    let found = databases(kube, false, Some(selector)).await?;
    match found.as_slice() {
        [one] => Ok(one.target.clone()),
        [] => Err(Error::NotFound(format!(
            "no database matches -l {selector} in namespace {}",
            kube.namespace
        ))),
        many => Err(Error::Refused(format!(
            "-l {selector} matches {} databases in namespace {} ({}); name one",
            many.len(),
            kube.namespace,
            many.iter()
                .map(|s| s.target.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
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
    fn targets_parse_as_kubectl_writes_them() {
        let parse = |text: &str| TargetRef::parse(text).unwrap();
        assert_eq!(parse("mysql-0"), TargetRef::Any("mysql-0".into()));
        for pod in ["pod/mysql-0", "po/mysql-0", "pods/mysql-0", "Pod/mysql-0"] {
            assert_eq!(parse(pod), TargetRef::Pod("mysql-0".into()), "{pod}");
        }
        for sts in [
            "sts/mysql",
            "statefulset/mysql",
            "statefulsets/mysql",
            "statefulset.apps/mysql",
            "StatefulSet/mysql",
        ] {
            assert_eq!(parse(sts), TargetRef::StatefulSet("mysql".into()), "{sts}");
        }
        assert_eq!(parse("sts/db.v2").name(), "db.v2");
        assert_eq!(parse("sts/mysql").to_string(), "statefulset/mysql");
        assert_eq!(parse("po/mysql-0").to_string(), "pod/mysql-0");
    }

    #[test]
    fn bad_targets_say_what_a_target_is() {
        let error = |text: &str| TargetRef::parse(text).unwrap_err();
        assert_eq!(
            error("deploy/mysql"),
            "invalid target \"deploy/mysql\": unknown resource type \"deploy\"; a target is POD, pod/NAME or sts/NAME"
        );
        for bad in [
            "", "sts/", "/mysql", "MySQL", "pod/a/b", "my_sql", "-mysql", "mysql-",
        ] {
            assert!(error(bad).starts_with("invalid target"), "{bad:?}");
        }
        assert!(parse_target(&"a".repeat(254)).is_err());
        assert_eq!(parse_target("sts/mysql"), Ok("sts/mysql".into()));
    }

    #[test]
    fn a_bare_name_or_a_pod_names_the_pod_a_statefulset_does_not() {
        assert!(TargetRef::Any("mysql-1".into()).names_pod("mysql-1"));
        assert!(!TargetRef::Any("mysql".into()).names_pod("mysql-0"));
        assert!(TargetRef::Pod("mysql-1".into()).names_pod("mysql-1"));
        assert!(!TargetRef::StatefulSet("mysql".into()).names_pod("mysql-0"));
    }

    #[test]
    fn the_container_flag_picks_among_several() {
        let labels = BTreeMap::from([(ENGINE_LABEL.to_string(), "postgresql".to_string())]);
        let containers = [
            container("exporter", "prom/exporter:1", 9187),
            container("db", "postgres:15", 5432),
            container("db-copy", "busybox:1", 8080),
        ];
        let pick = |wanted| engine_in(&labels, &containers, wanted, "pod ns/p");
        assert_eq!(pick(None).unwrap(), (Engine::Postgres, "db".into()));
        // A container that is not recognisable itself still runs what the label says.
        assert_eq!(
            pick(Some("db-copy")).unwrap(),
            (Engine::Postgres, "db-copy".into())
        );
        let missing = pick(Some("nope")).unwrap_err().to_string();
        assert_eq!(
            missing,
            "pod ns/p has no container nope (it has: exporter, db, db-copy)"
        );
        let unlabelled = engine_in(&BTreeMap::new(), &containers[2..], None, "pod ns/p");
        assert!(matches!(unlabelled, Err(Error::NotFound(_))));
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
