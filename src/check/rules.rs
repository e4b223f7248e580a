//! Pure diagnosis rules over objects already fetched from the API server (the
//! [`super::facts`]): the StatefulSet, pod and event rules, and the order of the report. Storage, Service and
//! pod-spec rules are in [`super::storage`], [`super::services`] and [`super::podspec`]. No I/O here, so every rule is tested with
//! recorded objects. Rules that read the results of commands run in the pod are in
//! [`super::inside`].

use k8s_openapi::api::core::v1::Event;
use kube::ResourceExt;

use super::facts::{Facts, event_line};
use super::inside;
use super::podspec::{config_references, probes_configured, security_context};
use super::services::{service_endpoints, service_headless};
use super::storage::{pv_reclaim_policy, pvc_bound};
use super::verdict::{Check, Verdict};
use crate::quantity;
use crate::wait::{event_time, pod_state};

/// Runs every rule; the order is the report's order.
pub fn diagnose(facts: &Facts) -> Vec<Check> {
    vec![
        statefulset(facts),
        pod_scheduling(facts),
        pod_image(facts),
        pod_containers(facts),
        pod_ready(facts),
        pvc_bound(facts),
        pv_reclaim_policy(facts),
        inside::volume_usage(facts),
        service_headless(facts),
        service_endpoints(facts),
        config_references(facts),
        security_context(facts),
        inside::datadir_permissions(facts),
        probes_configured(facts),
        inside::probe_readiness(facts),
        inside::db_server(facts),
        inside::db_connections(facts),
        inside::db_status(facts),
        resources_usage(facts),
        events(facts),
    ]
}

fn statefulset(facts: &Facts) -> Check {
    const NAME: &str = "statefulset";
    let Some(sts) = &facts.statefulset else {
        return Check::new(
            NAME,
            Verdict::Skipped,
            format!("pod {} has no StatefulSet owner", facts.pod_name),
        );
    };
    let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = sts.status.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let revision = status.update_revision.clone().unwrap_or_default();
    let evidence = format!(
        "{}: {ready}/{want} ready, {updated}/{want} updated, revision {revision}",
        sts.name_any()
    );
    if ready < want {
        return Check::new(NAME, Verdict::Fail, evidence)
            .fix("a pod is not ready; the pod.* checks say why");
    }
    if crate::wait::rollout_complete(sts) {
        Check::new(NAME, Verdict::Ok, evidence)
    } else {
        Check::new(
            NAME,
            Verdict::Warn,
            format!(
                "{evidence}; rollout in progress from {}",
                status.current_revision.unwrap_or_default()
            ),
        )
        .fix("wait for the rollout (kubectl rollout status statefulset); a stuck rollout needs the new pod fixed")
    }
}

fn missing_pod(facts: &Facts, name: &str) -> Check {
    let mut evidence = format!("pod {} does not exist", facts.pod_name);
    if let Some(sts) = &facts.statefulset
        && let Some(event) = facts.warnings_about("StatefulSet", &sts.name_any()).first()
    {
        evidence.push_str(&format!("; {}", event_line(event)));
    }
    Check::new(name, Verdict::Fail, evidence)
        .fix("the StatefulSet controller could not create the pod: read its events (kubectl describe statefulset)")
}

fn pod_scheduling(facts: &Facts) -> Check {
    const NAME: &str = "pod.scheduling";
    let Some(pod) = &facts.pod else {
        return missing_pod(facts, NAME);
    };
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    match conditions.iter().find(|c| c.type_ == "PodScheduled") {
        Some(c) if c.status == "False" => {
            let message = c
                .message
                .clone()
                .unwrap_or_else(|| c.reason.clone().unwrap_or_default());
            Check::new(NAME, Verdict::Fail, format!("unschedulable: {message}"))
                .fix(scheduling_fix(&message, facts))
        }
        Some(c) if c.status == "True" => Check::new(
            NAME,
            Verdict::Ok,
            format!(
                "scheduled on node {}",
                pod.spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default()
            ),
        ),
        _ => Check::new(NAME, Verdict::Warn, "not scheduled yet")
            .fix("wait a moment and run dbcheck again"),
    }
}

