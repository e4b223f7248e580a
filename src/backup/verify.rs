//! `verify`: a backup file is trustworthy when its SHA-256 matches `FILE.sha256` and its
//! decompressed text ends with the dump tool's completion trailer. One pass over the file
//! (one streamed GET for an object).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::archive::{self, PartCheck};
use super::format::{self, Compression, DumpKind, Head, Tail};
use super::location::Location;
use super::manifest::{self, Manifest};
use crate::error::{Error, Result};

/// Bytes read from a file at once, and decoded at once: as large as the restore's chunks.
/// Larger buffers only raise the peak RSS (issue #18): each one is touched in full.
const READ_BUFFER: usize = 64 << 10;

/// What `verify` found (the `-o json` schema).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VerifyReport {
    /// The backup file.
    pub file: String,
    /// Compression read from the file's magic bytes.
    pub compression: Compression,
    /// Size of the file.
    pub bytes: u64,
    /// Size of the SQL inside it.
    pub bytes_raw: u64,
    /// SHA-256 of the file as it is now.
    pub sha256: String,
    /// SHA-256 recorded in FILE.sha256, when there is one.
    pub expected_sha256: Option<String>,
    /// The file matches FILE.sha256.
    pub checksum_ok: bool,
    /// Which tool wrote the dump, from its header.
    // Not `kind`: that is the document's kind (`-o json`, output::Report).
    #[serde(rename = "dump_kind")]
    pub kind: Option<DumpKind>,
    /// The dump ends with its tool's completion trailer.
    pub complete: bool,
    /// Everything wrong with the file, one line each.
    pub problems: Vec<String>,
    /// No problems.
    pub ok: bool,
    /// A parallel dump's archive: each part's own checks, in the archive's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartCheck>,
    /// With `--deep`: the manifest beside the file (databases, tables, rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
}

/// [`verify`], plus the manifest beside the file: what the dump holds, without a cluster.
/// A missing manifest, or one of another kind of dump, is a problem.
pub async fn verify_deep(file: &Location) -> Result<VerifyReport> {
    let mut report = verify_at(file).await?;
    let path = manifest::beside(file);
    match manifest::read_beside(file).await? {
        None => report
            .problems
            .push(format!("no manifest {path} (--deep lists it)")),
        Some(found) => {
            if report.kind.is_some_and(|kind| kind != found.kind) {
                report.problems.push(format!(
                    "{path} describes a {} dump, not this one",
                    found.kind.engine_name()
                ));
            }
            report.manifest = Some(found);
        }
    }
    report.ok = report.problems.is_empty();
    Ok(report)
}

/// Reads the file once: hashes it as stored, decompresses it, and checks header and trailer.
pub fn verify(file: &Path) -> Result<VerifyReport> {
    let input = File::open(file).map_err(|source| Error::Io {
        action: "open",
        path: file.display().to_string(),
        source,
    })?;
    let checksum_file = format::checksum_path(file);
    let checksum = match std::fs::read_to_string(&checksum_file) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(Error::Io {
                action: "read",
                path: checksum_file.display().to_string(),
                source,
            });
        }
    };
    check(
        input,
        &file.display().to_string(),
        &checksum_file.display().to_string(),
        checksum,
    )
}

/// [`verify`] for any location: an object is streamed (one GET) and its `KEY.sha256`
/// read beside it.
pub async fn verify_at(location: &Location) -> Result<VerifyReport> {
    if let Location::Local(path) = location {
        let path = path.clone();
        return tokio::task::spawn_blocking(move || verify(&path))
            .await
            .map_err(|err| Error::Failed(format!("failed to verify the file: {err}")))?;
    }
    let checksum_at = location.sidecar(".sha256");
    let checksum = checksum_at
        .read_small()
        .await?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    let location = location.clone();
    tokio::task::spawn_blocking(move || {
        check(
            location.open()?,
            &location.to_string(),
            &checksum_at.to_string(),
            checksum,
        )
    })
    .await
    .map_err(|err| Error::Failed(format!("failed to verify the object: {err}")))?
}

