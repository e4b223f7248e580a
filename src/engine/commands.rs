//! What runs inside a database container: the [`Commands`] each engine file implements.
//! Flows ask for "the dump command" or "the marker SQL" and get back an argument vector
//! (and, for SQL, the text for the client's stdin). Values travel as arguments
//! (`sh -c SCRIPT sh ARG...`) or as the SQL client's own variables, never as script text;
//! passwords stay in the container's environment.

use std::collections::BTreeMap;

use super::Engine;
use super::marker::Created;
use crate::exec::script_command as script;

/// A query: the client's argument vector and the SQL fed on its stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// `sh -c SCRIPT sh ARG...`.
    pub argv: Vec<String>,
    /// The SQL, fed on stdin.
    pub sql: String,
}

/// How the manifest hashes each row (see [`Commands::manifest`]). A manifest records which
/// one it used (its format), and `drill` checksums the restore the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowHash {
    /// MD5 of the row's text (manifest format 1).
    Md5,
    /// The engine's cheapest hash that still tells apart any two rows whose text differs
    /// (format 2): PostgreSQL's `hash_record_extended` or `hashtextextended`, 2-6x cheaper
    /// than MD5; MySQL and MariaDB keep MD5.
    Fast,
}

/// The in-container commands of one engine and how their output is read.
///
/// Scripts run with `sh` (dash, busybox or bash); each returns the exit status of the
/// database tool it ends in.
pub trait Commands: Sync {
    /// The engine these commands are for.
    fn engine(&self) -> Engine;

    // --- Rendered into the StatefulSet (`sh -c SCRIPT`) ---

    /// Readiness: a real query over TCP (the images' init-time server listens only on the
    /// socket, so this cannot pass before initialisation ends).
    fn readiness_probe(&self, image: &str) -> String;
    /// Liveness and start-up: is the server process answering at all.
    fn liveness_probe(&self, image: &str) -> String;
    /// preStop hook, where the image's stop signal is not already a clean, fast shutdown.
    fn pre_stop(&self) -> Option<&'static str>;

    // --- SQL ---

