//! The running server's own list of settings (PostgreSQL `pg_settings`, MariaDB
//! `information_schema.SYSTEM_VARIABLES`, MySQL `SHOW GLOBAL VARIABLES`) and the check of a
//! `--set key=value` against it: the name must exist and the value must fit the setting's
//! type, allowed values and range. Pure: the SQL output comes in, a verdict goes out.

use std::collections::BTreeMap;

use super::Engine;

/// Which server's catalogue, and so which rules for names and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Postgres,
    Mariadb,
    /// MySQL: only names and current values are available, types are guessed from them.
    Mysql,
}

impl Flavour {
    /// The flavour of a server from the engine and its version text (an image named
    /// `mysql` may run MariaDB: the server's own answer decides).
    pub fn of(engine: Engine, version: &str) -> Flavour {
        match engine {
            Engine::Postgres => Flavour::Postgres,
            _ if version.to_ascii_lowercase().contains("mariadb") => Flavour::Mariadb,
            _ => Flavour::Mysql,
        }
    }

    /// The query listing every setting, one per row, tab-separated.
    pub fn sql(self) -> &'static str {
        match self {
            Flavour::Postgres => {
                "SELECT name, vartype, coalesce(array_to_string(enumvals, ','), ''), coalesce(min_val, ''), coalesce(max_val, ''), coalesce(unit, '') FROM pg_settings;"
            }
            Flavour::Mariadb => {
                "SELECT LOWER(VARIABLE_NAME), VARIABLE_TYPE, IFNULL(ENUM_VALUE_LIST, ''), IFNULL(NUMERIC_MIN_VALUE, ''), IFNULL(NUMERIC_MAX_VALUE, ''), '' FROM information_schema.SYSTEM_VARIABLES;"
            }
            Flavour::Mysql => "SHOW GLOBAL VARIABLES;",
        }
    }
}

/// What values a setting takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Bool,
    /// An integer; `unit` is PostgreSQL's base unit (`8kB`, `ms`), whose multiples the
    /// value may be written in.
    Integer {
        min: Option<f64>,
        max: Option<f64>,
        unit: Option<String>,
    },
    Real {
        min: Option<f64>,
        max: Option<f64>,
        unit: Option<String>,
    },
    Enum(Vec<String>),
    /// A comma-separated subset of the values.
    Set(Vec<String>),
    /// MariaDB's `name=on|off|default,...` (optimizer_switch).
    Flags(Vec<String>),
    Text,
}

/// Every setting of one running server.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub flavour: Flavour,
    settings: BTreeMap<String, Kind>,
}

/// mysqld options that are not system variables but are valid in my.cnf.
const MYSQL_OPTIONS: &[&str] = &[
    "plugin_load",
    "plugin_load_add",
    "default_time_zone",
    "binlog_do_db",
    "binlog_ignore_db",
    "console",
    "user",
    "memlock",
    "core_file",
    "ssl",
    "character_set_client_handshake",
    "log_slow_queries",
];
const MYSQL_OPTION_PREFIXES: &[&str] = &["replicate_", "performance_schema_", "loose_"];

