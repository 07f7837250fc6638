//! The system database a service opens: at the current schema version, and
//! brought back by itself after a crash in the middle of a migration.
//!
//! [`SystemDb::open`] is the whole flow:
//!
//! 1. take the advisory lock `system.duckdb.lock`, so two processes never
//!    recover or migrate at once;
//! 2. connect (first in a child process, with [`OpenOptions::probe`]); if
//!    DuckDB cannot replay the write-ahead log and a pre-migrate snapshot
//!    exists, replay the log on copies in `system.duckdb.replay/` (the
//!    whole log through ATTACH, else the longest prefix that replays, cut
//!    at a commit), then set the database and every sidecar aside (by
//!    rename, never deleting) and put in place the replayed copy, or else
//!    the database file at its last checkpoint (or, only if that file is
//!    unreadable, the snapshot), and connect again. A failure of the
//!    environment, or any other failure, is returned unchanged, and no file
//!    is touched;
//! 3. if steps are pending: checkpoint and close; copy the database under
//!    a temporary name beside the snapshot while reading it once more for
//!    its XXH3-128 digest and DuckDB's own block checksums; where those do
//!    not vouch for every block, read every table whole through DuckDB (a
//!    damaged block the open did not read refuses the window, so the
//!    snapshot is never replaced with a copy of it); keep the snapshot
//!    being replaced as `system.duckdb.pre-migrate.previous`, put the copy
//!    in place as the pre-migrate snapshot, write the intent marker
//!    `system.duckdb.migrating` naming it (file name, size and digest),
//!    reopen, apply each step with a checkpoint after it, check that no
//!    write-ahead log remains, and remove the marker and the previous
//!    snapshot. A window an earlier open left open (its marker still there)
//!    is resumed with the snapshot it took. Nothing pending means no
//!    snapshot.
//!
//! What happened is in the [`OpenReport`].
//!
//! A recovery writes the recovery marker `system.duckdb.recovering` before
//! it sets the first file aside and removes it once the restored database
//! opens, so a recovery that is itself killed is finished by the next open.
//!
//! # Failpoints
//!
//! Built with the `failpoints` feature, the flow stops at named points (the
//! `fail` crate) where a test can kill the process or inject an error:
//! [`FAILPOINTS`] lists this crate's, in the order an open meets them;
//! `sysdb_snapshot::FAILPOINTS` and `sysdb_schema::FAILPOINTS` list those of
//! the file operations and of the ladder. Without the feature they compile
//! to nothing.

mod blocks;
mod connect;
mod folder;
mod lock;
mod marker;
mod paths;
mod plan;
mod probe;
mod progress;
mod recover;
mod replay;
mod report;
mod wal;
mod window;

use std::time::{Duration, Instant};

use camino::Utf8PathBuf;
use duckdb::Connection;
use sysdb_snapshot::ClosedDb;

pub use connect::{
    config, storage_version_of, Connector, DuckDbConnector, DuckDbSettings, StorageVersion,
};
pub use folder::{preflight, recovery_space};
pub use lock::OpenLock;
pub use marker::{sha256_file, Marker, Recovering};
pub use paths::{Paths, DATA_DIR_ENV};
pub use probe::{probe_open, probe_open_with, Probe};
pub use progress::{Progress, ProgressHook, Task, Unit};
pub use recover::{recover_by_hand, ByHand, HandSource};
pub use report::{
    FailedCommit, LogKept, MetError, Migration, MovedFile, OpenReport, Phase, ProbeOutcome,
    Reapplied, RestoreSource, Restored, StepRun,
};
pub use window::snapshot_now;

