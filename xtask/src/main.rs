//! Project automation, run as `cargo xtask <command>`.

mod bench;
mod crash;
mod fixtures;
mod python;
mod reliability;

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
  reliability [--long] [--seed N]
                    run the reliability suite (kills at every failpoint,
                    nested kills of the recovery, random kills, corruption,
                    file-system faults, races, the probe) and print its
                    summary table; --long is the release-check mode
                    (SYSDB_LONG=1), --seed repeats a run's random choices
  reliability --report
                    print the table of the last run (cargo test writes it)
  bench [--quick]   time each path of sysdb beside its baseline (raw DuckDB
                    open, cp + sync) at 16 MiB, 256 MiB and 1 GiB, 7
                    alternating repetitions, in the release profile; prints a
                    table and writes every sample to <target>/bench/latest.json.
                    --quick: 16 MiB, 3 repetitions, in the profile at hand; it
                    checks that the harness works, not the timings
  python [-- PYTEST_ARGS]
                    build the Python package's wheel (maturin, the dev
                    profile and this target folder: no second compile of
                    DuckDB), install it in a virtualenv made from
                    python/requirements/test.txt, and run python/tests with
                    pytest; the services run on that DuckDB and on those of
                    python/requirements/service-duckdb-*.txt. The virtualenvs
                    live in $SYSDB_VENVS (default <target>/python), made
                    again when their pins change
  help              print this help

Exit codes: 0 success; 1 a scenario could not be made, the pinned DuckDB no
longer reproduces a failure, fixtures/ is out of date, or the reliability
suite failed; 2 usage error.
";

/// The workspace's root folder.
fn root() -> camino::Utf8PathBuf {
    sysdb_scenarios::manifest_dir!().parent().map_or_else(
        || camino::Utf8PathBuf::from("."),
        camino::Utf8Path::to_owned,
    )
}

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
        ["reliability", "--report"] => reliability::report(),
        ["bench"] => bench::run(false),
        ["bench", "--quick"] => bench::run(true),
        [bench::PEAK_CHILD, rest @ ..] => bench::peak_child(rest),
        ["reliability", rest @ ..] => match rest {
            [] => reliability::run(false, None),
            ["--long"] => reliability::run(true, None),
            ["--seed", seed] => reliability::run(false, Some(seed)),
            ["--long", "--seed", seed] | ["--seed", seed, "--long"] => {
                reliability::run(true, Some(seed))
            }
            _ => {
                eprintln!("error: usage: cargo xtask reliability [--long] [--seed N] | --report");
                return ExitCode::from(2);
            }
        },
        // The child half of a scenario (a crash); see `crash.rs`.
        [crash::CHILD, rest @ ..] => crash::child(rest),
        ["python"] => python::run(&[]),
        ["python", "--", rest @ ..] => python::run(rest),
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
