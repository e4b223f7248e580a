//! Database engines: what differs between PostgreSQL, MySQL and MariaDB — image, uid, port,
//! paths, configuration, and the commands run inside the container ([`Commands`]). Adding
//! an engine means adding a variant and a file here that implements [`Commands`].

use std::collections::BTreeMap;

use serde::Serialize;

pub mod catalogue;
pub mod commands;
#[cfg(test)]
mod commands_tests;
pub mod marker;
mod mysql;
mod postgres;

pub use commands::{Commands, Query, RowHash};

/// A supported database engine.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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

    /// Who a client logs in as: the application user, or with `admin` the superuser, by
    /// the names of the container's environment the images read.
    pub fn login(self, admin: bool) -> Login {
        match (self, admin) {
            // The image makes POSTGRES_USER the superuser: one role for both.
            (Engine::Postgres, _) => Login {
                user_var: Some("POSTGRES_USER"),
                default_user: "postgres",
                password_var: "POSTGRES_PASSWORD",
                database_var: "POSTGRES_DB",
            },
            (Engine::Mysql | Engine::Mariadb, false) => Login {
                user_var: Some("MYSQL_USER"),
                default_user: "",
                password_var: "MYSQL_PASSWORD",
                database_var: "MYSQL_DATABASE",
            },
            (Engine::Mysql | Engine::Mariadb, true) => Login {
                user_var: None,
                default_user: "root",
                password_var: "MYSQL_ROOT_PASSWORD",
                database_var: "MYSQL_DATABASE",
            },
        }
    }

    /// The scheme of a connection URI (`postgresql://`, `mysql://`).
    pub fn uri_scheme(self) -> &'static str {
        match self {
            Engine::Postgres => "postgresql",
            Engine::Mysql | Engine::Mariadb => "mysql",
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

    /// Everything this engine runs inside its container, and how the output is read.
    pub fn commands(self) -> &'static dyn Commands {
        match self {
            Engine::Postgres => &postgres::Postgres,
            Engine::Mysql => &mysql::MYSQL,
            Engine::Mariadb => &mysql::MARIADB,
        }
    }

    /// The script that runs SQL on stdin as the admin user ([`Commands::sql_script`]).
    pub fn sql_script(self) -> &'static str {
        self.commands().sql_script()
    }

    /// SQL that lists databases, one per row ([`Commands::list_databases_sql`]).
    pub fn list_databases_sql(self) -> &'static str {
        self.commands().list_databases_sql()
    }

    /// How the client tools in another pod (a scheduled backup's) reach this engine's
    /// server at `host`: environment for the tools, and a script run before them. libpq
    /// reads PGHOST/PGPORT; MariaDB's clients ignore MYSQL_HOST and take the host only from
    /// an option file, so one is written to `$HOME/.my.cnf` (HOME on a scratch directory).
    pub fn remote_client(self, host: &str) -> (Vec<(&'static str, String)>, &'static str) {
        let port = self.port().to_string();
        match self {
            Engine::Postgres => (vec![("PGHOST", host.into()), ("PGPORT", port)], ":"),
            Engine::Mysql | Engine::Mariadb => (
                vec![
                    ("HOME", "/tmp".into()),
                    ("KDB_DB_HOST", host.into()),
                    ("KDB_DB_PORT", port),
                ],
                r#"umask 077; printf '[client]\nhost=%s\nport=%s\nprotocol=tcp\n' "$KDB_DB_HOST" "$KDB_DB_PORT" > "$HOME/.my.cnf""#,
            ),
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

/// A login by the names of the container's environment variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Login {
    /// The variable naming the user; `None`: always [`Login::default_user`].
    pub user_var: Option<&'static str>,
    /// The user when the variable is unset.
    pub default_user: &'static str,
    /// The variable holding the password.
    pub password_var: &'static str,
    /// The variable naming the database (unset: PostgreSQL's is the user's name).
    pub database_var: &'static str,
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

/// A version: the major number, and the minor when known (`postgres:15` has none).
pub type Version = (u32, Option<u32>);

fn leading_version(text: &str) -> Option<Version> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = text
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .strip_prefix('.')
        .and_then(|rest| parts.next().filter(|_| !rest.is_empty()))
        .and_then(|m| m.parse().ok());
    Some((major, minor))
}

/// The version an image's tag names (`15-alpine` → 15, `10.11.9` → 10.11); `None` for
/// `latest`, a digest alone, or a name.
pub fn image_version(image: &str) -> Option<Version> {
    leading_version(image_tag(image))
}

/// The version in a server's answer to the version query (`PostgreSQL 15.14 (Debian...)`,
/// `10.11.9-MariaDB-ubu2204`, `8.0.36`).
pub fn server_version(text: &str) -> Option<Version> {
    text.split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))
        .and_then(leading_version)
}

