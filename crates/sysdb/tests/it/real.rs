//! The open flow on real files made by real processes: a crash in the
//! middle of a migration step, another process holding DuckDB's lock, a
//! corrupt block, a foreign file, two processes racing to recover.

use std::time::Duration;

use camino::Utf8Path;
use std::sync::{Arc, Mutex};

use sysdb::report::{Marker, RestoreSource};
use sysdb::{
    Connector, DuckDbConnector, Error, OpenOptions, Paths, Progress, ProgressHook, SystemDb, Task,
};
use sysdb_errclass::{classify_error, ErrorClass};
use sysdb_scenarios::child::{test_child, Crash};
use sysdb_scenarios::damage::{corrupt_a_block, flip_a_byte_until};
use sysdb_scenarios::ladders::insert_jobs;

use crate::{
    broken, duck_error, folder_digest, hold_duckdb_lock, job_count, ladder, ladder_to, redacted,
    seed_version, spawn_opener, wait_for, PathsOf, StateDir, SCHEMA_VERSION,
};

/// A database at version 26 holding `rows` jobs, closed, with the
/// pre-migrate snapshot the v27 migration takes first.
fn at_v26_with_snapshot(paths: &Paths, rows: u32) {
    let db = SystemDb::open(paths, &ladder_to(26), &OpenOptions::default()).expect("open at v26");
    db.conn()
        .execute_batch(&insert_jobs(0, rows.into()))
        .expect("insert jobs");
    let closed = db.close();
    sysdb_snapshot::take(closed.db()).expect("pre-migrate snapshot");
}

/// A real process applies step 27 and is killed (SIGKILL) after its commit
/// and before any checkpoint: the commit lives only in the WAL, which
/// DuckDB 2.0 cannot replay.
fn crash_in_step_27(paths: &Paths) {
    crate::crash_in_step_27(paths.db());
    assert!(paths.wal().exists(), "the crash left no WAL");
}

/// A hook that keeps every report of progress.
fn recorded_progress() -> (ProgressHook, Arc<Mutex<Vec<Progress>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&seen);
    let hook = ProgressHook::new(move |p| kept.lock().expect("not poisoned").push(p));
    (hook, seen)
}

/// Each task in the order it began, with its total and the last count it
/// reached; panics unless each ended before the next began.
fn tasks_run(seen: &[Progress]) -> Vec<(Task, Option<u64>, Option<u64>)> {
    let mut tasks: Vec<(Task, Option<u64>, Option<u64>)> = Vec::new();
    let mut open = None;
    for progress in seen {
        match *progress {
            Progress::Began { task, total } => {
                assert_eq!(open, None, "{task:?} began inside {open:?}");
                open = Some(task);
                tasks.push((task, total, None));
            }
            Progress::Advanced { task, done } => {
                assert_eq!(open, Some(task));
                let last = tasks.last_mut().expect("a task");
                assert!(last.2.is_none_or(|before| before <= done), "{seen:?}");
                last.2 = Some(done);
            }
            Progress::Ended { task } => {
                assert_eq!(open.take(), Some(task));
            }
            _ => {}
        }
    }
    assert_eq!(open, None, "a task never ended");
    tasks
}

fn open(paths: &Paths) -> sysdb::Result<SystemDb> {
    SystemDb::open(paths, &ladder(), &OpenOptions::default())
}

#[test]
fn a_real_crash_mid_migration_recovers_from_the_database_file_at_its_last_checkpoint() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 1000);
    crash_in_step_27(&paths);

    // Plain DuckDB no longer opens the folder.
    let err = DuckDbConnector
        .connect(paths.db())
        .expect_err("the WAL does not replay");
    assert!(classify_error(&err).is_wal_replay(), "{err}");

    let db = open(&paths).expect("recovered");
    assert_eq!(seed_version(db.conn()), i64::from(SCHEMA_VERSION));
    assert_eq!(job_count(db.conn()), 1000);
    let report = db.report();
    let restored = report.restored.as_ref().expect("restored");
    assert_eq!(restored.source, RestoreSource::DatabaseAtLastCheckpoint);
    assert_eq!(restored.version, Some(26));
    assert!(report.wal_bytes_set_aside > 0);
    let (dbs, wals) = broken(&dir.state());
    assert_eq!((dbs.len(), wals.len()), (1, 1), "{dbs:?} {wals:?}");
    insta::assert_snapshot!(redacted(report, &dir));
    drop(db);
    assert!(!paths.wal().exists());
}

#[test]
fn a_real_crash_without_a_snapshot_returns_duckdbs_error_and_touches_nothing() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 10);
    fs_err::remove_file(paths.snapshot()).expect("remove snapshot");
    crash_in_step_27(&paths);
    let before = folder_digest(&dir.state());

    let err = open(&paths).expect_err("no snapshot, no recovery");
    match &err {
        Error::Open {
            class,
            cause: source,
            ..
        } => {
            assert!(class.is_wal_replay(), "{class:?}");
            assert!(source.to_string().contains("job_state"), "{source}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(folder_digest(&dir.state()), before, "a file changed");
}

#[test]
fn a_real_duckdb_lock_held_by_another_process_touches_nothing() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 10);
    let holder = hold_duckdb_lock(paths.db());
    let pid = holder.pid;
    let before = folder_digest(&dir.state());

    let err = open(&paths).expect_err("DuckDB's lock is held");
    let status = holder.release().expect("reap holder");
    assert!(status.success(), "{status}");

    match &err {
        Error::Open { class, .. } => {
            assert_eq!(*class, ErrorClass::Locked { pid: Some(pid) });
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("Could not set lock"), "{err}");
    assert_eq!(folder_digest(&dir.state()), before, "a file changed");
}

#[test]
fn a_real_corrupt_block_touches_nothing() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 5000);
    corrupt_a_block(paths.db()).expect("a corrupt block");
    let before = folder_digest(&dir.state());

    let err = open(&paths).expect_err("corrupt");
    match &err {
        Error::Open { class, .. } => assert_eq!(*class, ErrorClass::CorruptDatabase),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(folder_digest(&dir.state()), before, "a file changed");
}

/// A table of md5 payloads added beside the ladder's, checkpointed, then
/// one byte of its data flipped where the connect does not read it: the
/// database opens, and reading the table fails on the block's checksum.
fn damage_a_table_the_open_does_not_read(path: &Utf8Path) {
    let conn = DuckDbConnector.connect(path).expect("connect");
    conn.execute_batch(
        "CREATE TABLE payloads AS SELECT range AS id, md5(range::VARCHAR) AS body FROM range(50000);
         CHECKPOINT;",
    )
    .expect("add payloads");
    drop(conn);
    flip_a_byte_until(path, true, |path| {
        let scan = DuckDbConnector.connect(path).and_then(|conn| {
            conn.query_row("SELECT bit_xor(hash(body)) FROM payloads", [], |r| {
                r.get::<_, u64>(0)
            })
        });
        scan.is_err_and(|e| classify_error(&e) == ErrorClass::CorruptDatabase)
            && DuckDbConnector.connect(path).is_ok()
    })
    .expect("a damaged table the open does not read");
}

