//! `restore`: checks a backup file before anything is sent (checksum, trailer, engine),
//! refuses to write over user data without `--yes`, then streams the decompressed SQL
//! into psql / mysql over exec stdin and reports the remote exit status.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::dump::read_capped;
use super::format::DumpKind;
use super::pg_filter::{self, PgRestoreFilter};
use super::shell_quote;
use super::verify::{self, VerifyReport};
use crate::client::Kube;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::exec::{self, ExecStatus};
use crate::output::Progress;
use crate::target;
use crate::wait::{self, within};

const CHUNK: usize = 256 << 10;
const CHANNEL_DEPTH: usize = 8;

/// What to restore where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Pod or StatefulSet name.
    pub target: String,
    /// The backup file.
    pub file: PathBuf,
    /// Restore even though the target already holds user data.
    pub yes: bool,
    /// Time limit for the whole restore.
    pub timeout: Duration,
    /// Draw live progress on stderr.
    pub progress: bool,
}

/// What a restore did (the `-o json` schema).
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub file: String,
    pub namespace: String,
    pub pod: String,
    pub engine: Engine,
    /// Tool that wrote the dump.
    pub kind: DumpKind,
    /// Databases that held tables before the restore (replaced where the file has them).
    pub databases_with_data: Vec<String>,
    /// SQL bytes sent to the pod.
    pub bytes_sent: u64,
    pub duration_seconds: f64,
    /// Remote exit status of psql / mysql.
    pub remote_status: ExecStatus,
}

/// Verifies the file and returns its dump kind, or the reason it must not be restored.
pub fn check_file(file: &std::path::Path) -> Result<(VerifyReport, DumpKind)> {
    if !file.is_file() {
        return Err(Error::Usage(format!("{} is not a file", file.display())));
    }
    let report = verify::verify(file)?;
    match report.kind {
        Some(kind) if report.ok => Ok((report, kind)),
        _ => Err(Error::Failed(format!(
            "refusing to restore {}: {}",
            file.display(),
            report.problems.join("; ")
        ))),
    }
}

/// psql lines run after the dump, in the same session: the target's own role gets back
/// the password its container (its Secret) has, so a dump of another deployment, or an
/// old one that carries role passwords, cannot lock the target out. The password goes
/// from the environment into a psql variable (a backtick runs `printf`, a shell builtin
/// in the shell psql starts) and from there to the server: never on a command line. The
/// statement is kept out of the server log where the session may do so (superuser).
const PG_CREDENTIALS: &[&str] = &[
    r#"\set kdb_user `printf %s "${POSTGRES_USER:-postgres}"`"#,
    r#"\set kdb_pw `printf %s "$POSTGRES_PASSWORD"`"#,
    "SELECT rolsuper AS kdb_super FROM pg_catalog.pg_roles WHERE rolname = current_user \\gset",
    "\\if :kdb_super",
    "SET log_statement = 'none';",
    "SET log_min_duration_statement = -1;",
    "SET log_min_error_statement = 'panic';",
    "\\endif",
    "ALTER ROLE :\"kdb_user\" WITH PASSWORD :'kdb_pw';",
    "\\unset kdb_pw",
];

