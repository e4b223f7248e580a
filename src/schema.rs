//! Every report the plugins print, in one list: its `kind` in `-o json|yaml`, what
//! `-o name` prints for it ([`crate::output::Report`]), and the JSON Schema of its document,
//! derived from the report's type (docs/schema/, kept current by tests/integration/schema.rs).

#[cfg(feature = "schema")]
use schemars::JsonSchema;
#[cfg(feature = "schema")]
use serde_json::{Value, json};

use crate::backup::drill::DrillReport;
use crate::backup::list::BackupList;
use crate::backup::schedule::{Deleted, ScheduleInfo, ScheduleReport};
use crate::backup::schedule_run::RunNowReport;
use crate::backup::snapshot_list::SnapshotInfo;
use crate::backup::{DumpReport, RestoreReport, SnapshotReport, VerifyReport};
use crate::check::{CheckReport, NamespaceReport};
use crate::deploy::credentials::Credentials;
use crate::deploy::{DeleteReport, DeployReport, ListedDatabase};
#[cfg(feature = "schema")]
use crate::output::API_VERSION;
use crate::output::Report;
use crate::persist::PersistReport;

const STATEFULSET: &str = "statefulset.apps";
const VOLUME_SNAPSHOT: &str = "volumesnapshot.snapshot.storage.k8s.io";
const CRON_JOB: &str = "cronjob.batch";

/// `kind/name` as kubectl prints it: the kind lower-case, with its API group.
fn name_of(kind: &str, name: &str) -> String {
    let kind = match kind {
        "StatefulSet" => STATEFULSET,
        "NetworkPolicy" => "networkpolicy.networking.k8s.io",
        "PodDisruptionBudget" => "poddisruptionbudget.policy",
        other => other,
    };
    format!("{}/{name}", kind.to_lowercase())
}

impl Report for CheckReport {
    const KIND: &'static str = "CheckReport";
    fn names(&self) -> Vec<String> {
        vec![match &self.statefulset {
            Some(sts) => name_of(STATEFULSET, sts),
            None => name_of("pod", &self.pod),
        }]
    }
}

impl Report for NamespaceReport {
    const KIND: &'static str = "NamespaceCheckReport";
    fn names(&self) -> Vec<String> {
        self.databases
            .iter()
            .map(|d| {
                // A StatefulSet's pod is NAME-<ordinal>; a pod no StatefulSet owns is itself.
                let kind = if d.name == d.pod { "pod" } else { STATEFULSET };
                name_of(kind, &d.name)
            })
            .collect()
    }
}

impl Report for DeployReport {
    const KIND: &'static str = "DeployReport";
    fn names(&self) -> Vec<String> {
        self.objects
            .iter()
            .map(|o| name_of(&o.kind, &o.name))
            .collect()
    }
}

impl Report for DeleteReport {
    const KIND: &'static str = "DeleteReport";
    fn names(&self) -> Vec<String> {
        self.deleted
            .iter()
            .map(|d| match d.split_once('/') {
                Some((kind, name)) => name_of(kind, name),
                None => d.clone(),
            })
            .collect()
    }
}

impl Report for Vec<ListedDatabase> {
    const KIND: &'static str = "DatabaseList";
    const LIST: bool = true;
    fn names(&self) -> Vec<String> {
        self.iter().map(|d| name_of(STATEFULSET, &d.name)).collect()
    }
}

impl Report for DumpReport {
    const KIND: &'static str = "DumpReport";
    fn names(&self) -> Vec<String> {
        vec![name_of("pod", &self.pod)]
    }
}

impl Report for VerifyReport {
    const KIND: &'static str = "VerifyReport";
    /// A backup file is no Kubernetes object: its path.
    fn names(&self) -> Vec<String> {
        vec![self.file.clone()]
    }
}

impl Report for RestoreReport {
    const KIND: &'static str = "RestoreReport";
    fn names(&self) -> Vec<String> {
        vec![name_of("pod", &self.pod)]
    }
}

impl Report for SnapshotReport {
    const KIND: &'static str = "SnapshotReport";
    fn names(&self) -> Vec<String> {
        self.snapshots
            .iter()
            .map(|s| name_of(VOLUME_SNAPSHOT, &s.name))
            .collect()
    }
}

impl Report for SnapshotInfo {
    const KIND: &'static str = "Snapshot";
    fn names(&self) -> Vec<String> {
        vec![name_of(VOLUME_SNAPSHOT, &self.name)]
    }
}

