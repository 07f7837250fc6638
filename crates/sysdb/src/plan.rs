//! What an open does, decided from what it found: [`observe`] reads the
//! folder into a [`Found`]; the functions here decide from that value (and
//! from the errors connects return) with no I/O of their own; recover.rs
//! and window.rs carry the decisions out.

use camino::{Utf8Path, Utf8PathBuf};
use sysdb_errclass::ErrorClass;

use crate::marker::{Marker, Recovering};
use crate::{Error, Paths, Result};

/// The intent marker as the open found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MarkerSeen {
    /// No migration window was open.
    Absent,
    /// A window was open, but its marker does not read.
    Unreadable,
    /// A window was open.
    Read(Marker),
}

/// What an open found on disk before it connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    /// The database file exists.
    pub db: bool,
    /// A write-ahead log (or a checkpoint's sidecar) waits to be replayed.
    pub wal: bool,
    /// The pre-migrate snapshot exists.
    pub snapshot: bool,
    /// The intent marker.
    pub marker: MarkerSeen,
    /// The recovery marker: a recovery was killed before it finished.
    pub recovering: Option<Recovering>,
    /// The database that killed recovery replayed on a copy to restore, if
    /// its marker names one and it is there.
    pub replayed: Option<Utf8PathBuf>,
    /// Files that show a database existed here: the snapshots, the log,
    /// the intent marker, the quarantine sets.
    pub evidence: Vec<String>,
    /// The scratch folder of replays (`<db>.replay/`) is there.
    pub scratch: bool,
}

impl Found {
    /// A migration window was open (its marker exists, readable or not).
    pub fn window_open(&self) -> bool {
        self.marker != MarkerSeen::Absent
    }

    /// The intent marker, if it reads.
    pub fn marker(&self) -> Option<&Marker> {
        match &self.marker {
            MarkerSeen::Read(m) => Some(m),
            _ => None,
        }
    }
}

/// Read the folder into a [`Found`].
pub(crate) fn observe(paths: &Paths) -> Result<Found> {
    let exists = |p: &Utf8Path| fs_err::symlink_metadata(p).is_ok();
    let marker = match Marker::read(&paths.marker()) {
        Ok(Some(m)) => MarkerSeen::Read(m),
        Ok(None) if exists(&paths.marker()) => MarkerSeen::Unreadable,
        Ok(None) => MarkerSeen::Absent,
        Err(e) => {
            tracing::warn!(error = %e, "the intent marker cannot be read");
            MarkerSeen::Unreadable
        }
    };
    let recovering = match Recovering::read(&paths.recovering()) {
        Ok(marker) => marker,
        // Written atomically, so only outside damage makes it unreadable;
        // it still says a recovery was in flight.
        Err(e) => Some(Recovering {
            class: "unknown".to_owned(),
            error: e.to_string(),
            started_at: "unknown".to_owned(),
            pid: 0,
            replayed: None,
            snapshot: None,
        }),
    };
    let mut evidence: Vec<String> = [paths.snapshot(), paths.previous_snapshot(), paths.wal()]
        .into_iter()
        .filter(|p| exists(p))
        .map(|p| p.to_string())
        .collect();
    if marker != MarkerSeen::Absent {
        evidence.push(paths.marker().to_string());
    }
    let sets = sysdb_snapshot::list(paths.files()).map_err(Error::quarantine(paths.db()))?;
    evidence.extend(sets.iter().map(|s| format!("quarantine set {}", s.id)));
    let wal = sysdb_snapshot::SIDECAR_SUFFIXES
        .iter()
        .any(|suffix| fs_err::metadata(paths.files().sibling(suffix)).is_ok_and(|m| m.len() > 0));
    let replayed = recovering
        .as_ref()
        .and_then(|r| r.replayed.as_ref())
        .map(|r| paths.dir().join(r))
        .filter(|r| fs_err::metadata(r).is_ok_and(|m| m.is_file()));
    Ok(Found {
        replayed,
        db: exists(paths.db()),
        wal,
        snapshot: exists(&paths.snapshot()),
        marker,
        recovering,
        evidence,
        scratch: exists(crate::replay::Scratch::at(paths).dir()),
    })
}

/// Whether the scratch folder is left over: it holds copies derived from
/// the database's files, and only a recovery in flight (its marker) may
/// still need the copy it replayed there. A removal a power cut undid
/// brings it back, so each open decides anew.
pub(crate) fn scratch_left_over(found: &Found) -> bool {
    found.scratch && found.recovering.is_none()
}

