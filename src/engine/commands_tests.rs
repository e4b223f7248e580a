//! The engines × commands matrix. Every command of every engine is rendered, then run
//! with the local `sh` against stub database tools on PATH that log their name, their
//! arguments, the password they got from the environment and their stdin: the choice
//! between `mysql*` and `mariadb*` names and the passing of values are shown working.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::marker::Created;
use super::{Engine, Query, RowHash};

/// Values that must reach the tools exactly as they are, never run as code.
const VALUES: &[&str] = &[
    "plain",
    "it's",
    "two words",
    "$HOME $(touch pwned) `touch pwned`",
    "한국어 마커",
    "x'; DROP TABLE t; --",
    r#"back\slash "quoted" \n"#,
    "-dash",
    "new\nline",
    "",
];

const PASSWORD: &str = "pw 'S3cret\" $x";

/// Which client names a container has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tools {
    Postgres,
    /// MySQL images: `mysql`, `mysqladmin`, `mysqldump` only.
    MysqlNames,
    /// MariaDB 11 images: `mariadb`, `mariadb-admin`, `mariadb-dump` only.
    MariadbNames,
    /// MariaDB 10.x images: both.
    Both,
}

impl Tools {
    fn names(self) -> &'static [&'static str] {
        match self {
            Tools::Postgres => &["psql", "pg_dump", "pg_dumpall", "pg_isready"],
            Tools::MysqlNames => &["mysql", "mysqladmin", "mysqldump"],
            Tools::MariadbNames => &["mariadb", "mariadb-admin", "mariadb-dump"],
            Tools::Both => &[
                "mysql",
                "mysqladmin",
                "mysqldump",
                "mariadb",
                "mariadb-admin",
                "mariadb-dump",
            ],
        }
    }

    /// The names a script is expected to run: the MariaDB ones wherever they exist.
    fn expected(self, mysql_name: &str) -> String {
        match self {
            Tools::MysqlNames | Tools::Postgres => mysql_name.to_string(),
            Tools::MariadbNames | Tools::Both => match mysql_name {
                "mysql" => "mariadb".into(),
                other => other.replace("mysql", "mariadb-"),
            },
        }
    }

    fn for_engine(engine: Engine) -> &'static [Tools] {
        match engine {
            Engine::Postgres => &[Tools::Postgres],
            Engine::Mysql | Engine::Mariadb => {
                &[Tools::MysqlNames, Tools::MariadbNames, Tools::Both]
            }
        }
    }
}

/// A stub tool's record of one run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Call {
    tool: String,
    args: Vec<String>,
    /// `$MYSQL_PWD$PGPASSWORD` as the tool saw it.
    password: String,
    stdin: String,
}

/// What a script did: its exit status, stdout and the stub tools it ran.
#[derive(Debug)]
struct Ran {
    success: bool,
    stdout: String,
    stderr: String,
    calls: Vec<Call>,
}

/// Logs one record per field, each ended by ASCII RS, so values may hold newlines.
const STUB: &str = r#"#!/bin/sh
{ printf 'tool=%s\036' "${0##*/}"
  printf 'password=%s\036' "${MYSQL_PWD:-}${PGPASSWORD:-}"
  for a; do printf 'arg=%s\036' "$a"; done
  printf 'stdin='; cat; printf '\036'
} >>"$KDB_STUB_LOG"
printf '%s' "${KDB_STUB_OUT:-}"
"#;

/// Links the host's `utils` into `bin`, the PATH of a script under test.
fn link_utils<'a>(bin: &Path, utils: impl IntoIterator<Item = &'a &'a str>) {
    for util in utils {
        let found = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(util))
            .find(|p| p.exists())
            .unwrap();
        std::os::unix::fs::symlink(found, bin.join(util)).unwrap();
    }
}

/// Runs `argv` (`sh -c SCRIPT sh ARG...`) in an empty directory with only the stub `tools`
/// and a few utilities on PATH, the container's environment, and `stdin`.
fn run(argv: &[String], tools: Tools, stdin: &str, stub_out: &str) -> Ran {
    run_with(argv, tools, stdin.as_bytes(), stub_out, &[])
}

/// [`run`] in an image that also has the real `utils` (e.g. `zstd`).
fn run_with(argv: &[String], tools: Tools, stdin: &[u8], stub_out: &str, utils: &[&str]) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in tools.names() {
        crate::testing::write_executable(&bin.join(name), STUB);
    }
    let base = ["cat", "id", "stat", "df", "timeout", "gzip", "sh"];
    link_utils(&bin, base.iter().chain(utils));
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let log = dir.path().join("log");
    assert_eq!(argv[0], "sh");
    let mut child = Command::new("/bin/sh")
        .args(&argv[1..])
        .current_dir(&work)
        .env_clear()
        .env("PATH", &bin)
        .env("KDB_STUB_LOG", &log)
        .env("KDB_STUB_OUT", stub_out)
        .env("POSTGRES_PASSWORD", PASSWORD)
        .env("POSTGRES_USER", "app")
        .env("POSTGRES_DB", "appdb")
        .env("MYSQL_ROOT_PASSWORD", PASSWORD)
        .env("MYSQL_USER", "app")
        .env("MYSQL_PASSWORD", "app pw")
        .env("MYSQL_DATABASE", "appdb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A script may exit without reading its stdin; that is its own business.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(
        std::fs::read_dir(&work).unwrap().next().is_none(),
        "a value ran as code: {argv:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let mut calls: Vec<Call> = Vec::new();
    for field in text.split('\u{1e}').filter(|f| !f.is_empty()) {
        let (key, value) = field.split_once('=').unwrap();
        if key == "tool" {
            calls.push(Call::default());
        }
        let call = calls.last_mut().unwrap();
        match key {
            "tool" => call.tool = value.into(),
            "password" => call.password = value.into(),
            "arg" => call.args.push(value.into()),
            "stdin" => call.stdin = value.into(),
            other => panic!("{other}"),
        }
    }
    Ran {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into(),
        stderr: String::from_utf8_lossy(&output.stderr).into(),
        calls,
    }
}

