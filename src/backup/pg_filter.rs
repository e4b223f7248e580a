//! [`PgRestoreFilter`]: makes a pg_dumpall / `pg_dump --create` file restorable into a
//! running server with `ON_ERROR_STOP`, streamed in bounded pieces.
//!
//! The filter lexes the SQL the way psql does (psqlscan.l) so that it only ever acts on a
//! line that starts a statement at top level: never inside a string literal (standard or
//! `E''`), a quoted identifier, a dollar-quoted body, a comment, or the data of a
//! `COPY ... FROM stdin` (which runs until a line that is exactly `\.`). It only inserts
//! text, never changes or drops a byte of the input, and holds back at most [`HOLD`]
//! bytes (the start of a line it may rewrite), so a 500 MB bytea row passes through in
//! pieces. Assumes `standard_conforming_strings = on`, which pg_dump sets itself.

/// Most bytes of a line start held back to decide whether to rewrite it. pg_dump writes
/// the statements it rewrites (`CREATE ROLE x;`, `CREATE DATABASE x ...`) on one short line;
/// a longer line is passed through unchanged.
pub const HOLD: usize = 4096;

/// Longest dollar-quote tag tracked; longer ones do not occur in dumps.
const MAX_TAG: usize = 256;

/// Line starts the filter acts on (pg_dump writes them in upper case, at column 0).
const CREATE_ROLE: &[u8] = b"CREATE ROLE ";
const CREATE_DATABASE: &[u8] = b"CREATE DATABASE ";
const CONNECT: &[u8] = b"\\connect ";

/// Wraps `CREATE ROLE x;` so that a role which already exists (always the one we connect
/// as) is skipped instead of stopping the restore.
const ROLE_PREFIX: &[u8] = b"DO $kdb$ BEGIN ";
const ROLE_SUFFIX: &[u8] = b" EXCEPTION WHEN duplicate_object THEN NULL; END $kdb$;";

/// Where the lexer is, as psql's scanner would be.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// Top-level SQL.
    Sql,
    /// After a `-`: a second one starts a line comment.
    Dash,
    /// After a `/`: a `*` starts a block comment.
    Slash,
    LineComment,
    /// `/* ... */`, nested; `star`/`slash`: the previous byte was `*` / `/`.
    Block {
        depth: u32,
        star: bool,
        slash: bool,
    },
    /// `'...'`; `escapes`: an `E''` string, where a backslash escapes the next byte.
    Str {
        escapes: bool,
        backslash: bool,
    },
    /// Just after a closing `'`: another `'` continues the same string (`''`).
    StrEnd {
        escapes: bool,
    },
    /// `"..."`.
    Ident,
    /// After a `$` that may open a dollar quote; the tag so far is in `Lexer::tag`.
    DollarOpen,
    /// Inside `$tag$ ... $tag$`; `matched`: bytes of the closing delimiter seen so far.
    Dollar {
        matched: usize,
    },
    /// A psql backslash command: runs to the end of the line.
    Meta,
    /// `COPY ... FROM stdin` data; `pos`: progress through a `\.` line at a line start
    /// (0 = line start, 1 = `\`, 2 = `\.`, 3 = `\.\r`), `None` mid-line.
    Copy {
        pos: Option<u8>,
        after: Box<Mode>,
    },
}

/// psql's view of the input, one byte at a time.
#[derive(Debug, Clone)]
struct Lexer {
    mode: Mode,
    /// The previous byte was a newline (or nothing was read yet).
    line_start: bool,
    /// Nothing but white space and comments since the last statement ended.
    stmt_empty: bool,
    paren: u32,
    /// Length of the identifier-character run just read (0: not in a word).
    word_len: usize,
    /// The first bytes of that run, upper-cased.
    word: [u8; 8],
    /// Words completed in this statement.
    words: u32,
    stmt_is_copy: bool,
    prev_word_from: bool,
    from_stdin: bool,
    /// A `COPY ... FROM stdin;` ended on this line: its data starts on the next one.
    copy_pending: bool,
    /// Statements ended (a `;` at top level) so far.
    statements: u64,
    tag: Vec<u8>,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn is_tag_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_tag_byte(b: u8) -> bool {
    is_tag_start(b) || b.is_ascii_digit()
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer {
            mode: Mode::Sql,
            line_start: true,
            stmt_empty: true,
            paren: 0,
            word_len: 0,
            word: [0; 8],
            words: 0,
            stmt_is_copy: false,
            prev_word_from: false,
            from_stdin: false,
            copy_pending: false,
            statements: 0,
            tag: Vec::new(),
        }
    }
}

