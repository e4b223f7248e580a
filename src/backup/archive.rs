//! The archive `dump --parallel` writes: a POSIX tar whose first entry is an [`Index`]
//! (engine, compression, and per part its database, dump kind, sizes and SHA-256), then one
//! dump file per part, the globals first. Any `tar` lists and extracts it; `verify`,
//! `restore` and `list` read it through this module. Each part is a complete dump file of
//! its own (`.sql.gz` ...), checked for its own trailer and checksum.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::format::{Compression, DumpKind};
use super::verify;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// The first entry's name.
pub const INDEX_NAME: &str = "kubectl-dbbackup-index.json";
/// The version of the index's layout; a reader refuses others.
pub const FORMAT: u32 = 1;
/// The default file name's extension.
pub const EXTENSION: &str = ".tar";
/// Largest index read (thousands of databases fit).
const INDEX_MAX: u64 = 4 << 20;
/// Longest database name kept in an entry's name (the index has the real one).
const NAME_KEEP: usize = 60;

/// The archive's table of contents, its first entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// [`FORMAT`].
    pub format: u32,
    pub engine: Engine,
    /// What the archive holds as a whole (as the serial dump's kind: every database).
    pub kind: DumpKind,
    pub compression: Compression,
    /// Parts dumped at once; `restore` uses as many streams.
    pub parallel: usize,
    /// In restore order: the globals (if any) first.
    pub parts: Vec<Part>,
}

/// One dump file inside the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Part {
    /// Entry name.
    pub file: String,
    /// None for the globals (roles, tablespaces; MySQL's accounts).
    pub database: Option<String>,
    /// The tool's header and trailer this part carries.
    pub kind: DumpKind,
    /// Size as stored.
    pub bytes: u64,
    /// SQL bytes.
    pub bytes_raw: u64,
    /// SHA-256 of the entry's bytes.
    pub sha256: String,
}

/// Whether these first bytes are a tar's (the `ustar` magic of its first header).
pub fn is_archive(head: &[u8]) -> bool {
    head.get(257..262) == Some(b"ustar".as_slice())
}

/// Whether the local file is an archive (reads its first header).
pub fn is_archive_file(path: &Path) -> Result<bool> {
    let mut head = Vec::with_capacity(512);
    File::open(path)
        .and_then(|f| f.take(512).read_to_end(&mut head))
        .map_err(|source| Error::Io {
            action: "read",
            path: path.display().to_string(),
            source,
        })?;
    Ok(is_archive(&head))
}

/// An entry name: its place, then the database (any byte outside `[A-Za-z0-9_.-]` as `_`,
/// so that no name is a path or an option), then the compression's extension.
pub fn part_file_name(place: usize, database: Option<&str>, compression: Compression) -> String {
    let name: String = match database {
        None => "globals".into(),
        Some(db) => db
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
                _ => '_',
            })
            .take(NAME_KEEP)
            .collect(),
    };
    format!("{place:03}-{name}{}", compression.extension())
}

/// Writes the archive: the index, then each part's file (`files`, in the index's order).
/// Streams every file; entry sizes come from the index, checked against the files.
pub fn write<W: Write>(out: W, index: &Index, files: &[PathBuf], mtime: u64) -> io::Result<W> {
    let mut builder = tar::Builder::new(out);
    let json = serde_json::to_vec_pretty(index).map_err(io::Error::other)?;
    append(
        &mut builder,
        INDEX_NAME,
        json.len() as u64,
        &json[..],
        mtime,
    )?;
    for (part, path) in index.parts.iter().zip(files) {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        if size != part.bytes {
            return Err(io::Error::other(format!(
                "{} holds {size} bytes, not the {} dumped",
                path.display(),
                part.bytes
            )));
        }
        append(&mut builder, &part.file, size, file.take(size), mtime)?;
    }
    builder.into_inner()
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: impl Read,
    mtime: u64,
) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(mtime);
    builder.append_data(&mut header, name, data)
}

/// Reads an index entry's text.
fn parse_index(reader: impl Read) -> std::result::Result<Index, String> {
    let mut json = Vec::new();
    reader
        .take(INDEX_MAX)
        .read_to_end(&mut json)
        .map_err(|err| format!("its index is cut off ({err})"))?;
    let index: Index = serde_json::from_slice(&json)
        .map_err(|err| format!("its index {INDEX_NAME} does not parse ({err})"))?;
    if index.format != FORMAT {
        return Err(format!(
            "its index is format {}, not {FORMAT}; a newer kubectl-dbbackup wrote it",
            index.format
        ));
    }
    Ok(index)
}

