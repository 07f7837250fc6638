//! `cargo xtask reliability`: run the reliability suite (tests/, module
//! `reliability`) and print its summary table.

use std::process::Command;

use sysdb_scenarios::{reliability_dir, table, Tally};

/// Run the suite (`long`: the long mode), then print the table.
pub fn run(long: bool, seed: Option<&str>) -> Result<(), String> {
    let dir = reliability_dir();
    if dir.exists() {
        fs_err::remove_dir_all(&dir).map_err(|e| e.to_string())?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.args([
        "test",
        "--locked",
        "-p",
        "sysdb-tests",
        "--test",
        "it",
        "reliability::",
    ]);
    if long {
        command.env("SYSDB_LONG", "1");
    }
    if let Some(seed) = seed {
        command.env("SYSDB_SEED", seed);
    }
    eprintln!(
        "running the reliability suite ({} mode); this takes {}",
        if long { "long" } else { "default" },
        if long {
            "an hour or more"
        } else {
            "a few minutes"
        }
    );
    let status = command.status().map_err(|e| format!("cargo test: {e}"))?;
    let printed = report();
    if !status.success() {
        return Err(format!("the reliability suite failed ({status})"));
    }
    printed
}

/// Print the table of the tallies the last run wrote.
pub fn report() -> Result<(), String> {
    let dir = reliability_dir();
    let mut tallies = Vec::new();
    let entries = fs_err::read_dir(&dir).map_err(|e| {
        format!("{e}; run the tests first (`cargo test --workspace` or `cargo xtask reliability`)")
    })?;
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for path in paths {
        let text = fs_err::read_to_string(&path).map_err(|e| e.to_string())?;
        let tally: Tally =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        tallies.push(tally);
    }
    if tallies.is_empty() {
        return Err(format!("no tallies in {dir}; run the tests first"));
    }
    println!("{}", table(&tallies));
    let failures: usize = tallies.iter().map(|t| t.failures.len()).sum();
    match failures {
        0 => Ok(()),
        n => Err(format!("{n} failure(s) in the reliability suite")),
    }
}
