//! The one place a `kube::Client` is built: from kubectl's global flags, never from
//! `Config::infer()` (which ignores `--kubeconfig` and `--context`).

use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};

/// The API server cuts any ordinary (non-watch, non-exec) request after 60 s (its own
/// `--request-timeout` default), so waiting longer for one answer only hides a hung server.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A connected client and the namespace the command works in.
#[derive(Clone)]
pub struct Kube {
    /// The client for ordinary API requests: every read on its connections is bounded by
    /// the request timeout, so a hung API server fails the request instead of hanging it.
    pub client: Client,
    /// The client for exec streams and watches, which may be quiet for long while alive
    /// (a restore's CREATE INDEX, a dump waiting for a lock, a watch with no events): no
    /// read timeout, only the connect timeout. Their callers bound them as a whole
    /// (`--timeout`, the exec's own timeout) and kube's watcher has its own idle timeout.
    pub streams: Client,
    /// `-n` if given, else the context's namespace, else `default`.
    pub namespace: String,
}

/// Reads the kubeconfig the way kubectl does: `--kubeconfig` is that one file; otherwise
/// `KUBECONFIG` (a merged path list), otherwise `~/.kube/config`.
pub fn load_kubeconfig(args: &GlobalArgs) -> Result<Kubeconfig> {
    match &args.kubeconfig {
        Some(path) => Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
            path: Some(path.clone()),
            source,
        }),
        None => Kubeconfig::read().map_err(|source| Error::Kubeconfig {
            path: std::env::var("KUBECONFIG").ok(),
            source,
        }),
    }
}

/// The time limit for one ordinary API request: `--request-timeout` when given, else the
/// command's own budget, at most [`DEFAULT_REQUEST_TIMEOUT`].
pub fn request_timeout(args: &GlobalArgs, budget: Duration) -> Duration {
    if args.request_timeout.is_zero() {
        if budget.is_zero() {
            DEFAULT_REQUEST_TIMEOUT
        } else {
            budget.min(DEFAULT_REQUEST_TIMEOUT)
        }
    } else {
        args.request_timeout
    }
}

/// Builds the client config from the global flags, for ordinary requests bounded by
/// `timeout` (connect, and every read while waiting for the answer).
pub async fn config_from_args(args: &GlobalArgs, timeout: Duration) -> Result<Config> {
    let kubeconfig = load_kubeconfig(args)?;
    check_names(&kubeconfig, args)?;
    let options = KubeConfigOptions {
        context: args.context.clone(),
        cluster: args.cluster.clone(),
        user: args.user.clone(),
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|source| Error::Kubeconfig {
            path: args.kubeconfig.clone(),
            source,
        })?;
    if !timeout.is_zero() {
        config.connect_timeout = Some(timeout);
        config.read_timeout = Some(timeout);
        // Count from when a request is sent, not from when its pooled connection went idle.
        config.reset_reader_on_write = true;
    }
    Ok(config)
}

/// kube falls back to anonymous requests when `--user` names no user; kubectl refuses.
fn check_names(kubeconfig: &Kubeconfig, args: &GlobalArgs) -> Result<()> {
    let missing = |what: &str, name: &str, known: Vec<&str>| {
        Err(Error::Usage(format!(
            "{what} {name:?} is not in the kubeconfig (it has: {})",
            known.join(", ")
        )))
    };
    if let Some(context) = &args.context
        && !kubeconfig.contexts.iter().any(|c| &c.name == context)
    {
        return missing(
            "context",
            context,
            kubeconfig
                .contexts
                .iter()
                .map(|c| c.name.as_str())
                .collect(),
        );
    }
    if let Some(cluster) = &args.cluster
        && !kubeconfig.clusters.iter().any(|c| &c.name == cluster)
    {
        return missing(
            "cluster",
            cluster,
            kubeconfig
                .clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect(),
        );
    }
    if let Some(user) = &args.user
        && !kubeconfig.auth_infos.iter().any(|u| &u.name == user)
    {
        return missing(
            "user",
            user,
            kubeconfig
                .auth_infos
                .iter()
                .map(|u| u.name.as_str())
                .collect(),
        );
    }
    Ok(())
}

/// The kubeconfig context the flags select (`--context`, else the current context), for
/// the messages of destructive commands, which must say where they act.
pub fn context_name(args: &GlobalArgs) -> Option<String> {
    let kubeconfig = load_kubeconfig(args).ok()?;
    args.context.clone().or(kubeconfig.current_context)
}

/// Connects using the global flags and resolves the namespace; ordinary requests are
/// bounded by `--request-timeout`, else [`DEFAULT_REQUEST_TIMEOUT`].
pub async fn connect(args: &GlobalArgs) -> Result<Kube> {
    connect_within(args, DEFAULT_REQUEST_TIMEOUT).await
}

/// Like [`connect`] for a command with its own time budget (`--timeout`): without
/// `--request-timeout`, one ordinary request may take at most that budget (and at most
/// [`DEFAULT_REQUEST_TIMEOUT`]), so a hung API server ends the command within it.
pub async fn connect_within(args: &GlobalArgs, budget: Duration) -> Result<Kube> {
    let timeout = request_timeout(args, budget);
    let config = config_from_args(args, timeout).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let mut stream_config = config.clone();
    stream_config.read_timeout = None;
    stream_config.reset_reader_on_write = false;
    let client = Client::try_from(config).map_err(Error::Client)?;
    let streams = Client::try_from(stream_config).map_err(Error::Client)?;
    Ok(Kube {
        client,
        streams,
        namespace,
    })
}

impl Kube {
    /// The same clients working in another namespace.
    pub fn in_namespace(&self, namespace: String) -> Kube {
        Kube {
            client: self.client.clone(),
            streams: self.streams.clone(),
            namespace,
        }
    }

    /// Pods of the command's namespace on the stream client, for exec (see [`Kube::streams`]).
    pub fn exec_pods(&self) -> kube::Api<k8s_openapi::api::core::v1::Pod> {
        kube::Api::namespaced(self.streams.clone(), &self.namespace)
    }

    /// A namespaced API handle on the stream client, for watches (see [`Kube::streams`]).
    pub fn watch_api<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        kube::Api::namespaced(self.streams.clone(), &self.namespace)
    }

    /// A namespaced API handle in the command's namespace.
    pub fn api<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        kube::Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// An API handle across all namespaces (for `-A`).
    pub fn api_all<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource,
        <K as kube::Resource>::DynamicType: Default,
    {
        kube::Api::all(self.client.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_timeout_falls_back_to_the_commands_budget_at_most_a_minute() {
        let mut args = GlobalArgs::default();
        assert_eq!(
            request_timeout(&args, Duration::from_secs(8)),
            Duration::from_secs(8)
        );
        assert_eq!(
            request_timeout(&args, Duration::from_secs(6 * 3600)),
            DEFAULT_REQUEST_TIMEOUT
        );
        assert_eq!(
            request_timeout(&args, Duration::ZERO),
            DEFAULT_REQUEST_TIMEOUT
        );
        args.request_timeout = Duration::from_secs(300);
        assert_eq!(
            request_timeout(&args, Duration::from_secs(8)),
            Duration::from_secs(300)
        );
    }
}
