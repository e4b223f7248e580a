//! Helpers of the unit tests.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Writes an executable script at `path` through a child process, so this process never
/// holds the file open for writing. Tests run on many threads, and a child forked by
/// another one between our `open` and our `close` would inherit the write descriptor
/// until its own exec: running the script meanwhile fails with ETXTBSY ("Text file busy").
pub fn write_executable(path: &Path, text: &str) {
    let mut child = Command::new("/bin/sh")
        .args(["-c", r#"cat > "$1" && chmod 755 "$1""#, "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("/bin/sh");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("the script written to cat");
    let status = child.wait().expect("cat to end");
    assert!(status.success(), "could not write {}", path.display());
}
