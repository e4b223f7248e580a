//! Printing reports (table, JSON, YAML) to stdout and progress to stderr. A report prints
//! for a person through its [`Render`] impl, a pure function next to the report.

use std::io::IsTerminal;
use std::time::Duration;

use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::cli::OutputFormat;
use crate::error::{Error, Result};

/// How many columns a printed report may use; wrapping tables (evidence, fixes) wrap to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Width(pub u16);

impl Width {
    /// Off a terminal without `$COLUMNS` (CI logs, pipes).
    pub const DEFAULT: Width = Width(160);

    /// The terminal's width when stdout is one; otherwise `$COLUMNS`, else [`Width::DEFAULT`]
    /// (off a terminal comfy-table cannot know the width and would never wrap).
    pub fn of_stdout() -> Width {
        if std::io::stdout().is_terminal()
            && let Some(columns) = Table::new().width()
        {
            return Width(columns);
        }
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .map(Width)
            .unwrap_or(Width::DEFAULT)
    }
}

/// A report as text for a person (`-o table`): a pure function of the report and the width,
/// so it is snapshot-tested; `-o json|yaml` print the report's own serialization instead.
pub trait Render {
    /// The text printed, each line ending in a newline.
    fn render(&self, width: Width) -> String;

    /// `-o wide`: the table with every column and detail; by default the table itself.
    fn render_wide(&self, width: Width) -> String {
        self.render(width)
    }
}

/// The `apiVersion` of every report printed with `-o json|yaml`: a script checks it to
/// notice a schema change (docs/schema/).
pub const API_VERSION: &str = "kubectl-db/v1";

/// A report a command prints: its `kind` in `-o json|yaml`, and what `-o name` prints.
/// The reports and their kinds are listed once, in [`crate::schema`].
pub trait Report: Serialize {
    /// The document's `kind`.
    const KIND: &'static str;
    /// True when the report is a list: its document is `{apiVersion, kind, items}`.
    const LIST: bool = false;

    /// `-o name`: `kind/name` of each object the report is about, as kubectl prints them.
    fn names(&self) -> Vec<String>;
}

/// A report as printed by `-o json|yaml`: `apiVersion` and `kind` first, then its fields.
#[derive(Serialize)]
struct Document<'a, R> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    #[serde(flatten)]
    report: &'a R,
}

/// A list report as printed by `-o json|yaml`, in the shape of kubectl's lists.
#[derive(Serialize)]
struct ListDocument<'a, R> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    items: &'a R,
}

/// The report's document (`-o json`) as a JSON value, for JSONPath and schema tests.
pub fn document<R: Report>(report: &R) -> Result<serde_json::Value> {
    let value = if R::LIST {
        serde_json::to_value(ListDocument {
            api_version: API_VERSION,
            kind: R::KIND,
            items: report,
        })
    } else {
        serde_json::to_value(Document {
            api_version: API_VERSION,
            kind: R::KIND,
            report,
        })
    };
    value.map_err(|e| Error::Failed(format!("failed to encode JSON: {e}")))
}

/// The report as text in the format asked for (what [`print_report`] prints).
pub fn format_report<R: Render + Report>(
    report: &R,
    format: &OutputFormat,
    width: Width,
) -> Result<String> {
    match format {
        OutputFormat::Table => Ok(report.render(width)),
        OutputFormat::Wide => Ok(report.render_wide(width)),
        format => format_document(report, format),
    }
}

/// The report as a document (`json`, `yaml`, `name`, JSONPath; `table` and `wide` are
/// the JSON too: a report without a table has no other form).
pub fn format_document<R: Report>(report: &R, format: &OutputFormat) -> Result<String> {
    let yaml = *format == OutputFormat::Yaml;
    match format {
        OutputFormat::Name => Ok(report.names().iter().map(|n| format!("{n}\n")).collect()),
        OutputFormat::JsonPath(template) => Ok(template.render(&document(report)?)),
        OutputFormat::JsonPathAsJson(template) => to_json(&template.results(&document(report)?)),
        // Serialized from the structs, so the fields keep their declared order.
        _ if R::LIST => encode(
            &ListDocument {
                api_version: API_VERSION,
                kind: R::KIND,
                items: report,
            },
            yaml,
        ),
        _ => encode(
            &Document {
                api_version: API_VERSION,
                kind: R::KIND,
                report,
            },
            yaml,
        ),
    }
}

