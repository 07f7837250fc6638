//! `sysdb migrate`, `recover`, `snapshot` and `quarantine`: the commands
//! that act.

use std::fmt::Write as _;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use clap::{ArgGroup, Args, Subcommand};
use serde::Serialize;
use sysdb::{Connector, OpenOptions, Paths, SystemDb};

use crate::error::Error;
use crate::global::{open_read_only, read_version, ProbeArgs};
use crate::out::{bytes, confirm, emit, progress_bars};
use crate::Global;

/// How long commands that act wait for the open lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// `sysdb migrate`.
/// `sysdb migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    probe: ProbeArgs,
    /// Migrate even though steps already applied have changed since
    /// (drift): the database keeps what the old text of those steps did
    #[arg(long)]
    accept_drift: bool,
    /// How long to wait for another process that holds the open lock
    /// (`system.duckdb.lock`) before failing with exit code 3
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    lock_wait: Duration,
    /// Run under the open lock of the process that started this one, when
    /// that process holds it, instead of waiting for it: for a service that
    /// takes the lock itself and opens the database after `migrate`, under
    /// the same lock (the Python package's `connect`); taken as usual when
    /// no such process holds it
    #[arg(long)]
    inherit_lock: bool,
}

pub fn migrate(global: &Global, args: &MigrateArgs) -> Result<u8, Error> {
    let paths = global.paths()?;
    let ladder = global.require_ladder()?;
    let probe = args.probe.probe(global)?;
    let options = OpenOptions::default()
        .lock_wait(args.lock_wait)
        .inherit_lock(args.inherit_lock)
        .probe(probe)
        .accept_drift(args.accept_drift)
        .storage_version(global.storage_version())
        .progress(progress_bars());
    let db = SystemDb::open_with(&paths, &ladder, &options, &global.connector())?;
    emit(global, db.report(), |r| r.to_string());
    Ok(0)
}

/// `sysdb probe-open`.
pub fn probe_open(global: &Global, file: &Utf8Path) -> Result<u8, Error> {
    sysdb::probe_open_with(file, LOCK_WAIT, &global.connector())?;
    Ok(0)
}

/// `sysdb recover`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["from_snapshot", "drop_wal"])))]
pub struct RecoverArgs {
    /// Restore the pre-migrate snapshot: every write made after it is lost
    #[arg(long)]
    from_snapshot: bool,
    /// Restore the database file at its last checkpoint: the commits in its
    /// write-ahead log are lost (they stay in quarantine)
    #[arg(long)]
    drop_wal: bool,
    /// Do not ask for confirmation
    #[arg(long, short)]
    yes: bool,
}

#[derive(Debug, Serialize)]
struct Recovered {
    #[serde(flatten)]
    done: sysdb::by_hand::ByHand,
    version: Option<u32>,
}

/// `sysdb recover --from-snapshot | --drop-wal`.
pub fn recover(global: &Global, args: &RecoverArgs) -> Result<u8, Error> {
    let paths = global.paths()?;
    let (source, plan) = if args.from_snapshot {
        let Some(snapshot) = sysdb::by_hand::HandSource::newest_snapshot(&paths) else {
            return Err(Error::Refused(format!(
                "there is no snapshot at {}; see `sysdb quarantine list` for the files set aside earlier",
                paths.snapshot()
            )));
        };
        let plan = format!(
            "set aside {} and its sidecars, then restore the snapshot {snapshot}; every write made after the snapshot is lost",
            paths.db(),
        );
        (sysdb::by_hand::HandSource::Snapshot(snapshot), plan)
    } else {
        // Asked before the question and the lock; the library refuses it
        // too.
        sysdb::by_hand::HandSource::LastCheckpoint.require(&paths)?;
        let plan = format!(
            "set aside {} and its sidecars, then restore the database file at its last checkpoint; the commits in its write-ahead log are lost",
            paths.db()
        );
        (sysdb::by_hand::HandSource::LastCheckpoint, plan)
    };
    if !args.yes && !confirm(&format!("sysdb recover will {plan}. Go on?")) {
        return Err(Error::Usage(format!(
            "not confirmed: sysdb recover would {plan}; pass --yes to go on without a question"
        )));
    }
    let lock = sysdb::by_hand::lock(&paths, LOCK_WAIT)?;
    let done = sysdb::by_hand::recover(&paths, &lock, &source, &progress_bars())?;
    let conn = global
        .connector()
        .connect(paths.db())
        .map_err(Error::duck("opening the restored", paths.db()))?;
    let recovered = Recovered {
        version: read_version(&conn),
        done,
    };
    drop(conn);
    emit(global, &recovered, |r| {
        let mut out = String::new();
        for m in &r.done.set_aside {
            let _ = writeln!(out, "set aside {} -> {} ({})", m.from, m.to, bytes(m.bytes));
        }
        let _ = writeln!(
            out,
            "restored {} from {} ({}), schema version {}",
            paths.db(),
            r.done.restored_from,
            bytes(r.done.restored_bytes),
            r.version.map_or("unknown".to_owned(), |v| v.to_string())
        );
        let _ = writeln!(out, "next: `sysdb migrate` brings it to the ladder's top");
        out
    });
    Ok(0)
}

