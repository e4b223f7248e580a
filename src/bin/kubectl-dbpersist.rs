//! `kubectl dbpersist`: not implemented yet (issue #6). It parses the shared flags so
//! kubectl's pass-through works, and says so plainly.

use clap::Parser;
use kubectl_db::cli::{GlobalArgs, exit};

#[derive(Parser)]
#[command(
    name = "kubectl dbpersist",
    bin_name = "kubectl dbpersist",
    version,
    about = "Prove a database's data survives the death of its pod (not implemented yet)"
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
    eprintln!("error: kubectl dbpersist is not implemented yet");
    std::process::exit(exit::USAGE);
}
