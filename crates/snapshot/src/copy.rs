//! The durable copy behind [`take`] and [`restore`].

use fs_err::os::unix::fs::OpenOptionsExt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use camino::{Utf8Path, Utf8PathBuf};

use crate::names::DbFiles;
use crate::{sync_dir, ClosedDb, Error, Moved, Result};

/// Bytes copied between two progress reports (and two chances to stop).
const CHUNK: u64 = 8 << 20;

/// A step of a durable copy, reported to the `progress` callback of
/// [`take_with`] and [`restore_with`] as it completes.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The destination's file system has room for the copy.
    SpaceChecked {
        /// Bytes the copy needs.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The temporary file exists (empty).
    TempCreated,
    /// Part of the bytes are in the temporary file; reported after every
    /// chunk, and once with `done == total` at the end (also after a clone).
    Copying {
        /// Bytes copied so far.
        done: u64,
        /// Bytes to copy.
        total: u64,
    },
    /// The temporary file's bytes are on disk.
    Synced,
    /// The temporary file has the destination's name.
    Renamed,
    /// The rename is on disk: the copy is complete and durable.
    DirSynced,
}

/// How the bytes were copied.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMethod {
    /// A copy-on-write clone (reflink): instant, and no extra space until
    /// either file changes.
    Reflink,
    /// A streamed copy of every byte.
    Stream,
}

/// The result of a durable copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// The source file.
    pub from: Utf8PathBuf,
    /// The destination file, now complete and durable.
    pub to: Utf8PathBuf,
    /// Bytes copied.
    pub bytes: u64,
    /// How they were copied.
    pub method: CopyMethod,
}

/// Make the pre-migrate snapshot `<db>.pre-migrate` from the closed database.
///
/// The previous snapshot, if any, stays in place until the new one is
/// complete and durable, then is replaced by a rename.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = camino::Utf8PathBuf::try_from(dir.path().join("system.duckdb"))?;
/// use sysdb_snapshot::{take, ClosedDb, DbFiles};
///
/// std::fs::write(&path, b"database bytes")?;
/// let db = ClosedDb::assume_closed(DbFiles::new(&path)?);
/// let copied = take(&db)?;
/// assert_eq!(copied.to, db.files().snapshot());
/// assert_eq!(std::fs::read(&copied.to)?, b"database bytes");
/// # Ok(()) }
/// ```
pub fn take(db: &ClosedDb) -> Result<Copied> {
    take_with(db, &mut |_| {})
}

/// [`take`], reporting each [`Step`] to `progress` as it completes.
pub fn take_with(db: &ClosedDb, progress: &mut dyn FnMut(Step)) -> Result<Copied> {
    stage_take(db, progress)?.commit(progress)
}

/// The first half of [`take_with`]: the snapshot's bytes copied to a
/// temporary name beside it and synced, the snapshot itself not touched.
/// [`Staged::commit`] puts the copy in place; dropping the [`Staged`]
/// instead removes it. Between the two, the caller may decide that the
/// copy must not become the snapshot (its source turned out damaged).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = camino::Utf8PathBuf::try_from(dir.path().join("system.duckdb"))?;
/// use sysdb_snapshot::{stage_take, ClosedDb, DbFiles};
///
/// std::fs::write(&path, b"damaged bytes")?;
/// let db = ClosedDb::assume_closed(DbFiles::new(&path)?);
/// drop(stage_take(&db, &mut |_| {})?);
/// assert!(!db.files().snapshot().exists());
/// assert_eq!(std::fs::read_dir(dir.path())?.count(), 1, "the copy is gone");
///
/// std::fs::write(&path, b"good bytes")?;
/// let staged = stage_take(&db, &mut |_| {})?;
/// assert!(!db.files().snapshot().exists());
/// let copied = staged.commit(&mut |_| {})?;
/// assert_eq!(std::fs::read(&copied.to)?, b"good bytes");
/// # Ok(()) }
/// ```
pub fn stage_take(db: &ClosedDb, progress: &mut dyn FnMut(Step)) -> Result<Staged> {
    let files = db.files();
    stage_copy(
        files.db(),
        &files.snapshot(),
        Replace::Allow,
        &RealDisk,
        progress,
    )
}