#[test]
fn a_damaged_table_stops_the_migration_window_before_it_replaces_the_snapshot() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 100);
    damage_a_table_the_open_does_not_read(paths.db());
    let snapshot = fs_err::read(paths.snapshot()).expect("snapshot");

    let err = open(&paths).expect_err("damaged");
    match &err {
        Error::Unreadable {
            table,
            class,
            snapshot: kept,
            ..
        } => {
            assert_eq!(table, "\"main\".\"payloads\"");
            assert_eq!(*class, ErrorClass::CorruptDatabase);
            assert_eq!(kept.as_deref(), Some(paths.snapshot().as_path()));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        fs_err::read(paths.snapshot()).expect("snapshot"),
        snapshot,
        "the snapshot was replaced"
    );
    assert!(!paths.marker().exists(), "a migration window was opened");
    assert!(!paths.previous_snapshot().exists());
    let conn = DuckDbConnector
        .connect(paths.db())
        .expect("the database still opens");
    assert_eq!(seed_version(&conn), 26, "nothing was migrated");
}

#[test]
fn a_damaged_free_block_is_read_around_and_the_window_goes_on() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 100);
    // A table whose blocks become free once it is dropped, with another
    // table's blocks after them, so the file keeps them.
    let conn = DuckDbConnector.connect(paths.db()).expect("connect");
    conn.execute_batch(
        "CREATE TABLE gone AS SELECT range AS id, md5(range::VARCHAR) AS body FROM range(50000);
         CREATE TABLE kept AS SELECT range AS id, md5(range::VARCHAR) AS body FROM range(50000);
         CHECKPOINT;",
    )
    .expect("two tables");
    let (block, block_size): (i64, i64) = conn
        .query_row(
            "SELECT min(block_id), (SELECT block_size FROM pragma_database_size() WHERE database_name = current_database()) \
             FROM pragma_storage_info('gone') WHERE persistent AND block_id >= 0 AND column_name = 'body'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("a block of the table");
    conn.execute_batch("DROP TABLE gone; CHECKPOINT;")
        .expect("its blocks freed");
    drop(conn);
    let offset = 3 * 4096 + (block * block_size) as u64 + 100;
    sysdb_scenarios::damage::flip_byte(paths.db(), offset).expect("flip");

    let db = open(&paths).expect("a free block is no damage to refuse for");
    let report = db.report();
    let phases: Vec<&str> = report.timings.iter().map(|p| p.name).collect();
    assert!(
        phases.contains(&"read-whole"),
        "a block that does not match its checksum is read around: {phases:?}"
    );
    assert!(report.migration.is_some(), "{report}");
    assert_eq!(seed_version(db.conn()), i64::from(SCHEMA_VERSION));
    let rows: i64 = db
        .conn()
        .query_row("SELECT count(*) FROM kept", [], |r| r.get(0))
        .expect("kept reads");
    assert_eq!(rows, 50000);
}

/// The ladder to 26, then `steps` (version, name, SQL).
fn ladder_26_then(steps: &[(u32, &str, &str)]) -> sysdb::Ladder {
    let all: Vec<(u32, String, String)> = ladder_to(26)
        .steps()
        .iter()
        .map(|s| (s.version(), s.name().to_owned(), s.sql().to_owned()))
        .chain(
            steps
                .iter()
                .map(|(v, name, sql)| (*v, (*name).to_owned(), (*sql).to_owned())),
        )
        .collect();
    sysdb::Ladder::new(all).expect("ladder")
}

#[test]
fn the_intent_marker_names_the_snapshot_its_window_took() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 100);
    let failing = ladder_26_then(&[(27, "fails", "SELECT error('step 27 fails');")]);

    let err = SystemDb::open(&paths, &failing, &OpenOptions::default()).expect_err("step 27 fails");
    assert!(matches!(err.kind(), Error::Schema { .. }), "{err:?}");
    // The window stays open: its marker names the snapshot it took.
    let marker = Marker::read(&paths.marker())
        .expect("marker reads")
        .expect("marker left");
    assert_eq!(
        marker.snapshot_bytes,
        fs_err::metadata(paths.snapshot()).expect("snapshot").len()
    );
    let snapshot = fs_err::read(paths.snapshot()).expect("snapshot");
    assert_eq!(
        marker.snapshot_xxh3_128,
        Some(format!(
            "{:032x}",
            twox_hash::XxHash3_128::oneshot(&snapshot)
        ))
    );
    assert_eq!(marker.snapshot_sha256, "", "no SHA-256 is computed");
    assert!(marker.names_snapshot(&paths.snapshot()).expect("compare"));
}

#[test]
fn an_error_after_steps_were_applied_carries_the_report_of_them() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 100);
    let failing = ladder_26_then(&[
        (27, "notes", "CREATE TABLE notes (id INTEGER);"),
        (28, "fails", "SELECT error('step 28 fails');"),
    ]);

    let err = SystemDb::open(&paths, &failing, &OpenOptions::default()).expect_err("step 28 fails");
    assert!(
        matches!(err.kind(), Error::Schema { cause, .. } if matches!(**cause, sysdb::schema::Error::Step { version: 28, .. })),
        "{err:?}"
    );
    assert!(matches!(err, Error::Partial(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        err.kind().to_string(),
        "the message is the error's own"
    );
    assert_eq!(err.code(), "schema");
    let report = err
        .report()
        .expect("the window replaced the snapshot: a report");
    let migration = report.migration.as_ref().expect("the window's part");
    assert_eq!((migration.from, migration.to), (26, 27));
    assert_eq!(migration.snapshot, paths.snapshot());
    let applied: Vec<(u32, &str)> = migration
        .steps
        .iter()
        .map(|s| (s.version, s.name.as_str()))
        .collect();
    assert_eq!(applied, [(27, "notes")]);
    assert!(
        report.quarantined.is_empty() && report.restored.is_none(),
        "{report}"
    );

    // An error before anything changed carries no report.
    let err = SystemDb::open(&paths, &ladder_to(25), &OpenOptions::default())
        .expect_err("the database is newer than the ladder");
    assert!(err.report().is_none(), "{err:?}");
    assert!(matches!(err, Error::Schema { .. }), "{err:?}");
}

#[test]
fn a_real_sqlite_file_touches_nothing() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 10);
    fs_err::write(paths.db(), sysdb_scenarios::sqlite::empty_database())
        .expect("write the SQLite file");
    let before = folder_digest(&dir.state());

    let err = open(&paths).expect_err("not DuckDB");
    match &err {
        Error::Open { class, .. } => assert_eq!(*class, ErrorClass::NotADatabase),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(folder_digest(&dir.state()), before, "a file changed");
}

