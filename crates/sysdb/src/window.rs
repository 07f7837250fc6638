//! The migration window: snapshot, apply, checkpoint, with an intent marker
//! on disk for as long as it is open.

use std::time::{Instant, SystemTime};

use duckdb::Connection;
use sysdb_schema::{ApplyOptions, Ladder};
use sysdb_snapshot::{forget_previous, keep_previous, remove_durably, take_with, ClosedDb};

use crate::marker::{sha256_file, Marker};
use crate::plan::Found;
use crate::progress::{file_bytes, ProgressHook, Task};
use crate::report::{Migration, StepRun};
use crate::{Connector, Error, ErrorClass, OpenLock, OpenOptions, OpenReport, Paths, Result};

pub(crate) fn ensure_schema(
    conn: Connection,
    paths: &Paths,
    ladder: &Ladder,
    options: &OpenOptions,
    connector: &dyn Connector,
    found: &Found,
    report: &mut OpenReport,
) -> Result<Connection> {
    let schema_error = |source| Error::Schema {
        path: paths.db().to_owned(),
        cause: Box::new(source),
    };
    let apply_options = ApplyOptions {
        target: None,
        accept_drift: options.accept_drift,
    };

    let phase = Instant::now();
    let plan = ladder.plan(&conn, &apply_options).map_err(schema_error)?;
    report.phase("plan", phase);
    if plan.is_empty() {
        if found.window_open() {
            // A window that finished but was killed before removing its
            // marker: the ladder is at its top, the marker is stale.
            finish_window(paths)?;
        }
        return Ok(conn);
    }

    // A window killed (or failed) after its marker was written is resumed:
    // its snapshot is the state before the migration still in flight, and
    // stays. The database may since hold damage that only the migration
    // reads, so it is not snapshotted over that copy. A marker that cannot
    // confirm the snapshot (unreadable, or naming other bytes) still says a
    // window was open: both files stay as they are, since which of them is
    // damaged cannot be told.
    let kept = match fs_err::metadata(paths.snapshot()) {
        Ok(meta) if found.window_open() => {
            let confirmed = match found.marker() {
                Some(m) => m.names_snapshot(&paths.snapshot())?,
                None => false,
            };
            if !confirmed {
                tracing::warn!(marker = %paths.marker(), snapshot = %paths.snapshot(), "the intent marker does not confirm the snapshot; keeping both as they are");
            }
            Some(meta.len())
        }
        _ => None,
    };
    let (conn, snapshot, snapshot_bytes) = match kept {
        Some(bytes) => {
            tracing::warn!(snapshot = %paths.snapshot(), "resuming the migration window left open");
            (conn, paths.snapshot(), bytes)
        }
        None => {
            let taken = snapshot_window(conn, paths, &plan, &options.progress, report)?;
            let phase = Instant::now();
            let conn = connector
                .connect(paths.db())
                .map_err(Error::open(paths.db()))?;
            report.phase("reopen", phase);
            (conn, taken.to, taken.bytes)
        }
    };
    let resumed_window = kept.is_some();

    let phase = Instant::now();
    let mut steps = Vec::new();
    let running = options
        .progress
        .begin(Task::Migrate, Some(plan.steps.len() as u64));
    let applied = ladder
        .apply_with(&conn, &apply_options, &mut |done| {
            tracing::info!(version = done.version, name = %done.name, "applied migration step");
            steps.push(StepRun::from(done));
            running.advance(steps.len() as u64);
        })
        .map_err(schema_error)?;
    drop(running);
    report.phase("migrate", phase);
    #[cfg(feature = "failpoints")]
    fail::fail_point!("sysdb::window::applied");
    finish_window(paths)?;
    report.migration = Some(Migration {
        from: applied.from,
        to: applied.to,
        snapshot,
        snapshot_bytes,
        resumed_window,
        steps,
    });
    Ok(conn)
}