/// Before a migration window replaces the snapshot: move it to
/// `<db>.pre-migrate.previous`, unless a previous one is kept already
/// (the last window did not complete, and the older snapshot is the one to
/// keep). The previous snapshot stays until a window completes
/// ([`forget_previous`]), so a window that snapshots a database whose
/// damage only its migration finds never replaces the last good copy.
///
/// Returns the move, if one was made.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = camino::Utf8PathBuf::try_from(dir.path().join("system.duckdb"))?;
/// use sysdb_snapshot::{forget_previous, keep_previous, take, ClosedDb, DbFiles};
///
/// std::fs::write(&path, b"v1")?;
/// let db = ClosedDb::assume_closed(DbFiles::new(&path)?);
/// take(&db)?;
/// assert!(keep_previous(&db)?.is_some());
/// std::fs::write(&path, b"v2")?;
/// take(&db)?;
/// assert!(keep_previous(&db)?.is_none(), "the older one stays");
/// assert_eq!(std::fs::read(db.files().previous_snapshot())?, b"v1");
/// assert!(forget_previous(db.files())?);
/// # Ok(()) }
/// ```
pub fn keep_previous(db: &ClosedDb) -> Result<Option<Moved>> {
    let files = db.files();
    let (from, to) = (files.snapshot(), files.previous_snapshot());
    let Ok(meta) = fs_err::symlink_metadata(&from) else {
        return Ok(None);
    };
    if fs_err::symlink_metadata(&to).is_ok() {
        return Ok(None);
    }
    io_point("snapshot::previous::rename")
        .and_then(|()| rename_noreplace(&from, &to))
        .map_err(|source| Error::Rename {
            from: from.clone(),
            to: to.clone(),
            cause: source,
        })?;
    sync_dir(files.dir())?;
    Ok(Some(Moved {
        from,
        to,
        bytes: meta.len(),
    }))
}

/// A migration window completed: the previous snapshot kept by
/// [`keep_previous`] is no longer needed. `Ok(false)` when there was none.
pub fn forget_previous(files: &DbFiles) -> Result<bool> {
    crate::remove_durably(&files.previous_snapshot())
}

/// Put the copy at `from` (a snapshot, or a quarantined database file) back
/// at the database's path by durable copy; `from` stays where it is.
///
/// Refuses, changing nothing, when the database file or any of its sidecars
/// exists: a restored file must never be overwritten by accident nor meet a
/// write-ahead log that belongs to another file. Quarantine them first.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = camino::Utf8PathBuf::try_from(dir.path().join("system.duckdb"))?;
/// use sysdb_snapshot::{quarantine, restore, take, ClosedDb, DbFiles};
///
/// std::fs::write(&path, b"checkpointed bytes")?;
/// let db = ClosedDb::assume_closed(DbFiles::new(&path)?);
/// let snapshot = take(&db)?.to;
/// quarantine(&db)?;
/// restore(&db, &snapshot)?;
/// assert_eq!(std::fs::read(&path)?, b"checkpointed bytes");
/// assert!(snapshot.exists());
/// # Ok(()) }
/// ```
pub fn restore(db: &ClosedDb, from: &Utf8Path) -> Result<Copied> {
    restore_with(db, from, &mut |_| {})
}

/// [`restore`], reporting each [`Step`] to `progress` as it completes.
pub fn restore_with(
    db: &ClosedDb,
    from: &Utf8Path,
    progress: &mut dyn FnMut(Step),
) -> Result<Copied> {
    let files = db.files();
    refuse_symlink(from)?;
    refuse_occupied(files, from)?;
    durable_copy(from, files.db(), Replace::Never, &RealDisk, progress)
}

/// Move `from`, a complete database file already synced to disk on the
/// same file system (a copy a replay built beside the database), into the
/// database's place by rename, and sync the folder. Like [`restore`], it
/// refuses while the database or a sidecar is in place; unlike it, `from`
/// is gone afterwards: a move either happened whole or not at all.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = camino::Utf8PathBuf::try_from(dir.path().join("system.duckdb"))?;
/// use sysdb_snapshot::{install, ClosedDb, DbFiles};
///
/// let built = path.with_file_name("replayed.duckdb");
/// std::fs::write(&built, b"replayed bytes")?;
/// let db = ClosedDb::assume_closed(DbFiles::new(&path)?);
/// install(&db, &built)?;
/// assert_eq!(std::fs::read(&path)?, b"replayed bytes");
/// assert!(!built.exists());
/// # Ok(()) }
/// ```
pub fn install(db: &ClosedDb, from: &Utf8Path) -> Result<Moved> {
    let files = db.files();
    refuse_symlink(from)?;
    refuse_occupied(files, from)?;
    let bytes = fs_err::metadata(from)
        .map_err(|source| Error::OpenSource {
            path: from.to_owned(),
            cause: source,
        })?
        .len();
    io_point("snapshot::install::rename")
        .and_then(|()| rename_noreplace(from, files.db()))
        .map_err(|source| Error::Rename {
            from: from.to_owned(),
            to: files.db().to_owned(),
            cause: source,
        })?;
    sync_dir(files.dir())?;
    Ok(Moved {
        from: from.to_owned(),
        to: files.db().to_owned(),
        bytes,
    })
}

