//! `kubectl dbdeploy credentials NAME`: how to reach a database from inside the cluster —
//! host names, port, user, database, the Secret key holding the password, a connection
//! URI — read from the StatefulSet's own container environment, so it says what the
//! server was started with. The password is read (and printed) only when asked for.

use std::collections::BTreeMap;
use std::fmt::Write;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Secret};
use kube::{Api, ResourceExt};
use serde::Serialize;

use crate::client::Kube;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::output::{Render, Width};
use crate::render::Names;
use crate::target;

/// Where a password is kept: a Secret's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SecretKey {
    pub name: String,
    pub key: String,
}

/// How to connect to one database; the `-o json` schema (docs/dbdeploy.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Credentials {
    pub name: String,
    pub namespace: String,
    pub engine: Engine,
    /// The Service's in-cluster DNS name (load-balanced over ready pods).
    pub host: String,
    /// Each pod's stable DNS name, through the headless Service.
    pub pods: Vec<String>,
    pub port: i32,
    pub user: String,
    pub database: String,
    /// The Secret key holding the password, when the container reads it from one.
    pub password_secret: Option<SecretKey>,
    /// Only with `--show-password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A connection URI; it carries the password only with `--show-password`.
    pub uri: String,
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Literal(String),
    ConfigMap { name: String, key: String },
    Secret(SecretKey),
}

/// The source of `var` in a container's `env` (not `envFrom`: dbdeploy names each key).
fn source_of(env: &[EnvVar], var: &str) -> Option<Source> {
    let entry = env.iter().find(|e| e.name == var)?;
    if let Some(value) = &entry.value {
        return Some(Source::Literal(value.clone()));
    }
    let from = entry.value_from.as_ref()?;
    if let Some(r) = &from.config_map_key_ref {
        return Some(Source::ConfigMap {
            name: r.name.clone(),
            key: r.key.clone(),
        });
    }
    from.secret_key_ref.as_ref().map(|r| {
        Source::Secret(SecretKey {
            name: r.name.clone(),
            key: r.key.clone(),
        })
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters, which is valid in
/// every part of a URI (user, password, path).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// `scheme://user[:password]@host:port/database`.
pub fn uri(
    engine: Engine,
    user: &str,
    password: Option<&str>,
    host: &str,
    port: i32,
    database: &str,
) -> String {
    let password = password
        .map(|p| format!(":{}", percent_encode(p)))
        .unwrap_or_default();
    format!(
        "{}://{}{password}@{host}:{port}/{}",
        engine.uri_scheme(),
        percent_encode(user),
        percent_encode(database)
    )
}

/// Reads the values the container's environment takes from ConfigMaps and Secrets, each
/// object once.
struct Resolver<'a> {
    kube: &'a Kube,
    config_maps: BTreeMap<String, Option<ConfigMap>>,
    secrets: BTreeMap<String, Option<Secret>>,
}

impl Resolver<'_> {
    async fn value(&mut self, source: &Source) -> Result<Option<String>> {
        let ns = &self.kube.namespace;
        Ok(match source {
            Source::Literal(value) => Some(value.clone()),
            Source::ConfigMap { name, key } => {
                if !self.config_maps.contains_key(name) {
                    let api: Api<ConfigMap> = self.kube.api();
                    let object = api
                        .get_opt(name)
                        .await
                        .map_err(Error::api(format!("read ConfigMap {ns}/{name}")))?;
                    self.config_maps.insert(name.clone(), object);
                }
                self.config_maps
                    .get(name)
                    .and_then(Option::as_ref)
                    .and_then(|c| c.data.as_ref())
                    .and_then(|d| d.get(key).cloned())
            }
            Source::Secret(SecretKey { name, key }) => {
                if !self.secrets.contains_key(name) {
                    let api: Api<Secret> = self.kube.api();
                    let object = api
                        .get_opt(name)
                        .await
                        .map_err(Error::api(format!("read Secret {ns}/{name}")))?;
                    self.secrets.insert(name.clone(), object);
                }
                self.secrets
                    .get(name)
                    .and_then(Option::as_ref)
                    .and_then(|s| s.data.as_ref())
                    .and_then(|d| d.get(key))
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            }
        })
    }
}

/// The connection details of StatefulSet `name`: the application user's, or the
/// superuser's with `admin`. The Secret holding the password is read only when
/// `show_password` (or when the user name itself lives in a Secret).
pub async fn read(
    kube: &Kube,
    name: &str,
    admin: bool,
    show_password: bool,
) -> Result<Credentials> {
    let ns = kube.namespace.clone();
    let api: Api<StatefulSet> = kube.api();
    let sts = api
        .get_opt(name)
        .await
        .map_err(Error::api(format!("read StatefulSet {ns}/{name}")))?
        .ok_or_else(|| Error::NotFound(format!("no StatefulSet {name} in namespace {ns}")))?;
    let (engine, container_name) = target::statefulset_engine(&sts).ok_or_else(|| {
        Error::NotFound(format!(
            "StatefulSet {ns}/{name} does not look like PostgreSQL, MySQL or MariaDB"
        ))
    })?;
    let spec = sts.spec.as_ref();
    let container: Option<&Container> = spec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == container_name));
    let env = container.and_then(|c| c.env.as_deref()).unwrap_or_default();
    let login = engine.login(admin);
    let mut resolver = Resolver {
        kube,
        config_maps: BTreeMap::new(),
        secrets: BTreeMap::new(),
    };
    let user = match login.user_var.and_then(|v| source_of(env, v)) {
        Some(source) => resolver.value(&source).await?,
        None => None,
    }
    .unwrap_or_else(|| login.default_user.to_string());
    let database = match source_of(env, login.database_var) {
        Some(source) => resolver.value(&source).await?,
        None => None,
    }
    .unwrap_or_else(|| default_database(engine, &user));
    let password_source = source_of(env, login.password_var);
    let password = match &password_source {
        Some(source) if show_password => resolver.value(source).await?,
        _ => None,
    };
    let port = container
        .and_then(|c| c.ports.as_ref())
        .and_then(|ports| ports.first())
        .map_or(engine.port(), |p| p.container_port);
    let headless = spec
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| Names::of(name).headless_service);
    Ok(details(
        &sts,
        engine,
        &headless,
        port,
        Details {
            user,
            database,
            password_secret: match password_source {
                Some(Source::Secret(key)) => Some(key),
                _ => None,
            },
            password,
        },
    ))
}