/// The index from an archive's first bytes, when they hold all of it (for `list`).
pub fn index_from_head(head: &[u8]) -> Option<Index> {
    let mut archive = tar::Archive::new(head);
    let entry = archive.entries().ok()?.next()?.ok()?;
    let name = entry.path().ok()?.to_string_lossy().into_owned();
    (name == INDEX_NAME).then(|| parse_index(entry).ok())?
}

/// What `verify` found in one part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PartCheck {
    pub file: String,
    /// None for the globals.
    pub database: Option<String>,
    /// Read from the part's header.
    pub kind: Option<DumpKind>,
    pub bytes: u64,
    pub bytes_raw: u64,
    pub sha256: String,
    /// The part matches the index's SHA-256.
    pub checksum_ok: bool,
    /// The part ends with its tool's trailer.
    pub complete: bool,
}

/// What one pass over an archive found.
#[derive(Debug, Default)]
pub struct Checked {
    pub index: Option<Index>,
    pub parts: Vec<PartCheck>,
    pub problems: Vec<String>,
}

/// Checks every part against the index while reading the archive once, in order.
pub fn check(input: impl Read) -> Checked {
    let mut found = Checked::default();
    let mut archive = tar::Archive::new(input);
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(err) => {
            found
                .problems
                .push(format!("the archive does not read ({err})"));
            return found;
        }
    };
    for (place, entry) in entries.enumerate() {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                found
                    .problems
                    .push(format!("the archive is damaged or cut off ({err})"));
                break;
            }
        };
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(index) = &found.index else {
            let parsed = match place {
                0 if name == INDEX_NAME => parse_index(&mut entry),
                _ => Err(format!("it does not start with its index {INDEX_NAME}")),
            };
            match parsed {
                Ok(index) => found.index = Some(index),
                Err(problem) => {
                    found
                        .problems
                        .push(format!("the archive is unusable: {problem}"));
                    break;
                }
            }
            continue;
        };
        let Some(part) = index.parts.get(place - 1).filter(|p| p.file == name) else {
            found.problems.push(format!(
                "{name} is not in the archive's index at this place"
            ));
            continue;
        };
        match check_part(part, &mut entry) {
            Ok((checked, problems)) => {
                found.parts.push(checked);
                found.problems.extend(problems);
            }
            Err(err) => {
                found
                    .problems
                    .push(format!("{name}: damaged or cut off ({err})"));
                break;
            }
        }
    }
    if let Some(index) = &found.index {
        let missing: Vec<&str> = index
            .parts
            .iter()
            .map(|p| p.file.as_str())
            .filter(|f| !found.parts.iter().any(|c| c.file == *f))
            .collect();
        if !missing.is_empty() {
            found.problems.push(format!(
                "the archive lacks {} of its {} parts (cut off?): {}",
                missing.len(),
                index.parts.len(),
                missing.join(", ")
            ));
        }
    }
    found
}

/// One part: its checksum against the index, its header and trailer.
fn check_part(part: &Part, entry: impl Read) -> io::Result<(PartCheck, Vec<String>)> {
    let scan = verify::scan(entry)?;
    let mut problems = Vec::new();
    let name = &part.file;
    if let Some(err) = &scan.damage {
        problems.push(format!(
            "{name}: the {} stream is damaged or cut off ({err})",
            scan.compression
        ));
    }
    let checksum_ok = scan.sha256 == part.sha256;
    if !checksum_ok {
        problems.push(format!(
            "{name}: checksum mismatch: the part has {}, the index says {}",
            scan.sha256, part.sha256
        ));
    }
    let kind = DumpKind::from_header(scan.head.bytes());
    let complete = kind.is_some_and(|k| k.is_complete(scan.tail.bytes()));
    match kind {
        _ if scan.raw == 0 => problems.push(format!("{name}: the dump is empty")),
        Some(kind) if kind != part.kind => problems.push(format!(
            "{name}: a {kind:?} dump where the index has {:?}",
            part.kind
        )),
        None => problems.push(format!("{name}: no dump header at the start")),
        Some(kind) if !complete => problems.push(format!(
            "{name}: the dump is cut off: its last lines lack the trailer {:?}",
            kind.trailer()
        )),
        Some(_) => {}
    }
    let checked = PartCheck {
        file: part.file.clone(),
        database: part.database.clone(),
        kind,
        bytes: scan.bytes,
        bytes_raw: scan.raw,
        sha256: scan.sha256,
        checksum_ok,
        complete,
    };
    Ok((checked, problems))
}

