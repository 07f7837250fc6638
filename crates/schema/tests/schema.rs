//! The ladder against real database files.

use std::path::{Path, PathBuf};

use duckdb::Connection;
use proptest::prelude::*;
use sysdb_scenarios::ladders::{jobs_steps, seed_version};
use sysdb_schema::{current_version, ApplyOptions, Error, Ladder};

fn open(path: &Path) -> Connection {
    Connection::open_with_flags(path, sysdb_scenarios::config()).expect("open database")
}

/// Close without the checkpoint DuckDB would otherwise run on shutdown, the
/// way a process that exits right after `apply` leaves the file.
fn close_without_checkpoint(conn: Connection) {
    conn.execute_batch("PRAGMA disable_checkpoint_on_shutdown")
        .expect("pragma");
    drop(conn);
}

fn wal(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".wal");
    PathBuf::from(name)
}

fn count(conn: &Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

/// The seed service's ladder (`sysdb_scenarios::ladders::jobs_steps`) to
/// 25, then two steps of these tests' own that need nothing of step 1 (a
/// legacy database made by hand has no enum type): 26 creates `owners`,
/// 27 adds `jobs.owner`.
fn service_ladder(top: u32) -> Ladder {
    let mut steps = jobs_steps(top.min(25));
    if top >= 26 {
        steps.push((
            26,
            "create_owners".into(),
            "CREATE TABLE owners (name VARCHAR PRIMARY KEY);\nINSERT INTO owners VALUES ('ops');"
                .into(),
        ));
    }
    if top >= 27 {
        steps.push((
            27,
            "add_owner".into(),
            "ALTER TABLE jobs ADD COLUMN owner VARCHAR;".into(),
        ));
    }
    Ladder::new(steps).expect("valid ladder")
}

fn db_at_25(dir: &Path) -> PathBuf {
    let path = dir.join("system.duckdb");
    let conn = open(&path);
    service_ladder(25)
        .apply(&conn, &ApplyOptions::default())
        .expect("apply to 25");
    conn.execute_batch(
        "INSERT INTO jobs (id, state) SELECT range, 'done' FROM range(1000); CHECKPOINT;",
    )
    .expect("seed rows");
    drop(conn);
    path
}

#[test]
fn the_seed_story_v25_to_v27_keeps_every_row_and_leaves_no_wal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_at_25(dir.path());

    let conn = open(&path);
    assert_eq!(seed_version(&conn), 25);
    let applied = service_ladder(27)
        .apply(&conn, &ApplyOptions::default())
        .expect("apply to 27");
    assert_eq!((applied.from, applied.to), (25, 27));
    assert_eq!(
        applied.steps.iter().map(|s| s.version).collect::<Vec<_>>(),
        [26, 27]
    );
    close_without_checkpoint(conn);
    assert!(!wal(&path).exists(), "a WAL survived apply");

    let conn = open(&path);
    assert_eq!(seed_version(&conn), 27);
    assert_eq!(count(&conn, "jobs"), 1000);
    assert_eq!(
        count(&conn, "jobs WHERE owner IS NULL AND state = 'done'"),
        1000
    );
    assert_eq!(count(&conn, "owners"), 1);
}

#[test]
fn a_step_committed_as_its_transaction_sql_is_recorded_as_apply_records_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_at_25(dir.path());
    let conn = open(&path);
    let ladder = service_ladder(27);
    assert_eq!(current_version(&conn).expect("current version"), 25);

    let step = ladder.step(26).expect("step 26");
    conn.execute_batch(&step.transaction_sql())
        .expect("commit step 26 by hand");
    let status = ladder.status(&conn).expect("status");
    assert_eq!(status.current, 26);
    assert!(status.drift.is_empty() && !status.legacy_table, "{status}");
    assert_eq!(seed_version(&conn), 26);
    assert_eq!(current_version(&conn).expect("current version"), 26);
    assert_eq!(count(&conn, "owners"), 1);

    let applied = ladder
        .apply(&conn, &ApplyOptions::default())
        .expect("apply the rest");
    assert_eq!((applied.from, applied.to), (26, 27));
    assert_eq!(seed_version(&conn), 27);

    let empty = Connection::open_in_memory().expect("in memory");
    assert_eq!(current_version(&empty).expect("no table"), 0);
}

