//! Checks run inside the database container: the readiness probe's own command, `id` and the
//! data directory's ownership, the server's version, uptime, connections and databases,
//! `pg_isready` / `mysqladmin status`, and `df` on the data volume. This file has the
//! scripts (none carries a secret: passwords come from the container's environment) and
//! the pure rules that read their output.

use std::collections::BTreeMap;

use super::facts::{Facts, Outcome, Run};
use super::verdict::{Check, Verdict};
use crate::engine::Engine;

/// `id`, then the data directory (PGDATA, else the engine's data dir, else the mount),
/// its owner, mode and whether this uid can write it. The mount path (from the pod spec)
/// is an argument of the script, never part of it.
pub fn permissions_command(engine: Engine, mount: &str) -> Vec<String> {
    let script = format!(
        r#"echo "id=$(id)"
d=""
for c in "${{PGDATA:-}}" "{data_dir}" "$1"; do if [ -n "$c" ] && [ -d "$c" ]; then d="$c"; break; fi; done
echo "dir=$d"
[ -n "$d" ] || exit 0
echo "stat=$(stat -c '%u:%g %a' "$d" 2>/dev/null)"
if [ -w "$d" ]; then echo writable=yes; else echo writable=no; fi"#,
        data_dir = engine.data_dir(),
    );
    crate::exec::script_command(&script, &[mount])
}

/// SQL printing `key<TAB>value` rows: version, uptime, connections, max_connections, databases.
pub fn overview_sql(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => {
            "SELECT 'version', version();\n\
             SELECT 'uptime', extract(epoch from now() - pg_postmaster_start_time())::bigint;\n\
             SELECT 'connections', count(*) FROM pg_stat_activity WHERE backend_type = 'client backend';\n\
             SELECT 'max_connections', current_setting('max_connections');\n\
             SELECT 'database', datname FROM pg_database WHERE NOT datistemplate ORDER BY datname;\n"
        }
        Engine::Mysql | Engine::Mariadb => {
            "SELECT 'version', VERSION();\n\
             SHOW GLOBAL STATUS WHERE Variable_name IN ('Uptime', 'Threads_connected');\n\
             SHOW GLOBAL VARIABLES LIKE 'max_connections';\n\
             SELECT 'database', schema_name FROM information_schema.schemata ORDER BY schema_name;\n"
        }
    }
}

/// The engine's own liveness tool: `pg_isready` or `mysqladmin status`.
pub fn status_script(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => {
            r#"exec pg_isready -h 127.0.0.1 -p 5432 -U "${POSTGRES_USER:-postgres}""#
        }
        Engine::Mysql | Engine::Mariadb => {
            r#"a=$(command -v mysqladmin || command -v mariadb-admin) || { echo "no mysqladmin in the image" >&2; exit 127; }
MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec "$a" -uroot -h127.0.0.1 -P3306 --connect-timeout=5 status"#
        }
    }
}

/// `df` in POSIX format on the data volume's mount (an argument, never script text).
pub fn volume_command(mount: &str) -> Vec<String> {
    crate::exec::script_command(r#"exec df -P -- "$1""#, &[mount])
}

/// `key -> values` from tab-separated rows; keys lower-cased, MySQL's names mapped to ours.
pub fn parse_rows(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('\t') else {
            continue;
        };
        let key = match key.to_ascii_lowercase().as_str() {
            "threads_connected" => "connections".to_string(),
            other => other.to_string(),
        };
        rows.entry(key).or_default().push(value.trim().to_string());
    }
    rows
}

/// Use percentage, size in KiB and mount point from `df -P` output.
pub fn parse_df(text: &str) -> Option<(u32, u64, String)> {
    let line = text.lines().filter(|l| !l.trim().is_empty()).nth(1)?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let n = fields.len();
    if n < 6 {
        return None;
    }
    let percent = fields[n - 2].trim_end_matches('%').parse().ok()?;
    let size = fields[n - 5].parse().ok()?;
    Some((percent, size, fields[n - 1].to_string()))
}

/// The finished command, or the check to report when it did not run.
fn finished<'a>(name: &str, outcome: &'a Outcome) -> Result<&'a Run, Check> {
    match outcome {
        Outcome::NotRun(why) => Err(Check::new(name, Verdict::Skipped, why.clone())),
        Outcome::Error(why) => Err(Check::new(name, Verdict::Fail, format!("could not run in the container: {why}"))
            .fix("the container does not answer exec (hung or overloaded?); run dbcheck again, then read the server log")),
        Outcome::Done(run) => Ok(run),
    }
}

fn output_of(run: &Run) -> String {
    let text = if run.stderr.is_empty() {
        &run.stdout
    } else {
        &run.stderr
    };
    crate::exec::last_lines(text, 3)
}