impl Lexer {
    /// At the start of a line that starts a statement at top level.
    fn at_statement_start(&self) -> bool {
        self.line_start && self.mode == Mode::Sql && self.stmt_empty && self.paren == 0
    }

    /// In COPY data, not at a line start: the rest of the line is data.
    fn mid_copy_line(&self) -> bool {
        matches!(self.mode, Mode::Copy { pos: None, .. })
    }

    /// Lexes `input` up to and including the first newline after which a statement may
    /// start, or all of it. Returns the bytes consumed.
    fn run(&mut self, input: &[u8]) -> usize {
        let mut i = 0;
        while i < input.len() {
            if self.mid_copy_line() {
                // The bulk of a dump: skip to the end of the data line.
                match input[i..].iter().position(|&b| b == b'\n') {
                    Some(n) => i += n,
                    None => return input.len(),
                }
            }
            let b = input[i];
            i += 1;
            self.step(b);
            if b == b'\n' && self.at_statement_start() {
                break;
            }
        }
        i
    }

    fn step(&mut self, b: u8) {
        if b == b'\n' && self.copy_pending && !matches!(self.mode, Mode::Copy { .. }) {
            // psql sends the COPY at its `;` and reads the data from the next line on;
            // the rest of this line is SQL again once the data ends.
            self.copy_pending = false;
            self.step_mode(b);
            let after = std::mem::replace(&mut self.mode, Mode::Sql);
            self.mode = Mode::Copy {
                pos: Some(0),
                after: Box::new(after),
            };
            self.line_start = true;
            return;
        }
        self.step_mode(b);
        self.line_start = b == b'\n';
    }

