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

    /// The text of `-o wide`: everything shown; the same as [`Render::render`] unless a
    /// report shortens its table.
    fn render_wide(&self, width: Width) -> String {
        self.render(width)
    }
}

/// Prints a report on stdout in the format asked for.
pub fn print_report<R: Render + Serialize>(report: &R, format: OutputFormat) -> Result<()> {
    match format {
        OutputFormat::Table => {
            print!("{}", report.render(Width::of_stdout()));
            Ok(())
        }
        OutputFormat::Wide => {
            print!("{}", report.render_wide(Width::of_stdout()));
            Ok(())
        }
        format => print_document(report, format),
    }
}

/// Prints a value as JSON or YAML on stdout.
pub fn print_document<T: Serialize>(value: &T, format: OutputFormat) -> Result<()> {
    let text = match format {
        OutputFormat::Yaml => to_yaml(value)?,
        _ => to_json(value)?,
    };
    print!("{text}");
    Ok(())
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
