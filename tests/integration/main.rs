//! The integration tests as one binary (ripgrep's layout): kube and k8s-openapi are linked
//! once, not once per file. A file's tests: `cargo test --test integration dbbackup::`.
//! The control-plane fault tests stay a binary of their own (tests/safety_faults.rs): they
//! restart the shared API server, so nothing else of the suite may run beside them.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod access;
mod cli;
mod cluster_smoke;
mod completion;
mod dbbackup;
mod dbcheck;
mod dbdeploy;
mod dbpersist;
mod drill;
mod krew;
mod man;
mod parallel;
mod parsers;
mod perf;
mod rbac;
mod render;
mod s3;
mod safety;
mod schedule;
mod schema;
mod targets;