/// `n` processes open the folder at the same moment, after a crash
/// mid-migration or on a healthy database: every one ends with the whole
/// database at the top version, one after the other under the open lock;
/// exactly one recovers and migrates after a crash, none otherwise.
fn race(n: usize, crashed: bool) {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 1000);
    if crashed {
        crash_in_step_27(&paths);
    } else {
        drop(open(&paths).expect("migrate to the top before the race"));
    }
    let before = folder_digest(&dir.state());

    let mut children: Vec<_> = (0..n).map(|_| spawn_opener(&dir.data)).collect();
    let (mut recoveries, mut migrations) = (0, 0);
    for child in &mut children {
        let line = wait_for(child, "opened");
        let mut parts = line.splitn(3, ' ');
        let version: i64 = parts.next().expect("version").parse().expect("number");
        let rows: i64 = parts.next().expect("rows").parse().expect("number");
        let report: serde_json::Value =
            serde_json::from_str(parts.next().expect("report")).expect("report JSON");
        assert_eq!((version, rows), (i64::from(SCHEMA_VERSION), 1000));
        recoveries += usize::from(!report["restored"].is_null());
        migrations += usize::from(!report["migration"].is_null());
    }
    for mut child in children {
        assert!(child.wait().expect("reap").success());
    }
    let sets = sysdb_snapshot::list(paths.files()).expect("list quarantine");
    if crashed {
        assert_eq!(
            (recoveries, migrations),
            (1, 1),
            "exactly one process recovers"
        );
        assert_eq!(sets.len(), 1, "{sets:?}");
    } else {
        assert_eq!((recoveries, migrations), (0, 0));
        assert!(sets.is_empty(), "{sets:?}");
        assert_eq!(
            folder_digest(&dir.state()),
            before,
            "a healthy open changed a file"
        );
    }
}

#[test]
fn two_processes_opening_after_a_crash_recover_exactly_once() {
    race(2, true);
}

#[test]
fn four_and_eight_processes_opening_after_a_crash_recover_exactly_once() {
    race(4, true);
    race(8, true);
}

#[test]
fn two_four_and_eight_processes_opening_a_healthy_folder_change_nothing() {
    race(2, false);
    race(4, false);
    race(8, false);
}

#[test]
fn a_stale_snapshot_is_not_used_while_the_database_file_reads() {
    let dir = StateDir::new();
    let paths = dir.paths();
    let db = SystemDb::open(&paths, &ladder_to(25), &OpenOptions::default()).expect("v25");
    db.conn()
        .execute_batch("INSERT INTO jobs (id, state) SELECT range, 'done' FROM range(100);")
        .expect("insert");
    drop(db);
    // Migrating to 26 takes the snapshot (100 rows); 500 more rows are
    // checkpointed after it.
    let db = SystemDb::open(&paths, &ladder_to(26), &OpenOptions::default()).expect("v26");
    db.conn()
        .execute_batch(
            "INSERT INTO jobs (id, state) SELECT range, 'queued' FROM range(100, 600); CHECKPOINT;",
        )
        .expect("insert");
    drop(db);
    crash_in_step_27(&paths);

    let db = open(&paths).expect("recovered");
    assert_eq!(job_count(db.conn()), 600, "every checkpointed row");
    let report = db.report();
    let restored = report.restored.as_ref().expect("restored");
    assert_eq!(restored.source, RestoreSource::DatabaseAtLastCheckpoint);
    assert_eq!(restored.version, Some(26));
    let migration = report.migration.as_ref().expect("migrated");
    assert_eq!((migration.from, migration.to), (26, 27));
    insta::assert_snapshot!(redacted(report, &dir));
}

/// A v27 snapshot with 10 rows, a database file DuckDB cannot read, and a
/// WAL; the first connect reports the WAL replay failure, as a crash
/// mid-migration would.
fn unreadable_database_with_a_snapshot(dir: &StateDir) -> Paths {
    let paths = dir.paths();
    let db = open(&paths).expect("open");
    db.conn()
        .execute_batch("INSERT INTO jobs (id, state) SELECT range, 'done' FROM range(10);")
        .expect("insert");
    drop(db);
    fs_err::rename(paths.db(), paths.snapshot()).expect("make the snapshot");
    fs_err::write(paths.db(), b"corrupted").expect("write");
    fs_err::write(paths.wal(), b"FAKE_WAL_CONTENT").expect("write");
    paths
}

fn open_after_replay_failure(paths: &Paths, options: &OpenOptions) -> sysdb::Result<SystemDb> {
    let calls = std::cell::Cell::new(0);
    let db_path = paths.db().to_owned();
    let flaky = |path: &Utf8Path| {
        if path == db_path && calls.replace(calls.get() + 1) == 0 {
            return Err(duck_error(
                "INTERNAL Error: Failure while replaying WAL file: Calling DatabaseManager::GetDefaultDatabase with no default database set",
            ));
        }
        DuckDbConnector.connect(path)
    };
    SystemDb::open_with(paths, &ladder(), options, &flaky)
}

#[test]
fn by_default_an_unreadable_database_file_falls_back_to_the_snapshot() {
    let dir = StateDir::new();
    let paths = unreadable_database_with_a_snapshot(&dir);
    let db = open_after_replay_failure(&paths, &OpenOptions::default()).expect("recovered");
    assert_eq!(job_count(db.conn()), 10);
    let restored = db.report().restored.as_ref().expect("restored");
    assert_eq!(restored.source, RestoreSource::Snapshot);
    assert_eq!(restored.version, Some(SCHEMA_VERSION));
    // The unreadable file and its copy are both kept, with the WAL.
    let (dbs, wals) = broken(&dir.state());
    assert_eq!((dbs.len(), wals.len()), (2, 1), "{dbs:?} {wals:?}");
    insta::assert_snapshot!(redacted(db.report(), &dir));
}

