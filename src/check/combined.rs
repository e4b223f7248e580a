//! The in-container checks of one database in ONE exec. Each exec is a WebSocket through
//! the API server and kubelet plus a process the runtime starts in the container; five of
//! them per database queue on a small node. So one `sh` runs the parts one after another,
//! each between a start and an end marker (on stdout and on stderr) that carry a per-run
//! nonce, and the end marker carries the part's exit status and milliseconds.
//!
//! A part counts only when both streams hold its complete, well-formed frame; anything
//! else (the exec refused, no `sh`, a part killed or cut by the deadline, output past the
//! caps, a command the shell could not start) leaves that part to [`super::collect`],
//! which runs it on its own exec exactly as before. So every part's [`Run`] is what its
//! own exec would have returned, or the part is run on its own exec.

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::io::{AsyncRead, ReadBuf};

use super::facts::Run;
use crate::exec::{self, Captured, Keep, STDERR_KEEP, STDOUT_KEEP};

/// The in-container checks, in the order the combined run takes them: the ones that can
/// hang (a server that does not answer, a probe that waits) last, so they cannot hold
/// back the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartName {
    Permissions,
    Volume,
    Status,
    Sql,
    Readiness,
}

impl PartName {
    fn as_str(self) -> &'static str {
        match self {
            PartName::Permissions => "permissions",
            PartName::Volume => "volume",
            PartName::Status => "status",
            PartName::Sql => "sql",
            PartName::Readiness => "readiness",
        }
    }
}

/// One check's command, as its own exec would run it.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    pub name: PartName,
    pub argv: &'a [String],
    /// What its own exec feeds on stdin (the SQL); `None`: no stdin.
    pub stdin: Option<&'a str>,
}

impl<'a> Part<'a> {
    pub fn new(name: PartName, argv: &'a [String], stdin: Option<&'a str>) -> Self {
        Part { name, argv, stdin }
    }
}

/// `sh -c SCRIPT sh MARK LIMIT (NAME COUNT STDIN ARGV...)...`. Each part's argv is run
/// intact as `"$@"` of a function (its first COUNT words), under the image's `timeout`
/// when it has a working one (LIMIT whole seconds: GNU's and busybox's syntax alike); with
/// `exec` otherwise, so a builtin or function of the same name never stands in for the
/// program. A part with STDIN `-` reads /dev/null, as an exec without stdin does; else
/// it reads `=` and the text after it (the SQL), through `printf`. Variables are `_kdb_`-prefixed:
/// assigning one the container's environment also has would change it for the parts.
/// Times come from /proc/uptime, read by the shell itself (a `date` per mark was a tenth of
/// the processes an exec starts; its steps are 10 ms); where it cannot be read the end
/// marker says `-`.
/// No file is written (read-only root file systems), not even a here-document.
const SCRIPT: &str = r#"_kdb_m=$1 _kdb_t=$2
shift 2
_kdb_tm=
if command -v timeout >/dev/null 2>&1 && timeout "$_kdb_t" true >/dev/null 2>&1; then _kdb_tm=1; fi
_kdb_now() {
  _kdb_x=- _kdb_u=
  read -r _kdb_u _kdb_r 2>/dev/null </proc/uptime
  case $_kdb_u in [1-9]*.[0-9][0-9]) _kdb_x=${_kdb_u%.*}${_kdb_u#*.}0 ;; esac
  case $_kdb_x in *[!0-9]*) _kdb_x=- ;; esac
}
_kdb_exec() {
  if [ -n "$_kdb_tm" ]; then timeout "$_kdb_t" "$@"; else (exec "$@"); fi
}
_kdb_part() {
  _kdb_name=$1 _kdb_c=$2 _kdb_q=$3 _kdb_i=0
  shift 3
  for _kdb_a in "$@"; do
    if [ "$_kdb_i" -lt "$_kdb_c" ]; then set -- "$@" "$_kdb_a"; fi
    shift
    _kdb_i=$((_kdb_i + 1))
  done
  printf '\n%s %s start\n' "$_kdb_m" "$_kdb_name"
  printf '\n%s %s start\n' "$_kdb_m" "$_kdb_name" >&2
  _kdb_now
  _kdb_s=$_kdb_x
  if [ "$_kdb_q" != - ]; then
    printf '%s' "${_kdb_q#=}" | _kdb_exec "$@"
  else
    _kdb_exec "$@" </dev/null
  fi
  _kdb_rc=$?
  _kdb_now
  _kdb_ms=-
  if [ "$_kdb_s" != - ] && [ "$_kdb_x" != - ]; then _kdb_ms=$((_kdb_x - _kdb_s)); fi
  printf '\n%s %s end %s %s\n' "$_kdb_m" "$_kdb_name" "$_kdb_rc" "$_kdb_ms"
  printf '\n%s %s end %s %s\n' "$_kdb_m" "$_kdb_name" "$_kdb_rc" "$_kdb_ms" >&2
}
while [ "$#" -gt 1 ]; do
  _kdb_part "$@"
  _kdb_n=$2
  shift 3
  shift "$_kdb_n"
done
exit 0"#;

/// The marker of one run: unguessable by the parts, so their output cannot forge it.
pub fn mark(nonce: u64) -> String {
    format!("@kdb-part-{nonce:016x}")
}

/// The whole seconds `timeout` gets: at least the exec timeout (parts that reach it are
/// run again on their own exec anyway), and at least 1 (0 would mean no limit).
fn limit_seconds(limit: Duration) -> u64 {
    limit.as_millis().div_ceil(1000).max(1) as u64
}

