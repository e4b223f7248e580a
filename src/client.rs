//! The one place a `kube::Client` is built: from kubectl's global flags, never from
//! `Config::infer()` (which ignores `--kubeconfig` and `--context`).

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};

/// A connected client and the namespace the command works in.
#[derive(Clone)]
pub struct Kube {
    /// The API client.
    pub client: Client,
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

/// Builds the client config from the global flags.
pub async fn config_from_args(args: &GlobalArgs) -> Result<Config> {
    let kubeconfig = load_kubeconfig(args)?;
    check_names(&kubeconfig, args)?;
    let options = KubeConfigOptions {
        context: args.context.clone(),
        cluster: args.cluster.clone(),
        user: args.user.clone(),
    };
    #[allow(clippy::disallowed_methods)] // the one sanctioned constructor
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|source| Error::Kubeconfig {
            path: args.kubeconfig.clone(),
            source,
        })?;
    if !args.request_timeout.is_zero() {
        config.connect_timeout = Some(args.request_timeout);
        config.read_timeout = Some(args.request_timeout);
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

/// Connects using the global flags and resolves the namespace.
pub async fn connect(args: &GlobalArgs) -> Result<Kube> {
    let config = config_from_args(args).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(Error::Client)?;
    Ok(Kube { client, namespace })
}

impl Kube {
    /// A namespaced API handle in the command's namespace.
    pub fn api<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        kube::Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// A namespaced API handle in another namespace.
    pub fn api_in<K>(&self, namespace: &str) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        kube::Api::namespaced(self.client.clone(), namespace)
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