/// Shell functions that print the SQL re-asserting a MySQL/MariaDB target's accounts from
/// its container's environment, as the images' entrypoints set them up (root@localhost,
/// root@%, MYSQL_USER@% with all rights on MYSQL_DATABASE). Built with shell builtins only
/// (`printf`, parameter expansion), so no password reaches a command line. `FLUSH
/// PRIVILEGES` first loads grant tables the dump may have replaced.
const MYSQL_CREDENTIALS: &str = r#"for v in ROOT_PASSWORD USER PASSWORD DATABASE; do eval "[ -n \"\${MYSQL_$v:-}\" ] || MYSQL_$v=\"\${MARIADB_$v:-}\""; done
kdb_q() {
  s=$1 q=
  while [ -n "$s" ]; do
    r=${s#?}; k=${s%"$r"}; s=$r
    case $k in
      \\) q="$q\\\\" ;;
      \') q="$q''" ;;
      *) q="$q$k" ;;
    esac
  done
}
kdb_id() {
  s=$1 q=
  while [ -n "$s" ]; do
    r=${s#?}; k=${s%"$r"}; s=$r
    case $k in
      \`) q="$q\`\`" ;;
      *) q="$q$k" ;;
    esac
  done
}
kdb_credentials() {
  printf '%s\n' "SET SESSION sql_mode = '';" 'FLUSH PRIVILEGES;'
  if [ -n "${MYSQL_ROOT_PASSWORD:-}" ]; then
    kdb_q "$MYSQL_ROOT_PASSWORD"
    printf '%s\n' "ALTER USER IF EXISTS 'root'@'localhost' IDENTIFIED BY '$q';" "ALTER USER IF EXISTS 'root'@'%' IDENTIFIED BY '$q';"
  fi
  if [ -n "${MYSQL_USER:-}" ] && [ -n "${MYSQL_PASSWORD:-}" ] && [ "$MYSQL_USER" != root ]; then
    kdb_q "$MYSQL_USER"; u=$q
    kdb_q "$MYSQL_PASSWORD"
    printf '%s\n' "CREATE USER IF NOT EXISTS '$u'@'%' IDENTIFIED BY '$q';" "ALTER USER '$u'@'%' IDENTIFIED BY '$q';"
    if [ -n "${MYSQL_DATABASE:-}" ]; then
      kdb_id "$MYSQL_DATABASE"
      printf '%s\n' "GRANT ALL ON \`$q\`.* TO '$u'@'%';"
    fi
  fi
  printf '%s\n' 'FLUSH PRIVILEGES;'
}
"#;

/// The script that reads SQL on stdin, then re-asserts the target's own credentials in
/// the same session (see [`PG_CREDENTIALS`], [`MYSQL_CREDENTIALS`]). psql stops at the
/// first error; mysql does by default. The exit status is psql's / mysql's.
pub fn restore_script(engine: Engine) -> String {
    match engine {
        // -d postgres: the file drops and re-creates the databases it contains, so the
        // session must not sit in one of them.
        Engine::Postgres => {
            let lines: Vec<String> = PG_CREDENTIALS.iter().map(|l| shell_quote(l)).collect();
            format!(
                r#"PGPASSWORD="${{POSTGRES_PASSWORD:-}}"; export PGPASSWORD
{{ cat; if [ -n "${{POSTGRES_PASSWORD:-}}" ]; then printf '%s\n' {}; fi; }} | psql -X -q -w -v ON_ERROR_STOP=1 -U "${{POSTGRES_USER:-postgres}}" -d postgres"#,
                lines.join(" ")
            )
        }
        Engine::Mysql | Engine::Mariadb => format!(
            r#"{MYSQL_CREDENTIALS}MYSQL_PWD="${{MYSQL_ROOT_PASSWORD:-}}"; export MYSQL_PWD; if command -v mariadb >/dev/null 2>&1; then c=mariadb; else c=mysql; fi
{{ cat; kdb_credentials; }} | "$c" -uroot --default-character-set=utf8mb4 --binary-mode"#
        ),
    }
}

/// Re-asserts the target's credentials in a session of its own: after a restore that
/// stopped at an error, whose session ended before its own re-assertion ran. The local
/// socket still lets the target's own user in (PostgreSQL images trust it; MySQL/MariaDB
/// keep the accounts in force until a `FLUSH PRIVILEGES`).
pub fn credentials_script(engine: Engine) -> String {
    match engine {
        Engine::Postgres => {
            let lines: Vec<String> = PG_CREDENTIALS.iter().map(|l| shell_quote(l)).collect();
            format!(
                r#"PGPASSWORD="${{POSTGRES_PASSWORD:-}}"; export PGPASSWORD; [ -n "$PGPASSWORD" ] || exit 0
printf '%s\n' {} | psql -X -q -w -v ON_ERROR_STOP=1 -U "${{POSTGRES_USER:-postgres}}" -d postgres"#,
                lines.join(" ")
            )
        }
        Engine::Mysql | Engine::Mariadb => format!(
            r#"{MYSQL_CREDENTIALS}MYSQL_PWD="${{MYSQL_ROOT_PASSWORD:-}}"; export MYSQL_PWD; if command -v mariadb >/dev/null 2>&1; then c=mariadb; else c=mysql; fi
kdb_credentials | "$c" -uroot"#
        ),
    }
}

/// Lists what a restore could overwrite. PostgreSQL: databases holding at least one table,
/// one per line (the `postgres` database too: a pg_dumpall file restores into it).
/// MySQL/MariaDB: `database NAME` lines, `account USER@HOST` lines (the `mysql` schema an
/// `--all-databases` dump replaces) and `self USER` (the container's MYSQL_USER).
pub fn user_data_script(engine: Engine) -> String {
    match engine {
        Engine::Postgres => r#"export PGPASSWORD="${POSTGRES_PASSWORD:-}"; u="${POSTGRES_USER:-postgres}"
dbs=$(psql -X -w -tA -U "$u" -d postgres -c "SELECT datname FROM pg_database WHERE datallowconn AND datname NOT IN ('template0','template1') ORDER BY 1") || exit 1
printf '%s\n' "$dbs" | while IFS= read -r db; do
  [ -n "$db" ] || continue
  n=$(psql -X -w -tA -U "$u" -d "$db" -c "SELECT count(*) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE c.relkind IN ('r','p','v','m','f') AND s.nspname NOT IN ('pg_catalog','information_schema') AND s.nspname NOT LIKE 'pg_toast%'") || exit 1
  if [ "$n" -gt 0 ]; then echo "$db"; fi
done"#
            .to_string(),
        Engine::Mysql | Engine::Mariadb => format!(
            r#"{{ echo "SELECT DISTINCT CONCAT('database ', table_schema) FROM information_schema.tables WHERE table_schema NOT IN ('mysql','information_schema','performance_schema','sys');"; echo "SELECT CONCAT('account ', user, '@', host) FROM mysql.user;"; }} | {} || exit 1
printf 'self %s\n' "${{MYSQL_USER:-${{MARIADB_USER:-}}}}""#,
            engine.sql_script()
        ),
    }
}

/// Accounts every MySQL/MariaDB image creates itself.
const DEFAULT_ACCOUNTS: &[&str] = &[
    "",
    "root",
    "mysql",
    "mariadb.sys",
    "PUBLIC",
    "healthcheck",
    "mysql.sys",
    "mysql.session",
    "mysql.infoschema",
];

/// What a restore would write over, from [`user_data_script`]'s output: databases with
/// tables, and for a MySQL dump that carries the `mysql` schema, `mysql` when the target
/// has accounts of its own (other than the images' and its MYSQL_USER, which the restore
/// re-creates).
pub fn with_data(engine: Engine, listing: &str, dump_has_mysql_schema: bool) -> Vec<String> {
    let lines = listing.lines().map(str::trim_end).filter(|l| !l.is_empty());
    if engine == Engine::Postgres {
        return lines.map(String::from).collect();
    }
    let mut databases = Vec::new();
    let mut accounts = Vec::new();
    let mut own = "";
    for line in lines {
        if let Some(db) = line.strip_prefix("database ") {
            databases.push(db.to_string());
        } else if let Some(account) = line.strip_prefix("account ") {
            accounts.push(account);
        } else if let Some(user) = line.strip_prefix("self ") {
            own = user;
        }
    }
    let mut extra: Vec<&str> = accounts
        .into_iter()
        .filter(|a| {
            let user = a.rsplit_once('@').map_or(*a, |(u, _)| u);
            !DEFAULT_ACCOUNTS.contains(&user) && user != own
        })
        .collect();
    extra.sort_unstable();
    if dump_has_mysql_schema && !extra.is_empty() {
        databases.push(format!("mysql (accounts {})", extra.join(", ")));
    }
    databases
}

/// Whether a MySQL/MariaDB dump carries the `mysql` system schema (users and grants), by
/// its `USE \`mysql\`;` line; one bounded pass over the file.
pub fn carries_mysql_schema(file: &std::path::Path) -> Result<bool> {
    const NEEDLE: &[u8] = b"\nUSE `mysql`;\n";
    let mut sql = verify::open_sql(file)?;
    let mut window = Vec::with_capacity(CHUNK + NEEDLE.len());
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match sql.read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(Error::Io {
                    action: "read",
                    path: file.display().to_string(),
                    source,
                });
            }
        };
        window.extend_from_slice(&buf[..n]);
        if window.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
            return Ok(true);
        }
        let keep = window.len().saturating_sub(NEEDLE.len() - 1);
        window.drain(..keep);
    }
}

