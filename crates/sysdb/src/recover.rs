//! Connect, and recover from a write-ahead log that cannot be replayed.
//!
//! This is the only place that decides what a failure to open allows.

use std::time::{Duration, Instant, SystemTime};

use camino::{Utf8Path, Utf8PathBuf};
use duckdb::{AccessMode, Connection};
use sysdb_errclass::{classify_error, ErrorClass, WalReplayCause};
use sysdb_schema::Ladder;
use sysdb_snapshot::{quarantine, remove_durably, restore, ClosedDb};

use crate::marker::Recovering;
use crate::report::{MetError, MovedFile, ProbeOutcome, RestoreSource, Restored};
use crate::{config, probe, Connector, Error, OpenOptions, OpenReport, Paths, Result};

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

pub(crate) fn connect_or_recover(
    paths: &Paths,
    ladder: &Ladder,
    options: &OpenOptions,
    connector: &dyn Connector,
    report: &mut OpenReport,
) -> Result<Connection> {
    let recovery = Recovery {
        paths,
        ladder,
        options,
        connector,
        // No connection is open: none has been made yet.
        closed: ClosedDb::assume_closed(paths.files().clone()),
    };
    let resuming = report.recovery_resumed.clone();
    if let Some(marker) = &resuming {
        tracing::warn!(started_at = %marker.started_at, pid = marker.pid, "an earlier recovery was killed before it finished; finishing it");
        if fs_err::symlink_metadata(paths.db()).is_err() {
            // Killed after the database was set aside: restore it from the
            // newest quarantine set that holds one.
            let wal_error = duck_error(&marker.error);
            let newest = newest_quarantined_db(paths)?;
            let conn = recovery.restore(newest.as_deref(), &wal_error, report)?;
            return recovery.finish(conn);
        }
    }

    let probed = match &options.probe {
        Some(probe) if wal_present(paths) => {
            let phase = Instant::now();
            let outcome = probe::run(probe, paths.db())?;
            report.phase("probe", phase);
            report.probe = Some(outcome.clone());
            match outcome {
                ProbeOutcome::Killed { signal } => Some(duck_error(&format!(
                    "the first open of {} killed the probe process {} (signal {signal}) while it replayed the write-ahead log",
                    paths.db(),
                    probe.program.display()
                ))),
                ProbeOutcome::Exited { .. } => None,
            }
        }
        _ => None,
    };
    let (class, wal_error) = match probed {
        Some(e) => (
            ErrorClass::WalReplay {
                cause: WalReplayCause::ProcessAborted,
            },
            e,
        ),
        None => {
            let phase = Instant::now();
            let first = connector.connect(paths.db());
            report.phase("connect", phase);
            #[cfg(feature = "failpoints")]
            fail::fail_point!("sysdb::open::connected");
            match first {
                Ok(conn) if resuming.is_some() => return recovery.finish(conn),
                Ok(conn) => return Ok(conn),
                Err(e) => (classify_error(&e), e),
            }
        }
    };
    report.error = Some(MetError::new(class, &wal_error));

    if resuming.is_some() && file_unreadable(class) {
        // The file is the copy the killed recovery restored, and it does
        // not read: go on to the snapshot, as that recovery would have.
        tracing::warn!(error = %wal_error, "the database file the earlier recovery restored is unreadable");
        strict_check(paths, ladder, options, report)?;
        recovery.set_aside(report)?;
        let conn = recovery.restore(None, &wal_error, report)?;
        return recovery.finish(conn);
    }

    let snapshot = paths.snapshot();
    if !class.is_wal_replay() || fs_err::metadata(&snapshot).is_err() {
        tracing::warn!(db = %paths.db(), class = class.as_str(), error = %wal_error, "open failed; not recoverable automatically");
        return Err(Error::Open {
            path: paths.db().to_owned(),
            class,
            source: Box::new(wal_error),
        });
    }
    tracing::warn!(db = %paths.db(), %class, error = %wal_error, "write-ahead log replay failed; recovering");

    let marker = Recovering {
        class: class.as_str().to_owned(),
        error: wal_error.to_string(),
        started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        pid: std::process::id(),
    };
    crate::marker::write(
        paths,
        &paths.recovering(),
        &marker.to_bytes(),
        "writing the recovery marker for",
    )?;
    #[cfg(feature = "failpoints")]
    fail::fail_point!("sysdb::recover::marked");
    let set = recovery.set_aside(report)?;
    report.wal_bytes_set_aside = set
        .moved
        .iter()
        .filter(|m| set.database() != Some(*m))
        .map(|m| m.bytes)
        .sum();
    let db = set.database().map(|m| m.to.clone());
    let conn = recovery.restore(db.as_deref(), &wal_error, report)?;
    recovery.finish(conn)
}