#[test]
fn the_strict_option_refuses_the_snapshot_without_a_marker_and_restores_it_with_one() {
    let dir = StateDir::new();
    let paths = unreadable_database_with_a_snapshot(&dir);
    let strict = OpenOptions::default().strict_snapshot(true);
    let snapshot_before = fs_err::read(paths.snapshot()).expect("read");

    let err = open_after_replay_failure(&paths, &strict).expect_err("refused");
    // The log was set aside before the refusal: the error says where.
    let set_aside = err.report().map(|r| r.quarantined.len());
    assert!(set_aside.is_some_and(|n| n > 0), "{err:?}");
    match err.kind() {
        Error::SnapshotRefused { version, why, .. } => {
            assert_eq!(*version, Some(SCHEMA_VERSION));
            assert_eq!(*why, "no migration was in flight");
        }
        other => panic!("unexpected {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("schema version 27"), "{message}");
    assert!(message.contains("restore it by hand"), "{message}");
    assert!(
        !message.contains("sysdb "),
        "a library message names no command: {message}"
    );
    // Nothing was lost and the next open cannot start empty: the unreadable
    // file is back in place, the snapshot is as it was.
    assert_eq!(fs_err::read(paths.db()).expect("read"), b"corrupted");
    assert_eq!(
        fs_err::read(paths.snapshot()).expect("read"),
        snapshot_before
    );

    // A marker naming another snapshot is refused too. (A marker as the
    // version before this one wrote it: its SHA-256 alone.)
    let mut marker = Marker {
        from: 26,
        to: 27,
        snapshot: paths.snapshot(),
        snapshot_bytes: snapshot_before.len() as u64,
        snapshot_xxh3_128: None,
        snapshot_sha256: "0".repeat(64),
        started_at: "2026-11-27T12:00:00Z".to_owned(),
        pid: 1,
    };
    let write_marker = |m: &Marker| {
        fs_err::write(paths.marker(), serde_json::to_vec(m).expect("json")).expect("write marker");
    };
    write_marker(&marker);
    fs_err::write(paths.wal(), b"FAKE_WAL_CONTENT").expect("write");
    match open_after_replay_failure(&paths, &strict)
        .as_ref()
        .map_err(Error::kind)
    {
        Err(Error::SnapshotRefused { why, .. }) => {
            assert_eq!(
                *why,
                "the intent marker names another snapshot than the one on disk"
            );
        }
        other => panic!("unexpected {other:?}"),
    }

    // With the window's own marker the snapshot is restored.
    marker.snapshot_sha256 = folder_digest(&dir.state())["system.duckdb.pre-migrate"].clone();
    write_marker(&marker);
    fs_err::write(paths.wal(), b"FAKE_WAL_CONTENT").expect("write");
    let db = open_after_replay_failure(&paths, &strict).expect("recovered");
    assert_eq!(job_count(db.conn()), 10);
    let report = db.report();
    assert_eq!(report.marker.as_ref(), Some(&marker));
    let restored = report.restored.as_ref().expect("restored");
    assert_eq!(restored.source, RestoreSource::Snapshot);
    // Nothing was pending, so the marker of the finished window is removed.
    assert!(!paths.marker().exists());
    insta::assert_snapshot!(redacted(report, &dir));
}

#[test]
fn a_missing_database_is_not_recreated_where_one_existed() {
    let dir = StateDir::new();
    let paths = dir.paths();
    drop(open(&paths).expect("create"));
    fs_err::remove_file(paths.db()).expect("remove");

    let err = open(&paths).expect_err("refused");
    match &err {
        Error::Vanished { evidence, .. } => {
            assert_eq!(evidence, &[paths.snapshot().to_string()]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!paths.db().exists(), "an empty database was created");
}

#[test]
fn a_fresh_folder_is_created_and_migrated_with_a_snapshot_and_no_marker_left() {
    let dir = StateDir::new();
    let paths = Paths::from_data_dir(dir.data.join("fresh")).expect("paths");
    let db = open(&paths).expect("open");
    assert_eq!(seed_version(db.conn()), i64::from(SCHEMA_VERSION));
    let migration = db.report().migration.as_ref().expect("migrated");
    assert_eq!((migration.from, migration.to), (0, SCHEMA_VERSION));
    assert_eq!(migration.steps.len(), SCHEMA_VERSION as usize);
    assert!(!paths.marker().exists());
    assert!(paths.snapshot().exists());
    drop(db);
    assert!(!paths.wal().exists());

    // A second open has nothing to do and takes no snapshot.
    let snapshot_before = fs_err::read(paths.snapshot()).expect("read");
    let db = open(&paths).expect("reopen");
    assert!(db.report().migration.is_none());
    assert!(db.report().error.is_none());
    assert_eq!(
        fs_err::read(paths.snapshot()).expect("read"),
        snapshot_before
    );
    insta::assert_snapshot!(redacted(db.report(), &dir));
}

#[test]
fn a_second_open_waits_for_the_lock_and_names_the_holder() {
    let dir = StateDir::new();
    let paths = dir.paths();
    let _first = open(&paths).expect("open");
    let options = OpenOptions::default().lock_wait(Duration::from_millis(100));
    let err = SystemDb::open(&paths, &ladder(), &options).expect_err("locked");
    match err {
        Error::Locked { pid, .. } => assert_eq!(pid, Some(std::process::id())),
        other => panic!("unexpected {other:?}"),
    }
}

/// A log DuckDB can replay, but not within its memory limit: the
/// environment's failure, never a reason to set the log aside.
#[test]
fn a_replay_out_of_memory_is_refused_touching_nothing_and_replays_with_more_memory() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 1_000_000);
    // A real process commits updates of every row with checkpoints off and
    // is killed: the updates live only in the write-ahead log (a large
    // insert would not: DuckDB writes its row groups to the file at once).
    let updates = (2..=4)
        .map(|c| format!("UPDATE jobs SET c{c} = id % 1000;"))
        .collect();
    Crash::killed(paths.db(), updates)
        .run(|args| test_child("child", &args))
        .expect("a crash after a large commit");
    let before = folder_digest(&dir.state());

    let small = |path: &Utf8Path| {
        let config = sysdb::Connector::config(&sysdb::DuckDbConnector)?
            .with("memory_limit", "16MB")?
            .with("temp_directory", "")?
            .with("threads", "1")?;
        duckdb::Connection::open_with_flags(path, config)
    };
    let err = SystemDb::open_with(&paths, &ladder(), &OpenOptions::default(), &small)
        .expect_err("the replay needs more memory");
    match &err {
        Error::Open { class, .. } => assert_eq!(*class, ErrorClass::OutOfMemory, "{err}"),
        other => panic!("unexpected {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("Failure while replaying WAL file"),
        "{message}"
    );
    assert!(message.contains("memory_limit"), "{message}");
    assert_eq!(folder_digest(&dir.state()), before, "a file changed");

    let db = open(&paths).expect("the same log replays with more memory");
    assert_eq!(job_count(db.conn()), 1_000_000);
    let updated: i64 = db
        .conn()
        .query_row("SELECT count(*) FROM jobs WHERE c4 = id % 1000", [], |r| {
            r.get(0)
        })
        .expect("count the updated rows");
    assert_eq!(updated, 1_000_000, "every committed update replayed");
    assert!(db.report().quarantined.is_empty(), "{:?}", db.report());
}

/// The file each original of the folder was set aside as, with the digest
/// both must share: every original is in quarantine byte-identical.
fn assert_set_aside_unchanged(
    before: &std::collections::BTreeMap<String, String>,
    after: &std::collections::BTreeMap<String, String>,
    report: &sysdb::OpenReport,
) {
    assert!(!report.quarantined.is_empty(), "{report:?}");
    for m in &report.quarantined {
        let from = m.from.file_name().expect("a name");
        let to = m.to.file_name().expect("a name");
        assert_eq!(
            before.get(from),
            after.get(to),
            "{from} set aside as {to} changed"
        );
    }
}

/// `stages` committed by a real process on the v26 database with 1000
/// jobs and its snapshot, with checkpoints off; killed after the last.
/// Returns the log's size after each commit.
fn crash_after(paths: &Paths, stages: Vec<String>) -> Vec<u64> {
    Crash::killed(paths.db(), stages)
        .run(|args| test_child("child", &args))
        .expect("a crash after its commits")
}

#[test]
fn committed_rows_before_an_unreplayable_ddl_are_salvaged() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 1000);
    let mut stages: Vec<String> = (0..10)
        .map(|i| insert_jobs(1000 + i * 50, 1050 + i * 50))
        .collect();
    stages.push(format!(
        "BEGIN;\n{}COMMIT;",
        sysdb_scenarios::ladders::UNREPLAYABLE_STEP
    ));
    crash_after(&paths, stages);
    let before = folder_digest(&dir.state());

    let (hook, seen) = recorded_progress();
    let db = SystemDb::open(&paths, &ladder(), &OpenOptions::default().progress(hook))
        .expect("recovered");
    let report = db.report();
    let restored = report.restored.as_ref().expect("restored");
    assert_eq!(restored.source, RestoreSource::Salvaged, "{report}");
    assert_eq!(restored.version, Some(26));
    let seen = seen.lock().expect("not poisoned").clone();
    let db_size = Some(fs_err::metadata(paths.snapshot()).expect("snapshot").len());
    assert_eq!(
        tasks_run(&seen),
        [
            (Task::Replay, None, None),
            // At most ⌈log2(11)⌉ + 1 replays of the search and the build;
            // the failing commit is last, so all but it are built at once.
            (Task::Salvage, Some(6), Some(1)),
            (Task::Checkpoint, None, None),
            // Every block matches its checksum: nothing is read whole.
            (Task::Snapshot, db_size, db_size),
            (Task::Migrate, Some(1), Some(1)),
        ],
        "{seen:?}"
    );
    let log = restored.log.as_ref().expect("what the log kept");
    assert_eq!(
        (log.commits, log.commits_kept, log.commits_lost()),
        (Some(11), Some(10), Some(1))
    );
    // ⌈log2(11)⌉ + 2: the whole log, the search, the copy restored.
    assert!(log.replays <= 6, "{} replays", log.replays);
    let failed = log.first_failed.as_ref().expect("the failing commit");
    assert_eq!(failed.commit, Some(11));
    assert!(failed.error.contains("job_state"), "{}", failed.error);
    assert_eq!(
        job_count(db.conn()),
        1500,
        "every committed row before the DDL"
    );
    assert_eq!(seed_version(db.conn()), i64::from(SCHEMA_VERSION));
    assert_set_aside_unchanged(&before, &folder_digest(&dir.state()), report);
    assert!(!paths.dir().join("system.duckdb.replay").exists());
    assert!(!paths.recovering().exists());
}

#[test]
fn a_flipped_byte_in_the_last_of_twenty_commits_loses_only_that_commit() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 1000);
    let stages = (0..20)
        .map(|i| insert_jobs(1000 + i * 50, 1050 + i * 50))
        .collect();
    let sizes = crash_after(&paths, stages);
    // A byte in the middle of the last commit's rows: its checksum no
    // longer matches, and DuckDB refuses the whole log.
    let offset = (sizes[18] + sizes[19]) / 2;
    sysdb_scenarios::damage::flip_byte(&paths.wal(), offset).expect("flip");
    let plain = DuckDbConnector.connect(paths.db()).map(drop);
    assert!(
        plain
            .as_ref()
            .is_err_and(|e| classify_error(e).is_wal_replay()),
        "{plain:?}"
    );
    let before = folder_digest(&dir.state());

    let db = open(&paths).expect("recovered");
    let report = db.report();
    let restored = report.restored.as_ref().expect("restored");
    assert_eq!(restored.source, RestoreSource::Salvaged, "{report}");
    let log = restored.log.as_ref().expect("what the log kept");
    assert_eq!(
        (log.commits, log.commits_kept),
        (Some(19), Some(19)),
        "{report}"
    );
    assert!(log.replays <= 2, "{} replays", log.replays);
    let failed = log.first_failed.as_ref().expect("the damaged commit");
    assert_eq!(failed.commit, Some(20));
    assert!(
        failed.at > sizes[18] - 1 && failed.at <= offset,
        "{failed:?}"
    );
    assert_eq!(job_count(db.conn()), 1950, "19 of 20 commits of 50 rows");
    assert_set_aside_unchanged(&before, &folder_digest(&dir.state()), report);
}

