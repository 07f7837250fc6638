//! What an open found and did: [`OpenReport`] and the types it is made of.

use std::fmt;
use std::time::Instant;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use sysdb_errclass::ErrorClass;

pub use crate::marker::{Marker, Recovering};
use crate::StorageVersion;

/// What [`SystemDb::open`](crate::SystemDb::open) found and did.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenReport {
    /// The database.
    pub path: Utf8PathBuf,
    /// The size of the write-ahead log when the open began, if there was one.
    pub wal_at_open: Option<u64>,
    /// There was no database: it was created, at this storage version.
    pub created: Option<StorageVersion>,
    /// The error the first connect met, if any.
    pub error: Option<MetError>,
    /// Files set aside, in the order they were moved.
    pub quarantined: Vec<MovedFile>,
    /// Bytes of write-ahead log (and other sidecars) set aside.
    pub wal_bytes_set_aside: u64,
    /// What the database was restored from, if it was.
    pub restored: Option<Restored>,
    /// An intent marker was present: a migration had been in flight.
    pub marker_found: bool,
    /// What the marker said, if it could be read.
    pub marker: Option<Marker>,
    /// A recovery marker was present: an earlier recovery was killed before
    /// it finished, and this open finished it.
    pub recovery_resumed: Option<Recovering>,
    /// What the probe child did, if the first open was probed.
    pub probe: Option<ProbeOutcome>,
    /// The migration run, if steps were pending.
    pub migration: Option<Migration>,
    /// Time spent in each phase, in order.
    pub timings: Vec<Phase>,
}

/// An error met on the way.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetError {
    /// Its class (`"wal-replay"`, `"locked"`, …).
    pub class: &'static str,
    /// For a write-ahead-log replay failure, its cause.
    pub cause: Option<&'static str>,
    /// DuckDB's text.
    pub text: String,
}

impl MetError {
    pub(crate) fn new(class: ErrorClass, err: &crate::Failure) -> Self {
        let cause = match class {
            ErrorClass::WalReplay { cause } => Some(cause.as_str()),
            _ => None,
        };
        Self {
            class: class.as_str(),
            cause,
            text: err.to_string(),
        }
    }
}

/// How a probe child (see [`Probe`](crate::Probe)) ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeOutcome {
    /// It exited by itself, with this code (0: DuckDB opened the folder).
    Exited {
        /// The exit code.
        code: i32,
    },
    /// A signal killed it: the open takes down the process that tries it.
    Killed {
        /// The signal's number.
        signal: i32,
    },
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::Exited { code } => write!(f, "exited with code {code}"),
            ProbeOutcome::Killed { signal } => write!(f, "was killed by signal {signal}"),
        }
    }
}

/// One file set aside.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MovedFile {
    /// Where it was.
    pub from: Utf8PathBuf,
    /// Where it is.
    pub to: Utf8PathBuf,
    /// Its size.
    pub bytes: u64,
}

impl From<&sysdb_snapshot::Moved> for MovedFile {
    fn from(m: &sysdb_snapshot::Moved) -> Self {
        Self {
            from: m.from.clone(),
            to: m.to.clone(),
            bytes: m.bytes,
        }
    }
}

/// Which copy a recovery restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreSource {
    /// The database with its whole write-ahead log, replayed on a copy
    /// through ATTACH from an in-memory DuckDB: nothing is lost.
    Replayed,
    /// The database with the longest prefix of its log that replays, cut
    /// at a commit: the first commit that does not replay, and those after
    /// it, are lost (and kept in quarantine).
    Salvaged,
    /// The quarantined database file, at its last checkpoint: nothing that
    /// was checkpointed is lost.
    DatabaseAtLastCheckpoint,
    /// The pre-migrate snapshot: writes checkpointed after it was taken are
    /// lost.
    Snapshot,
}

impl RestoreSource {
    /// Its name, as in the report's JSON (`database-at-last-checkpoint`).
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreSource::Replayed => "replayed",
            RestoreSource::Salvaged => "salvaged",
            RestoreSource::DatabaseAtLastCheckpoint => "database-at-last-checkpoint",
            RestoreSource::Snapshot => "snapshot",
        }
    }
}