/// The one call a script made to a tool, checked to have run and to carry the password
/// in its environment only.
fn one_call(ran: &Ran) -> &Call {
    assert!(ran.success, "{ran:?}");
    let [call] = ran.calls.as_slice() else {
        panic!("expected one tool call: {ran:?}");
    };
    assert_no_password_in_args(call);
    call
}

fn assert_no_password_in_args(call: &Call) {
    assert!(
        call.args.iter().all(|a| !a.contains("S3cret")),
        "password in argv: {call:?}"
    );
    if call.tool != "pg_isready" {
        assert_eq!(call.password, PASSWORD, "{call:?}");
    }
}

/// Every command of `engine` with `value` in it, by name.
fn every_command(engine: Engine, value: &str) -> Vec<(&'static str, Vec<String>)> {
    let c = engine.commands();
    vec![
        ("sql", c.sql(&[])),
        ("sql vars", c.sql(&[("marker", value)])),
        ("dump all", c.dump(None, false)),
        ("dump all with credentials", c.dump(None, true)),
        ("dump one", c.dump(Some(value), false)),
        ("restore", c.restore()),
        ("part databases", c.part_databases()),
        ("dump globals", c.dump_globals(true).unwrap_or_default()),
        ("dump part", c.dump_part(value, false)),
        ("restore part", c.restore_part(value)),
        ("credentials", c.credentials()),
        ("user data", c.user_data()),
        ("manifest", c.manifest(Some(value), RowHash::Fast)),
        ("manifest md5", c.manifest(Some(value), RowHash::Md5)),
        ("manifest all", c.manifest(None, RowHash::Fast)),
        ("overview", c.overview().argv),
        ("status", c.status()),
        ("permissions", c.permissions(value)),
        ("volume", c.volume(value)),
        ("write marker", c.write_marker(value).argv),
        ("read marker", c.read_marker(value).argv),
        (
            "remove marker",
            c.remove_marker(value, Created::default()).argv,
        ),
        ("ping", c.ping().argv),
        ("quiesce session", c.quiesce_session(value, 60)),
        ("end session", c.end_session(7).argv),
    ]
}

#[test]
fn every_command_is_a_constant_script_with_values_as_arguments() {
    for engine in Engine::ALL {
        let scripts: Vec<(&str, String)> = every_command(engine, "a")
            .into_iter()
            .map(|(kind, argv)| (kind, argv[2].clone()))
            .collect();
        for value in VALUES.iter().filter(|v| v.len() > 1) {
            for (kind, argv) in every_command(engine, value) {
                assert_eq!(argv[..2], ["sh", "-c"], "{engine} {kind}");
                assert_eq!(argv[3], "sh", "{engine} {kind}: $0");
                let same = scripts.iter().find(|(k, _)| *k == kind).unwrap();
                assert_eq!(
                    argv[2], same.1,
                    "{engine} {kind}: the script changed with a value"
                );
                assert!(
                    !argv[2].contains(value),
                    "{engine} {kind}: {value:?} in the script"
                );
                assert!(
                    !crate::exec::carries_password(&argv),
                    "{engine} {kind}: {argv:?}"
                );
            }
        }
    }
}

#[test]
fn marker_sql_is_constant_text_and_the_marker_a_client_variable() {
    for engine in Engine::ALL {
        let c = engine.commands();
        let created = [
            Created::default(),
            Created {
                database: false,
                table: true,
            },
            Created {
                database: true,
                table: true,
            },
        ];
        for value in VALUES {
            let mut queries = vec![c.write_marker(value), c.read_marker(value)];
            queries.extend(created.iter().map(|cr| c.remove_marker(value, *cr)));
            let plain = [c.write_marker("m"), c.read_marker("m")];
            for (query, plain) in queries.iter().zip(&plain) {
                assert_eq!(
                    query.sql, plain.sql,
                    "{engine}: the SQL changed with {value:?}"
                );
            }
            for query in &queries {
                for tools in Tools::for_engine(engine) {
                    let ran = run(&query.argv, *tools, &query.sql, "");
                    let call = one_call(&ran);
                    assert_eq!(call.tool, tools.expected(client_name(engine)));
                    assert_eq!(call.stdin, query.sql);
                    assert_eq!(bound(engine, call).as_deref(), Some(*value), "{engine}");
                }
            }
        }
        let write = c.write_marker("m").sql;
        assert!(write.contains("CREATE TABLE IF NOT EXISTS"), "{write}");
        assert!(write.contains("created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP"));
        assert!(write.contains("persistent_test"));
        let drop_db = c.remove_marker("m", created[2]).sql;
        assert_eq!(drop_db, "DROP DATABASE IF EXISTS testdb;\n");
    }
}

fn client_name(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "psql",
        Engine::Mysql | Engine::Mariadb => "mysql",
    }
}

/// The marker variable as the client got it: psql's `-v marker=VALUE`, or the hex literal
/// of mysql's `--init-command=SET @marker = X'..'`.
fn bound(engine: Engine, call: &Call) -> Option<String> {
    match engine {
        Engine::Postgres => {
            let at = call.args.iter().position(|a| a.starts_with("marker="))?;
            assert_eq!(call.args[at - 1], "-v");
            Some(call.args[at]["marker=".len()..].to_string())
        }
        Engine::Mysql | Engine::Mariadb => {
            let init = call
                .args
                .iter()
                .find_map(|a| a.strip_prefix("--init-command="))?;
            let hex = init.strip_prefix("SET @marker = X'")?.strip_suffix('\'')?;
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            String::from_utf8(bytes).ok()
        }
    }
}