#[test]
fn a_check_calling_a_core_function_replays_through_attach_losing_nothing() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 1000);
    {
        let conn = DuckDbConnector.connect(paths.db()).expect("open");
        conn.execute_batch(
            "CREATE TABLE notes (id INTEGER, note VARCHAR CHECK (trim(note) <> '')); CHECKPOINT;",
        )
        .expect("a table with a CHECK");
    }
    crash_after(
        &paths,
        vec![
            "INSERT INTO notes SELECT i, 'note ' || i FROM range(400) r(i);".to_owned(),
            "ALTER TABLE notes ADD COLUMN extra INTEGER;".to_owned(),
        ],
    );
    let plain = DuckDbConnector.connect(paths.db()).map(drop);
    let message = plain
        .as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        message.contains("\"trim\" is not in the catalog"),
        "{plain:?}"
    );
    let before = folder_digest(&dir.state());

    let db = open(&paths).expect("recovered");
    let report = db.report();
    let restored = report.restored.as_ref().expect("restored");
    assert_eq!(restored.source, RestoreSource::Replayed, "{report}");
    let log = restored.log.as_ref().expect("what the log kept");
    // Read-only on a hard link first (the database is more than 32 times
    // its log), then again on the copy restored.
    assert_eq!(
        (log.commits, log.commits_kept, log.replays),
        (Some(2), Some(2), 2)
    );
    assert_eq!(log.first_failed, None);
    assert_eq!(notes_with_extra(db.conn()), (400, 400));
    assert_eq!(job_count(db.conn()), 1000);
    assert_set_aside_unchanged(&before, &folder_digest(&dir.state()), report);
}

