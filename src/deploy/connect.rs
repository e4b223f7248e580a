//! `kubectl dbdeploy connect NAME [-- ARGS]`: the engine's own client (psql, mysql or
//! mariadb) inside the database's pod over exec. On a terminal it gets a TTY (the local
//! terminal in raw mode, its size followed); otherwise stdin, stdout and stderr are piped
//! as they are, so scripts can run it. The client's exit status becomes ours. The password
//! stays in the container: the client's script reads it from the container's environment.

use std::io::{IsTerminal, Read};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{AttachParams, TerminalSize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::client::Kube;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::exec::{self, ExecStatus};
use crate::target;

/// Opens the client in `name` (a StatefulSet or pod) as the application user, or the
/// superuser with `admin`, with `args` after the client's own. Returns the client's exit
/// status.
pub async fn connect(kube: &Kube, name: &str, admin: bool, args: &[String]) -> Result<i32> {
    let (pod, engine, container) = resolve(kube, name).await?;
    let pod = &pod;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let command = engine.commands().client(admin, &args);
    let pods = kube.exec_pods();
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let status = if terminal {
        on_terminal(&pods, pod, &container, &command).await?
    } else {
        piped(&pods, pod, &container, &command).await?
    };
    let what = format!("{engine} client");
    match status {
        ExecStatus::Success => Ok(0),
        ExecStatus::Failure {
            code: Some(code), ..
        } => Ok(code),
        status => Err(Error::Exec {
            pod: pod.clone(),
            what,
            detail: status.to_string(),
        }),
    }
}

/// The pod, engine and container of `name`: a StatefulSet's pod `-0` (read from the
/// StatefulSet alone, so dbdeploy's Role, which has no `get` on pods, is enough), else a
/// pod by name.
async fn resolve(kube: &Kube, name: &str) -> Result<(String, Engine, String)> {
    let ns = &kube.namespace;
    let api: Api<StatefulSet> = kube.api();
    let sts = api
        .get_opt(name)
        .await
        .map_err(Error::api(format!("read StatefulSet {ns}/{name}")))?;
    if let Some((engine, container)) = sts.as_ref().and_then(target::statefulset_engine) {
        return Ok((format!("{name}-0"), engine, container));
    }
    let target = target::resolve(kube, name, None).await?;
    if target.pod.is_none() {
        return Err(Error::NotFound(format!(
            "pod {ns}/{} does not exist (StatefulSet {name} scaled to zero, or still starting)",
            target.pod_name
        )));
    }
    Ok((target.pod_name, target.engine, target.container))
}

/// Local stdin, read on a thread of its own: a read blocked on a terminal must neither
/// hold up the exit (tokio's stdin would: the runtime waits for its blocking reads) nor
/// the session's end.
fn stdin_chunks() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || tx.blocking_send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Writes local stdin to the remote one, then closes it.
async fn feed(mut remote: Option<impl AsyncWrite + Unpin>) {
    let Some(writer) = remote.as_mut() else {
        return;
    };
    let mut chunks = stdin_chunks();
    while let Some(chunk) = chunks.recv().await {
        if writer.write_all(&chunk).await.is_err() || writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Copies a remote stream out as it comes (flushed per chunk, for prompts).
async fn pump(reader: Option<impl AsyncRead + Unpin>, mut writer: impl AsyncWrite + Unpin) {
    let Some(mut reader) = reader else {
        return;
    };
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 || writer.write_all(&buf[..n]).await.is_err() || writer.flush().await.is_err() {
            break;
        }
    }
}

/// No TTY: stdout and stderr kept apart, stdin forwarded to its end.
async fn piped(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    command: &[String],
) -> Result<ExecStatus> {
    let mut process = exec::start(pods, pod, Some(container), command, true).await?;
    let status = process.take_status();
    let out = pump(process.stdout(), tokio::io::stdout());
    let err = pump(process.stderr(), tokio::io::stderr());
    let input = feed(process.stdin());
    let (status, (), ()) = tokio::join!(exec::feed_until_status(input, status), out, err);
    Ok(ExecStatus::from_status(status))
}

/// Raw mode on the local terminal for as long as the session lasts.
struct RawMode;

impl RawMode {
    fn on() -> Result<RawMode> {
        crossterm::terminal::enable_raw_mode().map_err(|source| Error::Io {
            action: "set raw mode on",
            path: "the terminal".into(),
            source,
        })?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// The local terminal's size, as the exec's resize channel takes it.
fn terminal_size() -> Option<TerminalSize> {
    crossterm::terminal::size()
        .ok()
        .map(|(width, height)| TerminalSize { width, height })
}

/// Follows the local terminal's size (SIGWINCH) until the session ends.
async fn follow_size(sender: Option<futures::channel::mpsc::Sender<TerminalSize>>) {
    use futures::SinkExt;
    let Some(mut sender) = sender else {
        return;
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut resized) = signal(SignalKind::window_change()) else {
            return;
        };
        while resized.recv().await.is_some() {
            let Some(size) = terminal_size() else {
                return;
            };
            if sender.send(size).await.is_err() {
                return;
            }
        }
    }
}

/// A TTY (stdout and stderr are one stream there), the local terminal in raw mode.
async fn on_terminal(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    command: &[String],
) -> Result<ExecStatus> {
    tracing::debug!(pod, command = %exec::loggable(command), "exec with a TTY");
    let params = AttachParams::interactive_tty().container(container);
    let mut process = pods
        .exec(pod, command.to_vec(), &params)
        .await
        .map_err(Error::api(format!("exec into pod {pod}")))?;
    let raw = RawMode::on()?;
    let status = process.take_status();
    let mut resize = process.terminal_size();
    // The size goes before any input: a program that answers typed-ahead input at once
    // (psql choosing whether to page) must not see the 0x0 terminal the exec starts with.
    if let (Some(sender), Some(size)) = (resize.as_mut(), terminal_size()) {
        use futures::SinkExt;
        let _ = sender.send(size).await;
    }
    let out = pump(process.stdout(), tokio::io::stdout());
    let session =
        async { tokio::join!(exec::feed_until_status(feed(process.stdin()), status), out).0 };
    // The size follows until the session ends, whichever comes first.
    let status = tokio::select! {
        status = session => status,
        () = async { follow_size(resize).await; std::future::pending().await } => None,
    };
    drop(raw);
    Ok(ExecStatus::from_status(status))
}
