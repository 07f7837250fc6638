//! What an open needs of the folder before it reads anything, and the room
//! a recovery may take: for a prediction (`sysdb check`) made on a copy
//! elsewhere, and for the advice after a full disk.

use camino::Utf8Path;

use crate::{Error, Paths, Result};

/// Whether the folder lets an open do what it does first: create the state
/// folder if it is missing, and open the lock file for writing (creating
/// it if missing). Reads the file system's answer (`access`), writing
/// nothing; the error is the one the open would give.
pub fn preflight(paths: &Paths) -> Result<()> {
    use rustix::fs::{access, Access};
    let folder = |dir: &Utf8Path, cause: std::io::Error| Error::Folder {
        path: dir.to_owned(),
        cause,
    };
    // The nearest folder that exists must let the missing ones be made.
    let Some(existing) = paths.dir().ancestors().find(|d| d.is_dir()) else {
        return Ok(());
    };
    if existing != paths.dir() {
        return access(existing.as_std_path(), Access::WRITE_OK | Access::EXEC_OK)
            .map_err(|e| folder(paths.dir(), e.into()));
    }
    let lock = paths.lock();
    let lock_error = |e: rustix::io::Errno| Error::Lock {
        path: lock.clone(),
        cause: e.into(),
    };
    if fs_err::symlink_metadata(&lock).is_ok() {
        access(lock.as_std_path(), Access::READ_OK | Access::WRITE_OK).map_err(lock_error)?;
    }
    // Every open writes beside the database: the lock file, a new
    // database, a recovery's copies, the snapshot.
    access(
        paths.dir().as_std_path(),
        Access::WRITE_OK | Access::EXEC_OK,
    )
    .map_err(lock_error)
}

/// The most room a recovery of the files as they are may take beside them,
/// with the migration that follows: three copies of the database with its
/// log folded in (the copy the log is replayed into, the copy the ladder
/// runs on before anything is moved, the pre-migrate snapshot the
/// migration takes), each counted as the database plus twice its log (a
/// checkpoint that folds the log in may write more than the log holds).
/// An upper estimate: a crashed folder of a 1.3 MiB database and a
/// 130 KiB log, recovered and migrated, needed 3.0 to 3.2 MiB; this says
/// 4.5 MiB.
pub fn recovery_space(paths: &Paths) -> u64 {
    let size = |p: &Utf8Path| fs_err::metadata(p).map_or(0, |m| m.len());
    let db = size(paths.db());
    let logs: u64 = sysdb_snapshot::SIDECAR_SUFFIXES
        .iter()
        .map(|s| size(&paths.files().sibling(s)))
        .sum();
    db.saturating_add(logs.saturating_mul(2)).saturating_mul(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_is_three_copies_of_the_database_and_twice_its_logs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let paths = Paths::for_db(
            camino::Utf8PathBuf::try_from(dir.path().join("system.duckdb")).expect("utf-8"),
        )
        .expect("paths");
        assert_eq!(recovery_space(&paths), 0);
        fs_err::write(paths.db(), vec![0; 1000]).expect("db");
        fs_err::write(paths.wal(), vec![0; 100]).expect("wal");
        fs_err::write(paths.files().sibling(".wal.recovery"), vec![0; 10]).expect("sidecar");
        assert_eq!(recovery_space(&paths), 3 * (1000 + 2 * 110));
    }

    #[test]
    fn a_writable_folder_passes_and_a_missing_one_is_made_from_its_parent() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = camino::Utf8PathBuf::try_from(dir.path().to_owned()).expect("utf-8");
        preflight(&Paths::from_data_dir(&root).expect("paths")).expect("writable");
        preflight(&Paths::from_data_dir(root.join("not/yet")).expect("paths")).expect("makeable");
    }
}