#[test]
fn sql_runs_the_client_on_stdin_with_no_headers() {
    for engine in Engine::ALL {
        for tools in Tools::for_engine(engine) {
            let query = engine.commands().overview();
            let ran = run(&query.argv, *tools, &query.sql, "");
            let call = one_call(&ran);
            assert_eq!(call.tool, tools.expected(client_name(engine)));
            assert_eq!(call.stdin, query.sql);
            let want: &[&str] = match engine {
                Engine::Postgres => &["-tA", "-X", "ON_ERROR_STOP=1"],
                _ => &["-uroot", "-N", "-B", "--default-character-set=utf8mb4"],
            };
            for arg in want {
                assert!(call.args.iter().any(|a| a == arg), "{arg}: {call:?}");
            }
        }
    }
}

/// The snapshot's hold runs the container's own client (either MariaDB name), under a
/// remote `timeout`, reading its SQL from stdin.
#[test]
fn the_quiesce_session_runs_the_client_under_a_remote_timeout() {
    for engine in Engine::ALL {
        let c = engine.commands();
        for tools in Tools::for_engine(engine) {
            let sql = c.quiesce_sql("session", "held", 30);
            let ran = run(&c.quiesce_session("snap-label", 90), *tools, &sql, "");
            let call = one_call(&ran);
            assert_eq!(call.tool, tools.expected(client_name(engine)), "{engine}");
            assert_eq!(call.stdin, sql, "{engine}");
            assert!(
                sql.contains("session") && sql.contains("held"),
                "{engine}: {sql}"
            );
        }
        let (method, writes_paused) = c.quiesce_method();
        assert_eq!(writes_paused, method == "read-lock", "{engine}");
        assert!(c.release_sql("released").contains("released"), "{engine}");
    }
}

#[test]
fn dumps_pass_the_database_as_an_argument_and_choose_the_tool() {
    for engine in Engine::ALL {
        let c = engine.commands();
        for tools in Tools::for_engine(engine) {
            for value in VALUES {
                let call = one_call(&run(&c.dump(Some(value), false), *tools, "", "")).clone();
                let tail: Vec<&str> = call
                    .args
                    .iter()
                    .rev()
                    .take(2)
                    .rev()
                    .map(String::as_str)
                    .collect();
                match engine {
                    Engine::Postgres => {
                        assert_eq!(call.tool, "pg_dump");
                        assert_eq!(tail, ["-d", *value]);
                        assert!(call.args.contains(&"--create".to_string()));
                    }
                    _ => {
                        assert_eq!(call.tool, tools.expected("mysqldump"));
                        assert_eq!(tail, ["--databases", *value]);
                        assert!(call.args.contains(&"--single-transaction".to_string()));
                    }
                }
            }
            let all = one_call(&run(&c.dump(None, true), *tools, "", "")).clone();
            let users = run(&c.dump(None, false), *tools, "", "shop\nmy db\n한국\n");
            match engine {
                Engine::Postgres => {
                    assert_eq!(all.tool, "pg_dumpall");
                    assert!(!all.args.contains(&"--no-role-passwords".to_string()));
                    let users = one_call(&users);
                    assert_eq!(users.args.last().unwrap(), "--no-role-passwords");
                }
                _ => {
                    assert_eq!(all.args.last().unwrap(), "--all-databases");
                    assert!(users.success, "{users:?}");
                    let [list, dump] = users.calls.as_slice() else {
                        panic!("{users:?}");
                    };
                    assert_eq!(list.tool, tools.expected("mysql"));
                    assert!(
                        list.args
                            .iter()
                            .any(|a| a.contains("NOT IN ('mysql','sys'"))
                    );
                    assert_eq!(dump.tool, tools.expected("mysqldump"));
                    let n = dump.args.len();
                    assert_eq!(dump.args[n - 4..], ["--databases", "shop", "my db", "한국"]);
                    assert!(!dump.args.contains(&"--all-databases".to_string()));
                    // No user database: a complete, empty dump.
                    let empty = run(&c.dump(None, false), *tools, "", "");
                    assert_eq!(empty.calls[1].args.last().unwrap(), "mysql", "{empty:?}");
                    assert!(empty.calls[1].args.contains(&"--no-data".to_string()));
                }
            }
        }
    }
}

#[test]
fn dumps_compressed_in_the_pod_run_the_same_dump_through_the_images_tool() {
    for engine in Engine::ALL {
        let c = engine.commands();
        let tools = Tools::for_engine(engine)[0];
        for value in VALUES {
            let plain = one_call(&run(&c.dump(Some(value), false), tools, "", "")).clone();
            // The first the image has: these stubs' images have gzip, not zstd.
            let ran = run(
                &c.dump_compressed(Some(value), false, &["zstd", "gzip"]),
                tools,
                "",
                "-- dump --\n",
            );
            assert_eq!(one_call(&ran).args, plain.args, "{engine:?}");
            // gzip's magic number first (the rest is not text).
            assert!(ran.stdout.starts_with('\u{1f}'), "{ran:?}");
        }
        // With zstd in the image (as in the official ones), zstd.
        let ran = run_with(
            &c.dump_compressed(None, false, &["zstd", "gzip"]),
            tools,
            b"",
            "-- dump --\n",
            &["zstd"],
        );
        assert!(ran.success, "{ran:?}");
        // zstd's magic number, 28 b5 2f fd (read as lossy UTF-8).
        assert!(ran.stdout.starts_with("(\u{fffd}/"), "{ran:?}");
        // None of them in this image: said before anything runs, exit 127.
        let ran = run(&c.dump_compressed(None, false, &["zstd"]), tools, "", "");
        assert!(!ran.success && ran.calls.is_empty(), "{ran:?}");
        assert!(
            ran.stderr
                .contains("no compressor (zstd) in the container's image"),
            "{ran:?}"
        );
        assert!(ran.stderr.contains(crate::engine::commands::NO_COMPRESSOR));
    }
}

