//! Service rules: the StatefulSet's headless Service, and the ClusterIP Service's selector,
//! target port and ready endpoints (EndpointSlices).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::facts::Facts;
use super::verdict::{Check, Verdict};
use crate::render::{APP_LABEL, INSTANCE_LABEL};

fn selects(service: &Service, labels: &BTreeMap<String, String>) -> bool {
    match service.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        Some(selector) if !selector.is_empty() => {
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        }
        _ => false,
    }
}

fn selector_text(service: &Service) -> String {
    let selector = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

pub(super) fn service_headless(facts: &Facts) -> Check {
    const NAME: &str = "service.headless";
    let governing = facts
        .statefulset
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.service_name.clone());
    let ns = &facts.namespace;
    match governing.filter(|n| !n.is_empty()) {
        Some(name) => match facts.services.iter().find(|s| s.name_any() == name) {
            None => Check::new(NAME, Verdict::Fail, format!("the StatefulSet's serviceName {name} has no Service, so {}.{name}.{ns}.svc does not resolve", facts.pod_name))
                .fix(format!("create the headless Service {name} (clusterIP: None) selecting the pods")),
            Some(service) if !is_headless(service) => Check::new(
                NAME,
                Verdict::Fail,
                format!("Service {name} governs the StatefulSet but has clusterIP {}, so pods get no stable DNS names", service.spec.as_ref().and_then(|s| s.cluster_ip.clone()).unwrap_or_default()),
            )
            .fix(format!("recreate {name} with clusterIP: None (clusterIP cannot be changed in place)")),
            Some(_) => Check::new(NAME, Verdict::Ok, format!("{name} (clusterIP None): {}.{name}.{ns}.svc.cluster.local", facts.pod_name)),
        },
        None => Check::new(NAME, Verdict::Skipped, "no StatefulSet serviceName"),
    }
}

pub(super) fn service_endpoints(facts: &Facts) -> Check {
    const NAME: &str = "service.endpoints";
    let labels = facts.pod_labels();
    let sts_name = facts.statefulset.as_ref().map(|s| s.name_any());
    let app = labels.get(APP_LABEL).cloned();
    let candidates: Vec<&Service> = facts
        .services
        .iter()
        .filter(|s| !is_headless(s))
        .filter(|s| {
            selects(s, &labels)
                || Some(s.name_any()) == sts_name
                || (app.is_some() && Some(s.name_any()) == app)
        })
        .collect();
    if candidates.is_empty() {
        return Check::new(NAME, Verdict::Warn, "no ClusterIP Service selects the pod: clients have no stable address")
            .fix("create a ClusterIP Service selecting the pod's labels on the database port (kubectl dbdeploy does)");
    }
    let mut results: Vec<Check> = candidates
        .iter()
        .map(|s| one_service(facts, s, &labels))
        .collect();
    results.sort_by_key(|c| std::cmp::Reverse(c.verdict));
    let worst = results[0].clone();
    Check {
        name: NAME.into(),
        verdict: worst.verdict,
        evidence: results
            .iter()
            .map(|c| c.evidence.clone())
            .collect::<Vec<_>>()
            .join("\n"),
        fix: worst.fix,
    }
}

fn one_service(facts: &Facts, service: &Service, labels: &BTreeMap<String, String>) -> Check {
    const NAME: &str = "service.endpoints";
    let name = service.name_any();
    let dns = format!("{name}.{}.svc.cluster.local", facts.namespace);
    let labels_text = labels
        .iter()
        .filter(|(k, _)| k.as_str() == APP_LABEL || k.as_str() == INSTANCE_LABEL)
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    if !selects(service, labels) {
        return Check::new(
            NAME,
            Verdict::Fail,
            format!("Service {name} selects {} and matches no pod of this database (pod labels {labels_text})", selector_text(service)),
        )
        .fix(format!("set Service {name}'s selector to the pod's labels: {labels_text}"));
    }
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let container_ports = facts
        .container_spec()
        .and_then(|c| c.ports.clone())
        .unwrap_or_default();
    for port in &ports {
        let target = port
            .target_port
            .clone()
            .unwrap_or(IntOrString::Int(port.port));
        let found = match &target {
            IntOrString::Int(n) => {
                *n == facts.engine.port() || container_ports.iter().any(|p| p.container_port == *n)
            }
            IntOrString::String(s) => container_ports
                .iter()
                .any(|p| p.name.as_deref() == Some(s.as_str())),
        };
        if !found {
            let shown = match &target {
                IntOrString::Int(n) => n.to_string(),
                IntOrString::String(s) => s.clone(),
            };
            return Check::new(NAME, Verdict::Fail, format!("Service {name} targets port {shown}, which the database container does not expose"))
                .fix(format!("set the Service's targetPort to {} (the server's port)", facts.engine.port()));
        }
    }
    let slices: Vec<&EndpointSlice> = facts
        .endpoint_slices
        .iter()
        .filter(|s| s.labels().get("kubernetes.io/service-name") == Some(&name))
        .collect();
    let ready: Vec<String> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .flat_map(|e| e.addresses.clone())
        .collect();
    let port_text = ports
        .first()
        .map(|p| p.port.to_string())
        .unwrap_or_default();
    if ready.is_empty() {
        let total: usize = slices.iter().map(|s| s.endpoints.len()).sum();
        return Check::new(NAME, Verdict::Fail, format!("{dns}:{port_text} has no ready endpoints ({total} not ready): clients cannot connect"))
            .fix("the Service sends traffic only to Ready pods: see pod.ready");
    }
    Check::new(
        NAME,
        Verdict::Ok,
        format!(
            "{dns}:{port_text} -> {} ready endpoint(s): {}",
            ready.len(),
            ready.join(", ")
        ),
    )
}