impl Catalogue {
    /// Reads the catalogue query's output (see [`Flavour::sql`]).
    pub fn parse(flavour: Flavour, text: &str) -> Catalogue {
        let mut settings = BTreeMap::new();
        for line in text.lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            let name = match cols.first() {
                Some(name) if !name.trim().is_empty() => normal_name(flavour, name),
                _ => continue,
            };
            let kind = match flavour {
                Flavour::Mysql => guess_kind(cols.get(1).copied().unwrap_or_default()),
                _ => typed_kind(flavour, &cols),
            };
            settings.insert(name, kind);
        }
        Catalogue { flavour, settings }
    }

    /// How many settings the server listed (0 means the query saw nothing: no verdict).
    pub fn len(&self) -> usize {
        self.settings.len()
    }

    /// Whether the server listed no setting at all.
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty()
    }

    /// Checks one `--set key=value`: `Err` says why the server would refuse it.
    pub fn check(&self, key: &str, value: &str) -> Result<(), String> {
        let name = normal_name(self.flavour, key);
        if let Some(kind) = self.settings.get(&name) {
            return check_value(self.flavour, kind, value);
        }
        match self.flavour {
            // `ext.name` is a custom or extension setting: the server accepts it as a
            // placeholder until the extension is loaded.
            Flavour::Postgres if name.contains('.') => Ok(()),
            Flavour::Postgres => Err(format!("unknown setting{}", self.suggestion(&name))),
            _ => {
                if MYSQL_OPTIONS.contains(&name.as_str())
                    || MYSQL_OPTION_PREFIXES.iter().any(|p| name.starts_with(p))
                {
                    return Ok(());
                }
                // --skip-X, --enable-X, --disable-X switch boolean variable X.
                let switched = ["skip_", "enable_", "disable_"]
                    .iter()
                    .filter_map(|p| name.strip_prefix(p))
                    .any(|rest| self.settings.get(rest) == Some(&Kind::Bool));
                if switched {
                    return if value.is_empty() || mysql_bool(value) {
                        Ok(())
                    } else {
                        Err(format!("{value:?} is not a boolean (ON, OFF, 1, 0)"))
                    };
                }
                Err(format!(
                    "unknown variable{}; an option that is not a system variable can be passed as loose-{key}",
                    self.suggestion(&name)
                ))
            }
        }
    }

    /// ` (did you mean x?)` for the closest known name, when one is close.
    fn suggestion(&self, name: &str) -> String {
        let best = self
            .settings
            .keys()
            .map(|known| (edit_distance(name, known), known))
            .filter(|(d, _)| *d <= 2.max(name.len() / 4))
            .min();
        best.map(|(_, known)| format!(" (did you mean {known}?)"))
            .unwrap_or_default()
    }
}

fn normal_name(flavour: Flavour, name: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    match flavour {
        Flavour::Postgres => name,
        // mysqld treats '-' and '_' in option names alike.
        _ => name.replace('-', "_"),
    }
}

fn number(text: &str) -> Option<f64> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.parse().ok()).flatten()
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

fn typed_kind(flavour: Flavour, cols: &[&str]) -> Kind {
    let col = |i: usize| cols.get(i).copied().unwrap_or_default();
    let (min, max) = (number(col(3)), number(col(4)));
    let unit = Some(col(5).trim().to_string()).filter(|u| !u.is_empty());
    let vartype = col(1).trim().to_ascii_uppercase();
    match (flavour, vartype.as_str()) {
        (_, "BOOL" | "BOOLEAN") => Kind::Bool,
        (_, "ENUM") => Kind::Enum(list(col(2))),
        (_, "SET") => Kind::Set(list(col(2))),
        (_, "FLAGSET") => Kind::Flags(list(col(2))),
        (_, "REAL" | "DOUBLE") => Kind::Real { min, max, unit },
        (_, t) if t == "INTEGER" || t.contains("INT") => Kind::Integer { min, max, unit },
        _ => Kind::Text,
    }
}

/// MySQL's catalogue has no types: ON/OFF values are booleans, digits integers.
fn guess_kind(current: &str) -> Kind {
    let current = current.trim();
    if current.eq_ignore_ascii_case("on") || current.eq_ignore_ascii_case("off") {
        Kind::Bool
    } else if !current.is_empty() && current.chars().all(|c| c.is_ascii_digit()) {
        Kind::Integer {
            min: None,
            max: None,
            unit: None,
        }
    } else {
        Kind::Text
    }
}