/// `sysdb snapshot …`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take the pre-migrate snapshot of the closed database now
    #[command(after_help = crate::EXIT_CODES)]
    Take,
    /// Open the snapshot read-only and report its schema version
    #[command(after_help = crate::EXIT_CODES)]
    Verify,
}

#[derive(Debug, Serialize)]
struct SnapshotReport {
    path: Utf8PathBuf,
    bytes: u64,
    version: Option<u32>,
}

/// `sysdb snapshot take | verify`.
pub fn snapshot(global: &Global, cmd: &SnapshotCommand) -> Result<u8, Error> {
    let paths = global.paths()?;
    let report = match cmd {
        SnapshotCommand::Take => {
            // Asked before the lock, whose file (and folder) a refusal
            // should not make; the library refuses it too.
            sysdb::by_hand::snapshot_possible(&paths)?;
            let lock = sysdb::by_hand::lock(&paths, LOCK_WAIT)?;
            let taken =
                sysdb::by_hand::snapshot(&paths, &lock, &global.connector(), &progress_bars())?;
            SnapshotReport {
                version: open_read_only(global, &taken.to)
                    .ok()
                    .and_then(|c| read_version(&c)),
                path: taken.to,
                bytes: taken.bytes,
            }
        }
        SnapshotCommand::Verify => {
            let path = paths.snapshot();
            let bytes = fs_err::metadata(&path)
                .map_err(Error::io("reading", &path))?
                .len();
            let conn = open_read_only(global, &path)
                .map_err(Error::duck("opening the snapshot", &path))?;
            SnapshotReport {
                version: read_version(&conn),
                path,
                bytes,
            }
        }
    };
    emit(global, &report, |r| {
        format!(
            "snapshot {} ({}), schema version {}\n",
            r.path,
            bytes(r.bytes),
            r.version.map_or("unknown".to_owned(), |v| v.to_string())
        )
    });
    Ok(0)
}

/// `sysdb quarantine …`.
#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// List the sets of files set aside, newest first
    #[command(after_help = crate::EXIT_CODES)]
    List,
    /// Delete all but the newest N sets (the only command that deletes)
    #[command(after_help = crate::EXIT_CODES)]
    Prune {
        /// How many of the newest sets to keep
        #[arg(long, value_name = "N")]
        keep: usize,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Serialize)]
struct SetReport {
    id: String,
    bytes: u64,
    files: Vec<Utf8PathBuf>,
}

/// `sysdb quarantine list | prune --keep N`.
pub fn quarantine(global: &Global, cmd: &QuarantineCommand) -> Result<u8, Error> {
    let paths: Paths = global.paths()?;
    let (sets, verb) = match cmd {
        QuarantineCommand::List => (sysdb_snapshot::list(paths.files())?, "set"),
        QuarantineCommand::Prune { keep, yes } => {
            let _lock = sysdb::by_hand::lock(&paths, LOCK_WAIT)?;
            // Asked before the question; the prune refuses it too.
            sysdb_snapshot::prune_possible(paths.files())?;
            let doomed: Vec<_> = sysdb_snapshot::list(paths.files())?
                .into_iter()
                .skip(*keep)
                .collect();
            if !doomed.is_empty() {
                let total: u64 = doomed
                    .iter()
                    .map(sysdb_snapshot::QuarantineSet::bytes)
                    .sum();
                let plan = format!(
                    "delete {} quarantine set(s) beside {} ({}), oldest {}",
                    doomed.len(),
                    paths.db(),
                    bytes(total),
                    doomed.last().map_or("", |s| s.id.as_str())
                );
                if !yes && !confirm(&format!("sysdb quarantine prune will {plan}. Go on?")) {
                    return Err(Error::Usage(format!(
                        "not confirmed: sysdb quarantine prune would {plan}; pass --yes to go on without a question"
                    )));
                }
            }
            (sysdb_snapshot::prune(paths.files(), *keep)?, "deleted")
        }
    };
    let report: Vec<SetReport> = sets
        .into_iter()
        .map(|s| SetReport {
            id: s.id.clone(),
            bytes: s.bytes(),
            files: s.files.into_iter().map(|(p, _)| p).collect(),
        })
        .collect();
    emit(global, &report, |sets| {
        let mut out = String::new();
        if sets.is_empty() {
            let _ = writeln!(out, "no quarantine sets beside {}", paths.db());
        }
        for s in sets {
            let _ = writeln!(out, "{verb} {} ({}):", s.id, bytes(s.bytes));
            for f in &s.files {
                let _ = writeln!(out, "  {f}");
            }
        }
        out
    });
    Ok(0)
}

#[derive(Debug, Serialize)]
struct NewMigration {
    path: Utf8PathBuf,
    version: u32,
}

/// `sysdb new NAME`.
pub fn new_migration(global: &Global, name: &str) -> Result<u8, Error> {
    let dir = global.require_migrations()?;
    fs_err::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    let ladder = sysdb::Ladder::from_dir(dir)?;
    let path = dir.join(ladder.next_file_name(name)?);
    fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(Error::io("creating", &path))?;
    let made = NewMigration {
        path,
        version: ladder.top() + 1,
    };
    emit(global, &made, |m| {
        format!(
            "created {} (version {}): write the step's SQL in it\n",
            m.path, m.version
        )
    });
    Ok(0)
}