/// Restores a file already checked with [`check_file`].
pub async fn restore(
    kube: &Kube,
    options: &RestoreOptions,
    kind: DumpKind,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let target = target::resolve(kube, &options.target).await?;
    let pod = target.pod_name.clone();
    if target.pod.is_none() {
        return Err(Error::NotFound(format!(
            "pod {}/{pod} does not exist",
            target.namespace
        )));
    }
    if !kind.fits(target.engine) {
        return Err(Error::Refused(format!(
            "refusing to restore {}: it is a {} dump and pod {}/{pod} runs {}",
            options.file.display(),
            kind.engine_name(),
            target.namespace,
            target.engine
        )));
    }
    let has_mysql_schema = match kind {
        DumpKind::Mysql => {
            let file = options.file.clone();
            tokio::task::spawn_blocking(move || carries_mysql_schema(&file))
                .await
                .map_err(|err| Error::Failed(format!("failed to read the backup file: {err}")))??
        }
        _ => false,
    };
    let pods: Api<Pod> = kube.exec_pods();
    let listed = exec::shell(
        &pods,
        &pod,
        Some(&target.container),
        &user_data_script(target.engine),
        Duration::from_secs(60),
    )
    .await?
    .into_stdout(&pod, "the user-data query")?;
    let with_data = with_data(target.engine, &listed, has_mysql_schema);
    if !with_data.is_empty() && !options.yes {
        return Err(Error::Refused(format!(
            "refusing to restore into pod {}/{pod}: it already holds data in {}; pass --yes to replace the databases the file contains",
            target.namespace,
            with_data.join(", ")
        )));
    }

    let command = vec![
        "sh".to_string(),
        "-c".to_string(),
        restore_script(target.engine),
    ];
    let what = format!("restoring {}/{pod}", target.namespace);
    let progress = Progress::bytes(options.progress, &what);
    let file = options.file.clone();
    // An exec stream to a deleted pod can stay open with nobody reading its stdin: the
    // restore ends when its pod goes. The watch starts before anything is sent.
    let uid = target.pod.as_ref().and_then(|p| p.metadata.uid.as_deref());
    let budget = options.timeout.min(crate::client::DEFAULT_REQUEST_TIMEOUT);
    let watch = wait::watch_pod(kube, &pod, uid.unwrap_or_default(), budget).await?;
    let streamed = tokio::select! {
        result = within(
            options.timeout,
            what.clone(),
            stream(&pods, &pod, &target.container, &command, file, kind, &progress),
        ) => result,
        signal = crate::cli::interrupted() => Err(Error::Interrupted(format!("{what}: interrupted by {signal}; the databases may be half restored"))),
        gone = watch.gone() => Err(gone.err().unwrap_or_else(|| Error::Failed(format!(
            "{what}: pod {pod} was deleted during the restore; the databases may be half restored"
        )))),
    };
    progress.finish();
    let (status, sent, stderr) = streamed?;
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        let detail = if stderr.trim().is_empty() {
            String::new()
        } else {
            format!("; stderr: {}", exec::last_lines(stderr.trim(), 5))
        };
        let credentials = match exec::shell(
            &pods,
            &pod,
            Some(&target.container),
            &credentials_script(target.engine),
            Duration::from_secs(60),
        )
        .await
        .and_then(|out| out.into_stdout(&pod, "setting the credentials again"))
        {
            Ok(_) => "the target's own credentials were set again".to_string(),
            Err(err) => format!("the target's own credentials could not be set again ({err})"),
        };
        return Err(Error::Failed(format!(
            "failed to restore {} into pod {}/{pod}: remote {status}{detail} ({sent} bytes sent; the databases may be half restored; {credentials})",
            options.file.display(),
            target.namespace
        )));
    }
    Ok(RestoreReport {
        file: options.file.display().to_string(),
        namespace: target.namespace,
        pod,
        engine: target.engine,
        kind,
        databases_with_data: with_data,
        bytes_sent: sent,
        duration_seconds: started.elapsed().as_secs_f64(),
        remote_status: status,
    })
}

