//! Day-2 access on the local cluster, one database per engine: `dbdeploy credentials`
//! (in-cluster names, user, database; the password and a URI carrying it only with
//! `--show-password`) and `dbdeploy connect` run as a script would (SQL from arguments
//! and from stdin, the client's exit status, `--admin`, no password on any command line
//! in the pod) and on a terminal (a TTY whose size follows the local one).

use crate::common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::TestNamespace;
use kubectl_db::engine::Engine;

/// The client's arguments for bare rows (no headers, no alignment).
fn bare_rows(engine: Engine) -> Vec<String> {
    let args: &[&str] = match engine {
        Engine::Postgres => &["-tA"],
        Engine::Mysql | Engine::Mariadb => &["-N", "-B"],
    };
    args.iter().map(|a| a.to_string()).collect()
}

/// [`bare_rows`], then the client's flag for one statement (`-c`/`-e`) and `sql`.
fn query(engine: Engine, sql: &str) -> Vec<String> {
    let flag = match engine {
        Engine::Postgres => "-c",
        Engine::Mysql | Engine::Mariadb => "-e",
    };
    let mut args = bare_rows(engine);
    args.extend([flag.to_string(), sql.to_string()]);
    args
}

/// `connect NAME [--admin] -- ARGS`, with `stdin`: exit code, stdout, stderr.
fn connect(
    ns: &TestNamespace,
    name: &str,
    admin: bool,
    args: &[String],
    stdin: &str,
) -> (i32, String, String) {
    let mut cmd = ns.command("kubectl-dbdeploy");
    cmd.args(["connect", name]);
    if admin {
        cmd.arg("--admin");
    }
    let mut child = cmd
        .arg("--")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let (code, out, err) = common::split(child.wait_with_output().unwrap());
    (code.unwrap_or(-1), out, err)
}

