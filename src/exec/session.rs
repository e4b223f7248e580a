//! One exec over the API server's WebSocket (the channel protocol: a first byte names
//! stdin 0, stdout 1, stderr 2, the exit status 3, and in v5 255 closes a channel), with
//! reading and writing in two tasks, and a command with stdin that may stop reading it.
//!
//! A command that stops reading its stdin early (psql with `ON_ERROR_STOP` after an error
//! at the start of a large restore) never gets its exit status to the client: the
//! container runtime sends the status only once it has copied all of stdin into the
//! process, and the exited process's stdin pipe is still held open by the runtime's shim,
//! so the copy waits forever once that pipe is full (`kubectl exec -i` hangs the same
//! way with 1 MB of stdin into `sh -c 'head -c 100 >/dev/null; exit 3'`). kube's
//! `AttachedProcess` made it worse: it awaits each stdin send inside its only loop, so
//! once a send waits it reads nothing either, not even stderr.
//!
//! So a command with stdin runs under [`WRAPPER`]: when it ends, the wrapper says so on
//! stderr (a line with a per-exec nonce and the exit status, which the reader takes out)
//! and reads stdin to its end. The reader task never waits for the writer; on that line
//! the writer stops sending stdin and closes it, the wrapper exits with the command's
//! status, and the status comes as usual.

use std::time::Duration;