    /// A script that runs the SQL on its stdin as the admin user and prints rows
    /// tab-separated with no headers; its own arguments go to the client.
    fn sql_script(&self) -> &'static str;
    /// [`Commands::sql_script`] with `vars` bound as the client's variables, which the SQL
    /// names in the engine's own syntax (psql `:'name'`, MySQL `@name`).
    fn sql(&self, vars: &[(&'static str, &str)]) -> Vec<String>;
    /// SQL that returns the server version.
    fn version_sql(&self) -> &'static str;
    /// SQL that lists databases, one per row.
    fn list_databases_sql(&self) -> &'static str;

    // --- dbdeploy connect ---

    /// The engine's own client for a person or a script, logged in as [`Engine::login`]
    /// says (the application user, or the admin with `admin`) with the password from the
    /// container's environment; `args` go to the client after its own.
    fn client(&self, admin: bool, args: &[&str]) -> Vec<String>;

    // --- dbbackup ---

    /// Writes the dump to stdout: every database, or `database` alone. Without
    /// `with_credentials` the dump carries no password (hash) of any account.
    fn dump(&self, database: Option<&str>, with_credentials: bool) -> Vec<String>;
    /// [`Commands::dump`] compressed inside the container by the first of `tools` (`zstd`,
    /// `gzip`) the image has, so the exec stream carries compressed bytes (the client
    /// tells which from their magic number). The exit status is the dump tool's when it
    /// failed, else the compressor's; an image with none of them is exit 127, said on
    /// stderr before anything runs.
    fn dump_compressed(
        &self,
        database: Option<&str>,
        with_credentials: bool,
        tools: &[&str],
    ) -> Vec<String> {
        compressed_in_pod(self.dump(database, with_credentials), tools)
    }
    /// The databases a parallel dump (`dump --parallel`) takes one part of each, a line
    /// `NAME<TAB>BYTES` per database [`Commands::dump`] would write: BYTES, the engine's
    /// estimate of its size, orders the parts' start (the largest first).
    fn part_databases(&self) -> Vec<String>;
    /// Databases every instance has (PostgreSQL's `postgres`, `template1`): parts of a
    /// parallel dump, but not counted as the user's own when deciding whether it pays.
    fn default_databases(&self) -> &'static [&'static str];
    /// The part a parallel dump writes before the databases: what is not in any one
    /// database (PostgreSQL's roles and tablespaces; MySQL's accounts, only with
    /// `with_credentials`), or none.
    fn dump_globals(&self, with_credentials: bool) -> Option<Vec<String>>;
    /// One database of a parallel dump, a file restorable on its own after the globals.
    fn dump_part(&self, database: &str, with_credentials: bool) -> Vec<String>;
    /// Reads one database part of a parallel dump on stdin. Unlike [`Commands::restore`]
    /// it sets no credentials: parts run concurrently, and only the globals part touches
    /// accounts (it is restored with [`Commands::restore`], before the databases).
    fn restore_part(&self, database: &str) -> Vec<String>;
    /// Reads a dump on stdin, then sets the container's own credentials again in the same
    /// session. Stops at the first error; the exit status is the client's.
    fn restore(&self) -> Vec<String>;

    // --- dbbackup snapshot: one session holds the database while volumes are cut ---

    /// The quiesce's name in reports, and whether writes stop while it is held.
    fn quiesce_method(&self) -> (&'static str, bool);
    /// The session's command: the SQL client reading stdin, ended remotely after
    /// `max_seconds` whatever happens to the caller; `label` names the hold.
    fn quiesce_session(&self, label: &str, max_seconds: u64) -> Vec<String>;
    /// Prints `session <id>` (so another session can end this one), quiesces, waiting at
    /// most `lock_wait_seconds` for running statements, then prints `marker`.
    fn quiesce_sql(&self, session: &str, marker: &str, lock_wait_seconds: u64) -> String;
    /// Ends the hold in the same session, then prints `marker`.
    fn release_sql(&self, marker: &str) -> String;
    /// From another session: ends session `id` (and with it the hold).
    fn end_session(&self, id: u32) -> Query;
    /// Sets the container's own credentials again, in a session of its own.
    fn credentials(&self) -> Vec<String>;
    /// Lists what a restore could overwrite; read by [`Commands::with_data`].
    fn user_data(&self) -> Vec<String>;
    /// What a restore would write over, from [`Commands::user_data`]'s output.
    /// `dump_has_system_schema`: the dump carries the server's accounts (MySQL's `mysql`).
    fn with_data(&self, listing: &str, dump_has_system_schema: bool) -> Vec<String>;

    // --- dbbackup manifest and drill ---

    /// Prints what a dump of `database` (else of every user database) holds, read by
    /// `backup::manifest`: a `database<TAB>NAME` line per database, then per table
    /// `table<TAB>DATABASE<TAB>TABLE<TAB>ROWS<TAB>CHECKSUM`. The checksum does not depend
    /// on row order or physical layout (an order-free sum of per-row hashes), so it is the
    /// same after a restore into the same engine and major version. The system schemas
    /// (`mysql`, `sys`, PostgreSQL's catalogs and template databases) are left out: a
    /// restore re-asserts the instance's own accounts there.
    fn manifest(&self, database: Option<&str>, row_hash: RowHash) -> Vec<String>;
    /// [`Commands::manifest_since`] without its mark: the caller appends `since` as the last
    /// argument (empty: none), as [`manifested`] does in the pod.
    fn manifest_query(&self, database: Option<&str>, row_hash: RowHash) -> Vec<String> {
        self.manifest(database, row_hash)
    }
    /// [`Commands::manifest`], first printing `snapshot<TAB>S` (a mark of what had been
    /// written by then, where the engine has one) and, when nothing can have been written
    /// since the mark `since`, only `unchanged` after it: the pass would find what the
    /// pass that printed `since` found.
    fn manifest_since(
        &self,
        database: Option<&str>,
        row_hash: RowHash,
        _since: Option<&str>,
    ) -> Vec<String> {
        self.manifest(database, row_hash)
    }

    // --- dbcheck ---

    /// Prints `key<TAB>value` rows: version, uptime, connections, max_connections and
    /// one `database` row per database; read by [`Commands::overview_rows`].
    fn overview(&self) -> Query;
    /// `key -> values` from [`Commands::overview`]'s output, keys lower-cased.
    fn overview_rows(&self, text: &str) -> BTreeMap<String, Vec<String>> {
        rows(text, |key| key)
    }
    /// The engine's own status tool (`pg_isready`, `mysqladmin status`).
    fn status(&self) -> Vec<String>;
    /// How the status tool is named in messages.
    fn status_tool(&self) -> &'static str;

    /// `id`, then the data directory (PGDATA, else the engine's, else `mount`), its owner,
    /// mode and whether this uid can write it: `key=value` lines.
    fn permissions(&self, mount: &str) -> Vec<String> {
        const SCRIPT: &str = r#"echo "id=$(id)"
d=""
for c in "${PGDATA:-}" "$1" "$2"; do if [ -n "$c" ] && [ -d "$c" ]; then d="$c"; break; fi; done
echo "dir=$d"
[ -n "$d" ] || exit 0
echo "stat=$(stat -c '%u:%g %a' "$d" 2>/dev/null)"
if [ -w "$d" ]; then echo writable=yes; else echo writable=no; fi"#;
        script(SCRIPT, &[self.engine().data_dir(), mount])
    }
    /// `df` in POSIX format on the data volume's mount.
    fn volume(&self, mount: &str) -> Vec<String> {
        script(r#"exec df -P -- "$1""#, &[mount])
    }

    // --- dbpersist: the marker table (see [`super::marker`]) ---

    /// Creates the marker table if missing, inserts `marker` and prints three lines: did
    /// the database exist (0/1), did the table exist (0/1), the new row's id.
    fn write_marker(&self, marker: &str) -> Query;
    /// Prints the marker's rows: `id <TAB> data <TAB> created_at`.
    fn read_marker(&self, marker: &str) -> Query;
    /// Removes what the write added: the database or table when it created them, else
    /// only the marker row.
    fn remove_marker(&self, marker: &str, created: Created) -> Query;
    /// Answers as soon as the server accepts queries.
    fn ping(&self) -> Query {
        Query {
            argv: self.sql(&[]),
            sql: "SELECT 1;\n".into(),
        }
    }
}

/// Runs the command in `$2...` with its stdout through the first compressor of the list
/// `$1` the image has. zstd's window is 256 KiB (2^18, not the 512 KiB of its level 1): the
/// client's decoder holds one window per stream, and on this data it costs 0.1% in size; a
/// zstd that does not know `--zstd=` keeps its own. POSIX `sh` has no `pipefail`: each side
/// of the pipe reports its status on fd 3, captured apart from the data (fd 4 is the real
/// stdout), so a failed dump is not hidden behind a compressor that ended well on what it
/// was given.
const COMPRESS_IN_POD: &str = r#"for c in $1; do command -v "$c" >/dev/null 2>&1 && break; c=; done
[ -n "$c" ] || { echo "no compressor ($1) in the container's image" >&2; exit 127; }
shift
case $c in
  gzip) z() { gzip -1 -c; } ;;
  zstd) w=--zstd=wlog=18; zstd -q -c "$w" </dev/null >/dev/null 2>&1 || w=-q
        z() { zstd -1 -q -c "$w"; } ;;
  *) echo "unknown compressor $c" >&2; exit 2 ;;
esac
exec 4>&1
s=$( { { "$@" 3>&- 4>&-; echo "dump=$?" >&3; } | { z >&4 3>&-; echo "compress=$?" >&3; }; } 3>&1 )
exec 4>&-
d=${s#*dump=}; d=${d%%[!0-9]*}
p=${s#*compress=}; p=${p%%[!0-9]*}
[ "$d" = 0 ] || exit "${d:-1}"
[ "$p" = 0 ] || { echo "$c failed (exit ${p:-unknown})" >&2; exit 1; }"#;

/// What [`COMPRESS_IN_POD`] says on stderr when the image has none of the compressors.
pub const NO_COMPRESSOR: &str = "in the container's image";

/// Whether a run of [`compressed_in_pod`] or [`decompressed_in_pod`] stopped because the
/// image has no such tool (exit 127 and [`NO_COMPRESSOR`], said before anything ran).
pub fn no_compressor(status: &crate::exec::ExecStatus, stderr: &[u8]) -> bool {
    matches!(
        status,
        crate::exec::ExecStatus::Failure {
            code: Some(127),
            ..
        }
    ) && String::from_utf8_lossy(stderr).contains(NO_COMPRESSOR)
}

/// A dump between two passes of the manifest query, all in the dump's own exec: an exec
/// of their own would cost each pass a connection through the API server and kubelet and a
/// process the runtime starts (~0.1 s on a quiet node, round trips over a slow link).
/// Arguments: the mark, how many arguments the query has, the query (to which the pass
/// after appends the `snapshot` the pass before printed: see [`Commands::manifest_query`]),
/// then the dump command. Each pass's output goes to stderr between the lines `MARK NAME
/// start` and `MARK NAME end STATUS` (`before`; `after` once the dump succeeded), its own
/// stderr outside them; the dump's output to stdout. A pass before that fails ends the
/// script before the dump (exit 3); else the exit status is the dump's. Variables are
/// `_kdb_`-prefixed: one the container's environment also has would change for the query.
///
/// Where the pod has `mktemp` and `mkfifo`, the query gets a FIFO in `$KDB_READY`: a query
/// that writes `ready` there once its snapshots are held (PostgreSQL's) goes on counting
/// while the dump runs, instead of before it (a scan of every table: ~15% of a dump's
/// time, one core idle meanwhile); its frame follows the dump, and its failure then is
/// exit 3 too. A query that never says `ready` runs first, as without the FIFO.
const MANIFESTED: &str = r#"_kdb_m=$1 _kdb_q=$2
shift 2
# POSIX sh has no arrays: the query's arguments are rotated to the end, the others dropped.
_kdb_query() {
  _kdb_s=$1
  shift
  _kdb_n=$# _kdb_i=0
  while [ "$_kdb_i" -lt "$_kdb_n" ]; do
    [ "$_kdb_i" -lt "$_kdb_q" ] && set -- "$@" "$1"
    shift
    _kdb_i=$((_kdb_i + 1))
  done
  "$@" "$_kdb_s" </dev/null
}
_kdb_dump() { shift "$_kdb_q"; "$@"; }
_kdb_frame() { printf '\n%s %s start\n%s\n%s %s end %s\n' "$_kdb_m" "$1" "$2" "$_kdb_m" "$1" "$3" >&2; }
_kdb_held= _kdb_d=$(mktemp -d 2>/dev/null) && mkfifo "$_kdb_d/r" 2>/dev/null || {
  [ -z "$_kdb_d" ] || rm -rf "$_kdb_d"
  _kdb_d=
}
if [ -n "$_kdb_d" ]; then
  trap 'rm -rf "$_kdb_d"' EXIT
  # Read and write: the query's writes never wait for a reader.
  exec 5<>"$_kdb_d/r"
  (
    KDB_READY=$_kdb_d/r
    export KDB_READY
    _kdb_query "" "$@" >"$_kdb_d/o"
    echo "end $?" >"$_kdb_d/r"
  ) >/dev/null &
  IFS= read -r _kdb_l <&5
  [ "$_kdb_l" != ready ] || _kdb_held=1
fi
# The query's output and status once its `end` line is read (already, unless held).
_kdb_ended() {
  [ "$_kdb_l" != ready ] || IFS= read -r _kdb_l <&5
  _kdb_r=${_kdb_l#end }
  _kdb_o=$(cat "$_kdb_d/o")
}
if [ -z "$_kdb_held" ]; then
  if [ -n "$_kdb_d" ]; then
    _kdb_ended
  else
    _kdb_o=$(_kdb_query "" "$@")
    _kdb_r=$?
  fi
  _kdb_frame before "$_kdb_o" "$_kdb_r"
  [ "$_kdb_r" = 0 ] || exit 3
fi
_kdb_dump "$@"
_kdb_e=$?
if [ -n "$_kdb_held" ]; then
  _kdb_ended
  _kdb_frame before "$_kdb_o" "$_kdb_r"
fi
[ "$_kdb_e" = 0 ] || exit "$_kdb_e"
[ "$_kdb_r" = 0 ] || exit 3
_kdb_s=
case $_kdb_o in snapshot?*)
  _kdb_s=${_kdb_o%%"
"*}
  _kdb_s=${_kdb_s#snapshot?} ;;
esac
_kdb_o=$(_kdb_query "$_kdb_s" "$@")
_kdb_frame after "$_kdb_o" "$?"
exit 0"#;

/// `dump` between two passes of the manifest `query` in one exec (see [`MANIFESTED`]),
/// their output on stderr framed by `mark`.
pub fn manifested(mark: &str, query: Vec<String>, dump: Vec<String>) -> Vec<String> {
    let mut argv = script(MANIFESTED, &[mark, &query.len().to_string()]);
    argv.extend(query);
    argv.extend(dump);
    argv
}

/// `argv` with its stdout through the first of `tools` the image has (see
/// [`Commands::dump_compressed`]).
pub fn compressed_in_pod(argv: Vec<String>, tools: &[&str]) -> Vec<String> {
    let mut wrapped = script(COMPRESS_IN_POD, &[&tools.join(" ")]);
    wrapped.extend(argv);
    wrapped
}

/// Runs the command in `$2...` with its stdin through the decompressor `$1` (`zstd`): a
/// restore's stream compressed on the client. The exit status is the restore's when it
/// failed, else the decompressor's (a stream cut short must not pass for a whole SQL file
/// that the restore happened to accept); an image without the tool is exit 127, said on
/// stderr before anything runs.
const DECOMPRESS_IN_POD: &str = r#"c=$1; shift
command -v "$c" >/dev/null 2>&1 || { echo "no compressor ($c) in the container's image" >&2; exit 127; }
exec 4>&1
s=$( { { "$c" -d -q -c 3>&- 4>&-; echo "decompress=$?" >&3; } | { "$@" >&4 3>&-; echo "restore=$?" >&3; }; } 3>&1 )
exec 4>&-
d=${s#*decompress=}; d=${d%%[!0-9]*}
r=${s#*restore=}; r=${r%%[!0-9]*}
[ "$r" = 0 ] || exit "${r:-1}"
[ "$d" = 0 ] || { echo "$c -d failed (exit ${d:-unknown}): the stream was cut or damaged" >&2; exit 1; }"#;

/// `argv` reading its stdin through the decompressor `tool` (see [`DECOMPRESS_IN_POD`]).
pub fn decompressed_in_pod(argv: Vec<String>, tool: &str) -> Vec<String> {
    let mut wrapped = script(DECOMPRESS_IN_POD, &[tool]);
    wrapped.extend(argv);
    wrapped
}

/// Quotes a constant for `sh` (single quotes, `'` as `'\''`).
pub(super) fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// `key -> values` from tab-separated rows; keys lower-cased, then renamed by `name`.
pub(super) fn rows(text: &str, name: impl Fn(&str) -> &str) -> BTreeMap<String, Vec<String>> {
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('\t') else {
            continue;
        };
        let key = key.to_ascii_lowercase();
        rows.entry(name(&key).to_string())
            .or_default()
            .push(value.trim().to_string());
    }
    rows
}
