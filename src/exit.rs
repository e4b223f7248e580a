//! The process exit codes of every `kubectl db*` command, defined here once and documented
//! in docs/exit-codes.md. Reports that carry an exit code (`dbpersist -o json`) use these.

/// Success.
pub const SUCCESS: i32 = 0;
/// The thing checked is unhealthy, or the test failed.
pub const UNHEALTHY: i32 = 1;
/// Bad usage or input, caught before any API call; or refused before anything changed.
pub const USAGE: i32 = 2;
/// Cluster or API error: unreachable, forbidden, timed out.
pub const CLUSTER: i32 = 3;
/// Interrupted by SIGINT (Ctrl-C) or SIGTERM. One code for both: a script or a CI job
/// asks "was it stopped?", not "by which signal?"; 128 + SIGINT is the shell's own.
pub const INTERRUPTED: i32 = 130;