/// What was read from the container's environment.
struct Details {
    user: String,
    database: String,
    password_secret: Option<SecretKey>,
    password: Option<String>,
}

fn details(
    sts: &StatefulSet,
    engine: Engine,
    headless: &str,
    port: i32,
    d: Details,
) -> Credentials {
    let name = sts.name_any();
    let ns = sts.namespace().unwrap_or_default();
    let host = format!("{}.{ns}.svc", Names::of(&name).service);
    let pods = target::statefulset_pods(sts)
        .into_iter()
        .map(|pod| format!("{pod}.{headless}.{ns}.svc"))
        .collect();
    Credentials {
        uri: uri(
            engine,
            &d.user,
            d.password.as_deref(),
            &host,
            port,
            &d.database,
        ),
        name,
        namespace: ns,
        engine,
        host,
        pods,
        port,
        user: d.user,
        database: d.database,
        password_secret: d.password_secret,
        password: d.password,
    }
}

/// The database a login lands in when none is configured.
fn default_database(engine: Engine, user: &str) -> String {
    match engine {
        // The postgres image's POSTGRES_DB defaults to the user's name.
        Engine::Postgres => user.to_string(),
        Engine::Mysql | Engine::Mariadb => String::new(),
    }
}

impl Render for Credentials {
    fn render(&self, _width: Width) -> String {
        let mut text = String::new();
        let mut line = |label: &str, value: &str| {
            let _ = writeln!(text, "{:<10}{value}", format!("{label}:"));
        };
        line(
            "Name",
            &format!("{}/{} ({})", self.namespace, self.name, self.engine),
        );
        line("Host", &format!("{} (Service, in-cluster)", self.host));
        for pod in &self.pods {
            line("Pod", pod);
        }
        line("Port", &self.port.to_string());
        line("User", &self.user);
        line("Database", &self.database);
        let password = match (&self.password, &self.password_secret) {
            (Some(password), _) => password.clone(),
            (None, Some(SecretKey { name, key })) => {
                format!("in Secret {name}, key {key} (--show-password prints it)")
            }
            (None, None) => "(--show-password prints it)".into(),
        };
        line("Password", &password);
        line("URI", &self.uri);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(engine: Engine, password: Option<&str>) -> Credentials {
        let host = "orders.shop.svc".to_string();
        Credentials {
            name: "orders".into(),
            namespace: "shop".into(),
            engine,
            pods: vec!["orders-0.orders-headless.shop.svc".into()],
            port: engine.port(),
            user: "appuser".into(),
            database: "appdb".into(),
            password_secret: Some(SecretKey {
                name: "orders-secret".into(),
                key: engine.login(false).password_var.into(),
            }),
            password: password.map(str::to_string),
            uri: uri(engine, "appuser", password, &host, engine.port(), "appdb"),
            host,
        }
    }

    #[test]
    fn uris_percent_encode_user_password_and_database() {
        assert_eq!(
            uri(
                Engine::Postgres,
                "app user",
                Some("p@ss:w/rd%?#"),
                "h",
                5432,
                "my db"
            ),
            "postgresql://app%20user:p%40ss%3Aw%2Frd%25%3F%23@h:5432/my%20db"
        );
        assert_eq!(
            uri(Engine::Mariadb, "root", None, "db.ns.svc", 3306, "appdb"),
            "mysql://root@db.ns.svc:3306/appdb"
        );
        assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn the_password_shows_only_when_read() {
        insta::assert_snapshot!(
            "credentials_hidden",
            credentials(Engine::Postgres, None).render(Width(100))
        );
        insta::assert_snapshot!(
            "credentials_shown",
            credentials(Engine::Mysql, Some("s3cr:t")).render(Width(100))
        );
        let json = serde_json::to_value(credentials(Engine::Postgres, None)).unwrap();
        assert!(json.get("password").is_none(), "{json}");
        assert_eq!(json["password_secret"]["key"], "POSTGRES_PASSWORD");
    }

    #[test]
    fn env_values_come_from_literals_config_maps_and_secrets() {
        let env: Vec<EnvVar> = serde_json::from_value(serde_json::json!([
            {"name": "POSTGRES_USER", "valueFrom": {"configMapKeyRef": {"name": "pg-config", "key": "POSTGRES_USER"}}},
            {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "pg-secret", "key": "POSTGRES_PASSWORD"}}},
            {"name": "POSTGRES_DB", "value": "shop"}
        ]))
        .unwrap();
        assert_eq!(
            source_of(&env, "POSTGRES_USER"),
            Some(Source::ConfigMap {
                name: "pg-config".into(),
                key: "POSTGRES_USER".into()
            })
        );
        assert_eq!(
            source_of(&env, "POSTGRES_PASSWORD"),
            Some(Source::Secret(SecretKey {
                name: "pg-secret".into(),
                key: "POSTGRES_PASSWORD".into()
            }))
        );
        assert_eq!(
            source_of(&env, "POSTGRES_DB"),
            Some(Source::Literal("shop".into()))
        );
        assert_eq!(source_of(&env, "PGDATA"), None);
    }
}
