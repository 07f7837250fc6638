//! Live captures: each failure is really produced with the pinned DuckDB and
//! its message compared with `corpus/captured.txt`. Run with
//! `SYSDB_REGENERATE=1` to rewrite that file after a DuckDB upgrade.

use std::path::{Path, PathBuf};

use camino::Utf8Path;
use duckdb::Connection;
use sysdb_scenarios::child::{
    child_main, test_child, test_child_args, LockHolder, CHECKPOINTS_OFF,
};
use sysdb_scenarios::damage::{corrupt_a_block, flip_byte};

use crate::corpus::{self, Entry};

const THIS_TEST: &str = "capture::live_failures_match_captured_corpus";

const HEADER: &str = "\
# Messages produced live by the pinned DuckDB (tests/it/capture.rs writes
# this file when run with SYSDB_REGENERATE=1; do not edit by hand). Paths are
# normalised to <dir> and <home>, the lock holder's executable to <exe> and
# its pid to 4242, a WAL entry's position to <n>.
";

fn open(path: &Path) -> duckdb::Result<Connection> {
    Connection::open_with_flags(path, sysdb_scenarios::config())
}

fn utf8(path: &Path) -> &Utf8Path {
    Utf8Path::from_path(path).expect("a UTF-8 path")
}

/// Open `path` expecting a failure; return its message.
fn open_error(path: &Path) -> String {
    match open(path) {
        Ok(_) => panic!("opening {} unexpectedly succeeded", path.display()),
        Err(duckdb::Error::DuckDBFailure(_, Some(message))) => message,
        Err(other) => panic!("unexpected error kind: {other:?}"),
    }
}

