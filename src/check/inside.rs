//! Checks run inside the database container: the readiness probe's own command, `id` and the
//! data directory's ownership, the server's version, uptime, connections and databases,
//! `pg_isready` / `mysqladmin status`, and `df` on the data volume. The commands are the
//! engine's ([`crate::engine::Commands`]); this file has the pure rules that read their
//! output.

use std::collections::BTreeMap;

use super::facts::{Facts, Outcome, Run};
use super::verdict::{Check, Verdict};
use crate::engine::Engine;

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
    let rows = facts.engine.commands().overview_rows(&run.stdout);
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
    // Names are the server's: a control character in one is shown escaped.
    let databases = rows
        .get("database")
        .map(|names| {
            names
                .iter()
                .map(|n| crate::output::shown(n))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .join(", ");
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
    let rows = facts.engine.commands().overview_rows(&run.stdout);
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
    let tool = facts.engine.commands().status_tool();
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
}
