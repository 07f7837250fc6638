//! `sysdb`: the operator's command for a service's DuckDB system database.

mod commands;
mod drill;
mod error;
mod inspect;
mod out;

use std::process::ExitCode;

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand};

use crate::error::Error;

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

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The service's data folder; the database is `DIR/state/system.duckdb`
    #[arg(long, global = true, value_name = "DIR", env = "DATA_DIR")]
    data_dir: Option<Utf8PathBuf>,
    /// The database file itself; wins over --data-dir and DATA_DIR, so it
    /// works inside the service's container, where DATA_DIR is set
    #[arg(long, global = true, value_name = "FILE")]
    db: Option<Utf8PathBuf>,
    /// The folder of migrations, `NNNN_name.sql` files
    #[arg(long, global = true, value_name = "DIR")]
    migrations: Option<Utf8PathBuf>,
    /// The storage version a new database is created with (DuckDB's
    /// STORAGE_VERSION: v1.4.0, v1.5.0, latest, …): the oldest DuckDB that
    /// can read the file. An existing file keeps its own [default: v1.4.0]
    #[arg(long, global = true, value_name = "VERSION", env = "SYSDB_STORAGE_VERSION", value_parser = storage_version)]
    storage_version: Option<sysdb::StorageVersion>,
    /// A DuckDB setting (NAME=VALUE: memory_limit=2GB, temp_directory=/tmp,
    /// threads=2, TimeZone=Europe/Berlin) for every connection sysdb makes,
    /// the probe child's and the replaying DuckDB's included (give the
    /// service's own TimeZone: a replayed TIMESTAMPTZ cast is evaluated in
    /// it); repeat for more, or list them in SYSDB_DUCKDB_SETTINGS
    /// separated by commas
    #[arg(long = "duckdb-setting", global = true, value_name = "NAME=VALUE", env = "SYSDB_DUCKDB_SETTINGS", value_delimiter = ',', value_parser = setting)]
    duckdb_settings: Vec<(String, String)>,
    /// Print JSON for machines instead of text: one object per line
    #[arg(long, global = true)]
    json: bool,
    /// Log more of what happens, on stderr: -v what each step does, -vv
    /// and -vvv the details (RUST_LOG, when set, chooses instead)
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Print only errors on stderr: no warnings, no progress
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    quiet: bool,
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

fn setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!(
            "expected NAME=VALUE, as memory_limit=2GB, not {text:?}"
        )),
    }
}

fn storage_version(text: &str) -> Result<sysdb::StorageVersion, String> {
    sysdb::StorageVersion::new(text).map_err(|e| e.to_string())
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
                });
                println!("{value}");
            } else {
                eprintln!("error: {e}");
                for cause in &chain[1..] {
                    eprintln!("caused by: {cause}");
                }
                if let Some(hint) = e.hint(paths.as_ref()).filter(|_| hints) {
                    eprintln!("hint: {hint}");
                }
            }
            ExitCode::from(e.exit_code())
        }
    }
}

impl Global {
    /// The database's paths.
    pub fn paths(&self) -> Result<sysdb::Paths, Error> {
        match (&self.db, &self.data_dir) {
            (Some(db), _) => Ok(sysdb::Paths::for_db(db.clone())?),
            (None, Some(dir)) => Ok(sysdb::Paths::from_data_dir(dir)?),
            (None, None) => Err(Error::Usage(
                "no database named: pass --data-dir DIR (or set DATA_DIR) or --db FILE".to_owned(),
            )),
        }
    }

    /// The ladder, when --migrations names one.
    pub fn ladder(&self) -> Result<Option<sysdb::Ladder>, Error> {
        self.migrations
            .as_ref()
            .map(|dir| sysdb::Ladder::from_dir(dir).map_err(Error::from))
            .transpose()
    }

    /// The migrations folder, which this command needs.
    pub fn require_migrations(&self) -> Result<&camino::Utf8Path, Error> {
        self.migrations.as_deref().ok_or_else(|| {
            Error::Usage(
                "this command needs the migrations: pass --migrations DIR (a folder of NNNN_name.sql files)"
                    .to_owned(),
            )
        })
    }

    /// The ladder, which this command needs.
    pub fn require_ladder(&self) -> Result<sysdb::Ladder, Error> {
        Ok(sysdb::Ladder::from_dir(self.require_migrations()?)?)
    }

    /// The connector every connection goes through: DuckDB with the
    /// --duckdb-setting settings.
    pub fn connector(&self) -> sysdb::DuckDbSettings {
        sysdb::DuckDbSettings::new(self.duckdb_settings.iter().cloned())
    }

    /// The arguments that give a child `sysdb` the same settings.
    pub fn setting_args(&self) -> Vec<String> {
        self.duckdb_settings
            .iter()
            .flat_map(|(k, v)| ["--duckdb-setting".to_owned(), format!("{k}={v}")])
            .collect()
    }

    /// The storage version new databases get.
    pub fn storage_version(&self) -> sysdb::StorageVersion {
        self.storage_version.clone().unwrap_or_default()
    }

    /// Whether output is JSON.
    pub fn json(&self) -> bool {
        self.json
    }
}