#[test]
fn a_restore_compressed_on_the_client_is_decompressed_by_the_images_zstd() {
    let sql = "CREATE TABLE t (v text);\nINSERT INTO t VALUES ('\u{d55c}');\n";
    let compressed = zstd::encode_all(sql.as_bytes(), 1).unwrap();
    for engine in Engine::ALL {
        let c = engine.commands();
        for tools in Tools::for_engine(engine) {
            let restore = crate::engine::commands::decompressed_in_pod(c.restore(), "zstd");
            let ran = run_with(&restore, *tools, &compressed, "", &["zstd"]);
            assert!(ran.success, "{ran:?}");
            let call = one_call(&ran);
            assert_eq!(call.tool, tools.expected(client_name(engine)));
            assert!(call.stdin.starts_with(sql), "{engine:?}: {ran:?}");
            // A stream cut short: the restore may have taken what came, the run fails.
            let cut = &compressed[..compressed.len() - 3];
            let ran = run_with(&restore, *tools, cut, "", &["zstd"]);
            assert!(!ran.success, "{ran:?}");
            assert!(ran.stderr.contains("zstd -d failed"), "{ran:?}");
            // No zstd in the image: said before anything runs, exit 127.
            let ran = run_with(&restore, *tools, &compressed, "", &[]);
            assert!(!ran.success && ran.calls.is_empty(), "{ran:?}");
            assert!(ran.stderr.contains(crate::engine::commands::NO_COMPRESSOR));
        }
    }
}

#[test]
fn parallel_parts_dump_and_restore_one_database_each() {
    for engine in Engine::ALL {
        let c = engine.commands();
        for tools in Tools::for_engine(engine) {
            for value in VALUES.iter().filter(|v| !v.is_empty()) {
                let call = one_call(&run(&c.dump_part(value, false), *tools, "", "")).clone();
                let n = call.args.len();
                match engine {
                    Engine::Postgres => {
                        assert_eq!(call.tool, "pg_dump");
                        assert_eq!(call.args[n - 3..], ["--create", "-d", *value]);
                    }
                    _ => {
                        assert_eq!(call.tool, tools.expected("mysqldump"));
                        assert_eq!(call.args[n - 2..], ["--databases", *value]);
                    }
                }
            }
            // A part's restore reads the file alone: no credential lines after it.
            let part = "CREATE TABLE t (v text);\n";
            let restored = one_call(&run(&c.restore_part("appdb"), *tools, part, "")).clone();
            assert_eq!(restored.tool, tools.expected(client_name(engine)));
            assert_eq!(restored.stdin, part);
            assert_eq!(restored.password, PASSWORD);
            let listed = one_call(&run(&c.part_databases(), *tools, "", "")).clone();
            assert_eq!(listed.tool, tools.expected(client_name(engine)));
            match engine {
                Engine::Postgres => {
                    assert_eq!(restored.args[restored.args.len() - 2..], ["-d", "postgres"]);
                    // The databases every instance has: dumped and restored in place.
                    let own =
                        one_call(&run(&c.dump_part("template1", false), *tools, "", "")).clone();
                    assert!(!own.args.contains(&"--create".to_string()), "{own:?}");
                    let into = one_call(&run(&c.restore_part("template1"), *tools, "", "")).clone();
                    assert_eq!(into.args[into.args.len() - 2..], ["-d", "template1"]);
                    let globals = c.dump_globals(false).unwrap();
                    let globals = one_call(&run(&globals, *tools, "", "")).clone();
                    assert_eq!(globals.tool, "pg_dumpall");
                    assert_eq!(
                        globals.args[globals.args.len() - 2..],
                        ["--globals-only", "--no-role-passwords"]
                    );
                    assert!(
                        listed
                            .args
                            .iter()
                            .any(|a| a.contains("datname <> 'template0'"))
                    );
                }
                _ => {
                    assert!(restored.args.contains(&"--binary-mode".to_string()));
                    assert!(c.dump_globals(false).is_none());
                    let globals = c.dump_globals(true).unwrap();
                    let globals = one_call(&run(&globals, *tools, "", "")).clone();
                    assert_eq!(
                        globals.args[globals.args.len() - 2..],
                        ["--databases", "mysql"]
                    );
                    assert!(
                        listed
                            .args
                            .iter()
                            .any(|a| a.contains("NOT IN ('mysql','sys'"))
                    );
                }
            }
        }
    }
}

