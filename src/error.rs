//! The library's error type: what failed, on which object, and the exit code it maps to.

use std::time::Duration;

use crate::exit;

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

    /// A watch of an object failed (refused, or its stream broke): a cluster error (exit 3).
    #[error("failed to watch {what}")]
    Watch {
        what: String,
        #[source]
        source: kube::runtime::wait::Error,
    },

    /// Something did not happen within its time budget.
    #[error("timed out after {}s waiting for {what}", .after.as_secs())]
    Timeout { what: String, after: Duration },

    /// A wait ran out of time. `seen` is what the cluster showed (one line per pod, PVC and
    /// Warning event), printed under the error; `pod` is the first pod, named in the hint.
    #[error("timed out after {}s waiting for {what} to become ready", .after.as_secs())]
    NotReady {
        what: String,
        after: Duration,
        pod: Option<String>,
        seen: Vec<String>,
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

    /// An object-storage request failed (exit 3). `reason` is one line and never the
    /// response body, which can echo the access key.
    #[error("failed to {action}: {reason}")]
    ObjectStore { action: String, reason: String },

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

    /// The error and each distinct cause under it, as one line (`a: b: c`): the API's
    /// reason (e.g. which verb on which resource was forbidden) included.
    pub fn chain(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            // kube's Display of an API error includes the whole Status struct; its message is enough.
            let text = match cause.downcast_ref::<kube::Error>() {
                Some(kube::Error::Api(status)) => status.message.clone(),
                _ => cause.to_string(),
            };
            // kube nests the same message several times; print each distinct cause once.
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        message
    }

    /// [`Error::chain`] followed by the hint, for reports that carry the error as text.
    pub fn chain_with_hint(&self) -> String {
        match self.hint() {
            Some(hint) => format!("{} (hint: {hint})", self.chain()),
            None => self.chain(),
        }
    }

    /// Extra lines that explain the error (what a timed-out wait saw).
    pub fn details(&self) -> Vec<String> {
        match self {
            Error::NotReady { seen, .. } => seen.clone(),
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
            Error::Watch { source, .. } => watch_source(source).and_then(api_hint),
            Error::NotReady { pod, .. } => Some(format!(
                "run `kubectl dbcheck {}` for a full diagnosis",
                pod.as_deref().unwrap_or("NAME")
            )),
            Error::Client(source) if timed_out(source) => Some(NO_ANSWER_HINT.into()),
            Error::Client(_) => Some("check the cluster address and credentials in your kubeconfig".into()),
            _ => None,
        }
    }
}

/// The hint for an API server that accepted the connection but did not answer in time.
const NO_ANSWER_HINT: &str = "the API server did not answer in time (limit: --request-timeout, else the command's --timeout, at most 60s): is it hung or overloaded? `kubectl get --raw /readyz` tells";

/// True when the error, or any error under it, is an I/O timeout (kube's connect and read
/// timeouts surface that way, several layers down).
fn timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// The API error under a failed watch (a refused list or watch), when there is one.
fn watch_source(err: &kube::runtime::wait::Error) -> Option<&kube::Error> {
    use kube::runtime::watcher::Error as Watch;
    let kube::runtime::wait::Error::ProbeFailed(err) = err;
    match err {
        Watch::InitialListFailed(source)
        | Watch::WatchStartFailed(source)
        | Watch::WatchFailed(source) => Some(source),
        _ => None,
    }
}

fn api_hint(err: &kube::Error) -> Option<String> {
    if timed_out(err) {
        return Some(NO_ANSWER_HINT.into());
    }
    match err {
        // An exec the API server refuses ends the WebSocket upgrade with a bare 403: the
        // Status naming the verb never reaches the client, so the hint names it.
        kube::Error::UpgradeConnection(kube::client::UpgradeConnectionError::ProtocolSwitch(code))
            if code.as_u16() == 403 =>
        {
            Some("your user may not exec into the pod: it needs `create` (and `get`) on pods/exec; see docs/rbac.md for the Role it needs".into())
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_under_an_api_error_gets_the_no_answer_hint() {
        let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline has elapsed");
        let err = Error::Api {
            action: "read pod x".into(),
            source: kube::Error::Service(Box::new(timeout)),
        };
        assert_eq!(err.exit_code(), exit::CLUSTER);
        assert!(err.hint().unwrap().contains("did not answer in time"));
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = Error::Api {
            action: "read pod x".into(),
            source: kube::Error::Service(Box::new(refused)),
        };
        assert!(err.hint().unwrap().contains("is the cluster reachable"));
    }

    #[test]
    fn a_failed_watch_is_a_cluster_error() {
        let err = Error::Watch {
            what: "VolumeSnapshot data-pg-0-x".into(),
            source: kube::runtime::wait::Error::ProbeFailed(
                kube::runtime::watcher::Error::NoResourceVersion,
            ),
        };
        assert_eq!(err.exit_code(), exit::CLUSTER);
        assert!(
            err.chain()
                .starts_with("failed to watch VolumeSnapshot data-pg-0-x: ")
        );
        assert_eq!(err.hint(), None);
        // A watch the API server refuses says which Role to look at, like any refused call.
        let refused = Error::Watch {
            what: "VolumeSnapshot data-pg-0-x".into(),
            source: kube::runtime::wait::Error::ProbeFailed(
                kube::runtime::watcher::Error::InitialListFailed(kube::Error::Api(
                    kube::core::Status::failure("forbidden", "Forbidden")
                        .with_code(403)
                        .boxed(),
                )),
            ),
        };
        assert!(refused.hint().is_some_and(|h| h.contains("docs/rbac.md")));
    }

    #[test]
    fn a_timed_out_wait_prints_what_it_saw_and_names_the_pod() {
        let err = Error::NotReady {
            what: "StatefulSet ns/pg".into(),
            after: Duration::from_secs(5),
            pod: Some("pg-0".into()),
            seen: vec!["pod pg-0: Pending".into()],
        };
        assert_eq!(err.exit_code(), exit::CLUSTER);
        assert_eq!(err.details(), ["pod pg-0: Pending"]);
        assert!(err.hint().unwrap().contains("kubectl dbcheck pg-0"));
    }
}