async fn access(engine: Engine) {
    let kubeconfig = require_cluster!();
    let ns = TestNamespace::create(&kubeconfig, &format!("access-{engine}"), &[]).await;
    let name = engine.as_str();
    common::deploy_json(&ns, &common::deploy_args(engine));

    // credentials: what a client needs, the password only on request.
    let key = engine.login(false).password_var;
    let secret = common::secret_data(&ns, &format!("{name}-secret")).await;
    let password = String::from_utf8(secret[key].clone()).unwrap();
    let creds = common::json(ns.bin("kubectl-dbdeploy").args(["credentials", name]));
    let host = format!("{name}.{}.svc", ns.name);
    assert_eq!(creds["host"], host.as_str());
    assert_eq!(
        creds["pods"][0],
        format!("{name}-0.{name}-headless.{}.svc", ns.name)
    );
    assert_eq!(creds["port"], engine.port());
    assert_eq!(creds["user"], "appuser");
    assert_eq!(creds["database"], "appdb");
    assert_eq!(creds["password_secret"]["name"], format!("{name}-secret"));
    assert_eq!(creds["password_secret"]["key"], key);
    assert!(creds.get("password").is_none(), "{creds}");
    let scheme = engine.uri_scheme();
    let port = engine.port();
    let (code, table, _) = common::output(ns.bin("kubectl-dbdeploy").args(["credentials", name]));
    assert_eq!(code, 0);
    assert!(
        table.contains(&format!("in Secret {name}-secret, key {key}")),
        "{table}"
    );
    assert!(!table.contains(&password), "{table}");
    let (_, uri, _) =
        common::output(
            ns.bin("kubectl-dbdeploy")
                .args(["credentials", name, "-o", "uri"]),
        );
    assert_eq!(
        uri.trim(),
        format!("{scheme}://appuser@{host}:{port}/appdb")
    );
    let shown =
        common::json(
            ns.bin("kubectl-dbdeploy")
                .args(["credentials", name, "--show-password"]),
        );
    assert_eq!(shown["password"], password.as_str());
    let (_, uri, _) = common::output(ns.bin("kubectl-dbdeploy").args([
        "credentials",
        name,
        "--show-password",
        "-o",
        "uri",
    ]));
    // Generated passwords are alphanumeric: nothing to percent-encode.
    assert_eq!(
        uri.trim(),
        format!("{scheme}://appuser:{password}@{host}:{port}/appdb")
    );

    // connect: SQL from the arguments, as the application user, in its database.
    let who = match engine {
        Engine::Postgres => "select current_user || ' ' || current_database()",
        _ => "select concat(substring_index(current_user(), '@', 1), ' ', database())",
    };
    let (code, out, err) = connect(&ns, name, false, &query(engine, who), "");
    assert_eq!((code, out.trim()), (0, "appuser appdb"), "{err}");
    if engine != Engine::Postgres {
        let (code, out, err) = connect(&ns, name, true, &query(engine, who), "");
        assert_eq!((code, out.trim()), (0, "root appdb"), "{err}");
    }
    // SQL on stdin, as in `connect NAME < script.sql`.
    let (code, out, err) = connect(&ns, name, false, &bare_rows(engine), "select 40 + 2;\n");
    assert_eq!((code, out.trim()), (0, "42"), "{err}");
    // The client's exit status is the command's.
    let (code, _, err) = connect(
        &ns,
        name,
        false,
        &query(engine, "select * from no_such_table"),
        "",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no_such_table"), "{err}");

    // While the client runs, no process in the container has the password on its command line.
    let sleep = match engine {
        Engine::Postgres => "select pg_sleep(6)",
        _ => "select sleep(6)",
    };
    let mut running = ns.spawn(
        "kubectl-dbdeploy",
        &[
            &["connect".to_string(), name.to_string(), "--".into()][..],
            &query(engine, sleep),
        ]
        .concat(),
    );
    let pod = format!("{name}-0");
    let client = match engine {
        Engine::Postgres => "psql",
        _ => "sleep(6)",
    };
    let started = Instant::now();
    let seen = loop {
        let lines = common::shell(
            &ns,
            engine,
            &pod,
            r#"for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' < "$f" 2>/dev/null; echo; done"#,
            "",
        )
        .await;
        if lines
            .lines()
            .any(|l| l.contains(client) && !l.contains("/proc/"))
        {
            break lines;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no client seen:\n{lines}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        !seen.contains(&password),
        "a command line holds the password:\n{seen}"
    );
    let output = common::wait_bounded(&mut running, Duration::from_secs(60)).unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        common::text(&output.stderr)
    );

    if engine == Engine::Postgres {
        on_a_terminal(&ns);
    }
}

/// On a terminal (`script` gives it one): psql with a TTY, the terminal's size followed.
fn on_a_terminal(ns: &TestNamespace) {
    if std::process::Command::new("script")
        .arg("-V")
        .output()
        .is_err()
    {
        common::missing_tool("script (util-linux) is not installed");
        return;
    }
    let plugin = ns.command("kubectl-dbdeploy");
    let line = format!(
        // No pager: the first answer may still come before the exec's TTY has its size.
        "stty cols 91 rows 33; {} -n {} connect postgres -- -P pager=off",
        plugin.get_program().to_string_lossy(),
        ns.name
    );
    let mut script = std::process::Command::new("timeout");
    script.args(["60", "script", "-qec", &line, "/dev/null"]);
    for (key, value) in plugin.get_envs() {
        match value {
            Some(value) => script.env(key, value),
            None => script.env_remove(key),
        };
    }
    let mut child = script
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Typed ahead: the pseudo-terminal keeps it until psql reads it.
    stdin
        .write_all(b"select 6 * 7 as answer;\n\\! stty size\n\\q\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let out = common::text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.contains("appdb=#"), "no interactive prompt:\n{out}");
    assert!(out.contains("42\r\n"), "no answer through the TTY:\n{out}");
    assert!(
        out.contains("33 91"),
        "the terminal's size did not follow:\n{out}"
    );
}

engine_tests! {
    credentials_and_connect_postgres: access(Postgres),
    credentials_and_connect_mariadb: access(Mariadb),
}
