//! Running this package's binaries: a clean environment, their exit code and output, JSON
//! reports, signals, and waits with a deadline.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A binary of this package with the environment cleared (no user kubeconfig, no colour,
/// fixed terminal width), so results do not depend on the machine.
pub fn clean_command(name: &str) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin(name));
    let home = std::env::temp_dir().join("kdb-test-home");
    let _ = std::fs::create_dir_all(&home);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "120");
    cmd
}

/// [`clean_command`] for assert_cmd: run to its end.
pub fn clean_bin(name: &str) -> assert_cmd::Command {
    assert_cmd::Command::from_std(clean_command(name))
}

/// Starts a command in the background: no terminal on stdin (closed, as `</dev/null`), its
/// stdout and stderr piped for [`wait_bounded`] or `wait_with_output`.
pub fn spawn(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Bytes as text, invalid UTF-8 replaced.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A finished run as (exit code, stdout, stderr); no exit code when a signal ended it.
pub fn split(output: Output) -> (Option<i32>, String, String) {
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

/// Runs `cmd` to its end: (exit code, -1 when a signal ended it; stdout; stderr).
pub fn output(cmd: &mut assert_cmd::Command) -> (i32, String, String) {
    let (code, stdout, stderr) = split(cmd.output().unwrap());
    (code.unwrap_or(-1), stdout, stderr)
}

/// The program's name and arguments, for messages.
fn describe(cmd: &assert_cmd::Command) -> String {
    let program = Path::new(cmd.get_program()).file_name().unwrap_or_default();
    let args: Vec<_> = cmd.get_args().collect();
    format!("{} {args:?}", program.display())
}

/// Runs `cmd` to its end; panics with its stderr unless it exits with `code`.
pub fn assert_exit(cmd: &mut assert_cmd::Command, code: i32) -> Output {
    let what = describe(cmd);
    exited(cmd.output().unwrap(), code, &what)
}

/// Runs `cmd` to its end; panics unless it was refused: exit 1 (failed) or 2 (usage). Its
/// stderr.
pub fn refused(cmd: &mut assert_cmd::Command) -> String {
    let what = describe(cmd);
    let (code, stdout, stderr) = split(cmd.output().unwrap());
    assert!(
        matches!(code, Some(1 | 2)),
        "{what} was not refused: exit {code:?}\n{stdout}{stderr}"
    );
    stderr
}

/// Panics with `what` and the stderr unless the run exited with `code`; the output.
pub fn exited(output: Output, code: i32, what: &str) -> Output {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: {}",
        text(&output.stderr)
    );
    output
}

/// Runs `cmd -o json`; panics with its stderr unless it exits 0, and returns the report.
pub fn json(cmd: &mut assert_cmd::Command) -> Value {
    let output = assert_exit(cmd.args(["-o", "json"]), 0);
    let document: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", text(&output.stdout)));
    if document["apiVersion"] == "kubectl-db/v1" {
        assert_valid(&document);
    }
    document
}

/// docs/schema/: the JSON Schema of each report, by `kind`.
pub fn schema_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schema")
}

/// Panics unless `document` (a report printed with `-o json`) is valid under the
/// committed schema of its `kind`.
pub fn assert_valid(document: &Value) {
    let kind = document["kind"].as_str().expect("a report with a kind");
    let path = schema_dir().join(format!("{kind}.json"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(document)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{kind} output does not match {}:\n{}\n{document:#}",
        path.display(),
        errors.join("\n")
    );
}

/// Sends `signal` (INT, TERM, STOP...) to a process.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Waits for a child up to `limit`, collecting its output; kills it and returns None when
/// it is still running then.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<Output> {
    wait_sampling(child, limit, |_| {})
}

/// [`wait_bounded`] that calls `sample(pid)` every 20 ms while the child runs. The pipes are
/// drained on threads meanwhile, so a chatty child never blocks on a full pipe.
pub fn wait_sampling(
    child: &mut Child,
    limit: Duration,
    mut sample: impl FnMut(u32),
) -> Option<Output> {
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    // No deadline past what an Instant can hold (`Duration::MAX`: wait to the end).
    let deadline = Instant::now().checked_add(limit);
    let status = loop {
        sample(child.id());
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if deadline.is_some_and(|deadline| Instant::now() > deadline) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    status.map(|status| Output {
        status,
        stdout,
        stderr,
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits for a child to its end and returns its output and its peak RSS in KiB (VmHWM,
/// sampled from /proc while it runs).
pub fn wait_with_peak_rss(mut child: Child) -> (Output, u64) {
    let mut peak = 0u64;
    let output = wait_sampling(&mut child, Duration::MAX, |pid| {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
    });
    (output.expect("no limit"), peak)
}

/// Waits until `file` holds `bytes` or more (a dump is streaming into it) while `child`
/// still runs.
pub fn wait_for_bytes(child: &mut Child, file: &Path, bytes: u64, within: Duration) {
    let deadline = Instant::now() + within;
    while std::fs::metadata(file).map(|m| m.len()).unwrap_or(0) < bytes {
        assert!(
            Instant::now() < deadline,
            "{} never reached {bytes} bytes: the command never started",
            file.display()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the command ended before {} reached {bytes} bytes",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the child's first stderr line, which must start with `first_line`, sends
/// `signal` `delay` later, and returns how it ended and the rest of its stderr.
pub fn signal_after_line(
    mut child: Child,
    first_line: &str,
    delay: Duration,
    sig: &str,
) -> (Output, String) {
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with(first_line), "{line}");
    std::thread::sleep(delay);
    signal(child.id(), sig);
    let output = child.wait_with_output().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    (output, rest)
}