fn scheduling_fix(message: &str, facts: &Facts) -> String {
    let requests = facts
        .container_spec()
        .and_then(|c| c.resources.as_ref())
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    let request = |what: &str| {
        requests
            .get(what)
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "?".into())
    };
    if message.contains("Insufficient cpu") {
        format!(
            "no node has {} CPU free to request: lower the request (kubectl dbdeploy ... --cpu 250m) or add a node with more CPU",
            request("cpu")
        )
    } else if message.contains("Insufficient memory") {
        format!(
            "no node has {} memory free to request: lower the request (kubectl dbdeploy ... --memory 512Mi) or add a node with more memory",
            request("memory")
        )
    } else if message.contains("unbound") && message.contains("PersistentVolumeClaim") {
        "the pod waits for its PVC: see pvc.bound".into()
    } else if message.contains("node affinity") || message.contains("node selector") {
        "no node matches the pod's nodeSelector/affinity: fix them or label a node".into()
    } else if message.contains("taint") {
        "every node has a taint the pod does not tolerate: add a toleration or remove the taint"
            .into()
    } else if message.contains("volume node affinity") {
        "the volume lives on a node the pod cannot run on: free that node or move the data".into()
    } else {
        "read the scheduler's message above; kubectl describe node shows what each node has free"
            .into()
    }
}

const PULL_ERRORS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "RegistryUnavailable",
];

fn pod_image(facts: &Facts) -> Check {
    const NAME: &str = "pod.image";
    let image = facts
        .container_spec()
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    if facts.pod.is_none() {
        return Check::new(
            NAME,
            Verdict::Skipped,
            format!("no pod yet (image {image})"),
        );
    }
    let Some(status) = facts.container_status() else {
        return Check::new(
            NAME,
            Verdict::Skipped,
            format!("container not created yet (image {image})"),
        );
    };
    let waiting = status.state.as_ref().and_then(|s| s.waiting.as_ref());
    if let Some(waiting) = waiting
        && let Some(reason) = waiting
            .reason
            .as_deref()
            .filter(|r| PULL_ERRORS.contains(r))
    {
        let detail = waiting
            .message
            .clone()
            .or_else(|| {
                facts
                    .warnings_about("Pod", &facts.pod_name)
                    .iter()
                    .find(|e| e.message.as_deref().is_some_and(|m| m.contains("pull")))
                    .and_then(|e| e.message.clone())
            })
            .unwrap_or_default();
        return Check::new(NAME, Verdict::Fail, format!("{reason} for image {image}: {}", detail.trim())).fix(format!(
            "check that {image} exists (name and tag), that the nodes can reach its registry, and add imagePullSecrets for a private registry; then fix the image (kubectl dbdeploy ... --image)"
        ));
    }
    if status.image_id.is_empty() {
        return Check::new(
            NAME,
            Verdict::Ok,
            format!("{image} (container not started yet)"),
        );
    }
    Check::new(NAME, Verdict::Ok, format!("{image} pulled"))
}

