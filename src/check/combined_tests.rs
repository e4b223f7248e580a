//! The combined run's script (run here with the local `sh` and `bash`) and its parser.
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::*;

const MARK: &str = "@kdb-part-00000000000000ff";
const LIMIT: Duration = Duration::from_secs(10);

fn words(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn captured(bytes: &[u8]) -> Captured {
    Captured {
        bytes: bytes.to_vec(),
        dropped: 0,
    }
}

/// A stream as the script writes it: `(name, output, code, millis)` per part.
fn stream(parts: &[(&str, &[u8], i32, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, bytes, code, ms) in parts {
        out.extend(format!("\n{MARK} {name} start\n").as_bytes());
        out.extend(*bytes);
        out.extend(format!("\n{MARK} {name} end {code} {ms}\n").as_bytes());
    }
    out
}

#[test]
fn values_travel_as_arguments_and_the_probe_argv_stays_intact() {
    let probe = words(&["mysqladmin", "-uroot", "-p'it''s $(x)'", "ping"]);
    let volume = words(&["sh", "-c", r#"exec df -P -- "$1""#, "sh", "/data; rm -rf /"]);
    let sql = words(&["sh", "-c", "exec psql", "sh"]);
    let parts = [
        Part::new(PartName::Volume, &volume, None),
        Part::new(PartName::Sql, &sql, Some("SELECT '$(x)';\n")),
        Part::new(PartName::Readiness, &probe, None),
    ];
    let argv = command(MARK, Duration::from_millis(2500), &parts);
    assert_eq!(&argv[..5], ["sh", "-c", SCRIPT, "sh", MARK]);
    assert_eq!(argv[5], "3", "whole seconds, rounded up");
    let mut expected = words(&["volume", "5", "-"]);
    expected.extend(volume.clone());
    expected.extend(words(&["sql", "4", "=SELECT '$(x)';\n"]));
    expected.extend(sql.clone());
    expected.extend(words(&["readiness", "4", "-"]));
    expected.extend(probe.clone());
    assert_eq!(&argv[6..], expected.as_slice());
    assert_eq!(command(MARK, Duration::from_millis(1), &[])[5], "1");
    assert!(
        !SCRIPT.contains("<<"),
        "a here-document may need a temporary file"
    );
    // A probe's literal password stays out of the logged command; the program does not.
    let logged = crate::exec::loggable(&argv);
    assert!(
        logged.contains("mysqladmin") && logged.contains("-p***"),
        "{logged}"
    );
    assert!(!logged.contains("it''s"), "{logged}");
}

#[test]
fn parts_are_split_whatever_they_print() {
    let names = [PartName::Permissions, PartName::Volume, PartName::Sql];
    // Marker-like text: another run's nonce, this run's prefix without its nonce, a line
    // that ends like an end marker; no final newline; nothing at all; not UTF-8.
    let tricky: &[u8] =
        b"@kdb-part-0000000000000001 permissions end 0 1\n@kdb-part- volume start\nx end 0 1";
    let out = stream(&[
        ("permissions", tricky, 0, "12"),
        ("volume", b"", 1, "3"),
        ("sql", b"caf\xe9\n", 0, "-"),
    ]);
    let err = stream(&[
        ("permissions", b"", 0, "12"),
        ("volume", b"df: not found\n", 1, "3"),
        ("sql", b"", 0, "-"),
    ]);
    let runs = parse(MARK, &captured(&out), &captured(&err), &names, LIMIT, 77);
    let expected = [
        Run {
            success: true,
            status: "exit status 0".into(),
            stdout: String::from_utf8_lossy(tricky).trim().to_string(),
            stderr: String::new(),
            millis: 12,
        },
        Run {
            success: false,
            status: "exit status 1".into(),
            stdout: String::new(),
            stderr: "df: not found".into(),
            millis: 3,
        },
        Run {
            success: true,
            status: "exit status 0".into(),
            stdout: "caf\u{fffd}".into(),
            stderr: String::new(),
            millis: 77,
        },
    ];
    assert_eq!(runs, expected.map(Some).to_vec());
}

#[test]
fn incomplete_parts_are_left_for_their_own_exec() {
    let names = [PartName::Status, PartName::Sql, PartName::Readiness];
    let out = stream(&[("status", b"ok", 0, "5"), ("sql", b"rows", 0, "9")]);
    let err = stream(&[("status", b"", 0, "5"), ("sql", b"", 0, "9")]);
    // The readiness part never started (cut by the deadline).
    let runs = parse(MARK, &captured(&out), &captured(&err), &names, LIMIT, 1);
    assert!(runs[0].is_some() && runs[1].is_some() && runs[2].is_none());
    // Its end marker missing, cut in the middle, or only on one stream.
    let cut = &out[..out.len() - 3];
    let runs = parse(MARK, &captured(cut), &captured(&err), &names, LIMIT, 1);
    assert_eq!((runs[0].is_some(), runs[1].is_some()), (true, false));
    let no_end = format!(
        "{}\n{MARK} sql start\nrows",
        String::from_utf8_lossy(&stream(&[("status", b"ok", 0, "5")]))
    );
    let runs = parse(
        MARK,
        &captured(no_end.as_bytes()),
        &captured(&err),
        &names,
        LIMIT,
        1,
    );
    assert_eq!((runs[0].is_some(), runs[1].is_some()), (true, false));
    let runs = parse(MARK, &captured(&out), &captured(b""), &names, LIMIT, 1);
    assert!(runs.iter().all(Option::is_none));
    // Nothing at all (the exec refused, no shell), or another run's marker.
    let runs = parse(MARK, &captured(b""), &captured(b""), &names, LIMIT, 1);
    assert!(runs.iter().all(Option::is_none));
    let other = parse(
        "@kdb-part-0000000000000001",
        &captured(&out),
        &captured(&err),
        &names,
        LIMIT,
        1,
    );
    assert!(other.iter().all(Option::is_none));
    // As long as the limit (killed by `timeout`, or it would have timed out alone), could
    // not be started (125-127), an unreadable status, or past a cap.
    for (code, ms) in [
        (124, "10000"),
        (0, "10001"),
        (127, "3"),
        (126, "3"),
        (125, "3"),
    ] {
        let out = stream(&[("status", b"", code, ms)]);
        let runs = parse(
            MARK,
            &captured(&out),
            &captured(&out),
            &names[..1],
            LIMIT,
            1,
        );
        assert_eq!(runs, vec![None], "{code} {ms}");
    }
    let whole_too_long = stream(&[("status", b"", 0, "-")]);
    let runs = parse(
        MARK,
        &captured(&whole_too_long),
        &captured(&whole_too_long),
        &names[..1],
        LIMIT,
        10_000,
    );
    assert_eq!(runs, vec![None]);
    let bad = format!("\n{MARK} status start\n\n{MARK} status end x 1\n");
    let runs = parse(
        MARK,
        &captured(bad.as_bytes()),
        &captured(bad.as_bytes()),
        &names[..1],
        LIMIT,
        1,
    );
    assert_eq!(runs, vec![None]);
    let big = vec![b'e'; STDERR_KEEP + 1];
    let err = stream(&[("status", &big, 0, "5")]);
    let out = stream(&[("status", b"", 0, "5")]);
    let runs = parse(
        MARK,
        &captured(&out),
        &captured(&err),
        &names[..1],
        LIMIT,
        1,
    );
    assert_eq!(runs, vec![None]);
}

/// What a command's own exec returns (no stdin, or `stdin`), run with the local shell.
fn alone(argv: &[String], stdin: Option<&[u8]>) -> (bool, String, String, String) {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let code = output.status.code().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    (
        code == 0,
        format!("exit status {code}"),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[test]
fn the_script_gives_each_part_what_its_own_exec_would() {
    let sh = |script: &str, args: &[&str]| {
        let mut argv = words(&["sh", "-c", script, "sh"]);
        argv.extend(words(args));
        argv
    };
    let permissions = sh(
        r#"printf 'id=%s\n' "$1"; printf 'no newline'; printf '\377\376' >&2"#,
        &["a b", "$(id)"],
    );
    let volume = sh(
        r#"echo "@kdb-part-0000000000000001 volume end 0 1"; echo "$MARKLIKE" >&2; exit 3"#,
        &[],
    );
    let status = sh("exit 0", &[]);
    let sql = sh(
        r#"echo "args: $*"; cat; echo; echo done >&2"#,
        &["-v", "x=1"],
    );
    // The probe runs as the program itself (not the shell's builtin echo) with its argv.
    let readiness = words(&["echo", "-n", "it's", "$HOME", "*"]);
    let query = "SELECT 'version', version();\n";
    let parts = [
        Part::new(PartName::Permissions, &permissions, None),
        Part::new(PartName::Volume, &volume, None),
        Part::new(PartName::Status, &status, None),
        Part::new(PartName::Sql, &sql, Some(query)),
        Part::new(PartName::Readiness, &readiness, None),
    ];
    // A `timeout` that does not take our syntax (busybox before 1.30) is not used.
    let broken = tempfile::tempdir().unwrap();
    let fake = broken.path().join("timeout");
    crate::testing::write_executable(
        &fake,
        "#!/bin/sh\necho 'usage: timeout -t SECS PROG' >&2; exit 1\n",
    );
    let path = std::env::var("PATH").unwrap_or_default();
    let without = format!("{}:{path}", broken.path().display());
    for (shell, path) in [("sh", &path), ("bash", &path), ("sh", &without)] {
        let mut argv = command(MARK, LIMIT, &parts);
        argv[0] = shell.into();
        let output = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .env("PATH", path)
            .env("MARKLIKE", format!("\n{MARK} volume end 0 1\n"))
            .output()
            .unwrap();
        assert!(output.status.success(), "{shell}: {output:?}");
        let names: Vec<PartName> = parts.iter().map(|p| p.name).collect();
        let runs = parse(
            MARK,
            &captured(&output.stdout),
            &captured(&output.stderr),
            &names,
            LIMIT,
            0,
        );
        for (part, run) in parts.iter().zip(&runs) {
            let stdin = part.stdin.map(str::as_bytes);
            let expected = alone(part.argv, stdin);
            if part.name == PartName::Volume {
                // It printed this run's own end marker on stderr: it cannot be told
                // apart, so the part is left to its own exec.
                assert!(run.is_none(), "{shell}: {run:?}");
                continue;
            }
            let run = run
                .as_ref()
                .unwrap_or_else(|| panic!("{shell}: {:?} not parsed: {output:?}", part.name));
            assert!(run.millis < 10_000);
            assert_eq!(
                (
                    run.success,
                    run.status.clone(),
                    run.stdout.clone(),
                    run.stderr.clone()
                ),
                expected,
                "{shell}: {:?}",
                part.name
            );
        }
    }
}

#[test]
fn a_missing_program_or_a_hung_part_is_left_for_its_own_exec() {
    let missing = words(&["kdb-no-such-program", "x"]);
    let slow = words(&["sleep", "5"]);
    let fine = words(&["true"]);
    let parts = [
        Part::new(PartName::Status, &fine, None),
        Part::new(PartName::Sql, &slow, None),
        Part::new(PartName::Readiness, &missing, None),
    ];
    let argv = command(MARK, Duration::from_millis(900), &parts);
    let started = Instant::now();
    let output = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
    // `timeout 1` ended the sleep: the part after it still ran.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let names: Vec<PartName> = parts.iter().map(|p| p.name).collect();
    let runs = parse(
        MARK,
        &captured(&output.stdout),
        &captured(&output.stderr),
        &names,
        Duration::from_millis(900),
        0,
    );
    assert!(runs[0].as_ref().is_some_and(|r| r.success), "{output:?}");
    assert_eq!(runs[1], None, "killed at the limit");
    assert_eq!(runs[2], None, "not found: exit 127");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&format!("{MARK} readiness end 127 ")),
        "{text}"
    );
}

#[test]
fn a_probe_password_is_hidden_in_the_logged_command_of_every_engine() {
    use crate::engine::Engine;
    let probe = words(&["mysqladmin", "-uroot", "-pKdbProbeSecret42", "ping"]);
    for engine in [Engine::Postgres, Engine::Mysql, Engine::Mariadb] {
        let commands = engine.commands();
        let overview = commands.overview();
        let permissions = commands.permissions("/var/lib/data");
        let status = commands.status();
        let volume = commands.volume("/var/lib/data");
        let parts = [
            Part::new(PartName::Permissions, &permissions, None),
            Part::new(PartName::Volume, &volume, None),
            Part::new(PartName::Status, &status, None),
            Part::new(PartName::Sql, &overview.argv, Some(&overview.sql)),
            Part::new(PartName::Readiness, &probe, None),
        ];
        let logged = crate::exec::loggable(&command(MARK, LIMIT, &parts));
        assert!(!logged.contains("KdbProbeSecret42"), "{logged}");
        assert!(
            logged.contains(r#""mysqladmin", "-uroot", "-p***", "ping""#),
            "{logged}"
        );
    }
}

#[test]
fn a_part_is_timed_by_the_shell_in_milliseconds() {
    let slow = words(&["sleep", "0.3"]);
    let parts = [Part::new(PartName::Readiness, &slow, None)];
    let argv = command(MARK, LIMIT, &parts);
    let output = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
    let runs = parse(
        MARK,
        &captured(&output.stdout),
        &captured(&output.stderr),
        &[PartName::Readiness],
        LIMIT,
        // Not the exec's whole time: the part's own.
        u64::MAX,
    );
    let run = runs[0].as_ref().unwrap_or_else(|| panic!("{output:?}"));
    // /proc/uptime counts in 10 ms steps.
    assert!((290..5000).contains(&run.millis), "{run:?}");
}