async fn stream(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    command: &[String],
    file: PathBuf,
    kind: DumpKind,
    progress: &Progress,
) -> Result<(ExecStatus, u64, Vec<u8>)> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
    let reader = tokio::task::spawn_blocking(move || read_sql(&file, kind, tx));
    let mut process = exec::start(pods, pod, Some(container), command, true).await?;
    let status = process.take_status();
    let stdin = process.stdin();
    let stdout = process.stdout();
    let stderr = process.stderr();
    let sent = std::sync::atomic::AtomicU64::new(0);
    let feed = async {
        let Some(mut stdin) = stdin else { return };
        while let Some(chunk) = rx.recv().await {
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
            sent.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
            progress.inc(chunk.len() as u64);
        }
        let _ = stdin.shutdown().await;
    };
    // A remote that stopped at an error exits without reading the rest of the file: its
    // exit status ends the feeding (exec::session reads it whatever stdin still holds).
    let (status, _, stderr) = tokio::join!(
        exec::feed_until_status(feed, status),
        read_capped(stdout, 4096),
        read_capped(stderr, 64 << 10)
    );
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    // Once the stream is over nobody reads the file any more: let the reader finish.
    drop(rx);
    let _ = tokio::time::timeout(Duration::from_secs(10), process.join()).await;
    reader
        .await
        .map_err(|err| Error::Failed(format!("failed to read the backup file: {err}")))??;
    Ok((ExecStatus::from_status(status), sent, stderr))
}

