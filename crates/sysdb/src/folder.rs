//! What an open needs of the folder before it reads anything, and the room
//! a recovery may take: for a prediction (`sysdb check`) made on a copy
//! elsewhere, and for the advice after a full disk.

use camino::Utf8Path;

use crate::report::Recovering;
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

/// [`Error::Missing`] unless `path` is there (a file, or a link even if
/// dangling): what an operation by hand (`doing`) works from.
pub(crate) fn require(path: &Utf8Path, doing: &'static str) -> Result<()> {
    match fs_err::symlink_metadata(path) {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::Missing {
            path: path.to_owned(),
            doing,
        }),
    }
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
    let logs: u64 = paths.files().sidecars().iter().map(|s| size(s)).sum();
    db.saturating_add(logs.saturating_mul(2)).saturating_mul(3)
}

/// Copy the state folder's files into the empty folder `scratch`, for an
/// open run on the copy to predict what one on the real files would do
/// (`sysdb check`): the database, its sidecars, the snapshots and the
/// markers; quarantine sets as empty files of the same names (an open only
/// needs to know they exist), except the newest, copied whole, when a
/// killed recovery is to be finished from it, with the copy that recovery
/// replayed. The paths of the copy.
pub fn copy_state(paths: &Paths, scratch: &Utf8Path) -> Result<Paths> {
    let copying = |path: &Utf8Path| {
        let path = path.to_owned();
        move |cause| Error::CopyState { path, cause }
    };
    let copy = Paths::for_db(scratch.join(paths.files().name()))?;
    let mut pairs = vec![
        (paths.db().to_owned(), copy.db().to_owned()),
        (paths.snapshot(), copy.snapshot()),
        (paths.previous_snapshot(), copy.previous_snapshot()),
    ];
    pairs.extend(
        paths
            .files()
            .sidecars()
            .into_iter()
            .zip(copy.files().sidecars()),
    );
    for (from, to) in pairs {
        if from.exists() {
            fs_err::copy(&from, &to).map_err(copying(&from))?;
        }
    }
    // The marker names its snapshot by file name, size and checksum, so it
    // holds for the copy as it is.
    if paths.marker().exists() {
        fs_err::copy(paths.marker(), copy.marker()).map_err(copying(&paths.marker()))?;
    }
    // A recovery that was killed is finished from the newest set: that one
    // is copied whole.
    let resuming = paths.recovering().exists();
    if resuming {
        fs_err::copy(paths.recovering(), copy.recovering())
            .map_err(copying(&paths.recovering()))?;
        // The database that recovery replayed on a copy, which it restores.
        let replayed = Recovering::read(&paths.recovering())
            .ok()
            .flatten()
            .and_then(|r| r.replayed);
        if let Some(relative) = replayed {
            let (from, to) = (paths.dir().join(&relative), scratch.join(&relative));
            if from.exists() {
                if let Some(dir) = to.parent() {
                    fs_err::create_dir_all(dir).map_err(copying(dir))?;
                }
                fs_err::copy(&from, &to).map_err(copying(&from))?;
            }
        }
    }
    let sets = sysdb_snapshot::list(paths.files()).map_err(Error::quarantine(paths.db()))?;
    for (i, set) in sets.into_iter().enumerate() {
        for (file, _) in set.files {
            if let Some(name) = file.file_name() {
                let to = scratch.join(name);
                if resuming && i == 0 {
                    fs_err::copy(&file, &to).map_err(copying(&file))?;
                } else {
                    fs_err::write(&to, b"").map_err(copying(&file))?;
                }
            }
        }
    }
    Ok(copy)
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
    fn the_state_copy_holds_the_files_and_names_the_sets() {
        let real = tempfile::tempdir().expect("temp dir");
        let paths = Paths::for_db(
            camino::Utf8PathBuf::try_from(real.path().join("system.duckdb")).expect("utf-8"),
        )
        .expect("paths");
        for (suffix, bytes) in [
            ("", "db"),
            (".wal", "wal"),
            (".pre-migrate", "snapshot"),
            (".migrating", "marker"),
            (".broken.20261127T101500Z", "old set"),
            (".broken.20261127T101501Z", "new set"),
            (".broken.20261127T101501Z.wal", "new set's log"),
        ] {
            fs_err::write(paths.files().sibling(suffix), bytes).expect("write");
        }
        let read = |dir: &std::path::Path| -> Vec<(String, String)> {
            let mut files: Vec<(String, String)> = fs_err::read_dir(dir)
                .expect("list")
                .map(|e| {
                    let e = e.expect("entry");
                    let name = e.file_name().to_string_lossy().into_owned();
                    (name, fs_err::read_to_string(e.path()).expect("read"))
                })
                .collect();
            files.sort();
            files
        };
        let copy_of = |dir: &tempfile::TempDir| {
            let scratch = camino::Utf8PathBuf::try_from(dir.path().to_owned()).expect("utf-8");
            copy_state(&paths, &scratch).expect("copy")
        };

        let scratch = tempfile::tempdir().expect("temp dir");
        let copy = copy_of(&scratch);
        assert_eq!(copy.db(), scratch.path().join("system.duckdb"));
        let blank = |name: &str| (name.to_owned(), String::new());
        let kept = |name: &str, text: &str| (name.to_owned(), text.to_owned());
        assert_eq!(
            read(scratch.path()),
            [
                kept("system.duckdb", "db"),
                blank("system.duckdb.broken.20261127T101500Z"),
                blank("system.duckdb.broken.20261127T101501Z"),
                blank("system.duckdb.broken.20261127T101501Z.wal"),
                kept("system.duckdb.migrating", "marker"),
                kept("system.duckdb.pre-migrate", "snapshot"),
                kept("system.duckdb.wal", "wal"),
            ]
        );

        // A killed recovery is finished from the newest set: copied whole.
        fs_err::write(paths.recovering(), "{}").expect("write");
        let scratch = tempfile::tempdir().expect("temp dir");
        copy_of(&scratch);
        let files = read(scratch.path());
        assert!(files.contains(&kept(
            "system.duckdb.broken.20261127T101501Z.wal",
            "new set's log"
        )));
        assert!(files.contains(&blank("system.duckdb.broken.20261127T101500Z")));
        assert!(files.contains(&kept("system.duckdb.recovering", "{}")));
        // The real folder is as it was.
        assert_eq!(read(real.path()).len(), 8);
    }

    #[test]
    fn a_writable_folder_passes_and_a_missing_one_is_made_from_its_parent() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = camino::Utf8PathBuf::try_from(dir.path().to_owned()).expect("utf-8");
        preflight(&Paths::from_data_dir(&root).expect("paths")).expect("writable");
        preflight(&Paths::from_data_dir(root.join("not/yet")).expect("paths")).expect("makeable");
    }
}
