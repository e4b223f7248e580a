//! The four plugins' command lines: clap parsing -> one library call -> exit code. Each
//! `src/bin/kubectl-db*.rs` only calls its `main` here, so the async flows, the kube
//! client and the reports' serializers are compiled once, in this crate, instead of once
//! per binary (four times the release build's slowest work; docs/install.md, "Build time").

pub mod dbbackup;
pub mod dbcheck;
pub mod dbdeploy;
pub mod dbpersist;