#[test]
fn restores_feed_the_dump_then_the_targets_own_credentials() {
    for engine in Engine::ALL {
        let c = engine.commands();
        for tools in Tools::for_engine(engine) {
            let dump = "CREATE TABLE t (v text);\n-- 한국 $x 'q'\n";
            let call = one_call(&run(&c.restore(), *tools, dump, "")).clone();
            assert_eq!(call.tool, tools.expected(client_name(engine)));
            assert!(call.stdin.starts_with(dump), "{call:?}");
            let again = one_call(&run(&c.credentials(), *tools, "", "")).clone();
            match engine {
                Engine::Postgres => {
                    assert!(call.args.contains(&"ON_ERROR_STOP=1".to_string()));
                    assert_eq!(call.args[call.args.len() - 2..], ["-d", "postgres"]);
                    let tail = &call.stdin[dump.len()..];
                    assert!(tail.contains(r#"ALTER ROLE :"kdb_user" WITH PASSWORD :'kdb_pw';"#));
                    assert!(!tail.contains("S3cret"), "the password is psql's to read");
                    assert_eq!(again.stdin, tail);
                }
                _ => {
                    assert!(call.args.contains(&"--binary-mode".to_string()));
                    let tail = &call.stdin[dump.len()..];
                    assert!(
                        tail.contains(
                            r#"ALTER USER IF EXISTS 'root'@'%' IDENTIFIED BY 'pw ''S3cret" $x';"#
                        ),
                        "{tail}"
                    );
                    assert_eq!(again.stdin, tail);
                }
            }
        }
    }
}

#[test]
fn user_data_and_what_a_restore_would_overwrite() {
    let pg = Engine::Postgres.commands();
    assert_eq!(
        pg.with_data("postgres\nappdb\n", false),
        ["postgres", "appdb"]
    );
    let ran = run(&pg.user_data(), Tools::Postgres, "", "appdb\n");
    assert!(ran.success, "{ran:?}");
    assert_eq!(ran.calls[0].tool, "psql");
    assert!(
        ran.calls[0]
            .args
            .iter()
            .any(|a| a.contains("NOT IN ('template0','template1')"))
    );

    let listing = "database appdb\naccount root@localhost\naccount root@%\naccount mariadb.sys@localhost\naccount healthcheck@::1\naccount appuser@%\naccount PUBLIC@\naccount reporter@10.0.0.%\nself appuser\n";
    let fresh = "account root@localhost\naccount appuser@%\nself appuser\n";
    for engine in [Engine::Mysql, Engine::Mariadb] {
        let c = engine.commands();
        assert_eq!(c.with_data(listing, false), ["appdb"]);
        assert_eq!(
            c.with_data(listing, true),
            ["appdb", "mysql (accounts reporter@10.0.0.%)"]
        );
        assert!(c.with_data(fresh, true).is_empty());
        for tools in Tools::for_engine(engine) {
            let ran = run(&c.user_data(), *tools, "", "database appdb\n");
            let call = one_call(&ran);
            assert_eq!(call.tool, tools.expected("mysql"));
            assert!(call.stdin.contains("information_schema.tables"));
            assert_eq!(ran.stdout, "database appdb\nself app\n");
        }
    }
}

/// The manifest's database travels as data: psql's `-d "$1"`, or mysql's `@kdb_db` hex
/// literal in the generating session, whose output the second session runs.
#[test]
fn manifests_name_the_database_as_data_and_run_the_generated_queries() {
    for engine in Engine::ALL {
        let c = engine.commands();
        for tools in Tools::for_engine(engine) {
            for value in VALUES.iter().filter(|v| !v.is_empty()) {
                let ran = run(
                    &c.manifest(Some(value), RowHash::Fast),
                    *tools,
                    "",
                    "GENERATED;\n",
                );
                assert!(ran.success, "{engine}: {ran:?}");
                match engine {
                    Engine::Postgres => {
                        let [snapshot, call] = ran.calls.as_slice() else {
                            panic!("{ran:?}");
                        };
                        assert_no_password_in_args(call);
                        assert_eq!(snapshot.tool, "psql");
                        assert!(
                            snapshot
                                .args
                                .iter()
                                .any(|a| a.contains("txid_current_snapshot"))
                        );
                        assert!(snapshot.args.windows(2).any(|w| w == ["-d", *value]));
                        assert_eq!(call.tool, "psql");
                        assert_eq!(call.args[call.args.len() - 2..], ["-d", *value]);
                        assert!(call.stdin.contains("\\gexec"), "{call:?}");
                        assert!(call.stdin.contains("SET TimeZone = 'UTC';"));
                        // The database's name comes from the server, as JSON.
                        assert!(
                            call.stdin
                                .contains("SELECT 'db', to_json(current_database()::text);"),
                            "{call:?}"
                        );
                        assert_eq!(ran.stdout, "snapshot\tGENERATED;\nGENERATED;\n", "{ran:?}");
                    }
                    _ => {
                        let [generate, count] = ran.calls.as_slice() else {
                            panic!("{ran:?}");
                        };
                        assert_no_password_in_args(generate);
                        assert_no_password_in_args(count);
                        assert_eq!(generate.tool, tools.expected("mysql"));
                        assert!(generate.args.contains(&"-r".to_string()));
                        let hex = crate::encoding::hex(value.as_bytes());
                        let init = format!("--init-command=SET @kdb_db = X'{hex}'");
                        assert!(generate.args.contains(&init), "{generate:?}");
                        assert!(generate.stdin.contains("information_schema.columns"));
                        assert_eq!(count.tool, tools.expected("mysql"));
                        assert_eq!(count.stdin, "GENERATED;\n");
                    }
                }
            }
            // Every database: PostgreSQL lists them first; MySQL binds NULL.
            let ran = run(&c.manifest(None, RowHash::Fast), *tools, "", "");
            assert!(ran.success, "{engine}: {ran:?}");
            match engine {
                Engine::Postgres => {
                    assert!(
                        ran.calls[1]
                            .args
                            .iter()
                            .any(|a| a.contains("datallowconn AND NOT datistemplate"))
                    );
                    // (The stub psql answers every call alike: here the list.) Each
                    // `=NAME` is counted in its database.
                    let ran = run(&c.manifest(None, RowHash::Fast), *tools, "", "=appdb\n");
                    assert!(ran.success, "{ran:?}");
                    let counted = &ran.calls[2];
                    assert_eq!(counted.args[counted.args.len() - 2..], ["-d", "appdb"]);
                    // A name with a line break (`!`): said, and the pass fails.
                    let ran = run(&c.manifest(None, RowHash::Fast), *tools, "", "!\n");
                    assert!(!ran.success, "{ran:?}");
                    assert!(ran.stderr.contains("holds a line break"), "{ran:?}");
                }
                _ => assert!(
                    ran.calls[0]
                        .args
                        .contains(&"--init-command=SET @kdb_db = NULL".to_string())
                ),
            }
        }
    }
}

/// PostgreSQL's pass after the dump skips the counting when no transaction was in progress
/// at the pass before it and none has ended since (the snapshot's xmax is where it was).
#[test]
fn a_manifest_pass_is_skipped_only_when_nothing_can_have_been_written() {
    let c = Engine::Postgres.commands();
    let tools = Tools::for_engine(Engine::Postgres)[0];
    // The stub psql answers every call with the snapshot `15:20:`.
    let pass = |since: &str| {
        run(
            &c.manifest_since(Some("appdb"), RowHash::Fast, Some(since)),
            tools,
            "",
            "15:20:",
        )
    };
    let ran = pass("10:20:");
    assert!(ran.success, "{ran:?}");
    assert_eq!(ran.stdout, "snapshot\t15:20:\nunchanged\n");
    assert_eq!(ran.calls.len(), 1, "{ran:?}");
    // A transaction in progress before (it may have committed since), a transaction ended
    // since, or no mark: the full pass.
    for since in ["10:20:12", "10:19:", "", "garbage"] {
        let ran = pass(since);
        assert!(ran.success, "{ran:?}");
        assert!(!ran.stdout.contains("unchanged"), "{since}: {ran:?}");
        assert_eq!(ran.calls.len(), 2, "{since}: {ran:?}");
    }
    // MySQL and MariaDB have no such mark: always the full pass, no snapshot line.
    for engine in [Engine::Mysql, Engine::Mariadb] {
        let c = engine.commands();
        let tools = Tools::for_engine(engine)[0];
        let ran = run(
            &c.manifest_since(None, RowHash::Fast, Some("10:20:")),
            tools,
            "",
            "",
        );
        assert!(ran.success && !ran.stdout.contains("snapshot"), "{ran:?}");
    }
}

#[test]
fn checks_run_the_status_tool_and_read_the_overview() {
    for engine in Engine::ALL {
        let c = engine.commands();
        for tools in Tools::for_engine(engine) {
            let call = one_call(&run(&c.status(), *tools, "", "")).clone();
            match engine {
                Engine::Postgres => assert_eq!(call.tool, "pg_isready"),
                _ => {
                    assert_eq!(call.tool, tools.expected("mysqladmin"));
                    assert_eq!(call.args.last().unwrap(), "status");
                }
            }
        }
        let rows = c.overview_rows(
            "version\t10.11.6-MariaDB\nUptime\t42\nThreads_connected\t3\nconnections\t4\ndatabase\ta\ndatabase\tb\n",
        );
        assert_eq!(rows["uptime"], ["42"]);
        assert_eq!(rows["database"], ["a", "b"]);
        let connections: &[&str] = match engine {
            Engine::Postgres => &["4"],
            _ => &["3", "4"],
        };
        assert_eq!(rows["connections"], connections);
    }
}

#[test]
fn mount_paths_reach_the_shell_as_data() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = format!(
        "{}/m'\"; touch pwned #$(touch pwned)`touch pwned` 한",
        dir.path().display()
    );
    std::fs::create_dir(&hostile).unwrap();
    for engine in Engine::ALL {
        let c = engine.commands();
        let ran = run(&c.permissions(&hostile), Tools::Postgres, "", "");
        assert!(ran.success, "{ran:?}");
        assert!(ran.stdout.contains(&format!("dir={hostile}\n")), "{ran:?}");
        assert!(ran.stdout.contains("writable=yes"), "{ran:?}");
        let ran = run(&c.volume(&hostile), Tools::Postgres, "", "");
        assert!(ran.success, "{ran:?}");
        assert!(ran.stdout.starts_with("Filesystem"), "{ran:?}");
    }
}

/// The probes of a rendered StatefulSet (startup, readiness, liveness) as scripts.
fn rendered_probes(engine: Engine, image: &str) -> Vec<Vec<String>> {
    let mut spec = crate::render::DeploySpec::new(engine, "default");
    spec.image = image.into();
    let passwords: std::collections::BTreeMap<String, String> = engine
        .password_keys()
        .iter()
        .map(|k| (k.to_string(), "pw".to_string()))
        .collect();
    let manifests = crate::render::render(&spec, &passwords);
    let pod = manifests.stateful_set.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    [&c.startup_probe, &c.readiness_probe, &c.liveness_probe]
        .into_iter()
        .map(|p| p.clone().unwrap().exec.unwrap().command.unwrap())
        .collect()
}

#[test]
fn mariadb_11_probes_fall_back_to_the_mariadb_names_in_the_container() {
    for (engine, image) in [
        (Engine::Mariadb, "mariadb:11"),
        (Engine::Mariadb, "mariadb:11.4.2-noble"),
        (Engine::Mariadb, "mariadb:lts"),
        (Engine::Mariadb, "mariadb"),
        (Engine::Mariadb, "registry.example/db@sha256:0123"),
        (Engine::Mysql, "docker.io/library/mariadb:11.8"),
    ] {
        for probe in rendered_probes(engine, image) {
            let script = &probe[2];
            assert!(
                !script.contains("exec mysql ") && !script.contains("exec mysqladmin "),
                "{image}: a mysql* name without fallback: {script}"
            );
            assert!(script.contains("command -v mariadb"), "{image}: {script}");
            assert!(!crate::exec::carries_password(&probe), "{script}");
            for tools in [Tools::MariadbNames, Tools::MysqlNames, Tools::Both] {
                let call = one_call(&run(&probe, tools, "", "")).clone();
                assert!(
                    call.tool == tools.expected("mysql")
                        || call.tool == tools.expected("mysqladmin"),
                    "{image} {tools:?}: {call:?}"
                );
            }
        }
    }
}

#[test]
fn images_known_to_have_the_mysql_names_keep_their_probes() {
    let old_readiness = r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysql -uroot -h127.0.0.1 -P3306 -N -B -e 'SELECT 1' >/dev/null"#;
    let old_liveness = r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysqladmin -uroot -h127.0.0.1 -P3306 --connect-timeout=4 ping >/dev/null"#;
    for (engine, image) in [
        (Engine::Mariadb, "mariadb:10.11"),
        (Engine::Mariadb, "localhost/kdb/mariadb:10.6"),
        (Engine::Mysql, "mysql:8.0"),
        (Engine::Mysql, "mysql:8.4"),
        (Engine::Mysql, "mysql:latest"),
        (Engine::Mysql, "percona:8"),
    ] {
        let probes = rendered_probes(engine, image);
        assert_eq!(probes[0][2], old_liveness, "{image}");
        assert_eq!(probes[1][2], old_readiness, "{image}");
        assert_eq!(probes[2][2], old_liveness, "{image}");
        let call = one_call(&run(&probes[1], Tools::MysqlNames, "", "")).clone();
        assert_eq!(call.args.last().unwrap(), "SELECT 1");
    }
    let pg = rendered_probes(Engine::Postgres, "postgres:15-alpine");
    let call = one_call(&run(&pg[1], Tools::Postgres, "", "")).clone();
    assert_eq!(call.tool, "psql");
    assert_eq!(call.args.last().unwrap(), "SELECT 1");
}

#[test]
fn every_engine_has_every_command() {
    for engine in Engine::ALL {
        let c = engine.commands();
        assert_eq!(c.engine(), engine);
        assert!(!c.version_sql().is_empty() && !c.list_databases_sql().is_empty());
        let Query { sql, .. } = c.ping();
        assert_eq!(sql, "SELECT 1;\n");
        assert_eq!(engine.sql_script(), c.sql_script());
        assert_eq!(c.sql(&[])[2], c.sql_script());
    }
    assert_eq!(Engine::Postgres.commands().pre_stop(), Some("kill -INT 1"));
    assert_eq!(Engine::Mariadb.commands().pre_stop(), None);
}

#[test]
fn the_client_logs_in_from_the_environment_and_passes_arguments_through() {
    for engine in Engine::ALL {
        for admin in [false, true] {
            let argv = engine.commands().client(admin, &["-c", "select 1"]);
            assert_eq!(argv[..2], ["sh", "-c"]);
            assert_eq!(argv[argv.len() - 2..], ["-c", "select 1"]);
            let password = format!("\"${{{}:-}}\"", engine.login(admin).password_var);
            assert!(argv[2].contains(&password), "{engine}: {}", argv[2]);
            assert!(!crate::exec::carries_password(&argv), "{argv:?}");
        }
    }
}

/// A zstd without `--zstd=` (older than 1.3.4 or a build without advanced options): the
/// dump keeps that zstd's own window rather than failing. The image's zstd is stood in for
/// by a script that refuses the option, as such a zstd does, and logs what it was asked.
#[test]
fn a_zstd_that_does_not_know_the_window_option_compresses_with_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let real = ["/usr/bin/zstd", "/bin/zstd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("zstd on the host (tests/deps.sh installs it)");
    let log = dir.path().join("zstd.log");
    let zstd = dir.path().join("zstd");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nfor a in \"$@\"; do case $a in --zstd=*) echo \"zstd: $a: unknown argument\" >&2; exit 1 ;; esac; done\nexec {real} \"$@\"\n",
        log.display()
    );
    crate::testing::write_executable(&zstd, &script);
    std::os::unix::fs::symlink("/bin/sh", dir.path().join("sh")).unwrap();
    let dump = ["printf", "%s\\n", "-- dump, complete --"]
        .map(String::from)
        .to_vec();
    let argv = crate::engine::commands::compressed_in_pod(dump, &["zstd", "gzip"]);
    let out = Command::new("/bin/sh")
        .args(&argv[1..])
        .env_clear()
        .env("PATH", dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let sql = zstd::decode_all(out.stdout.as_slice()).unwrap();
    assert_eq!(sql, b"-- dump, complete --\n");
    let asked = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = asked.lines().collect();
    // The probe with the window, refused; then the dump without it.
    assert_eq!(calls.len(), 2, "{asked}");
    assert!(calls[0].contains("--zstd=wlog=18"), "{asked}");
    assert!(
        calls[1].starts_with("-1 ") && !calls[1].contains("--zstd="),
        "{asked}"
    );
}

/// The manifest's passes in the dump's own exec: the pass before, the dump on stdout (here
/// through the pod's gzip), then the pass after with the mark the pass before printed, each
/// pass framed on stderr. A pass before that fails stops the script before the dump; a
/// failed dump has no pass after.
#[test]
fn the_dump_runs_between_two_passes_of_the_manifest_query_in_its_exec() {
    const MARK: &str = "@kdb-pass-0123456789abcdef";
    let query = [
        "sh",
        "-c",
        "printf 'snapshot\\t5:9:\\nsince=[%s] db=[%s]\\n' \"$2\" \"$1\"; echo 'query says' >&2; [ -z \"${FAIL_QUERY:-}\" ]",
        "sh",
        "app db",
    ]
    .map(String::from)
    .to_vec();
    let dump = [
        "sh",
        "-c",
        "printf 'DUMP %s\\n' \"$1\"; exit \"${DUMP_STATUS:-0}\"",
        "sh",
        "x'; y",
    ]
    .map(String::from)
    .to_vec();
    let argv = crate::engine::commands::manifested(MARK, query, dump);
    let argv = crate::engine::commands::compressed_in_pod(argv, &["gzip"]);
    let run = |env: &[(&str, &str)]| {
        let out = Command::new("/bin/sh")
            .args(&argv[1..])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let mut sql = String::new();
        if !out.stdout.is_empty() {
            std::io::Read::read_to_string(
                &mut flate2::read::GzDecoder::new(out.stdout.as_slice()),
                &mut sql,
            )
            .unwrap();
        }
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.code(), sql, stderr)
    };
    let (code, sql, stderr) = run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(sql, "DUMP x'; y\n");
    assert_eq!(
        stderr,
        format!(
            "query says\n\n{MARK} before start\nsnapshot\t5:9:\nsince=[] db=[app db]\n{MARK} before end 0\n\
             query says\n\n{MARK} after start\nsnapshot\t5:9:\nsince=[5:9:] db=[app db]\n{MARK} after end 0\n"
        )
    );
    let (code, sql, stderr) = run(&[("FAIL_QUERY", "1")]);
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(sql, "", "no dump after a failed pass before");
    assert!(
        stderr.ends_with(&format!("{MARK} before end 1\n")),
        "{stderr}"
    );
    let (code, sql, stderr) = run(&[("DUMP_STATUS", "4")]);
    assert_eq!(code, Some(4), "{stderr}");
    assert_eq!(sql, "DUMP x'; y\n");
    assert!(!stderr.contains("after start"), "{stderr}");
}