/// What a recovery restored.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restored {
    /// Which copy.
    pub source: RestoreSource,
    /// Its path; for a replay, the database set aside whose copy (with its
    /// log) was replayed.
    pub from: Utf8PathBuf,
    /// The schema version of what was restored, if it could be read.
    pub version: Option<u32>,
    /// For the snapshot, its age in seconds.
    pub snapshot_age_secs: Option<u64>,
    /// What of the write-ahead log the restored database keeps, where a
    /// recovery replayed it on copies.
    pub log: Option<LogKept>,
}

/// What of a write-ahead log a recovery kept, and what it set aside.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogKept {
    /// The complete commits in the log; `None` when its framing could not
    /// be read.
    pub commits: Option<u64>,
    /// The commits the restored database holds.
    pub commits_kept: Option<u64>,
    /// The log's size.
    pub bytes: u64,
    /// Its bytes the restored database holds: the length of the prefix
    /// replayed, header included.
    pub bytes_kept: u64,
    /// Replays of copies tried.
    pub replays: u32,
    /// The first commit that did not replay, if one did not.
    pub first_failed: Option<FailedCommit>,
    /// Commits that replay but were left out because the migration ladder
    /// cannot complete with them (the log ends with a migration whose
    /// statements were committed without its version row: the ladder
    /// applies that step again), if any were.
    pub reapplied: Option<Reapplied>,
    /// The database's own types the replaying DuckDB held (`schema.name`),
    /// so that the log's casts to them bind. DuckDB records no dependency
    /// from those types to a table that a replayed statement bound to
    /// them: `DROP TYPE` is then allowed on the restored database, where
    /// it is refused on one that never crashed.
    pub types_held: Vec<String>,
}

impl LogKept {
    /// Commits set aside: in the log, not in the restored database (those
    /// that do not replay and those the ladder re-applies).
    pub fn commits_lost(&self) -> Option<u64> {
        Some(self.commits?.saturating_sub(self.commits_kept?))
    }
}

/// Commits a recovery left out although they replay: the ladder fails on
/// the database that holds them, and completes on the one without them.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reapplied {
    /// How many, where the log's framing was read: the last commits of
    /// what replays.
    pub commits: Option<u64>,
    /// The byte of the log where the first of them starts.
    pub at: u64,
    /// The ladder's error on the database that holds them.
    pub error: String,
}

/// The first commit of a log that did not replay.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedCommit {
    /// Its number, from 1, when the log's framing was read.
    pub commit: Option<u64>,
    /// The byte of the log where it (or its damaged entry) starts.
    pub at: u64,
    /// DuckDB's error.
    pub error: String,
}

/// A migration run.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Migration {
    /// The version before.
    pub from: u32,
    /// The version after (in the report of an error, the last version
    /// applied before it).
    pub to: u32,
    /// The snapshot taken first (or, for a resumed window, kept).
    pub snapshot: Utf8PathBuf,
    /// Its size.
    pub snapshot_bytes: u64,
    /// This open resumed a window an earlier one left open (killed or
    /// failed after its intent marker), keeping that window's snapshot.
    pub resumed_window: bool,
    /// The steps run.
    pub steps: Vec<StepRun>,
}

/// One step run.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepRun {
    /// The step's version.
    pub version: u32,
    /// Its name.
    pub name: String,
    /// Milliseconds running and committing it.
    pub millis: u64,
    /// Milliseconds in the checkpoint after it.
    pub checkpoint_millis: u64,
}

impl From<&sysdb_schema::StepDone> for StepRun {
    fn from(d: &sysdb_schema::StepDone) -> Self {
        Self {
            version: d.version,
            name: d.name.clone(),
            millis: millis(d.elapsed),
            checkpoint_millis: millis(d.checkpoint),
        }
    }
}

