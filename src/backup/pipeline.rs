//! The client side of a dump, after the exec stream: two threads, so that neither
//! compression nor checking ever waits on the disk, and the stream waits on neither while
//! there is room in the channels.
//!
//! - The *codec* thread sees the SQL: it keeps its last bytes (for the completion trailer)
//!   and counts them. When the client compresses, it compresses here; when the pod did
//!   ([`Input::Compressed`]), it passes each chunk on first and then decompresses it only
//!   to read the SQL's size and end, which also proves the compressed stream whole (gzip's
//!   CRC and length, zstd's frame end).
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
    /// The file's bytes as written: compressed in the pod.
    Compressed,
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
    let (raw, tail) = coded?;
    Ok(Written {
        raw,
        written,
        sha256,
        tail,
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

/// The codec thread's work (run on the caller's thread): returns the SQL's size and tail.
fn code(
    mut rx: mpsc::Receiver<Vec<u8>>,
    tx: mpsc::Sender<Vec<u8>>,
    compression: Compression,
    input: Input,
) -> io::Result<(u64, Tail)> {
    let mut to_file = ToFile {
        tx,
        buffer: Vec::with_capacity(CHUNK),
    };
    let mut sql = Sql::default();
    match (input, compression) {
        (_, Compression::None) => {
            while let Some(chunk) = rx.blocking_recv() {
                sql.write_all(&chunk)?;
                to_file.send(chunk)?;
            }
        }
        (Input::Sql, Compression::Gzip) => {
            let level = flate2::Compression::new(GZIP_LEVEL);
            let mut encoder = flate2::write::GzEncoder::new(&mut to_file, level);
            compress(&mut rx, &mut encoder, &mut sql)?;
            encoder.finish()?.flush()?;
        }
        (Input::Sql, Compression::Zstd) => {
            let mut encoder = zstd::stream::write::Encoder::new(&mut to_file, ZSTD_LEVEL)?;
            compress(&mut rx, &mut encoder, &mut sql)?;
            encoder.finish()?.flush()?;
        }
        (Input::Compressed, Compression::Gzip) => {
            // One member: what `gzip -c` writes for a stream.
            let mut decoder = flate2::write::GzDecoder::new(&mut sql);
            let end = check(&mut rx, &mut to_file, &mut decoder)?;
            decoder.try_finish().map_err(undecodable)?;
            drop(decoder);
            gzip_footer_matches(&end, &sql)?;
        }
        (Input::Compressed, Compression::Zstd) => {
            let mut decoder = zstd::stream::write::Decoder::new(&mut sql)?;
            check(&mut rx, &mut to_file, &mut decoder)?;
            // An error unless the stream ends on a whole frame.
            decoder.do_finish().map_err(undecodable)?;
        }
    }
    drop(to_file);
    Ok((sql.raw, sql.tail))
}

fn compress(
    rx: &mut mpsc::Receiver<Vec<u8>>,
    encoder: &mut dyn Write,
    sql: &mut Sql,
) -> io::Result<()> {
    while let Some(chunk) = rx.blocking_recv() {
        sql.write_all(&chunk)?;
        encoder.write_all(&chunk)?;
    }
    Ok(())
}

/// Decodes compressed chunks into `decoder`, then passes them to the file (moved, not
/// copied: the file thread hashes one while the next decodes); a stream that does not
/// decode is an error (the dump is refused, nothing gets the final name). Returns the
/// stream's last 8 bytes (a gzip footer).
fn check(
    rx: &mut mpsc::Receiver<Vec<u8>>,
    to_file: &mut ToFile,
    decoder: &mut dyn Write,
) -> io::Result<Vec<u8>> {
    let mut end: Vec<u8> = Vec::with_capacity(16);
    while let Some(chunk) = rx.blocking_recv() {
        end.extend_from_slice(&chunk[chunk.len().saturating_sub(8)..]);
        end.drain(..end.len().saturating_sub(8));
        decoder.write_all(&chunk).map_err(undecodable)?;
        to_file.send(chunk)?;
    }
    Ok(end)
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
            let chunks = stream.chunks(5).map(<[u8]>::to_vec).collect();
            let (written, bytes) = run(chunks, compression, Input::Compressed).unwrap();
            assert_eq!(bytes, stream, "{compression}: stored byte for byte");
            assert_eq!(written.raw, SQL.len() as u64);
            assert!(DumpKind::Mysql.is_complete(written.tail.bytes()));
            assert_eq!(written.sha256, format::hex(&Sha256::digest(&bytes)));

            // Cut short anywhere, even just the footer or the frame's checksum: refused.
            for cut in [1, 4, 8, 12] {
                let cut = stream[..stream.len() - cut].to_vec();
                let result = run(vec![cut], compression, Input::Compressed);
                assert!(result.is_err(), "{compression}: {result:?}");
            }
            // Not compressed at all: refused.
            let err = run(
                vec![b"not gzip at all".to_vec()],
                compression,
                Input::Compressed,
            );
            assert!(err.is_err(), "{compression}");
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
