//! How `dbpersist`'s report reads on a terminal (`-o table`).

use std::fmt::Write;

use super::report::{PersistReport, Verdict};
use super::steps;
use crate::output::{self, Render, Width};

impl Render for PersistReport {
    fn render(&self, width: Width) -> String {
        let mut text = format!(
            "{}  {} {}/{} (StatefulSet {})\n{}\n\n",
            self.verdict, self.engine, self.namespace, self.pod, self.statefulset, self.message
        );
        let mut table = output::boxed_table(&["step", "result", "time", "detail"], width);
        for step in &self.steps {
            table.add_row(vec![
                step.name.clone(),
                step.result.to_string(),
                format!("{:.2}s", step.seconds),
                step.detail.clone(),
            ]);
        }
        text.push_str(&output::table_text(&table));
        text.push('\n');
        // Nothing was written when the test stopped at the pod spec.
        if self.steps.iter().any(|s| s.name == steps::WRITE) {
            let id = self
                .marker
                .id
                .map(|id| format!(" id {id}"))
                .unwrap_or_default();
            let _ = writeln!(
                text,
                "marker:  {}.{}{id} data '{}'",
                self.marker.database, self.marker.table, self.marker.data
            );
        }
        if let Some(before) = &self.before {
            let _ = writeln!(text, "before:  {}", before.summary());
        }
        if let Some(after) = &self.after {
            let _ = writeln!(text, "after:   {}", after.summary());
        }
        if self.verdict != Verdict::Pass
            && let Some(seen) = &self.last_seen
        {
            let _ = writeln!(text, "last seen: {seen}");
        }
        for warning in &self.warnings {
            let _ = writeln!(text, "warning: {warning}");
        }
        let _ = writeln!(text, "total:   {:.1}s", self.total_seconds);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::persist::{ClaimRecord, Plan, PodRecord, Step, StepResult};
    use crate::wait::WarningEvent;

    fn pod(uid: &str, node: &str) -> PodRecord {
        PodRecord {
            uid: uid.into(),
            node: Some(node.into()),
            claims: vec![ClaimRecord {
                volume: "data".into(),
                claim: "data-orders-0".into(),
                uid: Some("c0ffee00-0000-4000-8000-000000000001".into()),
                persistent_volume: Some("pvc-c0ffee00".into()),
            }],
            data_volume: Some("PersistentVolumeClaim data-orders-0".into()),
        }
    }

    fn report() -> PersistReport {
        let plan = Plan {
            namespace: "shop".into(),
            pod_name: "orders-0".into(),
            statefulset: "orders".into(),
            engine: Engine::Postgres,
            container: "postgres".into(),
            record: pod("uid-before", "node-a"),
            ephemeral: None,
        };
        let mut report = PersistReport::new(&plan, "kdb-marker-20261203T080000Z", false);
        report.marker.id = Some(1);
        report.before = Some(pod("uid-before", "node-a"));
        report.total_seconds = 31.27;
        report
    }

    fn step(name: &str, result: StepResult, seconds: f64, detail: &str) -> Step {
        Step {
            name: name.into(),
            result,
            seconds,
            detail: detail.into(),
        }
    }

    #[test]
    fn pass() {
        let mut report = report();
        report.message = "the marker row survived the replacement of pod orders-0 (uid uid-before -> uid-after), on the same PersistentVolumeClaims".into();
        report.after = Some(pod("uid-after", "node-b"));
        report.steps = vec![
            step(
                steps::STORAGE,
                StepResult::Passed,
                0.0,
                "PersistentVolumeClaim data-orders-0",
            ),
            step(steps::WRITE, StepResult::Passed, 0.41, "inserted id 1"),
            step(
                steps::DELETE,
                StepResult::Passed,
                1.02,
                "pod orders-0 deleted",
            ),
            step(
                steps::WAIT,
                StepResult::Passed,
                27.5,
                "orders-0 Ready, server answers",
            ),
            step(steps::READ_AFTER, StepResult::Passed, 0.2, "marker found"),
            step(steps::VOLUMES, StepResult::Passed, 0.0, "same PVC uids"),
        ];
        insta::assert_snapshot!(report.render(Width(120)));
    }

    #[test]
    fn fail_while_waiting_wraps_details_to_the_width() {
        let mut report = report();
        report.verdict = Verdict::Fail;
        report.failed_step = Some(steps::WAIT.into());
        report.message = "wait for new pod: orders-0 not Ready after 5m0s: Pending (0/1 nodes are available: 1 Insufficient memory)".into();
        report.last_seen = Some("orders-0 Pending: Unschedulable".into());
        report.warnings = vec![WarningEvent {
            object: "Pod/orders-0".into(),
            reason: "FailedScheduling".into(),
            message: "0/1 nodes are available: 1 Insufficient memory".into(),
            count: 12,
        }];
        report.steps = vec![
            step(steps::WRITE, StepResult::Passed, 0.41, "inserted id 1"),
            step(
                steps::DELETE,
                StepResult::Passed,
                1.02,
                "pod orders-0 deleted",
            ),
            step(
                steps::WAIT,
                StepResult::Failed,
                300.0,
                "orders-0 not Ready after 5m0s: Pending (0/1 nodes are available: 1 Insufficient memory; preemption: 0/1 nodes are available)",
            ),
            step(
                steps::CLEANUP,
                StepResult::Skipped,
                0.0,
                "the server is not back",
            ),
        ];
        insta::assert_snapshot!(report.render(Width(80)));
    }

    #[test]
    fn fail_from_the_pod_spec_names_no_marker() {
        let mut report = report();
        report.verdict = Verdict::Fail;
        report.message = "check data volume: the data directory is on an emptyDir".into();
        report.before = None;
        report.steps = vec![step(
            steps::STORAGE,
            StepResult::Failed,
            0.0,
            "emptyDir data: nothing was written or deleted",
        )];
        insta::assert_snapshot!(report.render(Width(100)));
    }
}