#[test]
fn a_replay_that_kills_the_probe_is_salvaged_in_the_probe_child() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 1000);
    let stages = (0..8)
        .map(|i| insert_jobs(1000 + i * 50, 1050 + i * 50))
        .collect();
    let sizes = crash_after(&paths, stages);
    // A probe whose DuckDB dies (SIGABRT) replaying more than the first
    // five commits, as a replay that trips an assertion would; up to
    // there it is the real probe.
    let exe = std::env::current_exe().expect("this test binary");
    let script = format!(
        "size=$(stat -c %s \"$1.wal\" 2>/dev/null || echo 0); if [ \"$size\" -gt {} ]; then kill -ABRT $$; fi; SYSDB_SCENARIO_CHILD='[\"probe\"]' exec {} --exact child --nocapture --test-threads=1 \"$1\"",
        sizes[4],
        exe.display()
    );
    let options = OpenOptions::default().probe(Some(sysdb::Probe {
        program: "/bin/sh".into(),
        args: vec!["-c".to_owned(), script, "probe".to_owned()],
        timeout: Duration::from_secs(60),
    }));
    let before = folder_digest(&dir.state());
    let db = SystemDb::open(&paths, &ladder(), &options).expect("recovered");
    let report = db.report();
    assert_eq!(
        report.probe,
        Some(sysdb::report::ProbeOutcome::Killed { signal: 6 }),
        "{report}"
    );
    let restored = report.restored.as_ref().expect("restored");
    assert_eq!(restored.source, RestoreSource::Salvaged, "{report}");
    let log = restored.log.as_ref().expect("what the log kept");
    assert_eq!(
        (log.commits, log.commits_kept),
        (Some(8), Some(5)),
        "{report}"
    );
    assert_eq!(
        job_count(db.conn()),
        1250,
        "the five commits the probe survives"
    );
    assert_set_aside_unchanged(&before, &folder_digest(&dir.state()), report);
}

fn storage_version(path: &Utf8Path) -> String {
    let conn = duckdb::Connection::open(path).expect("open");
    sysdb::storage_version_of(&conn)
        .expect("query")
        .expect("a storage version")
}

#[test]
fn a_new_database_gets_the_storage_version_asked_for_and_an_existing_one_keeps_its_own() {
    let dir = StateDir::new();
    let at = |name: &str| Paths::from_data_dir(dir.data.join(name)).expect("paths");
    let with = |version: &str| {
        OpenOptions::default()
            .storage_version(sysdb::StorageVersion::new(version).expect("a version DuckDB knows"))
    };

    // By default, one DuckDB 1.4 and later read.
    let default = at("default");
    let db = open(&default).expect("open");
    assert_eq!(
        db.report().created.as_ref().map(|v| v.as_str()),
        Some(sysdb::StorageVersion::DEFAULT)
    );
    drop(db);
    assert_eq!(storage_version(default.db()), "v1.4.0+");
    assert!(!Utf8Path::new(&format!("{}.replay", default.db())).exists());

    let latest = at("latest");
    drop(SystemDb::open(&latest, &ladder(), &with("latest")).expect("open"));
    assert_eq!(storage_version(latest.db()), "v2.0.0+");

    // A file that exists keeps its version, whatever the options say,
    // through a migration and its checkpoints.
    let old = at("old");
    drop(SystemDb::open(&old, &ladder_to(3), &with("v1.4.0")).expect("open at v3"));
    let db = SystemDb::open(&old, &ladder(), &with("latest")).expect("migrate");
    assert!(db.report().created.is_none());
    assert!(db.report().migration.is_some());
    drop(db);
    assert_eq!(storage_version(old.db()), "v1.4.0+");

    let err = sysdb::StorageVersion::new("v9").expect_err("not a DuckDB version");
    assert!(err.to_string().contains("v1.4.0, "), "{err}");
}

#[test]
fn a_snapshot_taken_by_hand_checks_the_database_first_and_keeps_the_one_it_replaces() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 100);
    let first = fs_err::read(paths.snapshot()).expect("snapshot");

    let take_now = || {
        let lock = sysdb::by_hand::lock(&paths, Duration::ZERO).expect("lock");
        sysdb::by_hand::snapshot(
            &paths,
            &lock,
            &DuckDbConnector,
            &sysdb::ProgressHook::default(),
        )
    };

    // Healthy: the snapshot it replaces is kept as the previous one.
    let taken = take_now().expect("snapshot");
    assert_eq!(taken.to, paths.snapshot());
    assert_eq!(
        fs_err::read(paths.previous_snapshot()).expect("previous"),
        first
    );
    assert!(!paths.marker().exists());

    // Damaged blocks: refused before either snapshot is touched.
    damage_a_table_the_open_does_not_read(paths.db());
    let snapshot = fs_err::read(paths.snapshot()).expect("snapshot");
    let previous = fs_err::read(paths.previous_snapshot()).expect("previous");
    let err = take_now().expect_err("damaged");
    assert!(
        matches!(&err, Error::Unreadable { table, class: ErrorClass::CorruptDatabase, .. } if table == "\"main\".\"payloads\""),
        "{err:?}"
    );
    assert_eq!(fs_err::read(paths.snapshot()).expect("snapshot"), snapshot);
    assert_eq!(
        fs_err::read(paths.previous_snapshot()).expect("previous"),
        previous
    );
}

#[test]
fn a_probe_run_by_hand_waits_for_the_open_lock() {
    let dir = StateDir::new();
    let paths = dir.paths();
    drop(open(&paths).expect("open"));
    let lock = sysdb::by_hand::lock(&paths, Duration::ZERO).expect("lock");
    let err = sysdb::probe_open(paths.db(), Duration::from_millis(50)).expect_err("locked");
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    drop(lock);
    sysdb::probe_open(paths.db(), Duration::ZERO).expect("the probe opens");
}