fn pod_containers(facts: &Facts) -> Check {
    const NAME: &str = "pod.containers";
    let Some(status) = facts.container_status() else {
        return Check::new(NAME, Verdict::Skipped, "no container status yet");
    };
    let restarts = status.restart_count;
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    let last_text = last
        .map(|t| {
            format!(
                "; last exit code {} ({})",
                t.exit_code,
                t.reason.clone().unwrap_or_else(|| "no reason".into())
            )
        })
        .unwrap_or_default();
    let logs = facts
        .previous_logs
        .as_deref()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("\nprevious container's last log lines:\n{}", l.trim_end()))
        .unwrap_or_default();
    let waiting = status.state.as_ref().and_then(|s| s.waiting.as_ref());
    let reason = waiting.and_then(|w| w.reason.clone()).unwrap_or_default();
    if reason == "CrashLoopBackOff" || (reason == "RunContainerError") {
        let evidence = format!("{reason}, {restarts} restarts{last_text}{logs}");
        let fix = crash_fix(facts, last.and_then(|t| t.reason.as_deref()));
        return Check::new(NAME, Verdict::Fail, evidence).fix(fix);
    }
    if reason == "CreateContainerConfigError" || reason == "CreateContainerError" {
        let message = waiting.and_then(|w| w.message.clone()).unwrap_or_default();
        return Check::new(NAME, Verdict::Fail, format!("{reason}: {message}"))
            .fix("the container cannot be created: see config.references");
    }
    if PULL_ERRORS.contains(&reason.as_str()) {
        return Check::new(
            NAME,
            Verdict::Skipped,
            format!("not started: {reason} (see pod.image)"),
        );
    }
    if let Some(terminated) = status.state.as_ref().and_then(|s| s.terminated.as_ref()) {
        return Check::new(
            NAME,
            Verdict::Fail,
            format!(
                "terminated with exit code {} ({}){logs}",
                terminated.exit_code,
                terminated.reason.clone().unwrap_or_default()
            ),
        )
        .fix(crash_fix(facts, terminated.reason.as_deref()));
    }
    if restarts > 0 {
        let verdict = if last.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled")) {
            Verdict::Fail
        } else {
            Verdict::Warn
        };
        return Check::new(
            NAME,
            verdict,
            format!("running, {restarts} restarts{last_text}{logs}"),
        )
        .fix(crash_fix(facts, last.and_then(|t| t.reason.as_deref())));
    }
    let state = if status.state.as_ref().is_some_and(|s| s.running.is_some()) {
        "running".to_string()
    } else {
        format!(
            "waiting ({})",
            if reason.is_empty() {
                "starting"
            } else {
                reason.as_str()
            }
        )
    };
    Check::new(NAME, Verdict::Ok, format!("{state}, 0 restarts"))
}

/// What to do about a container that keeps exiting, from its termination reason and log.
pub fn crash_fix(facts: &Facts, reason: Option<&str>) -> String {
    let logs = facts.previous_logs.clone().unwrap_or_default();
    let lower = logs.to_lowercase();
    if reason == Some("OOMKilled") {
        let limit = facts
            .container_spec()
            .and_then(|c| c.resources.as_ref())
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "its".into());
        return format!(
            "the server used more than {limit} memory limit: raise it (kubectl dbdeploy ... --memory-limit) or lower the server's buffers (shared_buffers / innodb_buffer_pool_size)"
        );
    }
    let bad_setting = [
        "invalid value for parameter",
        "unrecognized configuration parameter",
        "unknown variable",
        "unknown option",
        "configuration file",
        "invalid value",
    ];
    if let Some(line) = logs
        .lines()
        .find(|l| bad_setting.iter().any(|p| l.to_lowercase().contains(p)))
    {
        return format!(
            "the server rejects its configuration ({}): fix or remove that setting (kubectl dbdeploy ... --set key=value) and the pod restarts with it",
            line.trim()
        );
    }
    if lower.contains("permission denied") || lower.contains("operation not permitted") {
        return inside::permission_fix(facts);
    }
    if lower.contains("database files are incompatible")
        || lower.contains("upgrade") && lower.contains("data directory")
    {
        return "the data directory was created by another major version: use the image version that created it, or dump and restore".into();
    }
    if lower.contains("no space left") {
        return "the volume is full: expand the PVC or free space".into();
    }
    format!(
        "read the log lines above (kubectl logs {} --previous for more)",
        facts.pod_name
    )
}

fn pod_ready(facts: &Facts) -> Check {
    const NAME: &str = "pod.ready";
    let Some(pod) = &facts.pod else {
        return missing_pod(facts, NAME);
    };
    if facts.ready_since().is_some() {
        return Check::new(NAME, Verdict::Ok, pod_state(pod));
    }
    if facts.container_running() {
        let probe_event = facts
            .warnings_about("Pod", &facts.pod_name)
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Unhealthy"))
            .map(|e| format!("; {}", event_line(e)))
            .unwrap_or_default();
        return Check::new(
            NAME,
            Verdict::Fail,
            format!("{}{probe_event}", pod_state(pod)),
        )
        .fix("the server runs but its readiness probe fails: see probe.readiness");
    }
    Check::new(NAME, Verdict::Fail, pod_state(pod))
        .fix("the container is not running: see the pod.* checks above")
}