fn encode<T: Serialize>(document: &T, yaml: bool) -> Result<String> {
    if yaml {
        to_yaml(document)
    } else {
        to_json(document)
    }
}

/// Prints a report on stdout in the format asked for; a table's verdicts in colour when
/// [`colour`] says so.
pub fn print_report<R: Render + Report>(report: &R, format: &OutputFormat) -> Result<()> {
    let text = format_report(report, format, Width::of_stdout())?;
    if format.is_table() && colour() {
        print!("{}", paint_verdicts(&text));
    } else {
        print!("{text}");
    }
    Ok(())
}

/// `--color`: `auto` colours on a terminal only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColourChoice {
    #[default]
    Auto,
    Always,
    Never,
}

static COLOUR: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Decides once whether tables are coloured: `--color always|never`, else `NO_COLOR`
/// (<https://no-color.org>) turns it off, `CLICOLOR_FORCE` on, else stdout a terminal.
pub fn set_colour(choice: ColourChoice) {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0");
    let on = match choice {
        ColourChoice::Always => true,
        ColourChoice::Never => false,
        ColourChoice::Auto if set("NO_COLOR") => false,
        ColourChoice::Auto if set("CLICOLOR_FORCE") => true,
        ColourChoice::Auto => std::io::stdout().is_terminal(),
    };
    let _ = COLOUR.set(on);
}

/// Whether tables are coloured (see [`set_colour`]; off until it is called).
pub fn colour() -> bool {
    COLOUR.get().copied().unwrap_or(false)
}

/// A rendered table with its verdict words (`FAIL`, `WARN`, `OK`, `PASS`, `SKIP`,
/// `SKIPPED`) coloured. Done on the finished text so the renderers stay pure and the
/// columns keep their widths (escape codes take no room on screen).
pub fn paint_verdicts(text: &str) -> String {
    const RED: &str = "\x1b[31m";
    const YELLOW: &str = "\x1b[33m";
    const GREEN: &str = "\x1b[32m";
    const DIM: &str = "\x1b[2m";
    const RESET: &str = "\x1b[0m";
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let colour = match word.as_str() {
            "FAIL" | "FAILED" => Some(RED),
            "WARN" => Some(YELLOW),
            "OK" | "PASS" => Some(GREEN),
            "SKIP" | "SKIPPED" => Some(DIM),
            _ => None,
        };
        match colour {
            Some(colour) => out.push_str(&format!("{colour}{word}{RESET}")),
            None => out.push_str(word),
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_alphanumeric() || c == '_' || c == '-' || c == '.' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Prints a value that is not a report (Kubernetes objects of a dry run) as JSON or YAML;
/// JSONPath applies to its JSON, `name` prints its objects' `kind/name`.
pub fn print_document<T: Serialize>(value: &T, format: &OutputFormat) -> Result<()> {
    let json = || {
        serde_json::to_value(value)
            .map_err(|e| Error::Failed(format!("failed to encode JSON: {e}")))
    };
    let text = match format {
        OutputFormat::Yaml => to_yaml(value)?,
        OutputFormat::JsonPath(template) => template.render(&json()?),
        OutputFormat::JsonPathAsJson(template) => to_json(&template.results(&json()?))?,
        OutputFormat::Name => object_names(&json()?)
            .iter()
            .map(|n| format!("{n}\n"))
            .collect(),
        _ => to_json(value)?,
    };
    print!("{text}");
    Ok(())
}

/// `kind/name` of a Kubernetes object, or of each item of a `List`, lower-case as kubectl
/// prints them (`statefulset.apps/orders`).
pub fn object_names(value: &serde_json::Value) -> Vec<String> {
    let one = |object: &serde_json::Value| {
        let kind = object["kind"].as_str()?.to_lowercase();
        let group = object["apiVersion"]
            .as_str()
            .and_then(|v| v.split_once('/'))
            .map(|(group, _)| format!(".{group}"))
            .unwrap_or_default();
        let name = object["metadata"]["name"].as_str()?;
        Some(format!("{kind}{group}/{name}"))
    };
    match value["items"].as_array() {
        Some(items) if value["kind"] == "List" => items.iter().filter_map(one).collect(),
        _ => one(value).into_iter().collect(),
    }
}

/// JSON, pretty, with a final newline.
pub fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string_pretty(value)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| Error::Failed(format!("failed to encode JSON: {e}")))
}