/// How an open begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    /// Connect to the database.
    Connect,
    /// There is no database and nothing shows one existed: create it (at
    /// the storage version the options name), then connect.
    Create,
    /// A recovery was killed after it set the database aside, or while it
    /// set aside the files a replayed copy replaces: finish it without
    /// connecting first.
    FinishRecovery,
    /// The database is missing where files show one existed: refuse, as
    /// creating an empty one would bring the service up without its data.
    Vanished(Vec<String>),
}

/// Decide how an open begins.
pub(crate) fn start(found: &Found) -> Start {
    // The replayed copy holds commits the files left in place may lack
    // (the log may already be set aside): it wins over connecting.
    if found.recovering.is_some() && found.replayed.is_some() {
        return Start::FinishRecovery;
    }
    match (found.db, found.recovering.is_some()) {
        (true, _) => Start::Connect,
        (false, true) => Start::FinishRecovery,
        (false, false) if found.evidence.is_empty() => Start::Create,
        (false, false) => Start::Vanished(found.evidence.clone()),
    }
}

/// How a recovery that was killed before it restored the database is
/// finished, from what its marker and the folder say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finish {
    /// A recovery by hand from this snapshot: restore it.
    Snapshot(Utf8PathBuf),
    /// A recovery that replayed this copy: set aside what is in the
    /// database's place first, if anything is, then put the copy there.
    Replayed {
        /// The copy.
        built: Utf8PathBuf,
        /// The database file is there and must be set aside first.
        set_aside_first: bool,
    },
    /// Restore the database file of the newest quarantine set (at its last
    /// checkpoint), or, where it does not read, the snapshot.
    NewestSetAside,
}

/// Decide how a killed recovery is finished (see [`Start::FinishRecovery`]).
pub(crate) fn finish(found: &Found, dir: &Utf8Path) -> Finish {
    let by_hand = found.recovering.as_ref().and_then(|m| m.snapshot.as_ref());
    match (by_hand, &found.replayed) {
        (Some(snapshot), _) => Finish::Snapshot(dir.join(snapshot)),
        (None, Some(built)) => Finish::Replayed {
            built: built.clone(),
            set_aside_first: found.db,
        },
        (None, None) => Finish::NewestSetAside,
    }
}

/// Whether the pre-migrate snapshot may be restored automatically: always,
/// unless [`OpenOptions::strict_snapshot`](crate::OpenOptions) asks for a
/// migration in flight whose intent marker names this very snapshot
/// (`names_snapshot`: its size and digest match). `Err` says why not.
pub(crate) fn snapshot_allowed(
    strict: bool,
    marker: &MarkerSeen,
    names_snapshot: bool,
) -> std::result::Result<(), &'static str> {
    if !strict {
        return Ok(());
    }
    match marker {
        MarkerSeen::Read(_) if names_snapshot => Ok(()),
        MarkerSeen::Read(_) => Err("the intent marker names another snapshot than the one on disk"),
        MarkerSeen::Unreadable => Err("the intent marker cannot be read"),
        MarkerSeen::Absent => Err("no migration was in flight"),
    }
}

/// How the migration window begins when steps are pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Window {
    /// Take a new snapshot, then open the window.
    Open,
    /// A window killed (or failed) after its marker was written: keep its
    /// snapshot, the state before the migration still in flight, and
    /// apply. The database may since hold damage that only the migration
    /// reads, so it is not snapshotted over that copy. A marker that
    /// cannot confirm the snapshot still says a window was open: both
    /// files stay as they are, since which is damaged cannot be told.
    Resume,
}

/// Decide how the window begins: `snapshot`, the pre-migrate snapshot is
/// on disk.
pub(crate) fn window(found: &Found, snapshot: bool) -> Window {
    if found.window_open() && snapshot {
        Window::Resume
    } else {
        Window::Open
    }
}

/// What a failed first connect leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnFailure {
    /// Return the error; touch nothing.
    Refuse,
    /// Recover, trying the sources in order (see [`Source`]).
    Recover(&'static [Source]),
}

/// A source a recovery may bring the database back from, in the order they
/// are tried: each loses no more than the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The whole log, replayed through ATTACH on a copy: loses nothing.
    Replay,
    /// The longest prefix of the log that replays, cut at a commit: loses
    /// the commit that fails and those after it.
    Salvage,
    /// The database file at its last checkpoint: loses the whole log.
    LastCheckpoint,
    /// The pre-migrate snapshot, only if the database file does not read.
    Snapshot,
}

