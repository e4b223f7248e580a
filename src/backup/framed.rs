//! The manifest's passes in the dump's own exec ([`crate::engine::commands::manifested`]):
//! their output arrives on the dump's stderr between `MARK NAME start` and `MARK NAME end
//! STATUS` lines. [`capture`] keeps each frame whole, up to the cap a pass on its own exec
//! has ([`OUTPUT_KEEP`]), and the end of everything else (the error messages). The mark
//! carries a per-run nonce, so nothing a database prints can open or close a frame.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::manifest::{self, OUTPUT_KEEP, Pass, QUERY as WHAT};
use crate::engine::commands::{Commands, manifested};
use crate::error::{Error, Result};
use crate::exec::{self, ExecStatus};

/// The end of the stderr outside frames that is kept, for error messages.
const REST_KEEP: usize = 64 << 10;

/// A line longer than this is no marker: it goes where it belongs without being held.
const LINE_HOLD: usize = 4 << 10;

/// `dump` with the manifest's passes over `database` (every database: `None`) around it,
/// in its exec (see [`crate::engine::commands::manifested`]), and the mark of their frames.
pub fn around(
    commands: &dyn Commands,
    database: Option<&str>,
    dump: Vec<String>,
) -> (Vec<String>, String) {
    let mark = format!("@kdb-pass-{:016x}", rand::random::<u64>());
    let query = commands.manifest_query(database, manifest::row_hash(manifest::FORMAT));
    (manifested(&mark, query, dump), mark)
}

/// One pass's output and the status its end line gave (`None`: no end line, the stream
/// ended inside it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Frame {
    pub text: Vec<u8>,
    pub status: Option<i32>,
    /// More than a pass on its own exec may print ([`OUTPUT_KEEP`]); the text is cut.
    pub too_large: bool,
    /// When its end line arrived (for `-v`'s timings).
    pub ended: Option<Instant>,
}

impl Frame {
    fn push(&mut self, bytes: &[u8]) {
        if self.text.len() + bytes.len() > OUTPUT_KEEP {
            self.too_large = true;
        } else {
            self.text.extend_from_slice(bytes);
        }
    }

    /// The pass it carries: a failure as its own exec of the query would have said it,
    /// with the end of the stderr outside the frames.
    pub fn pass(&self, pod: &str, stderr: &[u8], before: Option<&Pass>) -> Result<Pass> {
        let failed = |detail: String| Error::Exec {
            pod: pod.into(),
            what: WHAT.into(),
            detail,
        };
        match self.status {
            Some(0) if !self.too_large => {}
            Some(0) => return Err(failed("its output was too large".into())),
            status => {
                let status = match status {
                    Some(code) => format!("exit status {code}"),
                    None => "it ended without its status (cut off)".into(),
                };
                let stderr = String::from_utf8_lossy(stderr);
                let stderr = stderr.trim();
                return Err(failed(if stderr.is_empty() {
                    status
                } else {
                    format!("{status}: {}", exec::last_lines(stderr, 5))
                }));
            }
        }
        manifest::read_pass(&String::from_utf8_lossy(&self.text), before).map_err(failed)
    }
}

/// The pass before in a dump's `frames` (its stderr outside them: `stderr`). An error
/// when it failed (which stopped the script before the dump) or did not report though the
/// dump ended well; `None` when the dump failed without it (the dump's failure says why).
pub fn before(
    frames: &BTreeMap<String, Frame>,
    stderr: &[u8],
    dumped: &ExecStatus,
    pod: &str,
) -> Result<Option<Pass>> {
    match frames.get("before") {
        Some(frame) => frame.pass(pod, stderr, None).map(Some),
        None if dumped.success() => Err(Error::Exec {
            pod: pod.into(),
            what: WHAT.into(),
            detail: "it did not report before the dump".into(),
        }),
        None => Ok(None),
    }
}

/// The pass after in a dump's `frames`, or `None` when it did not finish there (the
/// caller runs it on an exec of its own).
pub fn after(
    frames: &BTreeMap<String, Frame>,
    stderr: &[u8],
    before: &Pass,
    pod: &str,
) -> Option<Pass> {
    let after = match frames.get("after") {
        Some(frame) => frame.pass(pod, stderr, Some(before)),
        None => Err(Error::Failed("no pass after the dump in its exec".into())),
    };
    after
        .inspect_err(|err| tracing::debug!("{}; running it on an exec of its own", err.chain()))
        .ok()
}

/// A stderr split into its frames, by name, and the end of the rest.
#[derive(Debug, Default)]
pub struct Split {
    pub frames: BTreeMap<String, Frame>,
    pub rest: Vec<u8>,
}

