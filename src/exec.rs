//! Running commands inside containers over the API server's exec endpoint (websocket):
//! no TTY, stdout and stderr kept apart, and the remote exit status read from the status
//! channel — end of stream alone never counts as success.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::Api;
use kube::api::AttachParams;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};

mod guard;
mod session;
pub use guard::guarded;
pub use session::Process;

/// Buffer between the websocket and our readers (and writers): a few frames' worth keeps the
/// stream moving while the other side catches up; more only adds to the peak RSS (256 KiB
/// streamed as fast as 1 MiB did, docs/dbbackup.md).
pub const STREAM_BUFFER: usize = 256 << 10;
/// Most of a command's stdout [`run`] keeps: checks parse a few lines, and a runaway
/// command (`cat` of a huge file, a probe stuck in a loop) must not exhaust memory.
pub const STDOUT_KEEP: usize = 4 << 20;
/// Most of a command's stderr [`run`] keeps: its end, where the error usually is.
pub const STDERR_KEEP: usize = 64 << 10;

/// How a remote command ended, from the exec status channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// Standard output, raw bytes: at most its first [`STDOUT_KEEP`] bytes.
    pub stdout: Vec<u8>,
    /// Standard error, raw bytes: at most its last [`STDERR_KEEP`] bytes.
    pub stderr: Vec<u8>,
    /// Bytes of stdout past the cap, read and dropped (0 when all was kept).
    pub stdout_dropped: u64,
    /// Bytes at the start of stderr read and dropped (0 when all was kept).
    pub stderr_dropped: u64,
    /// Exit status.
    pub status: ExecStatus,
}

impl ExecOutput {
    /// Stdout as text, trimmed; a last line says when the end was cut off.
    pub fn stdout_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.stdout).trim().to_string();
        match self.stdout_dropped {
            0 => text,
            n => format!("{text}\n[output cut: {n} more bytes not kept]"),
        }
    }

    /// Stderr as text, trimmed; a first line says when the start was cut off.
    pub fn stderr_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr).trim().to_string();
        match self.stderr_dropped {
            0 => text,
            n => format!("[output cut: {n} earlier bytes not kept]\n{text}"),
        }
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

/// Which part of a stream [`capture`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The first n bytes (output to parse).
    Head(usize),
    /// The last n bytes (error messages, which end a stream).
    Tail(usize),
}

/// The kept part of a stream and how many bytes were read past it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The kept bytes, in stream order.
    pub bytes: Vec<u8>,
    /// Bytes read and dropped.
    pub dropped: u64,
}

/// Reads a stream to its end (or first error) keeping a bounded part of it. The rest is
/// still read and dropped: an exec's streams share one websocket, so leaving one unread
/// would stall the others and the exit status behind them.
pub async fn capture<R: AsyncRead + Unpin>(reader: Option<R>, keep: Keep) -> Captured {
    let mut captured = Captured::default();
    capture_into(reader, keep, &mut captured).await;
    captured
}

/// [`capture`] into the caller's buffer, so what arrived is still there when the caller
/// stops waiting (dbcheck's combined checks keep the parts that ended before a deadline).
pub async fn capture_into<R: AsyncRead + Unpin>(
    reader: Option<R>,
    keep: Keep,
    captured: &mut Captured,
) {
    let Some(mut reader) = reader else {
        return;
    };
    let mut buf = vec![0u8; 16 << 10];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        match keep {
            Keep::Head(limit) => {
                let take = limit.saturating_sub(captured.bytes.len()).min(n);
                captured.bytes.extend_from_slice(&chunk[..take]);
                captured.dropped += (n - take) as u64;
            }
            Keep::Tail(limit) => {
                captured.bytes.extend_from_slice(chunk);
                // Drained in batches so the copy costs O(1) per byte read.
                if captured.bytes.len() >= limit.saturating_mul(2).max(limit + buf.len()) {
                    let excess = captured.bytes.len() - limit;
                    captured.bytes.drain(..excess);
                    captured.dropped += excess as u64;
                }
            }
        }
    }
    if let Keep::Tail(limit) = keep
        && captured.bytes.len() > limit
    {
        let excess = captured.bytes.len() - limit;
        captured.bytes.drain(..excess);
        captured.dropped += excess as u64;
    }
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
) -> Result<Process> {
    launch(pods, pod, container, command, (stdin, false)).await
}