impl Report for Vec<SnapshotInfo> {
    const KIND: &'static str = "SnapshotList";
    const LIST: bool = true;
    fn names(&self) -> Vec<String> {
        self.iter()
            .map(|s| name_of(VOLUME_SNAPSHOT, &s.name))
            .collect()
    }
}

impl Report for PersistReport {
    const KIND: &'static str = "PersistReport";
    fn names(&self) -> Vec<String> {
        vec![name_of("pod", &self.pod)]
    }
}

impl Report for DrillReport {
    const KIND: &'static str = "DrillReport";
    /// The file drilled (the throwaway instance is gone when the report is printed).
    fn names(&self) -> Vec<String> {
        vec![self.file.clone()]
    }
}

impl Report for BackupList {
    const KIND: &'static str = "BackupList";
    /// Each backup's path, URL or `pvc:CLAIM/FILE`, as `verify` and `restore -f` take it.
    fn names(&self) -> Vec<String> {
        let base = self.location.trim_end_matches('/');
        self.backups
            .iter()
            .map(|b| format!("{base}/{}", b.file))
            .collect()
    }
}

impl Report for ScheduleReport {
    const KIND: &'static str = "ScheduleReport";
    fn names(&self) -> Vec<String> {
        vec![name_of(CRON_JOB, &self.cron_job)]
    }
}

impl Report for Vec<ScheduleInfo> {
    const KIND: &'static str = "ScheduleList";
    const LIST: bool = true;
    fn names(&self) -> Vec<String> {
        self.iter()
            .map(|s| name_of(CRON_JOB, &s.cron_job))
            .collect()
    }
}

impl Report for Deleted {
    const KIND: &'static str = "ScheduleDeleteReport";
    fn names(&self) -> Vec<String> {
        vec![name_of(CRON_JOB, &self.cron_job)]
    }
}

impl Report for RunNowReport {
    const KIND: &'static str = "ScheduleRunReport";
    fn names(&self) -> Vec<String> {
        vec![name_of("job.batch", &self.run.job)]
    }
}

impl Report for Credentials {
    const KIND: &'static str = "Credentials";
    fn names(&self) -> Vec<String> {
        vec![name_of(STATEFULSET, &self.name)]
    }
}

/// The JSON Schema of a report's `-o json` document: the report type's own schema with
/// `apiVersion` and `kind` (constants) beside its fields, or around its items for a list.
#[cfg(feature = "schema")]
pub fn schema_of<R: Report + JsonSchema>() -> Value {
    let mut schema = schemars::schema_for!(R).to_value();
    let header = json!({
        "apiVersion": {"const": API_VERSION},
        "kind": {"const": R::KIND},
    });
    let Some(object) = schema.as_object_mut() else {
        return schema;
    };
    let dialect = object.remove("$schema");
    let definitions = object.remove("$defs");
    let mut document = if R::LIST {
        json!({
            "type": "object",
            "properties": {"items": Value::Object(object.clone())},
            "required": ["items"],
        })
    } else {
        Value::Object(object.clone())
    };
    if let Some(properties) = document["properties"].as_object_mut()
        && let Some(header) = header.as_object()
    {
        properties.extend(header.clone());
    }
    if let Some(required) = document["required"].as_array_mut() {
        required.extend([json!("apiVersion"), json!("kind")]);
    } else {
        document["required"] = json!(["apiVersion", "kind"]);
    }
    document["title"] = json!(R::KIND);
    if let Some(dialect) = dialect {
        document["$schema"] = dialect;
    }
    if let Some(definitions) = definitions {
        document["$defs"] = definitions;
    }
    document
}

/// Every report's `(kind, schema)`, for docs/schema/<kind>.json.
#[cfg(feature = "schema")]
pub fn all() -> Vec<(&'static str, Value)> {
    fn entry<R: Report + JsonSchema>() -> (&'static str, Value) {
        (R::KIND, schema_of::<R>())
    }
    vec![
        entry::<CheckReport>(),
        entry::<NamespaceReport>(),
        entry::<DeployReport>(),
        entry::<DeleteReport>(),
        entry::<Vec<ListedDatabase>>(),
        entry::<DumpReport>(),
        entry::<VerifyReport>(),
        entry::<RestoreReport>(),
        entry::<SnapshotReport>(),
        entry::<SnapshotInfo>(),
        entry::<Vec<SnapshotInfo>>(),
        entry::<PersistReport>(),
        entry::<DrillReport>(),
        entry::<BackupList>(),
        entry::<ScheduleReport>(),
        entry::<Vec<ScheduleInfo>>(),
        entry::<Deleted>(),
        entry::<RunNowReport>(),
        entry::<Credentials>(),
    ]
}
