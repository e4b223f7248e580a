//! Man pages generated from each plugin's clap definition: `kubectl-<plugin> __man` prints the
//! page of the plugin, `__man SUBCOMMAND` the page of a subcommand (`kubectl-dbdeploy-postgres`).
//! docs/man/ holds the output; tests/integration/man.rs keeps it current (`KDB_UPDATE_MAN=1`).

use clap::Command;

use crate::exit;

/// The first argument that makes a plugin print its man page (roff) instead of running.
pub const REQUEST: &str = "__man";

/// Call first in a plugin's `main`: on `<plugin> __man [SUBCOMMAND]` prints the man page and
/// exits; otherwise returns and the plugin runs normally.
pub fn hook(command: impl FnOnce() -> Command) {
    let mut args = std::env::args();
    let program = args.next().unwrap_or_default();
    if args.next().as_deref() != Some(REQUEST) {
        return;
    }
    let name = std::path::Path::new(&program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or(program);
    let mut command = command();
    command.build();
    let (command, name) = match args.next() {
        Some(sub) => match command.find_subcommand(&sub) {
            Some(found) => {
                let name = format!("{name}-{sub}");
                let page = found
                    .clone()
                    .display_name(name.clone())
                    .version(env!("CARGO_PKG_VERSION"));
                (page, name)
            }
            None => std::process::exit(exit::USAGE),
        },
        None => (command.display_name(name.clone()), name),
    };
    let code = match print(command, &name) {
        Ok(()) => exit::SUCCESS,
        Err(_) => exit::UNHEALTHY,
    };
    std::process::exit(code)
}

/// Writes the man page of a binary, generated from its clap definition, to stdout.
fn print(command: Command, name: &str) -> std::io::Result<()> {
    clap_mangen::Man::new(command)
        .title(name.to_uppercase())
        .section("1")
        .manual("kubectl-db")
        .render(&mut std::io::stdout().lock())
}
