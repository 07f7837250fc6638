//! Project automation, run as `cargo xtask <command>`.

mod crash;
mod fixtures;
mod sqlite;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask: project automation for sysdb

Usage: cargo xtask <command>

Commands:
  fixtures          regenerate fixtures/: one folder per scenario, each the
                    state folder a real crash (or real damage) left, with a
                    manifest of how it was made and what SystemDb::open must do
  fixtures --check  regenerate into a temporary folder and compare the
                    manifests with fixtures/ (DuckDB files are not
                    byte-reproducible, so only manifests are compared)
  help              print this help

Exit codes: 0 success; 1 a scenario could not be made, the pinned DuckDB no
longer reproduces a failure, or fixtures/ is out of date; 2 usage error.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        [] | ["help" | "--help" | "-h"] => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        ["fixtures"] => fixtures::generate(),
        ["fixtures", "--check"] => fixtures::check(),
        // The child half of a crash; see `crash.rs`.
        [crash::CHILD, rest @ ..] => crash::child(rest),
        _ => {
            eprintln!("error: unknown command `{}`\n\n{HELP}", args.join(" "));
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