#[test]
fn a_legacy_schema_version_table_is_adopted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("system.duckdb");
    let conn = open(&path);
    conn.execute_batch(
        "CREATE TABLE schema_version (version INTEGER, applied_at TIMESTAMP);
         INSERT INTO schema_version SELECT range, TIMESTAMP '2026-01-01' + range * INTERVAL 1 DAY FROM range(1, 26);
         CREATE TABLE jobs (id INTEGER PRIMARY KEY, state VARCHAR);",
    )
    .expect("legacy database");
    for v in 2..=25 {
        conn.execute_batch(&format!("ALTER TABLE jobs ADD COLUMN c{v} INTEGER;"))
            .expect("legacy columns");
    }
    conn.execute_batch("INSERT INTO jobs (id, state) VALUES (1, 'x'); CHECKPOINT;")
        .expect("rows");

    let ladder = service_ladder(27);
    let status = ladder.status(&conn).expect("status");
    assert!(status.legacy_table);
    assert_eq!(status.current, 25);
    insta::assert_snapshot!("legacy_status", status.to_string());
    insta::assert_snapshot!(
        "legacy_plan",
        ladder
            .plan(&conn, &ApplyOptions::default())
            .expect("plan")
            .to_string()
    );

    let applied = ladder
        .apply(&conn, &ApplyOptions::default())
        .expect("apply");
    assert!(applied.adopted_legacy_table);
    assert_eq!(applied.to, 27);
    assert_eq!(seed_version(&conn), 27);
    let filled: i64 = conn
        .query_row(
            "SELECT count(*) FROM schema_version WHERE name IS NOT NULL AND length(checksum) = 64",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(filled, 27);
    let status = ladder.status(&conn).expect("status");
    assert!(!status.legacy_table && status.drift.is_empty() && status.pending.is_empty());
}

/// Apply `ladder` to the database at `path` expecting a refusal; the file
/// must be byte-identical afterwards.
fn refused(path: &Path, ladder: &Ladder, options: &ApplyOptions) -> Error {
    let before = fs_err::read(path).expect("read db");
    let conn = open(path);
    let plan_error = ladder.plan(&conn, options).expect_err("plan refuses");
    let err = ladder.apply(&conn, options).expect_err("apply refuses");
    assert_eq!(plan_error.to_string(), err.to_string());
    drop(conn);
    assert!(!wal(path).exists());
    assert!(
        fs_err::read(path).expect("read db") == before,
        "a refusal changed the file"
    );
    err
}

#[test]
fn a_newer_database_is_refused_unchanged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_at_25(dir.path());
    let err = refused(&path, &service_ladder(20), &ApplyOptions::default());
    assert!(
        matches!(
            err,
            Error::DatabaseNewer {
                database: 25,
                ladder: 20
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "database is at version 25, this build knows up to 20; run a build that knows version 25 or newer"
    );
}

#[test]
fn drift_is_refused_unchanged_unless_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_at_25(dir.path());
    let mut steps: Vec<(u32, String, String)> = service_ladder(27)
        .steps()
        .iter()
        .map(|s| (s.version(), s.name().to_owned(), s.sql().to_owned()))
        .collect();
    steps[2].2 = "ALTER TABLE jobs ADD COLUMN c3 BIGINT;".into();
    let edited = Ladder::new(steps).expect("valid");
    let err = refused(&path, &edited, &ApplyOptions::default());
    match &err {
        Error::Drift { drift } => {
            assert_eq!(drift.len(), 1);
            assert_eq!((drift[0].version, drift[0].name.as_str()), (3, "add_c3"));
        }
        other => panic!("unexpected {other:?}"),
    }

    // Line endings and trailing whitespace are not drift.
    let mut steps: Vec<(u32, String, String)> = service_ladder(27)
        .steps()
        .iter()
        .map(|s| {
            (
                s.version(),
                s.name().to_owned(),
                format!("{}  \r\n", s.sql()),
            )
        })
        .collect();
    steps.truncate(27);
    let conn = open(&path);
    let status = Ladder::new(steps)
        .expect("valid")
        .status(&conn)
        .expect("status");
    assert!(status.drift.is_empty());

    let options = ApplyOptions {
        accept_drift: true,
        ..ApplyOptions::default()
    };
    let applied = edited.apply(&conn, &options).expect("accepted drift");
    assert_eq!(applied.to, 27);
}

