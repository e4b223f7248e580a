//! The one place a `kube::Client` is built: from kubectl's global flags, never from
//! `Config::infer()` (which ignores `--kubeconfig` and `--context`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::client::ClientBuilder;
use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, KubeconfigError, NamedAuthInfo,
    NamedCluster, NamedContext,
};
use kube::{Client, Config};
use secrecy::SecretString;

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

/// The kubeconfig for a run: as [`load_kubeconfig`], except that with `--server` and no
/// `--kubeconfig` a missing file is an empty one, as for kubectl (a CI job with a token and
/// a server URL has no kubeconfig at all).
fn kubeconfig_for(args: &GlobalArgs) -> Result<Kubeconfig> {
    match load_kubeconfig(args) {
        Err(Error::Kubeconfig { source, .. })
            if args.server.is_some() && args.kubeconfig.is_none() && is_missing(&source) =>
        {
            Ok(Kubeconfig::default())
        }
        other => other,
    }
}

fn is_missing(error: &KubeconfigError) -> bool {
    match error {
        KubeconfigError::FindPath => true,
        KubeconfigError::ReadConfig(io, _) => io.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

/// kubectl's connection flags that change the kubeconfig's choice (client-go's
/// `ConfigOverrides`): `--as-group`/`--as-uid` need `--as`, and a CA file and
/// `--insecure-skip-tls-verify` exclude each other, as kubectl refuses them.
fn check_connection_flags(args: &GlobalArgs) -> Result<()> {
    if args.as_user.is_none() && (!args.as_group.is_empty() || args.as_uid.is_some()) {
        return Err(Error::Usage(
            "--as-group and --as-uid impersonate a user's groups and uid: name the user with --as"
                .into(),
        ));
    }
    if args.insecure_skip_tls_verify && args.certificate_authority.is_some() {
        return Err(Error::Usage(
            "--certificate-authority and --insecure-skip-tls-verify exclude each other: the first verifies the server's certificate, the second does not".into(),
        ));
    }
    Ok(())
}

/// The one context, cluster and user a run uses, from the kubeconfig and kubectl's flags
/// (`--context`, `--cluster`, `--user`, then `--server`, `--token`, `--as` ... over their
/// fields), as a kubeconfig of its own. Without `--server` the kubeconfig must name a
/// context and a cluster, as kube requires.
fn select(kubeconfig: Kubeconfig, args: &GlobalArgs) -> Result<Kubeconfig> {
    let failed = |source| Error::Kubeconfig {
        path: args.kubeconfig.clone(),
        source,
    };
    let overridden = args.server.is_some();
    let context_name = args.context.clone().or(kubeconfig.current_context.clone());
    let context = match &context_name {
        Some(name) => kubeconfig
            .contexts
            .iter()
            .find(|c| &c.name == name)
            .and_then(|c| c.context.clone()),
        None => None,
    };
    let context = match (context, context_name) {
        (Some(context), _) => context,
        (None, _) if overridden => Context::default(),
        (None, Some(name)) => return Err(failed(KubeconfigError::LoadContext(name))),
        (None, None) => return Err(failed(KubeconfigError::CurrentContextNotSet)),
    };
    let cluster_name = args.cluster.clone().unwrap_or(context.cluster.clone());
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.clone());
    let cluster = match cluster {
        Some(cluster) => cluster,
        None if overridden => Cluster::default(),
        None => return Err(failed(KubeconfigError::LoadClusterOfContext(cluster_name))),
    };
    let user_name = args.user.clone().or(context.user.clone());
    // client-go goes on without a user when the context names none (or a missing one).
    let user = user_name
        .and_then(|name| kubeconfig.auth_infos.into_iter().find(|u| u.name == name))
        .and_then(|u| u.auth_info)
        .unwrap_or_default();
    const NAME: &str = "kubectl-db";
    Ok(Kubeconfig {
        current_context: Some(NAME.into()),
        contexts: vec![NamedContext {
            name: NAME.into(),
            context: Some(Context {
                cluster: NAME.into(),
                user: Some(NAME.into()),
                namespace: context.namespace,
                ..Default::default()
            }),
            ..Default::default()
        }],
        clusters: vec![NamedCluster {
            name: NAME.into(),
            cluster: Some(cluster_overrides(cluster, args)),
            ..Default::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: NAME.into(),
            auth_info: Some(user_overrides(user, args)),
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// `--server`, `--certificate-authority`, `--insecure-skip-tls-verify`, `--tls-server-name`
/// over the kubeconfig cluster, with client-go's rules: a CA file or skipping verification
/// replaces the kubeconfig's CA data and skip setting; `--server` drops the kubeconfig's
/// TLS server name (it belongs to the other address).
fn cluster_overrides(mut cluster: Cluster, args: &GlobalArgs) -> Cluster {
    if let Some(server) = &args.server {
        cluster.server = Some(server.clone());
    }
    if args.insecure_skip_tls_verify || args.certificate_authority.is_some() {
        cluster.insecure_skip_tls_verify = Some(args.insecure_skip_tls_verify);
        cluster.certificate_authority = args.certificate_authority.clone();
        cluster.certificate_authority_data = None;
    }
    if args.tls_server_name.is_some() || args.server.is_some() {
        cluster.tls_server_name = args.tls_server_name.clone();
    }
    cluster
}

/// `--token`, `--client-certificate/--client-key` and `--as*` over the kubeconfig user. A
/// token replaces the user's other bearer credentials (token file, exec plugin, auth
/// provider, basic auth): it is what the request carries, as with kubectl.
fn user_overrides(mut user: AuthInfo, args: &GlobalArgs) -> AuthInfo {
    if let Some(token) = &args.token {
        user.token = Some(SecretString::from(token.expose().to_string()));
        user.token_file = None;
        user.exec = None;
        user.auth_provider = None;
        user.username = None;
        user.password = None;
    }
    // A file replaces the kubeconfig's inline data (kube would prefer the data).
    if let Some(cert) = &args.client_certificate {
        user.client_certificate = Some(cert.clone());
        user.client_certificate_data = None;
    }
    if let Some(key) = &args.client_key {
        user.client_key = Some(key.clone());
        user.client_key_data = None;
    }
    if let Some(as_user) = &args.as_user {
        user.impersonate = Some(as_user.clone());
        user.impersonate_groups = (!args.as_group.is_empty()).then(|| args.as_group.clone());
        user.impersonate_uid = args.as_uid.clone();
        user.impersonate_user_extra = None;
    }
    user
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
    check_connection_flags(args)?;
    let kubeconfig = kubeconfig_for(args)?;
    check_names(&kubeconfig, args)?;
    let selected = select(kubeconfig, args)?;
    let mut config = Config::from_custom_kubeconfig(selected, &KubeConfigOptions::default())
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
    use secrecy::ExposeSecret;

    const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\ncurrent-context: admin\nclusters:\n- name: test\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority-data: Zm9v\n    tls-server-name: kubernetes\ncontexts:\n- name: admin\n  context:\n    cluster: test\n    user: admin\n    namespace: team\nusers:\n- name: admin\n  user:\n    client-certificate-data: Zm9v\n    client-key-data: Zm9v\n    token: from-file\n";

    fn kubeconfig() -> Kubeconfig {
        Kubeconfig::from_yaml(KUBECONFIG).unwrap()
    }

    fn selected(kubeconfig: Kubeconfig, args: &GlobalArgs) -> (Cluster, AuthInfo, Context) {
        let mut k = select(kubeconfig, args).unwrap();
        (
            k.clusters.remove(0).cluster.unwrap(),
            k.auth_infos.remove(0).auth_info.unwrap(),
            k.contexts.remove(0).context.unwrap(),
        )
    }

    #[test]
    fn without_connection_flags_the_kubeconfig_is_used_as_it_is() {
        let (cluster, user, context) = selected(kubeconfig(), &GlobalArgs::default());
        assert_eq!(cluster.server.as_deref(), Some("https://10.0.0.1:6443"));
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some("Zm9v"));
        assert_eq!(cluster.tls_server_name.as_deref(), Some("kubernetes"));
        assert_eq!(
            user.token.map(|t| t.expose_secret().to_string()).as_deref(),
            Some("from-file")
        );
        assert_eq!(user.impersonate, None);
        assert_eq!(context.namespace.as_deref(), Some("team"));
    }

    #[test]
    fn server_and_token_need_no_kubeconfig() {
        let args = GlobalArgs {
            server: Some("https://127.0.0.1:6443".into()),
            token: Some("sa-token".into()),
            insecure_skip_tls_verify: true,
            ..Default::default()
        };
        let (cluster, user, context) = selected(Kubeconfig::default(), &args);
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(cluster.insecure_skip_tls_verify, Some(true));
        assert_eq!(
            user.token.map(|t| t.expose_secret().to_string()).as_deref(),
            Some("sa-token")
        );
        assert_eq!(context.namespace, None);
        // Without --server an empty kubeconfig names no cluster: kube's own error.
        let args = GlobalArgs {
            token: Some("sa-token".into()),
            ..Default::default()
        };
        assert!(matches!(
            select(Kubeconfig::default(), &args),
            Err(Error::Kubeconfig {
                source: KubeconfigError::CurrentContextNotSet,
                ..
            })
        ));
    }

    #[test]
    fn flags_override_the_kubeconfig_as_client_go_does() {
        let args = GlobalArgs {
            server: Some("https://lb.example:443".into()),
            certificate_authority: Some("/etc/ca.pem".into()),
            token: Some("other".into()),
            as_user: Some("system:serviceaccount:team:ci".into()),
            as_group: vec!["a".into(), "b".into()],
            as_uid: Some("42".into()),
            ..Default::default()
        };
        let (cluster, user, _) = selected(kubeconfig(), &args);
        assert_eq!(cluster.server.as_deref(), Some("https://lb.example:443"));
        // A CA file replaces the kubeconfig's CA data (kube would prefer the data).
        assert_eq!(
            cluster.certificate_authority.as_deref(),
            Some("/etc/ca.pem")
        );
        assert_eq!(cluster.certificate_authority_data, None);
        // The kubeconfig's TLS server name belongs to its own server address.
        assert_eq!(cluster.tls_server_name, None);
        assert_eq!(
            user.token.map(|t| t.expose_secret().to_string()).as_deref(),
            Some("other")
        );
        assert_eq!(
            user.impersonate.as_deref(),
            Some("system:serviceaccount:team:ci")
        );
        assert_eq!(user.impersonate_groups, Some(vec!["a".into(), "b".into()]));
        assert_eq!(user.impersonate_uid.as_deref(), Some("42"));
        // The client certificate stays, as with kubectl.
        assert!(user.client_certificate_data.is_some());
        let args = GlobalArgs {
            tls_server_name: Some("api.internal".into()),
            insecure_skip_tls_verify: true,
            ..Default::default()
        };
        let (cluster, _, _) = selected(kubeconfig(), &args);
        assert_eq!(cluster.tls_server_name.as_deref(), Some("api.internal"));
        assert_eq!(cluster.insecure_skip_tls_verify, Some(true));
        assert_eq!(cluster.certificate_authority_data, None);
    }

    #[test]
    fn contradicting_connection_flags_are_usage_errors() {
        let refused =
            |args: GlobalArgs| matches!(check_connection_flags(&args), Err(Error::Usage(_)));
        assert!(refused(GlobalArgs {
            as_group: vec!["g".into()],
            ..Default::default()
        }));
        assert!(refused(GlobalArgs {
            as_uid: Some("1".into()),
            ..Default::default()
        }));
        assert!(refused(GlobalArgs {
            insecure_skip_tls_verify: true,
            certificate_authority: Some("ca".into()),
            ..Default::default()
        }));
        assert!(
            check_connection_flags(&GlobalArgs {
                as_user: Some("u".into()),
                as_group: vec!["g".into()],
                ..Default::default()
            })
            .is_ok()
        );
    }

    #[test]
    fn the_token_is_never_in_debug_output() {
        let args = GlobalArgs {
            token: Some("s3cr3t-token".into()),
            ..Default::default()
        };
        assert!(!format!("{args:?}").contains("s3cr3t"));
    }

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