/// YAML through serde-saphyr (the crate kube itself uses).
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String> {
    serde_saphyr::to_string(value).map_err(|e| Error::Failed(format!("failed to encode YAML: {e}")))
}

/// Several Kubernetes objects as a multi-document YAML stream.
pub fn objects_to_yaml(objects: &[serde_json::Value]) -> Result<String> {
    let mut text = String::new();
    for object in objects {
        text.push_str("---\n");
        text.push_str(&to_yaml(object)?);
    }
    Ok(text)
}

/// A name that came from a database (a database, a table), as text output shows it: its
/// control characters escaped (`\t`, `\n`, `\u{1b}`), so a tab cannot shift a table's
/// columns nor an escape sequence reach the terminal. JSON and YAML keep the name as it is.
pub fn shown(name: &str) -> std::borrow::Cow<'_, str> {
    if name.chars().any(char::is_control) {
        name.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_debug().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        name.into()
    }
}

/// A table in the style of `kubectl get`: no borders, upper-case headers.
pub fn table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.iter().map(|h| h.to_uppercase()));
    table
}

/// A table with borders whose cells wrap to fit `width` (evidence, fixes).
pub fn boxed_table(headers: &[&str], width: Width) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(width.0)
        .set_header(headers.iter().map(|h| h.to_uppercase()));
    table
}

/// A table's text with its lines' trailing spaces removed, each line ending in a newline.
pub fn table_text(table: &Table) -> String {
    table
        .to_string()
        .lines()
        .map(|line| format!("{}\n", line.trim_end()))
        .collect()
}

/// A spinner on stderr with a live message; invisible when progress is off.
pub struct Progress {
    bar: Option<ProgressBar>,
}

/// The progress bar on screen, if any: log lines (`-v`) are written through it
/// ([`LogWriter`]) so they never tear it.
static ON_SCREEN: std::sync::Mutex<Option<ProgressBar>> = std::sync::Mutex::new(None);

fn show(bar: &ProgressBar) {
    if let Ok(mut shown) = ON_SCREEN.lock() {
        *shown = Some(bar.clone());
    }
}

/// `tracing`'s writer: stderr, with the progress bar on screen (if any) suspended while a
/// log line is written, as tracing-indicatif does, so a line never lands inside the bar.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = ON_SCREEN.lock().ok().and_then(|shown| shown.clone());
        match bar {
            Some(bar) if !bar.is_finished() => bar.suspend(|| std::io::stderr().write_all(buf))?,
            _ => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

impl Progress {
    /// A spinner, or nothing when `enabled` is false (not a terminal, or --quiet).
    pub fn spinner(enabled: bool) -> Self {
        let bar = enabled.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            show(&bar);
            bar
        });
        Progress { bar }
    }

    /// A byte counter with rate, for dumps and restores.
    pub fn bytes(enabled: bool, what: &str) -> Self {
        let bar = enabled.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {elapsed:>4} {msg} {bytes} ({bytes_per_sec})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            show(&bar);
            bar
        });
        Progress { bar }
    }

    /// Replaces the live message.
    pub fn set(&self, message: impl Into<String>) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.into());
        }
    }

    /// Adds to the byte count.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Prints a line above the spinner (or plainly on stderr when progress is off but
    /// the line must still be seen, e.g. warning events).
    pub fn println(&self, line: impl AsRef<str>) {
        match &self.bar {
            Some(bar) => bar.println(line.as_ref()),
            None => eprintln!("{}", line.as_ref()),
        }
    }

    /// Removes the spinner.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// An age the way kubectl prints one: `42s`, `5m`, `3h`, `2d`.