const WITH_LOG: &[Source] = &[
    Source::Replay,
    Source::Salvage,
    Source::LastCheckpoint,
    Source::Snapshot,
];
const WITHOUT_LOG: &[Source] = &[Source::LastCheckpoint, Source::Snapshot];
const SNAPSHOT_ONLY: &[Source] = &[Source::Snapshot];

/// Decide what the first connect's failure of class `class` leads to.
///
/// Only a failure to replay the log starts a recovery, and only where a
/// pre-migrate snapshot exists (sysdb recovers the databases it migrates);
/// a failure of the environment (memory, disk, permissions) never does. A
/// recovery that was killed after it restored a copy which does not read
/// goes on to the snapshot, as that recovery would have.
pub(crate) fn on_failure(found: &Found, class: ErrorClass) -> OnFailure {
    if found.recovering.is_some() && file_unreadable(class) {
        return OnFailure::Recover(SNAPSHOT_ONLY);
    }
    if !class.is_wal_replay() || !found.snapshot {
        return OnFailure::Refuse;
    }
    OnFailure::Recover(if found.wal { WITH_LOG } else { WITHOUT_LOG })
}

/// A failure to open that means the file itself cannot be used, so a
/// restore may fall back to the snapshot. A lock, a permission or a full
/// disk says nothing about the file and stops the recovery instead; a file
/// from a newer DuckDB is readable by that DuckDB and must not be replaced.
pub(crate) fn file_unreadable(class: ErrorClass) -> bool {
    matches!(
        class,
        ErrorClass::NotADatabase
            | ErrorClass::CorruptDatabase
            | ErrorClass::Truncated
            | ErrorClass::UnsupportedStorage
    )
}

/// What the failure of one replay of a copy means for the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayFailed {
    /// The log (or this prefix of it) does not replay: try less of it.
    Log,
    /// The database file itself does not read: no prefix of the log will
    /// replay on it, so stop replaying and go on to the next source.
    File,
    /// The environment failed (memory, disk, permissions): stop the
    /// recovery before any file is moved, and refuse with this class.
    Environment,
}

/// Decide what a failed replay of a copy means, from its class.
pub(crate) fn replay_failed(class: ErrorClass) -> ReplayFailed {
    if class.is_environment() {
        ReplayFailed::Environment
    } else if file_unreadable(class) {
        ReplayFailed::File
    } else {
        ReplayFailed::Log
    }
}

/// Whether a prefix that failed when built on a copy (replayed, then
/// checkpointed into the copy) is known not to replay: only where the
/// failure is DuckDB's replay of the log. A failure after the replay (a
/// checkpoint that did not complete, a log left beside the copy) says
/// nothing of the replay, which is then tried read-only before any commit
/// is taken not to replay.
pub(crate) fn build_failed_in_replay(class: ErrorClass) -> bool {
    matches!(class, ErrorClass::WalReplay { .. })
}

/// The fewest commits of the log a recovery may keep so that the ladder
/// completes, where `top` replay: a commit that writes data is never set
/// aside for the ladder (only a torn migration's catalog changes, which the
/// ladder makes again), so not fewer than `last_data_commit`; where the
/// framing does not read (`None`), no commit that replays is set aside.
pub(crate) fn ladder_floor(last_data_commit: Option<usize>, top: usize) -> usize {
    last_data_commit.map_or(top, |c| c.min(top))
}

/// Whether a salvage that found the first `kept` commits of the log to
/// replay tries the whole log once more, from a DuckDB that holds the
/// types of the database *with* those commits: the whole log failed on a
/// schema change (`whole`), and one of those commits creates a type
/// (`first_type_commit`), to which a later commit may cast; the types of
/// the database file at its last checkpoint do not hold it.
pub(crate) fn retry_with_prefix_types(
    whole: Option<ErrorClass>,
    kept: usize,
    first_type_commit: Option<usize>,
) -> bool {
    use sysdb_errclass::WalReplayCause;
    whole
        == Some(ErrorClass::WalReplay {
            cause: WalReplayCause::Ddl,
        })
        && first_type_commit.is_some_and(|c| c <= kept)
}

/// What running the migration ladder on a copy of a state a recovery may
/// restore showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LadderOn {
    /// The service can start on it: every pending step applied (or none
    /// was pending), or the ladder refused for a reason no shorter prefix
    /// of the log changes (a newer database, drift, a gap in
    /// `schema_version`), which the open then reports as it would anyway.
    Starts,
    /// A step failed: the state holds what the step does without its
    /// version row (a migration committed outside the transaction of its
    /// version row, killed between the two). A shorter prefix of the log
    /// may not.
    StepFails,
    /// The environment failed (memory, disk, permissions): stop the
    /// recovery before any file is moved, and refuse with this class.
    Environment(ErrorClass),
}

