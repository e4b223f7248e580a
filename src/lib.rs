//! kubectl-db: kubectl plugins that deploy MySQL, MariaDB and PostgreSQL as StatefulSets
//! (`dbdeploy`), diagnose them (`dbcheck`), back them up (`dbbackup`) and prove their data
//! survives a pod's death (`dbpersist`). `app/` holds each plugin's command line (the
//! binaries in `src/bin/` only call it): it parses flags and calls one flow; flows talk to
//! the API server through `kube` (exec included) and return report values. A report's table
//! is a pure function next to it (`output::Render`, in the flow's `print` module); `app/`
//! only chooses it, JSON or YAML.
#![forbid(unsafe_code)]

pub mod app;
pub mod apply;
pub mod backup;
pub mod check;
pub mod cli;
pub mod client;
pub mod complete;
pub mod deploy;
pub mod encoding;
pub mod engine;
pub mod error;
pub mod exec;
pub mod exit;
pub mod jsonpath;
pub mod man;
pub mod output;
pub mod persist;
pub mod quantity;
pub mod render;
pub mod schema;
pub mod target;
pub mod wait;

#[cfg(test)]
pub(crate) mod testing;

pub use error::{Error, Result};
