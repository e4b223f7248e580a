//! The library's error type: what failed, on which object, and the exit code it maps to.

use std::time::Duration;

use crate::cli::exit;

/// Everything a flow can fail with. Messages name the object and step; the cause is
/// kept as `source` so the binary can print the chain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags or input, found before any API call.
    #[error("{0}")]
    Usage(String),

    /// The kubeconfig could not be read or has no usable context.
    #[error("failed to load kubeconfig{}", .path.as_ref().map(|p| format!(" {p}")).unwrap_or_default())]
    Kubeconfig {
        path: Option<String>,
        #[source]
        source: kube::config::KubeconfigError,
    },

    /// The client could not be built from a valid kubeconfig.
    #[error("failed to build a Kubernetes client")]
    Client(#[source] kube::Error),

    /// An API call failed.
    #[error("failed to {action}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },

    /// Something did not happen within its time budget.
    #[error("timed out after {}s waiting for {what}", .after.as_secs())]
    Timeout { what: String, after: Duration },

    /// A wait ran out of time; `seen` is what the cluster showed, printed as the diagnosis.
    #[error("timed out after {}s waiting for {what} to become ready", .after.as_secs())]
    NotReady {
        what: String,
        after: Duration,
        seen: Box<crate::wait::WaitReport>,
    },

    /// An object the command needs is not there.
    #[error("{0}")]
    NotFound(String),

    /// A command run inside a container failed or could not be run.
    #[error("failed to run {what} in pod {pod}: {detail}")]
    Exec {
        pod: String,
        what: String,
        detail: String,
    },

    /// Local file trouble (backups, config).
    #[error("failed to {action} {path}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A check or test ran and found the thing unhealthy (exit 1).
    #[error("{0}")]
    Failed(String),

    /// The user declined a confirmation or none could be asked.
    #[error("{0}")]
    Refused(String),

    /// Stopped by SIGINT or SIGTERM (exit 130); the message says what was left behind.
    #[error("{0}")]
    Interrupted(String),
}

/// Library result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for an API error with the action that failed.
    pub fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Api { action, source }
    }

    /// The documented exit code (docs/exit-codes.md).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Refused(_) => exit::USAGE,
            Error::Failed(_) => exit::UNHEALTHY,
            Error::Io { .. } => exit::UNHEALTHY,
            Error::Interrupted(_) => exit::INTERRUPTED,
            _ => exit::CLUSTER,
        }
    }

    /// Extra lines that explain the error (what a timed-out wait saw).
    pub fn details(&self) -> Vec<String> {
        match self {
            Error::NotReady { seen, .. } => seen.diagnosis(),
            _ => Vec::new(),
        }
    }

    /// A line that tells the user what to do, when there is something to do.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Kubeconfig { .. } => Some(
                "check --kubeconfig / KUBECONFIG and --context; `kubectl config get-contexts` lists contexts"
                    .into(),
            ),
            Error::Api { source, .. } => api_hint(source),
            Error::NotReady { seen, .. } => Some(format!(
                "run `kubectl dbcheck {}` for a full diagnosis",
                seen.pods.keys().next().map(String::as_str).unwrap_or("NAME")
            )),
            Error::Client(_) => Some("check the cluster address and credentials in your kubeconfig".into()),
            _ => None,
        }
    }
}

fn api_hint(err: &kube::Error) -> Option<String> {
    match err {
        kube::Error::Api(status) if status.code == 403 => Some(
            "your user lacks a permission this command needs; see docs/rbac.md for the Role it needs".into(),
        ),
        kube::Error::Api(status) if status.code == 409 => Some(
            "another field manager owns these fields; re-run with --force-conflicts to take them over".into(),
        ),
        kube::Error::Api(status) if status.code == 401 => {
            Some("your credentials were rejected; refresh them in your kubeconfig".into())
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            Some("is the cluster reachable? check the server address with `kubectl cluster-info`".into())
        }
        _ => None,
    }
}

/// True when an API error is a 404.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}