/// The combined command. Values (the SQL, mount paths, the probe's argv) are arguments,
/// never script text.
pub fn command(mark: &str, limit: Duration, parts: &[Part]) -> Vec<String> {
    let mut argv: Vec<String> = ["sh", "-c", SCRIPT, "sh", mark].map(String::from).to_vec();
    argv.push(limit_seconds(limit).to_string());
    for part in parts {
        argv.push(part.name.as_str().to_string());
        argv.push(part.argv.len().to_string());
        argv.push(part.stdin.map_or("-".into(), |text| format!("={text}")));
        argv.extend(part.argv.iter().cloned());
    }
    argv
}

/// One part's frame in one stream: its bytes, exit status and the milliseconds the end
/// marker gave (`None`: `-`).
fn frame<'a>(mark: &str, name: PartName, stream: &'a [u8]) -> Option<(&'a [u8], i32, Option<u64>)> {
    let start = format!("\n{mark} {} start\n", name.as_str());
    let end = format!("\n{mark} {} end ", name.as_str());
    let begin = find(stream, start.as_bytes())? + start.len();
    let length = find(&stream[begin..], end.as_bytes())?;
    let tail = &stream[begin + length + end.len()..];
    let line = &tail[..find(tail, b"\n")?];
    let (code, millis) = std::str::from_utf8(line).ok()?.split_once(' ')?;
    let millis = match millis {
        "-" => None,
        ms => Some(ms.parse().ok()?),
    };
    Some((&stream[begin..begin + length], code.parse().ok()?, millis))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Splits a combined run's output into each part's [`Run`], `None` for a part without a
/// complete result there. `whole_millis` (the combined exec's time) stands in where the
/// shell could not time a part.
pub fn parse(
    mark: &str,
    stdout: &Captured,
    stderr: &Captured,
    names: &[PartName],
    limit: Duration,
    whole_millis: u64,
) -> Vec<Option<Run>> {
    let limit = limit.as_millis() as u64;
    names
        .iter()
        .map(|&name| {
            let (out, code, millis) = frame(mark, name, &stdout.bytes)?;
            let (err, err_code, _) = frame(mark, name, &stderr.bytes)?;
            // Past a cap: its own exec would have cut it and said so.
            if code != err_code || out.len() > STDOUT_KEEP || err.len() > STDERR_KEEP {
                return None;
            }
            // 125-127: `timeout` or the shell could not start it, where the runtime
            // reports it its own way.
            if (125..=127).contains(&code) {
                return None;
            }
            let millis = millis.unwrap_or(whole_millis);
            // As long as the limit: killed, or would have been on its own exec.
            if millis >= limit {
                return None;
            }
            Some(Run {
                success: code == 0,
                status: format!("exit status {code}"),
                stdout: String::from_utf8_lossy(out).trim().to_string(),
                stderr: String::from_utf8_lossy(err).trim().to_string(),
                millis,
            })
        })
        .collect()
}

/// Runs the parts in one exec. Starting it (the runtime's own queue on a busy node) gets
/// `limit`, and the parts, from their first output on, `limit` in all: what arrived before
/// that still counts, so a part that hangs costs only itself and the parts after it.
pub async fn run(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    parts: &[Part<'_>],
    limit: Duration,
) -> Vec<Option<Run>> {
    let names: Vec<PartName> = parts.iter().map(|p| p.name).collect();
    let mark = mark(rand::random());
    let argv = command(&mark, limit, parts);
    let started = tokio::time::Instant::now();
    let first_output = OnceLock::new();
    let mut stdout = Captured::default();
    let mut stderr = Captured::default();
    {
        let work = async {
            let mut process = exec::start(pods, pod, Some(container), &argv, false).await?;
            let status = process.take_status();
            let out = process.stdout().map(|inner| Noticed {
                inner,
                first: &first_output,
            });
            let (status, (), ()) = tokio::join!(
                async move {
                    match status {
                        Some(status) => status.await,
                        None => None,
                    }
                },
                exec::capture_into(out, Keep::Head(STDOUT_KEEP), &mut stdout),
                exec::capture_into(process.stderr(), Keep::Tail(STDERR_KEEP), &mut stderr),
            );
            process.join().await;
            Ok::<_, crate::error::Error>(exec::ExecStatus::from_status(status))
        };
        tokio::pin!(work);
        loop {
            let deadline = *first_output.get().unwrap_or(&started) + limit;
            match tokio::time::timeout_at(deadline, &mut work).await {
                Ok(Ok(status)) => tracing::debug!(pod, %status, "combined checks done"),
                Ok(Err(err)) => {
                    tracing::debug!(pod, err = %err.chain_with_hint(), "combined checks not run")
                }
                // The parts began just before the first deadline: they get theirs.
                Err(_) if first_output.get().is_some_and(|at| *at + limit > deadline) => {
                    continue;
                }
                Err(_) => tracing::debug!(pod, "combined checks cut at the exec timeout"),
            }
            break;
        }
    }
    let whole = started.elapsed().as_millis() as u64;
    parse(&mark, &stdout, &stderr, &names, limit, whole)
}

/// A reader that notes when its first bytes came.
struct Noticed<'a, R> {
    inner: R,
    first: &'a OnceLock<tokio::time::Instant>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Noticed<'_, R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let _ = self.first.set(tokio::time::Instant::now());
        }
        poll
    }
}

#[cfg(test)]
#[path = "combined_tests.rs"]
mod tests;