#[test]
fn versions_missing_in_the_middle_are_refused_unchanged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_at_25(dir.path());
    let conn = open(&path);
    conn.execute_batch("DELETE FROM schema_version WHERE version IN (3, 4); CHECKPOINT;")
        .expect("delete history");
    drop(conn);
    let err = refused(&path, &service_ladder(27), &ApplyOptions::default());
    assert!(
        matches!(&err, Error::MissingVersions { missing } if missing == &[3, 4]),
        "{err:?}"
    );
}

/// Apply `ladder`, which must fail at `step` on `statement`; the error.
fn failed_step(ladder: &Ladder, conn: &Connection, step: (u32, &str), statement: &str) -> Error {
    let err = ladder
        .apply(conn, &ApplyOptions::default())
        .expect_err("a step fails");
    match &err {
        Error::Step {
            version,
            name,
            statement: failed,
            ..
        } => {
            assert_eq!((*version, name.as_str()), step);
            assert_eq!(failed, statement);
        }
        other => panic!("unexpected {other:?}"),
    }
    err
}

#[test]
fn a_failing_step_read_from_a_folder_names_its_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = camino::Utf8PathBuf::try_from(dir.path().join("migrations")).expect("utf-8");
    fs_err::create_dir_all(&folder).expect("folder");
    fs_err::write(
        folder.join("0001_jobs.sql"),
        "CREATE TABLE jobs (id INTEGER);\n",
    )
    .expect("step");
    fs_err::write(
        folder.join("0002_owner_audit.sql"),
        "CREAT TABLE owner_audit (id INTEGER);\n",
    )
    .expect("step");
    let ladder = Ladder::from_dir(&folder).expect("ladder");
    let conn = Connection::open(dir.path().join("system.duckdb")).expect("open");
    let err = failed_step(
        &ladder,
        &conn,
        (2, "owner_audit"),
        "CREAT TABLE owner_audit (id INTEGER)",
    );
    let file = folder.join("0002_owner_audit.sql");
    assert!(
        matches!(&err, Error::Step { file: Some(f), .. } if *f == file),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "while applying migration 2 owner_audit ({file}): statement `CREAT TABLE"
        )),
        "{text}"
    );
    assert!(text.contains("Parser Error"), "{text}");
}

#[test]
fn a_failing_step_names_its_statement_and_leaves_the_previous_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("system.duckdb");
    let ladder = Ladder::new([
        (1, "create_jobs", "CREATE TABLE jobs (id INTEGER);"),
        (2, "fill", "INSERT INTO jobs VALUES (1), (2);"),
        (
            3,
            "broken",
            "CREATE TABLE half (x INTEGER);\nINSERT INTO jobs SELECT * FROM no_such_table;",
        ),
    ])
    .expect("valid");
    let conn = open(&path);
    let err = failed_step(
        &ladder,
        &conn,
        (3, "broken"),
        "INSERT INTO jobs SELECT * FROM no_such_table",
    );
    insta::assert_snapshot!("failed_step", err.to_string());
    let status = ladder.status(&conn).expect("status");
    assert_eq!(status.current, 2);
    assert_eq!(count(&conn, "jobs"), 2);
    let half: i64 = conn
        .query_row(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'half'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(
        half, 0,
        "the failed step's first statement was not rolled back"
    );
}