/// Where a part's bytes are in the archive file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub part: Part,
    pub offset: u64,
}

/// The index and where each part is, seeking over the data (for a parallel restore).
pub fn locate(path: &Path) -> Result<(Index, Vec<Placed>)> {
    let shown = path.display().to_string();
    let io_err = |source| Error::Io {
        action: "read",
        path: shown.clone(),
        source,
    };
    let unusable =
        |problem: String| Error::Failed(format!("refusing to restore {shown}: {problem}"));
    let mut archive = tar::Archive::new(File::open(path).map_err(io_err)?);
    let mut index: Option<Index> = None;
    let mut placed = Vec::new();
    for entry in archive.entries_with_seek().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        let name = entry.path().map_err(io_err)?.to_string_lossy().into_owned();
        let Some(known) = &index else {
            if name != INDEX_NAME {
                return Err(unusable(format!("it does not start with {INDEX_NAME}")));
            }
            index = Some(parse_index(&mut entry).map_err(unusable)?);
            continue;
        };
        let Some(part) = known.parts.get(placed.len()).filter(|p| p.file == name) else {
            return Err(unusable(format!(
                "{name} is not in its index at this place"
            )));
        };
        placed.push(Placed {
            part: part.clone(),
            offset: entry.raw_file_position(),
        });
    }
    let index = index.ok_or_else(|| unusable("it is empty".into()))?;
    if placed.len() != index.parts.len() {
        return Err(unusable("it lacks parts its index names".into()));
    }
    Ok((index, placed))
}

