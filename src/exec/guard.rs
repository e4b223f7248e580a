//! A long command (a dump) that ends in the pod when its client goes away.
//!
//! An exec's processes outlive its connection: a dump whose client was interrupted,
//! killed or cut off stayed blocked writing to an exec stdout nobody read, pg_dump's COPY
//! holding its snapshot (vacuum held back) and a lock on every table (no `ALTER`, `DROP`
//! or `TRUNCATE`) until the kubelet's streaming timeout, hours later.
//!
//! So a guarded command runs with stdin from the client held open, unused, until its
//! status has arrived: stdin's end while it runs means the client is gone. Killing the
//! dump itself is not safe where the database server is the container's first process
//! (the postgres image): every orphan is its child, and PostgreSQL takes any child that
//! exits other than 0 or 1 for a crashed backend and restarts the whole server. So
//! nothing is signalled but two relays (`cat`) that carry the command's stdout and
//! stderr: their parents, in this script, reap them; the command's next write then gets
//! SIGPIPE, and it ends one process at a time, each reaped by its own parent.

/// `sh -c GUARD sh COMMAND...`. The relays say their PIDs (`o PID`, `e PID`) and the
/// command its status (`s STATUS`) on a pipe of their own to the last process of the
/// pipeline, which watches stdin once both relays are known and exits with the command's
/// status. The stderr relay goes first: the command, blocked on stdout, has written
/// nothing more to stderr by then, and whatever it writes after stdout's relay is gone
/// ends it too. Once that pipe ends (the command and both relays are done) it stops its
/// watcher and reaps it: stdin closed by the client after the status then ends nothing.
/// Descriptors: 3 the exec's stdin, 4 its stdout, 6 its stderr, 8 the pipe to the stderr
/// relay, 9 the status pipe. The shells' own stderr is /dev/null: their notes on a killed relay
/// ("Terminated") would go to a stderr that nobody may read any more, and could block.
pub const GUARD: &str = r#"exec 3<&0 4>&1 6>&2
{
  {
    { "$@" </dev/null 2>&8 3<&- 4>&- 6>&- 8>&- 9>&-; echo "s $?" >&9; } |
      sh -c 'echo "o $$" >&9; exec cat' >&4 3<&- 6>&- 8>&-
  } 8>&1 | sh -c 'echo "e $$" >&9; exec cat' >&6 3<&- 4>&-
} 2>/dev/null 9>&1 | {
  o= e= s=1 w=
  while read -r k v; do
    case $k in
      o) o=$v ;;
      e) e=$v ;;
      s) s=$v ;;
    esac
    if [ -z "$w" ] && [ -n "$o" ] && [ -n "$e" ]; then
      { while read -r _; do :; done <&3; kill -TERM "$e"; kill -TERM "$o"; } >/dev/null 2>&1 &
      w=$!
    fi
  done
  [ -z "$w" ] || { kill "$w"; wait "$w"; } 2>/dev/null
  exit "$s"
}"#;

/// `argv` run under [`GUARD`].
pub fn guarded(argv: &[String]) -> Vec<String> {
    let mut wrapped = crate::exec::script_command(GUARD, &[]);
    wrapped.extend(argv.iter().cloned());
    wrapped
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::guarded;

    fn wait(child: &mut Child) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The PID the command wrote to `path`, once it has.
    fn started(path: &Path) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(Instant::now() < deadline, "the command never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::read_to_string(path).unwrap().trim().to_string()
    }

    /// `sh -c SCRIPT` under the guard, its PID in `pid`, its output on stdout and stderr.
    fn spawn(script: &str, pid: &Path, stdout: Stdio) -> Child {
        let script = format!(r#"echo $$ >"$1.tmp"; mv "$1.tmp" "$1"; {script}"#);
        let argv = guarded(&[
            "sh".into(),
            "-c".into(),
            script,
            "sh".into(),
            pid.display().to_string(),
        ]);
        Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn gone(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_err()
    }

    /// With stdin held open the command's output, error output and status pass through
    /// whole; stdin closed after it ended ends nothing.
    #[test]
    fn a_guarded_command_passes_its_streams_and_status() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dir.path().join("pid");
        let mut child = spawn(
            "head -c 300000 /dev/zero | tr '\\0' x; echo said >&2; exit 5",
            &pid,
            Stdio::piped(),
        );
        let mut out = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = wait(&mut child);
        drop(child.stdin.take());
        assert_eq!(status.code(), Some(5));
        assert_eq!(out.len(), 300_000);
        assert!(out.iter().all(|&b| b == b'x'));
        assert_eq!(err, "said\n");
    }

    /// A command blocked writing to a stdout nobody reads (the client went away) ends once
    /// stdin closes, and everything it started with it, each reaped by its parent: the
    /// guard exits only after all of them (none is left to the container's first
    /// process). Its status then is nobody's: a relay dies when the scheduler lets it, so
    /// a last write may still land in its pipe first.
    #[test]
    fn a_guarded_command_ends_when_its_stdin_closes() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dir.path().join("pid");
        let (reader, writer) = std::io::pipe().unwrap();
        // Writes until its stdout's pipe is full, then waits; a second process in the pipe.
        let mut child = spawn("yes dump | cat; echo after >&2", &pid, Stdio::from(writer));
        let command = started(&pid);
        std::thread::sleep(Duration::from_millis(300));
        assert!(!gone(&command), "the command ended on its own");
        drop(child.stdin.take());
        wait(&mut child);
        assert!(gone(&command), "the command outlived the guard");
        drop(reader);
    }
}