#[test]
fn steps_are_split_where_duckdb_splits_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("system.duckdb");
    let ladder = Ladder::new([
        (1, "create", "CREATE TABLE t (v VARCHAR);"),
        (
            2,
            "quoting",
            "INSERT INTO t VALUES (E'o\\'brien; jr');\n\
             /* a /* nested */ ; */ INSERT INTO t SELECT 'x' AS a$b;\n\
             INSERT INTO t SELECT $q$;$q$ AS `c;d`;",
        ),
        (
            3,
            "broken",
            "INSERT INTO t VALUES (E'it\\'s; fine');\nINSERT INTO t SELECT v FROM nowhere;",
        ),
    ])
    .expect("valid");
    let conn = open(&path);
    failed_step(
        &ladder,
        &conn,
        (3, "broken"),
        "INSERT INTO t SELECT v FROM nowhere",
    );
    let mut query = conn.prepare("SELECT v FROM t").expect("prepare");
    let values: Vec<String> = query
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(values, ["o'brien; jr", "x", ";"]);
}

#[test]
fn status_and_plan_texts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_at_25(dir.path());
    let conn = open(&path);
    let ladder = service_ladder(27);
    insta::assert_snapshot!(
        "status_pending",
        ladder.status(&conn).expect("status").to_string()
    );
    insta::assert_snapshot!(
        "plan_pending",
        ladder
            .plan(&conn, &ApplyOptions::default())
            .expect("plan")
            .to_string()
    );
    ladder
        .apply(&conn, &ApplyOptions::default())
        .expect("apply");
    insta::assert_snapshot!(
        "status_current",
        ladder.status(&conn).expect("status").to_string()
    );
    insta::assert_snapshot!(
        "plan_nothing",
        ladder
            .plan(&conn, &ApplyOptions::default())
            .expect("plan")
            .to_string()
    );
}

#[test]
fn every_error_display() {
    let duck = || {
        duckdb::Error::DuckDBFailure(
            duckdb::ffi::Error::new(duckdb::ffi::DuckDBError),
            Some("Catalog Error: Table with name no_such_table does not exist!".into()),
        )
    };
    let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
    let drift = sysdb_schema::Drift {
        version: 3,
        name: "add_c3".into(),
        recorded: "0123456789abcdef".repeat(4),
        expected: "fedcba9876543210".repeat(4),
    };
    let errors = [
        Error::Invalid {
            at: "migrations/0003_c.sql".into(),
            problem: "follows version 1; versions must rise by exactly 1".into(),
        },
        Error::FileName {
            path: "migrations/27-add-owner.sql".into(),
        },
        Error::ReadDir {
            dir: "migrations".into(),
            cause: io(),
        },
        Error::ReadFile {
            path: "migrations/0027_add_owner.sql".into(),
            cause: io(),
        },
        Error::Bookkeeping {
            doing: "reading schema_version",
            cause: duck(),
        },
        Error::DatabaseNewer {
            database: 31,
            ladder: 27,
        },
        Error::MissingVersions {
            missing: vec![3, 4],
        },
        Error::Drift { drift: vec![drift] },
        Error::Step {
            version: 27,
            name: "add_owner".into(),
            file: None,
            statement: "ALTER TABLE jobs ADD COLUMN owner VARCHAR".into(),
            cause: Box::new(duck()),
        },
        Error::Step {
            version: 27,
            name: "add_owner".into(),
            file: Some("/app/migrations/0027_add_owner.sql".into()),
            statement: "ALTER TABLE jobs ADD COLUMN owner VARCHAR".into(),
            cause: Box::new(duck()),
        },
        Error::Checkpoint {
            version: 27,
            name: "add_owner".into(),
            cause: duck(),
        },
        Error::WalNotEmpty {
            version: 27,
            wal_size: "1.2 KiB".into(),
        },
    ];
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for t in &text {
        assert!(!t.ends_with('.'), "{t}");
    }
    insta::assert_snapshot!(text.join("\n"));
}

