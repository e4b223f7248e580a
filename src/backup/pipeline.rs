//! The client side of a dump, after the exec stream: two threads, so that neither
//! compression nor checking ever waits on the disk, and the stream waits on neither while
//! there is room in the channels.
//!
//! - The *codec* thread sees the SQL: it keeps its last bytes (for the completion trailer)
//!   and counts them. When the client compresses, it compresses here. When the pod did
//!   ([`Input::InPod`]: zstd or gzip, told apart by the stream's magic number) in the file's
//!   format, it passes each chunk on first and then decompresses it only to read the SQL's
//!   size and end, which also proves the compressed stream whole (gzip's CRC and length,
//!   zstd's frame end); in another format, it decompresses and writes the file's format.
//! - The *file* thread hashes and writes what goes into the file.

use std::io::{self, BufWriter, Write};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::format::{self, Compression, Tail};

/// Bytes per message between the threads: small enough that the chunks in flight stay a
/// fraction of the peak RSS, large enough that passing them costs nothing measurable.
pub const CHUNK: usize = 64 << 10;
/// Messages in flight per channel: bounds memory while letting the stages overlap.
pub const CHANNEL_DEPTH: usize = 4;
/// gzip level of client-side compression, chosen by measurement (docs/dbbackup.md): zlib-rs
/// level 1 is its "quick" strategy, 1.7x faster than level 2 but with 31% larger files; level 2
/// is 12% slower than miniz_oxide's level 1 was, with 10% smaller files.
pub const GZIP_LEVEL: u32 = 2;
/// zstd level of client-side compression (chosen by measurement, docs/dbbackup.md).
pub const ZSTD_LEVEL: i32 = 1;

/// What the exec stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// SQL, to compress on the client.
    Sql,
    /// SQL compressed in the pod by zstd or gzip (whichever its image had).
    InPod,
}

/// What the pipeline wrote.
#[derive(Debug)]
pub struct Written {
    /// SQL bytes.
    pub raw: u64,
    /// File bytes.
    pub written: u64,
    /// SHA-256 of the file.
    pub sha256: String,
    /// The SQL's last bytes.
    pub tail: Tail,
    /// What the stream carried: the pod's compression, or none.
    pub stream: Compression,
}

/// Runs both stages until `rx` ends; returns when everything is written (not flushed to
/// disk: the caller syncs before renaming).
pub fn write_all(
    rx: mpsc::Receiver<Vec<u8>>,
    sink: Box<dyn Write + Send>,
    compression: Compression,
    input: Input,
) -> io::Result<Written> {
    let (tx, file_rx) = mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
    let file = std::thread::Builder::new()
        .name("dump-file".into())
        .spawn(move || write_file(file_rx, sink))?;
    let coded = code(rx, tx, compression, input);
    // The file thread ends when the codec's sender is dropped (it is, inside `code`).
    let (written, sha256) = file
        .join()
        .map_err(|_| io::Error::other("the file writer panicked"))??;
    let (raw, tail, stream) = coded?;
    Ok(Written {
        raw,
        written,
        sha256,
        tail,
        stream,
    })
}

/// The file thread: hash and write every chunk.
fn write_file(
    mut rx: mpsc::Receiver<Vec<u8>>,
    sink: Box<dyn Write + Send>,
) -> io::Result<(u64, String)> {
    let mut out = BufWriter::with_capacity(CHUNK, sink);
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = rx.blocking_recv() {
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        out.write_all(&chunk)?;
    }
    out.flush()?;
    Ok((bytes, format::hex(&hasher.finalize())))
}

/// Sends what it is given to the file thread in chunks of [`CHUNK`].
struct ToFile {
    tx: mpsc::Sender<Vec<u8>>,
    buffer: Vec<u8>,
}

impl ToFile {
    fn send(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the file writer stopped"))
    }
}

impl Write for ToFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHUNK {
            let full = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
            self.send(full)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            let rest = std::mem::take(&mut self.buffer);
            self.send(rest)?;
        }
        Ok(())
    }
}

/// Counts the SQL, keeps its end and its CRC-32 (what a gzip stream's footer holds).
#[derive(Default)]
struct Sql {
    raw: u64,
    tail: Tail,
    crc: flate2::Crc,
}

