//! `kubectl dbpersist`: the guide's persistence test with evidence. Write a unique marker
//! row into `testdb.persistent_test`, read it back, record the pod's UID and its volumes'
//! PVC UIDs, delete the pod, watch until the StatefulSet has replaced it (same name, new
//! UID, Ready), read the marker again and check every PVC is the same object.
//!
//! [`plan()`] (plan.rs) only reads, so the binary can say which pod it will delete and
//! ask; [`run()`] (run.rs) does the test and returns a [`PersistReport`] whatever happens
//! after the delete — failure, timeout or Ctrl-C — so the user always sees the state last
//! seen. The wait for the replacement pod is [`crate::wait::replacement_ready`].

mod plan;
mod print;
pub mod report;
mod run;
pub mod sql;

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use crate::client::Kube;
use crate::engine::Query;
use crate::error::{Error, Result};
use crate::exec::{self, ExecOutput};
use crate::wait::within;

pub use plan::{Plan, plan, record_pod};
pub use report::{ClaimRecord, PersistReport, PodRecord, Step, StepResult, Verdict};
pub use run::{new_marker, run};

/// Exit code when the run was interrupted with Ctrl-C (the shell's convention, 128 + SIGINT).
pub const INTERRUPTED: i32 = 130;

/// Time limit of the API calls made outside watches.
const API_TIMEOUT: Duration = Duration::from_secs(30);

/// Time limit of one SQL exec.
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// Step names, as shown in the report.
pub mod steps {
    pub const STORAGE: &str = "check data volume";
    pub const WRITE: &str = "write marker";
    pub const READ_BEFORE: &str = "read marker";
    pub const RECORD: &str = "record pod and volumes";
    pub const DELETE: &str = "delete pod";
    pub const WAIT: &str = "wait for new pod";
    pub const READ_AFTER: &str = "read marker after restart";
    pub const VOLUMES: &str = "compare volumes";
    pub const CLEANUP: &str = "remove test data";
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct PersistOptions {
    /// A pod (`mysql-0`) or a StatefulSet (`mysql`), as kubectl writes it (`sts/mysql`).
    pub target: String,
    /// The database container (`-c`), when the pod has several; default: found by engine.
    pub container: Option<String>,
    /// The pod to test when the target is a StatefulSet: a name or an ordinal.
    pub pod: Option<String>,
    /// Budget for the replacement pod to become Ready and its server to answer.
    pub timeout: Duration,
    /// Leave the marker row (and what was created for it) in place.
    pub keep: bool,
    /// Run the test even when the data directory is not on a PersistentVolumeClaim, which
    /// destroys the pod's data; without it such a pod is a FAIL from its spec alone.
    pub delete_ephemeral_data: bool,
}

impl PersistOptions {
    /// Checks the options before any API call.
    pub fn validate(&self) -> Result<()> {
        if self.timeout.is_zero() {
            return Err(Error::Usage("--timeout must be more than 0".into()));
        }
        crate::target::TargetRef::parse(&self.target).map_err(Error::Usage)?;
        if let Some(name) = &self.pod
            && !is_dns_label(name)
        {
            return Err(Error::Usage(format!(
                "invalid --pod {name:?}: expected a pod name such as mysql-1, or an ordinal"
            )));
        }
        Ok(())
    }
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// What a failed SQL run said: its stderr's last lines, or its exit status.
fn sql_failure(output: &ExecOutput) -> String {
    let stderr = output.stderr_text();
    if stderr.is_empty() {
        output.status.to_string()
    } else {
        sql::error_text(&stderr)
    }
}

/// Runs a query through the engine's client in the planned pod (the SQL on stdin).
async fn run_sql(kube: &Kube, plan: &Plan, query: &Query, timeout: Duration) -> Result<ExecOutput> {
    let pods: Api<Pod> = kube.exec_pods();
    exec::run(
        &pods,
        &plan.pod_name,
        Some(&plan.container),
        &query.argv,
        Some(query.sql.as_bytes()),
        timeout,
    )
    .await
}

/// One API call within [`API_TIMEOUT`]; `action` ("read pod ns/x") names it in errors.
async fn api<T>(
    action: String,
    call: impl Future<Output = std::result::Result<T, kube::Error>>,
) -> Result<T> {
    let what = format!("the API server to {action}");
    within(API_TIMEOUT, what, async {
        call.await.map_err(Error::api(action))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(target: &str, pod: Option<&str>) -> PersistOptions {
        PersistOptions {
            target: target.into(),
            container: None,
            pod: pod.map(Into::into),
            timeout: Duration::from_secs(300),
            keep: false,
            delete_ephemeral_data: false,
        }
    }

    #[test]
    fn options_are_checked_before_any_api_call() {
        assert!(options("mysql-0", None).validate().is_ok());
        assert!(options("mysql", Some("1")).validate().is_ok());
        assert!(matches!(
            options("MySQL", None).validate(),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            options("mysql", Some("a b")).validate(),
            Err(Error::Usage(_))
        ));
        let mut zero = options("mysql", None);
        zero.timeout = Duration::ZERO;
        assert!(matches!(zero.validate(), Err(Error::Usage(_))));
    }
}