/// This crate's failpoints, in the order an open meets them:
///
/// - `sysdb::open::locked`: the open lock is held, nothing else done;
/// - `sysdb::open::connected`: the first connect returned (either way);
/// - `sysdb::recover::replayed`: the whole log was replayed on a copy
///   (either way), nothing moved;
/// - `sysdb::recover::probed`: one read-only replay of a cut copy of the
///   log returned (either way), nothing moved;
/// - `sysdb::recover::marked`: the recovery marker is written, no file
///   set aside yet;
/// - `sysdb::recover::restored`: a copy is restored, not yet opened;
/// - `sysdb::recover::reconnected`: it opened, the recovery marker is
///   still there;
/// - `sysdb::window::checkpointed`: checkpointed before the snapshot, the
///   connection still open (also in [`snapshot_now`]);
/// - `sysdb::window::snapshotted`: the snapshot is in place, the intent
///   marker not yet written (also in [`snapshot_now`]);
/// - `sysdb::window::marked`: the intent marker is written, the database
///   not yet reopened;
/// - `sysdb::window::applied`: every step applied and checkpointed, the
///   intent marker still there;
/// - `sysdb::open::done`: the open is complete;
/// - `sysdb::recover::by_hand::set_aside`: a recovery by hand
///   ([`recover_by_hand`]) set the files aside and has not restored.
pub const FAILPOINTS: [&str; 13] = [
    "sysdb::open::locked",
    "sysdb::open::connected",
    "sysdb::recover::replayed",
    "sysdb::recover::probed",
    "sysdb::recover::marked",
    "sysdb::recover::restored",
    "sysdb::recover::reconnected",
    "sysdb::window::checkpointed",
    "sysdb::window::snapshotted",
    "sysdb::window::marked",
    "sysdb::window::applied",
    "sysdb::open::done",
    "sysdb::recover::by_hand::set_aside",
];
pub use duckdb;
pub use sysdb_errclass::ErrorClass;
pub use sysdb_schema::{embed_migrations, Ladder};

/// README's examples, compiled as tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// How [`SystemDb::open`] behaves where a service may want a choice. Made
/// with [`OpenOptions::default`] and the builder methods, so that a new
/// option is not a breaking change:
///
/// ```
/// use std::time::Duration;
///
/// let options = sysdb::OpenOptions::default()
///     .lock_wait(Duration::from_secs(5))
///     .strict_snapshot(true)
///     .storage_version(sysdb::StorageVersion::new("v1.5.0").expect("a version DuckDB knows"));
/// assert_eq!(options.lock_wait, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenOptions {
    /// How long to wait for another process that holds the open lock.
    pub lock_wait: Duration,
    /// Restore the pre-migrate snapshot automatically only when the intent
    /// marker shows a migration was in flight. Without the marker an
    /// unreadable database file is then an error for an operator, instead of
    /// being replaced by a snapshot that may be weeks old.
    pub strict_snapshot: bool,
    /// Migrate even though applied steps changed since (drift).
    pub accept_drift: bool,
    /// Make the first open of a folder that has a write-ahead log in a
    /// short-lived child process, so that a replay that aborts the process
    /// takes down the child and not the service. A child killed by a
    /// signal counts as a replay failure and is recovered from like one.
    pub probe: Option<Probe>,
    /// The storage version a new database is created with; an existing
    /// file keeps its own.
    pub storage_version: StorageVersion,
    /// Where the progress of the open's long tasks goes (checkpoint, whole
    /// read, snapshot, steps, replays, salvage, restore): nowhere by
    /// default.
    pub progress: ProgressHook,
    /// Run under the open lock of the process that started this one
    /// (directly or not) when that process holds it, instead of waiting
    /// for it: for a service that takes `system.duckdb.lock` itself, runs
    /// the open in a child (`sysdb migrate --inherit-lock`, as the Python
    /// package does), and opens the database once the child is done, under
    /// the same lock. The holder must keep the lock until the child ends.
    /// Where no ancestor holds it, the lock is taken as usual.
    pub inherit_lock: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            lock_wait: Duration::from_secs(30),
            strict_snapshot: false,
            accept_drift: false,
            probe: None,
            storage_version: StorageVersion::default(),
            progress: ProgressHook::none(),
            inherit_lock: false,
        }
    }
}

impl OpenOptions {
    /// See [`OpenOptions::lock_wait`](#structfield.lock_wait).
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// See [`OpenOptions::strict_snapshot`](#structfield.strict_snapshot).
    pub fn strict_snapshot(mut self, strict: bool) -> Self {
        self.strict_snapshot = strict;
        self
    }

    /// See [`OpenOptions::accept_drift`](#structfield.accept_drift).
    pub fn accept_drift(mut self, accept: bool) -> Self {
        self.accept_drift = accept;
        self
    }

    /// See [`OpenOptions::probe`](#structfield.probe).
    pub fn probe(mut self, probe: Option<Probe>) -> Self {
        self.probe = probe;
        self
    }

    /// See [`OpenOptions::storage_version`](#structfield.storage_version).
    pub fn storage_version(mut self, version: StorageVersion) -> Self {
        self.storage_version = version;
        self
    }

