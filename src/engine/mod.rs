//! Database engines: what differs between PostgreSQL, MySQL and MariaDB — image, uid, port,
//! paths, configuration, and the commands run inside the container. Adding an engine means
//! adding a variant and a file here.

use std::collections::BTreeMap;

use serde::Serialize;

mod mysql;
mod postgres;

/// A supported database engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL (official `postgres` image contract)
    Postgres,
    /// MySQL (official `mysql` image contract)
    Mysql,
    /// MariaDB (official `mariadb` image contract)
    Mariadb,
}

/// Label that records the engine on everything dbdeploy creates.
pub const ENGINE_LABEL: &str = "app.kubernetes.io/name";

impl Engine {
    /// All engines, for help text and detection.
    pub const ALL: [Engine; 3] = [Engine::Postgres, Engine::Mysql, Engine::Mariadb];

    /// The name users type (`kubectl dbdeploy postgres`).
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
            Engine::Mariadb => "mariadb",
        }
    }

    /// Value of `app.kubernetes.io/name`.
    pub fn app_name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgresql",
            Engine::Mysql => "mysql",
            Engine::Mariadb => "mariadb",
        }
    }

    /// Parses an engine from its name or its `app.kubernetes.io/name` value.
    pub fn from_name(text: &str) -> Option<Engine> {
        match text.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" | "pg" => Some(Engine::Postgres),
            "mysql" => Some(Engine::Mysql),
            "mariadb" => Some(Engine::Mariadb),
            _ => None,
        }
    }

    /// The image the guide uses.
    pub fn default_image(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres:15-alpine",
            Engine::Mysql => "mysql:8.0",
            Engine::Mariadb => "mariadb:10.11",
        }
    }

    /// The server's TCP port.
    pub fn port(self) -> i32 {
        match self {
            Engine::Postgres => 5432,
            Engine::Mysql | Engine::Mariadb => 3306,
        }
    }

    /// Name of the port on Services and the container.
    pub fn port_name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql | Engine::Mariadb => "mysql",
        }
    }

    /// The database container's name.
    pub fn container_name(self) -> &'static str {
        self.as_str()
    }

    /// The uid the image's server runs as. The alpine postgres image uses 70, the Debian
    /// ones 999 (as do the mysql and mariadb images).
    pub fn uid(self, image: &str) -> i64 {
        match self {
            Engine::Postgres if image_tag(image).contains("alpine") => 70,
            _ => 999,
        }
    }

    /// Where the data volume is mounted.
    pub fn data_mount(self) -> &'static str {
        match self {
            Engine::Postgres => "/var/lib/postgresql/data",
            Engine::Mysql | Engine::Mariadb => "/var/lib/mysql",
        }
    }

    /// The data directory: a subdirectory of the volume, because a fresh volume's root may
    /// hold `lost+found`, which initdb and mysqld refuse to initialise over.
    pub fn data_dir(self) -> &'static str {
        match self {
            Engine::Postgres => "/var/lib/postgresql/data/pgdata",
            Engine::Mysql | Engine::Mariadb => "/var/lib/mysql/data",
        }
    }

    /// Directory the ConfigMap's config file is mounted in, and the file's name.
    pub fn config_path(self) -> (&'static str, &'static str) {
        match self {
            // Not /docker-entrypoint-initdb.d (only runs *.sh/*.sql) and not inside PGDATA:
            // the server is pointed at it with `-c config_file=`.
            Engine::Postgres => ("/etc/postgresql/kubectl-db", "postgresql.conf"),
            // The images read every *.cnf in conf.d.
            Engine::Mysql | Engine::Mariadb => ("/etc/mysql/conf.d", "kubectl-db.cnf"),
        }
    }

    /// Writable directories the image needs besides the data volume; emptyDirs, so the root
    /// file system can be read-only.
    pub fn scratch_dirs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Engine::Postgres => &[("run", "/var/run/postgresql"), ("tmp", "/tmp")],
            Engine::Mysql | Engine::Mariadb => &[("run", "/var/run/mysqld"), ("tmp", "/tmp")],
        }
    }

    /// Secret keys holding passwords, in the names the images read.
    pub fn password_keys(self) -> &'static [&'static str] {
        match self {
            Engine::Postgres => &["POSTGRES_PASSWORD"],
            Engine::Mysql | Engine::Mariadb => &["MYSQL_ROOT_PASSWORD", "MYSQL_PASSWORD"],
        }
    }

    /// Server arguments (the postgres image passes them to `postgres`).
    pub fn server_args(self) -> Vec<String> {
        match self {
            Engine::Postgres => postgres::server_args(),
            Engine::Mysql | Engine::Mariadb => Vec::new(),
        }
    }

    /// The server configuration file: defaults valid for this image, then `--set` overrides.
    pub fn config_file(self, image: &str, settings: &[(String, String)]) -> String {
        match self {
            Engine::Postgres => postgres::config_file(settings),
            Engine::Mysql | Engine::Mariadb => mysql::config_file(self, image, settings),
        }
    }

    /// Settings dbdeploy manages itself and `--set` may not change.
    pub fn reserved_settings(self) -> &'static [&'static str] {
        match self {
            Engine::Postgres => postgres::RESERVED,
            Engine::Mysql | Engine::Mariadb => mysql::RESERVED,
        }
    }

    /// Non-secret environment the ConfigMap carries (guide's keys).
    pub fn config_env(self, database: &str, user: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        match self {
            Engine::Postgres => {
                env.insert("POSTGRES_DB".into(), database.into());
                env.insert("POSTGRES_USER".into(), user.into());
                env.insert("PGDATA".into(), self.data_dir().into());
            }
            Engine::Mysql | Engine::Mariadb => {
                env.insert("MYSQL_DATABASE".into(), database.into());
                env.insert("MYSQL_USER".into(), user.into());
            }
        }
        env
    }

    /// Readiness: a real query over TCP (the images' init-time server listens only on
    /// the socket, so this cannot pass before initialisation ends).
    pub fn readiness_script(self) -> String {
        match self {
            Engine::Postgres => postgres::READINESS.into(),
            Engine::Mysql | Engine::Mariadb => mysql::READINESS.into(),
        }
    }

    /// Liveness and start-up: is the server process answering at all.
    pub fn liveness_script(self) -> String {
        match self {
            Engine::Postgres => postgres::LIVENESS.into(),
            Engine::Mysql | Engine::Mariadb => mysql::LIVENESS.into(),
        }
    }

    /// preStop hook, where the image's stop signal is not already a clean, fast shutdown.
    pub fn pre_stop_script(self) -> Option<&'static str> {
        match self {
            // SIGTERM is a "smart" shutdown that waits for every client to leave.
            Engine::Postgres => Some(postgres::PRE_STOP),
            // SIGTERM already makes mysqld shut down cleanly.
            Engine::Mysql | Engine::Mariadb => None,
        }
    }

    /// A shell script that runs the SQL given on stdin as the admin user and prints rows
    /// tab-separated with no headers. Passwords come from the container's environment.
    pub fn sql_script(self) -> &'static str {
        match self {
            Engine::Postgres => postgres::SQL_STDIN,
            Engine::Mysql | Engine::Mariadb => mysql::SQL_STDIN,
        }
    }

    /// SQL that returns the server version.
    pub fn version_sql(self) -> &'static str {
        match self {
            Engine::Postgres => "SELECT version();",
            Engine::Mysql | Engine::Mariadb => "SELECT VERSION();",
        }
    }

    /// SQL that lists databases, one per row.
    pub fn list_databases_sql(self) -> &'static str {
        match self {
            Engine::Postgres => {
                "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname;"
            }
            Engine::Mysql | Engine::Mariadb => "SHOW DATABASES;",
        }
    }

    /// Guesses the engine of a pod deployed by hand: from the image name, else the port.
    pub fn detect(image: &str, ports: &[i32]) -> Option<Engine> {
        let repo = image_repository(image);
        let last = repo.rsplit('/').next().unwrap_or(repo);
        if last.contains("postgres") || last.contains("postgis") {
            return Some(Engine::Postgres);
        }
        if last.contains("mariadb") {
            return Some(Engine::Mariadb);
        }
        if last.contains("mysql") || last.contains("percona") {
            return Some(Engine::Mysql);
        }
        if ports.contains(&5432) {
            return Some(Engine::Postgres);
        }
        if ports.contains(&3306) {
            return Some(Engine::Mysql);
        }
        None
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The image name without tag or digest.
pub fn image_repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    }
}