/// Time spent in one phase.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Phase {
    /// The phase (`lock`, `connect`, `quarantine`, …).
    pub name: &'static str,
    /// Milliseconds.
    pub millis: u64,
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What an open came to, in one word: what `sysdb check` predicts, what a
/// service may log, what the crash tests tally. [`OpenReport::outcome`]
/// for an open that succeeded, [`Error::outcome`](crate::Error::outcome)
/// for one that failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Outcome {
    /// The database was at the ladder's top: nothing was done.
    Healthy,
    /// The database was created or migrated (or both); nothing was
    /// recovered.
    Migrated,
    /// Files were set aside and a copy restored from `source` (then
    /// migrated, where steps were pending).
    Recovered {
        /// What the database was restored from.
        source: RestoreSource,
    },
    /// The open failed: the service does not start until an operator
    /// acts.
    Refused {
        /// [`Error::code`](crate::Error::code): `wal-replay`, `locked`,
        /// `disk-full`, `vanished`, …
        why: String,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Healthy => f.write_str("healthy"),
            Outcome::Migrated => f.write_str("migrated"),
            Outcome::Recovered { source } => write!(f, "recovered from {}", source.as_str()),
            Outcome::Refused { why } => write!(f, "refused: {why}"),
        }
    }
}

impl OpenReport {
    /// What the open came to.
    pub fn outcome(&self) -> Outcome {
        match (&self.restored, &self.migration, &self.created) {
            (Some(restored), ..) => Outcome::Recovered {
                source: restored.source,
            },
            (None, Some(_), _) | (None, None, Some(_)) => Outcome::Migrated,
            (None, None, None) => Outcome::Healthy,
        }
    }

    /// Whether the open changed files: set some aside, restored a copy,
    /// created the database, replaced the snapshot (a new migration
    /// window) or applied steps.
    pub(crate) fn changed_files(&self) -> bool {
        !self.quarantined.is_empty()
            || self.restored.is_some()
            || self.created.is_some()
            || self
                .migration
                .as_ref()
                .is_some_and(|m| !m.resumed_window || !m.steps.is_empty())
    }

    pub(crate) fn new(path: &Utf8Path) -> Self {
        Self {
            path: path.to_owned(),
            wal_at_open: None,
            created: None,
            error: None,
            quarantined: Vec::new(),
            wal_bytes_set_aside: 0,
            restored: None,
            marker_found: false,
            marker: None,
            recovery_resumed: None,
            probe: None,
            migration: None,
            timings: Vec::new(),
        }
    }

    pub(crate) fn phase(&mut self, name: &'static str, started: Instant) {
        self.timings.push(Phase {
            name,
            millis: millis(started.elapsed()),
        });
    }
}

