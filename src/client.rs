//! The one place a `kube::Client` is built: from kubectl's global flags, never from
//! `Config::infer()` (which ignores `--kubeconfig` and `--context`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::client::ClientBuilder;
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
    /// Every request both clients sent, by verb and resource.
    pub requests: RequestLog,
}

/// Counts the requests a client sends, by verb and resource (`list pods`, `exec pods`):
/// how tests prove a command's API cost, and what `-v` logs at the end of a command.
#[derive(Debug, Clone, Default)]
pub struct RequestLog {
    counts: Arc<Mutex<BTreeMap<(String, String), u64>>>,
}

impl RequestLog {
    fn record<B>(&self, request: &http::Request<B>) {
        let key = request_kind(request.method(), request.uri());
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(key).or_default() += 1;
        }
    }

    /// `(verb, resource) -> requests` so far.
    pub fn counts(&self) -> BTreeMap<(String, String), u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Requests so far whose verb is not one of `except`.
    pub fn total_except(&self, except: &[&str]) -> u64 {
        self.counts()
            .iter()
            .filter(|((verb, _), _)| !except.contains(&verb.as_str()))
            .map(|(_, n)| n)
            .sum()
    }
}

impl std::fmt::Display for RequestLog {
    /// `12 requests: 1 list pods, 4 exec pods, ...`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let counts = self.counts();
        let parts: Vec<String> = counts
            .iter()
            .map(|((verb, resource), n)| format!("{n} {verb} {resource}"))
            .collect();
        write!(
            f,
            "{} requests: {}",
            counts.values().sum::<u64>(),
            parts.join(", ")
        )
    }
}

/// `(verb, resource)` of an API request in kubectl's words, from its method and path:
/// `GET /api/v1/namespaces/x/pods` is `list pods`, `.../pods/p/exec` is `exec pods`, and
/// resources of named groups carry the group (`list statefulsets.apps`).
pub fn request_kind(method: &http::Method, uri: &http::Uri) -> (String, String) {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest): (&str, &[&str]) = match segments.first() {
        Some(&"api") => ("", segments.get(2..).unwrap_or_default()),
        Some(&"apis") => (
            segments.get(1).copied().unwrap_or_default(),
            segments.get(3..).unwrap_or_default(),
        ),
        _ => ("", &[]),
    };
    let rest = match rest {
        ["namespaces", _, more @ ..] if !more.is_empty() => more,
        other => other,
    };
    let Some(resource) = rest.first() else {
        return ("discover".into(), uri.path().to_string());
    };
    let named = rest.len() > 1;
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match (method.as_str(), rest.get(2)) {
        (_, Some(sub)) if matches!(*sub, "exec" | "log" | "attach" | "portforward") => *sub,
        ("GET", _) if watch => "watch",
        ("GET", _) if named => "get",
        ("GET", _) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) if named => "delete",
        ("DELETE", _) => "deletecollection",
        (other, _) => other,
    };
    let resource = match group {
        "" => resource.to_string(),
        group => format!("{resource}.{group}"),
    };
    (verb.to_string(), resource)
}

/// A client whose every request is counted in `log`.
fn counted_client(config: Config, log: &RequestLog) -> Result<Client> {
    let log = log.clone();
    let counting = tower::util::MapRequestLayer::new(move |request: http::Request<_>| {
        log.record(&request);
        request
    });
    Ok(ClientBuilder::try_from(config)
        .map_err(Error::Client)?
        .with_layer(&counting)
        .build())
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
    let requests = RequestLog::default();
    let client = counted_client(config, &requests)?;
    let streams = counted_client(stream_config, &requests)?;
    Ok(Kube {
        client,
        streams,
        namespace,
        requests,
    })
}

impl Kube {
    /// The same clients working in another namespace.
    pub fn in_namespace(&self, namespace: String) -> Kube {
        Kube {
            client: self.client.clone(),
            streams: self.streams.clone(),
            namespace,
            requests: self.requests.clone(),
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
    fn requests_are_named_like_kubectl_verbs() {
        let kind = |method: &str, uri: &str| {
            let (verb, resource) = request_kind(&method.parse().unwrap(), &uri.parse().unwrap());
            format!("{verb} {resource}")
        };
        assert_eq!(
            kind("GET", "/api/v1/namespaces/a/pods?limit=5"),
            "list pods"
        );
        assert_eq!(kind("GET", "/api/v1/pods"), "list pods");
        assert_eq!(kind("GET", "/api/v1/namespaces/a/pods/p"), "get pods");
        assert_eq!(
            kind("GET", "/api/v1/namespaces/a/pods/p/exec?command=x"),
            "exec pods"
        );
        assert_eq!(kind("GET", "/api/v1/namespaces/a/pods/p/log"), "log pods");
        assert_eq!(
            kind("GET", "/apis/apps/v1/namespaces/a/statefulsets?watch=true"),
            "watch statefulsets.apps"
        );
        assert_eq!(kind("GET", "/api/v1/namespaces/a"), "get namespaces");
        assert_eq!(kind("POST", "/api/v1/namespaces"), "create namespaces");
        assert_eq!(
            kind("PATCH", "/apis/apps/v1/namespaces/a/statefulsets/s"),
            "patch statefulsets.apps"
        );
        assert_eq!(
            kind("GET", "/apis/snapshot.storage.k8s.io/v1"),
            "discover /apis/snapshot.storage.k8s.io/v1"
        );
        assert_eq!(
            kind("GET", "/apis/storage.k8s.io/v1/storageclasses"),
            "list storageclasses.storage.k8s.io"
        );
    }

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