    fn step_mode(&mut self, b: u8) {
        match &mut self.mode {
            Mode::Sql => self.sql(b),
            Mode::Dash => {
                if b == b'-' {
                    self.mode = Mode::LineComment;
                } else {
                    self.mode = Mode::Sql;
                    self.token();
                    self.sql(b);
                }
            }
            Mode::Slash => {
                if b == b'*' {
                    self.mode = Mode::Block {
                        depth: 1,
                        star: false,
                        slash: false,
                    };
                } else {
                    self.mode = Mode::Sql;
                    self.token();
                    self.sql(b);
                }
            }
            // psql ends a `--` comment at a carriage return too.
            Mode::LineComment => {
                if b == b'\n' || b == b'\r' {
                    self.mode = Mode::Sql;
                }
            }
            Mode::Block { depth, star, slash } => {
                if *slash && b == b'*' {
                    *depth += 1;
                    *star = false;
                    *slash = false;
                } else if *star && b == b'/' {
                    *depth -= 1;
                    if *depth == 0 {
                        self.mode = Mode::Sql;
                    } else {
                        *star = false;
                        *slash = false;
                    }
                } else {
                    *star = b == b'*';
                    *slash = b == b'/';
                }
            }
            Mode::Str { escapes, backslash } => {
                if *backslash {
                    *backslash = false;
                } else if *escapes && b == b'\\' {
                    *backslash = true;
                } else if b == b'\'' {
                    self.mode = Mode::StrEnd { escapes: *escapes };
                }
            }
            Mode::StrEnd { escapes } => {
                if b == b'\'' {
                    self.mode = Mode::Str {
                        escapes: *escapes,
                        backslash: false,
                    };
                } else {
                    self.mode = Mode::Sql;
                    self.sql(b);
                }
            }
            Mode::Ident => {
                if b == b'"' {
                    self.mode = Mode::Sql;
                }
            }
            Mode::DollarOpen => {
                if b == b'$' {
                    self.mode = Mode::Dollar { matched: 0 };
                } else if self.tag.len() < MAX_TAG
                    && (if self.tag.is_empty() {
                        is_tag_start(b)
                    } else {
                        is_tag_byte(b)
                    })
                {
                    self.tag.push(b);
                } else {
                    // Not a dollar quote (`$1`, a lone `$`): psql re-reads what followed
                    // the `$` as ordinary SQL.
                    let tag = std::mem::take(&mut self.tag);
                    self.mode = Mode::Sql;
                    for t in tag {
                        self.sql(t);
                    }
                    self.sql(b);
                }
            }
            Mode::Dollar { matched } => {
                // The closing delimiter is `$tag$`; the tag holds no `$`.
                let m = *matched;
                let want = if m == 0 || m == self.tag.len() + 1 {
                    b'$'
                } else {
                    self.tag[m - 1]
                };
                if b == want {
                    if m == self.tag.len() + 1 {
                        self.tag.clear();
                        self.mode = Mode::Sql;
                        self.word_len = 0;
                    } else {
                        *matched = m + 1;
                    }
                } else {
                    *matched = usize::from(b == b'$');
                }
            }
            Mode::Meta => {
                if b == b'\n' {
                    self.mode = Mode::Sql;
                }
            }
            Mode::Copy { pos, after } => {
                *pos = match (*pos, b) {
                    (_, b'\n') if matches!(*pos, Some(2) | Some(3)) => {
                        let after = std::mem::replace(after.as_mut(), Mode::Sql);
                        self.mode = after;
                        return;
                    }
                    (_, b'\n') => Some(0),
                    (Some(0), b'\\') => Some(1),
                    (Some(1), b'.') => Some(2),
                    (Some(2), b'\r') => Some(3),
                    _ => None,
                };
            }
        }
    }

    /// A byte of top-level SQL.
    fn sql(&mut self, b: u8) {
        if is_word_byte(b) && !(b == b'$' && self.word_len == 0) {
            if self.word_len == 0 {
                self.significant();
            }
            if self.word_len < self.word.len() {
                self.word[self.word_len] = b.to_ascii_uppercase();
            }
            self.word_len += 1;
            return;
        }
        let e_prefix = self.word_len == 1 && self.word[0] == b'E';
        self.end_word();
        match b {
            b'\'' => {
                // `E'...'`: the E is part of the string, not a word.
                if e_prefix {
                    self.words -= 1;
                }
                self.token();
                self.mode = Mode::Str {
                    escapes: e_prefix,
                    backslash: false,
                };
            }
            b'"' => {
                self.token();
                self.mode = Mode::Ident;
            }
            b'$' => {
                self.token();
                self.tag.clear();
                self.mode = Mode::DollarOpen;
            }
            b'-' => self.mode = Mode::Dash,
            b'/' => self.mode = Mode::Slash,
            b'\\' => {
                // A backslash command also sends or ends what came before it.
                self.mode = Mode::Meta;
            }
            b'(' => {
                self.token();
                self.paren += 1;
            }
            b')' => {
                self.token();
                self.paren = self.paren.saturating_sub(1);
            }
            b';' if self.paren == 0 => {
                if self.stmt_is_copy && self.from_stdin {
                    self.copy_pending = true;
                }
                self.statements += 1;
                self.stmt_empty = true;
                self.words = 0;
                self.stmt_is_copy = false;
                self.prev_word_from = false;
                self.from_stdin = false;
            }
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c' => {}
            _ => self.token(),
        }
    }

    /// Something other than white space, a comment or a word.
    fn token(&mut self) {
        self.significant();
        self.prev_word_from = false;
    }

    fn significant(&mut self) {
        self.stmt_empty = false;
    }