/// A part's stored bytes (compressed as written), read from the archive file.
pub fn open_part(path: &Path, placed: &Placed) -> io::Result<impl Read + Send + use<>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(placed.offset))?;
    Ok(file.take(placed.part.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    const GLOBALS: &str = "--\n-- PostgreSQL database cluster dump\n--\nCREATE ROLE a;\n--\n-- PostgreSQL database cluster dump complete\n--\n";

    fn db_sql(name: &str) -> String {
        format!(
            "--\n-- PostgreSQL database dump\n--\nCREATE DATABASE {name};\n\\connect {name}\n--\n-- PostgreSQL database dump complete\n--\n"
        )
    }

    fn gz(text: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    /// An archive of globals and two databases in `dir`; returns its path and index.
    fn archive(dir: &Path) -> (PathBuf, Index) {
        let texts = [GLOBALS.to_string(), db_sql("appdb"), db_sql("odd/name x")];
        let mut parts = Vec::new();
        let mut files = Vec::new();
        for (place, text) in texts.iter().enumerate() {
            let database = match place {
                0 => None,
                1 => Some("appdb".to_string()),
                _ => Some("odd/name x".to_string()),
            };
            let bytes = gz(text);
            let file = dir.join(format!("part{place}"));
            std::fs::write(&file, &bytes).unwrap();
            files.push(file);
            parts.push(Part {
                file: part_file_name(place, database.as_deref(), Compression::Gzip),
                kind: match database {
                    None => DumpKind::PostgresCluster,
                    Some(_) => DumpKind::PostgresDatabase,
                },
                database,
                bytes: bytes.len() as u64,
                bytes_raw: text.len() as u64,
                sha256: crate::encoding::hex(&Sha256::digest(&bytes)),
            });
        }
        let index = Index {
            format: FORMAT,
            engine: Engine::Postgres,
            kind: DumpKind::PostgresCluster,
            compression: Compression::Gzip,
            parallel: 2,
            parts,
        };
        let path = dir.join("a.tar");
        let out = File::create(&path).unwrap();
        write(out, &index, &files, 1_764_000_000).unwrap();
        (path, index)
    }

    #[test]
    fn entry_names_are_plain_and_ordered() {
        assert_eq!(
            part_file_name(0, None, Compression::Gzip),
            "000-globals.sql.gz"
        );
        assert_eq!(
            part_file_name(12, Some("../x y"), Compression::Zstd),
            "012-___x_y.sql.zst"
        );
        let long = part_file_name(3, Some(&"d".repeat(63)), Compression::None);
        assert_eq!(long, format!("003-{}.sql", "d".repeat(60)));
    }

    #[test]
    fn an_archive_reads_back_part_by_part() {
        let dir = tempfile::tempdir().unwrap();
        let (path, index) = archive(dir.path());
        let bytes = std::fs::read(&path).unwrap();
        assert!(is_archive(&bytes));
        assert!(is_archive_file(&path).unwrap());
        assert!(!is_archive(&gz(GLOBALS)));
        assert_eq!(
            index_from_head(&bytes[..bytes.len().min(64 << 10)]),
            Some(index.clone())
        );

        let checked = check(&bytes[..]);
        assert!(checked.problems.is_empty(), "{:?}", checked.problems);
        assert_eq!(checked.index.as_ref(), Some(&index));
        assert_eq!(checked.parts.len(), 3);
        assert!(checked.parts.iter().all(|p| p.checksum_ok && p.complete));
        assert_eq!(checked.parts[1].kind, Some(DumpKind::PostgresDatabase));

        // Each part is found where it is and reads back byte for byte.
        let (located, placed) = locate(&path).unwrap();
        assert_eq!(located, index);
        let mut sql = String::new();
        let stored = open_part(&path, &placed[2]).unwrap();
        flate2::read::GzDecoder::new(stored)
            .read_to_string(&mut sql)
            .unwrap();
        assert_eq!(sql, db_sql("odd/name x"));

        // `tar` extracts it as plain files.
        let mut names = Vec::new();
        for entry in tar::Archive::new(&bytes[..]).entries().unwrap() {
            names.push(entry.unwrap().path().unwrap().display().to_string());
        }
        assert_eq!(
            names,
            [
                INDEX_NAME,
                "000-globals.sql.gz",
                "001-appdb.sql.gz",
                "002-odd_name_x.sql.gz"
            ]
        );
    }

    #[test]
    fn damaged_or_cut_archives_are_named_part_by_part() {
        let dir = tempfile::tempdir().unwrap();
        let (path, index) = archive(dir.path());
        let bytes = std::fs::read(&path).unwrap();
        let (_, placed) = locate(&path).unwrap();

        // A flipped byte inside the second database's part.
        let mut flipped = bytes.clone();
        flipped[placed[2].offset as usize + 20] ^= 0xff;
        let checked = check(&flipped[..]);
        assert!(
            checked
                .problems
                .iter()
                .any(|p| p.starts_with("002-odd_name_x.sql.gz: checksum mismatch")),
            "{:?}",
            checked.problems
        );
        assert!(checked.parts[..2].iter().all(|p| p.checksum_ok));

        // Cut inside the last part, or right after the first: the rest is missing.
        for cut in [placed[2].offset as usize + 10, placed[1].offset as usize] {
            let checked = check(&bytes[..cut]);
            assert!(!checked.problems.is_empty(), "cut at {cut}");
            assert!(
                checked.problems.iter().any(|p| p.contains("lacks")
                    || p.contains("cut off")
                    || p.contains("mismatch")),
                "{:?}",
                checked.problems
            );
        }

        // No index first: unusable.
        let mut other = tar::Builder::new(Vec::new());
        append(&mut other, "x.sql", 3, &b"abc"[..], 0).unwrap();
        let other = other.into_inner().unwrap();
        let checked = check(&other[..]);
        assert!(checked.problems[0].contains("does not start with its index"));

        // A part whose header is of another kind than the index says.
        let mut wrong = index.clone();
        wrong.parts[1].kind = DumpKind::Mysql;
        let files: Vec<PathBuf> = (0..3)
            .map(|i| dir.path().join(format!("part{i}")))
            .collect();
        let mut out = Vec::new();
        write(&mut out, &wrong, &files, 0).unwrap();
        let checked = check(&out[..]);
        assert!(
            checked
                .problems
                .iter()
                .any(|p| p.starts_with("001-appdb.sql.gz: a PostgresDatabase dump")),
            "{:?}",
            checked.problems
        );
    }
}