    /// See [`OpenOptions::progress`](#structfield.progress).
    pub fn progress(mut self, hook: ProgressHook) -> Self {
        self.progress = hook;
        self
    }

    /// See [`OpenOptions::inherit_lock`](#structfield.inherit_lock).
    pub fn inherit_lock(mut self, inherit: bool) -> Self {
        self.inherit_lock = inherit;
        self
    }
}

/// An open system database at the ladder's top version.
///
/// The open lock stays held while this lives, so a second process's open
/// waits and then fails with [`Error::Locked`] naming this process.
#[derive(Debug)]
pub struct SystemDb {
    conn: Connection,
    paths: Paths,
    report: OpenReport,
    lock: lock::OpenLock,
}

impl SystemDb {
    /// Open (recovering and migrating as needed) the database at `paths`
    /// with the real DuckDB connector.
    pub fn open(paths: &Paths, ladder: &Ladder, options: &OpenOptions) -> Result<Self> {
        Self::open_with(paths, ladder, options, &DuckDbConnector)
    }

    /// [`open`](Self::open) through another [`Connector`].
    pub fn open_with(
        paths: &Paths,
        ladder: &Ladder,
        options: &OpenOptions,
        connector: &dyn Connector,
    ) -> Result<Self> {
        let started = Instant::now();
        let mut report = OpenReport::new(paths.db());
        let phase = Instant::now();
        let lock = take_lock(paths, options.lock_wait, options.inherit_lock)?;
        report.phase("lock", phase);
        tracing::debug!(lock = %paths.lock(), "took the open lock");
        #[cfg(feature = "failpoints")]
        fail::fail_point!("sysdb::open::locked");

        report.wal_at_open = fs_err::metadata(paths.wal()).ok().map(|m| m.len());
        let found = plan::observe(paths)?;
        if let Some(marker) = found.marker() {
            tracing::warn!(from = marker.from, to = marker.to, started_at = %marker.started_at, "a migration was in flight");
        }
        report.marker_found = found.window_open();
        report.marker = found.marker().cloned();
        report.recovery_resumed = found.recovering.clone();
        let conn =
            recover::connect_or_recover(paths, ladder, options, connector, &found, &mut report)?;
        let conn =
            window::ensure_schema(conn, paths, ladder, options, connector, &found, &mut report)?;
        report.phase("total", started);
        tracing::info!(db = %paths.db(), "system database open");
        #[cfg(feature = "failpoints")]
        fail::fail_point!("sysdb::open::done");
        Ok(Self {
            conn,
            paths: paths.clone(),
            report,
            lock,
        })
    }

    /// The connection.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// What the open found and did.
    pub fn report(&self) -> &OpenReport {
        &self.report
    }

    /// The paths.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The connection, the open lock and the report, for a service that
    /// keeps the connection and the lock its own way. The lock is held
    /// until the [`OpenLock`] is dropped: keep it as long as the
    /// connection.
    pub fn into_parts(self) -> (Connection, OpenLock, OpenReport) {
        (self.conn, self.lock, self.report)
    }

    /// Close the connection, keeping the open lock: the proof, for
    /// snapshot operations, that this process holds no connection to the
    /// file, while no other process going through sysdb can open it.
    ///
    /// DuckDB folds the write-ahead log into the file when its last
    /// connection closes, so a clone made with `try_clone` must be dropped
    /// before this is called.
    pub fn close(self) -> Closed {
        let files = self.paths.files().clone();
        drop(self.conn);
        Closed {
            db: ClosedDb::assume_closed(files),
            _lock: self.lock,
        }
    }
}

