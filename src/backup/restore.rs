//! `restore`: checks a backup file before anything is sent (checksum, trailer, engine),
//! refuses to write over user data without `--yes`, then streams the decompressed SQL
//! into psql / mysql over exec stdin and reports the remote exit status.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::dump::read_capped;
use super::format::DumpKind;
use super::verify::{self, VerifyReport};
use crate::client::Kube;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::exec::{self, ExecStatus};
use crate::output::Progress;
use crate::target;

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

/// The script that reads SQL on stdin. psql stops at the first error; mysql does by default.
pub fn restore_script(engine: Engine) -> &'static str {
    match engine {
        // -d postgres: the file drops and re-creates the databases it contains, so the
        // session must not sit in one of them.
        Engine::Postgres => {
            r#"PGPASSWORD="${POSTGRES_PASSWORD:-}" exec psql -X -q -w -v ON_ERROR_STOP=1 -U "${POSTGRES_USER:-postgres}" -d postgres"#
        }
        Engine::Mysql | Engine::Mariadb => {
            r#"MYSQL_PWD="${MYSQL_ROOT_PASSWORD:-}"; export MYSQL_PWD; if command -v mariadb >/dev/null 2>&1; then c=mariadb; else c=mysql; fi; exec "$c" -uroot --default-character-set=utf8mb4 --binary-mode"#
        }
    }
}