impl Write for Sql {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.raw += buf.len() as u64;
        self.tail.push(buf);
        self.crc.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The SQL decoded from the pod's stream, seen by [`Sql`] and written on to `out`.
struct Tee<'a, W> {
    sql: &'a mut Sql,
    out: W,
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sql.write_all(buf)?;
        self.out.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The stream's chunks, with the ones read to tell its format given back first.
struct Chunks {
    head: Option<Vec<u8>>,
    rx: mpsc::Receiver<Vec<u8>>,
}

impl Chunks {
    fn next(&mut self) -> Option<Vec<u8>> {
        self.head.take().or_else(|| self.rx.blocking_recv())
    }

    /// The compression of a stream compressed in the pod, from its magic number; none
    /// for an empty stream (the pod wrote nothing: its status says why).
    fn compression(&mut self) -> io::Result<Compression> {
        let mut head: Vec<u8> = Vec::new();
        while head.len() < 4 {
            match self.rx.blocking_recv() {
                Some(chunk) if head.is_empty() => head = chunk,
                Some(chunk) => head.extend_from_slice(&chunk),
                None => break,
            }
        }
        if head.is_empty() {
            return Ok(Compression::None);
        }
        let found = Compression::from_magic(&head);
        self.head = Some(head);
        match found {
            Compression::None => Err(undecodable(io::Error::new(
                io::ErrorKind::InvalidData,
                "neither zstd nor gzip",
            ))),
            compressed => Ok(compressed),
        }
    }
}

/// The codec thread's work (run on the caller's thread): returns the SQL's size and tail,
/// and what the stream carried.
fn code(
    rx: mpsc::Receiver<Vec<u8>>,
    tx: mpsc::Sender<Vec<u8>>,
    compression: Compression,
    input: Input,
) -> io::Result<(u64, Tail, Compression)> {
    let mut to_file = ToFile {
        tx,
        buffer: Vec::with_capacity(CHUNK),
    };
    let mut sql = Sql::default();
    let mut chunks = Chunks { head: None, rx };
    let stream = match input {
        Input::Sql => Compression::None,
        Input::InPod => match chunks.compression()? {
            // Nothing came: nothing to write.
            Compression::None => return Ok((0, sql.tail, Compression::None)),
            compressed => compressed,
        },
    };
    let level = flate2::Compression::new(GZIP_LEVEL);
    // SQL is a stream "compressed" with none: the same arms take it.
    match (stream, compression) {
        // The file's format (the pod's, or SQL for SQL): stored as it came, checked on
        // the way.
        (stream, file) if stream == file => {
            decode(&mut chunks, stream, &mut sql, Some(&mut to_file))?
        }
        // Another format: decoded here (SQL as it is) and written as the file wants.
        (stream, Compression::None) => {
            let mut tee = Tee {
                sql: &mut sql,
                out: &mut to_file,
            };
            decode(&mut chunks, stream, &mut tee, None)?;
            tee.out.flush()?;
        }
        (stream, Compression::Gzip) => {
            let mut tee = Tee {
                sql: &mut sql,
                out: flate2::write::GzEncoder::new(&mut to_file, level),
            };
            decode(&mut chunks, stream, &mut tee, None)?;
            tee.out.finish()?.flush()?;
        }
        (stream, Compression::Zstd) => {
            let mut tee = Tee {
                sql: &mut sql,
                out: zstd::stream::write::Encoder::new(&mut to_file, ZSTD_LEVEL)?,
            };
            decode(&mut chunks, stream, &mut tee, None)?;
            tee.out.finish()?.flush()?;
        }
    }
    drop(to_file);
    Ok((sql.raw, sql.tail, stream))
}

/// Something that sees the decoded SQL: [`Sql`] alone, or a [`Tee`] to the file's encoder.
trait SeesSql: Write {
    fn sql(&self) -> &Sql;
}

impl SeesSql for Sql {
    fn sql(&self) -> &Sql {
        self
    }
}

impl<W: Write> SeesSql for Tee<'_, W> {
    fn sql(&self) -> &Sql {
        self.sql
    }
}