/// Decide what the ladder's `result` on a copy means.
pub(crate) fn ladder_on(result: &std::result::Result<(), sysdb_schema::Error>) -> LadderOn {
    use sysdb_schema::Error as E;
    let cause = match result {
        Ok(()) => return LadderOn::Starts,
        Err(E::Step { cause, .. }) => &**cause,
        Err(E::Checkpoint { cause, .. }) => cause,
        Err(E::Bookkeeping { cause, .. }) => {
            let class = sysdb_errclass::classify_error(cause);
            return if class.is_environment() {
                LadderOn::Environment(class)
            } else {
                LadderOn::Starts
            };
        }
        Err(_) => return LadderOn::Starts,
    };
    let class = sysdb_errclass::classify_error(cause);
    if class.is_environment() {
        LadderOn::Environment(class)
    } else {
        LadderOn::StepFails
    }
}

/// The search for the longest prefix of a log that replays, over its
/// commit boundaries: `good` commits are known to replay, `bad` are known
/// not to, and the answer lies between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Search {
    good: usize,
    bad: usize,
    /// The first prefix to try, before bisecting.
    hint: Option<usize>,
}

impl Search {
    /// A search over a log of `commits` complete commits. `whole_failed`:
    /// replaying all of them is already known to fail (the whole log
    /// failed, and nothing but uncommitted entries follows them), and all
    /// but the last are tried first, as the usual crash leaves the commit
    /// that does not replay last (the migration step that was running);
    /// when it is not (a damaged entry after the last commit), all of them
    /// are tried first. The empty prefix, the database at its last
    /// checkpoint, is taken to replay.
    pub fn new(commits: usize, whole_failed: bool) -> Self {
        if whole_failed {
            Self {
                good: 0,
                bad: commits,
                hint: commits.checked_sub(1),
            }
        } else {
            Self {
                good: 0,
                bad: commits + 1,
                hint: Some(commits),
            }
        }
    }

    /// A search below `bad` commits, which are known not to do (they
    /// replay, but the ladder fails on them), keeping at least `floor`:
    /// `floor` is taken to do, and must be checked by the caller when the
    /// search ends there. The prefix one commit shorter is tried first, as
    /// a torn migration is most often the last thing a log holds.
    pub fn below_from(floor: usize, bad: usize) -> Self {
        Self {
            good: floor,
            bad,
            hint: bad.checked_sub(1),
        }
    }

    /// The next prefix (a number of commits) to try, or `None` when the
    /// search is done.
    pub fn next(&self) -> Option<usize> {
        if self.bad.saturating_sub(self.good) <= 1 {
            return None;
        }
        Some(match self.hint {
            Some(h) if h > self.good && h < self.bad => h,
            _ => self.good + (self.bad - self.good) / 2,
        })
    }

    /// Whether `k` is the search's first guess, tried before any result:
    /// the prefix the usual crash keeps.
    pub fn guessing(&self, k: usize) -> bool {
        self.hint == Some(k)
    }

    /// What replaying `commits` gave.
    pub fn record(&mut self, commits: usize, replays: bool) {
        self.hint = None;
        if replays {
            self.good = self.good.max(commits);
        } else {
            self.bad = self.bad.min(commits);
        }
    }

    /// The longest prefix known to replay.
    pub fn found(&self) -> usize {
        self.good
    }
}

/// The most replays a search over `commits` commits may take: its first
/// guess (all but the last commit, or all of them before a damaged entry),
/// then ⌈log2(commits)⌉ halvings at most.
pub(crate) fn replay_budget(commits: usize) -> u32 {
    commits.max(1).next_power_of_two().trailing_zeros() + 1
}

