//! The command's errors and their exit codes.

use camino::Utf8PathBuf;

/// Everything a `sysdb` command can fail with.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The open flow's error (it names the path and what to do).
    #[error(transparent)]
    Sysdb(Box<sysdb::Error>),
    /// Moving or copying files failed.
    #[error(transparent)]
    Files(Box<sysdb_snapshot::Error>),
    /// The migrations could not be read.
    #[error(transparent)]
    Schema(Box<sysdb_schema::Error>),
    /// The command was used wrongly.
    #[error("{0}")]
    Usage(String),
    /// A file-system call failed.
    #[error("while {doing} {path}: {cause}")]
    Io {
        /// What was being done.
        doing: &'static str,
        /// The path.
        path: Utf8PathBuf,
        /// The failure.
        cause: std::io::Error,
    },
    /// DuckDB failed on a file the command opened itself.
    #[error("while {doing} {path}: {cause}")]
    Duck {
        /// What was being done.
        doing: &'static str,
        /// The file.
        path: Utf8PathBuf,
        /// DuckDB's error.
        cause: Box<duckdb::Error>,
    },
    /// The command refuses; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
    /// The crash drill could not make its crash.
    #[error("crash drill: {0}")]
    Drill(Box<sysdb_scenarios::Error>),
}

impl From<sysdb_scenarios::Error> for Error {
    fn from(e: sysdb_scenarios::Error) -> Self {
        Error::Drill(Box::new(e))
    }
}

impl From<sysdb::Error> for Error {
    fn from(e: sysdb::Error) -> Self {
        Error::Sysdb(Box::new(e))
    }
}

impl From<sysdb_snapshot::Error> for Error {
    fn from(e: sysdb_snapshot::Error) -> Self {
        Error::Files(Box::new(e))
    }
}

impl From<sysdb_schema::Error> for Error {
    fn from(e: sysdb_schema::Error) -> Self {
        Error::Schema(Box::new(e))
    }
}

impl Error {
    /// The process exit code for this error (see `sysdb --help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Sysdb(e) => match e.kind() {
                sysdb::Error::Locked { .. }
                | sysdb::Error::Open {
                    class: sysdb::ErrorClass::Locked { .. },
                    ..
                } => 3,
                _ => 1,
            },
            _ => 1,
        }
    }

    /// What the open had done before it failed, where it had changed
    /// files.
    pub fn report(&self) -> Option<&sysdb::OpenReport> {
        match self {
            Error::Sysdb(e) => e.report(),
            _ => None,
        }
    }

    /// A short, stable name of the failure for machines: the library's
    /// [`sysdb::Error::code`], or `usage`, `refused`, `io`, ….
    pub fn code(&self) -> &'static str {
        match self {
            Error::Sysdb(e) => e.code(),
            Error::Files(_) => "files",
            Error::Schema(_) => "migrations",
            Error::Usage(_) => "usage",
            Error::Io { .. } => "io",
            Error::Duck { .. } => "duckdb",
            Error::Refused(_) => "refused",
            Error::Drill(_) => "drill",
        }
    }

    /// The process that holds the database, for exit code 3, when known.
    pub fn holder_pid(&self) -> Option<u32> {
        match self {
            Error::Sysdb(e) => match *e.kind() {
                sysdb::Error::Locked { pid, .. } => pid,
                sysdb::Error::Open {
                    class: sysdb::ErrorClass::Locked { pid },
                    ..
                } => pid,
                _ => None,
            },
            _ => None,
        }
    }

    /// The next step for the operator, where the message alone does not
    /// say it.
    pub fn hint(&self, paths: Option<&sysdb::Paths>) -> Option<String> {
        match self {
            Error::Sysdb(e) => match paths {
                Some(paths) if e.disk_full() => Some(room_hint(paths)),
                Some(paths) => next_step(e, paths),
                None => hint(e).map(str::to_owned),
            },
            Error::Files(e) if matches!(**e, sysdb_snapshot::Error::RecoveryInFlight { .. }) => {
                Some("`sysdb migrate` finishes the recovery; prune after it".to_owned())
            }
            _ => None,
        }
    }

    pub(crate) fn io(
        doing: &'static str,
        path: &camino::Utf8Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| Error::Io {
            doing,
            path,
            cause: source,
        }
    }

    pub(crate) fn duck(
        doing: &'static str,
        path: &camino::Utf8Path,
    ) -> impl FnOnce(duckdb::Error) -> Self {
        let path = path.to_owned();
        move |source| Error::Duck {
            doing,
            path,
            cause: Box::new(source),
        }
    }
}

/// The next step after `e` on the files at `paths`: the snapshot's own
/// error where it does not read either, else [`hint`].
pub(crate) fn next_step(e: &sysdb::Error, paths: &sysdb::Paths) -> Option<String> {
    snapshot_unreadable_hint(e, paths).or_else(|| hint(e).map(str::to_owned))
}

