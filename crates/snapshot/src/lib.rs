//! Moving database files without ever losing one.
//!
//! This crate makes the pre-migrate snapshot (`system.duckdb.pre-migrate`),
//! restores a database from a copy, and sets a broken database aside
//! (`system.duckdb.broken.<UTC stamp>` with its sidecars). It knows nothing of
//! DuckDB beyond the names of the files DuckDB keeps beside a database.
//!
//! Every copy is *durable*: the free space is checked first, the bytes go to
//! a temporary name in the destination's folder, the file is synced, renamed
//! into place and the folder synced. Whatever fails, and wherever the process
//! dies, the destination holds either its old content or the complete new
//! one, never a partial file; a failure removes the temporary file, and a
//! temporary file left by a killed process is removed by the next copy.
//!
//! Nothing here deletes or overwrites a database file, except [`prune`], which
//! removes whole quarantine sets beyond the number an operator keeps, and
//! [`take`], which replaces the previous snapshot once the new one is
//! durable. [`write_durably`] and [`remove_durably`] are for the small files
//! kept beside a database (the intent marker), never for the database.
//!
//! # Why operations take a [`ClosedDb`]
//!
//! DuckDB guards a database with a POSIX `fcntl` lock, and POSIX drops every
//! such lock a process holds on a file as soon as that process closes *any*
//! descriptor of the file. Copying `system.duckdb` while this process has a
//! DuckDB connection to it would open and close the file and so silently
//! release DuckDB's lock; another process could then open the database and
//! write to it while we believe we hold it. The copy could also catch the
//! file halfway through a checkpoint. So every operation that reads or moves
//! the database file takes a [`ClosedDb`], which states that no connection to
//! the file is open; the crate that owns the connections hands one out only
//! after closing them.

mod copy;
mod names;
mod quarantine;

use std::io;

use camino::Utf8PathBuf;

pub use copy::{
    available_space, forget_previous, install, keep_previous, process_alive, restore, restore_with,
    stage_take, take, take_with, Copied, CopyMethod, Staged, Step,
};
pub use names::{DbFiles, SIDECAR_SUFFIXES};
pub use quarantine::{list, prune, prune_possible, quarantine, Moved, QuarantineSet, Quarantined};

/// The failpoints of this crate, for crash and fault tests built with the
/// `failpoints` feature (the `fail` crate). Each can kill the process where
/// it stands or inject an I/O error (`return(ENOSPC)`, `return(EIO)`,
/// `return(EACCES)`, `return(EROFS)`) into the operation it guards:
///
/// - `snapshot::copy::write`: before each 8 MiB chunk of a snapshot or
///   restore copy (the temporary file holds the chunks before it);
/// - `snapshot::copy::sync`: before the temporary file's fsync;
/// - `snapshot::copy::rename`: before the rename into place;
/// - `snapshot::copy::sync-dir`: after the rename, before the folder's fsync;
/// - `snapshot::previous::rename`: before the snapshot is kept as the
///   previous one;
/// - `snapshot::install::rename`: before a replayed copy is moved into
///   the database's place;
/// - `snapshot::quarantine::rename`: before each file is set aside;
/// - `snapshot::quarantine::sync-dir`: after the last one, before the fsync;
/// - `snapshot::durable::write`, `snapshot::durable::rename`,
///   `snapshot::durable::remove`: writing and removing small marker files.
pub const FAILPOINTS: [&str; 11] = [
    "snapshot::previous::rename",
    "snapshot::copy::write",
    "snapshot::copy::sync",
    "snapshot::copy::rename",
    "snapshot::copy::sync-dir",
    "snapshot::install::rename",
    "snapshot::quarantine::rename",
    "snapshot::quarantine::sync-dir",
    "snapshot::durable::write",
    "snapshot::durable::rename",
    "snapshot::durable::remove",
];

/// Proof that no DuckDB connection in this process has the database open.
///
/// See the [crate documentation](crate#why-operations-take-a-closeddb) for
/// why operations on database files need it.
#[derive(Debug, Clone)]
pub struct ClosedDb {
    files: DbFiles,
}

impl ClosedDb {
    /// State that no connection to `files`' database is open in this process.
    ///
    /// Call this only where that is evident: after the handle that owned every
    /// connection was consumed, after opening the database failed, or in a
    /// process that never opened it (an operator command).
    pub fn assume_closed(files: DbFiles) -> Self {
        Self { files }
    }

