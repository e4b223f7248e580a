//! Property tests of the parsers that read untrusted bytes: a dump's header and trailer (the
//! file may be anything: truncated, binary, hostile), `.sha256` files, `df -P` output from the
//! container, and `--database` values. None of them may panic on any input, and where a
//! writer and a reader exist, what one writes the other reads back.

use std::path::Path;

use kubectl_db::backup::dump::validate_database;
use kubectl_db::backup::format::{
    self, DumpKind, HEAD_TAIL_BYTES, Head, Tail, checksum_line, parse_checksum,
};
use kubectl_db::check::inside::parse_df;
use proptest::prelude::*;

const KINDS: [DumpKind; 3] = [
    DumpKind::PostgresCluster,
    DumpKind::PostgresDatabase,
    DumpKind::Mysql,
];

/// The first lines each tool writes (pg_dumpall, pg_dump, mysqldump/mariadb-dump).
fn header(kind: DumpKind) -> &'static str {
    match kind {
        DumpKind::PostgresCluster => "--\n-- PostgreSQL database cluster dump\n--\n\n",
        DumpKind::PostgresDatabase => "--\n-- PostgreSQL database dump\n--\n\n",
        DumpKind::Mysql => {
            "-- MariaDB dump 10.19  Distrib 10.11.9-MariaDB, for debian-linux-gnu\n--\n"
        }
    }
}

/// Splits `bytes` into chunks at the given cut points (taken modulo its length).
fn chunks(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| if bytes.is_empty() { 0 } else { c % bytes.len() })
        .collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| bytes[w[0]..w[1]].to_vec())
        .collect()
}

fn kind() -> impl Strategy<Value = DumpKind> {
    prop::sample::select(KINDS.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Head and Tail keep exactly the first and last HEAD_TAIL_BYTES of a stream, however
    /// the stream is cut into chunks (exec delivers arbitrary frame sizes).
    #[test]
    fn head_and_tail_keep_the_ends_of_any_chunked_stream(
        bytes in prop::collection::vec(any::<u8>(), 0..3 * HEAD_TAIL_BYTES),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut head = Head::default();
        let mut tail = Tail::default();
        for chunk in chunks(&bytes, &cuts) {
            head.push(&chunk);
            tail.push(&chunk);
        }
        let keep = bytes.len().min(HEAD_TAIL_BYTES);
        prop_assert_eq!(head.bytes(), &bytes[..keep]);
        prop_assert_eq!(tail.bytes(), &bytes[bytes.len() - keep..]);
    }

    /// Arbitrary bytes never panic the header and trailer readers.
    #[test]
    fn header_and_trailer_readers_take_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2 * HEAD_TAIL_BYTES)) {
        let _ = DumpKind::from_header(&bytes);
        for kind in KINDS {
            let _ = kind.is_complete(&bytes);
        }
    }

    /// A tool's header followed by anything is read as that tool's dump.
    #[test]
    fn a_header_names_its_dump_kind(kind in kind(), rest in prop::collection::vec(any::<u8>(), 0..2 * HEAD_TAIL_BYTES)) {
        let mut bytes = header(kind).as_bytes().to_vec();
        bytes.extend_from_slice(&rest);
        prop_assert_eq!(DumpKind::from_header(&bytes), Some(kind));
    }

    /// Any body (binary data rows included) ending with the tool's trailer is complete, as
    /// seen through Tail in any chunking; the same body with rows after the trailer is not.
    #[test]
    fn the_trailer_counts_only_at_the_end(
        kind in kind(),
        body in prop::collection::vec(any::<u8>(), 0..2 * HEAD_TAIL_BYTES),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        rows in prop::collection::vec("[0-9a-z]{1,20}", 5..10),
    ) {
        let mut complete = body.clone();
        complete.extend_from_slice(format!("\n--\n{}\n--\n\n", kind.trailer()).as_bytes());
        let mut tail = Tail::default();
        for chunk in chunks(&complete, &cuts) {
            tail.push(&chunk);
        }
        prop_assert!(kind.is_complete(tail.bytes()));

        let mut cut = complete.clone();
        for row in &rows {
            cut.extend_from_slice(row.as_bytes());
            cut.push(b'\n');
        }
        prop_assert!(!kind.is_complete(&cut));
    }

    /// A body that holds no trailer text is never complete.
    #[test]
    fn no_trailer_no_completion(kind in kind(), body in "[0-9a-zA-Z \n\t;(),'\\\\.]{0,5000}") {
        prop_assert!(!kind.is_complete(body.as_bytes()));
    }

    /// Whatever a `.sha256` file holds, the parser answers a lowercase 64-hex digest or nothing.
    #[test]
    fn checksum_parser_takes_any_text(text in any::<String>()) {
        if let Some(digest) = parse_checksum(&text) {
            prop_assert_eq!(digest.len(), 64);
            prop_assert!(digest.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        }
    }

    /// What checksum_line writes, parse_checksum reads back, for any digest and file name
    /// (spaces and non-ASCII included), and `sha256sum`'s binary-mode line reads the same.
    #[test]
    fn checksum_lines_round_trip(digest in prop::array::uniform32(any::<u8>()), name in "[^/\0]{1,40}") {
        let hex = format::hex(&digest);
        let line = checksum_line(&hex, Path::new(&name));
        prop_assert_eq!(parse_checksum(&line), Some(hex.clone()));
        prop_assert_eq!(parse_checksum(&format!("{} *{name}\n", hex.to_uppercase())), Some(hex));
    }

    /// `df` output from the container never panics the parser.
    #[test]
    fn df_parser_takes_any_text(text in any::<String>()) {
        let _ = parse_df(&text);
    }

    /// A `df -P` table (any device name, sizes, mount point without spaces) reads back its
    /// use percentage, size and mount point.
    #[test]
    fn df_output_round_trips(
        device in "[!-~]{1,30}",
        size in any::<u64>(),
        used in any::<u64>(),
        available in any::<u64>(),
        percent in 0u32..=100,
        mount in "/[!-~]{0,40}",
        blank_lines in 0usize..3,
    ) {
        let text = format!(
            "{}Filesystem     1024-blocks      Used Available Capacity Mounted on\n{device} {size} {used} {available} {percent}% {mount}\n",
            "\n".repeat(blank_lines)
        );
        prop_assert_eq!(parse_df(&text), Some((percent, size, mount)));
    }

    /// `--database` validation never panics, refuses what pg_dump/mysqldump would read as an
    /// option or what breaks a line-based script, and accepts plain identifiers.
    #[test]
    fn database_names_are_validated(name in any::<String>(), plain in "[A-Za-z_][A-Za-z0-9_]{0,62}") {
        if validate_database(&name).is_ok() {
            prop_assert!(!name.is_empty());
            prop_assert!(!name.starts_with('-'));
            prop_assert!(!name.contains(['\0', '\n']));
        }
        prop_assert!(validate_database(&plain).is_ok(), "refused {:?}", plain);
        let option = format!("-{plain}");
        prop_assert!(validate_database(&option).is_err());
        let two_lines = format!("{plain}\n{plain}");
        prop_assert!(validate_database(&two_lines).is_err());
    }
}
