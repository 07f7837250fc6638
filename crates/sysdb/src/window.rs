//! The migration window: snapshot, apply, checkpoint, with an intent marker
//! on disk for as long as it is open.

use std::time::{Instant, SystemTime};

use duckdb::Connection;
use sysdb_schema::{ApplyOptions, Ladder};
use sysdb_snapshot::{remove_durably, take, write_durably, ClosedDb};

use crate::marker::{sha256_file, Marker};
use crate::report::{Migration, StepRun};
use crate::{Connector, Error, OpenOptions, OpenReport, Paths, Result};

pub(crate) fn ensure_schema(
    conn: Connection,
    paths: &Paths,
    ladder: &Ladder,
    options: &OpenOptions,
    connector: &dyn Connector,
    report: &mut OpenReport,
) -> Result<Connection> {
    let schema_error = |source| Error::Schema {
        path: paths.db().to_owned(),
        source: Box::new(source),
    };
    let apply_options = ApplyOptions {
        target: None,
        accept_drift: options.accept_drift,
    };
    let marker = paths.marker();

    let phase = Instant::now();
    let plan = ladder.plan(&conn, &apply_options).map_err(schema_error)?;
    report.phase("plan", phase);
    if plan.is_empty() {
        if report.marker_found {
            // A window that finished but was killed before removing its
            // marker: the ladder is at its top, the marker is stale.
            remove_marker(paths)?;
        }
        return Ok(conn);
    }

    let phase = Instant::now();
    conn.execute_batch("CHECKPOINT")
        .map_err(|source| Error::Statement {
            path: paths.db().to_owned(),
            statement: "CHECKPOINT",
            source: Box::new(source),
        })?;
    drop(conn);
    let closed = ClosedDb::assume_closed(paths.files().clone());
    let taken = take(&closed).map_err(|source| Error::Move {
        doing: "taking the pre-migrate snapshot of",
        path: paths.db().to_owned(),
        source,
    })?;
    // The marker comes after the snapshot, so a marker on disk always names
    // a complete snapshot. A kill between the two leaves the database as it
    // was (checkpointed, closed): the next open simply starts again.
    let intent = Marker {
        from: plan.from,
        to: plan.to,
        snapshot: taken.to.clone(),
        snapshot_bytes: taken.bytes,
        snapshot_sha256: sha256_file(&taken.to)?,
        started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        pid: std::process::id(),
    };
    write_durably(&marker, &intent.to_bytes()).map_err(|source| Error::Move {
        doing: "writing the intent marker for",
        path: paths.db().to_owned(),
        source,
    })?;
    report.phase("snapshot", phase);
    tracing::info!(snapshot = %taken.to, bytes = taken.bytes, from = plan.from, to = plan.to, "took the pre-migrate snapshot");

    let phase = Instant::now();
    let conn = connector
        .connect(paths.db())
        .map_err(|source| Error::Open {
            path: paths.db().to_owned(),
            class: sysdb_errclass::classify_error(&source),
            source: Box::new(source),
        })?;
    let mut steps = Vec::new();
    let applied = ladder
        .apply_with(&conn, &apply_options, &mut |done| {
            tracing::info!(version = done.version, name = %done.name, "applied migration step");
            steps.push(StepRun::from(done));
        })
        .map_err(schema_error)?;
    report.phase("migrate", phase);
    remove_marker(paths)?;
    report.migration = Some(Migration {
        from: applied.from,
        to: applied.to,
        snapshot: taken.to,
        snapshot_bytes: taken.bytes,
        steps,
    });
    Ok(conn)
}

fn remove_marker(paths: &Paths) -> Result<()> {
    remove_durably(&paths.marker())
        .map(|_| ())
        .map_err(|source| Error::Move {
            doing: "removing the intent marker of",
            path: paths.db().to_owned(),
            source,
        })
}