/// The image tag (`latest` when none is given).
pub fn image_tag(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[colon + 1..],
        _ => "latest",
    }
}

/// Leading `major.minor` of an image tag, e.g. `8.4` from `8.4.2-oracle`.
pub fn tag_version(image: &str) -> Option<(u32, u32)> {
    let tag = image_tag(image);
    let mut parts = tag.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_parts() {
        assert_eq!(image_tag("postgres:15-alpine"), "15-alpine");
        assert_eq!(
            image_repository("localhost:5000/kdb/postgres:15"),
            "localhost:5000/kdb/postgres"
        );
        assert_eq!(image_tag("localhost:5000/kdb/postgres"), "latest");
        assert_eq!(tag_version("mysql:8.4.2"), Some((8, 4)));
        assert_eq!(tag_version("mysql:latest"), None);
    }

    #[test]
    fn alpine_postgres_runs_as_70_and_debian_as_999() {
        assert_eq!(Engine::Postgres.uid("postgres:15-alpine"), 70);
        assert_eq!(Engine::Postgres.uid("postgres:15"), 999);
        assert_eq!(Engine::Mysql.uid("mysql:8.0"), 999);
    }

    #[test]
    fn detection_from_image_then_port() {
        assert_eq!(
            Engine::detect("docker.io/library/mysql:8.0", &[]),
            Some(Engine::Mysql)
        );
        assert_eq!(
            Engine::detect("bitnami/postgresql:16", &[]),
            Some(Engine::Postgres)
        );
        assert_eq!(Engine::detect("mariadb:11", &[3306]), Some(Engine::Mariadb));
        assert_eq!(
            Engine::detect("example.com/db:1", &[5432]),
            Some(Engine::Postgres)
        );
        assert_eq!(
            Engine::detect("example.com/db:1", &[3306]),
            Some(Engine::Mysql)
        );
        assert_eq!(Engine::detect("nginx:1", &[80]), None);
    }
}