impl Error {
    /// Whether the file system was full: the failure of the environment
    /// after which the files are intact and the open goes through once
    /// there is room ([`recovery_space`] says how much a recovery may take).
    pub fn disk_full(&self) -> bool {
        let io = |e: &std::io::Error| {
            e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28)
        };
        let duck = |e: &duckdb::Error| sysdb_errclass::classify_error(e) == ErrorClass::DiskFull;
        let files = |e: &sysdb_snapshot::Error| match e {
            sysdb_snapshot::Error::NoSpace { .. } => true,
            sysdb_snapshot::Error::Copy { cause, .. }
            | sysdb_snapshot::Error::Sync { cause, .. }
            | sysdb_snapshot::Error::Rename { cause, .. }
            | sysdb_snapshot::Error::SyncDir { cause, .. } => io(cause),
            _ => false,
        };
        match self {
            Error::Open { class, .. } => *class == ErrorClass::DiskFull,
            Error::Folder { cause, .. }
            | Error::Lock { cause, .. }
            | Error::Scan { cause, .. }
            | Error::Replay { cause, .. } => io(cause),
            Error::Move { cause, .. } => files(cause),
            Error::Create { cause, .. } | Error::Statement { cause, .. } => duck(cause),
            Error::Schema { cause, .. } => match &**cause {
                sysdb_schema::Error::Checkpoint { cause, .. } => duck(cause),
                sysdb_schema::Error::Step { cause, .. } => duck(cause),
                _ => false,
            },
            _ => false,
        }
    }

    /// [`Error::Open`] of the database at `path`, with DuckDB's error
    /// classified.
    pub(crate) fn open(path: &camino::Utf8Path) -> impl FnOnce(duckdb::Error) -> Self {
        let path = path.to_owned();
        move |source| Error::Open {
            path,
            class: sysdb_errclass::classify_error(&source),
            cause: Box::new(Failure::DuckDb(source)),
        }
    }
}

/// What made an open fail: DuckDB's error where this process has one, or
/// what stands for it where it has none.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// DuckDB's error.
    #[error(transparent)]
    DuckDb(#[from] duckdb::Error),
    /// How the probe child (or a replay of a copy in it) ended.
    #[error("{0}")]
    Probe(String),
    /// DuckDB's error as text only: a replay's on a copy, rewritten to name
    /// the database's own files, or the one a killed recovery recorded in
    /// its marker.
    #[error("{0}")]
    Text(String),
}

/// The messages of `error` and of each of its causes, outermost first.
/// Every error of sysdb's crates says its cause in its own message or
/// returns it as its `source`, never both, so no text repeats.
///
/// ```
/// let err = sysdb::Error::NoDataDir;
/// assert_eq!(sysdb::error_chain(&err), [err.to_string()]);
/// ```
pub fn error_chain(error: &dyn std::error::Error) -> Vec<String> {
    std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect()
}

/// Take the open lock `system.duckdb.lock` without opening the database,
/// waiting up to `wait` for another holder: for operations on the closed
/// files (a manual snapshot, an operator's recovery) that must not run
/// while a service opens or migrates the database.
pub fn lock(paths: &Paths, wait: Duration) -> Result<OpenLock> {
    take_lock(paths, wait, false)
}

/// [`lock`], or with `inherit` the lock of a process this one descends
/// from where that one holds it ([`OpenOptions::inherit_lock`]).
fn take_lock(paths: &Paths, wait: Duration, inherit: bool) -> Result<OpenLock> {
    fs_err::create_dir_all(paths.dir()).map_err(|source| Error::Folder {
        path: paths.dir().to_owned(),
        cause: source,
    })?;
    if inherit {
        lock::acquire_or_inherit(&paths.lock(), wait)
    } else {
        lock::acquire(&paths.lock(), wait)
    }
}

/// Who holds the open lock now: `None` when nobody does, `Some(pid)` (the
/// pid the holder wrote, if readable) when a process does. Creates no file.
pub fn lock_holder(paths: &Paths) -> Option<Option<u32>> {
    lock::holder_now(&paths.lock())
}

/// A [`SystemDb`] after [`close`](SystemDb::close): the database is closed
/// and the open lock is held until this is dropped.
#[derive(Debug)]
pub struct Closed {
    db: ClosedDb,
    _lock: lock::OpenLock,
}

impl Closed {
    /// The closed database, for `sysdb_snapshot`'s operations.
    pub fn db(&self) -> &ClosedDb {
        &self.db
    }
}