/// The steps of one recovery, on the closed files.
struct Recovery<'a> {
    paths: &'a Paths,
    ladder: &'a Ladder,
    options: &'a OpenOptions,
    connector: &'a dyn Connector,
    closed: ClosedDb,
}

impl Recovery<'_> {
    fn files_error(&self, doing: &'static str) -> impl FnOnce(sysdb_snapshot::Error) -> Error {
        let path = self.paths.db().to_owned();
        move |source| Error::Move {
            doing,
            path,
            source,
        }
    }

    /// Set the database and every sidecar aside.
    fn set_aside(&self, report: &mut OpenReport) -> Result<sysdb_snapshot::Quarantined> {
        let phase = Instant::now();
        let set = quarantine(&self.closed).map_err(self.files_error("quarantining"))?;
        report.phase("quarantine", phase);
        report
            .quarantined
            .extend(set.moved.iter().map(MovedFile::from));
        for m in &set.moved {
            tracing::info!(from = %m.from, to = %m.to, bytes = m.bytes, "set aside");
        }
        Ok(set)
    }

    /// Restore `db` (the database file set aside, at its last checkpoint),
    /// and only if that is missing or unreadable, the pre-migrate snapshot;
    /// connect to the result.
    fn restore(
        &self,
        db: Option<&Utf8Path>,
        wal_error: &duckdb::Error,
        report: &mut OpenReport,
    ) -> Result<Connection> {
        let paths = self.paths;
        let reopen_error = |reconnect| Error::Reopen {
            path: paths.db().to_owned(),
            reconnect: Box::new(reconnect),
            source: Box::new(duck_error(&wal_error.to_string())),
        };
        // First the database file at its last checkpoint: it loses nothing
        // that was checkpointed.
        if let Some(db) = db {
            let phase = Instant::now();
            restore(&self.closed, db).map_err(self.files_error("restoring"))?;
            #[cfg(feature = "failpoints")]
            fail::fail_point!("sysdb::recover::restored");
            let reconnect = self.connector.connect(paths.db());
            report.phase("restore-database", phase);
            match reconnect {
                Ok(conn) => {
                    report.restored = Some(Restored {
                        source: RestoreSource::DatabaseAtLastCheckpoint,
                        from: db.to_owned(),
                        version: version(self.ladder, &conn),
                        snapshot_age_secs: None,
                    });
                    tracing::info!(from = %db, "restored the database file at its last checkpoint");
                    return Ok(conn);
                }
                Err(e) if file_unreadable(classify_error(&e)) => {
                    tracing::warn!(error = %e, "the database file at its last checkpoint is unreadable");
                    // The refusal leaves this copy in place: the next open
                    // fails on it the same way instead of starting empty.
                    strict_check(paths, self.ladder, self.options, report)?;
                    // The copy duplicates what is already in quarantine; set
                    // it aside too rather than delete it.
                    self.set_aside(report)?;
                }
                Err(reconnect) => return Err(reopen_error(reconnect)),
            }
        } else {
            strict_check(paths, self.ladder, self.options, report)?;
        }

        // Then the pre-migrate snapshot.
        let snapshot = paths.snapshot();
        let age = age(&snapshot);
        let phase = Instant::now();
        restore(&self.closed, &snapshot).map_err(self.files_error("restoring"))?;
        #[cfg(feature = "failpoints")]
        fail::fail_point!("sysdb::recover::restored");
        let reconnect = self.connector.connect(paths.db());
        report.phase("restore-snapshot", phase);
        let conn = reconnect.map_err(reopen_error)?;
        let version = version(self.ladder, &conn);
        tracing::info!(snapshot = %snapshot, ?age, ?version, "restored the pre-migrate snapshot");
        report.restored = Some(Restored {
            source: RestoreSource::Snapshot,
            from: snapshot,
            version,
            snapshot_age_secs: age.map(|a| a.as_secs()),
        });
        Ok(conn)
    }

    /// The restored database opened: the recovery is over.
    fn finish(&self, conn: Connection) -> Result<Connection> {
        #[cfg(feature = "failpoints")]
        fail::fail_point!("sysdb::recover::reconnected");
        remove_durably(&self.paths.recovering()).map_err(|source| Error::Move {
            doing: "removing the recovery marker of",
            path: self.paths.db().to_owned(),
            source,
        })?;
        Ok(conn)
    }
}

