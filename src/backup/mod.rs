//! `kubectl dbbackup`: streamed, verified logical dumps (`dump`), their checks (`verify`),
//! restores over exec stdin (`restore`) and CSI volume snapshots (`snapshot`). A dump is
//! trusted only when the remote exit status is 0 and the dump tool's completion trailer is
//! there; until then it lives under `FILE.partial`.

pub mod archive;
pub mod aws_config;
pub mod cron;
pub mod drill;
mod drill_print;
pub mod dump;
pub mod format;
mod framed;
pub mod list;
pub mod location;
pub mod manifest;
pub mod parallel;
pub mod pg_filter;
pub mod pipeline;
mod print;
pub mod pvc_source;
pub mod quiesce;
pub mod restore;
pub mod s3;
pub mod schedule;
mod schedule_print;
pub mod schedule_run;
pub mod snapshot;
pub mod snapshot_list;
pub mod verify;

pub use drill::{DrillOptions, DrillReport, drill};
pub use dump::{Destination, DumpOptions, DumpReport, dump};
pub use format::{Compression, DumpKind};
pub use location::{Location, S3Url, write_sidecar};
pub use pg_filter::PgRestoreFilter;
pub use restore::{RestoreOptions, RestoreReport, check_file, restore};
pub use snapshot::{SnapshotOptions, SnapshotReport, snapshot};
pub use verify::{VerifyReport, verify, verify_deep};