#[test]
fn ladders_read_from_a_folder_name_the_bad_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = camino::Utf8Path::from_path(dir.path()).expect("utf-8");
    fs_err::write(
        d.join("0001_create_jobs.sql"),
        "CREATE TABLE jobs (id INTEGER);",
    )
    .expect("write");
    fs_err::write(
        d.join("0002_add_owner.sql"),
        "ALTER TABLE jobs ADD COLUMN owner VARCHAR;",
    )
    .expect("write");
    fs_err::write(d.join("README.md"), "not a step").expect("write");
    let ladder = Ladder::from_dir(d).expect("valid folder");
    assert_eq!(ladder.top(), 2);
    assert_eq!(
        ladder.step(2).and_then(|s| s.origin()),
        Some(d.join("0002_add_owner.sql").as_path())
    );

    fs_err::write(d.join("0004_gap.sql"), "SELECT 1;").expect("write");
    let err = Ladder::from_dir(d).expect_err("gap");
    assert!(err.to_string().contains("0004_gap.sql"), "{err}");
    fs_err::remove_file(d.join("0004_gap.sql")).expect("remove");

    fs_err::write(d.join("0002_again.sql"), "SELECT 1;").expect("write");
    let err = Ladder::from_dir(d).expect_err("duplicate");
    assert!(err.to_string().contains("0002_"), "{err}");
    fs_err::remove_file(d.join("0002_again.sql")).expect("remove");

    fs_err::write(d.join("3-bad name.sql"), "SELECT 1;").expect("write");
    let err = Ladder::from_dir(d).expect_err("bad name");
    assert!(
        matches!(&err, Error::FileName { path } if path.ends_with("3-bad name.sql")),
        "{err:?}"
    );
}

/// A generated step: what it does, resolved against the tables that exist.
fn generated_ladder(kinds: &[(u8, usize, u8)], fail_at: Option<usize>) -> Ladder {
    let mut tables: Vec<String> = Vec::new();
    let mut steps = Vec::new();
    for (i, (kind, pick, n)) in kinds.iter().enumerate() {
        let v = u32::try_from(i + 1).expect("small");
        let sql = if Some(i) == fail_at {
            format!("CREATE TABLE half_{v} (x INTEGER);\nINSERT INTO half_{v} SELECT * FROM missing_{v};")
        } else if tables.is_empty() || kind % 4 == 0 {
            tables.push(format!("t{v}"));
            format!("CREATE TABLE t{v} (id INTEGER, v VARCHAR);")
        } else {
            let t = &tables[pick % tables.len()];
            match kind % 4 {
                1 => format!("INSERT INTO {t} (id, v) SELECT range, 'r' || range FROM range({n});"),
                2 => format!(
                    "ALTER TABLE {t} ADD COLUMN c{v} INTEGER;\nUPDATE {t} SET c{v} = id * {n};"
                ),
                _ => format!("UPDATE {t} SET v = v || '{v}' WHERE id % 2 = 0;"),
            }
        };
        steps.push((v, format!("step_{v}"), sql));
    }
    Ladder::new(steps).expect("valid generated ladder")
}

