//! Flags every binary shares (kubectl's global flags), output format, and the `main`
//! wrapper that turns a library result into one readable message and an exit code (the
//! codes themselves are in [`crate::exit`]).

use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;

use crate::error::Error;

/// The exit codes (defined in [`crate::exit`]), re-exported so binaries import them with
/// the other shared pieces.
pub use crate::exit;

/// Resolves when the process is asked to stop: SIGINT (Ctrl-C) or SIGTERM (`kill`, a CI
/// job's cancel, systemd, a Kubernetes Job's deletion). Long flows race their work
/// against it, so both signals end them the same way: cleaned up and reported. Returns the
/// signal's name. The handlers stay installed for the rest of the process, as tokio's do.
pub async fn interrupted() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            // No handler could be installed: the signals keep their default action (the
            // process dies), which is what happened before the flow started.
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(_) => std::future::pending().await,
        }
    }
}

/// kubectl's global flags. kubectl passes them through to plugins unparsed.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (only this file; no merging)
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<String>,
    /// The kubeconfig context to use
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The kubeconfig cluster to use
    #[arg(long, global = true, value_name = "NAME")]
    pub cluster: Option<String>,
    /// The kubeconfig user to use
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,
    /// Namespace (default: the context's namespace)
    #[arg(short, long, global = true, value_name = "NS")]
    pub namespace: Option<String>,
    /// Time limit for one API request, e.g. 30s, 1m; exec streams and watches may stay quiet longer (0 = the command's --timeout, at most 1m)
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration, default_value = "0")]
    pub request_timeout: Duration,
    /// Log API requests and timings to stderr (-vv for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No progress output
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Colour verdicts in tables: auto (on a terminal, unless NO_COLOR; CLICOLOR_FORCE forces), always, never
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "WHEN",
        default_value = "auto"
    )]
    pub color: crate::output::ColourChoice,
    /// The API server's address, instead of the kubeconfig cluster's (with --token, no kubeconfig is needed)
    #[arg(short = 's', long, global = true, value_name = "URL", help_heading = CONNECTION)]
    pub server: Option<String>,
    /// Bearer token for the API server, instead of the kubeconfig user's credentials
    #[arg(long, global = true, value_name = "TOKEN", value_parser = Token::parse, help_heading = CONNECTION)]
    pub token: Option<Token>,
    /// Certificate authority file that signed the API server's certificate
    #[arg(long, global = true, value_name = "FILE", help_heading = CONNECTION)]
    pub certificate_authority: Option<String>,
    /// Client certificate file for TLS authentication
    #[arg(long, global = true, value_name = "FILE", help_heading = CONNECTION)]
    pub client_certificate: Option<String>,
    /// Client key file for TLS authentication
    #[arg(long, global = true, value_name = "FILE", help_heading = CONNECTION)]
    pub client_key: Option<String>,
    /// Do not verify the API server's certificate (insecure: anyone on the path can read and change the traffic)
    #[arg(long, global = true, help_heading = CONNECTION)]
    pub insecure_skip_tls_verify: bool,
    /// Server name to check the API server's certificate against (default: the --server host)
    #[arg(long, global = true, value_name = "NAME", help_heading = CONNECTION)]
    pub tls_server_name: Option<String>,
    /// User to impersonate for the operation (a user or system:serviceaccount:NS:NAME)
    #[arg(long = "as", global = true, value_name = "USER", help_heading = CONNECTION)]
    pub as_user: Option<String>,
    /// Group to impersonate (repeatable); needs --as
    #[arg(long, global = true, value_name = "GROUP", help_heading = CONNECTION)]
    pub as_group: Vec<String>,
    /// UID to impersonate; needs --as
    #[arg(long, global = true, value_name = "UID", help_heading = CONNECTION)]
    pub as_uid: Option<String>,
}

/// The help section of kubectl's authentication and connection flags.
const CONNECTION: &str = "Authentication and connection";

/// A bearer token from `--token`: kept out of `Debug` output, so a logged `GlobalArgs`
/// never shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    fn parse(text: &str) -> Result<Token, String> {
        if text.is_empty() {
            return Err("empty token".into());
        }
        Ok(Token(text.to_string()))
    }

    /// The token itself, for the client's credentials only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl From<&str> for Token {
    fn from(text: &str) -> Token {
        Token(text.to_string())
    }
}

impl GlobalArgs {
    /// Whether live progress should be drawn: a terminal on stderr and not --quiet.
    pub fn show_progress(&self) -> bool {
        !self.quiet && std::io::stderr().is_terminal()
    }
}

/// How a command prints its report (`-o`), as kubectl takes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum OutputFormat {
    /// Human-readable table
    #[default]
    Table,
    /// The table with every column and detail
    Wide,
    /// Stable JSON for scripts, with `apiVersion` and `kind` (schemas in docs/schema/)
    Json,
    /// The same document as YAML
    Yaml,
    /// `kind/name` of each object the report is about, one a line
    Name,
    /// kubectl's JSONPath template over the JSON document
    JsonPath(crate::jsonpath::Template),
    /// The template's results as a JSON array
    JsonPathAsJson(crate::jsonpath::Template),
}