/// Open a migration window: checkpoint, close, keep the previous snapshot,
/// take the new one, write the intent marker naming it.
fn snapshot_window(
    conn: Connection,
    paths: &Paths,
    plan: &sysdb_schema::Plan,
    progress: &ProgressHook,
    report: &mut OpenReport,
) -> Result<sysdb_snapshot::Copied> {
    let phase = Instant::now();
    tracing::info!(db = %paths.db(), from = plan.from, to = plan.to, "migrating: checkpointing first");
    checkpoint(&conn, paths, progress)?;
    #[cfg(feature = "failpoints")]
    fail::fail_point!("sysdb::window::checkpointed");
    report.phase("checkpoint", phase);
    let phase = Instant::now();
    read_whole(&conn, paths, progress)?;
    report.phase("read-whole", phase);
    let phase = Instant::now();
    let closed = close_keeping_previous(conn, paths)?;
    // The database is closed and this process holds the open lock, so
    // nothing writes it: its SHA-256, computed while it is copied, is the
    // snapshot's, and the two passes over the file overlap.
    tracing::info!(snapshot = %paths.snapshot(), "taking the pre-migrate snapshot");
    let (taken, snapshot_sha256) = std::thread::scope(|s| {
        let hashing = s.spawn(|| sha256_file(paths.db()));
        let running = progress.begin(Task::Snapshot, file_bytes(paths.db()));
        let taken = take_with(&closed, &mut running.copying());
        drop(running);
        let hashed = hashing
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (taken, hashed)
    });
    let taken = taken.map_err(|source| Error::Move {
        doing: "taking the pre-migrate snapshot of",
        path: paths.db().to_owned(),
        cause: source,
    })?;
    let snapshot_sha256 = snapshot_sha256?;
    #[cfg(feature = "failpoints")]
    fail::fail_point!("sysdb::window::snapshotted");
    // The marker comes after the snapshot, so a marker on disk always names
    // a complete snapshot. A kill between the two leaves the database as it
    // was (checkpointed, closed): the next open simply starts again.
    let intent = Marker {
        from: plan.from,
        to: plan.to,
        snapshot: taken.to.clone(),
        snapshot_bytes: taken.bytes,
        snapshot_sha256,
        started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        pid: std::process::id(),
    };
    crate::marker::write(
        paths,
        &paths.marker(),
        &intent.to_bytes(),
        "writing the intent marker for",
    )?;
    report.phase("snapshot", phase);
    #[cfg(feature = "failpoints")]
    fail::fail_point!("sysdb::window::marked");
    tracing::info!(snapshot = %taken.to, bytes = taken.bytes, from = plan.from, to = plan.to, "took the pre-migrate snapshot");
    Ok(taken)
}

/// Take the pre-migrate snapshot now, outside a migration (an operator's
/// `sysdb snapshot take`), as a migration window takes it: connect (which
/// replays a log that waits), checkpoint, read the database whole, close;
/// keep the snapshot it replaces as the previous one; copy. A damaged block
/// refuses before the last good snapshot is touched, and a database that
/// does not open (a log that does not replay, another process's DuckDB
/// lock) is refused with the connect's error. No intent marker is written:
/// no migration is in flight. `_held` is the proof that this process holds
/// the open lock.
pub fn snapshot_now(
    paths: &Paths,
    _held: &OpenLock,
    connector: &dyn Connector,
    progress: &ProgressHook,
) -> Result<sysdb_snapshot::Copied> {
    let conn = connector
        .connect(paths.db())
        .map_err(Error::open(paths.db()))?;
    checkpoint(&conn, paths, progress)?;
    read_whole(&conn, paths, progress)?;
    let closed = close_keeping_previous(conn, paths)?;
    let running = progress.begin(Task::Snapshot, file_bytes(paths.db()));
    let taken = take_with(&closed, &mut running.copying());
    taken.map_err(|source| Error::Move {
        doing: "taking the pre-migrate snapshot of",
        path: paths.db().to_owned(),
        cause: source,
    })
}

/// Close the database and keep the snapshot about to be replaced as the
/// previous one: it stays until a window completes, since the database
/// may hold damage that only the migration reads.
fn close_keeping_previous(conn: Connection, paths: &Paths) -> Result<ClosedDb> {
    drop(conn);
    let closed = ClosedDb::assume_closed(paths.files().clone());
    keep_previous(&closed).map_err(|source| Error::Move {
        doing: "keeping the previous snapshot of",
        path: paths.db().to_owned(),
        cause: source,
    })?;
    Ok(closed)
}