/// After a database that does not read, where the snapshot the usual hint
/// offers does not read either: that snapshot's own error, so that it is
/// not restored by hand in vain.
fn snapshot_unreadable_hint(e: &sysdb::Error, paths: &sysdb::Paths) -> Option<String> {
    use sysdb::Connector as _;
    if !e.database_unreadable() {
        return None;
    }
    let snapshot = paths.snapshot();
    if !snapshot.exists() {
        return None;
    }
    let error = sysdb::DuckDbConnector.connect_read_only(&snapshot).err()?;
    Some(format!(
        "the snapshot {snapshot} does not read either ({}), so restoring it would not help; `sysdb quarantine list` shows the sets set aside earlier, and `sysdb status` the previous snapshot; otherwise an older copy must come from a backup",
        error.to_string().replace('\n', " ")
    ))
}

/// What to do after a full disk: how much room a recovery of these files
/// may take beside them, and how much there is.
pub(crate) fn room_hint(paths: &sysdb::Paths) -> String {
    let free = sysdb_snapshot::available_space(paths.dir()).map_or_else(
        |e| format!("the free space could not be read: {e}"),
        |n| format!("{} are free", crate::out::bytes(n)),
    );
    format!(
        "free space on the file system of {}: a recovery of these files, with the migration after it, may take up to {} there ({free}); nothing was moved, so run the command again once there is room",
        paths.dir(),
        crate::out::bytes(sysdb::by_hand::recovery_space(paths)),
    )
}

/// The next step for the operator after `e`, where its message alone does
/// not say it.
pub(crate) fn hint(e: &sysdb::Error) -> Option<&'static str> {
    use sysdb::ErrorClass as C;
    Some(match e.kind() {
            sysdb::Error::Open { class, .. } => match class {
                C::WalReplay { .. } => "sysdb recovers by itself (`sysdb migrate`) only where a pre-migrate snapshot exists; without one, `sysdb recover --drop-wal` restores the database file at its last checkpoint and sets the write-ahead log aside",
                C::Locked { .. } => "stop the process that holds the database, or retry when it is done",
                C::NotADatabase | C::CorruptDatabase | C::Truncated | C::UnsupportedStorage => "`sysdb status` shows the snapshot's age and version; `sysdb recover --from-snapshot` restores it (every write made after it is lost; the file is set aside, not deleted)",
                C::NewerStorage => "the file was written by a newer DuckDB; open it with that version",
                C::PermissionDenied | C::DiskFull | C::Io => "fix the file system (permissions, free space), then run the command again",
                C::OutOfMemory => "give the process more memory (the container's limit, DuckDB's memory_limit), then run the command again; no file was changed",
                _ => "`sysdb check` says what an open would do; `sysdb status` shows the files",
            },
            sysdb::Error::Schema { cause: source, .. }
                if matches!(**source, sysdb_schema::Error::Drift { .. }) =>
            {
                "if the change to those migrations is intended, `sysdb migrate --accept-drift` migrates anyway (`sysdb check --accept-drift` says what it would do); the database keeps what their old text did"
            }
            sysdb::Error::Schema { cause: source, .. }
                if matches!(**source, sysdb_schema::Error::Step { .. }) =>
            {
                "fix that step's file, then run `sysdb migrate` again: the steps applied before it stay applied, the pre-migrate snapshot taken before the first is kept, and the migration goes on from the failed step"
            }
            sysdb::Error::SnapshotRefused { .. } => "`sysdb recover --from-snapshot` restores the snapshot by hand (every write made after it is lost; the files are set aside, not deleted); `sysdb status` shows its age and version",
            sysdb::Error::Unreadable { snapshot: Some(_), .. } => "if the snapshot's data matters more than the writes made since, `sysdb recover --from-snapshot` restores it; `sysdb status` shows its age and version",
            sysdb::Error::Vanished { .. } => "`sysdb recover --from-snapshot` restores the newest snapshot (the pre-migrate one, or the previous one where only it is left; every write made after it is lost); `sysdb quarantine list` shows the files set aside; to start with an empty database, move those files away",
            sysdb::Error::LadderFails { .. } => "fix that migration step so that it runs on the database with the data the log committed; nothing was moved, so the next `sysdb migrate` recovers the database with it (`sysdb check` says what it would do); `sysdb recover --drop-wal` restores the database at its last checkpoint instead, setting the log's commits aside",
            sysdb::Error::Probe { .. } => "the database was not opened in this process; `sysdb check` says what an open would do",
            sysdb::Error::Lock { .. } | sysdb::Error::Folder { .. } => "sysdb writes beside the database (its lock, a recovery's copies, the snapshot): make the folder writable (mount it read-write, fix its owner or mode), then run the command again; no file was changed",
            sysdb::Error::Missing { .. } => "`sysdb status` shows the files there are; `sysdb quarantine list` the sets set aside",
            sysdb::Error::Reopen { .. } => "the restored copy does not open either; `sysdb quarantine list` shows every file set aside, `sysdb status` the snapshot",
            _ => return None,
    })
}