impl OutputFormat {
    /// Parses `-o`: `table`, `wide`, `json`, `yaml`, `name`, `jsonpath=TEMPLATE`,
    /// `jsonpath-as-json=TEMPLATE`; a bad template is refused here (exit 2).
    pub fn parse(text: &str) -> Result<OutputFormat, String> {
        let template = |t: &str| crate::jsonpath::Template::parse(t);
        Ok(match text {
            "table" => OutputFormat::Table,
            "wide" => OutputFormat::Wide,
            "json" => OutputFormat::Json,
            "yaml" => OutputFormat::Yaml,
            "name" => OutputFormat::Name,
            _ => match text.split_once('=') {
                Some(("jsonpath", t)) => OutputFormat::JsonPath(template(t)?),
                Some(("jsonpath-as-json", t)) => OutputFormat::JsonPathAsJson(template(t)?),
                _ if text.starts_with("jsonpath") => {
                    return Err(format!(
                        "{text:?}: a JSONPath output needs a template, e.g. -o jsonpath='{{.kind}}'"
                    ));
                }
                _ => {
                    return Err(format!(
                        "unknown output format {text:?}: use {}",
                        OutputParser::NAMES.join(", ")
                    ));
                }
            },
        })
    }

    /// Whether this prints the table for a person (`table` or `wide`).
    pub fn is_table(&self) -> bool {
        matches!(self, OutputFormat::Table | OutputFormat::Wide)
    }
}

/// clap's parser for `-o`, with the format names for help and completion.
#[derive(Debug, Clone, Copy)]
pub struct OutputParser;

impl OutputParser {
    const NAMES: [&str; 7] = [
        "table",
        "wide",
        "json",
        "yaml",
        "name",
        "jsonpath=",
        "jsonpath-as-json=",
    ];
}

impl clap::builder::TypedValueParser for OutputParser {
    type Value = OutputFormat;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<OutputFormat, clap::Error> {
        let text = value.to_string_lossy();
        OutputFormat::parse(&text).map_err(|message| {
            let arg = arg.map(|a| a.to_string()).unwrap_or_else(|| "-o".into());
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("invalid value for {arg}: {message}\n"),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            Self::NAMES
                .iter()
                .map(|n| clap::builder::PossibleValue::new(*n)),
        ))
    }
}

/// `-o/--output`, on every command that prints a report.
#[derive(Debug, Clone, Default, Args)]
pub struct OutputArgs {
    /// Output: table | wide | json | yaml | name | jsonpath=TEMPLATE | jsonpath-as-json=TEMPLATE
    #[arg(
        id = "output",
        short,
        long = "output",
        value_name = "OUTPUT",
        value_parser = OutputParser,
        default_value = "table",
        hide_possible_values = true
    )]
    pub format: OutputFormat,
}

/// The database a command works on: a target as kubectl writes one, or the one database a
/// label selector matches; and its container when the pod has several.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Pod or StatefulSet of the database: POD, pod/NAME or sts/NAME
    #[arg(value_parser = parse_target, required_unless_present = "selector")]
    pub target: Option<String>,
    /// Label selector: the one database it matches (several are refused)
    #[arg(short = 'l', long, value_name = "SELECTOR", conflicts_with = "target", value_parser = parse_selector)]
    pub selector: Option<String>,
    #[command(flatten)]
    pub container: ContainerArgs,
}

impl TargetArgs {
    /// The target to hand to a flow: as typed, or the one database `-l` matches.
    pub async fn one(&self, kube: &crate::client::Kube) -> Result<String, Error> {
        crate::target::named_or_selected(kube, self.target.as_deref(), self.selector.as_deref())
            .await
    }
}

/// `-c/--container`, where a pod may have several containers.
#[derive(Debug, Clone, Default, Args)]
pub struct ContainerArgs {
    /// The database container, when the pod has several (default: the one whose image, port or label says database)
    #[arg(short = 'c', long = "container", value_name = "NAME")]
    pub name: Option<String>,
}

/// A label selector as kubectl takes one (`app=mysql`, `tier in (db),env!=dev`); the API
/// server checks the syntax, this only refuses an empty one before any API call.
pub fn parse_selector(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("empty selector".into());
    }
    Ok(text.to_string())
}

pub use crate::target::parse_target;

/// `-A/--all-namespaces`, for commands that look at every database.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct AllNamespacesArgs {
    /// Every namespace instead of one
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// `completion SHELL`, the subcommand every plugin has.
#[derive(Debug, Clone, Args)]
pub struct CompletionArgs {
    #[arg(value_enum)]
    pub shell: Shell,
}

impl CompletionArgs {
    /// Prints the plugin's completion script on stdout.
    pub fn print(&self, mut command: clap::Command, bin_name: &str) {
        print_completion(&mut command, self.shell, bin_name);
    }
}