fn human_seconds(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `volume.usage`: warn at 80%, fail at 95%.
pub fn volume_usage(facts: &Facts) -> Check {
    const NAME: &str = "volume.usage";
    let run = match finished(NAME, &facts.inside.volume) {
        Ok(run) => run,
        Err(check) => return check,
    };
    let Some((percent, kib, mount)) = parse_df(&run.stdout).filter(|_| run.success) else {
        return Check::new(
            NAME,
            Verdict::Warn,
            format!("df failed: {}", output_of(run)),
        )
        .fix("the image may lack df; check the volume's usage from the node");
    };
    let evidence = format!(
        "{percent}% of {:.1} GiB used on {mount}",
        kib as f64 / 1_048_576.0
    );
    let fix = "expand the PVC (if its StorageClass allows volume expansion: kubectl patch pvc ... spec.resources.requests.storage) or delete old data";
    match percent {
        p if p >= 95 => Check::new(NAME, Verdict::Fail, evidence).fix(fix),
        p if p >= 80 => Check::new(NAME, Verdict::Warn, evidence).fix(fix),
        _ => Check::new(NAME, Verdict::Ok, evidence),
    }
}

/// The fix for a data directory the server cannot write, from the pod's security context.
pub fn permission_fix(facts: &Facts) -> String {
    let image = facts
        .container_spec()
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let uid = facts.engine.uid(&image);
    let extra = match facts.engine {
        Engine::Postgres => " (PostgreSQL wants it mode 0700 and owned by the server's uid)",
        _ => "",
    };
    format!(
        "make the data directory writable by the server's uid {uid}: set the pod's securityContext runAsUser/fsGroup to {uid} with fsGroupChangePolicy: OnRootMismatch, or chown/chmod u+rwx the directory{extra}"
    )
}

/// `datadir.permissions`: the uid the server runs as can write its data directory.
pub fn datadir_permissions(facts: &Facts) -> Check {
    const NAME: &str = "datadir.permissions";
    if let Outcome::NotRun(why) = &facts.inside.permissions {
        let logs = facts.previous_logs.clone().unwrap_or_default();
        if let Some(line) = logs.lines().find(|l| {
            let l = l.to_lowercase();
            l.contains("permission denied") || l.contains("operation not permitted")
        }) {
            return Check::new(
                NAME,
                Verdict::Fail,
                format!("the previous container failed with: {}", line.trim()),
            )
            .fix(permission_fix(facts));
        }
        return Check::new(NAME, Verdict::Skipped, why.clone());
    }
    let run = match finished(NAME, &facts.inside.permissions) {
        Ok(run) => run,
        Err(check) => return check,
    };
    let rows: BTreeMap<&str, &str> = run
        .stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .collect();
    let id = rows.get("id").copied().unwrap_or("?");
    let dir = rows.get("dir").copied().unwrap_or_default();
    if dir.is_empty() {
        return Check::new(
            NAME,
            Verdict::Fail,
            format!("{id}; no data directory found"),
        )
        .fix(format!(
            "mount the data volume at {}",
            facts.engine.data_mount()
        ));
    }
    let stat = rows.get("stat").copied().unwrap_or("?");
    let evidence = format!("{id}; {dir} owner:group {stat}");
    match rows.get("writable").copied() {
        Some("yes") => Check::new(NAME, Verdict::Ok, format!("{evidence}, writable")),
        _ => Check::new(
            NAME,
            Verdict::Fail,
            format!("{evidence}, NOT writable by this uid"),
        )
        .fix(permission_fix(facts)),
    }
}

/// `probe.readiness`: the readiness probe's command, run once, with its result and latency.
pub fn probe_readiness(facts: &Facts) -> Check {
    const NAME: &str = "probe.readiness";
    let run = match finished(NAME, &facts.inside.readiness) {
        Ok(run) => run,
        Err(check) => return check,
    };
    if run.success {
        return Check::new(
            NAME,
            Verdict::Ok,
            format!("exit status 0 in {} ms", run.millis),
        );
    }
    let output = output_of(run);
    let evidence = format!(
        "{} in {} ms{}",
        run.status,
        run.millis,
        if output.is_empty() {
            String::new()
        } else {
            format!(": {output}")
        }
    );
    let server_answers = matches!(&facts.inside.sql, Outcome::Done(r) if r.success);
    let fix = if server_answers {
        "the database answers queries (db.server), so the probe's command itself is wrong: fix readinessProbe in the StatefulSet (kubectl dbdeploy renders a working one)".to_string()
    } else {
        "the server does not answer the probe: see db.server and the server log (kubectl logs POD)"
            .to_string()
    };
    Check::new(NAME, Verdict::Fail, evidence).fix(fix)
}

/// `db.server`: version, uptime and databases from a real query.
pub fn db_server(facts: &Facts) -> Check {
    const NAME: &str = "db.server";
    let run = match finished(NAME, &facts.inside.sql) {
        Ok(run) => run,
        Err(check) => return check,
    };
    if !run.success {
        return Check::new(NAME, Verdict::Fail, format!("query failed ({}): {}", run.status, output_of(run))).fix(
            "the server does not answer queries as the admin user: check the server log (kubectl logs POD) and that the Secret's password is the one the data directory was created with",
        );
    }
    let rows = parse_rows(&run.stdout);
    let first = |k: &str| {
        rows.get(k)
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_else(|| "?".into())
    };
    let uptime = first("uptime")
        .parse::<u64>()
        .map(human_seconds)
        .unwrap_or_else(|_| "?".into());
    let databases = rows.get("database").cloned().unwrap_or_default().join(", ");
    Check::new(
        NAME,
        Verdict::Ok,
        format!("{}; up {uptime}; databases: {databases}", first("version")),
    )
}

/// `db.connections`: connections in use against max_connections; warn at 80%.
pub fn db_connections(facts: &Facts) -> Check {
    const NAME: &str = "db.connections";
    let Outcome::Done(run) = &facts.inside.sql else {
        return Check::new(
            NAME,
            Verdict::Skipped,
            "no answer from the server (see db.server)",
        );
    };
    let rows = parse_rows(&run.stdout);
    let number = |k: &str| {
        rows.get(k)
            .and_then(|v| v.first())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let (Some(used), Some(max)) = (number("connections"), number("max_connections")) else {
        return Check::new(
            NAME,
            Verdict::Skipped,
            "no answer from the server (see db.server)",
        );
    };
    let evidence = format!("{used} of max_connections {max}");
    if max > 0 && used * 100 >= max * 80 {
        return Check::new(NAME, Verdict::Warn, evidence)
            .fix("close idle connections or use a pooler (PgBouncer / ProxySQL); raise max_connections with --set only with memory to match");
    }
    Check::new(NAME, Verdict::Ok, evidence)
}

/// `db.status`: `pg_isready` / `mysqladmin status`.
pub fn db_status(facts: &Facts) -> Check {
    let name = "db.status";
    let run = match finished(name, &facts.inside.status) {
        Ok(run) => run,
        Err(check) => return check,
    };
    let tool = match facts.engine {
        Engine::Postgres => "pg_isready",
        _ => "mysqladmin status",
    };
    if run.success {
        return Check::new(name, Verdict::Ok, format!("{tool}: {}", run.stdout.trim()));
    }
    Check::new(
        name,
        Verdict::Fail,
        format!("{tool}: {} {}", run.status, output_of(run)),
    )
    .fix("the server is not accepting connections: read the server log (kubectl logs POD)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_posix_output_is_parsed() {
        let text = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n/dev/sda1 10255636 8421812 1293256 87% /var/lib/postgresql/data\n";
        assert_eq!(
            parse_df(text),
            Some((87, 10255636, "/var/lib/postgresql/data".into()))
        );
        assert_eq!(parse_df("garbage"), None);
    }

    #[test]
    fn rows_map_mysql_names() {
        let rows = parse_rows(
            "version\t10.11.6-MariaDB\nUptime\t42\nThreads_connected\t3\nmax_connections\t200\ndatabase\ta\ndatabase\tb\n",
        );
        assert_eq!(rows["uptime"], vec!["42"]);
        assert_eq!(rows["connections"], vec!["3"]);
        assert_eq!(rows["database"], vec!["a", "b"]);
    }

    #[test]
    fn scripts_carry_no_password_values() {
        for engine in Engine::ALL {
            let script = status_script(engine);
            assert!(!script.contains("-p\""), "{script}");
            let script = &permissions_command(engine, "/data")[2];
            assert!(script.contains("test -w") || script.contains("[ -w"));
        }
    }

    #[test]
    fn mount_paths_reach_the_shell_as_data() {
        let dir = tempfile::tempdir().unwrap();
        let pwned = dir.path().join("pwned");
        // Run in `dir`: any `touch pwned` that runs as code creates dir/pwned.
        let hostile = format!(
            "{}/m'\"; touch pwned #$(touch pwned)`touch pwned`",
            dir.path().display()
        );
        std::fs::create_dir(&hostile).unwrap();
        for command in [
            permissions_command(Engine::Mariadb, &hostile),
            volume_command(&hostile),
        ] {
            assert!(!command[2].contains("touch"), "{command:?}");
            let output = std::process::Command::new(&command[0])
                .args(&command[1..])
                .current_dir(dir.path())
                .env_remove("PGDATA")
                .output()
                .unwrap();
            assert!(output.status.success(), "{output:?}");
            assert!(!pwned.exists(), "the mount path ran as code: {command:?}");
        }
        let output = std::process::Command::new("sh")
            .args(&permissions_command(Engine::Mariadb, &hostile)[1..])
            .current_dir(dir.path())
            .env_remove("PGDATA")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains(&format!("dir={hostile}")), "{text}");
    }
}
