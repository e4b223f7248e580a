//! Running commands inside containers over the API server's exec endpoint (websocket):
//! no TTY, stdout and stderr kept apart, and the remote exit status read from the status
//! channel — end of stream alone never counts as success.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::Api;
use kube::api::{AttachParams, AttachedProcess};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};

/// Buffer between the websocket and our readers: 1 MiB keeps dumps fast at low memory.
pub const STREAM_BUFFER: usize = 1 << 20;

/// How a remote command ended, from the exec status channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum ExecStatus {
    /// Exit status 0.
    Success,
    /// Non-zero exit status (when the runtime reported one) and the API's message.
    Failure { code: Option<i32>, message: String },
    /// The stream ended with no status: the command may have been cut off.
    Unknown,
}

impl ExecStatus {
    /// Reads the `Status` object kubelet sends when the command ends.
    pub fn from_status(status: Option<Status>) -> Self {
        let Some(status) = status else {
            return ExecStatus::Unknown;
        };
        if status.status.as_deref() == Some("Success") {
            return ExecStatus::Success;
        }
        let code = status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|causes| {
                causes
                    .iter()
                    .find(|c| c.reason.as_deref() == Some("ExitCode"))
            })
            .and_then(|c| c.message.as_deref())
            .and_then(|m| m.parse().ok());
        ExecStatus::Failure {
            code,
            message: status.message.unwrap_or_default(),
        }
    }

    /// True only for a reported exit status of 0.
    pub fn success(&self) -> bool {
        matches!(self, ExecStatus::Success)
    }
}

impl std::fmt::Display for ExecStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecStatus::Success => write!(f, "exit status 0"),
            ExecStatus::Failure {
                code: Some(code), ..
            } => write!(f, "exit status {code}"),
            ExecStatus::Failure {
                code: None,
                message,
            } => write!(f, "failed: {message}"),
            ExecStatus::Unknown => write!(f, "stream ended without an exit status"),
        }
    }
}

/// What a finished command printed and how it ended.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// Standard output, raw bytes.
    pub stdout: Vec<u8>,
    /// Standard error, raw bytes.
    pub stderr: Vec<u8>,
    /// Exit status.
    pub status: ExecStatus,
}

impl ExecOutput {
    /// Stdout as text, trimmed.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_string()
    }

    /// Stderr as text, trimmed.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }

    /// Stdout when the command succeeded, else an error naming the command and its stderr.
    pub fn into_stdout(self, pod: &str, what: &str) -> Result<String> {
        if self.status.success() {
            return Ok(self.stdout_text());
        }
        let stderr = self.stderr_text();
        let detail = if stderr.is_empty() {
            self.status.to_string()
        } else {
            format!("{}: {}", self.status, last_lines(&stderr, 5))
        };
        Err(Error::Exec {
            pod: pod.to_string(),
            what: what.to_string(),
            detail,
        })
    }
}

/// The last `n` lines of a text, for error messages.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Parameters for a non-interactive exec with our buffer sizes.
pub fn attach_params(container: Option<&str>, stdin: bool) -> AttachParams {
    let mut params = AttachParams::default()
        .stdin(stdin)
        .stdout(true)
        .stderr(true)
        .tty(false)
        .max_stdout_buf_size(STREAM_BUFFER)
        .max_stderr_buf_size(64 << 10)
        .max_stdin_buf_size(STREAM_BUFFER);
    if let Some(container) = container {
        params = params.container(container);
    }
    params
}

/// Starts a command; the caller drives its streams (used for dumps and restores).
pub async fn start(
    pods: &Api<Pod>,
    pod: &str,
    container: Option<&str>,
    command: &[String],
    stdin: bool,
) -> Result<AttachedProcess> {
    tracing::debug!(pod, ?command, "exec");
    pods.exec(pod, command.to_vec(), &attach_params(container, stdin))
        .await
        .map_err(Error::api(format!("exec into pod {pod}")))
}

/// Runs a command to completion, collecting its output, within `timeout`.
pub async fn run(
    pods: &Api<Pod>,
    pod: &str,
    container: Option<&str>,
    command: &[String],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<ExecOutput> {
    let started = std::time::Instant::now();
    let work = async {
        let mut process = start(pods, pod, container, command, stdin.is_some()).await?;
        let status = process.take_status();
        let mut stdout_reader = process.stdout();
        let mut stderr_reader = process.stderr();
        let input = process.stdin();
        let feed = async move {
            if let (Some(mut writer), Some(bytes)) = (input, stdin) {
                // A command that exits early closes stdin; its status says what happened.
                let _ = writer.write_all(bytes).await;
                let _ = writer.shutdown().await;
            }
        };
        let read_out = async {
            let mut buf = Vec::new();
            if let Some(r) = stdout_reader.as_mut() {
                let _ = r.read_to_end(&mut buf).await;
            }
            buf
        };
        let read_err = async {
            let mut buf = Vec::new();
            if let Some(r) = stderr_reader.as_mut() {
                let _ = r.read_to_end(&mut buf).await;
            }
            buf
        };
        let ((), stdout, stderr) = tokio::join!(feed, read_out, read_err);
        let status = match status {
            Some(fut) => fut.await,
            None => None,
        };
        let _ = process.join().await;
        Ok(ExecOutput {
            stdout,
            stderr,
            status: ExecStatus::from_status(status),
        })
    };
    let output = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| Error::Timeout {
            what: format!(
                "{} in pod {pod}",
                command.first().map(String::as_str).unwrap_or("command")
            ),
            after: timeout,
        })??;
    tracing::debug!(pod, elapsed_ms = started.elapsed().as_millis() as u64, status = %output.status, "exec done");
    Ok(output)
}

/// Runs `sh -c SCRIPT` in a container. Scripts read passwords from the container's own
/// environment, so no secret ever travels on a command line.
pub async fn shell(
    pods: &Api<Pod>,
    pod: &str,
    container: Option<&str>,
    script: &str,
    timeout: Duration,
) -> Result<ExecOutput> {
    let command = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    run(pods, pod, container, &command, None, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, StatusDetails};

    #[test]
    fn status_channel_decides_success() {
        assert_eq!(ExecStatus::from_status(None), ExecStatus::Unknown);
        let ok = Status {
            status: Some("Success".into()),
            ..Default::default()
        };
        assert!(ExecStatus::from_status(Some(ok)).success());
        let failed = Status {
            status: Some("Failure".into()),
            message: Some("command terminated with non-zero exit code".into()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".into()),
                    message: Some("2".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let status = ExecStatus::from_status(Some(failed));
        assert!(!status.success());
        assert_eq!(status.to_string(), "exit status 2");
    }
}