/// A log of 1000 commits (about 16 MiB) before the commit that does not
/// replay is salvaged whole in at most ⌈log2(1000)⌉ + 2 = 12 replays of
/// copies; the salvage's time is printed beside one plain replay of the
/// 1000 commits.
#[test]
fn a_log_of_a_thousand_commits_is_salvaged_in_a_dozen_replays() {
    const COMMITS: u64 = 1000;
    const ROWS_EACH: u64 = 140;
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 1000);
    let mut stages: Vec<String> = (0..COMMITS)
        .map(|i| insert_jobs(1000 + i * ROWS_EACH, 1000 + (i + 1) * ROWS_EACH))
        .collect();
    stages.push(format!(
        "BEGIN;\n{}COMMIT;",
        sysdb_scenarios::ladders::UNREPLAYABLE_STEP
    ));
    let sizes = crash_after(&paths, stages);
    let log_bytes = fs_err::metadata(paths.wal()).expect("log").len();

    // One plain replay of the commits that replay: the database with its
    // log cut after the last of them, opened by DuckDB.
    let plain = StateDir::new();
    fs_err::copy(paths.db(), plain.db()).expect("copy the database");
    let log = fs_err::read(paths.wal()).expect("read the log");
    let good = usize::try_from(sizes[usize::try_from(COMMITS).expect("fits") - 1]).expect("fits");
    fs_err::write(format!("{}.wal", plain.db()), &log[..good]).expect("write the cut log");
    let started = std::time::Instant::now();
    let conn = DuckDbConnector
        .connect(&plain.db())
        .expect("the cut log replays");
    let plain_took = started.elapsed();
    assert_eq!(job_count(&conn), (1000 + COMMITS * ROWS_EACH) as i64);
    drop(conn);

    let started = std::time::Instant::now();
    let db = open(&paths).expect("recovered");
    let took = started.elapsed();
    let restored = db.report().restored.as_ref().expect("restored");
    assert_eq!(restored.source, RestoreSource::Salvaged);
    let kept = restored.log.as_ref().expect("what the log kept");
    assert_eq!(
        (kept.commits, kept.commits_kept),
        (Some(COMMITS + 1), Some(COMMITS))
    );
    assert!(kept.replays <= 12, "{} replays", kept.replays);
    assert_eq!(job_count(db.conn()), (1000 + COMMITS * ROWS_EACH) as i64);
    eprintln!(
        "a log of {log_bytes} bytes, {} commits: salvaged in {took:?} with {} replays; one plain replay of its {COMMITS} good commits: {plain_took:?}",
        COMMITS + 1,
        kept.replays
    );
}

/// A service's own migration that commits its statement outside the
/// transaction of its version row, killed between the two, after rows it
/// committed on a table whose CHECK DuckDB's plain open cannot replay an
/// ALTER of. The whole log replays through ATTACH, but migration 21 fails
/// on it ("Column with name c21 already exists!"): the recovery keeps the
/// longest prefix of the log on which the ladder completes (every row,
/// without the torn statement), the ladder applies 21 again, and the
/// report says which commit was left for the ladder.
#[test]
fn a_torn_foreign_migration_is_left_for_the_ladder_to_apply_again() {
    let dir = StateDir::new();
    let paths = dir.paths();
    let db = SystemDb::open(&paths, &ladder_to(20), &OpenOptions::default()).expect("open at v20");
    db.conn()
        .execute_batch(&format!(
            "{} CREATE TABLE notes (id INTEGER, note VARCHAR CHECK (trim(note) <> ''));",
            insert_jobs(0, 1000)
        ))
        .expect("jobs and notes");
    let closed = db.close();
    sysdb_snapshot::take(closed.db()).expect("pre-migrate snapshot");
    drop(closed);
    let torn = ladder().step(21).expect("step 21").sql().to_owned();
    crash_after(
        &paths,
        vec![
            "INSERT INTO notes SELECT i, 'note ' || i FROM range(400) r(i);".to_owned(),
            "ALTER TABLE notes ADD COLUMN extra INTEGER;".to_owned(),
            torn,
        ],
    );
    let plain = DuckDbConnector.connect(paths.db()).map(drop);
    assert!(
        plain
            .as_ref()
            .is_err_and(|e| classify_error(e).is_wal_replay()),
        "{plain:?}"
    );

    let db = open(&paths).expect("recovered and migrated");
    let report = db.report();
    let restored = report.restored.as_ref().expect("restored");
    assert_eq!(restored.source, RestoreSource::Salvaged, "{report}");
    assert_eq!(restored.version, Some(20));
    let log = restored.log.as_ref().expect("what the log kept");
    assert_eq!(
        (log.commits, log.commits_kept),
        (Some(3), Some(2)),
        "{report}"
    );
    assert_eq!(log.first_failed, None, "every commit replays");
    let reapplied = log
        .reapplied
        .as_ref()
        .expect("a commit left for the ladder");
    assert_eq!(reapplied.commits, Some(1));
    assert!(reapplied.error.contains("c21"), "{}", reapplied.error);
    let migration = report.migration.as_ref().expect("migrated");
    assert_eq!((migration.from, migration.to), (20, SCHEMA_VERSION));
    assert_eq!(seed_version(db.conn()), i64::from(SCHEMA_VERSION));
    assert_eq!(job_count(db.conn()), 1000);
    assert_eq!(notes_with_extra(db.conn()), (400, 400));
    let text = report.to_string();
    assert!(
        text.contains("left for the ladder to apply again: 1 commit from byte"),
        "{text}"
    );
}

/// A ladder whose pending step fails on every state a recovery could
/// restore is broken, not the database: the open refuses with the step's
/// error and moves nothing, so the recovery runs again, whole, once the
/// step is fixed.
#[test]
fn a_step_that_fails_on_every_source_is_refused_and_moves_nothing() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 100);
    crash_in_step_27(&paths);
    let before = folder_digest(&dir.state());
    let mut steps = sysdb_scenarios::ladders::jobs_steps(26);
    steps.push((
        27,
        "broken".to_owned(),
        "ALTER TABLE no_such_table ADD COLUMN x INTEGER;".to_owned(),
    ));
    let broken_ladder = sysdb::Ladder::new(steps).expect("a valid ladder");

    let err = SystemDb::open(&paths, &broken_ladder, &OpenOptions::default())
        .expect_err("the step fails everywhere");
    let Error::LadderFails { path, cause } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(path, paths.db());
    assert!(
        matches!(**cause, sysdb_schema::Error::Step { version: 27, .. }),
        "{cause:?}"
    );
    assert_eq!(folder_digest(&dir.state()), before, "a file was moved");

    // Fixed, the same folder recovers.
    let db = open(&paths).expect("recovered with the fixed ladder");
    assert_eq!(seed_version(db.conn()), i64::from(SCHEMA_VERSION));
    assert_eq!(job_count(db.conn()), 100);
}