/// Refuse to put `from` in the database's place while the database or a
/// sidecar is there.
fn refuse_occupied(files: &DbFiles, from: &Utf8Path) -> Result<()> {
    for path in std::iter::once(files.db().to_owned()).chain(files.sidecars()) {
        if fs_err::symlink_metadata(&path).is_ok() {
            return Err(Error::Occupied {
                from: from.to_owned(),
                path,
            });
        }
    }
    Ok(())
}

/// Refuse `path` if it is a symbolic link: a copy is never written through
/// one, nor a restore read through one (it may lead anywhere).
pub(crate) fn refuse_symlink(path: &Utf8Path) -> Result<()> {
    match fs_err::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(Error::Symlink {
            path: path.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Whether the final rename may replace an existing destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replace {
    Allow,
    Never,
}

/// What a durable copy asks of the disk; tests put failures here.
pub(crate) trait Disk {
    /// Bytes available to this user on the file system holding `dir`.
    fn available_space(&self, dir: &Utf8Path) -> io::Result<u64>;
    /// Clone `from` into the empty `to`, or fail if the file system cannot.
    fn reflink(&self, from: &File, to: &File) -> io::Result<()>;
    /// Copy what `from` yields into `to`, returning the bytes copied.
    fn copy_chunk(&self, from: &mut io::Take<&File>, to: &mut &File) -> io::Result<u64>;
}

/// Bytes available to this user on the file system holding `dir`.
pub fn available_space(dir: &Utf8Path) -> io::Result<u64> {
    RealDisk.available_space(dir)
}

/// The real disk.
pub(crate) struct RealDisk;

impl Disk for RealDisk {
    fn available_space(&self, dir: &Utf8Path) -> io::Result<u64> {
        let st = rustix::fs::statvfs(dir.as_std_path())?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    fn reflink(&self, from: &File, to: &File) -> io::Result<()> {
        reflink_copy::reflink_file(from, to)
    }

    fn copy_chunk(&self, from: &mut io::Take<&File>, to: &mut &File) -> io::Result<u64> {
        // std copies File to File inside the kernel (copy_file_range), in
        // constant memory.
        io::copy(from, to)
    }
}

/// Copy `from` to `dest` durably: check space, write a temporary file in
/// `dest`'s folder, sync it, rename it into place, sync the folder. On any
/// failure the temporary file is removed and `dest` is as it was.
pub(crate) fn durable_copy(
    from: &Utf8Path,
    dest: &Utf8Path,
    replace: Replace,
    disk: &dyn Disk,
    progress: &mut dyn FnMut(Step),
) -> Result<Copied> {
    stage_copy(from, dest, replace, disk, progress)?.commit(progress)
}

/// A durable copy's bytes in a synced temporary file beside its
/// destination, not yet in place: [`commit`](Self::commit) renames it there
/// and syncs the folder; dropping it removes the temporary file.
#[derive(Debug)]
#[must_use = "dropping a staged copy removes it; commit puts it in place"]
pub struct Staged {
    from: Utf8PathBuf,
    dest: Utf8PathBuf,
    dir: Utf8PathBuf,
    temp: Utf8PathBuf,
    guard: TempGuard,
    replace: Replace,
    bytes: u64,
    method: CopyMethod,
}

impl Staged {
    /// Bytes copied.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// How they were copied.
    pub fn method(&self) -> CopyMethod {
        self.method
    }

    /// Rename the copy into place and sync the folder: from here on the
    /// destination holds the new bytes, durably.
    pub fn commit(mut self, progress: &mut dyn FnMut(Step)) -> Result<Copied> {
        let (temp, dest) = (&self.temp, &self.dest);
        let renamed = io_point("snapshot::copy::rename").and_then(|()| match self.replace {
            Replace::Allow => fs_err::rename(temp, dest),
            Replace::Never => rename_noreplace(temp, dest),
        });
        renamed.map_err(|source| Error::Rename {
            from: temp.clone(),
            to: dest.clone(),
            cause: source,
        })?;
        self.guard.0 = None;
        progress(Step::Renamed);

        io_point("snapshot::copy::sync-dir").map_err(|source| Error::SyncDir {
            dir: self.dir.clone(),
            cause: source,
        })?;
        sync_dir(&self.dir)?;
        progress(Step::DirSynced);

        Ok(Copied {
            from: self.from.clone(),
            to: self.dest.clone(),
            bytes: self.bytes,
            method: self.method,
        })
    }
}

/// The first half of [`durable_copy`]: everything up to the rename.
fn stage_copy(
    from: &Utf8Path,
    dest: &Utf8Path,
    replace: Replace,
    disk: &dyn Disk,
    progress: &mut dyn FnMut(Step),
) -> Result<Staged> {
    let dir = DbFiles::new(dest)?.dir().to_owned();
    refuse_symlink(dest)?;
    let source = fs_err::File::open(from).map_err(|source| Error::OpenSource {
        path: from.to_owned(),
        cause: source,
    })?;
    let meta = source.metadata().map_err(|source| Error::OpenSource {
        path: from.to_owned(),
        cause: source,
    })?;
    let total = meta.len();

    remove_stale_temps(&dir, dest)?;

    let available = disk
        .available_space(&dir)
        .map_err(|source| Error::SpaceCheck {
            dest: dest.to_owned(),
            cause: source,
        })?;
    if available < total {
        return Err(Error::NoSpace {
            from: from.to_owned(),
            dest: dest.to_owned(),
            needed: total,
            available,
        });
    }
    progress(Step::SpaceChecked {
        needed: total,
        available,
    });

    let temp = DbFiles::temp_for(dest, std::process::id());
    let copy_error = |source| Error::Copy {
        from: from.to_owned(),
        temp: temp.clone(),
        cause: source,
    };
    // Created with the source's mode, never wider: a database kept at
    // 0600 does not get a world-readable copy.
    let out = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(meta.permissions().mode() & 0o7777)
        .open(&temp)
        .map_err(copy_error)?;
    let guard = TempGuard(Some(temp.clone()));
    // The umask may have narrowed it; it never widens what is set here.
    out.set_permissions(meta.permissions())
        .map_err(copy_error)?;
    // And the source's owner, where this process may give it (root may;
    // another user keeps the copy as its own).
    let _ = rustix::fs::fchown(
        out.file(),
        Some(rustix::fs::Uid::from_raw(meta.uid())),
        Some(rustix::fs::Gid::from_raw(meta.gid())),
    );
    progress(Step::TempCreated);

    let method = if disk.reflink(source.file(), out.file()).is_ok() {
        progress(Step::Copying { done: total, total });
        CopyMethod::Reflink
    } else {
        // A failed clone may have left bytes behind; start from empty.
        out.file().set_len(0).map_err(copy_error)?;
        let mut done = 0u64;
        let mut reader = source.file().take(CHUNK);
        loop {
            reader.set_limit(CHUNK);
            io_point("snapshot::copy::write").map_err(copy_error)?;
            let n = disk
                .copy_chunk(&mut reader, &mut out.file())
                .map_err(copy_error)?;
            if n == 0 {
                break;
            }
            done += n;
            progress(Step::Copying { done, total });
        }
        if done != total {
            return Err(copy_error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{from} changed size while it was copied ({total} bytes, then {done})"),
            )));
        }
        CopyMethod::Stream
    };

    io_point("snapshot::copy::sync")
        .and_then(|()| out.sync_all())
        .map_err(|source| Error::Sync {
            path: temp.clone(),
            cause: source,
        })?;
    drop(out);
    progress(Step::Synced);

    Ok(Staged {
        from: from.to_owned(),
        dest: dest.to_owned(),
        dir,
        temp,
        guard,
        replace,
        bytes: total,
        method,
    })
}

/// Rename `from` to `to`, failing with `AlreadyExists` instead of replacing
/// an existing `to`.
pub(crate) fn rename_noreplace(from: &Utf8Path, to: &Utf8Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(
        CWD,
        from.as_std_path(),
        CWD,
        to.as_std_path(),
        RenameFlags::NOREPLACE,
    ) {
        Ok(()) => Ok(()),
        // The file system cannot rename without replacing: a hard link fails
        // on an existing name just the same.
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            fs_err::hard_link(from, to)?;
            fs_err::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

/// A named failpoint (see [`FAILPOINTS`](crate::FAILPOINTS)) that a test
/// can turn into a crash or into an injected I/O error: `return(ENOSPC)`,
/// `return(EIO)`, `return(EACCES)`, `return(EROFS)`. Without the
/// `failpoints` feature it is nothing.
#[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
pub(crate) fn io_point(name: &str) -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    fail::fail_point!(name, |errno: Option<String>| Err(injected(
        errno.as_deref()
    )));
    Ok(())
}

/// The error a failpoint's `return(ERRNO)` injects.
#[cfg(feature = "failpoints")]
fn injected(errno: Option<&str>) -> io::Error {
    use rustix::io::Errno;
    let errno = match errno {
        Some("ENOSPC") => Errno::NOSPC,
        Some("EIO") => Errno::IO,
        Some("EACCES") => Errno::ACCESS,
        Some("EROFS") => Errno::ROFS,
        other => return io::Error::other(format!("injected failure {other:?}")),
    };
    io::Error::from_raw_os_error(errno.raw_os_error())
}

/// Removes the temporary file unless emptied.
#[derive(Debug)]
struct TempGuard(Option<Utf8PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // Best effort: the error that got us here is the one to report.
            let _ = fs_err::remove_file(path);
        }
    }
}

/// Remove temporary files of earlier copies to `dest` whose process is gone
/// (killed mid-copy) or is this one.
pub(crate) fn remove_stale_temps(dir: &Utf8Path, dest: &Utf8Path) -> Result<()> {
    let Some(dest_name) = dest.file_name() else {
        return Ok(());
    };
    let prefix = format!("{dest_name}.tmp-");
    let entries = fs_err::read_dir(dir).map_err(|source| Error::List {
        dir: dir.to_owned(),
        cause: source,
    })?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || !process_alive(pid) {
            let path = dir.join(name.to_string_lossy().as_ref());
            fs_err::remove_file(&path).map_err(|source| Error::Remove {
                path,
                cause: source,
            })?;
        }
    }
    Ok(())
}