fn checkpoint(conn: &Connection, paths: &Paths, progress: &ProgressHook) -> Result<()> {
    let _running = progress.begin(Task::Checkpoint, None);
    conn.execute_batch("CHECKPOINT")
        .map_err(|source| Error::Statement {
            path: paths.db().to_owned(),
            statement: "CHECKPOINT",
            cause: Box::new(source),
        })
}

/// Read every column of every table, so that a damaged block is found
/// before the window replaces the snapshot (the last good copy) with a copy
/// of it; the open reads `schema_version` alone, and a migration may not
/// read the damage either. Index blocks are read only where DuckDB uses the
/// index. Only a failure that says the file is damaged (or could not be
/// read) refuses the window; one that says nothing about the file (a query
/// this DuckDB cannot run on some column type, memory) is logged and the
/// next table read.
fn read_whole(conn: &Connection, paths: &Paths, progress: &ProgressHook) -> Result<()> {
    tracing::info!(db = %paths.db(), "reading every table whole, so that a damaged block is found before the snapshot is replaced");
    let check = |table: String, read: duckdb::Result<()>| match read {
        Ok(()) => Ok(()),
        Err(source) => {
            let class = sysdb_errclass::classify_error(&source);
            if !(crate::plan::file_unreadable(class) || class == ErrorClass::Io) {
                tracing::warn!(table, error = %source, "could not read the table whole before the snapshot; going on");
                return Ok(());
            }
            Err(Error::Unreadable {
                path: paths.db().to_owned(),
                snapshot: Some(paths.snapshot()).filter(|s| s.exists()),
                table,
                class,
                cause: Box::new(source),
            })
        }
    };
    let tables: duckdb::Result<Vec<(String, String)>> = conn
        .prepare(
            "SELECT schema_name, table_name FROM duckdb_tables() \
             WHERE database_name = current_database() ORDER BY ALL",
        )
        .and_then(|mut stmt| {
            stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        });
    let tables = match tables {
        Ok(tables) => tables,
        Err(e) => {
            check("(the catalog)".to_owned(), Err(e))?;
            Vec::new()
        }
    };
    let running = progress.begin(Task::ReadWhole, Some(tables.len() as u64));
    for (done, (schema, table)) in (1u64..).zip(tables) {
        let name = format!("{}.{}", quoted(&schema), quoted(&table));
        let sql = format!("SELECT bit_xor(hash(COLUMNS(*))) FROM {name}");
        let read = conn
            .prepare(&sql)
            .and_then(|mut stmt| stmt.query([])?.next().map(|_| ()));
        check(name, read)?;
        running.advance(done);
    }
    Ok(())
}

/// An identifier, quoted for SQL.
fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The window completed: its marker and the previous snapshot go.
fn finish_window(paths: &Paths) -> Result<()> {
    remove_marker(paths)?;
    forget_previous(paths.files()).map_err(|source| Error::Move {
        doing: "removing the previous snapshot of",
        path: paths.db().to_owned(),
        cause: source,
    })?;
    Ok(())
}

fn remove_marker(paths: &Paths) -> Result<()> {
    remove_durably(&paths.marker())
        .map(|_| ())
        .map_err(|source| Error::Move {
            doing: "removing the intent marker of",
            path: paths.db().to_owned(),
            cause: source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_that_cannot_be_read_whole_for_a_reason_other_than_damage_does_not_refuse() {
        let conn = Connection::open_in_memory().expect("in-memory database");
        conn.execute_batch(
            "CREATE TABLE ok (id INTEGER, body VARCHAR);
             INSERT INTO ok VALUES (1, 'a');
             SET VARIABLE ready = true;
             CREATE TABLE odd (s VARCHAR, d VARCHAR GENERATED ALWAYS AS (
                 CASE WHEN getvariable('ready') THEN s ELSE error('not ready') END) VIRTUAL);
             INSERT INTO odd (s) VALUES ('a');
             RESET VARIABLE ready;",
        )
        .expect("tables");
        let failure = conn
            .query_row("SELECT bit_xor(hash(COLUMNS(*))) FROM odd", [], |_| Ok(()))
            .expect_err("the generated column errs");
        assert!(!crate::plan::file_unreadable(
            sysdb_errclass::classify_error(&failure)
        ));
        let paths = Paths::for_db("/nowhere/system.duckdb").expect("paths");
        read_whole(&conn, &paths, &ProgressHook::none()).expect("not damage: the window goes on");
    }
}
