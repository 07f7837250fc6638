//! Everything that can go wrong while opening the system database, and
//! how it is said.

use std::time::Duration;

use camino::Utf8PathBuf;
use sysdb_errclass::ErrorClass;

use crate::{OpenReport, Outcome, StorageVersion, DATA_DIR_ENV};

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
    /// A recovery's file operation failed: setting files aside, restoring
    /// a copy, writing or removing the recovery marker. The recovery
    /// marker, once written, has the next open finish the recovery.
    #[error("while {doing} {path}: {cause}")]
    Move {
        /// What was being done.
        doing: &'static str,
        /// The database.
        path: Utf8PathBuf,
        /// The underlying failure.
        cause: sysdb_snapshot::Error,
    },
    /// A file operation of the migration window failed: taking or
    /// keeping the pre-migrate snapshot (also by hand), writing or removing
    /// the intent marker, removing the previous snapshot.
    #[error("while {doing} {path}: {cause}")]
    Snapshot {
        /// What was being done.
        doing: &'static str,
        /// The database.
        path: Utf8PathBuf,
        /// The underlying failure.
        cause: sysdb_snapshot::Error,
    },
    /// The quarantine sets beside the database could not be listed;
    /// nothing was moved.
    #[error("while listing the quarantine sets of {path}: {cause}")]
    Quarantine {
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
    /// Copying the state folder for a prediction on the copy failed;
    /// nothing of the real folder was changed.
    #[error("while copying {path} for a prediction on a copy: {cause}")]
    CopyState {
        /// The file or folder.
        path: Utf8PathBuf,
        /// The underlying failure.
        cause: std::io::Error,
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
    /// The open failed after it had changed files (set files aside,
    /// restored a copy, created the database, replaced the snapshot or
    /// applied steps): the error, with the report of what was done before
    /// it. Its message and causes are the error's own; match on
    /// [`Error::kind`], read the report with [`Error::report`].
    #[error(transparent)]
    Partial(Box<PartialOpen>),
}

/// An error raised after the open changed files, with the report of what
/// it had done ([`Error::Partial`]).
#[derive(Debug)]
pub struct PartialOpen {
    error: Error,
    report: OpenReport,
}

impl std::fmt::Display for PartialOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for PartialOpen {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
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

impl Error {
    /// The error itself, to match on: for [`Error::Partial`] the error it
    /// carries, else this one.
    ///
    /// ```
    /// # fn open() -> sysdb::Result<()> { Err(sysdb::Error::NoDataDir) }
    /// match open() {
    ///     Err(e) if matches!(e.kind(), sysdb::Error::Locked { .. }) => { /* retry later */ }
    ///     Err(e) => eprintln!("{e}; files moved before it: {}", e.report().map_or(0, |r| r.quarantined.len())),
    ///     Ok(()) => {}
    /// }
    /// ```
    pub fn kind(&self) -> &Error {
        match self {
            Error::Partial(p) => &p.error,
            e => e,
        }
    }

    /// What the open had done before it failed, where it had changed
    /// files ([`Error::Partial`]); `None` where it changed none.
    pub fn report(&self) -> Option<&OpenReport> {
        match self {
            Error::Partial(p) => Some(&p.report),
            _ => None,
        }
    }

    /// `error`, carrying `report` where the open had changed files by
    /// then.
    pub(crate) fn after(error: Error, report: &OpenReport) -> Error {
        if report.changed_files() && !matches!(error, Error::Partial(_)) {
            Error::Partial(Box::new(PartialOpen {
                error,
                report: report.clone(),
            }))
        } else {
            error
        }
    }

    /// A short, stable name of the failure, for machines and logs:
    /// `disk-full` wherever the file system was full
    /// ([`disk_full`](Self::disk_full)), else DuckDB's class for
    /// [`Error::Open`] (`wal-replay`, `corrupt-database`, `out-of-memory`,
    /// …), else the variant's name in kebab case (`locked`, `vanished`,
    /// `ladder-fails`, `schema`, …).
    pub fn code(&self) -> &'static str {
        if self.disk_full() {
            return "disk-full";
        }
        match self.kind() {
            Error::Open { class, .. } => class.as_str(),
            Error::NoDataDir => "no-data-dir",
            Error::Files(_) => "files",
            Error::Folder { .. } => "folder",
            Error::Lock { .. } => "lock",
            Error::Locked { .. } => "locked",
            Error::Reopen { .. } => "reopen",
            Error::SnapshotRefused { .. } => "snapshot-refused",
            Error::Vanished { .. } => "vanished",
            Error::Marker { .. } => "marker",
            Error::Scan { .. } => "scan",
            Error::Move { .. } => "move",
            Error::Snapshot { .. } => "snapshot",
            Error::Quarantine { .. } => "quarantine",
            Error::Schema { .. } => "schema",
            Error::LadderFails { .. } => "ladder-fails",
            Error::Probe { .. } => "probe",
            Error::Unreadable { .. } => "unreadable",
            Error::Replay { .. } => "replay",
            Error::Create { .. } => "create",
            Error::Statement { .. } => "statement",
            Error::CopyState { .. } => "copy-state",
            Error::Missing { .. } => "missing",
            Error::Partial(_) => "partial",
        }
    }

    /// What an open that ended with this error came to:
    /// [`Outcome::Refused`], with [`code`](Self::code) as the reason.
    pub fn outcome(&self) -> Outcome {
        Outcome::Refused {
            why: self.code().to_owned(),
        }
    }

    /// Whether the file system was full: the failure of the environment
    /// after which the files are intact and the open goes through once
    /// there is room ([`by_hand::recovery_space`](crate::by_hand::recovery_space) says how much a recovery may take).
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
        match self.kind() {
            Error::Open { class, .. } => *class == ErrorClass::DiskFull,
            Error::Folder { cause, .. }
            | Error::Lock { cause, .. }
            | Error::CopyState { cause, .. }
            | Error::Scan { cause, .. }
            | Error::Replay { cause, .. } => io(cause),
            Error::Move { cause, .. }
            | Error::Snapshot { cause, .. }
            | Error::Quarantine { cause, .. } => files(cause),
            Error::Create { cause, .. } | Error::Statement { cause, .. } => duck(cause),
            Error::Schema { cause, .. } => match &**cause {
                sysdb_schema::Error::Checkpoint { cause, .. } => duck(cause),
                sysdb_schema::Error::Step { cause, .. } => duck(cause),
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether DuckDB could not use the database file itself (not a
    /// database, corrupt, truncated, an unsupported storage): the
    /// failures after which only a snapshot or a backup helps.
    pub fn database_unreadable(&self) -> bool {
        matches!(self.kind(), Error::Open { class, .. } if crate::plan::file_unreadable(*class))
    }

    /// [`Error::Move`]: `doing` a recovery's file operation on the files
    /// of the database `db`, which failed.
    pub(crate) fn moving(
        doing: &'static str,
        db: &camino::Utf8Path,
    ) -> impl FnOnce(sysdb_snapshot::Error) -> Self {
        let path = db.to_owned();
        move |cause| Error::Move { doing, path, cause }
    }

    /// [`Error::Snapshot`]: `doing` a file operation of the migration
    /// window of the database `db`, which failed.
    pub(crate) fn snapshot(
        doing: &'static str,
        db: &camino::Utf8Path,
    ) -> impl FnOnce(sysdb_snapshot::Error) -> Self {
        let path = db.to_owned();
        move |cause| Error::Snapshot { doing, path, cause }
    }

    /// [`Error::Quarantine`] of the database `db`.
    pub(crate) fn quarantine(db: &camino::Utf8Path) -> impl FnOnce(sysdb_snapshot::Error) -> Self {
        let path = db.to_owned();
        move |cause| Error::Quarantine { path, cause }
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
            Error::snapshot("keeping the previous snapshot of", &db)(
                sysdb_snapshot::Error::Rename {
                    from: "/srv/data/state/system.duckdb.pre-migrate".into(),
                    to: "/srv/data/state/system.duckdb.pre-migrate.previous".into(),
                    cause: io(std::io::ErrorKind::PermissionDenied, "Permission denied"),
                },
            ),
            Error::quarantine(&db)(sysdb_snapshot::Error::List {
                dir: "/srv/data/state".into(),
                cause: io(std::io::ErrorKind::PermissionDenied, "Permission denied"),
            }),
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
                path: db.clone(),
                doing: "a snapshot",
            },
            Error::CopyState {
                path: db.clone(),
                cause: io(std::io::ErrorKind::StorageFull, "No space left on device"),
            },
            Error::Partial(Box::new(PartialOpen {
                error: Error::Statement {
                    path: db.clone(),
                    statement: "CHECKPOINT",
                    cause: Box::new(duck("IO Error: No space left on device")),
                },
                report: OpenReport::new(&db),
            })),
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

    #[test]
    fn the_code_is_the_environment_s_failure_else_duckdb_s_class_else_the_variant() {
        let db = Utf8PathBuf::from("/srv/data/state/system.duckdb");
        let schema = || Error::Schema {
            path: db.clone(),
            cause: Box::new(sysdb_schema::Error::DatabaseNewer {
                database: 28,
                ladder: 27,
            }),
        };
        let mut migrated = OpenReport::new(&db);
        migrated.created = Some(StorageVersion::default());
        let cases = [
            (Error::NoDataDir, "no-data-dir"),
            (
                Error::open(&db)(duck("IO Error: Corrupt database file: computed checksum 1 does not match stored checksum 2 in block at location 12288")),
                "corrupt-database",
            ),
            (
                Error::moving("quarantining", &db)(sysdb_snapshot::Error::NoSpace {
                    from: db.clone(),
                    dest: "/srv/data/state/system.duckdb.broken.20261127T101503Z".into(),
                    needed: 10,
                    available: 1,
                }),
                "disk-full",
            ),
            (schema(), "schema"),
            (Error::after(schema(), &migrated), "schema"),
        ];
        for (error, code) in &cases {
            assert_eq!(error.code(), *code, "{error:?}");
            assert_eq!(
                error.outcome(),
                Outcome::Refused {
                    why: (*code).to_owned()
                }
            );
        }
        // Only an error after a change carries the report.
        assert!(cases[3].0.report().is_none());
        assert_eq!(cases[4].0.report(), Some(&migrated));
        assert!(matches!(cases[4].0.kind(), Error::Schema { .. }));
        assert!(matches!(
            Error::after(schema(), &OpenReport::new(&db)),
            Error::Schema { .. }
        ));
    }
}