/// Starts `command` under [`guarded`]: it ends in the pod, with all it started, when the
/// returned process's stdin is closed before the command has ended (the caller keeps
/// [`Process::stdin`] until the status has come; dropping the process closes it too).
pub async fn start_guarded(
    pods: &Api<Pod>,
    pod: &str,
    container: Option<&str>,
    command: &[String],
) -> Result<Process> {
    launch(pods, pod, container, &guarded(command), (true, true)).await
}

/// `(stdin, held)`: see [`Process::start`].
async fn launch(
    pods: &Api<Pod>,
    pod: &str,
    container: Option<&str>,
    command: &[String],
    (stdin, held): (bool, bool),
) -> Result<Process> {
    tracing::debug!(pod, command = %loggable(command), "exec");
    Process::start(pods, pod, command, &attach_params(container, stdin), held)
        .await
        .map_err(Error::api(format!("exec into pod {pod}")))
}

/// A command as it may appear in a log: values that look like passwords are replaced
/// by `***`. dbcheck runs the pod's own probe commands, and hand-made probes often carry
/// a literal `-pSECRET` or `PGPASSWORD=SECRET`. References to the environment
/// (`-p"$MYSQL_ROOT_PASSWORD"`) are kept: they are not secrets and show how a probe works.
pub fn loggable(command: &[String]) -> String {
    let mut redactor = Redactor::default();
    let words: Vec<String> = command.iter().map(|arg| redactor.words(arg)).collect();
    format!("{words:?}")
}

/// True when a command holds a literal password-looking value (what [`loggable`] hides).
pub fn carries_password(command: &[String]) -> bool {
    let mut redactor = Redactor::default();
    command.iter().any(|arg| redactor.words(arg) != *arg)
}