/// A DuckDB error carrying `text`: the failure that started a recovery, as
/// recorded in its marker or seen by the probe.
fn duck_error(text: &str) -> duckdb::Error {
    duckdb::Error::DuckDBFailure(
        duckdb::ffi::Error::new(duckdb::ffi::DuckDBError),
        Some(text.to_owned()),
    )
}

/// Whether a write-ahead log (or a checkpoint's sidecar) waits to be
/// replayed.
fn wal_present(paths: &Paths) -> bool {
    sysdb_snapshot::SIDECAR_SUFFIXES
        .iter()
        .any(|suffix| fs_err::metadata(paths.files().sibling(suffix)).is_ok_and(|m| m.len() > 0))
}

/// The database file of the newest quarantine set that holds one.
fn newest_quarantined_db(paths: &Paths) -> Result<Option<Utf8PathBuf>> {
    let sets = sysdb_snapshot::list(paths.files()).map_err(|source| Error::Move {
        doing: "listing the quarantine sets of",
        path: paths.db().to_owned(),
        source,
    })?;
    let prefix = paths.files().sibling(".broken.");
    Ok(sets.into_iter().find_map(|set| {
        set.files.into_iter().map(|(path, _)| path).find(|path| {
            path.as_str()
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| !rest.contains(".wal"))
        })
    }))
}

/// Under [`OpenOptions::strict_snapshot`], allow restoring the snapshot
/// only when the intent marker shows a migration in flight and names this
/// very snapshot (same size and checksum).
fn strict_check(
    paths: &Paths,
    ladder: &Ladder,
    options: &OpenOptions,
    report: &OpenReport,
) -> Result<()> {
    if !options.strict_snapshot {
        return Ok(());
    }
    let snapshot = paths.snapshot();
    let why = match &report.marker {
        Some(marker) if marker.names_snapshot(&snapshot)? => return Ok(()),
        Some(_) => "the intent marker names another snapshot than the one on disk",
        None if report.marker_found => "the intent marker cannot be read",
        None => "no migration was in flight",
    };
    let refused = Error::SnapshotRefused {
        path: paths.db().to_owned(),
        age: age(&snapshot).map_or("at an unknown time".to_owned(), |a| {
            format!(
                "{} ago",
                humantime::format_duration(Duration::from_secs(a.as_secs()))
            )
        }),
        version: read_only_version(&snapshot, ladder),
        snapshot,
        why,
    };
    tracing::error!(error = %refused, "refusing to restore the snapshot");
    Err(refused)
}

/// How long ago the file was last written.
fn age(path: &Utf8Path) -> Option<Duration> {
    let modified = fs_err::metadata(path).and_then(|m| m.modified()).ok()?;
    SystemTime::now().duration_since(modified).ok()
}

/// The schema version of an open database, if it can be read.
fn version(ladder: &Ladder, conn: &Connection) -> Option<u32> {
    ladder.status(conn).ok().map(|s| s.current)
}

/// The schema version of a database file, read without writing to it.
fn read_only_version(path: &Utf8Path, ladder: &Ladder) -> Option<u32> {
    let config = config().ok()?.access_mode(AccessMode::ReadOnly).ok()?;
    let conn = Connection::open_with_flags(path, config).ok()?;
    version(ladder, &conn)
}

/// Decide, before connecting, whether a missing database file may be
/// created. It may not when anything shows that one existed: a snapshot, an
/// intent marker, a write-ahead log or a quarantine set. Creating an empty
/// database there would bring the service up without its data, and the
/// next migration would replace the snapshot with a copy of that emptiness.
pub(crate) fn refuse_if_vanished(paths: &Paths, report: &OpenReport) -> Result<()> {
    // A recovery marker explains a missing database: the recovery that set
    // it aside was killed, and this open finishes it.
    if report.recovery_resumed.is_some() || fs_err::symlink_metadata(paths.db()).is_ok() {
        return Ok(());
    }
    let mut evidence: Vec<String> = [paths.snapshot(), paths.previous_snapshot(), paths.wal()]
        .into_iter()
        .filter(|p| fs_err::symlink_metadata(p).is_ok())
        .map(|p| p.to_string())
        .collect();
    if report.marker_found {
        evidence.push(paths.marker().to_string());
    }
    let sets = sysdb_snapshot::list(paths.files()).map_err(|source| Error::Move {
        doing: "listing the quarantine sets of",
        path: paths.db().to_owned(),
        source,
    })?;
    evidence.extend(sets.iter().map(|s| format!("quarantine set {}", s.id)));
    if evidence.is_empty() {
        return Ok(());
    }
    Err(Error::Vanished {
        path: paths.db().to_owned(),
        evidence,
    })
}
