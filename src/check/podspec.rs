//! Pod-spec rules: referenced Secret/ConfigMap keys exist, the security context, and the
//! probes' configuration.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::PodSpec;

use super::facts::{Facts, RefKind};
use super::verdict::{Check, Verdict};

/// A key (or a whole object, for envFrom) of a Secret or ConfigMap the pod needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub kind: RefKind,
    pub name: String,
    pub key: Option<String>,
    pub optional: bool,
    /// Where the pod uses it, e.g. `env POSTGRES_PASSWORD of container postgres`.
    pub used_by: String,
}

/// Every Secret/ConfigMap key a pod spec refers to (env, envFrom, volumes).
pub fn references(spec: &PodSpec) -> Vec<Reference> {
    let mut refs = Vec::new();
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for container in containers {
        for env in container.env.iter().flatten() {
            let used_by = format!("env {} of container {}", env.name, container.name);
            let Some(source) = &env.value_from else {
                continue;
            };
            if let Some(s) = &source.secret_key_ref {
                refs.push(Reference {
                    kind: RefKind::Secret,
                    name: s.name.clone(),
                    key: Some(s.key.clone()),
                    optional: s.optional == Some(true),
                    used_by: used_by.clone(),
                });
            }
            if let Some(c) = &source.config_map_key_ref {
                refs.push(Reference {
                    kind: RefKind::ConfigMap,
                    name: c.name.clone(),
                    key: Some(c.key.clone()),
                    optional: c.optional == Some(true),
                    used_by,
                });
            }
        }
        for from in container.env_from.iter().flatten() {
            let used_by = format!("envFrom of container {}", container.name);
            if let Some(s) = &from.secret_ref {
                refs.push(Reference {
                    kind: RefKind::Secret,
                    name: s.name.clone(),
                    key: None,
                    optional: s.optional == Some(true),
                    used_by: used_by.clone(),
                });
            }
            if let Some(c) = &from.config_map_ref {
                refs.push(Reference {
                    kind: RefKind::ConfigMap,
                    name: c.name.clone(),
                    key: None,
                    optional: c.optional == Some(true),
                    used_by,
                });
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        let used_by = format!("volume {}", volume.name);
        if let Some(s) = &volume.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            push_volume_refs(
                &mut refs,
                RefKind::Secret,
                name,
                s.items.as_deref(),
                s.optional == Some(true),
                &used_by,
            );
        }
        if let Some(c) = &volume.config_map {
            push_volume_refs(
                &mut refs,
                RefKind::ConfigMap,
                c.name.clone(),
                c.items.as_deref(),
                c.optional == Some(true),
                &used_by,
            );
        }
    }
    refs
}

fn push_volume_refs(
    refs: &mut Vec<Reference>,
    kind: RefKind,
    name: String,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
    optional: bool,
    used_by: &str,
) {
    match items {
        Some(items) if !items.is_empty() => refs.extend(items.iter().map(|item| Reference {
            kind,
            name: name.clone(),
            key: Some(item.key.clone()),
            optional,
            used_by: used_by.to_string(),
        })),
        _ => refs.push(Reference {
            kind,
            name,
            key: None,
            optional,
            used_by: used_by.to_string(),
        }),
    }
}

pub(super) fn config_references(facts: &Facts) -> Check {
    const NAME: &str = "config.references";
    let refs = facts.pod_spec().map(references).unwrap_or_default();
    if refs.is_empty() {
        return Check::new(
            NAME,
            Verdict::Ok,
            "the pod references no Secret or ConfigMap",
        );
    }
    let mut problems = Vec::new();
    let mut unreadable = Vec::new();
    for r in &refs {
        match facts.objects.get(&(r.kind, r.name.clone())) {
            Some(Ok(None)) if !r.optional => problems.push(format!(
                "{} {} does not exist ({})",
                r.kind, r.name, r.used_by
            )),
            Some(Ok(Some(keys))) => {
                if let Some(key) = &r.key
                    && !r.optional
                    && !keys.contains(key)
                {
                    let present = keys.iter().cloned().collect::<Vec<_>>().join(", ");
                    problems.push(format!(
                        "{} {} has no key {key} ({}; keys present: {present})",
                        r.kind, r.name, r.used_by
                    ));
                }
            }
            Some(Err(why)) => unreadable.push(format!("{} {}: {why}", r.kind, r.name)),
            _ => {}
        }
    }
    if let Some(first) = problems.first().cloned() {
        let fix = refs
            .iter()
            .find(|r| first.starts_with(&format!("{} {} ", r.kind, r.name)))
            .map(|r| match (&r.kind, &r.key) {
                (RefKind::Secret, Some(key)) => format!(
                    "add key {key} to Secret {} (kubectl patch secret {} --type merge -p '{{\"stringData\":{{\"{key}\":\"...\"}}}}'), or fix the reference in the StatefulSet; the pod starts once it exists",
                    r.name, r.name
                ),
                (RefKind::ConfigMap, Some(key)) => format!("add key {key} to ConfigMap {} or fix the reference in the StatefulSet", r.name),
                (kind, None) => format!("create {kind} {} or fix the reference in the StatefulSet", r.name),
            })
            .unwrap_or_default();
        return Check::new(NAME, Verdict::Fail, problems.join("\n")).fix(fix);
    }
    if !unreadable.is_empty() {
        return Check::new(
            NAME,
            Verdict::Warn,
            format!("could not read: {}", unreadable.join("; ")),
        )
        .fix("grant get (for a summary of every database: list) on secrets/configmaps in this namespace to check them (docs/rbac.md)");
    }
    let objects: BTreeSet<String> = refs
        .iter()
        .map(|r| format!("{} {}", r.kind, r.name))
        .collect();
    Check::new(
        NAME,
        Verdict::Ok,
        format!(
            "{} references, all present: {}",
            refs.len(),
            objects.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

pub(super) fn security_context(facts: &Facts) -> Check {
    const NAME: &str = "security.context";
    let Some(spec) = facts.pod_spec() else {
        return Check::new(NAME, Verdict::Skipped, "no pod spec");
    };
    let pod_sc = spec.security_context.clone().unwrap_or_default();
    let sc = facts
        .container_spec()
        .and_then(|c| c.security_context.clone())
        .unwrap_or_default();
    let run_as_user = sc.run_as_user.or(pod_sc.run_as_user);
    let non_root = sc.run_as_non_root.or(pod_sc.run_as_non_root) == Some(true);
    let mut parts = vec![
        format!(
            "runAsUser {}",
            run_as_user
                .map(|u| u.to_string())
                .unwrap_or_else(|| "(image default)".into())
        ),
        format!(
            "fsGroup {}",
            pod_sc
                .fs_group
                .map(|g| g.to_string())
                .unwrap_or_else(|| "unset".into())
        ),
    ];
    if non_root {
        parts.push("runAsNonRoot".into());
    }
    if sc.read_only_root_filesystem == Some(true) {
        parts.push("readOnlyRootFilesystem".into());
    }
    let evidence = parts.join(", ");
    if sc.privileged == Some(true) {
        return Check::new(NAME, Verdict::Warn, format!("{evidence}, privileged"))
            .fix("a database needs no privileges: remove privileged: true");
    }
    if run_as_user.is_some_and(|u| u != 0) && pod_sc.fs_group.is_none() {
        return Check::new(NAME, Verdict::Warn, format!("{evidence}: a fresh volume may not be writable by that uid"))
            .fix("set the pod's fsGroup to the server's uid with fsGroupChangePolicy: OnRootMismatch (no chown init container needed)");
    }
    if run_as_user == Some(0) || (run_as_user.is_none() && !non_root) {
        return Check::new(NAME, Verdict::Warn, format!("{evidence}: may run as root")).fix(
            "run as the image's database uid: runAsUser/runAsGroup/fsGroup and runAsNonRoot: true",
        );
    }
    Check::new(NAME, Verdict::Ok, evidence)
}

pub(super) fn probes_configured(facts: &Facts) -> Check {
    const NAME: &str = "probes.configured";
    let Some(container) = facts.container_spec() else {
        return Check::new(NAME, Verdict::Skipped, "no container spec");
    };
    let describe = |kind: &str, probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        probe.as_ref().map(|p| {
            let how = if p.exec.is_some() {
                "exec"
            } else if p.tcp_socket.is_some() {
                "tcpSocket"
            } else if p.http_get.is_some() {
                "httpGet"
            } else {
                "grpc"
            };
            format!("{kind} {how} every {}s", p.period_seconds.unwrap_or(10))
        })
    };
    let found: Vec<String> = [
        describe("readiness", &container.readiness_probe),
        describe("liveness", &container.liveness_probe),
        describe("startup", &container.startup_probe),
    ]
    .into_iter()
    .flatten()
    .collect();
    let evidence = if found.is_empty() {
        "no probes".to_string()
    } else {
        found.join(", ")
    };
    let commands: Vec<&Vec<String>> = [
        &container.readiness_probe,
        &container.liveness_probe,
        &container.startup_probe,
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| p.exec.as_ref()?.command.as_ref())
    .collect();
    if commands.iter().any(|command| {
        let c = command.join(" ");
        c.contains("-p$")
            || c.contains("-p\"$")
            || c.contains("--password=")
            || crate::exec::carries_password(command)
    }) {
        return Check::new(NAME, Verdict::Warn, format!("{evidence}; a probe passes a password on its command line"))
            .fix("read it from the environment instead (MYSQL_PWD=\"$MYSQL_ROOT_PASSWORD\" mysqladmin ...): command lines show in the process list");
    }
    if container.readiness_probe.is_none() {
        return Check::new(NAME, Verdict::Warn, evidence)
            .fix("add a readinessProbe that runs a real query, so the Service only routes to a server that answers");
    }
    if container.liveness_probe.is_some() && container.startup_probe.is_none() {
        return Check::new(NAME, Verdict::Warn, format!("{evidence}; liveness without a startupProbe"))
            .fix("add a startupProbe: a liveness probe with a fixed initial delay kills a server still in crash recovery, in a loop");
    }
    Check::new(NAME, Verdict::Ok, evidence)
}
