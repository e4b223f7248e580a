//! The schedule flags of `dbbackup schedule` (`--every 6h`, `--at 02:30`, `--cron EXPR`)
//! turned into the 5-field cron expression a Kubernetes CronJob takes, validated before any
//! API call, and the next run times in the CronJob's time zone (pure: `now` is an input).

use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::error::{Error, Result};

/// The time zone a schedule runs in when `--time-zone` is not given: named in the CronJob,
/// so the controller manager's own zone never decides when backups run.
pub const DEFAULT_TIME_ZONE: &str = "Etc/UTC";

/// How the user said when backups run (exactly one of the three flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// `--every 6h`: a period that divides an hour or a day evenly.
    Every(Duration),
    /// `--at 02:30`: once a day.
    At { hour: u8, minute: u8 },
    /// `--cron 'EXPR'`: a 5-field cron expression.
    Cron(String),
}

/// A validated schedule: the CronJob's `schedule` and `timeZone`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Five fields: minute hour day-of-month month day-of-week.
    pub cron: String,
    /// IANA name (`Asia/Seoul`).
    pub time_zone: String,
}

/// Parses `--at HH:MM` (24-hour clock).
pub fn parse_at(text: &str) -> std::result::Result<When, String> {
    let bad = || format!("invalid --at {text:?}: expected HH:MM on a 24-hour clock, e.g. 02:30");
    let (hour, minute) = text.trim().split_once(':').ok_or_else(bad)?;
    let hour: u8 = hour.parse().map_err(|_| bad())?;
    let minute: u8 = minute.parse().map_err(|_| bad())?;
    if hour > 23 || minute > 59 {
        return Err(bad());
    }
    Ok(When::At { hour, minute })
}

/// Parses `--every` (`30m`, `6h`, `1d`): whole minutes that divide an hour, or whole hours
/// that divide a day — what cron can repeat evenly. Anything else is refused with the
/// nearest expressible choice rather than silently drifting.
pub fn parse_every(text: &str) -> std::result::Result<When, String> {
    let text = text.trim();
    let duration = match text.strip_suffix('d') {
        Some(days) => days
            .parse::<u64>()
            .map(|d| Duration::from_secs(d * 86_400))
            .map_err(|_| format!("invalid --every {text:?}: expected e.g. 15m, 6h, 1d"))?,
        None => crate::cli::parse_duration(text)?,
    };
    let secs = duration.as_secs();
    let even_minutes = secs % 60 == 0 && secs < 3600 && secs > 0 && 3600 % secs == 0;
    let even_hours = secs % 3600 == 0 && secs <= 86_400 && secs > 0 && 86_400 % secs == 0;
    if !(even_minutes || even_hours) || duration.subsec_nanos() != 0 {
        return Err(format!(
            "invalid --every {text:?}: a cron schedule repeats evenly only every 1, 2, 3, 4, 5, \
             6, 10, 12, 15, 20 or 30 minutes, or every 1, 2, 3, 4, 6, 8, 12 or 24 hours; \
             use --cron for anything else"
        ));
    }
    Ok(When::Every(duration))
}

/// Parses an age for retention and freshness: `7d`, `36h`, `90m` (days as well as the
/// units of [`crate::cli::parse_duration`]).
pub fn parse_age(text: &str) -> std::result::Result<Duration, String> {
    match text.trim().strip_suffix('d') {
        Some(days) => days
            .parse::<u64>()
            .ok()
            .and_then(|d| d.checked_mul(86_400))
            .map(Duration::from_secs)
            .ok_or_else(|| format!("invalid age {text:?}: expected e.g. 7d, 36h")),
        None => crate::cli::parse_duration(text),
    }
}

/// Checks a time zone name against the local time zone database (the API server checks it
/// again against its own).
pub fn check_time_zone(name: &str) -> Result<TimeZone> {
    TimeZone::get(name).map_err(|_| {
        Error::Usage(format!(
            "invalid --time-zone {name:?}: not an IANA time zone name (e.g. Europe/Berlin, Asia/Seoul, Etc/UTC)"
        ))
    })
}