    /// The database and the names of the files beside it.
    pub fn files(&self) -> &DbFiles {
        &self.files
    }
}

/// Everything that can go wrong while copying, moving or listing database
/// files. Each variant names the paths involved and the step that failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path does not name a file (`/`, `..`).
    #[error("{path} does not name a file")]
    NotAFile {
        /// The path.
        path: Utf8PathBuf,
    },
    /// A file sysdb would write, or restore from, is a symbolic link.
    #[error("{path} is a symbolic link; refusing to write or restore through it (replace it with the file it points to, or remove it)")]
    Symlink {
        /// The link.
        path: Utf8PathBuf,
    },
    /// A restore found the database file or a sidecar in its way.
    #[error(
        "while restoring {from}: {path} exists; quarantine it first, a restore never overwrites"
    )]
    Occupied {
        /// The copy that was to be restored.
        from: Utf8PathBuf,
        /// The file in the way.
        path: Utf8PathBuf,
    },
    /// The copy's source could not be opened or measured.
    #[error("while opening {path} to copy it: {cause}")]
    OpenSource {
        /// The source file.
        path: Utf8PathBuf,
        /// The underlying failure.
        cause: io::Error,
    },
    /// The free space of the destination's file system could not be read.
    #[error("while checking the free space for {dest}: {cause}")]
    SpaceCheck {
        /// The destination file.
        dest: Utf8PathBuf,
        /// The underlying failure.
        cause: io::Error,
    },
    /// The destination's file system has less free space than the copy needs.
    #[error(
        "while copying {from} to {dest}: not enough free space ({needed} bytes needed, {available} available); free some space and retry"
    )]
    NoSpace {
        /// The source file.
        from: Utf8PathBuf,
        /// The destination file.
        dest: Utf8PathBuf,
        /// Bytes the copy needs.
        needed: u64,
        /// Bytes available to this user.
        available: u64,
    },
    /// Copying the bytes into the temporary file failed.
    #[error("while copying {from} to {temp}: {cause}")]
    Copy {
        /// The source file.
        from: Utf8PathBuf,
        /// The temporary file (removed again).
        temp: Utf8PathBuf,
        /// The underlying failure.
        cause: io::Error,
    },
    /// Syncing a file's bytes to disk failed.
    #[error("while syncing {path} to disk: {cause}")]
    Sync {
        /// The file.
        path: Utf8PathBuf,
        /// The underlying failure.
        cause: io::Error,
    },
    /// Renaming a file failed.
    #[error("while renaming {from} to {to}: {cause}")]
    Rename {
        /// The file's old name.
        from: Utf8PathBuf,
        /// The name it was to get.
        to: Utf8PathBuf,
        /// The underlying failure.
        cause: io::Error,
    },
    /// Syncing a folder (making a rename durable) failed.
    #[error("while syncing folder {dir} to disk: {cause}")]
    SyncDir {
        /// The folder.
        dir: Utf8PathBuf,
        /// The underlying failure.
        cause: io::Error,
    },
    /// Reading a folder's entries failed.
    #[error("while listing folder {dir}: {cause}")]
    List {
        /// The folder.
        dir: Utf8PathBuf,
        /// The underlying failure.
        cause: io::Error,
    },
    /// Removing a file failed.
    #[error("while removing {path}: {cause}")]
    Remove {
        /// The file.
        path: Utf8PathBuf,
        /// The underlying failure.
        cause: io::Error,
    },
    /// Every quarantine name for this second is taken.
    #[error(
        "while quarantining {db}: every name up to {last} is taken; prune old quarantine sets"
    )]
    NamesExhausted {
        /// The database.
        db: Utf8PathBuf,
        /// The last name tried.
        last: Utf8PathBuf,
    },
    /// A prune while a recovery is in flight: its newest quarantine set
    /// may hold the only copy of the database.
    #[error("while pruning the quarantine of {db}: a recovery is in flight ({marker} exists), and the newest set may hold the only copy of the database; nothing was deleted")]
    RecoveryInFlight {
        /// The database.
        db: Utf8PathBuf,
        /// The recovery marker.
        marker: Utf8PathBuf,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Write `bytes` to `path` durably: a temporary file in the same folder,
/// synced, renamed over `path`, and the folder synced. Readers see the old
/// content or the new, never a partial file.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = camino::Utf8PathBuf::try_from(dir.path().join("system.duckdb.migrating"))?;
/// sysdb_snapshot::write_durably(&path, b"from = 26\nto = 27\n")?;
/// assert_eq!(std::fs::read(&path)?, b"from = 26\nto = 27\n");
/// assert!(sysdb_snapshot::remove_durably(&path)?);
/// assert!(!sysdb_snapshot::remove_durably(&path)?);
/// # Ok(()) }
/// ```
pub fn write_durably(path: &camino::Utf8Path, bytes: &[u8]) -> Result<()> {
    let dir = DbFiles::new(path)?.dir().to_owned();
    copy::remove_stale_temps(&dir, path)?;
    let temp = DbFiles::temp_for(path, std::process::id());
    let copy_error = |source| Error::Copy {
        from: path.to_owned(),
        temp: temp.clone(),
        cause: source,
    };
    copy::refuse_symlink(path)?;
    // Not writable by others, whatever the umask.
    let written = copy::io_point("snapshot::durable::write")
        .and_then(|()| {
            use fs_err::os::unix::fs::OpenOptionsExt;
            use std::io::Write;
            fs_err::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&temp)?
                .write_all(bytes)
        })
        .and_then(|()| fs_err::File::open(&temp)?.sync_all())
        .map_err(copy_error);
    if let Err(e) = written {
        let _ = fs_err::remove_file(&temp);
        return Err(e);
    }
    if let Err(source) =
        copy::io_point("snapshot::durable::rename").and_then(|()| fs_err::rename(&temp, path))
    {
        let _ = fs_err::remove_file(&temp);
        return Err(Error::Rename {
            from: temp,
            to: path.to_owned(),
            cause: source,
        });
    }
    sync_dir(&dir)
}

