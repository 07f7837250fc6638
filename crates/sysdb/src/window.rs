//! The migration window: snapshot, apply, checkpoint, with an intent marker
//! on disk for as long as it is open.

use std::sync::{Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use duckdb::Connection;
use sysdb_schema::{ApplyOptions, Ladder};
use sysdb_snapshot::{forget_previous, keep_previous, remove_durably, ClosedDb};

use crate::blocks;
use crate::marker::Marker;
use crate::plan::{self, Found};
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

    let snapshot = fs_err::metadata(paths.snapshot()).ok();
    let kept = match (plan::window(found, snapshot.is_some()), snapshot) {
        (plan::Window::Resume, Some(meta)) => {
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
            let taken = snapshot_window(conn, paths, &plan, connector, &options.progress, report)?;
            let phase = Instant::now();
            let conn = connector
                .connect(paths.db())
                .map_err(Error::open(paths.db()))?;
            report.phase("reopen", phase);
            (conn, taken.to, taken.bytes)
        }
    };
    // The report says what the window did as it goes, so that an error
    // after a step carries the steps applied before it.
    let migration = report.migration.insert(Migration {
        from: plan.from,
        to: plan.from,
        snapshot,
        snapshot_bytes,
        resumed_window: kept.is_some(),
        steps: Vec::new(),
    });

    let phase = Instant::now();
    let running = options
        .progress
        .begin(Task::Migrate, Some(plan.steps.len() as u64));
    ladder
        .apply_with(&conn, &apply_options, &mut |done| {
            tracing::info!(version = done.version, name = %done.name, "applied migration step");
            migration.steps.push(StepRun::from(done));
            migration.to = done.version;
            running.advance(migration.steps.len() as u64);
        })
        .map_err(schema_error)?;
    drop(running);
    report.phase("migrate", phase);
    #[cfg(feature = "failpoints")]
    fail::fail_point!("sysdb::window::applied");
    finish_window(paths)?;
    Ok(conn)
}

/// Open a migration window: take the pre-migrate snapshot (see
/// [`take_checked`]), write the intent marker naming it.
fn snapshot_window(
    conn: Connection,
    paths: &Paths,
    plan: &sysdb_schema::Plan,
    connector: &dyn Connector,
    progress: &ProgressHook,
    report: &mut OpenReport,
) -> Result<sysdb_snapshot::Copied> {
    tracing::info!(db = %paths.db(), from = plan.from, to = plan.to, "migrating: checkpointing first");
    let (taken, digest) = take_checked(conn, paths, connector, progress, &mut |name, started| {
        report.phase(name, started)
    })?;
    let phase = Instant::now();
    // The marker comes after the snapshot, so a marker on disk always names
    // a complete snapshot. A kill between the two leaves the database as it
    // was (checkpointed, closed): the next open simply starts again.
    let intent = Marker {
        from: plan.from,
        to: plan.to,
        snapshot: taken.to.clone(),
        snapshot_bytes: taken.bytes,
        snapshot_xxh3_128: Some(digest),
        snapshot_sha256: String::new(),
        started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        pid: std::process::id(),
    };
    sysdb_snapshot::write_durably(&paths.marker(), &intent.to_bytes())
        .map_err(Error::snapshot("writing the intent marker for", paths.db()))?;
    report.phase("mark", phase);
    #[cfg(feature = "failpoints")]
    fail::fail_point!("sysdb::window::marked");
    tracing::info!(snapshot = %taken.to, bytes = taken.bytes, from = plan.from, to = plan.to, "took the pre-migrate snapshot");
    Ok(taken)
}

