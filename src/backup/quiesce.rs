//! The session that makes a snapshot application-consistent: one exec whose stdin stays
//! open, running the engine's client. PostgreSQL is put in backup mode (`CHECKPOINT`,
//! `pg_backup_start`), MySQL/MariaDB under `FLUSH TABLES WITH READ LOCK`; both end with the
//! session, so whatever happens here (error, signal, crash) the lock cannot outlive it:
//! closing stdin ends the client, and the remote `timeout` ends it if the stream is lost.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::exec::{self, ExecStatus};

/// Printed by the session before its id (backend PID or connection id).
const SESSION: &str = "kdb-quiesce-session";
/// Printed by the session once the quiesce statements are done.
const HELD: &str = "kdb-quiesce-held";
/// Printed by the session once the release statements are done.
const RELEASED: &str = "kdb-quiesce-released";
/// Time for the release statements and the client's exit.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(20);
/// Time for ending an abandoned session from another one.
const END_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of the session's output kept for error messages.
const KEEP_LINES: usize = 20;

/// How writes were held while the snapshot was cut (part of the snapshot report).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct QuiesceReport {
    /// `backup-mode` (PostgreSQL) or `read-lock` (MySQL/MariaDB).
    pub method: &'static str,
    /// Whether writes were blocked while held (a read lock) or went on (backup mode).
    pub writes_paused: bool,
    /// From the moment the quiesce statements returned until the release returned.
    pub held_seconds: f64,
    /// How long the quiesce statements took (a checkpoint, or waiting for running writes).
    pub quiesce_seconds: f64,
}

/// A held quiesce: release it with [`Held::release`]. Dropped unreleased, its stream is
/// closed, which ends the client and with it the lock.
pub struct Held {
    engine: Engine,
    pods: Api<Pod>,
    /// The server's id of the session, once it said it.
    session: Option<u32>,
    process: exec::Process,
    stdin: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    held_at: Instant,
    quiesce_seconds: f64,
    pod: String,
}

/// Starts the session and quiesces; returns once the database is held. `max_hold` bounds
/// the session remotely (the client is ended after it, whatever the caller does).
pub async fn hold(
    pods: &Api<Pod>,
    pod: &str,
    engine: Engine,
    label: &str,
    lock_wait: Duration,
    max_hold: Duration,
) -> Result<Held> {
    let started = Instant::now();
    let command = engine
        .commands()
        .quiesce_session(label, max_hold.as_secs().max(1));
    let mut process = exec::start(pods, pod, Some(engine.container_name()), &command, true).await?;
    let (tx, lines) = mpsc::channel(64);
    forward_lines(process.stdout(), tx.clone());
    forward_lines(process.stderr(), tx);
    let Some(stdin) = process.stdin() else {
        return Err(session_error(
            pod,
            "the quiesce session",
            "no stdin stream".into(),
        ));
    };
    let mut held = Held {
        engine,
        pods: pods.clone(),
        session: None,
        process,
        stdin: Box::new(stdin),
        lines,
        seen: Vec::new(),
        held_at: started,
        quiesce_seconds: 0.0,
        pod: pod.to_string(),
    };
    let sql = engine
        .commands()
        .quiesce_sql(SESSION, HELD, lock_wait.as_secs().max(1));
    // The quiesce waits for a checkpoint or for running statements: bounded by lock_wait
    // (plus the time to connect). While a read lock waits, writes queue behind it, so a
    // signal ends it at once.
    let budget = lock_wait + Duration::from_secs(30);
    let outcome = tokio::select! {
        done = held.send_and_wait(&sql, HELD, budget) => done,
        signal = crate::cli::interrupted() => Err(Error::Interrupted(format!(
            "snapshot of pod {pod}: interrupted by {signal} while quiescing; nothing was created"
        ))),
    };
    if let Err(err) = outcome {
        held.abandon().await;
        return Err(err);
    }
    held.held_at = Instant::now();
    held.quiesce_seconds = started.elapsed().as_secs_f64();
    Ok(held)
}

