//! `cargo xtask fixtures`: the state folders that real crashes and real
//! damage leave behind, one per scenario, each with a manifest that says how
//! it was made and what `SystemDb::open` must do with it.
//!
//! Every scenario is made by the pinned DuckDB: a crash is a child process
//! that commits with checkpoints off and is then killed; damage is done to
//! the bytes DuckDB wrote. The plain DuckDB open of every result is observed
//! (on a copy) and must fail (or succeed) the way the scenario requires, so
//! a DuckDB upgrade that stops reproducing a failure is reported in words
//! instead of producing a fixture that does not fail.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use duckdb::Connection;
use sysdb_errclass::classify_error;
use sysdb_scenarios::damage::{self, flip_byte};
use sysdb_scenarios::ladders::{insert_jobs, jobs_ladder, write_migrations, JOBS_TOP as TOP};
use sysdb_scenarios::{describe, Expect, Manifest, Outcome, GENERATED};
use sysdb_schema::ApplyOptions;
use sysdb_snapshot::{ClosedDb, DbFiles};

use crate::crash::crash;
use sysdb_scenarios::child::Death;

/// Small blocks keep the fixtures small; DuckDB reads the block size from
/// the file's header.
const BLOCK_SIZE: &str = "16384";

/// Open a connection the way sysdb does, creating new files with small
/// blocks.
fn connect(db: &Utf8Path) -> Result<Connection, String> {
    let config = sysdb::Connector::config(&sysdb::DuckDbConnector)
        .and_then(|c| c.with("default_block_size", BLOCK_SIZE))
        .map_err(|e| format!("configuring DuckDB: {e}"))?;
    Connection::open_with_flags(db, config).map_err(|e| format!("opening {db}: {e}"))
}

struct Scenario {
    name: &'static str,
    how: &'static str,
    /// What a plain DuckDB open must do: `opens`, or a class (and cause).
    plain_open: &'static str,
    expect: fn() -> Expect,
    build: fn(&DbFiles) -> Result<Vec<String>, String>,
}

fn recovered(jobs: i64, quarantined: &[&str]) -> Expect {
    Expect {
        outcome: Outcome::Recovered {
            source: "database-at-last-checkpoint".to_owned(),
        },
        class: Some("wal-replay".to_owned()),
        version: Some(TOP),
        jobs: Some(jobs),
        wal_at_open: true,
        quarantined: quarantined.iter().map(|s| (*s).to_owned()).collect(),
        duckdb_rewrites_wal: false,
        duckdb_writes_db: false,
        rows: BTreeMap::new(),
        commits_kept: None,
        memory_limit: None,
    }
}

/// Recovered from `source` (`replayed` or `salvaged`), keeping
/// `commits_kept` commits of the log, `jobs` jobs and `rows` of other
/// tables.
fn replayed(source: &str, jobs: i64, commits_kept: u64, rows: &[(&str, i64)]) -> Expect {
    Expect {
        outcome: Outcome::Recovered {
            source: source.to_owned(),
        },
        rows: rows.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect(),
        commits_kept: Some(commits_kept),
        ..recovered(jobs, &["", ".wal"])
    }
}

/// Opened at the top without an error met: `outcome` is healthy or
/// migrated.
fn opened(outcome: Outcome, jobs: i64) -> Expect {
    Expect {
        outcome,
        class: None,
        version: Some(TOP),
        jobs: Some(jobs),
        wal_at_open: true,
        quarantined: Vec::new(),
        duckdb_rewrites_wal: false,
        duckdb_writes_db: false,
        rows: BTreeMap::new(),
        commits_kept: None,
        memory_limit: None,
    }
}