/// A query that says `ready` on `$KDB_READY` counts while the dump runs: its frame comes
/// after the dump, a failure of it is still exit 3, and a failed dump's status wins.
#[test]
fn a_query_that_holds_its_snapshot_counts_while_the_dump_runs() {
    const MARK: &str = "@kdb-pass-00000000000000ff";
    let dir = tempfile::tempdir().unwrap();
    let dumped = dir.path().join("dumped");
    let query = [
        "sh",
        "-c",
        r#"printf 'snapshot\t5:9:\nsince=[%s]\n' "$1"
if [ -z "$1" ] && [ -n "${KDB_READY:-}" ]; then
  echo ready >"$KDB_READY"
  i=0
  while [ ! -e "$DUMPED" ] && [ "$i" -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
  [ -e "$DUMPED" ] && echo 'counted while the dump ran'
fi
[ -z "${FAIL_QUERY:-}" ]"#,
        "sh",
    ]
    .map(String::from)
    .to_vec();
    let dump = [
        "sh",
        "-c",
        r#": >"$DUMPED"; echo DUMP; exit "${DUMP_STATUS:-0}""#,
    ]
    .map(String::from)
    .to_vec();
    let argv = crate::engine::commands::manifested(MARK, query, dump);
    let run = |env: &[(&str, &str)]| {
        let _ = std::fs::remove_file(&dumped);
        let out = Command::new("/bin/sh")
            .args(&argv[1..])
            .env("DUMPED", &dumped)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.code(), stdout, stderr)
    };
    let (code, stdout, stderr) = run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "DUMP\n");
    assert_eq!(
        stderr,
        format!(
            "\n{MARK} before start\nsnapshot\t5:9:\nsince=[]\ncounted while the dump ran\n{MARK} before end 0\n\
             \n{MARK} after start\nsnapshot\t5:9:\nsince=[5:9:]\n{MARK} after end 0\n"
        )
    );
    let (code, stdout, stderr) = run(&[("FAIL_QUERY", "1")]);
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(stdout, "DUMP\n", "the dump ran alongside");
    assert!(
        stderr.ends_with(&format!("{MARK} before end 1\n")),
        "{stderr}"
    );
    let (code, _, stderr) = run(&[("DUMP_STATUS", "4"), ("FAIL_QUERY", "1")]);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("before end 1"), "{stderr}");
    assert!(!stderr.contains("after start"), "{stderr}");
}