fn exec(conn: &Connection, sql: &str) {
    conn.execute_batch(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A database with some data, checkpointed and closed.
fn healthy_db(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let conn = open(&path).expect("create database");
    exec(
        &conn,
        "CREATE TABLE items AS SELECT range AS id, 'item ' || range AS label FROM range(5000);
         CHECKPOINT;",
    );
    drop(conn);
    path
}

/// A database whose last commit sits in its WAL: checkpoint on shutdown off
/// and an auto-checkpoint threshold no test reaches.
fn db_with_wal(dir: &Path, name: &str, sql_in_wal: &str) -> PathBuf {
    let path = healthy_db(dir, name);
    let conn = open(&path).expect("open database");
    exec(&conn, CHECKPOINTS_OFF);
    exec(&conn, sql_in_wal);
    drop(conn);
    assert!(wal(&path).exists(), "no WAL left beside {}", path.display());
    path
}

fn wal(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".wal");
    PathBuf::from(name)
}

fn fs_read(path: &Path) -> Vec<u8> {
    fs_err::read(path).expect("read file")
}

/// Replace what varies between runs: the folder, the lock holder.
fn normalise(message: &str, dir: &Path) -> String {
    let mut m = message.replace(&dir.display().to_string(), "<dir>");
    if let Some(home) = std::env::var_os("HOME").filter(|h| h.len() > 1) {
        m = m.replace(&*home.to_string_lossy(), "<home>");
    }
    if let (Some(start), Some(end)) = (m.find("held in "), m.rfind(" (PID ")) {
        if start < end {
            m.replace_range(start + "held in ".len()..end, "<exe>");
        }
    }
    // The WAL's layout (and so an entry's position) varies between runs.
    if let Some(at) = m.find("byte position ") {
        let from = at + "byte position ".len();
        let digits = m[from..].chars().take_while(char::is_ascii_digit).count();
        m.replace_range(from..from + digits, "<n>");
    }
    if let Some(at) = m.rfind("(PID ") {
        let digits = m[at + 5..].chars().take_while(char::is_ascii_digit).count();
        m.replace_range(at + 5..at + 5 + digits, "4242");
    }
    m
}

/// Another process really holds DuckDB's lock while we open the file.
fn lock_conflict(dir: &Path) -> String {
    let path = healthy_db(dir, "locked.duckdb");
    let holder =
        LockHolder::start(utf8(&path), |args| test_child(THIS_TEST, &args)).expect("a lock holder");
    let message = open_error(&path);
    let status = holder.release().expect("wait for lock holder");
    assert!(status.success(), "lock holder failed: {status}");
    message
}

fn captures(dir: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut push = |label: &str, message: String| {
        out.push(Entry {
            label: label.to_owned(),
            message: normalise(&message, dir),
        });
    };

    push(
        "locked: another process holds the database",
        lock_conflict(dir),
    );

    let garbage = dir.join("garbage.duckdb");
    fs_err::write(&garbage, vec![0x5Au8; 64 * 1024]).expect("write garbage");
    push("not-a-database: 64 KiB of garbage", open_error(&garbage));

    let sqlite = dir.join("sqlite.duckdb");
    fs_err::write(&sqlite, sysdb_scenarios::sqlite::empty_database()).expect("write sqlite file");
    push("not-a-database: an SQLite file", open_error(&sqlite));

    let corrupt = healthy_db(dir, "corrupt.duckdb");
    corrupt_a_block(utf8(&corrupt)).expect("a corrupt block");
    push(
        "corrupt-database: a flipped byte in a data block",
        open_error(&corrupt),
    );

    let truncated = healthy_db(dir, "truncated.duckdb");
    let len = fs_err::metadata(&truncated).expect("stat").len();
    fs_err::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate");
    push(
        "truncated: the main file cut in half",
        open_error(&truncated),
    );

    let checksum = db_with_wal(
        dir,
        "walsum.duckdb",
        "INSERT INTO items VALUES (5000, 'late');",
    );
    let wal_len = fs_err::metadata(wal(&checksum)).expect("stat wal").len();
    flip_byte(utf8(&wal(&checksum)), wal_len - 8).expect("flip a WAL byte");
    push(
        "wal-replay: a flipped byte in a committed WAL entry",
        open_error(&checksum),
    );

    let header = db_with_wal(
        dir,
        "walhead.duckdb",
        "INSERT INTO items VALUES (5000, 'late');",
    );
    let mut bytes = fs_read(&wal(&header));
    // Keep the first field id (2 bytes) so that DuckDB reads on into a
    // varint made of continuation bytes only.
    for b in bytes.iter_mut().skip(2).take(16) {
        *b = 0xFF;
    }
    fs_err::write(wal(&header), bytes).expect("write wal");
    push("wal-replay: damaged WAL header bytes", open_error(&header));

    let ddl = healthy_db(dir, "ddl.duckdb");
    let conn = open(&ddl).expect("open");
    exec(
        &conn,
        "CREATE SCHEMA s; CREATE TYPE s.my_enum AS ENUM ('item 1', 'item 2');
         CREATE TABLE t AS SELECT 'item 1' AS x; CHECKPOINT;",
    );
    drop(conn);
    let ddl = {
        let conn = open(&ddl).expect("open");
        exec(&conn, CHECKPOINTS_OFF);
        exec(
            &conn,
            "ALTER TABLE t ALTER COLUMN x SET TYPE s.my_enum USING x::s.my_enum;",
        );
        drop(conn);
        ddl
    };
    push(
        "wal-replay: SET TYPE to an enum in another schema, USING a cast",
        open_error(&ddl),
    );

    out
}

#[test]
fn live_failures_match_captured_corpus() {
    if let Some(args) = test_child_args() {
        match child_main(&args) {
            Ok(never) => match never {},
            Err(e) => panic!("child {args:?}: {e}"),
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let live = captures(dir.path());
    let rendered = corpus::render(HEADER, &live);
    // At run time, not compile time: a build shared between checkouts must
    // compare with this checkout's corpus.
    let dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let file = Path::new(&dir).join("tests/it/corpus/captured.txt");
    if std::env::var_os("SYSDB_REGENERATE").is_some() {
        fs_err::write(&file, &rendered).expect("write captured corpus");
        return;
    }
    let committed = corpus::parse(corpus::CAPTURED);
    let labels = |e: &[Entry]| e.iter().map(|e| e.label.clone()).collect::<Vec<_>>();
    assert_eq!(
        labels(&committed),
        labels(&live),
        "captured corpus lists other failures"
    );
    for (old, new) in committed.iter().zip(&live) {
        assert_eq!(
            old.message, new.message,
            "DuckDB now says something else for {:?}; rerun with SYSDB_REGENERATE=1 and review",
            old.label
        );
    }
}
