//! One exec over the API server's WebSocket (the channel protocol: a first byte names
//! stdin 0, stdout 1, stderr 2, the exit status 3, and in v5 255 closes a channel), with
//! reading and writing in two tasks.
//!
//! kube's `AttachedProcess` drives both directions from one loop and awaits each stdin
//! frame's send inside it. When the remote command stops reading stdin early (psql with
//! `ON_ERROR_STOP` after an error at the start of a large restore), the connection's
//! send side fills up, that send never completes, and the loop stops reading too: the
//! error on stderr and the exit status the server sends arrive and are never read, so the
//! client waits until its timeout. Here the reader task never waits for the writer: the
//! status ends the session at once, whatever stdin still holds.

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
    /// Starts `command` in `pod` with `params`' streams and buffer sizes.
    pub async fn start(
        pods: &Api<Pod>,
        pod: &str,
        command: &[String],
        params: &AttachParams,
    ) -> kube::Result<Process> {
        let mut request = kube::core::Request::new(pods.resource_url())
            .exec(pod, command.to_vec(), params)
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
        let reader = tokio::spawn(read_frames(
            frames,
            params.stdout.then_some(stdout_writer),
            params.stderr.then_some(stderr_writer),
            status_tx,
        ));
        let stdin_reader = params.stdin.then_some(stdin_reader);
        let writer = tokio::spawn(write_frames(sink, stdin_reader, closes_channels));
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
async fn read_frames(
    mut frames: impl Stream<Item = Result<Message, WsError>> + Unpin,
    mut stdout: Option<WriteHalf<SimplexStream>>,
    mut stderr: Option<WriteHalf<SimplexStream>>,
    status: oneshot::Sender<Status>,
) {
    while let Some(frame) = frames.next().await {
        let data = match frame {
            Ok(Message::Binary(data)) if data.len() > 1 => data,
            Ok(_) => continue,
            Err(err) => {
                tracing::debug!(%err, "exec connection failed");
                break;
            }
        };
        let pipe = match data[0] {
            STDOUT => &mut stdout,
            STDERR => &mut stderr,
            STATUS => {
                match serde_json::from_slice::<Status>(&data[1..]) {
                    Ok(parsed) => {
                        let _ = status.send(parsed);
                    }
                    Err(err) => tracing::debug!(%err, "unreadable exec status"),
                }
                break;
            }
            _ => continue,
        };
        if let Some(writer) = pipe
            && writer.write_all(&data[1..]).await.is_err()
        {
            *pipe = None;
        }
    }
    for mut pipe in [stdout, stderr].into_iter().flatten() {
        let _ = pipe.shutdown().await;
    }
}

/// Sends stdin in frames (then its end) and a ping every minute. A send may wait for
/// long, even forever, when the remote stops reading: only this task waits then.
async fn write_frames(
    mut sink: impl Sink<Message, Error = WsError> + Unpin,
    mut stdin: Option<ReadHalf<SimplexStream>>,
    closes_channels: bool,
) {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let read = async {
            match stdin.as_mut() {
                Some(stdin) => stdin.read(&mut buf[1..]).await,
                None => std::future::pending().await,
            }
        };
        let message = tokio::select! {
            _ = ping.tick() => Message::Ping(Default::default()),
            read = read => match read {
                Ok(n) if n > 0 => {
                    buf[0] = STDIN;
                    Message::binary(buf[..=n].to_vec())
                }
                // The end of stdin: v5 closes the channel; before v5 only closing the
                // whole connection tells the server (later output may be lost then).
                _ => {
                    stdin = None;
                    if !closes_channels {
                        let _ = sink.close().await;
                        return;
                    }
                    Message::binary(vec![CLOSE, STDIN])
                }
            },
        };
        if let Err(err) = sink.send(message).await {
            tracing::debug!(%err, "exec connection failed while sending");
            return;
        }
    }
}