fn resources_usage(facts: &Facts) -> Check {
    const NAME: &str = "resources.usage";
    let usage = match &facts.usage {
        Ok(usage) => usage,
        Err(why) => return Check::new(NAME, Verdict::Skipped, why.clone()),
    };
    let Some((cpu, memory)) = usage.get(&facts.container) else {
        return Check::new(
            NAME,
            Verdict::Skipped,
            "no metrics for the database container yet",
        );
    };
    let limits = facts
        .container_spec()
        .and_then(|c| c.resources.as_ref())
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    let limit = |what: &str| limits.get(what).map(|q| q.0.clone());
    let share = |used: &str, limit: Option<String>| {
        let percent = limit
            .as_deref()
            .and_then(quantity::parse)
            .zip(quantity::parse(used))
            .map(|(l, u)| u / l * 100.0);
        (limit.unwrap_or_else(|| "no limit".into()), percent)
    };
    let (cpu_limit, cpu_pct) = share(cpu, limit("cpu"));
    let (mem_limit, mem_pct) = share(memory, limit("memory"));
    let pct = |p: Option<f64>| p.map(|p| format!(" ({p:.0}%)")).unwrap_or_default();
    let mib = quantity::parse(memory)
        .map(|b| format!("{:.0}Mi", b / 1048576.0))
        .unwrap_or_else(|| memory.clone());
    let evidence = format!(
        "cpu {cpu} of limit {cpu_limit}{}, memory {mib} of limit {mem_limit}{}",
        pct(cpu_pct),
        pct(mem_pct)
    );
    if mem_pct.is_some_and(|p| p >= 90.0) {
        return Check::new(NAME, Verdict::Warn, evidence).fix(
            "near the memory limit the kernel kills the server (OOMKilled): raise --memory-limit or lower the server's buffers",
        );
    }
    if cpu_pct.is_some_and(|p| p >= 90.0) {
        return Check::new(NAME, Verdict::Warn, evidence)
            .fix("the server is throttled at its CPU limit: raise --cpu-limit");
    }
    Check::new(NAME, Verdict::Ok, evidence)
}

/// Warning reasons about the node's setup, not the database (e.g. a kubelet without cluster DNS).
const NODE_LEVEL_REASONS: &[&str] = &["MissingClusterDNS", "DNSConfigForming"];

fn events(facts: &Facts) -> Check {
    const NAME: &str = "events";
    let warnings = match &facts.events {
        Ok(_) => facts.warnings(),
        Err(why) => {
            return Check::new(
                NAME,
                Verdict::Skipped,
                format!("could not read events: {why}"),
            );
        }
    };
    // Node-level configuration warnings repeat on every pod and say nothing about the database.
    let (node_level, warnings): (Vec<&Event>, Vec<&Event>) = warnings
        .into_iter()
        .partition(|e| NODE_LEVEL_REASONS.contains(&e.reason.as_deref().unwrap_or("")));
    let node_note = node_level
        .first()
        .map(|e| {
            format!(
                " (ignored, about the node rather than the database: {})",
                e.reason.as_deref().unwrap_or("")
            )
        })
        .unwrap_or_default();
    if warnings.is_empty() {
        return Check::new(NAME, Verdict::Ok, format!("no Warning events{node_note}"));
    }
    let mut lines: Vec<String> = Vec::new();
    for line in warnings.iter().map(|e| event_line(e)) {
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    let total = lines.len();
    lines.truncate(5);
    let more = if total > 5 {
        format!("\n(+{} more)", total - 5)
    } else {
        String::new()
    };
    // Warnings from before the pod became Ready (probes failing during initdb, a volume
    // still being made) are history, not a problem.
    if let Some(since) = facts.ready_since()
        && warnings
            .iter()
            .all(|e| event_time(e).is_some_and(|t| t <= since))
    {
        return Check::new(
            NAME,
            Verdict::Ok,
            format!(
                "{} Warning event(s), all from before the pod became ready; latest: {}",
                warnings.len(),
                lines[0]
            ),
        );
    }
    Check::new(NAME, Verdict::Warn, format!("{}{more}", lines.join("\n")))
        .fix("the checks above explain the cause; kubectl get events --field-selector type=Warning lists them all")
}

#[cfg(test)]
#[path = "rules_tests.rs"]
pub(crate) mod tests;