pub fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// A duration as `1.23s`, for step timings.
pub fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_a_database_are_shown_with_control_characters_escaped() {
        assert!(matches!(
            shown("appdb"),
            std::borrow::Cow::Borrowed("appdb")
        ));
        assert_eq!(shown("상품 \"q\" \\ x"), "상품 \"q\" \\ x");
        assert_eq!(shown("tab\tand\nline"), "tab\\tand\\nline");
        assert_eq!(shown("\u{1b}[2Jgone"), "\\u{1b}[2Jgone");
        let mut table = table(&["database", "table"]);
        table.add_row(vec![shown("a\tb").into_owned(), "t".into()]);
        assert_eq!(table_text(&table), " DATABASE  TABLE\n a\\tb      t\n");
    }

    #[derive(Serialize)]
    struct Found {
        name: String,
        ready: bool,
    }

    impl Render for Found {
        fn render(&self, _: Width) -> String {
            format!("{} ready={}\n", self.name, self.ready)
        }
    }

    impl Report for Found {
        const KIND: &'static str = "Found";
        fn names(&self) -> Vec<String> {
            vec![format!("pod/{}", self.name)]
        }
    }

    impl Report for Vec<Found> {
        const KIND: &'static str = "FoundList";
        const LIST: bool = true;
        fn names(&self) -> Vec<String> {
            self.iter().flat_map(Report::names).collect()
        }
    }

    fn format(report: &impl Report, text: &str) -> String {
        format_document(report, &OutputFormat::parse(text).unwrap()).unwrap()
    }

    fn found() -> Found {
        Found {
            name: "db-0".into(),
            ready: true,
        }
    }

    #[test]
    fn every_document_opens_with_api_version_and_kind() {
        assert_eq!(
            format(&found(), "json"),
            "{\n  \"apiVersion\": \"kubectl-db/v1\",\n  \"kind\": \"Found\",\n  \"name\": \"db-0\",\n  \"ready\": true\n}\n"
        );
        assert_eq!(
            format(&found(), "yaml"),
            "apiVersion: kubectl-db/v1\nkind: Found\nname: db-0\nready: true\n"
        );
        let list = vec![found()];
        let json: serde_json::Value = serde_json::from_str(&format(&list, "json")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"apiVersion": "kubectl-db/v1", "kind": "FoundList",
                               "items": [{"name": "db-0", "ready": true}]})
        );
    }

    #[test]
    fn name_and_jsonpath_print_as_kubectl_does() {
        let list = vec![
            found(),
            Found {
                name: "db-1".into(),
                ready: false,
            },
        ];
        assert_eq!(format(&list, "name"), "pod/db-0\npod/db-1\n");
        assert_eq!(format(&list, "jsonpath={.items[*].name}"), "db-0 db-1");
        assert_eq!(format(&found(), "jsonpath={.kind}/{.name}"), "Found/db-0");
        assert_eq!(
            format(&list, "jsonpath-as-json={.items[?(@.ready==true)].name}"),
            "[\n  \"db-0\"\n]\n"
        );
        let width = Width(80);
        let table =
            |f: &str| format_report(&found(), &OutputFormat::parse(f).unwrap(), width).unwrap();
        assert_eq!(table("table"), "db-0 ready=true\n");
        assert_eq!(table("wide"), "db-0 ready=true\n");
    }

    #[test]
    fn output_formats_parse_as_kubectl_takes_them() {
        for ok in [
            "table",
            "wide",
            "json",
            "yaml",
            "name",
            "jsonpath={.a}",
            "jsonpath-as-json={.a}",
        ] {
            assert!(OutputFormat::parse(ok).is_ok(), "{ok}");
        }
        assert!(
            OutputFormat::parse("jsonpath")
                .unwrap_err()
                .contains("needs a template")
        );
        assert!(OutputFormat::parse("jsonpath={.a").is_err());
        assert!(
            OutputFormat::parse("xml")
                .unwrap_err()
                .starts_with("unknown output format")
        );
    }

    #[test]
    fn only_verdict_words_are_painted() {
        let painted = paint_verdicts("pod.ready  OK    fine\nstorage    FAIL  OKAY-ish FAILED\n");
        assert_eq!(
            painted,
            "pod.ready  \x1b[32mOK\x1b[0m    fine\nstorage    \x1b[31mFAIL\x1b[0m  OKAY-ish \x1b[31mFAILED\x1b[0m\n"
        );
        // Without the escapes the text is unchanged, so columns keep their widths.
        let plain = painted
            .replace("\x1b[32m", "")
            .replace("\x1b[31m", "")
            .replace("\x1b[0m", "");
        assert_eq!(
            plain,
            "pod.ready  OK    fine\nstorage    FAIL  OKAY-ish FAILED\n"
        );
    }

    #[test]
    fn object_names_carry_the_api_group() {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "pg"}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pg"}}]});
        assert_eq!(object_names(&list), ["statefulset.apps/pg", "service/pg"]);
    }
}