/// An API URL as it may appear in a log: an exec's (or attach's) `command=` parameters
/// after the program name become `***`. The `exec` log line shows the whole command,
/// redacted by [`loggable`].
pub fn loggable_url(url: &str) -> String {
    let Some((path, query)) = url.split_once('?') else {
        return url.to_string();
    };
    if !(path.ends_with("/exec") || path.ends_with("/attach")) {
        return url.to_string();
    }
    let mut first = true;
    let query: Vec<&str> = query
        .split('&')
        .map(|pair| {
            // The first `command=` is the program; the ones after it its arguments.
            if pair.starts_with("command=") && !std::mem::take(&mut first) {
                "command=***"
            } else {
                pair
            }
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// Redacts password-looking words, across the arguments of one command.
#[derive(Default)]
struct Redactor {
    /// After `--password` the next word is the value.
    redact_next: bool,
    /// A value opened a quote: it goes on until the word that closes it.
    open_quote: Option<char>,
}

impl Redactor {
    /// Redacts a text (an argument or a whole `sh -c` script), keeping the whitespace
    /// between words.
    fn words(&mut self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while !rest.is_empty() {
            let space = rest.len() - rest.trim_start().len();
            out.push_str(&rest[..space]);
            rest = &rest[space..];
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let word = &rest[..end];
            rest = &rest[end..];
            if !word.is_empty() {
                out.push_str(&self.word(word));
            }
        }
        out
    }

    fn word(&mut self, word: &str) -> String {
        if let Some(quote) = self.open_quote {
            if word.contains(quote) {
                self.open_quote = None;
            }
            return "***".into();
        }
        if std::mem::take(&mut self.redact_next) && !is_reference(word) {
            self.open_quote = unclosed_quote(word);
            return "***".into();
        }
        let (redacted, value) = redact_word(word);
        if let Some(value) = value {
            self.open_quote = unclosed_quote(value);
        }
        self.redact_next = matches!(
            word.trim_matches(['\'', '"']),
            "--password" | "--passwd" | "--pass"
        );
        redacted
    }
}

/// One word with its password value replaced, and that value when there was one.
fn redact_word(word: &str) -> (String, Option<&str>) {
    let lead = word.len() - word.trim_start_matches(['\'', '"', '(', '`']).len();
    let core = &word[lead..];
    // A connection URI: scheme://user:password@host.
    if let Some(scheme) = core.find("://") {
        let after = &core[scheme + 3..];
        if let (Some(colon), Some(at)) = (after.find(':'), after.find('@'))
            && colon < at
        {
            let start = lead + scheme + 3 + colon + 1;
            let end = lead + scheme + 3 + at;
            return (
                format!("{}***{}", &word[..start], &word[end..]),
                Some(&word[start..end]),
            );
        }
    }
    // `-pSECRET` (mysql's short form), `--password=SECRET`, `PGPASSWORD=SECRET`,
    // `password=SECRET` in a libpq connection string.
    let value_at = if core.starts_with("-p") && !core.starts_with("--") && core.len() > 2 {
        Some(2)
    } else if let Some(eq) = core.find('=') {
        let name = core[..eq].trim_start_matches('-').to_ascii_lowercase();
        (name.contains("pass") || name.contains("pwd")).then_some(eq + 1)
    } else {
        None
    };
    match value_at {
        Some(at) if !is_reference(&core[at..]) => {
            let start = lead + at;
            (format!("{}***", &word[..start]), Some(&word[start..]))
        }
        _ => (word.to_string(), None),
    }
}

/// `$VAR`, `"$VAR"`, `${VAR}`: a value read from the environment, not a secret itself.
fn is_reference(value: &str) -> bool {
    value.trim_start_matches(['\'', '"']).starts_with('$')
}

/// The quote a value opens and does not close (`'my` of `-p'my secret'`).
fn unclosed_quote(value: &str) -> Option<char> {
    let quote = value.chars().next().filter(|c| matches!(c, '\'' | '"'))?;
    (value[1..].matches(quote).count() % 2 == 0).then_some(quote)
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
    run_keeping(pods, pod, container, command, stdin, timeout, STDOUT_KEEP).await
}

/// [`run`], keeping up to `stdout_keep` bytes of stdout.
pub async fn run_keeping(
    pods: &Api<Pod>,
    pod: &str,
    container: Option<&str>,
    command: &[String],
    stdin: Option<&[u8]>,
    timeout: Duration,
    stdout_keep: usize,
) -> Result<ExecOutput> {
    let started = std::time::Instant::now();
    let work = async {
        let mut process = start(pods, pod, container, command, stdin.is_some()).await?;
        let status = process.take_status();
        let stdout_reader = process.stdout();
        let stderr_reader = process.stderr();
        let input = process.stdin();
        let feed = async move {
            if let (Some(mut writer), Some(bytes)) = (input, stdin) {
                let _ = writer.write_all(bytes).await;
                let _ = writer.shutdown().await;
            }
        };
        let (status, stdout, stderr) = tokio::join!(
            feed_until_status(feed, status),
            capture(stdout_reader, Keep::Head(stdout_keep)),
            capture(stderr_reader, Keep::Tail(STDERR_KEEP)),
        );
        process.join().await;
        Ok(ExecOutput {
            stdout: stdout.bytes,
            stderr: stderr.bytes,
            stdout_dropped: stdout.dropped,
            stderr_dropped: stderr.dropped,
            status: ExecStatus::from_status(status),
        })
    };
    let program = command.first().map(String::as_str).unwrap_or("command");
    let output = crate::wait::within(timeout, format!("{program} in pod {pod}"), work).await?;
    tracing::debug!(pod, elapsed_ms = started.elapsed().as_millis() as u64, status = %output.status, "exec done");
    Ok(output)
}

/// Runs `feed` (writing a command's stdin) until the command's exit status comes, and
/// returns that status. A command that exits before reading all its input (psql stopped
/// at an error) leaves the rest unread and writes to its stdin may then wait forever: the
/// status ends the feeding.
pub async fn feed_until_status(
    feed: impl std::future::Future<Output = ()>,
    status: Option<impl std::future::Future<Output = Option<Status>>>,
) -> Option<Status> {
    let status = async move {
        match status {
            Some(status) => status.await,
            None => None,
        }
    };
    tokio::pin!(status);
    tokio::select! {
        () = feed => (&mut status).await,
        status = &mut status => status,
    }
}

/// `sh -c SCRIPT sh ARGS...`: values reach the script as `"$1"`, `"$2"`..., never as
/// script text, so a quote or `$(...)` in a value (a mount path from a pod spec, a name)
/// stays data.
pub fn script_command(script: &str, args: &[&str]) -> Vec<String> {
    let mut command = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    command.push("sh".to_string());
    command.extend(args.iter().map(|a| a.to_string()));
    command
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

    #[tokio::test]
    async fn capture_keeps_a_bounded_head_or_tail_and_counts_the_rest() {
        use tokio::io::AsyncReadExt as _;
        let none: Option<&[u8]> = None;
        assert_eq!(capture(none, Keep::Head(4)).await, Captured::default());
        let short = capture(Some(&b"abc"[..]), Keep::Head(4)).await;
        assert_eq!((short.bytes, short.dropped), (b"abc".to_vec(), 0));
        let head = capture(Some(&b"0123456789"[..]), Keep::Head(4)).await;
        assert_eq!((head.bytes, head.dropped), (b"0123".to_vec(), 6));
        let tail = capture(Some(&b"0123456789"[..]), Keep::Tail(4)).await;
        assert_eq!((tail.bytes, tail.dropped), (b"6789".to_vec(), 6));

        // 50 MiB through a 1 MiB head and a 64 KiB tail: the kept part never grows past
        // its cap, and every byte is accounted for.
        let total = 50u64 << 20;
        let big = tokio::io::repeat(b'x').take(total);
        let head = capture(Some(big), Keep::Head(1 << 20)).await;
        assert_eq!(head.bytes.len(), 1 << 20);
        assert_eq!(head.dropped + head.bytes.len() as u64, total);
        assert!(head.bytes.capacity() < 2 << 20, "{}", head.bytes.capacity());
        let numbered: Vec<u8> = (0..200_000u32).flat_map(|n| n.to_le_bytes()).collect();
        let tail = capture(Some(&numbered[..]), Keep::Tail(64 << 10)).await;
        assert_eq!(tail.bytes, numbered[numbered.len() - (64 << 10)..]);
        assert_eq!(tail.dropped as usize, numbered.len() - (64 << 10));
        assert!(
            tail.bytes.capacity() < 256 << 10,
            "{}",
            tail.bytes.capacity()
        );
    }

    #[test]
    fn cut_output_says_so() {
        let output = ExecOutput {
            stdout: b"rows\n".to_vec(),
            stderr: b"last error\n".to_vec(),
            stdout_dropped: 10,
            stderr_dropped: 20,
            status: ExecStatus::Success,
        };
        assert_eq!(
            output.stdout_text(),
            "rows\n[output cut: 10 more bytes not kept]"
        );
        assert_eq!(
            output.stderr_text(),
            "[output cut: 20 earlier bytes not kept]\nlast error"
        );
    }

    #[test]
    fn logged_exec_urls_carry_only_the_program() {
        let url = "https://h:6443/api/v1/namespaces/n/pods/p/exec?command=mysqladmin&command=-pS3cret&container=db&stdout=true";
        let logged = loggable_url(url);
        assert_eq!(
            logged,
            "https://h:6443/api/v1/namespaces/n/pods/p/exec?command=mysqladmin&command=***&container=db&stdout=true"
        );
        let list = "https://h:6443/api/v1/namespaces/n/pods?labelSelector=app%3Dx";
        assert_eq!(loggable_url(list), list);
    }

    #[test]
    fn logged_commands_carry_no_password() {
        let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        for (command, secret) in [
            ("mysqladmin ping -uroot -pS3cret", "S3cret"),
            ("mysql --password=S3cret -e SELECT", "S3cret"),
            ("mysql --password S3cret -e SELECT", "S3cret"),
            (
                "psql postgresql://app:S3cret@127.0.0.1/db -c SELECT",
                "S3cret",
            ),
        ] {
            let logged = loggable(&words(command));
            assert!(!logged.contains(secret), "{logged}");
            assert!(logged.contains("***"), "{logged}");
        }
        let script = "MYSQL_PWD=S3cret mysqladmin ping && mysql -uroot -p'two words' -e 'SELECT 1' \
            && PGPASSWORD=\"S3cret\" psql 'host=x password=S3cret dbname=y'";
        let logged = loggable(&["sh".into(), "-c".into(), script.into()]);
        for secret in ["S3cret", "two", "words"] {
            assert!(!logged.contains(secret), "{logged}");
        }
        assert!(logged.contains("SELECT 1"), "{logged}");
        // Environment references are not secrets and stay readable.
        let ours = r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysqladmin -uroot -p"${MYSQL_ROOT_PASSWORD}" -p5432 status"#;
        let logged = loggable(&["sh".into(), "-c".into(), ours.into()]);
        assert!(
            logged.contains("$MYSQL_ROOT_PASSWORD") && logged.contains("-uroot"),
            "{logged}"
        );
        assert!(logged.contains("${MYSQL_ROOT_PASSWORD}"), "{logged}");
    }
}
