//! The seed service's four recovery tests, ported one to one: the same
//! names, fixtures and assertions, with DuckDB's connect replaced where the
//! seed patched `duckdb.connect`.

use camino::Utf8Path;
use sysdb::{Connector, DuckDbConnector, OpenOptions, SystemDb};
use sysdb_schema::ApplyOptions;

use crate::{
    broken, duck_error, folder_digest, ladder, redacted, seed_version, PathsOf, StateDir,
    SCHEMA_VERSION,
};

#[test]
fn test_recovery_restores_pre_migrate_snapshot_on_wal_replay_error() {
    let dir = StateDir::new();
    let paths = dir.paths();
    let db_path = paths.db().to_owned();
    let snapshot_path = paths.snapshot();

    // 1. A clean valid database at the snapshot path.
    let seed_conn = DuckDbConnector
        .connect(&snapshot_path)
        .expect("open snapshot");
    ladder()
        .apply(&seed_conn, &ApplyOptions::default())
        .expect("ensure schema");
    drop(seed_conn);
    assert!(snapshot_path.exists(), "fixture setup: snapshot must exist");

    // 2. A fake broken database: the snapshot's copy and a WAL sentinel.
    fs_err::copy(&snapshot_path, &db_path).expect("copy");
    fs_err::write(paths.wal(), b"FAKE_WAL_CONTENT").expect("write wal");

    // 3. The first connect to the database fails with the WAL-replay error.
    let calls = std::cell::Cell::new(0);
    let flaky = |path: &Utf8Path| {
        if path == db_path && calls.get() == 0 {
            calls.set(1);
            return Err(duck_error(
                "INTERNAL Error: Failure while replaying WAL file: Calling DatabaseManager::GetDefaultDatabase with no default database set",
            ));
        }
        DuckDbConnector.connect(path)
    };
    let db =
        SystemDb::open_with(&paths, &ladder(), &OpenOptions::default(), &flaky).expect("recovered");

    // 4. The returned connection is usable, at the current version.
    assert_eq!(seed_version(db.conn()), i64::from(SCHEMA_VERSION));

    // 5. The broken database and WAL were moved aside.
    let (broken_dbs, broken_wals) = broken(&dir.state());
    assert_eq!(broken_dbs.len(), 1, "{broken_dbs:?}");
    assert_eq!(broken_wals.len(), 1, "{broken_wals:?}");

    // 6. The database exists and the broken WAL beside it does not.
    assert!(db_path.exists());
    assert!(!paths.wal().exists());

    insta::assert_snapshot!(redacted(db.report(), &dir));
}

#[test]
fn test_recovery_does_not_fire_on_unrelated_error() {
    let dir = StateDir::new();
    let paths = dir.paths();
    let db_path = paths.db().to_owned();
    fs_err::write(&db_path, b"corrupted").expect("write");
    let before = folder_digest(&dir.state());

    let always_unrelated = |path: &Utf8Path| {
        if path == db_path {
            return Err(duck_error("IO Error: file is locked by another process"));
        }
        DuckDbConnector.connect(path)
    };
    let err = SystemDb::open_with(
        &paths,
        &ladder(),
        &OpenOptions::default(),
        &always_unrelated,
    )
    .expect_err("the lock error propagates");
    assert!(err.to_string().contains("file is locked"), "{err}");
    assert!(matches!(err, sysdb::Error::Open { .. }), "{err:?}");
    assert_eq!(folder_digest(&dir.state()), before, "a file changed");
}

#[test]
fn test_recovery_propagates_when_no_snapshot_exists() {
    let dir = StateDir::new();
    let paths = dir.paths();
    let db_path = paths.db().to_owned();
    fs_err::write(&db_path, b"corrupted").expect("write");
    let before = folder_digest(&dir.state());

    let fake = |path: &Utf8Path| {
        if path == db_path {
            return Err(duck_error(
                "INTERNAL Error: Failure while replaying WAL file: Calling DatabaseManager::GetDefaultDatabase",
            ));
        }
        DuckDbConnector.connect(path)
    };
    let err = SystemDb::open_with(&paths, &ladder(), &OpenOptions::default(), &fake)
        .expect_err("the WAL error propagates");
    assert!(err.to_string().contains("GetDefaultDatabase"), "{err}");
    assert_eq!(folder_digest(&dir.state()), before, "a file changed");
}

#[test]
fn test_recovery_re_raises_if_snapshot_also_broken() {
    let dir = StateDir::new();
    let paths = dir.paths();
    fs_err::write(paths.db(), b"corrupted").expect("write");
    fs_err::write(paths.snapshot(), b"also-corrupted").expect("write");

    let calls = std::cell::Cell::new(0);
    let fake = |_: &Utf8Path| {
        calls.set(calls.get() + 1);
        if calls.get() == 1 {
            return Err(duck_error("INTERNAL Error: ReplayAlter failed"));
        }
        Err(duck_error("IO Error: malformed database file"))
    };
    let err = SystemDb::open_with(&paths, &ladder(), &OpenOptions::default(), &fake)
        .expect_err("the reconnect's error propagates");
    assert!(err.to_string().contains("malformed"), "{err}");
    let report = err.report().expect("files were set aside: a report");
    assert!(!report.quarantined.is_empty(), "{report}");
    match err.kind() {
        sysdb::Error::Reopen { source, .. } => {
            assert!(
                source.to_string().contains("ReplayAlter"),
                "the WAL error is kept as the source"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // Nothing was deleted: both corrupt copies are in quarantine.
    assert_eq!(
        fs_err::read(paths.snapshot()).expect("read"),
        b"also-corrupted"
    );
}
