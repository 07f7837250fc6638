//! Progress of the long tasks of an open, for a display: a service or the
//! CLI gives a [`ProgressHook`] and is told when each task begins, how far
//! it got, and when it ended. Nothing in the open reads it back.

use std::fmt;
use std::sync::Arc;

/// A long task of an open, a snapshot or a recovery.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    /// `CHECKPOINT` before the migration window's snapshot.
    Checkpoint,
    /// Reading every table whole through DuckDB before the snapshot is
    /// replaced, where the block checksums did not vouch for every block;
    /// counted in tables.
    ReadWhole,
    /// Copying the database to the pre-migrate snapshot while reading it
    /// once for its digest and block checksums; counted in bytes (the
    /// lesser of the two).
    Snapshot,
    /// Applying the pending migration steps; counted in steps.
    Migrate,
    /// Replaying the whole write-ahead log on a copy.
    Replay,
    /// Searching the longest prefix of the log that replays; counted in
    /// replays, out of the most the search can take.
    Salvage,
    /// Copying a snapshot over the database; counted in bytes.
    Restore,
}

impl Task {
    /// The task's name, as the [`OpenReport`](crate::OpenReport)'s phases
    /// call it.
    pub fn name(self) -> &'static str {
        match self {
            Task::Checkpoint => "checkpoint",
            Task::ReadWhole => "read-whole",
            Task::Snapshot => "snapshot",
            Task::Migrate => "migrate",
            Task::Replay => "replay",
            Task::Salvage => "salvage",
            Task::Restore => "restore",
        }
    }

    /// What the task's counts count.
    pub fn unit(self) -> Unit {
        match self {
            Task::Snapshot | Task::Restore => Unit::Bytes,
            Task::ReadWhole => Unit::Tables,
            Task::Migrate => Unit::Steps,
            Task::Salvage => Unit::Replays,
            Task::Checkpoint | Task::Replay => Unit::None,
        }
    }
}

/// What a [`Task`]'s counts count.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes.
    Bytes,
    /// Tables.
    Tables,
    /// Migration steps.
    Steps,
    /// Replays of a copy.
    Replays,
    /// Nothing is counted: the task is one DuckDB call.
    None,
}

/// One report of progress.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// `task` began; `total` is how much there is to do, where known.
    Began {
        /// The task.
        task: Task,
        /// How much there is to do, in the task's [`Unit`].
        total: Option<u64>,
    },
    /// `task` has done `done` of its total.
    Advanced {
        /// The task.
        task: Task,
        /// How much is done, in the task's [`Unit`].
        done: u64,
    },
    /// `task` ended, done or not (an error ends it too).
    Ended {
        /// The task.
        task: Task,
    },
}

/// Where progress goes: a function called with every [`Progress`], from
/// the thread that does the task. The default goes nowhere.
#[derive(Clone, Default)]
pub struct ProgressHook(Option<Arc<dyn Fn(Progress) + Send + Sync>>);

impl ProgressHook {
    /// Progress to `report`.
    pub fn new(report: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(report)))
    }

    fn send(&self, progress: Progress) {
        if let Some(report) = &self.0 {
            report(progress);
        }
    }

    /// `task` begins; it ends when the returned guard is dropped.
    pub(crate) fn begin(&self, task: Task, total: Option<u64>) -> Running<'_> {
        self.send(Progress::Began { task, total });
        Running { hook: self, task }
    }
}

impl fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "ProgressHook(..)",
            None => "ProgressHook(none)",
        })
    }
}

/// Two hooks are equal when they are the same function (or both none).
impl PartialEq for ProgressHook {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for ProgressHook {}

/// The size of the file at `path`: the total of a task that copies it.
pub(crate) fn file_bytes(path: &camino::Utf8Path) -> Option<u64> {
    fs_err::metadata(path).ok().map(|m| m.len())
}

/// A task under way: it ends when this is dropped, on an error too.
pub(crate) struct Running<'a> {
    hook: &'a ProgressHook,
    task: Task,
}

impl Running<'_> {
    /// `done` of the total is done.
    pub(crate) fn advance(&self, done: u64) {
        self.hook.send(Progress::Advanced {
            task: self.task,
            done,
        });
    }

    /// A copy's progress callback that advances this task by the bytes
    /// copied.
    pub(crate) fn copying(&self) -> impl FnMut(sysdb_snapshot::Step) + '_ {
        move |step| {
            if let sysdb_snapshot::Step::Copying { done, .. } = step {
                self.advance(done);
            }
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.hook.send(Progress::Ended { task: self.task });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn a_task_ends_when_it_is_dropped_on_an_error_too() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hook = {
            let seen = Arc::clone(&seen);
            ProgressHook::new(move |p| seen.lock().expect("not poisoned").push(p))
        };
        let failing = || -> Result<(), ()> {
            let running = hook.begin(Task::ReadWhole, Some(3));
            running.advance(1);
            Err(())
        };
        assert_eq!(failing(), Err(()));
        assert_eq!(
            *seen.lock().expect("not poisoned"),
            [
                Progress::Began {
                    task: Task::ReadWhole,
                    total: Some(3)
                },
                Progress::Advanced {
                    task: Task::ReadWhole,
                    done: 1
                },
                Progress::Ended {
                    task: Task::ReadWhole
                },
            ]
        );
    }

    #[test]
    fn hooks_are_equal_when_they_are_the_same_function() {
        let hook = ProgressHook::new(|_| {});
        assert_eq!(hook, hook.clone());
        assert_ne!(hook, ProgressHook::new(|_| {}));
        assert_ne!(ProgressHook::default(), hook);
    }
}
