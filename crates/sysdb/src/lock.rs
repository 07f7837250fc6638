//! The advisory lock that keeps two processes from recovering or migrating
//! the same database at once.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use camino::Utf8Path;
use fs_err::os::unix::fs::OpenOptionsExt;

use crate::{Error, Result};

/// How often a waiting process retries the lock.
const RETRY: Duration = Duration::from_millis(25);

/// An exclusive `flock` on `system.duckdb.lock`, held until dropped. The
/// file holds the holder's pid, for the error the next process gets; a
/// clean release empties it again. Or the proof that a process this one
/// descends from holds it ([`OpenOptions::inherit_lock`](crate::OpenOptions::inherit_lock)),
/// which then has nothing to release.
#[derive(Debug)]
pub struct OpenLock {
    /// `None`: held by an ancestor.
    file: Option<fs_err::File>,
}

impl Drop for OpenLock {
    fn drop(&mut self) {
        // Still locked here: the flock goes with the descriptor, after this.
        // A failure only leaves a pid that `holder` sees is no longer alive.
        if let Some(file) = &self.file {
            let _ = file.set_len(0);
        }
    }
}

/// Take the lock, waiting up to `wait` for another holder to let go.
pub(crate) fn acquire(path: &Utf8Path, wait: Duration) -> Result<OpenLock> {
    let io_error = |source| Error::Lock {
        path: path.to_owned(),
        cause: source,
    };
    // Not writable by others whatever the umask, and never through a
    // symbolic link (the pid would be written wherever it points).
    let mut file = fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(io_error)?;
    let started = Instant::now();
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
                if started.elapsed() >= wait {
                    return Err(Error::Locked {
                        path: path.to_owned(),
                        pid: holder(&mut file),
                        waited: started.elapsed(),
                    });
                }
                std::thread::sleep(RETRY);
            }
            Err(e) => return Err(io_error(e.into())),
        }
    }
    // One write of a fixed width over whatever an earlier holder left, so
    // a reader never sees half of one pid and half of another. The pid is
    // for messages only: no fsync on every open.
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.write_all(format!("{:>10}\n", std::process::id()).as_bytes()))
        .and_then(|()| file.set_len(PID_LINE))
        .map_err(io_error)?;
    Ok(OpenLock { file: Some(file) })
}

/// Run under the lock of a process this one descends from, when that
/// process holds it (and has written its pid); take it as [`acquire`]
/// does otherwise (also when this process holds it itself: a second
/// taking waits, as ever). The holder must keep it until this process ends: a
/// service that takes the lock itself and then runs `sysdb migrate
/// --inherit-lock`, or the probe child an open starts.
pub(crate) fn acquire_or_inherit(path: &Utf8Path, wait: Duration) -> Result<OpenLock> {
    if let Some(LockHolder { pid: Some(holder) }) = holder_now(path) {
        if lineage().any(|pid| pid == holder) {
            tracing::debug!(lock = %path, holder, "running under the open lock of a process this one descends from");
            return Ok(OpenLock { file: None });
        }
    }
    acquire(path, wait)
}

/// This process's parent, and theirs up to init (the parents beyond the
/// first read from `/proc`, where there is one).
fn lineage() -> impl Iterator<Item = u32> {
    let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get().unsigned_abs());
    std::iter::successors(parent, |&pid| {
        let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parent_in_stat(&stat).filter(|&p| p > 1)
    })
    .take(64)
}

/// The parent's pid in a `/proc/<pid>/stat` line: the field after the
/// state, which follows the command's name in parentheses (a name that may
/// hold spaces and parentheses itself).
fn parent_in_stat(stat: &str) -> Option<u32> {
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// A process that holds the open lock.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockHolder {
    /// Its pid, when it wrote one and that process lives.
    pub pid: Option<u32>,
}

/// Who holds the lock now, without taking it for long and without creating
/// the lock file: `None` when nobody does.
pub(crate) fn holder_now(path: &Utf8Path) -> Option<LockHolder> {
    let mut file = fs_err::File::open(path).ok()?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) => None,
        Err(_) => Some(LockHolder {
            pid: holder(&mut file),
        }),
    }
}

/// The length of the pid line the holder writes.
const PID_LINE: u64 = 11;