/// Every table's columns and sorted rows, and the recorded versions.
fn dump(conn: &Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare(
            "SELECT table_name, string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) \
             FROM information_schema.columns WHERE table_schema = 'main' AND table_name <> 'schema_version' \
             GROUP BY table_name ORDER BY table_name",
        )
        .expect("prepare");
    let tables: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<duckdb::Result<_>>()
        .expect("rows");
    let mut out = Vec::new();
    for (table, columns) in tables {
        let rows: Option<String> = conn
            .query_row(
                &format!("SELECT string_agg(CAST(x AS VARCHAR), '; ' ORDER BY CAST(x AS VARCHAR)) FROM {table} AS x"),
                [],
                |r| r.get(0),
            )
            .expect("rows");
        out.push(format!("{table}({columns}): {}", rows.unwrap_or_default()));
    }
    let versions: Option<String> = conn
        .query_row(
            "SELECT string_agg(CAST(version AS VARCHAR) || ' ' || name, ', ' ORDER BY version) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .unwrap_or(None);
    out.push(format!("versions: {}", versions.unwrap_or_default()));
    out
}

fn kinds() -> impl Strategy<Value = Vec<(u8, usize, u8)>> {
    proptest::collection::vec((any::<u8>(), any::<usize>(), 0u8..20), 1..=30)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn applying_in_chunks_equals_applying_at_once(
        kinds in kinds(),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..4),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let ladder = generated_ladder(&kinds, None);
        let top = ladder.top();

        let once = dir.path().join("once.duckdb");
        let conn = open(&once);
        ladder.apply(&conn, &ApplyOptions::default()).expect("apply at once");
        let expected = dump(&conn);
        drop(conn);

        let chunked = dir.path().join("chunked.duckdb");
        let mut targets: Vec<u32> = cuts.iter().map(|i| u32::try_from(i.index(top as usize) + 1).expect("small")).collect();
        targets.push(top);
        targets.sort_unstable();
        for target in targets {
            let conn = open(&chunked);
            let options = ApplyOptions { target: Some(target), ..ApplyOptions::default() };
            ladder.apply(&conn, &options).expect("apply chunk");
            prop_assert_eq!(ladder.status(&conn).expect("status").current, target);
            close_without_checkpoint(conn);
            prop_assert!(!wal(&chunked).exists());
        }
        let conn = open(&chunked);
        prop_assert_eq!(dump(&conn), expected);
    }

    #[test]
    fn a_failing_step_leaves_exactly_the_version_before_it(
        kinds in kinds(),
        fail in any::<proptest::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let fail_at = fail.index(kinds.len());
        let ladder = generated_ladder(&kinds, Some(fail_at));
        let before = u32::try_from(fail_at).expect("small");

        let reference = dir.path().join("reference.duckdb");
        let conn = open(&reference);
        let options = ApplyOptions { target: Some(before), ..ApplyOptions::default() };
        ladder.apply(&conn, &options).expect("apply up to the failing step");
        let expected = dump(&conn);
        drop(conn);

        let path = dir.path().join("failing.duckdb");
        let conn = open(&path);
        let err = ladder.apply(&conn, &ApplyOptions::default()).expect_err("the step fails");
        let failed_at_the_step = matches!(err, Error::Step { version, .. } if version == before + 1);
        prop_assert!(failed_at_the_step, "{:?}", err);
        prop_assert_eq!(ladder.status(&conn).expect("status").current, before);
        drop(conn);
        let conn = open(&path);
        prop_assert_eq!(dump(&conn), expected);
    }
}

#[test]
fn an_embedded_ladder_is_the_folder_s_ladder_and_names_its_bad_files() {
    let embedded = sysdb_schema::embed_migrations!("$CARGO_MANIFEST_DIR/../../fixtures/migrations")
        .expect("valid");
    let read = Ladder::from_dir(sysdb_scenarios::manifest_dir!().join("../../fixtures/migrations"))
        .expect("valid");
    let shape = |l: &Ladder| {
        l.steps()
            .iter()
            .map(|s| (s.version(), s.name().to_owned(), s.checksum().to_owned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&embedded), shape(&read));
    assert_eq!(
        embedded
            .step(1)
            .and_then(|s| s.origin())
            .map(|p| p.as_str()),
        Some("0001_create_jobs.sql")
    );

    let gap = sysdb_schema::embed_migrations!("$CARGO_MANIFEST_DIR/tests/embedded/gap")
        .expect_err("a gap");
    assert_eq!(
        gap.to_string(),
        "invalid migration ladder: 0003_c.sql: follows version 1; versions must rise by exactly 1"
    );
    let bad = sysdb_schema::embed_migrations!("$CARGO_MANIFEST_DIR/tests/embedded/bad-name")
        .expect_err("a bad name");
    assert!(
        matches!(&bad, Error::FileName { path } if path == "0002-two.sql"),
        "{bad:?}"
    );
}

#[test]
fn the_next_file_name_follows_the_ladder_s_files() {
    let read = Ladder::from_dir(sysdb_scenarios::manifest_dir!().join("../../fixtures/migrations"))
        .expect("valid");
    assert_eq!(
        read.next_file_name("add_notes").expect("a name"),
        "0028_add_notes.sql"
    );
    assert_eq!(
        Ladder::default()
            .next_file_name("create_jobs")
            .expect("a name"),
        "0001_create_jobs.sql"
    );
    let err = read
        .next_file_name("add-notes")
        .expect_err("not an identifier");
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
}