impl Held {
    /// Releases the database (the release statements, then the client's exit) and reports
    /// how long it was held.
    pub async fn release(mut self) -> Result<QuiesceReport> {
        let sql = self.engine.commands().release_sql(RELEASED);
        let released = self.send_and_wait(&sql, RELEASED, RELEASE_TIMEOUT).await;
        let held_seconds = self.held_at.elapsed().as_secs_f64();
        let (method, writes_paused) = self.engine.commands().quiesce_method();
        let exit = self.close().await;
        released?;
        if let Some(status) = exit.filter(|s| !s.success()) {
            tracing::warn!(pod = %self.pod, %status, "the quiesce session ended badly after its release");
        }
        Ok(QuiesceReport {
            method,
            writes_paused,
            held_seconds,
            quiesce_seconds: self.quiesce_seconds,
        })
    }

    /// Ends the session without the release statements: the server ends it from another
    /// session (a lock held or still waiting goes at once; a backup is aborted), and the
    /// client sees end of input and exits. Used on errors and signals; the caller reports
    /// the original cause.
    pub async fn abandon(mut self) {
        if let Some(id) = self.session {
            let end = self.engine.commands().end_session(id);
            let ended = exec::run(
                &self.pods,
                &self.pod,
                Some(self.engine.container_name()),
                &end.argv,
                Some(end.sql.as_bytes()),
                END_TIMEOUT,
            )
            .await;
            match ended {
                Ok(out) if out.status.success() => {}
                Ok(out) => {
                    tracing::warn!(pod = %self.pod, status = %out.status, stderr = %out.stderr_text(), "failed to end the quiesce session")
                }
                Err(err) => {
                    tracing::warn!(pod = %self.pod, err = %err.chain(), "failed to end the quiesce session")
                }
            }
        }
        if self.close().await.is_none() {
            tracing::warn!(pod = %self.pod, "the quiesce session did not report its end; its remote timeout ends it");
        }
    }

    async fn send_and_wait(&mut self, sql: &str, marker: &str, budget: Duration) -> Result<()> {
        let what = if marker == HELD {
            "the quiesce statements"
        } else {
            "the release statements"
        };
        self.stdin
            .write_all(sql.as_bytes())
            .await
            .map_err(|err| session_error(&self.pod, what, format!("failed to send them: {err}")))?;
        let _ = self.stdin.flush().await;
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                if line.trim() == marker {
                    return true;
                }
                if let Some(id) = line.trim().strip_prefix(SESSION) {
                    self.session = id.trim().parse().ok();
                    continue;
                }
                self.seen.push(line);
                if self.seen.len() > KEEP_LINES {
                    self.seen.remove(0);
                }
            }
            false
        };
        match tokio::time::timeout(budget, wait).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(session_error(
                &self.pod,
                what,
                format!(
                    "the session ended: {}",
                    exec::last_lines(&self.seen.join("\n"), 5)
                ),
            )),
            Err(_) => Err(Error::Timeout {
                what: format!("{what} in pod {}", self.pod),
                after: budget,
            }),
        }
    }

    /// Closes stdin and waits (bounded) for the remote exit status.
    async fn close(&mut self) -> Option<ExecStatus> {
        let _ = self.stdin.shutdown().await;
        let status = self.process.take_status()?;
        let status = tokio::time::timeout(RELEASE_TIMEOUT, status).await.ok()?;
        Some(ExecStatus::from_status(status))
    }
}

fn session_error(pod: &str, what: &str, detail: String) -> Error {
    Error::Exec {
        pod: pod.to_string(),
        what: what.to_string(),
        detail,
    }
}

/// Reads a stream line by line into the channel until it ends. Both streams are always
/// read: they share one websocket, and an unread one would stall the other.
fn forward_lines<R: AsyncRead + Unpin + Send + 'static>(
    reader: Option<R>,
    tx: mpsc::Sender<String>,
) {
    let Some(reader) = reader else { return };
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            // Once nobody listens, the rest is still read (and dropped).
            let _ = tx.send(line).await;
        }
    });
}