/// The pid the holder wrote into the lock file, if readable. A holder
/// that has just taken the lock writes its pid a moment later, over an
/// empty file or over the pid of a holder that was killed; so a file that
/// is empty or names a process that no longer exists is read again for up
/// to a second (a loaded machine can hold a process back that long), and
/// never reported as the holder.
fn holder(file: &mut fs_err::File) -> Option<u32> {
    for _ in 0..200 {
        let mut text = String::new();
        file.seek(SeekFrom::Start(0)).ok()?;
        file.read_to_string(&mut text).ok()?;
        if let Ok(pid) = text.trim().parse::<u32>() {
            if sysdb_snapshot::process_alive(pid) {
                return Some(pid);
            }
        } else if !text.trim().is_empty() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use camino::Utf8PathBuf;

    #[test]
    fn a_second_holder_waits_then_gets_the_first_ones_pid() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = Utf8PathBuf::try_from(dir.path().join("system.duckdb.lock")).expect("utf-8");
        let first = acquire(&path, Duration::ZERO).expect("first lock");
        let started = Instant::now();
        let err = acquire(&path, Duration::from_millis(200)).expect_err("second lock");
        assert!(started.elapsed() >= Duration::from_millis(200));
        match err {
            Error::Locked { pid, .. } => assert_eq!(pid, Some(std::process::id())),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            holder_now(&path),
            Some(LockHolder {
                pid: Some(std::process::id())
            })
        );
        drop(first);
        assert_eq!(fs_err::read_to_string(&path).expect("lock file"), "");
        assert_eq!(holder_now(&path), None);
        acquire(&path, Duration::ZERO).expect("lock after release");
    }

    #[test]
    fn the_parent_is_read_after_the_name_whatever_it_holds() {
        assert_eq!(
            parent_in_stat("4242 (python3) S 17 4242 4242 0 -1"),
            Some(17)
        );
        assert_eq!(parent_in_stat("9 (a) b (c)) R 3 9 9 0 -1"), Some(3));
        assert_eq!(parent_in_stat("9 (x"), None);
        let own = fs_err::read_to_string("/proc/self/stat").expect("this process's stat");
        let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get().unsigned_abs());
        assert_eq!(parent_in_stat(&own), parent);
    }

    #[test]
    fn the_lineage_is_the_parents_and_not_this_process() {
        let lineage: Vec<u32> = lineage().collect();
        let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get().unsigned_abs());
        assert_eq!(lineage.first().copied(), parent);
        assert!(!lineage.contains(&std::process::id()));
    }

    #[test]
    fn a_holder_taking_its_own_lock_again_waits_as_ever() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = Utf8PathBuf::try_from(dir.path().join("system.duckdb.lock")).expect("utf-8");
        let held = acquire(&path, Duration::ZERO).expect("lock");
        let err = acquire_or_inherit(&path, Duration::from_millis(50)).expect_err("not inherited");
        assert!(matches!(err, Error::Locked { .. }), "{err:?}");
        drop(held);
        // Nobody holds it: taken for real.
        let taken = acquire_or_inherit(&path, Duration::ZERO).expect("taken");
        assert!(taken.file.is_some());
    }

    #[test]
    fn the_pid_of_a_killed_holder_is_never_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = Utf8PathBuf::try_from(dir.path().join("system.duckdb.lock")).expect("utf-8");
        let mut dead = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let dead_pid = dead.id();
        dead.wait().expect("wait true");
        // A new holder that has the lock but has not yet written its pid
        // over the one a killed holder left.
        let stale = fs_err::File::create(&path).expect("lock file");
        rustix::fs::flock(&stale, rustix::fs::FlockOperation::LockExclusive).expect("flock");
        fs_err::write(&path, format!("{dead_pid:>10}\n")).expect("write pid");
        match acquire(&path, Duration::ZERO).expect_err("locked") {
            Error::Locked { pid, .. } => assert_eq!(pid, None, "{dead_pid} is not alive"),
            other => panic!("unexpected {other:?}"),
        }
        // Once it writes its own pid, that is the one reported.
        fs_err::write(&path, format!("{:>10}\n", std::process::id())).expect("write pid");
        assert_eq!(
            holder_now(&path),
            Some(LockHolder {
                pid: Some(std::process::id())
            })
        );
    }
}