/// Whether the whole log is first replayed read-only on a hard link of the
/// database (no copy; only a log that replays so is then replayed again
/// on the copy a recovery restores) rather than straight on that copy.
/// The copy costs in the database's bytes, about 1 s per GiB; the extra
/// replay in the log's, about 30 times slower per byte: read-only first
/// where the database is more than 32 times the log.
pub(crate) fn replay_read_only_first(db_bytes: u64, log_bytes: u64) -> bool {
    db_bytes / 32 > log_bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Paths;
    use sysdb_errclass::WalReplayCause;

    #[test]
    fn a_large_database_with_a_small_log_is_replayed_read_only_first() {
        let mib = 1 << 20;
        for (db, log, first) in [
            (1024 * mib, 16 * mib, true),
            (1024 * mib, 40 * mib, false),
            (18 * mib, 4096, true),
            (18 * mib, 16 * mib, false),
            (32 * 4096, 4096, false),
            (0, 0, false),
        ] {
            assert_eq!(replay_read_only_first(db, log), first, "{db} {log}");
        }
    }

    fn found() -> Found {
        Found {
            db: true,
            wal: true,
            snapshot: true,
            marker: MarkerSeen::Absent,
            recovering: None,
            replayed: None,
            evidence: vec![],
            scratch: false,
        }
    }

    #[test]
    fn a_scratch_folder_is_left_over_unless_a_recovery_is_in_flight() {
        let cases = [
            ("no scratch folder", found(), false),
            (
                "a scratch folder",
                Found {
                    scratch: true,
                    ..found()
                },
                true,
            ),
            (
                "a scratch folder and a recovery in flight",
                Found {
                    scratch: true,
                    recovering: recovering(),
                    ..found()
                },
                false,
            ),
        ];
        for (name, found, want) in cases {
            assert_eq!(scratch_left_over(&found), want, "{name}");
        }
    }

    fn recovering() -> Option<Recovering> {
        Some(Recovering {
            class: "wal-replay".to_owned(),
            error: "Failure while replaying WAL file".to_owned(),
            started_at: "2026-12-01T12:00:00Z".to_owned(),
            pid: 7,
            replayed: None,
            snapshot: None,
        })
    }

    #[test]
    fn how_an_open_begins() {
        let cases = [
            ("database present", found(), Start::Connect),
            (
                "nothing at all",
                Found {
                    db: false,
                    wal: false,
                    snapshot: false,
                    ..found()
                },
                Start::Create,
            ),
            (
                "only a snapshot",
                Found {
                    db: false,
                    evidence: vec!["s.pre-migrate".to_owned()],
                    ..found()
                },
                Start::Vanished(vec!["s.pre-migrate".to_owned()]),
            ),
            (
                "a recovery killed after setting the database aside",
                Found {
                    db: false,
                    recovering: recovering(),
                    evidence: vec!["quarantine set 1".to_owned()],
                    ..found()
                },
                Start::FinishRecovery,
            ),
            (
                "a recovery marker beside the database",
                Found {
                    recovering: recovering(),
                    ..found()
                },
                Start::Connect,
            ),
            (
                "a recovery killed while it set aside the files its replayed copy replaces",
                Found {
                    recovering: recovering(),
                    replayed: Some("s.replay/build/s".into()),
                    ..found()
                },
                Start::FinishRecovery,
            ),
            (
                "a replayed copy without a recovery marker is a leftover",
                Found {
                    replayed: Some("s.replay/build/s".into()),
                    ..found()
                },
                Start::Connect,
            ),
        ];
        for (name, found, want) in cases {
            assert_eq!(start(&found), want, "{name}");
        }
    }

    #[test]
    fn how_a_killed_recovery_is_finished() {
        let by_hand = || {
            recovering().map(|r| Recovering {
                snapshot: Some("s.pre-migrate".into()),
                ..r
            })
        };
        let cases = [
            (
                "by hand from a snapshot, even with a replayed copy",
                Found {
                    recovering: by_hand(),
                    replayed: Some("/d/s.replay/build/s".into()),
                    ..found()
                },
                Finish::Snapshot("/d/s.pre-migrate".into()),
            ),
            (
                "a replayed copy, the database still in place",
                Found {
                    recovering: recovering(),
                    replayed: Some("/d/s.replay/build/s".into()),
                    ..found()
                },
                Finish::Replayed {
                    built: "/d/s.replay/build/s".into(),
                    set_aside_first: true,
                },
            ),
            (
                "a replayed copy, the database already set aside",
                Found {
                    db: false,
                    recovering: recovering(),
                    replayed: Some("/d/s.replay/build/s".into()),
                    ..found()
                },
                Finish::Replayed {
                    built: "/d/s.replay/build/s".into(),
                    set_aside_first: false,
                },
            ),
            (
                "no copy: the database file set aside",
                Found {
                    db: false,
                    recovering: recovering(),
                    ..found()
                },
                Finish::NewestSetAside,
            ),
        ];
        for (name, found, want) in cases {
            assert_eq!(finish(&found, Utf8Path::new("/d")), want, "{name}");
        }
    }

    #[test]
    fn when_the_snapshot_may_be_restored() {
        let marker = MarkerSeen::Read(Marker {
            from: 26,
            to: 27,
            snapshot: "s.pre-migrate".into(),
            snapshot_bytes: 1,
            snapshot_xxh3_128: None,
            snapshot_sha256: String::new(),
            started_at: "2026-12-01T12:00:00Z".to_owned(),
            pid: 7,
        });
        let cases = [
            (false, MarkerSeen::Absent, false, Ok(())),
            (false, MarkerSeen::Unreadable, false, Ok(())),
            (true, marker.clone(), true, Ok(())),
            (
                true,
                marker,
                false,
                Err("the intent marker names another snapshot than the one on disk"),
            ),
            (
                true,
                MarkerSeen::Unreadable,
                false,
                Err("the intent marker cannot be read"),
            ),
            (
                true,
                MarkerSeen::Absent,
                false,
                Err("no migration was in flight"),
            ),
        ];
        for (strict, marker, names, want) in cases {
            assert_eq!(
                snapshot_allowed(strict, &marker, names),
                want,
                "{strict} {marker:?} {names}"
            );
        }
    }

    #[test]
    fn a_window_left_open_is_resumed_with_its_snapshot() {
        let open = Found {
            marker: MarkerSeen::Unreadable,
            ..found()
        };
        let cases = [
            ("no marker", found(), true, Window::Open),
            (
                "a marker and its snapshot",
                open.clone(),
                true,
                Window::Resume,
            ),
            ("a marker without a snapshot", open, false, Window::Open),
        ];
        for (name, found, snapshot, want) in cases {
            assert_eq!(window(&found, snapshot), want, "{name}");
        }
    }

    #[test]
    fn what_the_ladder_on_a_copy_means() {
        let duck = |m: &str| {
            duckdb::Error::DuckDBFailure(
                duckdb::ffi::Error {
                    code: duckdb::ffi::ErrorCode::Unknown,
                    extended_code: 1,
                },
                Some(m.to_owned()),
            )
        };
        let step = |m: &str| sysdb_schema::Error::Step {
            version: 21,
            name: "add_c21".to_owned(),
            file: None,
            statement: "ALTER TABLE jobs ADD COLUMN c21 INTEGER".to_owned(),
            cause: Box::new(duck(m)),
        };
        let cases = [
            ("completes", Ok(()), LadderOn::Starts),
            (
                "a torn step",
                Err(step("Catalog Error: Column with name \"c21\" already exists!")),
                LadderOn::StepFails,
            ),
            (
                "out of memory in a step",
                Err(step("Out of Memory Error: failed to allocate data of size 2.0 MiB (37.0 MiB/38.3 MiB used)")),
                LadderOn::Environment(ErrorClass::OutOfMemory),
            ),
            (
                "a checkpoint that fails on a full disk",
                Err(sysdb_schema::Error::Checkpoint {
                    version: 21,
                    name: "add_c21".to_owned(),
                    cause: duck("IO Error: Could not write file \"/d/x\": No space left on device"),
                }),
                LadderOn::Environment(ErrorClass::DiskFull),
            ),
            (
                "a newer database: no prefix changes that",
                Err(sysdb_schema::Error::DatabaseNewer {
                    database: 28,
                    ladder: 27,
                }),
                LadderOn::Starts,
            ),
            (
                "schema_version unreadable for lack of memory",
                Err(sysdb_schema::Error::Bookkeeping {
                    doing: "reading schema_version",
                    cause: duck("Out of Memory Error: failed to allocate data of size 2.0 MiB (37.0 MiB/38.3 MiB used)"),
                }),
                LadderOn::Environment(ErrorClass::OutOfMemory),
            ),
        ];
        for (name, result, want) in cases {
            assert_eq!(ladder_on(&result), want, "{name}");
        }
    }

    #[test]
    fn a_commit_that_writes_data_is_never_set_aside_for_the_ladder() {
        let cases = [
            ("a torn DDL after 400 rows", Some(2), 3, 2),
            ("no data in the log", Some(0), 3, 0),
            ("data in the last commit", Some(3), 3, 3),
            ("the framing does not read", None, 3, 3),
        ];
        for (name, last_data, top, want) in cases {
            assert_eq!(ladder_floor(last_data, top), want, "{name}");
        }
        let mut s = Search::below_from(2, 3);
        assert_eq!(s.next(), None, "nothing between the floor and the top");
        assert_eq!(s.found(), 2);
        s = Search::below_from(1, 5);
        assert_eq!(s.next(), Some(4));
    }

    #[test]
    fn a_type_created_in_the_salvaged_prefix_is_held_for_a_retry() {
        let ddl = Some(ErrorClass::WalReplay {
            cause: WalReplayCause::Ddl,
        });
        let cases = [
            ("the type created in a kept commit", ddl, 10, Some(3), true),
            ("created in the last kept commit", ddl, 3, Some(3), true),
            ("created in the failing commit", ddl, 10, Some(11), false),
            ("no type created", ddl, 10, None, false),
            (
                "a damaged log",
                Some(ErrorClass::WalReplay {
                    cause: WalReplayCause::ChecksumMismatch,
                }),
                10,
                Some(3),
                false,
            ),
            ("the whole log was not tried", None, 10, Some(3), false),
        ];
        for (name, whole, kept, first, want) in cases {
            assert_eq!(retry_with_prefix_types(whole, kept, first), want, "{name}");
        }
    }

    #[test]
    fn a_search_below_a_torn_step_tries_one_commit_less_first() {
        let mut s = Search::below_from(0, 401);
        assert_eq!(s.next(), Some(400));
        s.record(400, true);
        assert_eq!(s.next(), None);
        assert_eq!(s.found(), 400);
        for bad in 1..40 {
            for fits in 0..bad {
                let mut s = Search::below_from(0, bad);
                let mut tries = 0;
                while let Some(k) = s.next() {
                    tries += 1;
                    s.record(k, k <= fits);
                }
                assert_eq!(s.found(), fits, "{bad} {fits}");
                assert!(tries <= replay_budget(bad) + 1, "{bad} {fits}: {tries}");
            }
        }
    }

    #[test]
    fn what_a_failure_leads_to() {
        let ddl = ErrorClass::WalReplay {
            cause: WalReplayCause::Ddl,
        };
        let cases = [
            (
                "a replay failure",
                found(),
                ddl,
                OnFailure::Recover(WITH_LOG),
            ),
            (
                "a replay failure without a log on disk (a connector's)",
                Found {
                    wal: false,
                    ..found()
                },
                ddl,
                OnFailure::Recover(WITHOUT_LOG),
            ),
            (
                "no snapshot",
                Found {
                    snapshot: false,
                    ..found()
                },
                ddl,
                OnFailure::Refuse,
            ),
            (
                "out of memory",
                found(),
                ErrorClass::OutOfMemory,
                OnFailure::Refuse,
            ),
            (
                "disk full",
                found(),
                ErrorClass::DiskFull,
                OnFailure::Refuse,
            ),
            (
                "locked",
                found(),
                ErrorClass::Locked { pid: None },
                OnFailure::Refuse,
            ),
            (
                "corrupt, nothing in flight",
                found(),
                ErrorClass::CorruptDatabase,
                OnFailure::Refuse,
            ),
            (
                "the copy a killed recovery restored does not read",
                Found {
                    recovering: recovering(),
                    ..found()
                },
                ErrorClass::CorruptDatabase,
                OnFailure::Recover(SNAPSHOT_ONLY),
            ),
        ];
        for (name, found, class, want) in cases {
            assert_eq!(on_failure(&found, class), want, "{name}");
        }
    }

    #[test]
    fn environment_failures_stop_a_replay_search() {
        for class in [
            ErrorClass::OutOfMemory,
            ErrorClass::DiskFull,
            ErrorClass::PermissionDenied,
            ErrorClass::Io,
        ] {
            assert_eq!(replay_failed(class), ReplayFailed::Environment, "{class}");
        }
        for class in [
            ErrorClass::WalReplay {
                cause: WalReplayCause::Ddl,
            },
            ErrorClass::Unknown,
        ] {
            assert_eq!(replay_failed(class), ReplayFailed::Log, "{class}");
        }
        for class in [ErrorClass::CorruptDatabase, ErrorClass::NotADatabase] {
            assert_eq!(replay_failed(class), ReplayFailed::File, "{class}");
        }
    }

    #[test]
    fn only_a_replay_failure_of_a_build_says_the_prefix_does_not_replay() {
        for cause in [WalReplayCause::Ddl, WalReplayCause::Other] {
            assert!(build_failed_in_replay(ErrorClass::WalReplay { cause }));
        }
        for class in [
            ErrorClass::Unknown,
            ErrorClass::Io,
            ErrorClass::CorruptDatabase,
        ] {
            assert!(!build_failed_in_replay(class), "{class}");
        }
    }

    /// Every folder state the fixtures make, observed and decided as the
    /// open does (the first connect on a copy, since DuckDB may rewrite the
    /// log), against what each manifest says the open does.
    #[test]
    fn the_decisions_on_every_fixture_match_its_manifest() {
        let fixtures = sysdb_scenarios::manifest_dir!().join("../../fixtures");
        let mut seen = 0;
        for entry in fs_err::read_dir(&fixtures).expect("fixtures/") {
            let dir = Utf8PathBuf::try_from(entry.expect("entry").path()).expect("utf-8");
            let Ok(text) = fs_err::read_to_string(dir.join("manifest.json")) else {
                continue;
            };
            let manifest: sysdb_scenarios::Manifest =
                serde_json::from_str(&text).expect("a manifest");
            let name = &manifest.scenario;
            let expect = &manifest.expect;
            let found = observe(&Paths::for_db(dir.join("system.duckdb")).expect("paths"))
                .expect("observe");
            assert_eq!(found.wal, expect.wal_at_open, "{name}");
            assert_eq!(start(&found), Start::Connect, "{name}");

            let tmp = tempfile::tempdir().expect("temp dir");
            let copy = Utf8PathBuf::try_from(tmp.path().to_owned()).expect("utf-8");
            for file in &manifest.files {
                fs_err::copy(dir.join(file), copy.join(file)).expect("copy");
            }
            let first = expect.connect(&copy.join("system.duckdb")).map(drop);
            let decided = match &first {
                Ok(()) => "opened",
                Err(e) => match on_failure(&found, sysdb_errclass::classify_error(e)) {
                    OnFailure::Refuse => "refused",
                    OnFailure::Recover(sources) => {
                        let with_log = sources.contains(&Source::Replay);
                        assert_eq!(with_log, found.wal, "{name}: {sources:?}");
                        "recovered"
                    }
                },
            };
            let expected = match &expect.outcome {
                sysdb_scenarios::Outcome::Healthy | sysdb_scenarios::Outcome::Migrated => "opened",
                sysdb_scenarios::Outcome::Recovered { .. } => "recovered",
                sysdb_scenarios::Outcome::Refused { .. } => "refused",
            };
            assert_eq!(decided, expected, "{name}: {first:?}");
            seen += 1;
        }
        assert!(seen >= 20, "{seen} fixtures");
    }

    /// Run a search against a log whose first `replayable` commits replay.
    fn search(commits: usize, whole_failed: bool, replayable: usize) -> (usize, u32) {
        let mut s = Search::new(commits, whole_failed);
        let mut replays = 0;
        while let Some(k) = s.next() {
            replays += 1;
            s.record(k, k <= replayable);
        }
        (s.found(), replays)
    }

    /// Cut by bytes, as for a log whose framing does not read, the search
    /// keeps exactly the commits that end before the first that fails:
    /// DuckDB ignores a commit cut short.
    #[test]
    fn a_search_by_bytes_keeps_the_commits_before_the_failing_one() {
        use crate::wal::Cuts;
        let ends = [37u64, 400, 1000, 1500, 4096];
        for failing in 0..ends.len() {
            // A prefix replays when it holds no byte of the failing commit's
            // end: the commit is complete (and fails) only with its flush.
            let replays = |bytes: u64| bytes < ends[failing];
            let cuts = Cuts::Bytes(ends[ends.len() - 1]);
            let mut s = Search::new(cuts.count(), true);
            let mut tries = 0;
            while let Some(k) = s.next() {
                tries += 1;
                s.record(k, replays(cuts.cut(k).expect("a byte cut")));
            }
            let kept = cuts.cut(s.found()).expect("a byte cut");
            let whole = ends.iter().filter(|e| **e <= kept).count();
            assert_eq!(
                whole, failing,
                "failing commit {failing}: kept {kept} bytes"
            );
            assert!(tries <= 13, "{tries} replays for 4096 bytes");
        }
    }

    #[test]
    fn the_search_finds_the_longest_prefix_within_its_budget() {
        for commits in 0..70 {
            for replayable in 0..=commits {
                // The whole log failed: the answer is below `commits`.
                if replayable < commits {
                    let (got, replays) = search(commits, true, replayable);
                    assert_eq!(got, replayable, "{commits} commits, {replayable} replay");
                    assert!(replays <= replay_budget(commits), "{commits}: {replays}");
                    if replayable + 1 == commits {
                        assert!(
                            replays <= 1,
                            "the usual crash: all but the last, one replay"
                        );
                    }
                }
                // A damaged entry after the last commit.
                let (got, replays) = search(commits, false, replayable);
                assert_eq!(got, replayable, "{commits} commits, damaged tail");
                assert!(replays <= replay_budget(commits), "{commits}: {replays}");
                if replayable == commits {
                    assert!(replays <= 1, "the damaged tail's hint costs one replay");
                }
            }
        }
    }
}