/// The 5-field expression of `when`, validated, with its time zone.
pub fn schedule(when: &When, time_zone: Option<&str>) -> Result<Schedule> {
    let cron = match when {
        When::Every(period) => every_expression(*period),
        When::At { hour, minute } => format!("{minute} {hour} * * *"),
        When::Cron(expr) => validate_cron(expr)?,
    };
    let time_zone = time_zone.unwrap_or(DEFAULT_TIME_ZONE).to_string();
    check_time_zone(&time_zone)?;
    Ok(Schedule { cron, time_zone })
}

fn every_expression(period: Duration) -> String {
    let minutes = period.as_secs() / 60;
    match minutes {
        1 => "* * * * *".into(),
        m if m < 60 => format!("*/{m} * * * *"),
        60 => "0 * * * *".into(),
        1440 => "0 0 * * *".into(),
        m => format!("0 */{} * * *", m / 60),
    }
}

/// The `@` names the CronJob controller accepts (robfig/cron's standard parser), as fields.
const NICKNAMES: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

const NAMES: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", "sun",
    "mon", "tue", "wed", "thu", "fri", "sat",
];

/// Validates `--cron`: exactly 5 fields of numbers, `*`, `?`, ranges, lists, steps and
/// month/day names — what the CronJob controller parses; no seconds field, no `TZ=` prefix,
/// none of the `L`/`W`/`#` extensions other cron dialects have. Returns the expression
/// normalised (single spaces; an `@` name spelled out).
pub fn validate_cron(expr: &str) -> Result<String> {
    let expr = expr.trim();
    let lower = expr.to_ascii_lowercase();
    if let Some((_, fields)) = NICKNAMES.iter().find(|(name, _)| *name == lower) {
        return Ok(fields.to_string());
    }
    let refuse = |why: String| {
        Err(Error::Usage(format!(
            "invalid --cron {expr:?}: {why}; a CronJob schedule has exactly 5 fields: \
             minute hour day-of-month month day-of-week (e.g. '30 2 * * *')"
        )))
    };
    if lower.starts_with("tz=") || lower.starts_with("cron_tz=") {
        return refuse("a time zone inside the expression is not allowed, use --time-zone".into());
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    match fields.len() {
        5 => {}
        6 => {
            return refuse(
                "6 fields given: cron with a seconds field is not what Kubernetes runs".into(),
            );
        }
        n => return refuse(format!("{n} fields given")),
    }
    for field in &fields {
        let atoms = field.split([',', '-', '/']);
        for atom in atoms {
            let plain = atom == "*"
                || atom == "?"
                || (!atom.is_empty() && atom.chars().all(|c| c.is_ascii_digit()))
                || NAMES.contains(&atom.to_ascii_lowercase().as_str());
            if !plain {
                return refuse(format!("{field:?} is not a number, *, range, list or step"));
            }
        }
    }
    let normalised = fields.join(" ");
    match parser().parse(&normalised) {
        Ok(_) => Ok(normalised),
        Err(err) => refuse(err.to_string()),
    }
}

fn parser() -> CronParser {
    // Day-of-month and day-of-week combine with OR when both are restricted, as in the
    // CronJob controller (and Vixie cron).
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .dom_and_dow(false)
        .build()
}

/// The next `count` run times after `now`, in the schedule's time zone.
pub fn next_runs(schedule: &Schedule, now: Timestamp, count: usize) -> Result<Vec<jiff::Zoned>> {
    let tz = check_time_zone(&schedule.time_zone)?;
    let cron: Cron = parser()
        .parse(&schedule.cron)
        .map_err(|err| Error::Usage(format!("invalid schedule {:?}: {err}", schedule.cron)))?;
    Ok(cron.iter_after(now.to_zoned(tz)).take(count).collect())
}

/// A run time as users read it: `2026-12-03 02:30 KST (+09:00)`.
pub fn show(time: &jiff::Zoned) -> String {
    time.strftime("%Y-%m-%d %H:%M %Z (%:z)").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(when: When) -> String {
        schedule(&when, None).unwrap().cron
    }

    #[test]
    fn every_and_at_become_cron() {
        assert_eq!(expr(parse_every("6h").unwrap()), "0 */6 * * *");
        assert_eq!(expr(parse_every("1h").unwrap()), "0 * * * *");
        assert_eq!(expr(parse_every("15m").unwrap()), "*/15 * * * *");
        assert_eq!(expr(parse_every("1m").unwrap()), "* * * * *");
        assert_eq!(expr(parse_every("1d").unwrap()), "0 0 * * *");
        assert_eq!(expr(parse_every("24h").unwrap()), "0 0 * * *");
        assert_eq!(expr(parse_at("02:30").unwrap()), "30 2 * * *");
        assert_eq!(expr(parse_at("23:05").unwrap()), "5 23 * * *");
        for bad in ["7h", "45m", "90m", "2d", "30s", "0", "1h30m"] {
            let err = parse_every(bad).unwrap_err();
            assert!(
                err.contains("repeats evenly") || err.contains("invalid"),
                "{bad}: {err}"
            );
        }
        for bad in ["24:00", "2:60", "0230", "a:b", ""] {
            assert!(parse_at(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cron_has_five_fields_and_says_so() {
        let err = validate_cron("0 0 * * * *").unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::USAGE);
        assert_eq!(
            err.to_string(),
            "invalid --cron \"0 0 * * * *\": 6 fields given: cron with a seconds field is not what \
             Kubernetes runs; a CronJob schedule has exactly 5 fields: minute hour day-of-month \
             month day-of-week (e.g. '30 2 * * *')"
        );
        assert!(
            validate_cron("0 0 *")
                .unwrap_err()
                .to_string()
                .contains("3 fields given")
        );
        assert!(
            validate_cron("TZ=UTC 0 0 * * *")
                .unwrap_err()
                .to_string()
                .contains("--time-zone")
        );
        for bad in [
            "0 0 L * *",
            "0 0 * * 5#3",
            "0 0 15W * *",
            "61 0 * * *",
            "0 25 * * *",
            "x * * * *",
        ] {
            assert!(validate_cron(bad).is_err(), "{bad}");
        }
        assert_eq!(
            validate_cron(" 30  2 * *  mon-fri ").unwrap(),
            "30 2 * * mon-fri"
        );
        assert_eq!(
            validate_cron("*/5 1-3,7 1 jan ?").unwrap(),
            "*/5 1-3,7 1 jan ?"
        );
        assert_eq!(validate_cron("@daily").unwrap(), "0 0 * * *");
    }

    #[test]
    fn next_runs_are_shown_in_the_time_zone() {
        let now: Timestamp = "2026-12-03T11:00:00Z".parse().unwrap();
        let seoul = schedule(&parse_at("02:30").unwrap(), Some("Asia/Seoul")).unwrap();
        let runs: Vec<String> = next_runs(&seoul, now, 3)
            .unwrap()
            .iter()
            .map(show)
            .collect();
        assert_eq!(
            runs,
            [
                "2026-12-04 02:30 KST (+09:00)",
                "2026-12-05 02:30 KST (+09:00)",
                "2026-12-06 02:30 KST (+09:00)"
            ]
        );
        let utc = schedule(&parse_every("6h").unwrap(), None).unwrap();
        assert_eq!(utc.time_zone, "Etc/UTC");
        let runs: Vec<String> = next_runs(&utc, now, 3).unwrap().iter().map(show).collect();
        assert_eq!(
            runs,
            [
                "2026-12-03 12:00 UTC (+00:00)",
                "2026-12-03 18:00 UTC (+00:00)",
                "2026-12-04 00:00 UTC (+00:00)"
            ]
        );
        let err = schedule(&parse_at("02:30").unwrap(), Some("Mars/Olympus")).unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::USAGE);
    }
}