/// The rows of `notes`, and how many have the column `extra` (added by the
/// logged ALTER) empty.
fn notes_with_extra(conn: &duckdb::Connection) -> (i64, i64) {
    conn.query_row(
        "SELECT count(*), count(*) FILTER (WHERE extra IS NULL) FROM notes",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .expect("the notes and the column their ALTER added")
}

/// A service's own migration that creates an enum in one commit and casts
/// a column to it in the next, killed before a checkpoint, with rows
/// committed after: no replay can bind the cast from the types of the
/// database file at its last checkpoint, so the salvage finds the commits
/// before it; one of those creates the type, so the whole log is replayed
/// once more from a DuckDB that holds the types of the database with those
/// commits, and every commit is kept.
#[test]
fn a_type_created_earlier_in_the_log_is_held_for_its_cast() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 100);
    crash_after(
        &paths,
        vec![
            "CREATE TABLE tags (id INTEGER, v VARCHAR); INSERT INTO tags SELECT i, 'a' FROM range(50) r(i);".to_owned(),
            "CREATE TYPE s.mood AS ENUM ('a', 'b');".to_owned(),
            "ALTER TABLE tags ALTER COLUMN v SET TYPE s.mood USING v::s.mood;".to_owned(),
            "INSERT INTO tags VALUES (50, 'b');".to_owned(),
        ],
    );
    let plain = DuckDbConnector.connect(paths.db()).map(drop);
    assert!(
        plain
            .as_ref()
            .is_err_and(|e| classify_error(e).is_wal_replay()),
        "{plain:?}"
    );

    let db = open(&paths).expect("recovered");
    let report = db.report();
    let restored = report.restored.as_ref().expect("restored");
    assert_eq!(restored.source, RestoreSource::Replayed, "{report}");
    let log = restored.log.as_ref().expect("what the log kept");
    assert_eq!(log.commits, log.commits_kept, "{report}");
    assert_eq!(log.first_failed, None);
    let (rows, kind): (i64, String) = db
        .conn()
        .query_row(
            "SELECT (SELECT count(*) FROM tags WHERE v IS NOT NULL), (SELECT data_type FROM duckdb_columns() WHERE table_name = 'tags' AND column_name = 'v')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the tags");
    assert_eq!((rows, kind.as_str()), (51, "ENUM('a', 'b')"));
    assert_eq!(seed_version(db.conn()), i64::from(SCHEMA_VERSION));
    assert_eq!(job_count(db.conn()), 100);
}

/// A step that fails only because of rows the log committed (a unique
/// index over a duplicate the last commit inserted) is not a torn
/// migration: the recovery never sets a commit that writes data aside to
/// make the ladder complete. It refuses, and every file stays as it was.
#[test]
fn the_ladder_never_sets_aside_a_commit_that_writes_data() {
    let dir = StateDir::new();
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 100);
    {
        let db = SystemDb::open(&paths, &ladder_to(26), &OpenOptions::default()).expect("v26");
        db.conn()
            .execute_batch(
                "CREATE TABLE notes (id INTEGER, note VARCHAR CHECK (trim(note) <> ''));",
            )
            .expect("notes");
    }
    crash_after(
        &paths,
        vec![
            "INSERT INTO notes SELECT i, 'note ' || i FROM range(40) r(i);".to_owned(),
            "ALTER TABLE notes ADD COLUMN extra INTEGER;".to_owned(),
            "INSERT INTO jobs (id, state) VALUES (5, 'queued');".to_owned(),
        ],
    );
    let before = folder_digest(&dir.state());
    let mut steps = sysdb_scenarios::ladders::jobs_steps(26);
    steps.push((
        27,
        "unique_ids".to_owned(),
        "CREATE UNIQUE INDEX jobs_id ON jobs (id);".to_owned(),
    ));
    let ladder = sysdb::Ladder::new(steps).expect("a valid ladder");

    let err = SystemDb::open(&paths, &ladder, &OpenOptions::default())
        .expect_err("only the duplicate's commit lets the step complete");
    assert!(matches!(err, Error::LadderFails { .. }), "{err:?}");
    assert_eq!(folder_digest(&dir.state()), before, "a file was moved");
}

/// A folder whose database went missing, with its snapshot and a quarantine
/// set beside it.
fn database_gone(dir: &StateDir) -> Paths {
    let paths = dir.paths();
    at_v26_with_snapshot(&paths, 10);
    let closed = sysdb_snapshot::ClosedDb::assume_closed(paths.files().clone());
    sysdb_snapshot::quarantine(&closed).expect("set the database aside");
    assert!(!paths.db().exists());
    paths
}

#[test]
fn a_snapshot_by_hand_of_a_missing_database_writes_nothing() {
    let dir = StateDir::new();
    let paths = database_gone(&dir);
    let lock = sysdb::by_hand::lock(&paths, Duration::ZERO).expect("lock");
    let before = folder_digest(&dir.state());
    let err = sysdb::by_hand::snapshot(&paths, &lock, &DuckDbConnector, &ProgressHook::default())
        .expect_err("nothing to snapshot");
    assert!(
        matches!(&err, Error::Missing { path, .. } if path == paths.db()),
        "{err:?}"
    );
    // DuckDB did not create an empty database whose copy replaced the
    // snapshot: every file as it was, and none added.
    assert_eq!(folder_digest(&dir.state()), before);
    drop(lock);
    // And the next open still refuses to start an empty database.
    let err = SystemDb::open(&paths, &ladder(), &OpenOptions::default()).expect_err("vanished");
    assert!(matches!(err, Error::Vanished { .. }), "{err:?}");
}

#[test]
fn a_recovery_by_hand_without_its_source_writes_no_marker_and_moves_nothing() {
    let dir = StateDir::new();
    let paths = database_gone(&dir);
    let lock = sysdb::by_hand::lock(&paths, Duration::ZERO).expect("lock");
    let before = folder_digest(&dir.state());
    let elsewhere = dir.state().join("system.duckdb.pre-migrate.gone");
    for (source, missing) in [
        (
            sysdb::by_hand::HandSource::LastCheckpoint,
            paths.db().to_owned(),
        ),
        (
            sysdb::by_hand::HandSource::Snapshot(elsewhere.clone()),
            elsewhere,
        ),
    ] {
        let err = sysdb::by_hand::recover(&paths, &lock, &source, &ProgressHook::default())
            .expect_err("nothing to restore");
        assert!(
            matches!(&err, Error::Missing { path, .. } if *path == missing),
            "{err:?}"
        );
        assert!(!paths.recovering().exists(), "a marker was left");
        assert_eq!(folder_digest(&dir.state()), before);
    }
}
