//! `kubectl dbcheck`: not implemented yet (issue # health report and automatic diagnosis:4). It parses the shared flags so
//! kubectl's pass-through works, and says so plainly.

use clap::Parser;
use kubectl_db::cli::{GlobalArgs, exit};

#[derive(Parser)]
#[command(
    name = "kubectl dbcheck",
    bin_name = "kubectl dbcheck",
    version,
    about = "Diagnose a database (not implemented yet)"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    /// Arguments of the command
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn main() {
    let _cli = Cli::parse();
    eprintln!("error: kubectl dbcheck is not implemented yet");
    std::process::exit(exit::USAGE);
}