fn check_value(flavour: Flavour, kind: &Kind, value: &str) -> Result<(), String> {
    let value = value.trim();
    let postgres = flavour == Flavour::Postgres;
    match kind {
        Kind::Text => Ok(()),
        // A bare option name in my.cnf switches a boolean on.
        Kind::Bool if value.is_empty() && !postgres => Ok(()),
        Kind::Bool if postgres && postgres_bool(value) => Ok(()),
        Kind::Bool if !postgres && mysql_bool(value) => Ok(()),
        Kind::Bool => Err(format!(
            "{value:?} is not a boolean ({})",
            if postgres {
                "on, off, true, false, yes, no, 1, 0"
            } else {
                "ON, OFF, 1, 0"
            }
        )),
        _ if value.is_empty() => Err("the setting needs a value".into()),
        Kind::Enum(values) => {
            let index = (!postgres)
                .then(|| value.parse::<usize>().ok())
                .flatten()
                .is_some_and(|i| i < values.len());
            if index || values.iter().any(|v| v.eq_ignore_ascii_case(value)) {
                Ok(())
            } else {
                Err(format!("{value:?} is not one of {}", values.join(", ")))
            }
        }
        Kind::Set(values) => {
            let unknown: Vec<&str> = value
                .split(',')
                .map(str::trim)
                .filter(|item| {
                    !item.is_empty() && !values.iter().any(|v| v.eq_ignore_ascii_case(item))
                })
                .collect();
            if unknown.is_empty() || value.chars().all(|c| c.is_ascii_digit()) {
                Ok(())
            } else {
                Err(format!(
                    "{} not among {}",
                    unknown.join(", "),
                    values.join(", ")
                ))
            }
        }
        Kind::Flags(names) => {
            for item in value.split(',').map(str::trim) {
                if item.eq_ignore_ascii_case("default") {
                    continue;
                }
                let known = item.split_once('=').is_some_and(|(flag, state)| {
                    names.iter().any(|n| n.eq_ignore_ascii_case(flag.trim()))
                        && ["on", "off", "default"]
                            .iter()
                            .any(|s| s.eq_ignore_ascii_case(state.trim()))
                });
                if !known {
                    return Err(format!(
                        "{item:?} is not flag=on|off|default with a flag among {}",
                        names.join(", ")
                    ));
                }
            }
            Ok(())
        }
        Kind::Integer { min, max, unit } | Kind::Real { min, max, unit } => {
            let integer = matches!(kind, Kind::Integer { .. });
            let base = if postgres {
                postgres_number(value, integer, unit.as_deref())?
            } else {
                mysql_number(value, integer)?
            };
            let below = min.is_some_and(|m| base < m);
            let above = max.is_some_and(|m| base > m);
            if below || above {
                let show = |v: &Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
                let unit = unit
                    .as_deref()
                    .map(|u| format!(" (in {u})"))
                    .unwrap_or_default();
                return Err(format!(
                    "{value} is outside the valid range {}..{}{unit}",
                    show(min),
                    show(max)
                ));
            }
            Ok(())
        }
    }
}

/// PostgreSQL's parse_bool: the words and their unique prefixes, any case.
fn postgres_bool(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    let prefix_of = |word: &str, shortest: usize| v.len() >= shortest && word.starts_with(&v);
    matches!(v.as_str(), "1" | "0")
        || prefix_of("true", 1)
        || prefix_of("false", 1)
        || prefix_of("yes", 1)
        || prefix_of("no", 1)
        || v == "on"
        || prefix_of("off", 2)
}

fn mysql_bool(value: &str) -> bool {
    ["on", "off", "true", "false", "1", "0"]
        .iter()
        .any(|w| w.eq_ignore_ascii_case(value.trim()))
}