/// PostgreSQL's pass before with `$KDB_READY`: a session per database holds its snapshot,
/// then `ready` goes out and the counts follow; when a session cannot start beside the
/// others (here a psql that allows one session at a time), every database is counted
/// again one after another, and `ready` never goes out (the dump waits for the counts).
#[test]
fn postgres_sessions_hold_their_snapshots_or_count_one_after_another() {
    // A session prints its database once its `\!` line (the ready signal) has run.
    const PSQL: &str = r#"#!/bin/sh
case "$*" in
  *txid_current_snapshot*) echo '5:9:'; exit 0 ;;
  *pg_database*) printf '=a\n=b\n'; exit 0 ;;
esac
db=
while [ $# -gt 0 ]; do [ "$1" = -d ] && db=$2; shift; done
if [ -n "${ONE_AT_A_TIME:-}" ] && ! mkdir "$ONE_AT_A_TIME" 2>/dev/null; then
  echo 'FATAL: sorry, too many clients already' >&2
  exit 2
fi
sed -n 's/^\\! //p' | sh
sleep 0.3
printf 'db\t"%s"\n' "$db"
[ -z "${ONE_AT_A_TIME:-}" ] || rmdir "$ONE_AT_A_TIME"
"#;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    crate::testing::write_executable(&bin.join("psql"), PSQL);
    link_utils(
        &bin,
        &[
            "sh", "cat", "sed", "sleep", "mktemp", "mkfifo", "rm", "mkdir", "rmdir",
        ],
    );
    let argv = Engine::Postgres
        .commands()
        .manifest_query(None, RowHash::Fast);
    let ready = dir.path().join("ready");
    let run = |env: &[(&str, &Path)]| {
        // What the dump's script does: a FIFO it holds open for reading and writing.
        let _ = std::fs::remove_file(&ready);
        assert!(
            Command::new("mkfifo")
                .arg(&ready)
                .status()
                .unwrap()
                .success()
        );
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&ready)
            .unwrap();
        let out = Command::new("/bin/sh")
            .args(&argv[1..])
            .env_clear()
            .env("PATH", &bin)
            .env("KDB_READY", &ready)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        // What the script wrote to the FIFO: read up to a line of our own put after it.
        let said = {
            use std::io::BufRead;
            (&fifo).write_all(b"(end)\n").unwrap();
            let mut lines = std::io::BufReader::new(&fifo).lines();
            let mut said = String::new();
            while let Some(Ok(line)) = lines.next() {
                if line == "(end)" {
                    break;
                }
                said.push_str(&line);
                said.push('\n');
            }
            said
        };
        drop(fifo);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
            said,
        )
    };
    let expected = "snapshot\t5:9:\ndb\t\"a\"\ndb\t\"b\"\n";
    let (code, stdout, stderr, said) = run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, expected);
    assert_eq!(said, "ready\n");
    let lock = dir.path().join("session");
    let (code, stdout, stderr, said) = run(&[("ONE_AT_A_TIME", &lock)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, expected);
    assert!(stderr.contains("too many clients"), "{stderr}");
    assert_eq!(said, "", "no ready once a session failed before the dump");
}