/// Lists databases holding at least one table: one name per line.
pub fn user_data_script(engine: Engine) -> String {
    match engine {
        Engine::Postgres => r#"export PGPASSWORD="${POSTGRES_PASSWORD:-}"; u="${POSTGRES_USER:-postgres}"
dbs=$(psql -X -w -tA -U "$u" -d postgres -c "SELECT datname FROM pg_database WHERE datallowconn AND datname NOT IN ('postgres','template0','template1') ORDER BY 1") || exit 1
printf '%s\n' "$dbs" | while IFS= read -r db; do
  [ -n "$db" ] || continue
  n=$(psql -X -w -tA -U "$u" -d "$db" -c "SELECT count(*) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE c.relkind IN ('r','p','v','m','f') AND s.nspname NOT IN ('pg_catalog','information_schema') AND s.nspname NOT LIKE 'pg_toast%'") || exit 1
  if [ "$n" -gt 0 ]; then echo "$db"; fi
done"#
            .to_string(),
        Engine::Mysql | Engine::Mariadb => format!(
            "echo \"SELECT DISTINCT table_schema FROM information_schema.tables WHERE table_schema NOT IN ('mysql','information_schema','performance_schema','sys') ORDER BY 1;\" | {}",
            engine.sql_script()
        ),
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
    let with_data: Vec<String> = listed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
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
        restore_script(target.engine).to_string(),
    ];
    let what = format!("restoring {}/{pod}", target.namespace);
    let progress = Progress::bytes(options.progress, &what);
    let file = options.file.clone();
    let uid = target.pod.as_ref().and_then(|p| p.metadata.uid.clone());
    let streamed = tokio::select! {
        result = tokio::time::timeout(
            options.timeout,
            stream(&pods, &pod, &target.container, &command, file, kind, &progress),
        ) => result.map_err(|_| Error::Timeout { what: what.clone(), after: options.timeout })?,
        signal = crate::cli::interrupted() => Err(Error::Interrupted(format!("{what}: interrupted by {signal}; the databases may be half restored"))),
        // An exec stream to a deleted pod can stay open with nobody reading its stdin.
        () = pod_replaced(&pods, &pod, uid) => Err(Error::Failed(format!(
            "{what}: pod {pod} was deleted during the restore; the databases may be half restored"
        ))),
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
        return Err(Error::Failed(format!(
            "failed to restore {} into pod {}/{pod}: remote {status}{detail} ({sent} bytes sent)",
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

/// Returns once pod `name` is gone, terminating or replaced (another UID); polls every 2 s
/// and ignores API errors (the stream's own timeout covers an unreachable server).
async fn pod_replaced(pods: &Api<Pod>, name: &str, uid: Option<String>) {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Ok(found) = pods.get_opt(name).await else {
            continue;
        };
        match found {
            Some(pod) if pod.metadata.deletion_timestamp.is_none() && pod.metadata.uid == uid => {}
            _ => return,
        }
    }
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
    let feed = async move {
        let mut sent = 0u64;
        let Some(mut stdin) = stdin else { return sent };
        while let Some(chunk) = rx.recv().await {
            // A remote that stops reading has exited; its status says why.
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len() as u64;
            progress.inc(chunk.len() as u64);
        }
        let _ = stdin.shutdown().await;
        sent
    };
    let (sent, _, stderr) = tokio::join!(
        feed,
        read_capped(stdout, 4096),
        read_capped(stderr, 64 << 10)
    );
    let status = match status {
        Some(fut) => fut.await,
        None => None,
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), process.join()).await;
    reader
        .await
        .map_err(|err| Error::Failed(format!("failed to read the backup file: {err}")))??;
    Ok((ExecStatus::from_status(status), sent, stderr))
}

/// Reads the SQL in chunks; PostgreSQL dumps go through [`PgRestoreFilter`] line by line.
fn read_sql(file: &std::path::Path, kind: DumpKind, tx: mpsc::Sender<Vec<u8>>) -> Result<()> {
    let io_err = |source| Error::Io {
        action: "read",
        path: file.display().to_string(),
        source,
    };
    let sql = verify::open_sql(file)?;
    match kind {
        DumpKind::Mysql => {
            let mut sql = sql;
            loop {
                let mut chunk = Vec::with_capacity(CHUNK);
                let n = (&mut sql)
                    .take(CHUNK as u64)
                    .read_to_end(&mut chunk)
                    .map_err(io_err)?;
                if n == 0 || tx.blocking_send(chunk).is_err() {
                    return Ok(());
                }
            }
        }
        DumpKind::PostgresCluster | DumpKind::PostgresDatabase => {
            let mut sql = BufReader::with_capacity(CHUNK, sql);
            let mut filter = PgRestoreFilter::default();
            let mut line = Vec::new();
            let mut chunk = Vec::with_capacity(CHUNK + 4096);
            loop {
                line.clear();
                let n = sql.read_until(b'\n', &mut line).map_err(io_err)?;
                if n > 0 {
                    filter.line(&line, &mut chunk);
                }
                if (n == 0 && !chunk.is_empty()) || chunk.len() >= CHUNK {
                    if tx.blocking_send(std::mem::take(&mut chunk)).is_err() {
                        return Ok(());
                    }
                    chunk.reserve(CHUNK + 4096);
                }
                if n == 0 {
                    return Ok(());
                }
            }
        }
    }
}

/// Makes a pg_dumpall / `pg_dump --create` file restorable into a running server with
/// `ON_ERROR_STOP`: roles that already exist (always the one we connect as) are skipped
/// instead of failing, and each database the file creates is dropped first (`WITH
/// (FORCE)`, PostgreSQL 13+). COPY data is passed through untouched.
#[derive(Debug, Default)]
pub struct PgRestoreFilter {
    in_copy: bool,
    connected: bool,
}

impl PgRestoreFilter {
    /// Appends `line` (with its newline), rewritten where needed, to `out`.
    pub fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if self.in_copy {
            if line == b"\\.\n" || line == b"\\." {
                self.in_copy = false;
            }
            out.extend_from_slice(line);
            return;
        }
        let text = String::from_utf8_lossy(line);
        let trimmed = text.trim_end();
        if trimmed.starts_with("COPY ") && trimmed.ends_with("FROM stdin;") {
            self.in_copy = true;
        } else if trimmed.starts_with("\\connect ") {
            self.connected = true;
        } else if !self.connected && trimmed.starts_with("CREATE ROLE ") && trimmed.ends_with(';') {
            out.extend_from_slice(
                format!("DO $kdb$ BEGIN {trimmed} EXCEPTION WHEN duplicate_object THEN NULL; END $kdb$;\n").as_bytes(),
            );
            return;
        } else if let Some(rest) = trimmed.strip_prefix("CREATE DATABASE ")
            && let Some(name) = sql_identifier(rest)
        {
            out.extend_from_slice(
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE);\n").as_bytes(),
            );
        }
        out.extend_from_slice(line);
    }
}

/// The identifier at the start of `text`: `"quoted ""name"""` or a bare word.
fn sql_identifier(text: &str) -> Option<&str> {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut chars = quoted.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if chars.peek().map(|(_, c)| *c) == Some('"') {
                    chars.next();
                    continue;
                }
                return Some(&text[..i + 2]);
            }
        }
        return None;
    }
    let end = text
        .find(|c: char| c.is_whitespace() || c == ';')
        .unwrap_or(text.len());
    (end > 0).then(|| &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(text: &str) -> String {
        let mut f = PgRestoreFilter::default();
        let mut out = Vec::new();
        for line in text.split_inclusive('\n') {
            f.line(line.as_bytes(), &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn existing_roles_are_skipped_and_databases_replaced() {
        let dump = "CREATE ROLE appuser;\nALTER ROLE appuser WITH SUPERUSER;\n\\connect template1\nCREATE DATABASE appdb WITH TEMPLATE = template0 ENCODING = 'UTF8';\n\\connect appdb\n";
        let out = filter(dump);
        assert!(out.starts_with(
            "DO $kdb$ BEGIN CREATE ROLE appuser; EXCEPTION WHEN duplicate_object THEN NULL; END $kdb$;\nALTER ROLE"
        ));
        assert!(
            out.contains("DROP DATABASE IF EXISTS appdb WITH (FORCE);\nCREATE DATABASE appdb WITH")
        );
    }

    #[test]
    fn copy_data_is_never_rewritten() {
        let dump = "\\connect appdb\nCOPY public.t (id, s) FROM stdin;\n1\tCREATE DATABASE x;\nCREATE DATABASE y;\n\\.\nCREATE DATABASE \"My \"\"DB\"\"\" WITH TEMPLATE = template0;\n";
        let out = filter(dump);
        assert!(!out.contains("DROP DATABASE IF EXISTS x"));
        assert!(!out.contains("DROP DATABASE IF EXISTS y"));
        assert!(out.contains("DROP DATABASE IF EXISTS \"My \"\"DB\"\"\" WITH (FORCE);\n"));
    }

    #[test]
    fn roles_after_connect_are_left_alone() {
        let out = filter("\\connect appdb\nCREATE ROLE inside;\n");
        assert!(out.ends_with("CREATE ROLE inside;\n"));
    }

    #[test]
    fn scripts_carry_no_secret() {
        assert!(restore_script(Engine::Postgres).contains("ON_ERROR_STOP=1"));
        assert!(restore_script(Engine::Mariadb).contains("\"${MYSQL_ROOT_PASSWORD:-}\""));
        assert!(user_data_script(Engine::Mysql).contains("information_schema.tables"));
    }
}