/// A PostgreSQL number with an optional unit, converted to the setting's base unit.
fn postgres_number(value: &str, integer: bool, unit: Option<&str>) -> Result<f64, String> {
    let (number, rest) = split_number(value, integer);
    let parsed = match number.get(..2) {
        Some("0x" | "0X") => i64::from_str_radix(&number[2..], 16).ok().map(|n| n as f64),
        _ => number.parse::<f64>().ok().filter(|n| n.is_finite()),
    };
    let Some(parsed) = parsed else {
        return Err(format!("{value:?} is not a number"));
    };
    let given = rest.trim();
    if given.is_empty() {
        return Ok(parsed);
    }
    let Some((base_mult, family)) = unit.and_then(unit_multiplier) else {
        return Err(format!("{value:?}: this setting takes no unit"));
    };
    match unit_multiplier(given) {
        Some((mult, given_family)) if given_family == family => Ok(parsed * mult / base_mult),
        _ => Err(format!(
            "{value:?}: valid units for this setting are {}",
            if family == UnitFamily::Memory {
                "B, kB, MB, GB, TB"
            } else {
                "us, ms, s, min, h, d"
            }
        )),
    }
}

/// Splits `128MB` into `128` and `MB`: a sign, digits, a fraction and an exponent (or, for
/// integers, `0x` and hex digits), then the rest.
fn split_number(value: &str, integer: bool) -> (&str, &str) {
    let bytes = value.as_bytes();
    let mut end = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        end = 1;
    }
    let hex = integer && value[end..].to_ascii_lowercase().starts_with("0x");
    if hex {
        end += 2;
        while end < bytes.len() && bytes[end].is_ascii_hexdigit() {
            end += 1;
        }
        return value.split_at(end);
    }
    while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
        end += 1;
    }
    // An exponent only when digits follow: the `e` of a unit is not one.
    if end < bytes.len() && matches!(bytes[end], b'e' | b'E') {
        let mut exp = end + 1;
        if matches!(bytes.get(exp), Some(b'+' | b'-')) {
            exp += 1;
        }
        if bytes.get(exp).is_some_and(u8::is_ascii_digit) {
            end = exp;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
        }
    }
    value.split_at(end)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnitFamily {
    Memory,
    Time,
}

/// `8kB` → 8192 bytes; `min` → 60000 ms. PostgreSQL's unit names are case-sensitive.
fn unit_multiplier(unit: &str) -> Option<(f64, UnitFamily)> {
    let digits = unit
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(unit.len());
    let count: f64 = if digits == 0 {
        1.0
    } else {
        unit[..digits].parse().ok()?
    };
    let (mult, family) = match &unit[digits..] {
        "B" => (1.0, UnitFamily::Memory),
        "kB" => (1024.0, UnitFamily::Memory),
        "MB" => (1024.0 * 1024.0, UnitFamily::Memory),
        "GB" => (1024.0 * 1024.0 * 1024.0, UnitFamily::Memory),
        "TB" => (1024.0 * 1024.0 * 1024.0 * 1024.0, UnitFamily::Memory),
        "us" => (0.001, UnitFamily::Time),
        "ms" => (1.0, UnitFamily::Time),
        "s" => (1000.0, UnitFamily::Time),
        "min" => (60_000.0, UnitFamily::Time),
        "h" => (3_600_000.0, UnitFamily::Time),
        "d" => (86_400_000.0, UnitFamily::Time),
        _ => return None,
    };
    Some((count * mult, family))
}

