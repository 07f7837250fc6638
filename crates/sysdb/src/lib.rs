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
mod error;
mod folder;
mod lock;
mod marker;
mod paths;
mod plan;
mod probe;
mod progress;
mod recover;
mod replay;
pub mod report;
mod wal;
mod window;

use std::time::{Duration, Instant};

use duckdb::Connection;
use sysdb_snapshot::ClosedDb;

pub use connect::{storage_version_of, Connector, DuckDbConnector, DuckDbSettings, StorageVersion};
pub use error::{error_chain, Error, Failure, PartialOpen, Result};
pub use lock::OpenLock;
pub use paths::{Paths, DATA_DIR_ENV};
pub use probe::{probe_open, probe_open_with, Probe};
pub use progress::{Progress, ProgressHook, Task, Unit};
pub use report::{OpenReport, Outcome};

/// The crate of migration ladders, whose types this API names
/// ([`embed_migrations!`]'s error, `schema::Error` in [`Error::Schema`]).
pub use sysdb_schema as schema;
/// The crate that moves the database's files, whose types this API names
/// (`snapshot::Error` in [`Error::Move`], what [`by_hand::snapshot`] took,
/// [`Closed::db`]).
pub use sysdb_snapshot as snapshot;

/// What an operator does by hand, on a database no service has open:
/// recover where an open refuses, take a snapshot now, take or inspect the
/// open lock, ask what the folder allows and how much room a recovery may
/// take. The CLI's `recover`, `snapshot take`, `status` and `check`.
pub mod by_hand {
    use std::time::Duration;

    pub use crate::folder::{copy_state, preflight, recovery_space};
    pub use crate::lock::LockHolder;
    pub use crate::recover::{recover_by_hand as recover, ByHand, HandSource};
    pub use crate::window::{snapshot_now as snapshot, snapshot_possible};
    use crate::{OpenLock, Paths, Result};

    /// Take the open lock `system.duckdb.lock` without opening the
    /// database, waiting up to `wait` for another holder: for operations on
    /// the closed files (a snapshot, a recovery by hand) that must not run
    /// while a service opens or migrates the database.
    pub fn lock(paths: &Paths, wait: Duration) -> Result<OpenLock> {
        crate::take_lock(paths, wait, false)
    }

    /// Who holds the open lock now: `None` when nobody does. Creates no
    /// file.
    pub fn lock_holder(paths: &Paths) -> Option<LockHolder> {
        crate::lock::holder_now(&paths.lock())
    }
}

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
///   connection still open (also in [`by_hand::snapshot`]);
/// - `sysdb::window::snapshotted`: the snapshot is in place, the intent
///   marker not yet written (also in [`by_hand::snapshot`]);
/// - `sysdb::window::marked`: the intent marker is written, the database
///   not yet reopened;
/// - `sysdb::window::applied`: every step applied and checkpointed, the
///   intent marker still there;
/// - `sysdb::open::done`: the open is complete;
/// - `sysdb::recover::by_hand::set_aside`: a recovery by hand
///   ([`by_hand::recover`]) set the files aside and has not restored.
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
            progress: ProgressHook::default(),
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
        // From here on an error may come after files were changed: it
        // carries the report of what was done (`Error::Partial`).
        let conn =
            recover::connect_or_recover(paths, ladder, options, connector, &found, &mut report)
                .and_then(|conn| {
                    window::ensure_schema(
                        conn,
                        paths,
                        ladder,
                        options,
                        connector,
                        &found,
                        &mut report,
                    )
                })
                .map_err(|e| Error::after(e, &report))?;
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

/// The open lock ([`by_hand::lock`]), or with `inherit` the lock of a
/// process this one descends from where that one holds it
/// ([`OpenOptions::inherit_lock`]).
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