/// Everything that can go wrong while opening the system database.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `DATA_DIR` is not set.
    #[error(
        "{DATA_DIR_ENV} is not set; set it to the service's data folder or name the database file"
    )]
    NoDataDir,
    /// A path does not name a file.
    #[error("while naming the database's files: {0}")]
    Files(sysdb_snapshot::Error),
    /// The database's folder could not be created.
    #[error("while creating the database folder {path}: {cause}")]
    Folder {
        /// The folder.
        path: Utf8PathBuf,
        /// The underlying failure.
        cause: std::io::Error,
    },
    /// The lock file could not be opened or locked.
    #[error("while taking the open lock {path}: {cause}")]
    Lock {
        /// The lock file.
        path: Utf8PathBuf,
        /// The underlying failure.
        cause: std::io::Error,
    },
    /// Another process holds the open lock.
    #[error("{path} is held by {} (waited {waited:.1?}); stop that process or retry when it is done", .pid.map_or("another process".to_owned(), |p| format!("process {p}")))]
    Locked {
        /// The lock file.
        path: Utf8PathBuf,
        /// The holder's pid, if it wrote one.
        pid: Option<u32>,
        /// How long this process waited.
        waited: Duration,
    },
    /// DuckDB could not open the database, and recovery may not act on this
    /// failure (or has nothing to recover from). DuckDB's text is unchanged.
    #[error("while opening {path}: {cause}{}", advice(*class))]
    Open {
        /// The database.
        path: Utf8PathBuf,
        /// What kind of failure it is.
        class: ErrorClass,
        /// DuckDB's error, or what stands for it.
        cause: Box<Failure>,
    },
    /// The write-ahead log could not be replayed, recovery set the files
    /// aside and restored a copy, and opening that copy failed too.
    #[error("while reopening {path} after setting aside a write-ahead log that could not be replayed: {reconnect}")]
    Reopen {
        /// The database.
        path: Utf8PathBuf,
        /// The error of the last connect, which wins.
        reconnect: Box<duckdb::Error>,
        /// The original replay failure.
        source: Box<Failure>,
    },
    /// The database file is unreadable, and the strict option forbids
    /// restoring the snapshot without a migration in flight.
    #[error("{path} cannot be read and {why}, so the snapshot {snapshot} ({}, written {age}) is not restored automatically: it would lose every write made after it; if that is acceptable, restore it by hand", .version.map_or("schema version unknown".to_owned(), |v| format!("schema version {v}")))]
    SnapshotRefused {
        /// The database.
        path: Utf8PathBuf,
        /// The snapshot.
        snapshot: Utf8PathBuf,
        /// How old the snapshot is, in words.
        age: String,
        /// The snapshot's schema version, if it could be read.
        version: Option<u32>,
        /// Why the marker does not allow it.
        why: &'static str,
    },
    /// The database file is missing where files show that one existed.
    #[error("{path} is missing, but {} show that a database existed; refusing to start an empty one in its place", .evidence.join(", "))]
    Vanished {
        /// The database.
        path: Utf8PathBuf,
        /// The files that show a database existed.
        evidence: Vec<String>,
    },
    /// The intent marker exists but cannot be read.
    #[error("while reading the intent marker {path}: {problem}")]
    Marker {
        /// The marker (or the snapshot it names).
        path: Utf8PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A database file (or its snapshot) could not be read for its digest
    /// and block checksums.
    #[error("while reading {path} for its digest and block checksums: {cause}")]
    Scan {
        /// The file.
        path: Utf8PathBuf,
        /// The underlying failure.
        cause: std::io::Error,
    },
    /// Moving files during recovery or the migration window failed.
    #[error("while {doing} {path}: {cause}")]
    Move {
        /// What was being done.
        doing: &'static str,
        /// The database.
        path: Utf8PathBuf,
        /// The underlying failure.
        cause: sysdb_snapshot::Error,
    },
    /// The migration ladder refused or failed.
    #[error("while migrating {path}: {cause}")]
    Schema {
        /// The database.
        path: Utf8PathBuf,
        /// The ladder's error.
        cause: Box<sysdb_schema::Error>,
    },
    /// The write-ahead log could not be replayed, and the migration ladder
    /// fails on every state a recovery could restore without setting aside
    /// a commit that writes data (the whole log, the prefixes that keep
    /// every such commit, the database at its last checkpoint where the log
    /// writes none). Nothing was moved.
    #[error("while recovering {path}: the migration ladder fails on every state a recovery could restore without setting aside committed data; nothing was moved: {cause}")]
    LadderFails {
        /// The database.
        path: Utf8PathBuf,
        /// The ladder's error on the state that loses least.
        cause: Box<sysdb_schema::Error>,
    },
    /// The probe child could not be started or did not finish in time.
    #[error("while probing the first open of {path} in a child process: {problem}")]
    Probe {
        /// The database.
        path: Utf8PathBuf,
        /// What went wrong, and what to do.
        problem: String,
    },
    /// A table of the database does not read whole, so the migration window
    /// does not replace the snapshot with a copy of it.
    #[error("while reading {path} whole before a migration replaces its snapshot: {table} does not read: {cause}; nothing was migrated{}", .snapshot.as_ref().map_or(String::new(), |s| format!(" and the snapshot {s} is kept (restoring it loses the writes made since)")))]
    Unreadable {
        /// The database.
        path: Utf8PathBuf,
        /// The snapshot, kept, if there is one.
        snapshot: Option<Utf8PathBuf>,
        /// The table that does not read, quoted as in SQL.
        table: String,
        /// What kind of failure it is.
        class: ErrorClass,
        /// DuckDB's error.
        cause: Box<duckdb::Error>,
    },
    /// A replay of a copy in the scratch folder could not be set up (the
    /// copy, the cut log, the probe child); nothing was moved.
    #[error("while {doing} {path} in its scratch folder: {cause}")]
    Replay {
        /// The database.
        path: Utf8PathBuf,
        /// What was being done.
        doing: &'static str,
        /// The underlying failure.
        cause: std::io::Error,
    },
    /// A new database could not be created; nothing is in its place.
    #[error(
        "while creating the new database {path} at storage version {storage_version}: {cause}"
    )]
    Create {
        /// The database.
        path: Utf8PathBuf,
        /// The storage version it was to have.
        storage_version: StorageVersion,
        /// DuckDB's error.
        cause: Box<duckdb::Error>,
    },
    /// A statement sysdb runs itself (CHECKPOINT) failed.
    #[error("while running {statement} on {path}: {cause}")]
    Statement {
        /// The database.
        path: Utf8PathBuf,
        /// The statement.
        statement: &'static str,
        /// DuckDB's error.
        cause: Box<duckdb::Error>,
    },
    /// An operation by hand found no file to work from, and refused
    /// before writing or moving anything: a snapshot of a database that
    /// does not exist (DuckDB would create an empty one, whose copy would
    /// replace the real snapshot), a recovery from a file that is not there.
    #[error(
        "{path} does not exist, so {doing} has nothing to work from; nothing was written or moved"
    )]
    Missing {
        /// The file that is not there.
        path: Utf8PathBuf,
        /// What needed it.
        doing: &'static str,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to change after a failure of the environment, for [`Error::Open`]:
/// the files are intact, and no recovery sets anything aside for it.
fn advice(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::OutOfMemory => "; nothing was changed: the database and its write-ahead log are intact and open with more memory (raise the container's memory limit or DuckDB's memory_limit, or set a temp_directory DuckDB can spill to)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duck(message: &str) -> duckdb::Error {
        duckdb::Error::DuckDBFailure(
            duckdb::ffi::Error::new(duckdb::ffi::DuckDBError),
            Some(message.to_owned()),
        )
    }

    fn io(kind: std::io::ErrorKind, text: &str) -> std::io::Error {
        std::io::Error::new(kind, text)
    }

    #[test]
    fn every_error_reads_well() {
        let db = Utf8PathBuf::from("/srv/data/state/system.duckdb");
        let snapshot = Utf8PathBuf::from("/srv/data/state/system.duckdb.pre-migrate");
        let errors = vec![
            Error::NoDataDir,
            Error::Files(sysdb_snapshot::Error::NotAFile { path: "/".into() }),
            Error::Folder {
                path: "/srv/data/state".into(),
                cause: io(std::io::ErrorKind::PermissionDenied, "Permission denied"),
            },
            Error::Lock {
                path: "/srv/data/state/system.duckdb.lock".into(),
                cause: io(std::io::ErrorKind::ReadOnlyFilesystem, "Read-only file system"),
            },
            Error::Locked {
                path: "/srv/data/state/system.duckdb.lock".into(),
                pid: Some(4242),
                waited: Duration::from_secs(30),
            },
            Error::Locked {
                path: "/srv/data/state/system.duckdb.lock".into(),
                pid: None,
                waited: Duration::from_millis(100),
            },
            Error::Open {
                path: db.clone(),
                class: ErrorClass::CorruptDatabase,
                cause: Box::new(Failure::DuckDb(duck("IO Error: Corrupt database file: computed checksum 1 does not match stored checksum 2 in block at location 12288"))),
            },
            Error::Open {
                path: db.clone(),
                class: ErrorClass::OutOfMemory,
                cause: Box::new(Failure::DuckDb(duck("Out of Memory Error: Failure while replaying WAL file \"/srv/data/state/system.duckdb.wal\": failed to allocate data of size 2.0 MiB (37.0 MiB/38.3 MiB used)"))),
            },
            Error::Reopen {
                path: db.clone(),
                reconnect: Box::new(duck("IO Error: The file \"/srv/data/state/system.duckdb\" exists, but it is not a valid DuckDB database file!")),
                source: Box::new(Failure::DuckDb(duck("INTERNAL Error: Failure while replaying WAL file: Calling DatabaseManager::GetDefaultDatabase with no default database set"))),
            },
            Error::SnapshotRefused {
                path: db.clone(),
                snapshot: snapshot.clone(),
                age: "3days 4h ago".to_owned(),
                version: Some(26),
                why: "no migration was in flight",
            },
            Error::SnapshotRefused {
                path: db.clone(),
                snapshot,
                age: "at an unknown time".to_owned(),
                version: None,
                why: "the intent marker cannot be read",
            },
            Error::Create {
                path: db.clone(),
                storage_version: StorageVersion::default(),
                cause: Box::new(duck("IO Error: Cannot open file \"/srv/data/state/system.duckdb.replay/new/system.duckdb\": No space left on device")),
            },
            Error::Vanished {
                path: db.clone(),
                evidence: vec![
                    "/srv/data/state/system.duckdb.pre-migrate".to_owned(),
                    "quarantine set 20261127T101503Z".to_owned(),
                ],
            },
            Error::Marker {
                path: "/srv/data/state/system.duckdb.migrating".into(),
                problem: "expected value at line 1 column 1".to_owned(),
            },
            Error::Scan {
                path: db.clone(),
                cause: io(std::io::ErrorKind::Other, "Input/output error"),
            },
            Error::Move {
                doing: "quarantining",
                path: db.clone(),
                cause: sysdb_snapshot::Error::Occupied {
                    from: "/srv/data/state/system.duckdb.broken.20261127T101503Z".into(),
                    path: db.clone(),
                },
            },
            Error::Schema {
                path: db.clone(),
                cause: Box::new(sysdb_schema::Error::DatabaseNewer {
                    database: 28,
                    ladder: 27,
                }),
            },
            Error::LadderFails {
                path: db.clone(),
                cause: Box::new(sysdb_schema::Error::Step {
                    version: 3,
                    name: "owner".to_owned(),
                    file: Some("/app/migrations/0003_owner.sql".into()),
                    statement: "ALTER TABLE jobs ADD COLUMN owner INTEGER".to_owned(),
                    cause: Box::new(duck("Catalog Error: Column with name \"owner\" already exists!")),
                }),
            },
            Error::Probe {
                path: db.clone(),
                problem: "/usr/local/bin/sysdb probe-open did not finish within 30s and was killed; a long write-ahead log can take that long to replay: raise the probe's timeout".to_owned(),
            },
            Error::Unreadable {
                path: db.clone(),
                snapshot: Some("/srv/data/state/system.duckdb.pre-migrate".into()),
                table: "\"main\".\"jobs\"".to_owned(),
                class: ErrorClass::CorruptDatabase,
                cause: Box::new(duck("Data Corruption Error: Corrupt database file: computed checksum 6371212628789838610 does not match stored checksum 12513807375399442 in block at location 798720")),
            },
            Error::Unreadable {
                path: db.clone(),
                snapshot: None,
                table: "\"main\".\"jobs\"".to_owned(),
                class: ErrorClass::CorruptDatabase,
                cause: Box::new(duck("Data Corruption Error: Corrupt database file: computed checksum 6371212628789838610 does not match stored checksum 12513807375399442 in block at location 798720")),
            },
            Error::Statement {
                path: db.clone(),
                statement: "CHECKPOINT",
                cause: Box::new(duck("IO Error: No space left on device")),
            },
            Error::Missing {
                path: db,
                doing: "a snapshot",
            },
        ];
        for e in &errors {
            let chain = error_chain(e);
            for pair in chain.windows(2) {
                assert!(
                    !pair[0].contains(&pair[1]),
                    "a cause is printed twice in {chain:#?}"
                );
            }
        }
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        insta::assert_snapshot!(text.join("\n\n"));
    }
}