/// The checks over one stream of the backup (a dump file, or a parallel dump's archive);
/// `checksum` is the checksum file's text.
fn check(
    mut input: impl Read,
    shown: &str,
    checksum_file: &str,
    checksum: Option<String>,
) -> Result<VerifyReport> {
    let io_err = |source| Error::Io {
        action: "read",
        path: shown.to_string(),
        source,
    };
    let mut start = [0u8; 512];
    let n = read_up_to(&mut input, &mut start).map_err(io_err)?;
    let input = BufReader::with_capacity(
        READ_BUFFER,
        io::Cursor::new(start[..n].to_vec()).chain(input),
    );
    let mut report = if archive::is_archive(&start[..n]) {
        check_archive(input).map_err(io_err)?
    } else {
        check_dump(input).map_err(io_err)?
    };
    let expected = match checksum {
        Some(text) => {
            let parsed = format::parse_checksum(&text);
            if parsed.is_none() {
                report
                    .problems
                    .push(format!("{checksum_file} is not in sha256sum format"));
            }
            parsed
        }
        None => {
            report
                .problems
                .push(format!("no checksum file {checksum_file}"));
            None
        }
    };
    report.checksum_ok = expected.as_deref() == Some(report.sha256.as_str());
    if let Some(expected) = &expected
        && !report.checksum_ok
    {
        report.problems.push(format!(
            "checksum mismatch: file has {}, {checksum_file} says {expected}",
            report.sha256
        ));
    }
    report.expected_sha256 = expected;
    report.file = shown.to_string();
    report.ok = report.problems.is_empty();
    Ok(report)
}

/// A dump file: its header and trailer.
fn check_dump(input: impl Read) -> io::Result<VerifyReport> {
    let scan = scan(input)?;
    let mut problems = Vec::new();
    if let Some(err) = &scan.damage {
        problems.push(format!(
            "the {} stream is damaged or cut off ({err})",
            scan.compression
        ));
    }
    let kind = DumpKind::from_header(scan.head.bytes());
    let complete = kind.is_some_and(|k| k.is_complete(scan.tail.bytes()));
    match kind {
        _ if scan.raw == 0 => problems.push("the dump is empty".into()),
        None => problems.push("no pg_dump, pg_dumpall or mysqldump header at the start".into()),
        Some(kind) if !complete => problems.push(format!(
            "the dump is cut off: its last lines lack the trailer {:?}",
            kind.trailer()
        )),
        Some(_) => {}
    }
    Ok(VerifyReport {
        file: String::new(),
        compression: scan.compression,
        bytes: scan.bytes,
        bytes_raw: scan.raw,
        sha256: scan.sha256,
        expected_sha256: None,
        checksum_ok: false,
        kind,
        complete,
        ok: false,
        problems,
        parts: Vec::new(),
        manifest: None,
    })
}

/// A parallel dump's archive: every part against the index (its checksum, header and
/// trailer), hashed whole on the way.
fn check_archive(input: impl Read) -> io::Result<VerifyReport> {
    let mut hashed = HashingReader::new(input);
    let found = archive::check(&mut hashed);
    // Hash what the tar reader did not need (its end blocks), so the digest covers the file.
    io::copy(&mut hashed, &mut io::sink())?;
    let (sha256, bytes) = hashed.finish();
    let index = found.index.as_ref();
    let complete = index.is_some_and(|i| i.parts.len() == found.parts.len())
        && found.parts.iter().all(|p| p.complete);
    Ok(VerifyReport {
        file: String::new(),
        compression: index.map_or(Compression::None, |i| i.compression),
        bytes,
        bytes_raw: found.parts.iter().map(|p| p.bytes_raw).sum(),
        sha256,
        expected_sha256: None,
        checksum_ok: false,
        kind: index.map(|i| i.kind),
        complete,
        ok: false,
        problems: found.problems,
        parts: found.parts,
        manifest: None,
    })
}

/// What one pass over a dump file's bytes found.
pub(super) struct Scan {
    /// Read from the magic bytes.
    pub compression: Compression,
    pub head: Head,
    pub tail: Tail,
    /// SQL bytes.
    pub raw: u64,
    /// Why the stream did not decompress to its end.
    pub damage: Option<io::Error>,
    /// SHA-256 and size of the bytes as stored.
    pub sha256: String,
    pub bytes: u64,
}