use futures::{Sink, SinkExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::Api;
use kube::api::AttachParams;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, SimplexStream, WriteHalf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
/// v5 only: the next byte names a channel that has ended (our stdin).
const CLOSE: u8 = 255;

/// `sh -c WRAPPER sh NONCE COMMAND...`: runs COMMAND, then says `NONCE STATUS` on stderr
/// and reads the rest of stdin (the client stops sending when it reads that line).
pub const WRAPPER: &str =
    r#"m=$1; shift; "$@"; rc=$?; printf '%s %s\n' "$m" "$rc" >&2; cat >/dev/null; exit "$rc""#;

/// kube's interval: a ping keeps an idle connection (a long CREATE INDEX) open through
/// proxies and load balancers.
const PING_EVERY: Duration = Duration::from_secs(60);

/// A running remote command: its streams, its exit status, and the two tasks moving
/// frames. Dropping it ends the session.
pub struct Process {
    stdin: Option<WriteHalf<SimplexStream>>,
    stdout: Option<ReadHalf<SimplexStream>>,
    stderr: Option<ReadHalf<SimplexStream>>,
    status: Option<oneshot::Receiver<Status>>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Process {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl Process {
    /// Starts `command` in `pod` with `params`' streams and buffer sizes. With stdin, the
    /// command runs under [`WRAPPER`] unless `held`: the caller keeps stdin open, unused,
    /// until the status is in (see `exec::guard`).
    pub async fn start(
        pods: &Api<Pod>,
        pod: &str,
        command: &[String],
        params: &AttachParams,
        held: bool,
    ) -> kube::Result<Process> {
        let watched = params.stdin && params.stderr && !held;
        let nonce = format!("kubectl-db-exit-{:016x}", rand::random::<u64>());
        let command = if watched {
            let wrapper = ["sh", "-c", WRAPPER, "sh", &nonce].map(String::from);
            wrapper.into_iter().chain(command.iter().cloned()).collect()
        } else {
            command.to_vec()
        };
        let mut request = kube::core::Request::new(pods.resource_url())
            .exec(pod, command, params)
            .map_err(kube::Error::BuildRequest)?;
        request.extensions_mut().insert("exec");
        let connection = pods.clone().into_client().connect(request).await?;
        let closes_channels = connection.supports_stream_close();
        let (sink, frames) = connection.into_stream().split();

        let buffer = |size: Option<usize>| tokio::io::simplex(size.unwrap_or(1 << 16));
        let (stdin_reader, stdin) = buffer(params.max_stdin_buf_size);
        let (stdout, stdout_writer) = buffer(params.max_stdout_buf_size);
        let (stderr, stderr_writer) = buffer(params.max_stderr_buf_size);
        let (status_tx, status) = oneshot::channel();
        let (ended_tx, ended) = oneshot::channel();
        let reader = tokio::spawn(read_frames(
            frames,
            params.stdout.then_some(stdout_writer),
            params.stderr.then_some(stderr_writer),
            watched.then(|| EndLine::new(&nonce)),
            ended_tx,
            status_tx,
        ));
        let stdin_reader = params.stdin.then_some(stdin_reader);
        let writer = tokio::spawn(write_frames(sink, stdin_reader, ended, closes_channels));
        Ok(Process {
            stdin: params.stdin.then_some(stdin),
            stdout: params.stdout.then_some(stdout),
            stderr: params.stderr.then_some(stderr),
            status: Some(status),
            reader,
            writer,
        })
    }

    /// The command's stdin (once); shutting it down ends the remote stdin.
    pub fn stdin(&mut self) -> Option<WriteHalf<SimplexStream>> {
        self.stdin.take()
    }

    /// The command's stdout (once); it ends when the command has.
    pub fn stdout(&mut self) -> Option<ReadHalf<SimplexStream>> {
        self.stdout.take()
    }

    /// The command's stderr (once); it ends when the command has.
    pub fn stderr(&mut self) -> Option<ReadHalf<SimplexStream>> {
        self.stderr.take()
    }

    /// The exit status (once): `None` when the session ended without one.
    pub fn take_status(
        &mut self,
    ) -> Option<impl std::future::Future<Output = Option<Status>> + use<>> {
        self.status.take().map(|status| async { status.await.ok() })
    }

    /// Ends the session now: the remote command loses its streams.
    pub fn abort(&self) {
        self.reader.abort();
        self.writer.abort();
    }

    /// Waits until the session has ended (the status came, or the connection closed);
    /// output nobody reads any more is dropped meanwhile.
    pub async fn join(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.shutdown().await;
        }
        self.stdout = None;
        self.stderr = None;
        let _ = (&mut self.reader).await;
    }
}

/// Moves stdout and stderr frames into their pipes until the exit status or the end of
/// the connection. Output whose reader has gone is dropped, so the status still comes.
/// The wrapper's end line is taken out of stderr and reported on `ended`; a connection
/// that closes without a status (protocol v4 closes it with stdin) then still has one.
async fn read_frames(
    mut frames: impl Stream<Item = Result<Message, WsError>> + Unpin,
    mut stdout: Option<WriteHalf<SimplexStream>>,
    mut stderr: Option<WriteHalf<SimplexStream>>,
    mut end_line: Option<EndLine>,
    ended: oneshot::Sender<()>,
    status: oneshot::Sender<Status>,
) {
    let mut ended = Some(ended);
    let mut exit_code = None;
    while let Some(frame) = frames.next().await {
        let data = match frame {
            Ok(Message::Binary(data)) if data.len() > 1 => data,
            Ok(_) => continue,
            Err(err) => {
                tracing::debug!(%err, "exec connection failed");
                break;
            }
        };
        let (pipe, bytes) = match data[0] {
            STDOUT => (&mut stdout, data[1..].to_vec()),
            STDERR => match end_line.as_mut() {
                Some(end_line) => {
                    let (bytes, code) = end_line.push(&data[1..]);
                    if let Some(code) = code {
                        tracing::debug!(code, "the command ended; closing its stdin");
                        exit_code = Some(code);
                        ended.take().map(|ended| ended.send(()));
                    }
                    (&mut stderr, bytes)
                }
                None => (&mut stderr, data[1..].to_vec()),
            },
            STATUS => {
                match serde_json::from_slice::<Status>(&data[1..]) {
                    Ok(parsed) => {
                        let _ = status.send(parsed);
                    }
                    Err(err) => tracing::debug!(%err, "unreadable exec status"),
                }
                return finish(stdout, stderr, end_line).await;
            }
            channel => {
                tracing::trace!(channel, len = data.len(), "exec frame on another channel");
                continue;
            }
        };
        if let Some(writer) = pipe
            && writer.write_all(&bytes).await.is_err()
        {
            *pipe = None;
        }
    }
    if let Some(code) = exit_code {
        let _ = status.send(status_of(code));
    }
    finish(stdout, stderr, end_line).await;
}

/// Ends stdout and stderr (with what stderr still held back).
async fn finish(
    stdout: Option<WriteHalf<SimplexStream>>,
    mut stderr: Option<WriteHalf<SimplexStream>>,
    end_line: Option<EndLine>,
) {
    if let (Some(pipe), Some(end_line)) = (stderr.as_mut(), end_line) {
        let _ = pipe.write_all(&end_line.held).await;
    }
    for mut pipe in [stdout, stderr].into_iter().flatten() {
        let _ = pipe.shutdown().await;
    }
}

/// The status the API server sends for `code`, for a session that ended without one.
fn status_of(code: i32) -> Status {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, StatusDetails};
    if code == 0 {
        return Status {
            status: Some("Success".into()),
            ..Status::default()
        };
    }
    Status {
        status: Some("Failure".into()),
        message: Some(format!(
            "command terminated with non-zero exit code: {code}"
        )),
        reason: Some("NonZeroExitCode".into()),
        details: Some(StatusDetails {
            causes: Some(vec![StatusCause {
                reason: Some("ExitCode".into()),
                message: Some(code.to_string()),
                ..StatusCause::default()
            }]),
            ..StatusDetails::default()
        }),
        ..Status::default()
    }
}

/// Finds the wrapper's `NONCE STATUS` line in stderr and takes it out. Holds back the
/// last bytes of stderr that could be the start of it.
struct EndLine {
    nonce: Vec<u8>,
    held: Vec<u8>,
    found: bool,
}

impl EndLine {
    fn new(nonce: &str) -> Self {
        EndLine {
            nonce: nonce.as_bytes().to_vec(),
            held: Vec::new(),
            found: false,
        }
    }

    /// Takes the next stderr bytes; returns those to pass on, and the exit status once the
    /// whole line has come.
    fn push(&mut self, data: &[u8]) -> (Vec<u8>, Option<i32>) {
        if self.found {
            return (data.to_vec(), None);
        }
        self.held.extend_from_slice(data);
        let at = self
            .held
            .windows(self.nonce.len())
            .position(|w| w == self.nonce.as_slice());
        let Some(at) = at else {
            // Keep what could be the start of the line: the nonce and a status.
            let keep = self.nonce.len() + 16;
            let pass = self.held.len().saturating_sub(keep);
            return (self.held.drain(..pass).collect(), None);
        };
        let rest = &self.held[at + self.nonce.len()..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return (self.held.drain(..at).collect(), None);
        };
        let code = std::str::from_utf8(&rest[..end])
            .ok()
            .and_then(|text| text.trim().parse().ok());
        let after = at + self.nonce.len() + end + 1;
        let mut pass: Vec<u8> = self.held[..at].to_vec();
        pass.extend_from_slice(&self.held[after..]);
        self.held.clear();
        self.found = true;
        // An unreadable status is still the end: the real status follows.
        (pass, Some(code.unwrap_or(-1)))
    }
}

/// Sends stdin in frames (then its end) and a ping every minute. Stops sending stdin when
/// the command has `ended` (its wrapper reads the rest, but nobody needs it). A send may
/// wait for long: only this task waits then.
async fn write_frames(
    mut sink: impl Sink<Message, Error = WsError> + Unpin,
    mut stdin: Option<ReadHalf<SimplexStream>>,
    mut ended: oneshot::Receiver<()>,
    closes_channels: bool,
) {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let mut buf = vec![0u8; 64 << 10];
    let mut ending = false;
    loop {
        let read = async {
            match stdin.as_mut() {
                Some(stdin) => stdin.read(&mut buf[1..]).await,
                None => std::future::pending().await,
            }
        };
        let message = tokio::select! {
            _ = ping.tick() => Message::Ping(Default::default()),
            result = &mut ended, if !ending => {
                ending = true;
                // Err: the reader is done, the session with it.
                match (result, stdin.take()) {
                    (Ok(()), Some(_)) => close_stdin(),
                    (_, open) => {
                        stdin = open;
                        continue;
                    }
                }
            }
            read = read => match read {
                Ok(n) if n > 0 => {
                    buf[0] = STDIN;
                    Message::binary(buf[..=n].to_vec())
                }
                _ => {
                    stdin = None;
                    close_stdin()
                }
            },
        };
        // The end of stdin: v5 closes the channel; before v5 only closing the whole
        // connection tells the server (later output may be lost then).
        if message == close_stdin() && !closes_channels {
            let _ = sink.close().await;
            return;
        }
        if let Err(err) = sink.send(message).await {
            tracing::debug!(%err, "exec connection failed while sending");
            return;
        }
    }
}

fn close_stdin() -> Message {
    Message::binary(vec![CLOSE, STDIN])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_line_is_found_across_frames_and_taken_out() {
        let nonce = "kubectl-db-exit-00000000000000ff";
        let stderr = format!("ERROR:  syntax error\nLINE 1: x\n{nonce} 3\n");
        for cut in 1..stderr.len() {
            let mut end_line = EndLine::new(nonce);
            let (mut passed, first) = end_line.push(&stderr.as_bytes()[..cut]);
            let (more, second) = end_line.push(&stderr.as_bytes()[cut..]);
            passed.extend(more);
            passed.extend(&end_line.held);
            assert_eq!(first.or(second), Some(3), "cut at {cut}");
            assert_eq!(passed, b"ERROR:  syntax error\nLINE 1: x\n", "cut at {cut}");
        }
        // Without the line everything passes, the held-back tail at the end.
        let mut end_line = EndLine::new(nonce);
        let (mut passed, code) = end_line.push(b"just an error\n");
        passed.extend(&end_line.held);
        assert_eq!((passed.as_slice(), code), (&b"just an error\n"[..], None));
    }

    #[test]
    fn a_session_without_a_status_reports_the_end_lines() {
        assert!(crate::exec::ExecStatus::from_status(Some(status_of(0))).success());
        let failed = crate::exec::ExecStatus::from_status(Some(status_of(3)));
        assert_eq!(failed.to_string(), "exit status 3");
    }

    #[test]
    fn the_wrapper_keeps_the_status_and_reads_stdin_to_its_end() {
        let run = |input: &str| {
            let mut child = std::process::Command::new("sh")
                .args([
                    "-c",
                    WRAPPER,
                    "sh",
                    "NONCE",
                    "sh",
                    "-c",
                    "head -c 3; exit 4",
                ])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        };
        // 1 MiB more than the command reads: the wrapper reads it, or this would block.
        let output = run(&"x".repeat(1 << 20));
        assert_eq!(output.status.code(), Some(4));
        assert_eq!(output.stdout, b"xxx");
        assert_eq!(output.stderr, b"NONCE 4\n");
    }
}