/// Reads `reader` to its end, splitting it at the frames of `mark`.
pub async fn capture<R: AsyncRead + Unpin>(reader: Option<R>, mark: &str) -> Split {
    let mut framer = Framer::new(mark);
    if let Some(mut reader) = reader {
        let mut buf = vec![0u8; 16 << 10];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
            framer.push(&buf[..n]);
        }
    }
    framer.finish()
}

/// The line-by-line state of [`capture`].
struct Framer {
    start: Vec<u8>,
    line: Vec<u8>,
    /// The line being read is longer than [`LINE_HOLD`] and was passed on already.
    long: bool,
    open: Option<(String, Frame)>,
    split: Split,
}

impl Framer {
    fn new(mark: &str) -> Self {
        Framer {
            start: format!("{mark} ").into_bytes(),
            line: Vec::new(),
            long: false,
            open: None,
            split: Split::default(),
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        while let Some(at) = bytes.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&bytes[..at]);
            self.end_line(true);
            bytes = &bytes[at + 1..];
        }
        self.line.extend_from_slice(bytes);
        if self.line.len() > LINE_HOLD {
            self.end_line(false);
            self.long = true;
        }
    }

    /// The line held so far, ended by a line break (`whole`) or passed on because it is long.
    fn end_line(&mut self, whole: bool) {
        let line = std::mem::take(&mut self.line);
        let marker = !self.long && whole;
        self.long = false;
        let newline: &[u8] = if whole { b"\n" } else { b"" };
        let ended = match &self.open {
            Some((name, _)) if marker => self.end_of(name, &line),
            _ => None,
        };
        if let Some((name, mut frame)) = self.open.take() {
            match ended {
                Some(status) => {
                    frame.status = status;
                    frame.ended = Some(Instant::now());
                    self.split.frames.insert(name, frame);
                }
                None => {
                    frame.push(&line);
                    frame.push(newline);
                    self.open = Some((name, frame));
                }
            }
            return;
        }
        if marker && let Some(name) = self.start_of(&line) {
            self.open = Some((name, Frame::default()));
            return;
        }
        let rest = &mut self.split.rest;
        rest.extend_from_slice(&line);
        rest.extend_from_slice(newline);
        // Drained in batches so the copy costs O(1) per byte read.
        if rest.len() >= 2 * REST_KEEP {
            rest.drain(..rest.len() - REST_KEEP);
        }
    }

    /// `MARK NAME start` -> NAME.
    fn start_of(&self, line: &[u8]) -> Option<String> {
        let name = line
            .strip_prefix(self.start.as_slice())?
            .strip_suffix(b" start")?;
        let name = std::str::from_utf8(name).ok()?;
        (!name.is_empty() && !name.contains(' ')).then(|| name.to_string())
    }

    /// `MARK NAME end STATUS` -> the status (`None` when it is not a number).
    fn end_of(&self, name: &str, line: &[u8]) -> Option<Option<i32>> {
        let tail = line.strip_prefix(self.start.as_slice())?;
        let status = tail.strip_prefix(format!("{name} end ").as_bytes())?;
        Some(std::str::from_utf8(status).ok()?.parse().ok())
    }

    fn finish(mut self) -> Split {
        if !self.line.is_empty() || self.long {
            self.end_line(false);
        }
        if let Some((name, frame)) = self.open.take() {
            self.split.frames.insert(name, frame);
        }
        if self.split.rest.len() > REST_KEEP {
            let excess = self.split.rest.len() - REST_KEEP;
            self.split.rest.drain(..excess);
        }
        self.split
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: &str = "@kdb-pass-00000000000000ab";

    fn split(chunks: &[&[u8]]) -> Split {
        let mut framer = Framer::new(MARK);
        for chunk in chunks {
            framer.push(chunk);
        }
        framer.finish()
    }

    /// What MANIFESTED prints: the pass's own stderr, the frames, the dump's stderr.
    fn printed() -> Vec<u8> {
        format!(
            "psql: warning\n\n{MARK} before start\nsnapshot\t5:9:\ndb\t\"appdb\"\n{MARK} before end 0\n\
             pg_dump: notice\n\n{MARK} after start\nsnapshot\t5:9:\nunchanged\n{MARK} after end 0\n"
        )
        .into_bytes()
    }

    #[test]
    fn frames_are_split_from_the_rest_whatever_the_reads() {
        let whole = printed();
        for size in [1, 2, 7, 64, whole.len()] {
            let chunks: Vec<&[u8]> = whole.chunks(size).collect();
            let split = split(&chunks);
            let before = &split.frames["before"];
            assert_eq!(before.text, b"snapshot\t5:9:\ndb\t\"appdb\"\n", "{size}");
            assert_eq!(before.status, Some(0));
            assert_eq!(split.frames["after"].text, b"snapshot\t5:9:\nunchanged\n");
            assert_eq!(
                String::from_utf8_lossy(&split.rest).trim(),
                "psql: warning\n\npg_dump: notice",
                "{size}"
            );
        }
    }

    #[test]
    fn only_this_runs_mark_opens_or_closes_a_frame() {
        // Another run's mark (a database's text could hold one) is the rest's, or the frame's.
        let other = "@kdb-pass-00000000000000cd";
        let text = format!(
            "{other} before start\n{MARK} before start\n{other} before end 0\n{MARK} before end 1\n{MARK} after end 0\n"
        );
        let split = split(&[text.as_bytes()]);
        assert_eq!(split.frames.len(), 1);
        let before = &split.frames["before"];
        assert_eq!(before.text, format!("{other} before end 0\n").as_bytes());
        assert_eq!(before.status, Some(1));
        let rest = String::from_utf8_lossy(&split.rest);
        assert!(rest.contains(&format!("{other} before start")), "{rest}");
        assert!(rest.contains(&format!("{MARK} after end 0")), "{rest}");
    }

    #[test]
    fn a_frame_the_stream_cut_has_no_status_and_a_large_one_is_said_so() {
        let cut = format!("{MARK} after start\nsnapshot\t5:9:\ndb\t\"ap");
        let frame = &split(&[cut.as_bytes()]).frames["after"];
        assert_eq!(frame.status, None);
        assert_eq!(frame.text, b"snapshot\t5:9:\ndb\t\"ap");
        let error = frame
            .pass("db-0", b"killed\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("cut off") && error.contains("killed"),
            "{error}"
        );

        // Lines of a table each, past what any other command's output may take (4 MiB),
        // and past the manifest's cap.
        let line = format!("tbl\t\"appdb\"\t\"public.t\"\t1\t{}\n", "0".repeat(32));
        let block = line.repeat((1 << 20) / line.len());
        let mut chunks: Vec<&[u8]> = vec![b"@kdb-pass-00000000000000ab before start\n"];
        chunks.extend(std::iter::repeat_n(block.as_bytes(), 8));
        chunks.push(b"@kdb-pass-00000000000000ab before end 0\n");
        let frame = &split(&chunks).frames["before"];
        assert!(
            !frame.too_large && frame.text.len() > 4 << 20,
            "{}",
            frame.text.len()
        );
        chunks.truncate(1);
        chunks.extend(std::iter::repeat_n(block.as_bytes(), 65));
        chunks.push(b"@kdb-pass-00000000000000ab before end 0\n");
        let split = split(&chunks);
        let frame = &split.frames["before"];
        assert!(
            frame.too_large && frame.text.len() <= OUTPUT_KEEP,
            "{}",
            frame.text.len()
        );
        assert_eq!(frame.status, Some(0));
        let error = frame.pass("db-0", b"", None).unwrap_err().to_string();
        assert!(error.contains("too large"), "{error}");
    }

    #[test]
    fn a_long_stderr_keeps_its_end_and_a_long_line_is_no_marker() {
        let noise = vec![b'n'; 300 << 10];
        let marker_after_long = format!("{MARK} before start\n");
        let split = split(&[&noise, marker_after_long.as_bytes(), b"tail\n"]);
        // The marker text ended a 300 KiB line: not a line of its own, so no frame.
        assert!(split.frames.is_empty());
        assert_eq!(split.rest.len(), REST_KEEP);
        assert!(split.rest.ends_with(b"before start\ntail\n"));
    }

    #[test]
    fn a_failed_pass_reads_like_its_own_exec() {
        let frame = Frame {
            text: Vec::new(),
            status: Some(1),
            too_large: false,
            ended: None,
        };
        let error = frame
            .pass("db-0", b"\npsql: error: connection refused\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("exit status 1: psql: error: connection refused"),
            "{error}"
        );
        let frame = Frame {
            text: b"snapshot\t5:9:\ndb\t\"appdb\"\ntbl\t\"appdb\"\t\"public.t\"\t3\tabc\n".to_vec(),
            status: Some(0),
            too_large: false,
            ended: None,
        };
        let pass = frame.pass("db-0", b"", None).unwrap();
        assert_eq!(pass.snapshot.as_deref(), Some("5:9:"));
        assert_eq!(pass.databases.len(), 1);
    }
}