fn refused(class: &str, wal_at_open: bool) -> Expect {
    Expect {
        outcome: Outcome::Refused {
            why: class.to_owned(),
        },
        class: Some(class.to_owned()),
        version: None,
        jobs: None,
        wal_at_open,
        quarantined: Vec::new(),
        duckdb_rewrites_wal: false,
        duckdb_writes_db: false,
        rows: BTreeMap::new(),
        commits_kept: None,
        memory_limit: None,
    }
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "wal-replay-ddl",
            how: "a v26 database with 2000 jobs, checkpointed; its pre-migrate snapshot; a child process commits migration 27 (CREATE TYPE s.job_state ...; ALTER ... SET TYPE s.job_state USING ..., in one transaction: the log uses a type it creates, which no replay that reads the types from the database file can bind) with checkpoints off and is killed by SIGKILL",
            plain_open: "wal-replay (ddl)",
            expect: || recovered(2000, &["", ".wal"]),
            build: |f| {
                base(f, 26, 2000)?;
                snapshot(f)?;
                crash(f.db(), Death::Kill, &[step(27)?])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "wal-checksum",
            how: "a v27 database with 2000 jobs and its pre-migrate snapshot; a child commits 10 more jobs with checkpoints off and is killed; one byte inside that committed WAL entry is flipped",
            plain_open: "wal-replay (checksum-mismatch)",
            expect: || recovered(2000, &["", ".wal"]),
            build: |f| {
                migrated_27(f, 2000)?;
                crash(f.db(), Death::Kill, &[insert(2000, 2010)])?;
                let len = size(&f.wal())?;
                flip(&f.wal(), len - 8)?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "wal-undecodable",
            how: "as wal-checksum, then 16 bytes of the WAL header (after its first field id) set to 0xFF",
            plain_open: "wal-replay (undecodable)",
            expect: || recovered(2000, &["", ".wal"]),
            build: |f| {
                migrated_27(f, 2000)?;
                crash(f.db(), Death::Kill, &[insert(2000, 2010)])?;
                let mut bytes = fs_err::read(f.wal()).map_err(|e| e.to_string())?;
                for b in bytes.iter_mut().skip(2).take(16) {
                    *b = 0xFF;
                }
                fs_err::write(f.wal(), bytes).map_err(|e| e.to_string())?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "wal-torn-tail",
            how: "a v27 database with 2000 jobs and its pre-migrate snapshot; a child commits 100 jobs, then 100 more, with checkpoints off, and is killed; the WAL is cut in the middle of the second commit",
            plain_open: "opens",
            expect: || opened(Outcome::Healthy, 2100),
            build: |f| {
                migrated_27(f, 2000)?;
                let sizes = crash(
                    f.db(),
                    Death::Kill,
                    &[insert(2000, 2100), insert(2100, 2200)],
                )?;
                let cut = sizes[0] + (sizes[1] - sizes[0]) / 2;
                truncate(&f.wal(), cut)?;
                Ok(vec![format!(
                    "WAL after the first commit: {} bytes, after the second: {} bytes, cut at {cut}",
                    sizes[0], sizes[1]
                )])
            },
        },
        Scenario {
            name: "mid-ladder-kill",
            how: "a v20 database with 2000 jobs and its pre-migrate snapshot; a child commits migrations 21 and 22 (each with its schema_version row) with checkpoints off and aborts",
            plain_open: "opens",
            expect: || opened(Outcome::Migrated, 2000),
            build: |f| {
                base(f, 20, 2000)?;
                snapshot(f)?;
                crash(f.db(), Death::Abort, &[step(21)?, step(22)?])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "corrupt-block",
            how: "a v27 database with 2000 jobs and its pre-migrate snapshot, closed; one byte flipped in the first block whose damage DuckDB detects on open",
            plain_open: "corrupt-database",
            expect: || refused("corrupt-database", false),
            build: |f| {
                migrated_27(f, 2000)?;
                let at = damage::corrupt_a_block(f.db()).map_err(|e| e.to_string())?;
                Ok(vec![format!("flipped the byte at offset {at}")])
            },
        },
        Scenario {
            name: "truncated-main",
            how: "a v27 database with 2000 jobs and its pre-migrate snapshot, closed; the database file cut at the last block boundary (counting from the end) that makes DuckDB refuse it",
            plain_open: "truncated",
            expect: || refused("truncated", false),
            build: |f| {
                migrated_27(f, 2000)?;
                let (cut, len) = truncate_until_refused(f.db())?;
                Ok(vec![format!("cut from {len} to {cut} bytes")])
            },
        },
        Scenario {
            name: "not-duckdb",
            how: "a v27 pre-migrate snapshot; in place of the database, a real (empty) SQLite 3 database file",
            plain_open: "not-a-database",
            expect: || refused("not-a-database", false),
            build: |f| {
                migrated_27(f, 2000)?;
                fs_err::write(f.db(), sysdb_scenarios::sqlite::empty_database())
                    .map_err(|e| e.to_string())?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "empty-file",
            how: "a v27 pre-migrate snapshot; in place of the database, an empty file",
            plain_open: "not-a-database",
            expect: || refused("not-a-database", false),
            build: |f| {
                migrated_27(f, 2000)?;
                fs_err::write(f.db(), b"").map_err(|e| e.to_string())?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "wal-replay-no-snapshot",
            how: "as wal-replay-ddl, without the pre-migrate snapshot",
            plain_open: "wal-replay (ddl)",
            expect: || refused("wal-replay", true),
            build: |f| {
                base(f, 26, 2000)?;
                crash(f.db(), Death::Kill, &[step(27)?])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "stale-snapshot",
            how: "a v25 database with 1000 jobs; its snapshot; migrated to v26 and 500 more jobs inserted and checkpointed; then a child commits migration 27 with checkpoints off and is killed",
            plain_open: "wal-replay (ddl)",
            expect: || recovered(1500, &["", ".wal"]),
            build: |f| {
                base(f, 25, 1000)?;
                snapshot(f)?;
                {
                    let conn = connect(f.db())?;
                    jobs_ladder(26)
                        .apply(&conn, &ApplyOptions::default())
                        .map_err(|e| e.to_string())?;
                    exec(&conn, &insert(1000, 1500))?;
                    exec(&conn, "CHECKPOINT;")?;
                }
                crash(f.db(), Death::Kill, &[step(27)?])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "sidecars",
            how: "a v26 database with 2000 jobs and its pre-migrate snapshot; a child commits migration 27 and 2000 more jobs with checkpoints off, then runs a CHECKPOINT, with a second connection committing single jobs meanwhile, that DuckDB stops just before writing the new header (SET debug_checkpoint_abort = 'before_header'), and is killed by SIGKILL",
            plain_open: "wal-replay (ddl)",
            // DuckDB's own first open rewrites the WAL before its replay
            // fails: it merges `.wal` and `.wal.checkpoint` into
            // `.wal.recovery`, moves that over `.wal` and removes the
            // checkpoint WAL, or, with no checkpoint WAL, cuts the failed
            // checkpoint's marker off the WAL. What sysdb sets aside is the
            // WAL as DuckDB left it.
            expect: || Expect {
                duckdb_rewrites_wal: true,
                ..recovered(2000, &["", ".wal"])
            },
            build: |f| {
                // The second connection's commits reach the checkpoint WAL
                // only if one lands while the checkpoint runs; on a busy
                // machine none may. Start again from scratch when none did.
                for attempt in 1.. {
                    base(f, 26, 2000)?;
                    snapshot(f)?;
                    let stages = [step(27)?, insert(2000, 4000)];
                    crash(f.db(), Death::KillInCheckpoint, &stages)?;
                    if f.sibling(".wal.checkpoint").exists() {
                        break;
                    }
                    if attempt == 20 {
                        return Err("in 20 attempts, no commit reached the checkpoint WAL".into());
                    }
                    for entry in fs_err::read_dir(f.dir()).map_err(|e| e.to_string())? {
                        let path = entry.map_err(|e| e.to_string())?.path();
                        fs_err::remove_file(path).map_err(|e| e.to_string())?;
                    }
                }
                let mut notes = vec!["a plain DuckDB open rewrites the WAL before its replay fails (merging a .wal.checkpoint into it through .wal.recovery, or cutting the failed checkpoint's marker off), so only .wal is left to set aside".to_owned()];
                for suffix in [".wal.checkpoint", ".wal.recovery"] {
                    let path = f.sibling(suffix);
                    notes.push(match fs_err::metadata(&path) {
                        Ok(m) => format!("{suffix} left behind, {} bytes", m.len()),
                        Err(_) => format!("no {suffix} left behind"),
                    });
                }
                Ok(notes)
            },
        },
        Scenario {
            name: "wal-rows-before-ddl",
            how: "a v26 database with 2000 jobs, checkpointed; its pre-migrate snapshot; a child commits 500 more jobs in 10 transactions, then migration 27 (which DuckDB 2.0 cannot replay), with checkpoints off, and is killed",
            plain_open: "wal-replay (ddl)",
            expect: || replayed("salvaged", 2500, 10, &[]),
            build: |f| {
                base(f, 26, 2000)?;
                snapshot(f)?;
                let mut stages: Vec<String> =
                    (0..10).map(|i| insert(2000 + i * 50, 2050 + i * 50)).collect();
                stages.push(step(27)?);
                crash(f.db(), Death::Kill, &stages)?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "wal-flip-last-of-20",
            how: "a v27 database with 1000 jobs and its pre-migrate snapshot; a child commits 20 transactions of 50 jobs with checkpoints off and is killed; one byte in the middle of the last commit is flipped",
            plain_open: "wal-replay (checksum-mismatch)",
            expect: || replayed("salvaged", 1950, 19, &[]),
            build: |f| {
                migrated_27(f, 1000)?;
                let stages: Vec<String> =
                    (0..20).map(|i| insert(1000 + i * 50, 1050 + i * 50)).collect();
                let sizes = crash(f.db(), Death::Kill, &stages)?;
                let offset = (sizes[18] + sizes[19]) / 2;
                flip(&f.wal(), offset)?;
                Ok(vec![format!("flipped the byte at offset {offset} of the WAL")])
            },
        },
        Scenario {
            name: "check-trim-add-column",
            how: "a v27 database with 1000 jobs, its pre-migrate snapshot and a table `notes` with CHECK (trim(note) <> ''), checkpointed; a child commits 400 notes, then ALTER TABLE notes ADD COLUMN, with checkpoints off, and is killed; DuckDB's plain open replays the ALTER before it loads core_functions",
            plain_open: "wal-replay (other)",
            expect: || replayed("replayed", 1000, 2, &[("notes", 400)]),
            build: |f| {
                with_table(f, "CREATE TABLE notes (id INTEGER, note VARCHAR CHECK (trim(note) <> ''));")?;
                crash(f.db(), Death::Kill, &[
                    "INSERT INTO notes SELECT i, 'note ' || i FROM range(400) r(i);".to_owned(),
                    "ALTER TABLE notes ADD COLUMN extra INTEGER;".to_owned(),
                ])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "generated-rename-column",
            how: "as check-trim-add-column, with a generated column `len AS (length(trim(note)))` and 300 notes, then ALTER TABLE notes RENAME COLUMN extra TO more",
            plain_open: "wal-replay (other)",
            expect: || replayed("replayed", 1000, 2, &[("notes", 300)]),
            build: |f| {
                with_table(f, "CREATE TABLE notes (id INTEGER, note VARCHAR, extra INTEGER, len INTEGER GENERATED ALWAYS AS (length(trim(note))));")?;
                crash(f.db(), Death::Kill, &[
                    "INSERT INTO notes (id, note) SELECT i, ' note ' || i FROM range(300) r(i);".to_owned(),
                    "ALTER TABLE notes RENAME COLUMN extra TO more;".to_owned(),
                ])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "check-enum-add-column",
            how: "a v27 database with 1000 jobs, its pre-migrate snapshot, an enum `mood` and a table `moods` with CHECK (m::mood IS NOT NULL), checkpointed; a child commits 200 rows, then ALTER TABLE moods ADD COLUMN, with checkpoints off, and is killed",
            plain_open: "wal-replay (ddl)",
            expect: || replayed("replayed", 1000, 2, &[("moods", 200)]),
            build: |f| {
                with_table(f, "CREATE TYPE mood AS ENUM ('ok', 'sad'); CREATE TABLE moods (id INTEGER, m VARCHAR CHECK (m::mood IS NOT NULL));")?;
                crash(f.db(), Death::Kill, &[
                    "INSERT INTO moods SELECT i, 'ok' FROM range(200) r(i);".to_owned(),
                    "ALTER TABLE moods ADD COLUMN extra INTEGER;".to_owned(),
                ])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "default-enum-add-column",
            how: "a v27 database with 1000 jobs, its pre-migrate snapshot, an enum `mood` and a table `moods`, checkpointed; a child commits 200 rows, then ALTER TABLE moods ADD COLUMN m mood DEFAULT 'ok'::mood, with checkpoints off, and is killed",
            plain_open: "wal-replay (ddl)",
            expect: || replayed("replayed", 1000, 2, &[("moods", 200)]),
            build: |f| {
                with_table(f, "CREATE TYPE mood AS ENUM ('ok', 'sad'); CREATE TABLE moods (id INTEGER);")?;
                crash(f.db(), Death::Kill, &[
                    "INSERT INTO moods SELECT i FROM range(200) r(i);".to_owned(),
                    "ALTER TABLE moods ADD COLUMN m mood DEFAULT 'ok'::mood;".to_owned(),
                ])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "set-type-using-levenshtein",
            how: "a v27 database with 1000 jobs, its pre-migrate snapshot and a table `words`, checkpointed; a child commits 250 words, then ALTER TABLE words ALTER COLUMN w SET TYPE INTEGER USING levenshtein(w, 'word'), with checkpoints off, and is killed",
            plain_open: "wal-replay (other)",
            expect: || replayed("replayed", 1000, 2, &[("words", 250)]),
            build: |f| {
                with_table(f, "CREATE TABLE words (id INTEGER, w VARCHAR);")?;
                crash(f.db(), Death::Kill, &[
                    "INSERT INTO words SELECT i, 'word' || i FROM range(250) r(i);".to_owned(),
                    "ALTER TABLE words ALTER COLUMN w SET TYPE INTEGER USING levenshtein(w, 'word');".to_owned(),
                ])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "default-now-if-not-exists",
            how: "a v27 database with 1000 jobs, its pre-migrate snapshot and a table `events`, checkpointed; a child commits 300 events, then ALTER TABLE events ADD COLUMN IF NOT EXISTS created TIMESTAMPTZ DEFAULT now(), with checkpoints off, and is killed",
            plain_open: "wal-replay (other)",
            expect: || replayed("replayed", 1000, 2, &[("events", 300)]),
            build: |f| {
                with_table(f, "CREATE TABLE events (id INTEGER);")?;
                crash(f.db(), Death::Kill, &[
                    "INSERT INTO events SELECT i FROM range(300) r(i);".to_owned(),
                    "ALTER TABLE events ADD COLUMN IF NOT EXISTS created TIMESTAMPTZ DEFAULT now();".to_owned(),
                ])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "set-type-enum-other-schema",
            how: "a v27 database with 1000 jobs, its pre-migrate snapshot, an enum `s2.st` in another schema and a table `tags`, checkpointed; a child commits 200 tags, then ALTER TABLE tags ALTER COLUMN v SET TYPE s2.st USING v::s2.st, with checkpoints off, and is killed",
            plain_open: "wal-replay (ddl)",
            expect: || replayed("replayed", 1000, 2, &[("tags", 200)]),
            build: |f| {
                with_table(f, "CREATE SCHEMA s2; CREATE TYPE s2.st AS ENUM ('a', 'b'); CREATE TABLE tags (id INTEGER, v VARCHAR);")?;
                crash(f.db(), Death::Kill, &[
                    "INSERT INTO tags SELECT i, 'b' FROM range(200) r(i);".to_owned(),
                    "ALTER TABLE tags ALTER COLUMN v SET TYPE s2.st USING v::s2.st;".to_owned(),
                ])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "set-type-struct-of-enum",
            how: "a v27 database with 1000 jobs, its pre-migrate snapshot, an enum `s2.st` and a struct type `s2.sr` of it in another schema, and a table `tags`, checkpointed; a child commits 200 tags, then ALTER TABLE tags ALTER COLUMN v SET TYPE s2.sr USING {'k': v::s2.st, 'n': id}, with checkpoints off, and is killed; replay binds the cast in the replaying DuckDB's catalog, which holds the user types only where they are created first",
            plain_open: "wal-replay (ddl)",
            expect: || replayed("replayed", 1000, 2, &[("tags", 200)]),
            build: |f| {
                with_table(f, "CREATE SCHEMA s2; CREATE TYPE s2.st AS ENUM ('a', 'b'); CREATE TYPE s2.sr AS STRUCT(k s2.st, n INTEGER); CREATE TABLE tags (id INTEGER, v VARCHAR);")?;
                crash(f.db(), Death::Kill, &[
                    "INSERT INTO tags SELECT i, 'a' FROM range(200) r(i);".to_owned(),
                    "ALTER TABLE tags ALTER COLUMN v SET TYPE s2.sr USING {'k': v::s2.st, 'n': id};".to_owned(),
                ])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "generated-enum-add-column",
            how: "a v27 database with 1000 jobs, its pre-migrate snapshot, an enum `s2.st` and a table `tags` with a generated column `g s2.st AS (v::s2.st)`, checkpointed; a child commits 200 tags, then ALTER TABLE tags ADD COLUMN, with checkpoints off, and is killed",
            plain_open: "wal-replay (ddl)",
            expect: || replayed("replayed", 1000, 2, &[("tags", 200)]),
            build: |f| {
                with_table(f, "CREATE SCHEMA s2; CREATE TYPE s2.st AS ENUM ('a', 'b'); CREATE TABLE tags (id INTEGER, v VARCHAR, g s2.st GENERATED ALWAYS AS (v::s2.st));")?;
                crash(f.db(), Death::Kill, &[
                    "INSERT INTO tags (id, v) SELECT i, 'b' FROM range(200) r(i);".to_owned(),
                    "ALTER TABLE tags ADD COLUMN extra INTEGER;".to_owned(),
                ])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "check-enum-add-primary-key",
            how: "a v27 database with 1000 jobs, its pre-migrate snapshot, an enum `s2.st` and a table `tags` with CHECK (v::s2.st IS NOT NULL), checkpointed; a child commits 200 tags, then ALTER TABLE tags ADD PRIMARY KEY (id), with checkpoints off, and is killed; DuckDB's plain open writes a block the last checkpoint left free before its replay fails",
            plain_open: "wal-replay (ddl)",
            expect: || Expect {
                duckdb_writes_db: true,
                ..replayed("replayed", 1000, 2, &[("tags", 200)])
            },
            build: |f| {
                with_table(f, "CREATE SCHEMA s2; CREATE TYPE s2.st AS ENUM ('a', 'b'); CREATE TABLE tags (id INTEGER NOT NULL, v VARCHAR CHECK (v::s2.st IS NOT NULL));")?;
                crash(f.db(), Death::Kill, &[
                    "INSERT INTO tags SELECT i, 'a' FROM range(200) r(i);".to_owned(),
                    "ALTER TABLE tags ADD PRIMARY KEY (id);".to_owned(),
                ])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "check-enum-comment-on-column",
            how: "as check-enum-add-primary-key, then COMMENT ON COLUMN tags.v instead of the primary key",
            plain_open: "wal-replay (ddl)",
            expect: || replayed("replayed", 1000, 2, &[("tags", 200)]),
            build: |f| {
                with_table(f, "CREATE SCHEMA s2; CREATE TYPE s2.st AS ENUM ('a', 'b'); CREATE TABLE tags (id INTEGER, v VARCHAR CHECK (v::s2.st IS NOT NULL));")?;
                crash(f.db(), Death::Kill, &[
                    "INSERT INTO tags SELECT i, 'a' FROM range(200) r(i);".to_owned(),
                    "COMMENT ON COLUMN tags.v IS 'the tag';".to_owned(),
                ])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "json-check-add-column",
            how: "a v27 database with 1000 jobs, its pre-migrate snapshot and a table `docs` with CHECK (json_valid(doc)), checkpointed; a child commits 300 docs, then ALTER TABLE docs ADD COLUMN, with checkpoints off, and is killed; DuckDB's plain open replays the ALTER before it loads the json extension",
            plain_open: "wal-replay (other)",
            expect: || replayed("replayed", 1000, 2, &[("docs", 300)]),
            build: |f| {
                with_table(f, "CREATE TABLE docs (id INTEGER, doc VARCHAR CHECK (json_valid(doc)));")?;
                crash(f.db(), Death::Kill, &[
                    "INSERT INTO docs SELECT i, '{\"n\": ' || i || '}' FROM range(300) r(i);".to_owned(),
                    "ALTER TABLE docs ADD COLUMN extra INTEGER;".to_owned(),
                ])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "json-set-type",
            how: "a v27 database with 1000 jobs, its pre-migrate snapshot and a table `docs`, checkpointed; a child commits 300 docs, then ALTER TABLE docs ALTER COLUMN doc SET TYPE JSON, with checkpoints off, and is killed",
            plain_open: "wal-replay (ddl)",
            expect: || replayed("replayed", 1000, 2, &[("docs", 300)]),
            build: |f| {
                with_table(f, "CREATE TABLE docs (id INTEGER, doc VARCHAR);")?;
                crash(f.db(), Death::Kill, &[
                    "INSERT INTO docs SELECT i, '[' || i || ']' FROM range(300) r(i);".to_owned(),
                    "ALTER TABLE docs ALTER COLUMN doc SET TYPE JSON;".to_owned(),
                ])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "icu-timestamptz-to-date",
            how: "a v27 database with 1000 jobs, its pre-migrate snapshot and a table `events` with a TIMESTAMPTZ column, checkpointed; a child commits 300 events, then ALTER TABLE events ALTER COLUMN happened SET TYPE DATE, with checkpoints off, and is killed; the cast needs ICU, which DuckDB's plain open loads only after its replay",
            plain_open: "wal-replay (other)",
            expect: || replayed("replayed", 1000, 2, &[("events", 300)]),
            build: |f| {
                with_table(f, "CREATE TABLE events (id INTEGER, happened TIMESTAMPTZ);")?;
                crash(f.db(), Death::Kill, &[
                    "INSERT INTO events SELECT i, TIMESTAMPTZ '2026-01-01 12:00:00+00' + to_hours(i) FROM range(300) r(i);".to_owned(),
                    "ALTER TABLE events ALTER COLUMN happened SET TYPE DATE;".to_owned(),
                ])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "torn-foreign-migration",
            how: "a v20 database with 1000 jobs, a table `notes` with CHECK (trim(note) <> '') and its pre-migrate snapshot, checkpointed; a child commits 400 notes, ALTER TABLE notes ADD COLUMN extra, then migration 21's statement alone (ALTER TABLE jobs ADD COLUMN c21), without its schema_version row, as a service's own ladder that commits its DDL outside the transaction of its version row does, with checkpoints off, and is killed; the whole log replays through ATTACH, but migration 21 fails on it (the column exists)",
            plain_open: "wal-replay (other)",
            expect: || replayed("salvaged", 1000, 2, &[("notes", 400)]),
            build: |f| {
                base(f, 20, 1000)?;
                {
                    let conn = connect(f.db())?;
                    exec(&conn, "CREATE TABLE notes (id INTEGER, note VARCHAR CHECK (trim(note) <> '')); CHECKPOINT;")?;
                }
                snapshot(f)?;
                let ladder = jobs_ladder(TOP);
                let torn = ladder.step(21).ok_or("no migration 21")?.sql().to_owned();
                crash(f.db(), Death::Kill, &[
                    "INSERT INTO notes SELECT i, 'note ' || i FROM range(400) r(i);".to_owned(),
                    "ALTER TABLE notes ADD COLUMN extra INTEGER;".to_owned(),
                    torn,
                ])?;
                Ok(Vec::new())
            },
        },
        Scenario {
            name: "wal-replay-out-of-memory",
            how: "a v27 database with 30000 jobs and its pre-migrate snapshot; a child commits three UPDATEs of every job with checkpoints off and is killed; the open is given memory_limit = '1MB' (no temp directory, one thread), too little to replay that intact log",
            plain_open: "opens",
            expect: || Expect {
                memory_limit: Some("1MB".to_owned()),
                ..refused("out-of-memory", true)
            },
            build: |f| {
                migrated_27(f, 30_000)?;
                let updates: Vec<String> = (2..=4)
                    .map(|c| format!("UPDATE jobs SET c{c} = id % 1000;"))
                    .collect();
                crash(f.db(), Death::Kill, &updates)?;
                Ok(Vec::new())
            },
        },
    ]
}

/// v27 with 1000 jobs and its pre-migrate snapshot, then `sql` run and
/// checkpointed.
fn with_table(f: &DbFiles, sql: &str) -> Result<(), String> {
    migrated_27(f, 1000)?;
    let conn = connect(f.db())?;
    exec(&conn, sql)?;
    exec(&conn, "CHECKPOINT;")
}

// ---------------------------------------------------------------------------
// Building blocks.

fn exec(conn: &Connection, sql: &str) -> Result<(), String> {
    conn.execute_batch(sql).map_err(|e| format!("{sql}: {e}"))
}

fn insert(from: u32, to: u32) -> String {
    insert_jobs(from.into(), to.into())
}

/// Migration `version` and its `schema_version` row in one transaction,
/// as the ladder applies it (without the checkpoint that follows).
fn step(version: u32) -> Result<String, String> {
    let ladder = jobs_ladder(TOP);
    let step = ladder
        .step(version)
        .ok_or(format!("no migration {version}"))?;
    Ok(step.transaction_sql())
}

/// A database at `top` with `rows` jobs, checkpointed and closed.
fn base(f: &DbFiles, top: u32, rows: u32) -> Result<(), String> {
    let conn = connect(f.db())?;
    jobs_ladder(top)
        .apply(&conn, &ApplyOptions::default())
        .map_err(|e| format!("migrating {} to {top}: {e}", f.db()))?;
    exec(&conn, &insert(0, rows))?;
    exec(&conn, "CHECKPOINT;")
}

/// The pre-migrate snapshot. Every connection of the generator is closed
/// by then: each building block drops its own.
fn snapshot(f: &DbFiles) -> Result<(), String> {
    sysdb_snapshot::take(&ClosedDb::assume_closed(f.clone()))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// v26 with `rows` jobs, its pre-migrate snapshot, then migration 27
/// applied and checkpointed, as a finished migration leaves them.
fn migrated_27(f: &DbFiles, rows: u32) -> Result<(), String> {
    base(f, 26, rows)?;
    snapshot(f)?;
    let conn = connect(f.db())?;
    jobs_ladder(TOP)
        .apply(&conn, &ApplyOptions::default())
        .map(|_| ())
        .map_err(|e| format!("migrating {} to {TOP}: {e}", f.db()))
}

fn size(path: &Utf8Path) -> Result<u64, String> {
    fs_err::metadata(path)
        .map(|m| m.len())
        .map_err(|e| e.to_string())
}

fn flip(path: &Utf8Path, offset: u64) -> Result<(), String> {
    flip_byte(path, offset).map_err(|e| e.to_string())
}

fn truncate(path: &Utf8Path, len: u64) -> Result<(), String> {
    damage::truncate(path, len).map_err(|e| e.to_string())
}

/// Cut the file one block more at a time, from the end, until DuckDB
/// refuses to open it; return the length kept and the original length.
fn truncate_until_refused(db: &Utf8Path) -> Result<(u64, u64), String> {
    let original = fs_err::read(db).map_err(|e| e.to_string())?;
    let len = original.len() as u64;
    let block: u64 = BLOCK_SIZE.parse().map_err(|e| format!("{e}"))?;
    let mut cut = len;
    while cut > block {
        cut -= block;
        truncate(db, cut)?;
        if connect(db).is_err() {
            return Ok((cut, len));
        }
        fs_err::write(db, &original).map_err(|e| e.to_string())?;
    }
    Err(format!("no cut made {db} fail to open"))
}

// ---------------------------------------------------------------------------
// Generation and checking.

/// The class of a plain DuckDB open of `db`, made on a copy of its folder
/// so that the fixture itself is not touched, and whether a failed open
/// changed the database file.
fn plain_open(files: &[Utf8PathBuf], db_name: &str) -> Result<(String, bool), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let scratch = utf8(tmp.path())?;
    for file in files {
        let name = file.file_name().ok_or("a file without a name")?;
        fs_err::copy(file, scratch.join(name)).map_err(|e| e.to_string())?;
    }
    let db = scratch.join(db_name);
    let before = fs_err::read(&db).ok();
    let config = sysdb::Connector::config(&sysdb::DuckDbConnector).map_err(|e| e.to_string())?;
    Ok(match Connection::open_with_flags(&db, config) {
        Ok(_) => ("opens".to_owned(), false),
        Err(e) => (
            describe(classify_error(&e)),
            fs_err::read(&db).ok() != before,
        ),
    })
}

fn utf8(path: &std::path::Path) -> Result<Utf8PathBuf, String> {
    Utf8PathBuf::try_from(path.to_owned()).map_err(|e| e.to_string())
}

fn duckdb_version() -> Result<String, String> {
    let conn = Connection::open_in_memory().map_err(|e| e.to_string())?;
    conn.query_row("SELECT library_version FROM pragma_version()", [], |r| {
        r.get::<_, String>(0)
    })
    .map_err(|e| e.to_string())
}

/// Make every scenario under `out`; return the manifests.
fn make_all(out: &Utf8Path) -> Result<BTreeMap<String, Manifest>, String> {
    let duckdb = duckdb_version()?;
    write_migrations(&jobs_ladder(TOP), &out.join("migrations")).map_err(|e| e.to_string())?;
    let mut manifests = BTreeMap::new();
    for scenario in scenarios() {
        eprintln!("making {}", scenario.name);
        let manifest = make(&scenario, out, &duckdb)
            .map_err(|e| format!("scenario {}: {e}", scenario.name))?;
        manifests.insert(scenario.name.to_owned(), manifest);
    }
    Ok(manifests)
}

fn make(scenario: &Scenario, out: &Utf8Path, duckdb: &str) -> Result<Manifest, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let work = utf8(tmp.path())?;
    let files = DbFiles::new(work.join("system.duckdb")).map_err(|e| e.to_string())?;
    let notes = (scenario.build)(&files)?;

    let mut made: Vec<Utf8PathBuf> = fs_err::read_dir(&work)
        .map_err(|e| e.to_string())?
        .map(|e| {
            e.map_err(|e| e.to_string())
                .and_then(|e| Utf8PathBuf::try_from(e.path()).map_err(|e| e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    made.sort();
    let (observed, wrote) = plain_open(&made, files.name())?;
    if observed != scenario.plain_open {
        return Err(format!(
            "the pinned DuckDB ({duckdb}) no longer reproduces this scenario: a plain open was expected to give `{}`, it gave `{observed}`",
            scenario.plain_open
        ));
    }
    if wrote != (scenario.expect)().duckdb_writes_db {
        return Err(format!(
            "the pinned DuckDB ({duckdb}) {} the database file in its failed plain open, which the scenario does not say",
            if wrote { "changed" } else { "did not change" }
        ));
    }

    let dest = out.join(scenario.name);
    fs_err::create_dir_all(&dest).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    for file in &made {
        let name = file.file_name().ok_or("a file without a name")?;
        fs_err::copy(file, dest.join(name)).map_err(|e| e.to_string())?;
        names.push(name.to_owned());
    }
    let manifest = Manifest {
        generated: GENERATED.to_owned(),
        scenario: scenario.name.to_owned(),
        how: scenario.how.to_owned(),
        duckdb: duckdb.to_owned(),
        files: names,
        plain_open: observed,
        expect: (scenario.expect)(),
        notes,
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())? + "\n";
    fs_err::write(dest.join("manifest.json"), text).map_err(|e| e.to_string())?;
    Ok(manifest)
}

/// `cargo xtask fixtures`.
pub fn generate() -> Result<(), String> {
    let fixtures = crate::root().join("fixtures");
    if fixtures.exists() {
        fs_err::remove_dir_all(&fixtures).map_err(|e| e.to_string())?;
    }
    let manifests = make_all(&fixtures)?;
    let bytes: u64 = walk_size(&fixtures)?;
    println!(
        "made {} scenarios in {fixtures} ({} KiB)",
        manifests.len(),
        bytes / 1024
    );
    Ok(())
}

fn walk_size(dir: &Utf8Path) -> Result<u64, String> {
    let mut total = 0;
    for entry in fs_err::read_dir(dir).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let meta = entry.metadata().map_err(|e| e.to_string())?;
        if meta.is_dir() {
            let path = Utf8PathBuf::try_from(entry.path()).map_err(|e| e.to_string())?;
            total += walk_size(&path)?;
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}

/// `cargo xtask fixtures --check`.
pub fn check() -> Result<(), String> {
    let fixtures = crate::root().join("fixtures");
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let temp = utf8(tmp.path())?;
    let fresh = make_all(&temp)?;
    let mut problems = Vec::new();
    for (name, manifest) in &fresh {
        let path = fixtures.join(name).join("manifest.json");
        let committed = match fs_err::read_to_string(&path) {
            Ok(text) => text,
            Err(_) => {
                problems.push(format!("{path} is missing"));
                continue;
            }
        };
        let fresh_text = serde_json::to_string_pretty(manifest).map_err(|e| e.to_string())? + "\n";
        // Notes record sizes and offsets, which vary from run to run: DuckDB
        // files are not byte-reproducible. Everything else must match.
        let same = serde_json::from_str::<Manifest>(&committed)
            .map(|c| {
                Manifest {
                    notes: Vec::new(),
                    ..c
                } == Manifest {
                    notes: Vec::new(),
                    ..manifest.clone()
                }
            })
            .unwrap_or(false);
        if !same {
            problems.push(format!(
                "{path} differs:\n{}",
                diff(&committed, &fresh_text)
            ));
        }
    }
    for entry in fs_err::read_dir(&fixtures).map_err(|e| e.to_string())? {
        let name = entry.map_err(|e| e.to_string())?.file_name();
        let name = name.to_string_lossy();
        if name != "migrations" && !fresh.contains_key(name.as_ref()) {
            problems.push(format!(
                "{fixtures}/{name} belongs to no scenario the generator knows"
            ));
        }
    }
    for step in jobs_ladder(TOP).steps() {
        let path =
            fixtures
                .join("migrations")
                .join(format!("{:04}_{}.sql", step.version(), step.name()));
        if fs_err::read_to_string(&path).ok().as_deref() != Some(step.sql()) {
            problems.push(format!("{path} is missing or differs"));
        }
    }
    if problems.is_empty() {
        println!(
            "fixtures: {} scenarios regenerated, every manifest matches {fixtures}",
            fresh.len()
        );
        Ok(())
    } else {
        Err(format!(
            "fixtures/ is out of date; run `cargo xtask fixtures` and review the diff:\n{}",
            problems.join("\n")
        ))
    }
}

/// The lines of `old` and `new` that differ, as `-`/`+` pairs.
fn diff(old: &str, new: &str) -> String {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let mut out = Vec::new();
    for i in 0..old.len().max(new.len()) {
        match (old.get(i), new.get(i)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => {
                if let Some(a) = a {
                    out.push(format!("  - {a}"));
                }
                if let Some(b) = b {
                    out.push(format!("  + {b}"));
                }
            }
        }
    }
    out.join("\n")
}