    fn end_word(&mut self) {
        if self.word_len == 0 {
            return;
        }
        let word = &self.word[..self.word_len.min(self.word.len())];
        let exact = self.word_len <= self.word.len();
        if self.words == 0 {
            self.stmt_is_copy = exact && word == b"COPY";
        }
        if self.prev_word_from && exact && word == b"STDIN" {
            self.from_stdin = true;
        }
        self.prev_word_from = exact && word == b"FROM";
        self.words += 1;
        self.word_len = 0;
    }
}

/// The filter; feed it with [`push`](Self::push) and end with [`finish`](Self::finish).
/// Roles that already exist are skipped instead of failing, and each database the file
/// creates is dropped first (`WITH (FORCE)`, PostgreSQL 13+).
#[derive(Debug, Default)]
pub struct PgRestoreFilter {
    lex: Lexer,
    /// The start of a line that may be rewritten, not yet passed on.
    held: Vec<u8>,
    holding: bool,
    /// A `\connect` was seen: roles are created before the first one.
    connected: bool,
    /// Bytes passed on so far.
    emitted: u64,
    /// Offsets and lengths of inserted text, when asked for (tests).
    insertions: Option<Vec<(u64, usize)>>,
}

impl PgRestoreFilter {
    /// A filter that records where it inserted text ([`Self::insertions`]).
    pub fn recording() -> Self {
        PgRestoreFilter {
            insertions: Some(Vec::new()),
            ..Default::default()
        }
    }

    /// Where text was inserted into the output (offset, length), for [`Self::recording`].
    pub fn insertions(&self) -> &[(u64, usize)] {
        self.insertions.as_deref().unwrap_or(&[])
    }

    /// Bytes held back right now (never more than [`HOLD`]).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Appends `input`, rewritten where needed, to `out`; may hold back up to [`HOLD`]
    /// bytes of a line start until more input or [`Self::finish`].
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            if self.holding {
                let room = HOLD - self.held.len();
                let take = input[..input.len().min(room)]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(input.len().min(room), |n| n + 1);
                self.held.extend_from_slice(&input[..take]);
                input = &input[take..];
                if self.held.ends_with(b"\n") || self.held.len() == HOLD || !self.may_rewrite() {
                    self.release(out);
                }
                continue;
            }
            if self.lex.at_statement_start() {
                self.holding = true;
                continue;
            }
            let n = self.lex.run(input);
            self.emit(&input[..n], out);
            input = &input[n..];
        }
    }

    /// Passes on whatever is still held.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.holding {
            self.release(out);
        }
    }

    /// The held bytes could still be (or are) a line the filter rewrites.
    fn may_rewrite(&self) -> bool {
        [CREATE_ROLE, CREATE_DATABASE, CONNECT].iter().any(|kw| {
            let n = kw.len().min(self.held.len());
            kw[..n] == self.held[..n]
        })
    }

    fn release(&mut self, out: &mut Vec<u8>) {
        self.holding = false;
        let line = std::mem::take(&mut self.held);
        if line.starts_with(CONNECT) {
            self.connected = true;
        } else if !self.connected && line.starts_with(CREATE_ROLE) {
            if let Some(end) = self.single_statement_end(&line) {
                self.insert(ROLE_PREFIX, out);
                self.pass(&line[..end], out);
                self.insert(ROLE_SUFFIX, out);
                self.pass(&line[end..], out);
                self.held = line;
                self.held.clear();
                return;
            }
        } else if let Some(rest) = line.strip_prefix(CREATE_DATABASE)
            && let Some(name) = sql_identifier(rest)
        {
            let mut drop = b"DROP DATABASE IF EXISTS ".to_vec();
            drop.extend_from_slice(name);
            drop.extend_from_slice(b" WITH (FORCE);\n");
            self.insert(&drop, out);
        }
        self.pass(&line, out);
        // Keep the allocation for the next held line.
        self.held = line;
        self.held.clear();
    }

    /// When `line` is one whole statement ending with `;` (then white space), the offset
    /// just past that `;`; it must also not contain the wrapper's own quote tag.
    fn single_statement_end(&self, line: &[u8]) -> Option<usize> {
        if !line.ends_with(b"\n") || line.windows(5).any(|w| w == b"$kdb$") {
            return None;
        }
        let end = line.iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
        if line[end - 1] != b';' {
            return None;
        }
        let mut dry = self.lex.clone();
        let before = dry.statements;
        for &b in &line[..end - 1] {
            dry.step(b);
        }
        let whole = dry.statements == before && dry.mode == Mode::Sql && dry.paren == 0;
        dry.step(b';');
        (whole && dry.statements == before + 1).then_some(end)
    }

    /// Lexes and passes on bytes of the input (which never start a new hold).
    fn pass(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for &b in bytes {
            self.lex.step(b);
        }
        self.emit(bytes, out);
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(bytes);
        self.emitted += bytes.len() as u64;
    }

    fn insert(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if let Some(log) = &mut self.insertions {
            log.push((self.emitted, bytes.len()));
        }
        self.emit(bytes, out);
    }
}