/// Decodes the pod's `stream` into `into`; with `to_file`, also passes each chunk on as it
/// came (moved, not copied: the file thread hashes one while the next decodes). A stream
/// that does not decode to its end is an error (the dump is refused, nothing gets the
/// final name): gzip's footer must hold the CRC-32 and length of the SQL decoded, zstd must
/// end on a whole frame.
fn decode(
    chunks: &mut Chunks,
    stream: Compression,
    into: &mut dyn SeesSql,
    mut to_file: Option<&mut ToFile>,
) -> io::Result<()> {
    let mut pass = |decoder: &mut dyn Write| -> io::Result<Vec<u8>> {
        // The stream's last 8 bytes: a gzip footer.
        let mut end: Vec<u8> = Vec::with_capacity(16);
        while let Some(chunk) = chunks.next() {
            end.extend_from_slice(&chunk[chunk.len().saturating_sub(8)..]);
            end.drain(..end.len().saturating_sub(8));
            decoder.write_all(&chunk).map_err(undecodable)?;
            if let Some(to_file) = to_file.as_deref_mut() {
                to_file.send(chunk)?;
            }
        }
        Ok(end)
    };
    match stream {
        Compression::Gzip => {
            // One member: what `gzip -c` writes for a stream.
            let mut decoder = flate2::write::GzDecoder::new(&mut *into);
            let end = pass(&mut decoder)?;
            decoder.try_finish().map_err(undecodable)?;
            drop(decoder);
            gzip_footer_matches(&end, into.sql())
        }
        Compression::Zstd => {
            let mut decoder = zstd::stream::write::Decoder::new(&mut *into)?;
            pass(&mut decoder)?;
            // An error unless the stream ends on a whole frame.
            decoder.do_finish().map_err(undecodable)
        }
        Compression::None => {
            pass(into)?;
            Ok(())
        }
    }
}

fn undecodable(err: io::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the stream compressed in the pod does not decompress: {err}"),
    )
}