/// Reads a dump file's bytes once: hashes them as stored and decompresses them for the
/// header and trailer. An error is a failure to read; a stream that does not decode is
/// [`Scan::damage`].
pub(super) fn scan(mut input: impl Read) -> io::Result<Scan> {
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut input, &mut magic)?;
    let compression = Compression::from_magic(&magic[..n]);
    let mut hashed = HashingReader::new(io::Cursor::new(magic[..n].to_vec()).chain(input));
    let mut head = Head::default();
    let mut tail = Tail::default();
    let mut raw = 0u64;
    let decoded = {
        let mut decoder = decoder(compression, &mut hashed)?;
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            match decoder.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    head.push(&buf[..n]);
                    tail.push(&buf[..n]);
                    raw += n as u64;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => break Err(err),
            }
        }
    };
    // Hash whatever the decoder did not need, so the digest covers every byte.
    io::copy(&mut hashed, &mut io::sink())?;
    let (sha256, bytes) = hashed.finish();
    Ok(Scan {
        compression,
        head,
        tail,
        raw,
        damage: decoded.err(),
        sha256,
        bytes,
    })
}

/// A reader that decompresses according to `compression`.
pub fn decoder<'a, R: Read + 'a>(
    compression: Compression,
    input: R,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?),
        Compression::None => Box::new(input),
    })
}

/// Opens a backup for reading its SQL, whatever its compression. Blocks (see
/// [`Location::open`]).
pub fn open_sql(file: &Location) -> Result<Box<dyn Read + Send>> {
    sql_reader(file.open()?).map_err(|source| Error::Io {
        action: "open",
        path: file.to_string(),
        source,
    })
}

/// The SQL in a dump file's bytes, whatever its compression (read from its magic bytes).
pub fn sql_reader(mut input: impl Read + Send + 'static) -> io::Result<Box<dyn Read + Send>> {
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut input, &mut magic)?;
    let input = BufReader::with_capacity(
        READ_BUFFER,
        io::Cursor::new(magic[..n].to_vec()).chain(input),
    );
    Ok(match Compression::from_magic(&magic[..n]) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Compression::None => Box::new(input),
    })
}

fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    fn finish(self) -> (String, u64) {
        (format::hex(&self.hasher.finalize()), self.bytes)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::manifest::{DatabaseManifest, FORMAT, TableManifest};

    /// A complete plain-SQL pg_dump file with its checksum file.
    fn dump(dir: &Path) -> std::path::PathBuf {
        let file = dir.join("d.sql");
        let sql = "--\n-- PostgreSQL database dump\n--\nSELECT 1;\n--\n-- PostgreSQL database dump complete\n--\n";
        std::fs::write(&file, sql).unwrap();
        let sha = format::hex(&Sha256::digest(sql.as_bytes()));
        std::fs::write(
            format::checksum_path(&file),
            format::checksum_line(&sha, &file),
        )
        .unwrap();
        file
    }

    #[tokio::test]
    async fn deep_lists_the_manifest_and_misses_it_when_absent() {
        let dir = tempfile::tempdir().unwrap();
        let file = dump(dir.path());
        assert!(verify(&file).unwrap().ok);
        let file = Location::Local(file);
        let without = verify_deep(&file).await.unwrap();
        assert!(!without.ok);
        assert!(
            without.problems[0].starts_with("no manifest"),
            "{without:?}"
        );

        let mut manifest = Manifest {
            format: FORMAT,
            engine: crate::engine::Engine::Postgres,
            image: None,
            kind: DumpKind::PostgresDatabase,
            database: Some("appdb".into()),
            namespace: "shop".into(),
            pod: "pg-0".into(),
            dumped_at: "2026-12-03T08:00:00Z".into(),
            databases: vec![DatabaseManifest {
                name: "appdb".into(),
                tables: vec![TableManifest {
                    name: "public.t".into(),
                    rows: 7,
                    checksum: "abc".into(),
                    after_dump: None,
                }],
            }],
        };
        manifest::write_beside(&file, &manifest).await.unwrap();
        let deep = verify_deep(&file).await.unwrap();
        assert!(deep.ok, "{deep:?}");
        assert_eq!(deep.manifest.as_ref(), Some(&manifest));

        // A manifest of another kind of dump does not describe this file.
        manifest.kind = DumpKind::Mysql;
        manifest::write_beside(&file, &manifest).await.unwrap();
        let other = verify_deep(&file).await.unwrap();
        assert!(!other.ok);
        assert!(
            other.problems[0].contains("MySQL/MariaDB dump"),
            "{other:?}"
        );
    }
}
