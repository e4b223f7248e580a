//! `snapshot.newest`: the database's newest ready VolumeSnapshot taken by
//! `kubectl dbbackup snapshot`, and its age. Skipped where the cluster has no snapshot API
//! or the user may not list snapshots.

use std::time::Duration;

use crate::backup::snapshot::check_api;
use crate::backup::snapshot_list::{self, SnapshotInfo, age};
use crate::client::Kube;
use crate::error::{Error, Result};

use super::{Check, Verdict};

const NAME: &str = "snapshot.newest";

/// Reads the snapshots of `database` and judges them.
pub async fn newest(kube: &Kube, database: &str, budget: Duration) -> Check {
    let read = async {
        check_api(kube).await?;
        snapshot_list::of_database(kube, Some(database), false).await
    };
    let found = crate::wait::within(budget, "the API server to list VolumeSnapshots", read).await;
    judge(database, found)
}

/// The verdict on what was read (pure).
pub fn judge(database: &str, found: Result<Vec<SnapshotInfo>>) -> Check {
    let snapshots = match found {
        Ok(snapshots) => snapshots,
        Err(err @ Error::NotFound(_)) => {
            return Check::new(NAME, Verdict::Skipped, err.chain());
        }
        Err(err) => {
            return Check::new(
                NAME,
                Verdict::Skipped,
                format!("could not read the snapshots: {}", err.chain()),
            );
        }
    };
    // Newest first; several volumes of one snapshot run share their age.
    match snapshots.iter().find(|s| s.ready) {
        Some(s) => Check::new(
            NAME,
            Verdict::Ok,
            format!(
                "newest ready snapshot {} of PVC {}, {} old ({}-consistent, {} {})",
                s.name,
                s.pvc,
                s.age_seconds.map(age).unwrap_or_else(|| "?".into()),
                s.consistency.as_deref().unwrap_or("unknown"),
                s.engine.map(|e| e.product()).unwrap_or("unknown engine"),
                s.engine_version.as_deref().unwrap_or("")
            ),
        ),
        None if snapshots.is_empty() => Check::new(
            NAME,
            Verdict::Ok,
            format!("no snapshot of {database} taken by kubectl dbbackup"),
        )
        .fix(format!("`kubectl dbbackup snapshot {database}` takes one (on a CSI StorageClass)")),
        None => Check::new(
            NAME,
            Verdict::Warn,
            format!(
                "no ready snapshot of {database}: {} not ready ({})",
                snapshots.len(),
                snapshots
                    .iter()
                    .map(|s| s.error.clone().unwrap_or_else(|| s.name.clone()))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
        .fix("`kubectl describe volumesnapshot NAME` shows why; `kubectl dbbackup snapshot delete NAME` removes a failed one"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;

    fn snap(name: &str, ready: bool, age: i64) -> SnapshotInfo {
        SnapshotInfo {
            name: name.into(),
            namespace: "ns".into(),
            pvc: "data-pg-0".into(),
            ready,
            size: None,
            created: None,
            age_seconds: Some(age),
            database: Some("pg".into()),
            engine: Some(Engine::Postgres),
            engine_version: Some("15.14".into()),
            consistency: Some("application".into()),
            managed: true,
            error: None,
        }
    }

    #[test]
    fn newest_ready_snapshot_or_why_not() {
        let check = judge(
            "pg",
            Ok(vec![snap("new", false, 5), snap("old", true, 7200)]),
        );
        assert_eq!(check.verdict, Verdict::Ok);
        assert_eq!(
            check.evidence,
            "newest ready snapshot old of PVC data-pg-0, 2h old (application-consistent, PostgreSQL 15.14)"
        );
        let none = judge("pg", Ok(vec![]));
        assert_eq!(
            (none.verdict, none.evidence.as_str()),
            (Verdict::Ok, "no snapshot of pg taken by kubectl dbbackup")
        );
        assert_eq!(
            judge("pg", Ok(vec![snap("x", false, 1)])).verdict,
            Verdict::Warn
        );
        let absent = judge("pg", Err(crate::backup::snapshot::no_api()));
        assert_eq!(absent.verdict, Verdict::Skipped);
        assert!(
            absent.evidence.contains("no VolumeSnapshot API"),
            "{}",
            absent.evidence
        );
    }
}
