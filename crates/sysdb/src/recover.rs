//! Connect, and recover from a write-ahead log that cannot be replayed.
//!
//! This is the only place that decides what a failure to open allows.

use std::time::{Duration, Instant, SystemTime};

use camino::Utf8Path;
use duckdb::{AccessMode, Connection};
use sysdb_errclass::{classify_error, ErrorClass};
use sysdb_schema::Ladder;
use sysdb_snapshot::{quarantine, restore, ClosedDb};

use crate::report::{MetError, MovedFile, RestoreSource, Restored};
use crate::{config, Connector, Error, OpenOptions, OpenReport, Paths, Result};

/// A failure to open that means the file itself cannot be used, so a
/// restore may fall back to the snapshot. A lock, a permission or a full
/// disk says nothing about the file and stops the recovery instead; a file
/// from a newer DuckDB is readable by that DuckDB and must not be replaced.
fn file_unreadable(class: ErrorClass) -> bool {
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
    let phase = Instant::now();
    let first = connector.connect(paths.db());
    report.phase("connect", phase);
    let wal_error = match first {
        Ok(conn) => return Ok(conn),
        Err(e) => e,
    };
    let class = classify_error(&wal_error);
    report.error = Some(MetError::new(class, &wal_error));
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

    // No connection is open: the connect above failed.
    let closed = ClosedDb::assume_closed(paths.files().clone());
    let files_error = |doing| {
        let path = paths.db().to_owned();
        move |source| Error::Move {
            doing,
            path,
            source,
        }
    };

    let phase = Instant::now();
    let set = quarantine(&closed).map_err(files_error("quarantining"))?;
    report.phase("quarantine", phase);
    report
        .quarantined
        .extend(set.moved.iter().map(MovedFile::from));
    report.wal_bytes_set_aside = set
        .moved
        .iter()
        .filter(|m| set.database() != Some(*m))
        .map(|m| m.bytes)
        .sum();
    for m in &set.moved {
        tracing::info!(from = %m.from, to = %m.to, bytes = m.bytes, "set aside");
    }

    // First the database file at its last checkpoint: it loses nothing that
    // was checkpointed.
    if let Some(db) = set.database() {
        let phase = Instant::now();
        restore(&closed, &db.to).map_err(files_error("restoring"))?;
        let reconnect = connector.connect(paths.db());
        report.phase("restore-database", phase);
        match reconnect {
            Ok(conn) => {
                report.restored = Some(Restored {
                    source: RestoreSource::DatabaseAtLastCheckpoint,
                    from: db.to.clone(),
                    version: version(ladder, &conn),
                    snapshot_age_secs: None,
                });
                tracing::info!(from = %db.to, "restored the database file at its last checkpoint");
                return Ok(conn);
            }
            Err(e) if file_unreadable(classify_error(&e)) => {
                tracing::warn!(error = %e, "the database file at its last checkpoint is unreadable");
                // The refusal leaves this copy in place: the next open fails
                // on it the same way instead of starting an empty database.
                strict_check(paths, ladder, options, report)?;
                // The copy duplicates what is already in quarantine; set it
                // aside too rather than delete it.
                let again = quarantine(&closed).map_err(files_error("quarantining"))?;
                report
                    .quarantined
                    .extend(again.moved.iter().map(MovedFile::from));
            }
            Err(reconnect) => {
                return Err(Error::Reopen {
                    path: paths.db().to_owned(),
                    reconnect: Box::new(reconnect),
                    source: Box::new(wal_error),
                })
            }
        }
    } else {
        strict_check(paths, ladder, options, report)?;
    }

    // Then the pre-migrate snapshot.
    let age = age(&snapshot);
    let phase = Instant::now();
    restore(&closed, &snapshot).map_err(files_error("restoring"))?;
    let reconnect = connector.connect(paths.db());
    report.phase("restore-snapshot", phase);
    match reconnect {
        Ok(conn) => {
            let version = version(ladder, &conn);
            tracing::info!(snapshot = %snapshot, ?age, ?version, "restored the pre-migrate snapshot");
            report.restored = Some(Restored {
                source: RestoreSource::Snapshot,
                from: snapshot,
                version,
                snapshot_age_secs: age.map(|a| a.as_secs()),
            });
            Ok(conn)
        }
        Err(reconnect) => Err(Error::Reopen {
            path: paths.db().to_owned(),
            reconnect: Box::new(reconnect),
            source: Box::new(wal_error),
        }),
    }
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
        Some(marker) if marker.snapshot == snapshot && marker.matches_snapshot()? => return Ok(()),
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
    if fs_err::symlink_metadata(paths.db()).is_ok() {
        return Ok(());
    }
    let mut evidence: Vec<String> = [paths.snapshot(), paths.wal()]
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