impl fmt::Display for OpenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "database: {}", self.path)?;
        if let Some(bytes) = self.wal_at_open {
            writeln!(f, "write-ahead log at open: {bytes} bytes")?;
        }
        if let Some(r) = &self.recovery_resumed {
            writeln!(
                f,
                "recovery resumed: a recovery started at {} by process {} ({}) had been killed",
                r.started_at, r.pid, r.class
            )?;
        }
        if let Some(version) = &self.created {
            writeln!(f, "created: a new database at storage version {version}")?;
        }
        if let Some(p) = &self.probe {
            writeln!(f, "probe: the first open in a child process {p}")?;
        }
        match &self.error {
            None => writeln!(f, "opened: without error")?,
            Some(e) => writeln!(f, "first open failed ({}): {}", e.class, e.text)?,
        }
        for m in &self.quarantined {
            writeln!(f, "set aside: {} -> {} ({} bytes)", m.from, m.to, m.bytes)?;
        }
        if self.wal_bytes_set_aside > 0 {
            writeln!(
                f,
                "write-ahead log set aside: {} bytes",
                self.wal_bytes_set_aside
            )?;
        }
        if let Some(r) = &self.restored {
            let version = r.version.map_or("schema version unknown".to_owned(), |v| {
                format!("schema version {v}")
            });
            match r.source {
                RestoreSource::Replayed => writeln!(
                    f,
                    "restored: {} with its whole write-ahead log, replayed on a copy ({version})",
                    r.from
                )?,
                RestoreSource::Salvaged => writeln!(
                    f,
                    "restored: {} with the part of its write-ahead log that replays, replayed on a copy ({version})",
                    r.from
                )?,
                RestoreSource::DatabaseAtLastCheckpoint => writeln!(
                    f,
                    "restored: the database file at its last checkpoint, {} ({version})",
                    r.from
                )?,
                RestoreSource::Snapshot => writeln!(
                    f,
                    "restored: the pre-migrate snapshot {} ({version}, {} s old)",
                    r.from,
                    r.snapshot_age_secs.unwrap_or(0)
                )?,
            }
            if let Some(log) = &r.log {
                let count = |n: Option<u64>| n.map_or("?".to_owned(), |n| n.to_string());
                writeln!(
                    f,
                    "write-ahead log kept: {} of {} commits ({} of {} bytes), {} {} of copies",
                    count(log.commits_kept),
                    count(log.commits),
                    log.bytes_kept,
                    log.bytes,
                    log.replays,
                    if log.replays == 1 {
                        "replay"
                    } else {
                        "replays"
                    }
                )?;
                if let Some(lost) = log.commits_lost().filter(|n| *n > 0) {
                    let commits = if lost == 1 { "commit" } else { "commits" };
                    writeln!(
                        f,
                        "write-ahead log lost: {lost} {commits}, kept in quarantine"
                    )?;
                }
                if let Some(failed) = &log.first_failed {
                    writeln!(
                        f,
                        "first commit that does not replay: {} at byte {}: {}",
                        count(failed.commit),
                        failed.at,
                        failed.error
                    )?;
                }
                if let Some(r) = &log.reapplied {
                    writeln!(
                        f,
                        "left for the ladder to apply again: {} {} from byte {}, a migration committed without its version row ({})",
                        count(r.commits),
                        if r.commits == Some(1) { "commit" } else { "commits" },
                        r.at,
                        r.error
                    )?;
                }
                if !log.types_held.is_empty() {
                    writeln!(
                        f,
                        "the replay held the database's types {}: no dependency of a table on them is recorded",
                        log.types_held.join(", ")
                    )?;
                }
            }
        }
        match (&self.marker, self.marker_found) {
            (Some(m), _) => writeln!(
                f,
                "intent marker: a migration {} -> {} started at {} had been in flight",
                m.from, m.to, m.started_at
            )?,
            (None, true) => writeln!(f, "intent marker: found, but unreadable")?,
            (None, false) => {}
        }
        match &self.migration {
            None => writeln!(f, "migration: nothing pending")?,
            Some(m) => {
                writeln!(
                    f,
                    "migration: {} -> {} ({} {}, {} bytes)",
                    m.from,
                    m.to,
                    if m.resumed_window {
                        "resumed; kept the window's snapshot"
                    } else {
                        "snapshot"
                    },
                    m.snapshot,
                    m.snapshot_bytes
                )?;
                for s in &m.steps {
                    writeln!(f, "  applied {} {}", s.version, s.name)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_is_the_recovery_else_the_migration_else_healthy() {
        let mut report = OpenReport::new(Utf8Path::new("/srv/data/state/system.duckdb"));
        assert_eq!(report.outcome(), Outcome::Healthy);
        report.created = Some(StorageVersion::default());
        assert_eq!(report.outcome(), Outcome::Migrated);
        report.created = None;
        report.migration = Some(Migration {
            from: 26,
            to: 27,
            snapshot: "/srv/data/state/system.duckdb.pre-migrate".into(),
            snapshot_bytes: 1,
            resumed_window: false,
            steps: Vec::new(),
        });
        assert_eq!(report.outcome(), Outcome::Migrated);
        report.restored = Some(Restored {
            source: RestoreSource::Salvaged,
            from: "/srv/data/state/system.duckdb.broken.20261127T101500Z".into(),
            version: Some(26),
            snapshot_age_secs: None,
            log: None,
        });
        assert_eq!(
            report.outcome(),
            Outcome::Recovered {
                source: RestoreSource::Salvaged
            }
        );
        assert_eq!(
            serde_json::to_string(&report.outcome()).expect("json"),
            r#"{"outcome":"recovered","source":"salvaged"}"#
        );
    }
}