/// Remove `path` and sync its folder; `Ok(false)` when it did not exist.
pub fn remove_durably(path: &camino::Utf8Path) -> Result<bool> {
    let dir = DbFiles::new(path)?.dir().to_owned();
    match copy::io_point("snapshot::durable::remove").and_then(|()| fs_err::remove_file(path)) {
        Ok(()) => {
            sync_dir(&dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(Error::Remove {
            path: path.to_owned(),
            cause: source,
        }),
    }
}

/// Make the renames, creations and removals in `dir` durable.
pub fn sync_dir(dir: &camino::Utf8Path) -> Result<()> {
    fs_err::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| Error::SyncDir {
            dir: dir.to_owned(),
            cause: source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io() -> io::Error {
        io::Error::other("disk said no")
    }

    #[test]
    fn every_error_display() {
        let p = |s: &str| Utf8PathBuf::from(format!("/data/state/{s}"));
        let errors = [
            Error::NotAFile { path: "/".into() },
            Error::Occupied {
                from: p("system.duckdb.pre-migrate"),
                path: p("system.duckdb.wal"),
            },
            Error::OpenSource {
                path: p("system.duckdb"),
                cause: io(),
            },
            Error::SpaceCheck {
                dest: p("system.duckdb.pre-migrate"),
                cause: io(),
            },
            Error::NoSpace {
                from: p("system.duckdb"),
                dest: p("system.duckdb.pre-migrate"),
                needed: 9_437_184,
                available: 4096,
            },
            Error::Copy {
                from: p("system.duckdb"),
                temp: p("system.duckdb.pre-migrate.tmp-42"),
                cause: io(),
            },
            Error::Sync {
                path: p("system.duckdb.pre-migrate.tmp-42"),
                cause: io(),
            },
            Error::Rename {
                from: p("system.duckdb.pre-migrate.tmp-42"),
                to: p("system.duckdb.pre-migrate"),
                cause: io(),
            },
            Error::SyncDir {
                dir: p(""),
                cause: io(),
            },
            Error::List {
                dir: p(""),
                cause: io(),
            },
            Error::Remove {
                path: p("system.duckdb.broken.20261127T101500Z"),
                cause: io(),
            },
            Error::NamesExhausted {
                db: p("system.duckdb"),
                last: p("system.duckdb.broken.20261127T101500Z-100000"),
            },
            Error::RecoveryInFlight {
                db: p("system.duckdb"),
                marker: p("system.duckdb.recovering"),
            },
        ];
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for t in &text {
            assert!(
                t.starts_with(char::is_lowercase) || t.starts_with('/'),
                "{t}"
            );
            assert!(!t.ends_with('.'), "{t}");
        }
        insta::assert_snapshot!(text.join("\n"));
    }
}