impl Engine {
    /// The product's name in messages.
    pub fn product(self) -> &'static str {
        match self {
            Engine::Postgres => "PostgreSQL",
            Engine::Mysql => "MySQL",
            Engine::Mariadb => "MariaDB",
        }
    }

    /// Whether a server of version `new` can take over the data directory of `old`:
    /// `Err` says why not. PostgreSQL's data directory opens only in its major version (15;
    /// 9.6 before 10); MySQL and MariaDB upgrade it within a major version but cannot
    /// downgrade it, and a change of major needs a dump and restore.
    pub fn version_change(self, old: Version, new: Version) -> Result<(), String> {
        let show = |(major, minor): Version| match minor {
            Some(minor) => format!("{} {major}.{minor}", self.product()),
            None => format!("{} {major}", self.product()),
        };
        let line = |v: Version| match self {
            Engine::Postgres if v.0 < 10 => (v.0, v.1),
            _ => (v.0, None),
        };
        if line(old) != line(new) {
            return Err(format!(
                "{} to {} is a major version change",
                show(old),
                show(new)
            ));
        }
        if self != Engine::Postgres
            && let (Some(old_minor), Some(new_minor)) = (old.1, new.1)
            && new_minor < old_minor
        {
            return Err(format!(
                "{} to {} is a downgrade, which the server cannot do on existing data",
                show(old),
                show(new)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_tags_and_servers() {
        assert_eq!(image_version("postgres:15-alpine"), Some((15, None)));
        assert_eq!(image_version("localhost/kdb/postgres:15"), Some((15, None)));
        assert_eq!(image_version("mariadb:10.11.9"), Some((10, Some(11))));
        assert_eq!(image_version("mysql:8.0"), Some((8, Some(0))));
        assert_eq!(image_version("postgres:9.6"), Some((9, Some(6))));
        assert_eq!(image_version("postgres"), None);
        assert_eq!(image_version("postgres:latest"), None);
        assert_eq!(
            server_version("PostgreSQL 15.14 (Debian 15.14-1.pgdg120+1) on x86_64-pc-linux-gnu"),
            Some((15, Some(14)))
        );
        assert_eq!(
            server_version("10.11.9-MariaDB-ubu2204"),
            Some((10, Some(11)))
        );
        assert_eq!(server_version("8.0.36"), Some((8, Some(0))));
        assert_eq!(server_version(""), None);
    }

    #[test]
    fn only_compatible_versions_may_take_over_the_data() {
        let pg = Engine::Postgres;
        assert!(pg.version_change((15, Some(14)), (15, None)).is_ok());
        assert!(
            pg.version_change((15, Some(14)), (15, Some(4))).is_ok(),
            "minor downgrade"
        );
        let err = pg.version_change((15, Some(14)), (16, None)).unwrap_err();
        assert_eq!(
            err,
            "PostgreSQL 15.14 to PostgreSQL 16 is a major version change"
        );
        assert!(
            pg.version_change((9, Some(6)), (9, Some(5))).is_err(),
            "9.x majors"
        );
        let maria = Engine::Mariadb;
        assert!(maria.version_change((10, Some(6)), (10, Some(11))).is_ok());
        assert!(maria.version_change((10, Some(11)), (10, None)).is_ok());
        assert!(maria.version_change((10, Some(11)), (11, Some(4))).is_err());
        let err = maria
            .version_change((10, Some(11)), (10, Some(6)))
            .unwrap_err();
        assert!(err.contains("downgrade"), "{err}");
        assert!(
            Engine::Mysql
                .version_change((8, Some(0)), (8, Some(4)))
                .is_ok()
        );
        assert!(
            Engine::Mysql
                .version_change((5, Some(7)), (8, Some(0)))
                .is_err()
        );
    }

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