/// Take the pre-migrate snapshot of the open database `conn`, never over
/// the last good one with a copy of damage: checkpoint and close; copy the
/// file under a temporary name beside the snapshot while reading it once
/// more for its XXH3-128 digest and DuckDB's block checksums (the database
/// is closed and this process holds the open lock, so both read the same
/// bytes); where the checksums do not vouch for every block, connect again
/// and read every table whole through DuckDB, which refuses on damage; then
/// keep the snapshot being replaced as the previous one and put the copy in
/// place. Returns the copy and its digest; `phase` is told each phase.
fn take_checked(
    conn: Connection,
    paths: &Paths,
    connector: &dyn Connector,
    progress: &ProgressHook,
    phase: &mut dyn FnMut(&'static str, Instant),
) -> Result<(sysdb_snapshot::Copied, String)> {
    let started = Instant::now();
    checkpoint(&conn, paths, progress)?;
    #[cfg(feature = "failpoints")]
    fail::fail_point!("sysdb::window::checkpointed");
    phase("checkpoint", started);

    let started = Instant::now();
    let in_use = blocks_in_use(&conn);
    drop(conn);
    let closed = ClosedDb::assume_closed(paths.files().clone());
    tracing::info!(snapshot = %paths.snapshot(), "copying the database for the pre-migrate snapshot, checking its blocks");
    let (staged, scanned) = copy_and_scan(&closed, paths, in_use, progress)?;
    phase("snapshot", started);

    let closed = if scanned.blocks.all_match() {
        closed
    } else {
        tracing::info!(blocks = ?scanned.blocks, "the block checksums do not vouch for every block (damage, or free blocks); reading every table whole before the snapshot is replaced");
        let started = Instant::now();
        drop(closed);
        let conn = connector
            .connect(paths.db())
            .map_err(Error::open(paths.db()))?;
        // On an error the staged copy is dropped, and with it removed.
        read_whole(&conn, paths, progress)?;
        drop(conn);
        phase("read-whole", started);
        ClosedDb::assume_closed(paths.files().clone())
    };

    keep_previous(&closed).map_err(Error::snapshot(
        "keeping the previous snapshot of",
        paths.db(),
    ))?;
    let taken = staged.commit(&mut |_| {}).map_err(snapshot_error(paths))?;
    #[cfg(feature = "failpoints")]
    fail::fail_point!("sysdb::window::snapshotted");
    Ok((taken, scanned.digest))
}

/// Stage the snapshot's copy of the closed database and, beside it, read
/// the database once ([`blocks::scan`]). The task's progress is the lesser
/// of the bytes copied and the bytes read.
fn copy_and_scan(
    closed: &ClosedDb,
    paths: &Paths,
    in_use: Option<u64>,
    progress: &ProgressHook,
) -> Result<(sysdb_snapshot::Staged, blocks::Scanned)> {
    let running = progress.begin(Task::Snapshot, file_bytes(paths.db()));
    // (copied, read), behind one lock so that the reports only grow.
    let done = Mutex::new((0u64, 0u64));
    let report = |copied: Option<u64>, read: Option<u64>| {
        let mut done = done.lock().unwrap_or_else(PoisonError::into_inner);
        let before = done.0.min(done.1);
        done.0 = copied.unwrap_or(done.0);
        done.1 = read.unwrap_or(done.1);
        if done.0.min(done.1) > before {
            running.advance(done.0.min(done.1));
        }
    };
    let (staged, scanned) = std::thread::scope(|s| {
        let scanning =
            s.spawn(|| blocks::scan(paths.db(), in_use, &|read| report(None, Some(read))));
        let staged = sysdb_snapshot::stage_take(closed, &mut |step| {
            if let sysdb_snapshot::Step::Copying { done, .. } = step {
                report(Some(done), None);
            }
        });
        let scanned = scanning
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (staged, scanned)
    });
    let staged = staged.map_err(snapshot_error(paths))?;
    let scanned = scanned.map_err(|source| Error::Scan {
        path: paths.db().to_owned(),
        cause: source,
    })?;
    Ok((staged, scanned))
}

/// The blocks DuckDB has in the open database, free ones included; `None`
/// if it does not say (then the header's count is checked).
fn blocks_in_use(conn: &Connection) -> Option<u64> {
    conn.query_row(
        "SELECT total_blocks FROM pragma_database_size() WHERE database_name = current_database()",
        [],
        |row| row.get::<_, i64>(0),
    )
    .ok()
    .and_then(|blocks| u64::try_from(blocks).ok())
}

fn snapshot_error(paths: &Paths) -> impl FnOnce(sysdb_snapshot::Error) -> Error {
    Error::snapshot("taking the pre-migrate snapshot of", paths.db())
}

/// Take the pre-migrate snapshot now, outside a migration (an operator's
/// `sysdb snapshot take`), as a migration window takes it: connect (which
/// replays a log that waits), checkpoint, close, copy while checking every
/// block against DuckDB's checksum (where one does not match, read every
/// table whole through DuckDB): a damaged block refuses before the last
/// good snapshot is touched, the snapshot it replaces is kept as the
/// previous one, and a database that does not open
/// (a log that does not replay, another process's DuckDB lock) is refused
/// with the connect's error, a missing one with [`Error::Missing`] before
/// anything is written. No intent marker is written: no migration is
/// in flight. `_held` is the proof that this process holds the open lock.
pub fn snapshot_now(
    paths: &Paths,
    _held: &OpenLock,
    connector: &dyn Connector,
    progress: &ProgressHook,
) -> Result<sysdb_snapshot::Copied> {
    snapshot_possible(paths)?;
    let conn = connector
        .connect(paths.db())
        .map_err(Error::open(paths.db()))?;
    take_checked(conn, paths, connector, progress, &mut |_, _| {}).map(|(taken, _)| taken)
}

/// [`Error::Missing`] where there is no database to take a snapshot of
/// (DuckDB would create an empty one, whose copy would take the real
/// snapshot's place): [`snapshot_now`] refuses then before it writes
/// anything, and a caller may ask first, before it takes the lock.
pub fn snapshot_possible(paths: &Paths) -> Result<()> {
    crate::folder::require(paths.db(), "a snapshot")
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
    forget_previous(paths.files()).map_err(Error::snapshot(
        "removing the previous snapshot of",
        paths.db(),
    ))?;
    Ok(())
}

fn remove_marker(paths: &Paths) -> Result<()> {
    remove_durably(&paths.marker())
        .map(|_| ())
        .map_err(Error::snapshot("removing the intent marker of", paths.db()))
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
        read_whole(&conn, &paths, &ProgressHook::default())
            .expect("not damage: the window goes on");
    }
}