/// Whether a process with this pid exists in this pid namespace (one of
/// another user does too). Files that name a dead process's pid — a temp
/// copy, the lock file's holder — are stale.
pub fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // EPERM means the process exists but belongs to someone else.
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A disk that can fail: too little space, a read error or a full file
    /// system after some bytes.
    struct FaultyDisk {
        available: u64,
        fail_after: Option<(u64, io::ErrorKind)>,
    }

    impl Disk for FaultyDisk {
        fn available_space(&self, _: &Utf8Path) -> io::Result<u64> {
            Ok(self.available)
        }
        fn reflink(&self, _: &File, _: &File) -> io::Result<()> {
            Err(io::ErrorKind::Unsupported.into())
        }
        fn copy_chunk(&self, from: &mut io::Take<&File>, to: &mut &File) -> io::Result<u64> {
            let Some((limit, kind)) = self.fail_after else {
                return io::copy(from, to);
            };
            let mut buf = vec![0u8; usize::try_from(limit).expect("small limit")];
            let n = from.read(&mut buf)?;
            io::Write::write_all(to, &buf[..n])?;
            Err(io::Error::new(kind, "injected failure"))
        }
    }

    fn setup(bytes: &[u8], old_snapshot: &[u8]) -> (tempfile::TempDir, DbFiles) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Utf8PathBuf::try_from(dir.path().join("system.duckdb")).expect("utf-8 path");
        let files = DbFiles::new(db).expect("valid path");
        fs_err::write(files.db(), bytes).expect("write db");
        fs_err::write(files.snapshot(), old_snapshot).expect("write snapshot");
        (dir, files)
    }

    fn names(dir: &tempfile::TempDir) -> Vec<String> {
        let mut v: Vec<String> = fs_err::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// `take` onto a faulty disk.
    fn snapshot_on(disk: &FaultyDisk, files: &DbFiles) -> Result<Copied> {
        durable_copy(
            files.db(),
            &files.snapshot(),
            Replace::Allow,
            disk,
            &mut |_| {},
        )
    }

    fn assert_untouched(dir: &tempfile::TempDir, files: &DbFiles) {
        assert_eq!(
            fs_err::read(files.snapshot()).expect("read"),
            b"old snapshot"
        );
        assert_eq!(names(dir), ["system.duckdb", "system.duckdb.pre-migrate"]);
    }

    #[test]
    fn a_read_error_keeps_the_old_snapshot_and_no_temp_file() {
        let (dir, files) = setup(&[7u8; 100_000], b"old snapshot");
        let disk = FaultyDisk {
            available: u64::MAX,
            fail_after: Some((4096, io::ErrorKind::Other)),
        };
        let err = snapshot_on(&disk, &files).expect_err("injected read error");
        assert!(matches!(err, Error::Copy { .. }), "{err:?}");
        assert_untouched(&dir, &files);
    }

    #[test]
    fn a_full_file_system_mid_copy_keeps_the_old_snapshot_and_no_temp_file() {
        let (dir, files) = setup(&[7u8; 100_000], b"old snapshot");
        let disk = FaultyDisk {
            available: u64::MAX,
            fail_after: Some((50_000, io::ErrorKind::StorageFull)),
        };
        let err = snapshot_on(&disk, &files).expect_err("injected full disk");
        match err {
            Error::Copy { cause: source, .. } => {
                assert_eq!(source.kind(), io::ErrorKind::StorageFull)
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_untouched(&dir, &files);
    }

    #[test]
    fn too_little_space_is_refused_before_writing() {
        let (dir, files) = setup(&[7u8; 100_000], b"old snapshot");
        let disk = FaultyDisk {
            available: 99_999,
            fail_after: None,
        };
        let err = snapshot_on(&disk, &files).expect_err("no space");
        assert!(
            matches!(
                err,
                Error::NoSpace {
                    needed: 100_000,
                    available: 99_999,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_untouched(&dir, &files);
    }

    #[test]
    fn steps_are_reported_in_order() {
        let (_dir, files) = setup(&vec![1u8; (CHUNK * 2 + 10) as usize], b"old snapshot");
        let mut steps = Vec::new();
        let disk = FaultyDisk {
            available: u64::MAX,
            fail_after: None,
        };
        durable_copy(
            files.db(),
            &files.snapshot(),
            Replace::Allow,
            &disk,
            &mut |s| steps.push(s),
        )
        .expect("copy");
        let total = CHUNK * 2 + 10;
        assert_eq!(
            steps,
            [
                Step::SpaceChecked {
                    needed: total,
                    available: u64::MAX
                },
                Step::TempCreated,
                Step::Copying { done: CHUNK, total },
                Step::Copying {
                    done: CHUNK * 2,
                    total
                },
                Step::Copying { done: total, total },
                Step::Synced,
                Step::Renamed,
                Step::DirSynced,
            ]
        );
    }

    #[test]
    fn stale_temp_files_of_dead_processes_are_removed() {
        let (dir, files) = setup(b"db", b"old snapshot");
        // No process has pid 2^22 + 1 on Linux (pid_max is at most 2^22).
        let stale = DbFiles::temp_for(&files.snapshot(), 4_194_305);
        fs_err::write(&stale, b"partial").expect("write stale temp");
        take(&ClosedDb::assume_closed(files.clone())).expect("take");
        assert_eq!(names(&dir), ["system.duckdb", "system.duckdb.pre-migrate"]);
    }

    #[test]
    fn restore_refuses_to_overwrite_a_database_or_meet_a_wal() {
        let (dir, files) = setup(b"live", b"old snapshot");
        let db = ClosedDb::assume_closed(files.clone());
        let err = restore(&db, &files.snapshot()).expect_err("database exists");
        assert!(
            matches!(err, Error::Occupied { ref path, .. } if path == files.db()),
            "{err:?}"
        );
        fs_err::remove_file(files.db()).expect("remove db");
        fs_err::write(files.wal(), b"wal").expect("write wal");
        let err = restore(&db, &files.snapshot()).expect_err("wal exists");
        assert!(
            matches!(err, Error::Occupied { ref path, .. } if *path == files.wal()),
            "{err:?}"
        );
        assert_eq!(
            names(&dir),
            ["system.duckdb.pre-migrate", "system.duckdb.wal"]
        );
    }

    #[test]
    fn rename_noreplace_never_replaces() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = Utf8PathBuf::try_from(dir.path().join("a")).expect("utf-8");
        let b = Utf8PathBuf::try_from(dir.path().join("b")).expect("utf-8");
        fs_err::write(&a, b"a").expect("write");
        fs_err::write(&b, b"b").expect("write");
        let err = rename_noreplace(&a, &b).expect_err("b exists");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs_err::read(&b).expect("read"), b"b");
        assert_eq!(fs_err::read(&a).expect("read"), b"a");
    }
}