/// Parses kubectl-style durations: `30s`, `5m`, `1h`, `1m30s`, `250ms`, or bare seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    // Far beyond any real wait, and small enough that `Instant::now() + d` cannot overflow.
    const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let too_long = || format!("invalid duration {text:?}: too long (at most 100 years)");
    if let Ok(secs) = text.parse::<u64>() {
        let duration = Duration::from_secs(secs);
        return if duration > LONGEST {
            Err(too_long())
        } else {
            Ok(duration)
        };
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected e.g. 30s, 5m, 1h"
            ));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            other => return Err(format!("invalid duration {text:?}: unknown unit {other:?}")),
        };
        rest = &rest[unit_len..];
        total = Duration::try_from_secs_f64(seconds)
            .ok()
            .and_then(|d| total.checked_add(d))
            .filter(|d| *d <= LONGEST)
            .ok_or_else(too_long)?;
    }
    Ok(total)
}

/// Sets up what every binary shares from the global flags: logs ([`init_tracing`]) and
/// colour (`--color`).
pub fn init(global: &GlobalArgs) {
    init_tracing(global.verbose);
    crate::output::set_colour(global.color);
}

/// Sets up `tracing` on stderr: off by default, `-v` info for this crate, `-vv` debug, `-vvv` trace.
pub fn init_tracing(verbose: u8) {
    let filter = match verbose {
        0 => "off",
        1 => "kubectl_db=debug,kube=info",
        2 => "kubectl_db=trace,kube=debug",
        _ => "trace",
    };
    // kube logs each request's URL (a span field at debug); an exec's URL carries the
    // command, which for a pod's own probe may hold a literal password.
    let fields = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        match field.name() {
            "message" => write!(writer, "{text}"),
            "http.url" => write!(writer, "http.url={}", crate::exec::loggable_url(&text)),
            // Records of the `log` crate carry their origin; the default formatter hides it.
            name if name.starts_with("log.") => Ok(()),
            name => write!(writer, "{name}={text}"),
        }
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        // Through the progress display, so a log line never tears a spinner.
        .with_writer(crate::output::LogWriter)
        .with_target(false)
        .fmt_fields(tracing_subscriber::field::MakeExt::delimited(fields, " "))
        .try_init();
}

/// Prints an error as `error: a: b: c` plus a `hint:` line, and returns its exit code.
pub fn report_error(err: &Error) -> i32 {
    eprintln!("error: {}", err.chain());
    for line in err.details() {
        eprintln!("  {line}");
    }
    if let Some(hint) = err.hint() {
        eprintln!("hint: {hint}");
    }
    err.exit_code()
}

/// Runs a binary's async body on a tokio runtime and exits with the right code.
///
/// One thread runs every task: the commands wait on the network, and the work that needs a
/// CPU (compressing, hashing, reading files) runs on threads of its own (`spawn_blocking`,
/// the dump pipeline). Worker threads would each add a stack and a malloc arena to the
/// peak RSS (issue #18: 16 MiB) for no measured gain in throughput (docs/dbbackup.md).
pub fn run_main<F, Fut>(body: F) -> !
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<i32, Error>>,
{
    let code = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => match runtime.block_on(body()) {
            Ok(code) => code,
            Err(err) => report_error(&err),
        },
        Err(err) => {
            eprintln!("error: failed to start the async runtime: {err}");
            exit::CLUSTER
        }
    };
    std::process::exit(code)
}

/// Shells `completion` can generate scripts for.
pub use clap_complete::Shell;

/// Writes a completion script for a binary to stdout.
pub fn print_completion(command: &mut clap::Command, shell: Shell, bin_name: &str) {
    if shell != Shell::Bash || !bin_name.contains('-') {
        clap_complete::generate(shell, command, bin_name, &mut std::io::stdout());
        return;
    }
    // clap_complete's bash script completes nothing after a subcommand when the binary's
    // name has a '-' (https://github.com/clap-rs/clap/issues/6421): generate it for a name
    // without one and register it for the real name.
    let plain = bin_name.replace('-', "_");
    let mut script = Vec::new();
    clap_complete::generate(shell, command, &plain, &mut script);
    let script =
        String::from_utf8_lossy(&script).replace(&format!(" {plain}\n"), &format!(" {bin_name}\n"));
    print!("{script}");
}

/// Asks the user to type `expected` to confirm a destructive step. Refuses (exit 2) when
/// there is no terminal to ask on: scripts must pass `--yes`.
pub fn confirm(question: &str, expected: &str) -> Result<(), Error> {
    use std::io::{BufRead, Write};
    if !std::io::stdin().is_terminal() {
        return Err(Error::Refused(format!(
            "{question}: no terminal to confirm on; pass --yes to confirm in scripts"
        )));
    }
    eprint!("{question}\nType {expected:?} to confirm: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|source| Error::Io {
            action: "read",
            path: "stdin".into(),
            source,
        })?;
    if answer.trim() == expected {
        Ok(())
    } else {
        Err(Error::Refused("not confirmed; nothing was changed".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_kubectl() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("12"), Ok(Duration::from_secs(12)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5200000000000000h").is_err());
        assert!(parse_duration("99999999999999999999h99999999999999999999h").is_err());
        assert!(parse_duration("18446744073709551615").is_err());
        assert!(parse_duration("876000h").is_ok());
    }
}