/// A gzip stream ends with the CRC-32 and the length (mod 2^32) of what it holds: both
/// must be those of the SQL decoded, or the stream was cut or damaged.
fn gzip_footer_matches(end: &[u8], sql: &Sql) -> io::Result<()> {
    let word = |at: usize| {
        end.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if end.len() == 8 && word(0) == Some(sql.crc.sum()) && word(4) == Some(sql.raw as u32) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the gzip stream from the pod ends without its footer (cut off)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::DumpKind;

    const SQL: &[u8] =
        b"-- MySQL dump 10.13\nINSERT INTO t VALUES (1,'a');\n-- Dump completed on 2026\n";

    fn run(
        chunks: Vec<Vec<u8>>,
        compression: Compression,
        input: Input,
    ) -> io::Result<(Written, Vec<u8>)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let file = std::fs::File::create(&path).unwrap();
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let handle = std::thread::spawn(move || write_all(rx, Box::new(file), compression, input));
        for chunk in chunks {
            tx.blocking_send(chunk).unwrap();
        }
        drop(tx);
        let written = handle.join().unwrap()?;
        Ok((written, std::fs::read(&path).unwrap()))
    }

    fn compressed(compression: Compression) -> Vec<u8> {
        let mut out = Vec::new();
        match compression {
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
                e.write_all(SQL).unwrap();
                e.finish().unwrap();
            }
            Compression::Zstd => out = zstd::encode_all(SQL, 3).unwrap(),
            Compression::None => out = SQL.to_vec(),
        }
        out
    }

    #[test]
    fn client_side_compression_hashes_the_file_and_keeps_the_sql_tail() {
        for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let chunks = SQL.chunks(7).map(<[u8]>::to_vec).collect();
            let (written, bytes) = run(chunks, compression, Input::Sql).unwrap();
            assert_eq!(written.stream, Compression::None);
            assert_eq!(written.raw, SQL.len() as u64);
            assert!(DumpKind::Mysql.is_complete(written.tail.bytes()));
            assert_eq!(written.written, bytes.len() as u64);
            assert_eq!(written.sha256, format::hex(&Sha256::digest(&bytes)));
            assert_eq!(Compression::from_magic(&bytes), compression);
        }
    }

    #[test]
    fn a_stream_compressed_in_the_pod_is_stored_as_it_came_and_checked() {
        for compression in [Compression::Gzip, Compression::Zstd] {
            let stream = compressed(compression);
            // Chunks of 1 byte: the magic number spans several.
            let chunks = stream.chunks(1).map(<[u8]>::to_vec).collect();
            let (written, bytes) = run(chunks, compression, Input::InPod).unwrap();
            assert_eq!(bytes, stream, "{compression}: stored byte for byte");
            assert_eq!(written.raw, SQL.len() as u64);
            assert_eq!(written.stream, compression);
            assert!(DumpKind::Mysql.is_complete(written.tail.bytes()));
            assert_eq!(written.sha256, format::hex(&Sha256::digest(&bytes)));

            // Cut short anywhere, even just the footer or the frame's checksum: refused,
            // whatever the file's format.
            for file in [Compression::Gzip, Compression::Zstd, Compression::None] {
                for cut in [1, 4, 8, 12] {
                    let cut = stream[..stream.len() - cut].to_vec();
                    let result = run(vec![cut], file, Input::InPod);
                    assert!(result.is_err(), "{compression} into {file}: {result:?}");
                }
            }
        }
        // Neither zstd nor gzip: refused.
        let err = run(
            vec![b"not gzip at all".to_vec()],
            Compression::Gzip,
            Input::InPod,
        );
        assert!(err.is_err(), "{err:?}");
        // Nothing at all (the pod had no compressor, or the dump failed first): nothing
        // written, and the caller reads the remote status.
        let (written, bytes) = run(Vec::new(), Compression::Gzip, Input::InPod).unwrap();
        assert_eq!((written.raw, bytes.len()), (0, 0));
    }

    #[test]
    fn a_stream_compressed_in_the_pod_in_another_format_is_rewritten_as_the_file_wants() {
        for stream in [Compression::Gzip, Compression::Zstd] {
            for file in [Compression::Gzip, Compression::Zstd, Compression::None] {
                if file == stream {
                    continue;
                }
                let chunks = compressed(stream).chunks(3).map(<[u8]>::to_vec).collect();
                let (written, bytes) = run(chunks, file, Input::InPod).unwrap();
                assert_eq!(written.stream, stream);
                assert_eq!(
                    Compression::from_magic(&bytes),
                    file,
                    "{stream} into {file}"
                );
                let sql = match file {
                    Compression::Gzip => {
                        let mut sql = Vec::new();
                        io::Read::read_to_end(
                            &mut flate2::read::GzDecoder::new(&bytes[..]),
                            &mut sql,
                        )
                        .unwrap();
                        sql
                    }
                    Compression::Zstd => zstd::decode_all(&bytes[..]).unwrap(),
                    Compression::None => bytes.clone(),
                };
                assert_eq!(sql, SQL, "{stream} into {file}");
                assert_eq!(written.raw, SQL.len() as u64);
                assert_eq!(written.written, bytes.len() as u64);
                assert_eq!(written.sha256, format::hex(&Sha256::digest(&bytes)));
                assert!(DumpKind::Mysql.is_complete(written.tail.bytes()));
            }
        }
    }

    /// Not a test: compression speed and ratio of each level on a real dump, through the
    /// crates the client uses (`KDB_BENCH_SQL=dump.sql cargo test --release --lib
    /// compression_levels -- --ignored --nocapture`; benches/dump.sh runs it).
    #[test]
    #[ignore]
    fn compression_levels() {
        let Ok(path) = std::env::var("KDB_BENCH_SQL") else {
            return;
        };
        let sql = std::fs::read(path).unwrap();
        let mib = sql.len() as f64 / (1 << 20) as f64;
        println!("| codec | level | MiB/s (one thread) | ratio |");
        println!("|---|---|---|---|");
        let report = |name: &str, level: i32, run: &dyn Fn() -> usize| {
            let started = std::time::Instant::now();
            let size = run();
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "| {name} | {level} | {:.0} | {:.2} |",
                mib / seconds,
                sql.len() as f64 / size as f64
            );
        };
        for level in [1, 2, 3, 6] {
            report("gzip", level, &|| {
                let mut e = flate2::write::GzEncoder::new(
                    Vec::new(),
                    flate2::Compression::new(level as u32),
                );
                e.write_all(&sql).unwrap();
                e.finish().unwrap().len()
            });
        }
        for level in [1, 3, 6] {
            report("zstd", level, &|| {
                zstd::encode_all(&sql[..], level).unwrap().len()
            });
        }
    }
}
