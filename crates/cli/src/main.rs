//! `sysdb`: the operator's command for a service's DuckDB system database.

mod commands;
mod drill;
mod error;
mod global;
mod inspect;
mod out;

use std::process::ExitCode;

use camino::Utf8PathBuf;
use clap::{Parser, Subcommand};

pub use crate::global::Global;

pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0   success; for `check`: healthy, nothing to do
  1   the command failed (the message names the path and the next step)
  2   usage error, or a confirmation was refused
  3   another process holds the database (its pid is named)
  10  check: the open would run migrations
  11  check: the open would recover (set files aside and restore)
  12  check: the open would refuse; an operator must act";

/// Inspect, migrate and recover a service's DuckDB system database.
///
/// The database is `$DATA_DIR/state/system.duckdb` unless `--data-dir` or
/// `--db` says otherwise. Nothing is ever deleted: files set aside go to
/// `system.duckdb.broken.<UTC stamp>*` beside the database.
#[derive(Debug, Parser)]
#[command(name = "sysdb", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Logs on stderr: RUST_LOG when set, else warnings, more with -v, only
/// errors with -q (and by default for `check` and `probe-open`). On a
/// terminal the progress bars show the long steps.
fn init_logs(global: &Global, command: &Command) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    // `check` runs the open on a copy and says what happened in its own
    // words; the probe's parent reports how its child ended.
    let own_words = matches!(command, Command::Check(_) | Command::ProbeOpen { .. });
    let level = match global.verbose {
        _ if global.quiet => "error",
        0 if own_words => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::out::LogWriter)
        .with_target(global.verbose >= 2)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the files, the snapshot, the intent marker, quarantine, the lock
    /// holder and the schema version; changes no file
    #[command(after_help = EXIT_CODES)]
    Status,
    /// Say what `migrate` would do, and what it would lose, by running it on
    /// a copy of the files in a temporary folder; changes no file
    #[command(after_help = EXIT_CODES)]
    Check(inspect::CheckArgs),
    /// Open the database the way the service does: recover if it may,
    /// migrate to the top of --migrations, and print the report
    #[command(after_help = EXIT_CODES)]
    Migrate(commands::MigrateArgs),
    /// Recover by hand where `migrate` refuses: set the database and its
    /// sidecars aside, then restore
    #[command(after_help = EXIT_CODES)]
    Recover(commands::RecoverArgs),
    /// Take or verify the pre-migrate snapshot
    #[command(subcommand, after_help = EXIT_CODES)]
    Snapshot(commands::SnapshotCommand),
    /// List or prune the sets of files set aside
    #[command(subcommand, after_help = EXIT_CODES)]
    Quarantine(commands::QuarantineCommand),
    /// Create the next migration file, `NNNN_NAME.sql` (empty), in
    /// --migrations, and print its path
    #[command(after_help = EXIT_CODES)]
    New {
        /// The step's name: letters, digits and `_`
        name: String,
    },
    /// Demonstrate (and test) the crash and the recovery in a scratch folder
    #[command(after_help = EXIT_CODES)]
    Drill(drill::DrillArgs),
    /// Open FILE with DuckDB and close it, replaying its write-ahead log:
    /// the child `migrate --probe` runs (by hand, it takes the open lock
    /// first). Exit 0 when it opened, 1 with DuckDB's error, 3 when another
    /// process holds the lock; a replay that aborts kills only this process
    #[command(after_help = EXIT_CODES)]
    ProbeOpen {
        /// The database file
        file: Utf8PathBuf,
    },
    /// The child process of the drill (internal)
    #[command(hide = true)]
    DrillChild {
        /// What the child does (`sysdb_scenarios::child::child_main`)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::out::QUIET.store(cli.global.quiet, std::sync::atomic::Ordering::Relaxed);
    init_logs(&cli.global, &cli.command);
    let hints = !matches!(cli.command, Command::ProbeOpen { .. });
    let json = cli.global.json;
    let paths = cli.global.paths().ok();
    let result = match cli.command {
        Command::Status => inspect::status(&cli.global),
        Command::Check(args) => inspect::check(&cli.global, &args),
        Command::Migrate(args) => commands::migrate(&cli.global, &args),
        Command::ProbeOpen { file } => commands::probe_open(&cli.global, &file),
        Command::Recover(args) => commands::recover(&cli.global, &args),
        Command::Snapshot(cmd) => commands::snapshot(&cli.global, &cmd),
        Command::Quarantine(cmd) => commands::quarantine(&cli.global, &cmd),
        Command::New { name } => commands::new_migration(&cli.global, &name),
        Command::Drill(args) => drill::run(&cli.global, &args),
        Command::DrillChild { args } => drill::child(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let chain = sysdb::error_chain(&e);
            if json {
                let value = serde_json::json!({
                    "error": e.to_string(),
                    "caused_by": &chain[1..],
                    "hint": e.hint(paths.as_ref()),
                    "exit_code": e.exit_code(),
                    "holder_pid": e.holder_pid(),
                    "code": e.code(),
                    "report": e.report(),
                });
                println!("{value}");
            } else {
                eprintln!("error: {e}");
                for cause in &chain[1..] {
                    eprintln!("caused by: {cause}");
                }
                if let Some(report) = e.report() {
                    eprintln!("done before the error:");
                    for line in report.to_string().lines() {
                        eprintln!("  {line}");
                    }
                }
                if let Some(hint) = e.hint(paths.as_ref()).filter(|_| hints) {
                    eprintln!("hint: {hint}");
                }
            }
            ExitCode::from(e.exit_code())
        }
    }
}