/// Reads the SQL file and streams it to the channel (see [`pump_sql`]).
fn read_sql(file: &std::path::Path, kind: DumpKind, tx: mpsc::Sender<Vec<u8>>) -> Result<()> {
    let sql = verify::open_sql(file)?;
    pump_sql(sql, kind, |chunk| tx.blocking_send(chunk).is_ok()).map_err(|source| Error::Io {
        action: "read",
        path: file.display().to_string(),
        source,
    })
}

/// Reads `sql` in pieces of at most [`CHUNK`] bytes and hands `send` chunks of about that
/// size (`send` returns false to stop). Memory stays flat whatever the input: a 500 MB
/// bytea row, one line of a pg_dump COPY, passes in pieces, because PostgreSQL dumps go
/// through [`PgRestoreFilter`], which holds back at most [`pg_filter::HOLD`] bytes.
pub fn pump_sql<R: Read>(
    mut sql: R,
    kind: DumpKind,
    mut send: impl FnMut(Vec<u8>) -> bool,
) -> std::io::Result<()> {
    let mut filter = matches!(kind, DumpKind::PostgresCluster | DumpKind::PostgresDatabase)
        .then(PgRestoreFilter::default);
    let mut buf = vec![0u8; CHUNK];
    let mut out = Vec::with_capacity(CHUNK + pg_filter::HOLD);
    loop {
        let n = match sql.read(&mut buf) {
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        match &mut filter {
            Some(filter) if n > 0 => filter.push(&buf[..n], &mut out),
            Some(filter) => filter.finish(&mut out),
            None => out.extend_from_slice(&buf[..n]),
        }
        if ((n == 0 && !out.is_empty()) || out.len() >= CHUNK)
            && !send(std::mem::replace(
                &mut out,
                Vec::with_capacity(CHUNK + pg_filter::HOLD),
            ))
        {
            return Ok(());
        }
        if n == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_carry_no_secret() {
        let pg = restore_script(Engine::Postgres);
        assert!(pg.contains("ON_ERROR_STOP=1"));
        assert!(
            pg.contains(r#"ALTER ROLE :"kdb_user" WITH PASSWORD :'\''kdb_pw'\'';"#),
            "{pg}"
        );
        let maria = restore_script(Engine::Mariadb);
        assert!(maria.contains("\"${MYSQL_ROOT_PASSWORD:-}\""));
        assert!(maria.contains("{ cat; kdb_credentials; } |"));
        assert!(user_data_script(Engine::Mysql).contains("information_schema.tables"));
        assert!(user_data_script(Engine::Postgres).contains("NOT IN ('template0','template1')"));
    }

    /// Runs the in-container credential functions with a local `sh` (the images' `sh` is
    /// dash or busybox; both have `printf` built in).
    fn mysql_credentials_sql(env: &[(&str, &str)]) -> String {
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{MYSQL_CREDENTIALS}kdb_credentials"))
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    #[test]
    fn mysql_credentials_are_escaped_sql() {
        let sql = mysql_credentials_sql(&[
            ("MYSQL_ROOT_PASSWORD", r"r'o\o%s`t"),
            ("MYSQL_USER", "app'user"),
            ("MYSQL_PASSWORD", "p w\n'--"),
            ("MYSQL_DATABASE", "app`db"),
        ]);
        assert!(
            sql.starts_with("SET SESSION sql_mode = '';\nFLUSH PRIVILEGES;\n"),
            "{sql}"
        );
        assert!(
            sql.contains(r"ALTER USER IF EXISTS 'root'@'localhost' IDENTIFIED BY 'r''o\\o%s`t';"),
            "{sql}"
        );
        assert!(sql.contains(r"ALTER USER IF EXISTS 'root'@'%' IDENTIFIED BY 'r''o\\o%s`t';"));
        assert!(
            sql.contains("CREATE USER IF NOT EXISTS 'app''user'@'%' IDENTIFIED BY 'p w\n''--';"),
            "{sql}"
        );
        assert!(sql.contains("ALTER USER 'app''user'@'%' IDENTIFIED BY 'p w\n''--';"));
        assert!(
            sql.contains("GRANT ALL ON `app``db`.* TO 'app''user'@'%';"),
            "{sql}"
        );
        assert!(sql.ends_with("FLUSH PRIVILEGES;\n"));
        // MARIADB_* spellings; an absent app user is left alone.
        let sql = mysql_credentials_sql(&[("MARIADB_ROOT_PASSWORD", "pw")]);
        assert!(sql.contains("'root'@'%' IDENTIFIED BY 'pw';"), "{sql}");
        assert!(!sql.contains("CREATE USER"));
        // Nothing set (a hand-made database with an empty root password): no ALTER at all.
        assert!(!mysql_credentials_sql(&[]).contains("ALTER USER"));
    }

    #[test]
    fn what_a_restore_would_overwrite() {
        assert_eq!(
            with_data(Engine::Postgres, "postgres\nappdb\n", false),
            ["postgres", "appdb"]
        );
        let listing = "database appdb\naccount root@localhost\naccount root@%\naccount mariadb.sys@localhost\naccount healthcheck@::1\naccount appuser@%\naccount PUBLIC@\naccount reporter@10.0.0.%\nself appuser\n";
        assert_eq!(with_data(Engine::Mariadb, listing, false), ["appdb"]);
        assert_eq!(
            with_data(Engine::Mariadb, listing, true),
            ["appdb", "mysql (accounts reporter@10.0.0.%)"]
        );
        let fresh = "account root@localhost\naccount appuser@%\nself appuser\n";
        assert!(with_data(Engine::Mysql, fresh, true).is_empty());
    }

    #[test]
    fn mysql_schema_is_found_across_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut sql = b"-- MySQL dump\n".to_vec();
        sql.resize(CHUNK - 5, b'x');
        sql.extend_from_slice(b"\nUSE `mysql`;\n");
        let with = dir.path().join("with.sql");
        std::fs::write(&with, &sql).unwrap();
        assert!(carries_mysql_schema(&with).unwrap());
        let without = dir.path().join("without.sql");
        std::fs::write(
            &without,
            b"-- MySQL dump\nUSE `appdb`;\nINSERT INTO t VALUES ('\\nUSE `mysql`;\\n');\n",
        )
        .unwrap();
        assert!(!carries_mysql_schema(&without).unwrap());
    }

    /// `len` bytes of one pg_dump COPY line, made on the fly (never held whole).
    struct OneLongRow {
        head: std::io::Cursor<Vec<u8>>,
        left: u64,
        tail: std::io::Cursor<Vec<u8>>,
    }

    impl Read for OneLongRow {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.head.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.left > 0 {
                let n = buf.len().min(self.left as usize);
                buf[..n].fill(b'a');
                self.left -= n as u64;
                return Ok(n);
            }
            self.tail.read(buf)
        }
    }

    #[test]
    fn a_huge_single_line_streams_in_bounded_chunks() {
        let len: u64 = 300 << 20;
        let head =
            b"--\n-- PostgreSQL database dump\n--\n\nCOPY public.b (id, b) FROM stdin;\n1\t\\\\x"
                .to_vec();
        let tail = b"\n\\.\n\nCREATE DATABASE later;\n".to_vec();
        let total = head.len() as u64 + len + tail.len() as u64;
        let input = OneLongRow {
            head: std::io::Cursor::new(head),
            left: len,
            tail: std::io::Cursor::new(tail),
        };
        let mut largest = 0;
        let mut sent = 0u64;
        let mut last = Vec::new();
        pump_sql(input, DumpKind::PostgresDatabase, |chunk| {
            largest = largest.max(chunk.len()).max(chunk.capacity());
            sent += chunk.len() as u64;
            last = chunk;
            true
        })
        .unwrap();
        let inserted = "DROP DATABASE IF EXISTS later WITH (FORCE);\n".len() as u64;
        assert_eq!(sent, total + inserted);
        assert!(
            largest <= 2 * CHUNK + 2 * pg_filter::HOLD,
            "a chunk of {largest} bytes"
        );
        assert!(String::from_utf8_lossy(&last).ends_with(
            "\\.\n\nDROP DATABASE IF EXISTS later WITH (FORCE);\nCREATE DATABASE later;\n"
        ));
    }
}
