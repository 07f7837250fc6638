//! Project automation, run as `cargo xtask <command>`.
//!
//! Commands come with the issues that need them; with no command this prints
//! the list.

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask: project automation for sysdb

Usage: cargo xtask <command>

Commands:
  help    print this help

Exit codes: 0 success, 2 usage error.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("help" | "--help" | "-h") => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("error: unknown command `{other}`\n\n{HELP}");
            ExitCode::from(2)
        }
    }
}