/// The identifier at the start of `text`: `"quoted ""name"""` or a bare word, followed by
/// white space or `;`.
fn sql_identifier(text: &[u8]) -> Option<&[u8]> {
    let end = if text.first() == Some(&b'"') {
        let mut i = 1;
        loop {
            match text.get(i)? {
                b'"' if text.get(i + 1) == Some(&b'"') => i += 2,
                b'"' => break i + 1,
                _ => i += 1,
            }
        }
    } else {
        let n = text.iter().position(|&b| !is_word_byte(b))?;
        if n == 0 {
            return None;
        }
        n
    };
    match text.get(end)? {
        b' ' | b'\t' | b'\r' | b'\n' | b';' => Some(&text[..end]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn filter_chunked(input: &[u8], sizes: &[usize]) -> (Vec<u8>, PgRestoreFilter) {
        let mut f = PgRestoreFilter::recording();
        let mut out = Vec::new();
        let mut rest = input;
        let mut sizes = sizes.iter().cycle();
        while !rest.is_empty() {
            let n = sizes
                .next()
                .copied()
                .unwrap_or(rest.len())
                .clamp(1, rest.len());
            f.push(&rest[..n], &mut out);
            assert!(f.held() <= HOLD);
            rest = &rest[n..];
        }
        f.finish(&mut out);
        (out, f)
    }

    fn filter(text: &str) -> String {
        String::from_utf8(filter_chunked(text.as_bytes(), &[usize::MAX]).0).unwrap()
    }

    /// The output with every recorded insertion cut out.
    fn without_insertions(out: &[u8], f: &PgRestoreFilter) -> Vec<u8> {
        let mut kept = Vec::new();
        let mut at = 0usize;
        for &(offset, len) in f.insertions() {
            let offset = offset as usize;
            kept.extend_from_slice(&out[at..offset]);
            at = offset + len;
        }
        kept.extend_from_slice(&out[at..]);
        kept
    }

    #[test]
    fn existing_roles_are_skipped_and_databases_replaced() {
        let dump = "CREATE ROLE appuser;\nALTER ROLE appuser WITH SUPERUSER;\n\\connect template1\nCREATE DATABASE appdb WITH TEMPLATE = template0 ENCODING = 'UTF8';\n\\connect appdb\n";
        let out = filter(dump);
        assert!(out.starts_with(
            "DO $kdb$ BEGIN CREATE ROLE appuser; EXCEPTION WHEN duplicate_object THEN NULL; END $kdb$;\nALTER ROLE"
        ));
        assert!(
            out.contains("DROP DATABASE IF EXISTS appdb WITH (FORCE);\nCREATE DATABASE appdb WITH")
        );
    }

    #[test]
    fn copy_data_is_never_rewritten() {
        let dump = "\\connect appdb\nCOPY public.t (id, s) FROM stdin;\n1\tCREATE DATABASE x;\nCREATE DATABASE y;\n\\.x\nCREATE DATABASE z;\n\\.\nCREATE DATABASE \"My \"\"DB\"\"\" WITH TEMPLATE = template0;\n";
        let out = filter(dump);
        assert!(!out.contains("DROP DATABASE IF EXISTS x"));
        assert!(!out.contains("DROP DATABASE IF EXISTS y"));
        assert!(!out.contains("DROP DATABASE IF EXISTS z"));
        assert!(out.contains("DROP DATABASE IF EXISTS \"My \"\"DB\"\"\" WITH (FORCE);\n"));
    }

    #[test]
    fn literals_bodies_and_comments_are_never_rewritten() {
        let dump = concat!(
            "COMMENT ON TABLE public.t IS 'first line\n",
            "CREATE DATABASE x'';\n",
            "CREATE DATABASE x2;';\n",
            "SELECT E'it\\'s\n",
            "CREATE DATABASE e;';\n",
            "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $_$\n",
            "CREATE DATABASE d;\n",
            "$_$;\n",
            "SELECT $body$ $_$\n",
            "CREATE DATABASE d2;\n",
            "$body$;\n",
            "/* block /* nested */\n",
            "CREATE DATABASE c;\n",
            "*/\n",
            "CREATE TABLE \"a\n",
            "CREATE DATABASE i\" (x int);\n",
            "SELECT 1 FROM t WHERE a IN (1,\n",
            "CREATE DATABASE p);\n",
            "CREATE DATABASE real;\n",
        );
        let out = filter(dump);
        assert_eq!(
            out.matches("DROP DATABASE").count(),
            1,
            "only the last line is a statement: {out}"
        );
        assert!(
            out.ends_with("DROP DATABASE IF EXISTS real WITH (FORCE);\nCREATE DATABASE real;\n")
        );
    }

    #[test]
    fn roles_after_connect_are_left_alone() {
        let out = filter("\\connect appdb\nCREATE ROLE inside;\n");
        assert_eq!(out, "\\connect appdb\nCREATE ROLE inside;\n");
    }

    #[test]
    fn a_role_line_that_is_not_one_statement_is_not_wrapped() {
        for line in [
            "CREATE ROLE a; SELECT 1;\n",
            "CREATE ROLE \"a;\n",
            "CREATE ROLE a\n",
            "CREATE ROLE \"$kdb$\";\n",
        ] {
            assert_eq!(filter(line), line);
        }
    }

    #[test]
    fn positional_parameters_and_words_with_dollars_are_not_quotes() {
        let out = filter("SELECT $1, a$b$ FROM t;\nCREATE DATABASE x;\n");
        assert!(out.contains("DROP DATABASE IF EXISTS x"), "{out}");
    }

    #[test]
    fn a_long_line_passes_in_pieces() {
        let mut input = b"COPY public.b (id, b) FROM stdin;\n1\t\\\\x".to_vec();
        input.resize(input.len() + (8 << 20), b'a');
        input.extend_from_slice(b"\n\\.\nCREATE DATABASE after;\n");
        let mut f = PgRestoreFilter::default();
        let mut out = Vec::new();
        let mut largest = 0;
        for chunk in input.chunks(64 << 10) {
            f.push(chunk, &mut out);
            largest = largest.max(out.len());
            out.clear();
            assert!(f.held() <= HOLD);
        }
        f.finish(&mut out);
        assert!(largest <= (64 << 10) + HOLD, "{largest}");
        let long = b"CREATE DATABASE "
            .iter()
            .copied()
            .chain(std::iter::repeat_n(b'x', 3 * HOLD))
            .collect::<Vec<_>>();
        assert_eq!(filter_chunked(&long, &[7]).0, long);
    }

    /// Pieces of a dump: (input text, expected output text).
    /// Arbitrary text mixed with lines that would be rewritten at top level.
    fn any_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                "(?s).{0,20}",
                Just("\nCREATE DATABASE x;\n".to_string()),
                Just("\nCREATE DATABASE x';\n".to_string()),
                Just("\nCREATE ROLE r;\n".to_string()),
                Just("\n\\.\n".to_string()),
                Just("\n\\connect d\n".to_string()),
                Just("\nCOPY t FROM stdin;\n".to_string()),
            ],
            0..5,
        )
        .prop_map(|v| v.concat())
    }

    fn statement() -> impl Strategy<Value = (String, String)> {
        prop_oneof![
            Just(("SET x = 1;\n".to_string(), "SET x = 1;\n".to_string())),
            "[a-z_][a-z0-9_]{0,8}".prop_map(|n| (
                format!("CREATE DATABASE {n} WITH OWNER = a;\n"),
                format!("DROP DATABASE IF EXISTS {n} WITH (FORCE);\nCREATE DATABASE {n} WITH OWNER = a;\n")
            )),
            any_text().prop_map(|t| {
                let t = t.replace('\'', "''");
                let s = format!("COMMENT ON TABLE t IS '{t}';\n");
                (s.clone(), s)
            }),
            any_text().prop_map(|t| {
                let t = t.replace('\\', "\\\\").replace('\'', "\\'");
                let s = format!("SELECT E'{t}';\n");
                (s.clone(), s)
            }),
            (any_text(), "[a-z]{0,3}").prop_map(|(t, tag)| {
                let t = t.replace('$', "");
                let s = format!("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS ${tag}$\n{t}\n${tag}$;\n");
                (s.clone(), s)
            }),
            any_text().prop_map(|t| {
                let t = t.replace('"', "\"\"");
                let s = format!("CREATE TABLE \"{t}\" (x int);\n");
                (s.clone(), s)
            }),
            any_text().prop_map(|t| {
                let t = t.replace('*', "");
                let s = format!("/* {t} */\n-- {}\n", t.replace(['\n', '\r'], " "));
                (s.clone(), s)
            }),
            proptest::collection::vec(prop_oneof![
                "[^\n]{0,30}",
                Just("CREATE DATABASE x;".to_string()),
                Just("\\.x".to_string()),
                Just("CREATE ROLE r;".to_string()),
            ], 0..4).prop_map(|rows| {
                let mut s = "COPY public.t (id, s) FROM stdin;\n".to_string();
                for row in rows {
                    if row != "\\." && row != "\\.\r" {
                        s.push_str(&row);
                        s.push('\n');
                    }
                }
                s.push_str("\\.\n");
                (s.clone(), s)
            }),
        ]
    }

    proptest! {
        #[test]
        fn text_inside_literals_quotes_and_copy_passes_unchanged(
            pieces in proptest::collection::vec(statement(), 1..12),
            sizes in proptest::collection::vec(1usize..50, 1..8),
        ) {
            let input: String = pieces.iter().map(|(i, _)| i.as_str()).collect();
            let expected: String = pieces.iter().map(|(_, o)| o.as_str()).collect();
            let (out, f) = filter_chunked(input.as_bytes(), &sizes);
            prop_assert_eq!(String::from_utf8_lossy(&out), expected);
            prop_assert_eq!(without_insertions(&out, &f), input.as_bytes());
        }

        #[test]
        fn only_insertions_whatever_the_input_and_the_chunking(
            input in proptest::collection::vec(prop_oneof![
                Just(b"CREATE DATABASE x;\n".to_vec()),
                Just(b"CREATE ROLE r;\n".to_vec()),
                Just(b"COPY t FROM stdin;\n".to_vec()),
                Just(b"\\.\n".to_vec()),
                Just(b"\\connect d\n".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..20),
                "[-'\"$/*;\n\\\\ a-zE()]{0,12}".prop_map(String::into_bytes),
            ], 0..30).prop_map(|v| v.concat()),
            sizes in proptest::collection::vec(1usize..40, 1..8),
        ) {
            let (out, f) = filter_chunked(&input, &sizes);
            prop_assert_eq!(&without_insertions(&out, &f), &input);
            let (whole, _) = filter_chunked(&input, &[usize::MAX]);
            prop_assert_eq!(out, whole);
        }
    }
}