/// A my.cnf number: digits with an optional K/M/G/T/P/E suffix (powers of 1024).
fn mysql_number(value: &str, integer: bool) -> Result<f64, String> {
    let (number, mult) = match value.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some(c @ ('K' | 'M' | 'G' | 'T' | 'P' | 'E')) => {
            let power = "KMGTPE".find(c).unwrap_or(0) as i32 + 1;
            (&value[..value.len() - 1], 1024f64.powi(power))
        }
        _ => (value, 1.0),
    };
    let parsed = if integer {
        number.parse::<i128>().ok().map(|n| n as f64)
    } else {
        number.parse::<f64>().ok().filter(|n| n.is_finite())
    };
    parsed
        .map(|n| n * mult)
        .ok_or_else(|| format!("{value:?} is not a number"))
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                previous
            } else {
                1 + previous.min(row[j]).min(row[j + 1])
            };
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG: &str = "max_connections\tinteger\t\t1\t262143\t\n\
shared_buffers\tinteger\t\t16\t1073741823\t8kB\n\
statement_timeout\tinteger\t\t0\t2147483647\tms\n\
checkpoint_completion_target\treal\t\t0\t1\t\n\
fsync\tbool\t\t\t\t\n\
wal_level\tenum\tminimal,replica,logical\t\t\t\n\
work_mem\tinteger\t\t64\t2147483647\tkB\n\
search_path\tstring\t\t\t\t\n";

    #[test]
    fn postgres_names_must_exist() {
        let c = Catalogue::parse(Flavour::Postgres, PG);
        assert_eq!(c.len(), 8);
        let err = c.check("no_such_setting", "1").unwrap_err();
        assert!(err.starts_with("unknown setting"), "{err}");
        let err = c.check("max_conections", "10").unwrap_err();
        assert!(err.contains("did you mean max_connections?"), "{err}");
        assert_eq!(c.check("MAX_CONNECTIONS", "10"), Ok(()));
        assert_eq!(c.check("pg_stat_statements.max", "1000"), Ok(()));
    }

    #[test]
    fn postgres_values_follow_the_setting_type() {
        let c = Catalogue::parse(Flavour::Postgres, PG);
        assert!(
            c.check("max_connections", "banana")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            c.check("max_connections", "0")
                .unwrap_err()
                .contains("outside the valid range 1..262143")
        );
        assert_eq!(c.check("max_connections", "500"), Ok(()));
        // Units convert to the setting's base unit before the range check.
        assert_eq!(c.check("shared_buffers", "256MB"), Ok(()));
        assert_eq!(c.check("shared_buffers", "128 MB"), Ok(()));
        assert_eq!(c.check("shared_buffers", "4096"), Ok(()));
        assert!(
            c.check("shared_buffers", "64kB")
                .unwrap_err()
                .contains("outside")
        );
        assert!(
            c.check("shared_buffers", "1Mb")
                .unwrap_err()
                .contains("valid units")
        );
        assert!(
            c.check("shared_buffers", "10s")
                .unwrap_err()
                .contains("valid units")
        );
        assert_eq!(c.check("statement_timeout", "5min"), Ok(()));
        assert_eq!(c.check("statement_timeout", "1.5s"), Ok(()));
        assert!(
            c.check("max_connections", "10MB")
                .unwrap_err()
                .contains("no unit")
        );
        assert_eq!(c.check("checkpoint_completion_target", "0.9"), Ok(()));
        assert!(c.check("checkpoint_completion_target", "2").is_err());
        for ok in ["on", "OFF", "true", "t", "no", "1", "of"] {
            assert_eq!(c.check("fsync", ok), Ok(()), "{ok}");
        }
        for bad in ["o", "maybe", "2", ""] {
            assert!(c.check("fsync", bad).is_err(), "{bad}");
        }
        assert_eq!(c.check("wal_level", "Logical"), Ok(()));
        assert!(
            c.check("wal_level", "archive")
                .unwrap_err()
                .contains("minimal, replica, logical")
        );
        assert_eq!(c.check("search_path", "\"$user\", public"), Ok(()));
    }

    const MARIADB: &str = "max_connections\tBIGINT UNSIGNED\t\t10\t100000\t\n\
innodb_buffer_pool_size\tBIGINT UNSIGNED\t\t2097152\t18446744073709551615\t\n\
skip_name_resolve\tBOOLEAN\tOFF,ON\t\t\t\n\
log_bin\tBOOLEAN\tOFF,ON\t\t\t\n\
binlog_format\tENUM\tMIXED,STATEMENT,ROW\t\t\t\n\
sql_mode\tSET\tREAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,STRICT_TRANS_TABLES\t\t\t\n\
optimizer_switch\tFLAGSET\tindex_merge,mrr,default\t\t\t\n\
long_query_time\tDOUBLE\t\t0\t31536000\t\n\
character_set_server\tVARCHAR\t\t\t\t\n";

    #[test]
    fn mysql_names_allow_dashes_options_and_loose() {
        let c = Catalogue::parse(Flavour::Mariadb, MARIADB);
        assert!(
            c.check("no_such_variable", "1")
                .unwrap_err()
                .contains("unknown variable")
        );
        assert!(
            c.check("no-such-variable", "1")
                .unwrap_err()
                .contains("loose-no-such-variable")
        );
        assert!(
            c.check("max_conections", "1")
                .unwrap_err()
                .contains("did you mean max_connections?")
        );
        assert_eq!(c.check("max-connections", "500"), Ok(()));
        assert_eq!(c.check("loose-no-such-variable", "1"), Ok(()));
        assert_eq!(c.check("plugin-load-add", "auth_ed25519"), Ok(()));
        assert_eq!(c.check("skip-log-bin", ""), Ok(()));
        assert_eq!(c.check("skip-name-resolve", ""), Ok(()));
        assert!(c.check("skip-max-connections", "").is_err());
    }

    #[test]
    fn mysql_values_follow_the_variable_type() {
        let c = Catalogue::parse(Flavour::Mariadb, MARIADB);
        assert!(
            c.check("max_connections", "banana")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            c.check("max_connections", "1")
                .unwrap_err()
                .contains("10..100000")
        );
        assert!(c.check("max_connections", "").is_err());
        assert_eq!(c.check("innodb_buffer_pool_size", "256M"), Ok(()));
        assert_eq!(c.check("innodb_buffer_pool_size", "1g"), Ok(()));
        assert!(c.check("innodb_buffer_pool_size", "1GB").is_err());
        assert_eq!(c.check("binlog_format", "row"), Ok(()));
        assert_eq!(c.check("binlog_format", "2"), Ok(()));
        assert!(c.check("binlog_format", "rows").is_err());
        assert_eq!(
            c.check("sql_mode", "ANSI_QUOTES,strict_trans_tables"),
            Ok(())
        );
        assert!(
            c.check("sql_mode", "ANSI_QUOTES,NO_SUCH")
                .unwrap_err()
                .contains("NO_SUCH")
        );
        assert_eq!(
            c.check("optimizer_switch", "mrr=off,index_merge=on"),
            Ok(())
        );
        assert!(c.check("optimizer_switch", "mrr=maybe").is_err());
        assert_eq!(c.check("long_query_time", "0.5"), Ok(()));
        assert_eq!(c.check("skip_name_resolve", "ON"), Ok(()));
        assert!(c.check("skip_name_resolve", "sometimes").is_err());
        assert_eq!(c.check("character_set_server", "utf8mb4"), Ok(()));
    }

    #[test]
    fn mysql_types_are_guessed_from_current_values() {
        let c = Catalogue::parse(
            Flavour::Mysql,
            "max_connections\t151\nskip_name_resolve\tOFF\nbind_address\t*\n",
        );
        assert!(c.check("max_connections", "banana").is_err());
        assert_eq!(c.check("max_connections", "500"), Ok(()));
        assert!(c.check("skip_name_resolve", "sometimes").is_err());
        assert_eq!(c.check("bind_address", "0.0.0.0"), Ok(()));
        assert!(c.check("no_such", "1").is_err());
    }

    #[test]
    fn flavour_comes_from_the_server() {
        assert_eq!(
            Flavour::of(Engine::Mysql, "10.11.9-MariaDB-ubu2204"),
            Flavour::Mariadb
        );
        assert_eq!(Flavour::of(Engine::Mysql, "8.0.36"), Flavour::Mysql);
        assert_eq!(
            Flavour::of(Engine::Postgres, "PostgreSQL 15.14"),
            Flavour::Postgres
        );
    }
}
