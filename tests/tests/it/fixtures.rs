//! Every fixture, opened by `SystemDb::open` in a copy of its folder, must
//! do what its manifest says; and a plain DuckDB open must still fail the
//! way the manifest recorded.

use std::collections::BTreeSet;

use camino::{Utf8Path, Utf8PathBuf};
use duckdb::Connection;
use sysdb::{Error, Ladder, OpenOptions, Paths, SystemDb};
use sysdb_errclass::classify_error;
use sysdb_scenarios::ladders::job_count;
use sysdb_scenarios::{describe, folder_digest, redacted, Manifest, Outcome, GENERATED};

fn fixtures() -> Utf8PathBuf {
    sysdb_scenarios::manifest_dir!()
        .parent()
        .expect("workspace root")
        .join("fixtures")
}

/// The scenarios in `fixtures/`: every folder with a manifest.
fn scenarios() -> BTreeSet<String> {
    fs_err::read_dir(fixtures())
        .expect("list fixtures/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("manifest.json").exists())
        .map(|p| {
            p.file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn manifest(scenario: &str) -> Manifest {
    let path = fixtures().join(scenario).join("manifest.json");
    let text = fs_err::read_to_string(&path).expect("read manifest");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A copy of the fixture's files in `<tmp>/data/state`.
fn copy_fixture(manifest: &Manifest, tmp: &Utf8Path) -> Paths {
    let state = tmp.join("data").join("state");
    fs_err::create_dir_all(&state).expect("state folder");
    let source = fixtures().join(&manifest.scenario);
    for name in &manifest.files {
        fs_err::copy(source.join(name), state.join(name)).expect("copy fixture file");
    }
    Paths::from_data_dir(tmp.join("data")).expect("paths")
}

/// What a plain DuckDB open of a copy does, described as manifests do.
fn plain_open(manifest: &Manifest) -> String {
    let tmp = tempfile::tempdir().expect("temp dir");
    let paths = copy_fixture(manifest, Utf8Path::from_path(tmp.path()).expect("utf-8"));
    match Connection::open_with_flags(
        paths.db(),
        sysdb::Connector::config(&sysdb::DuckDbConnector).expect("config"),
    ) {
        Ok(_) => "opens".to_owned(),
        Err(e) => describe(classify_error(&e)),
    }
}

/// The suffix of a quarantined name after `broken.<stamp>[-n]`.
fn quarantine_suffix(name: &str) -> String {
    let rest = name
        .split_once(".broken.")
        .map(|(_, r)| r)
        .expect("a quarantined name");
    let rest = &rest[16..];
    let rest = rest.trim_start_matches(|c: char| c == '-' || c.is_ascii_digit());
    rest.to_owned()
}

fn seed_version(conn: &Connection) -> u32 {
    u32::try_from(sysdb_scenarios::ladders::seed_version(conn)).expect("a version")
}

/// Open a copy of the fixture with sysdb, check the manifest's
/// expectations, and snapshot the report (or, for a refusal, the error).
fn run(scenario: &str) {
    let manifest = manifest(scenario);
    assert_eq!(manifest.generated, GENERATED);
    assert_eq!(manifest.scenario, scenario);
    let mut on_disk: Vec<String> = fs_err::read_dir(fixtures().join(scenario))
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "manifest.json")
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, manifest.files, "the fixture's files");
    assert_eq!(
        plain_open(&manifest),
        manifest.plain_open,
        "the pinned DuckDB no longer fails this way on the fixture"
    );

    let expect = &manifest.expect;
    let ladder = Ladder::from_dir(fixtures().join("migrations")).expect("fixture migrations");
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().to_string_lossy().into_owned();
    let paths = copy_fixture(&manifest, Utf8Path::from_path(tmp.path()).expect("utf-8"));
    let state = paths.dir().to_owned();
    let before = folder_digest(&state);
    let connector = |path: &Utf8Path| expect.connect(path);
    let result = SystemDb::open_with(&paths, &ladder, &OpenOptions::default(), &connector);
    // The manifest says the outcome in the library's own words and JSON.
    let came_to = match &result {
        Ok(db) => db.report().outcome(),
        Err(e) => e.outcome(),
    };
    assert_eq!(
        serde_json::to_value(&came_to).expect("outcome JSON"),
        serde_json::to_value(&expect.outcome).expect("manifest JSON"),
        "outcome: {}",
        result
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default()
    );

    if let Outcome::Refused { .. } = &expect.outcome {
        let err = match result {
            Ok(_) => panic!("opened, but the manifest expects a refusal"),
            Err(e) => e,
        };
        assert!(err.report().is_none(), "a refusal changed files: {err:?}");
        match &err {
            Error::Open { class, .. } => {
                assert_eq!(Some(class.as_str()), expect.class.as_deref(), "{err}");
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert_eq!(folder_digest(&state), before, "a file changed");
        let text = serde_json::Value::String(err.to_string());
        insta::assert_snapshot!(scenario, redacted(text, &root));
        return;
    }

    let db = result.unwrap_or_else(|e| panic!("{e}"));
    let report = db.report().clone();
    assert_eq!(
        report.wal_at_open.is_some(),
        expect.wal_at_open,
        "WAL at open"
    );
    assert_eq!(Some(seed_version(db.conn())), expect.version, "version");
    assert_eq!(Some(job_count(db.conn())), expect.jobs, "jobs");
    for (table, rows) in &expect.rows {
        let count: i64 = db
            .conn()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{table}: {e}"));
        assert_eq!(count, *rows, "rows of {table}");
    }
    let kept = report
        .restored
        .as_ref()
        .and_then(|r| r.log.as_ref())
        .and_then(|l| l.commits_kept);
    if expect.commits_kept.is_some() {
        assert_eq!(kept, expect.commits_kept, "commits of the log kept");
    }
    drop(db);
    assert!(
        !state.join("system.duckdb.wal").exists(),
        "a WAL is left beside the database"
    );
    match &expect.outcome {
        Outcome::Healthy | Outcome::Migrated => {
            assert!(report.error.is_none(), "{:?}", report.error);
            assert!(report.quarantined.is_empty(), "set aside files");
        }
        Outcome::Recovered { .. } => {
            let met = report.error.as_ref().expect("an error was met");
            assert_eq!(Some(met.class), expect.class.as_deref(), "class");
            let mut set_aside: Vec<String> = report
                .quarantined
                .iter()
                .map(|m| quarantine_suffix(m.to.as_str()))
                .collect();
            set_aside.sort();
            let mut expected = expect.quarantined.clone();
            expected.sort();
            assert_eq!(set_aside, expected, "set aside");
            // Nothing was lost: every file the crash left is still there,
            // byte for byte, under its own name or in quarantine. Three
            // exceptions: the pre-migrate snapshot is replaced by the new
            // migration's, after a crash in the middle of a checkpoint
            // DuckDB's own first open rewrites the WAL, and where its
            // replay of an index fails, it has written a free block of the
            // database file first.
            let after = folder_digest(&state);
            let kept: BTreeSet<&String> = after.values().collect();
            for (file, digest) in &before {
                let rewritten = (expect.duckdb_rewrites_wal && file.contains(".wal"))
                    || (expect.duckdb_writes_db && file == "system.duckdb");
                if file.ends_with(".pre-migrate") || rewritten {
                    continue;
                }
                assert!(kept.contains(digest), "{file} is gone");
            }
        }
        Outcome::Refused { .. } => unreachable!("returned above"),
    }
    let value = serde_json::to_value(&report).expect("serialise report");
    // A failing step names its file, in this checkout's fixtures folder.
    let text = redacted(value, &root).replace(fixtures().as_str(), "[fixtures]");
    insta::assert_snapshot!(scenario, text);
}

macro_rules! fixture_tests {
    ($($test:ident => $scenario:literal,)*) => {
        $(
            #[test]
            fn $test() {
                run($scenario);
            }
        )*
        /// The scenarios that have a test above.
        const TESTED: &[&str] = &[$($scenario),*];
    };
}

fixture_tests! {
    wal_replay_ddl => "wal-replay-ddl",
    wal_checksum => "wal-checksum",
    wal_undecodable => "wal-undecodable",
    wal_torn_tail => "wal-torn-tail",
    mid_ladder_kill => "mid-ladder-kill",
    corrupt_block => "corrupt-block",
    truncated_main => "truncated-main",
    not_duckdb => "not-duckdb",
    empty_file => "empty-file",
    wal_replay_no_snapshot => "wal-replay-no-snapshot",
    stale_snapshot => "stale-snapshot",
    sidecars => "sidecars",
    wal_rows_before_ddl => "wal-rows-before-ddl",
    wal_flip_last_of_20 => "wal-flip-last-of-20",
    check_trim_add_column => "check-trim-add-column",
    generated_rename_column => "generated-rename-column",
    check_enum_add_column => "check-enum-add-column",
    default_enum_add_column => "default-enum-add-column",
    set_type_using_levenshtein => "set-type-using-levenshtein",
    default_now_if_not_exists => "default-now-if-not-exists",
    wal_replay_out_of_memory => "wal-replay-out-of-memory",
    set_type_enum_other_schema => "set-type-enum-other-schema",
    set_type_struct_of_enum => "set-type-struct-of-enum",
    generated_enum_add_column => "generated-enum-add-column",
    check_enum_add_primary_key => "check-enum-add-primary-key",
    check_enum_comment_on_column => "check-enum-comment-on-column",
    json_check_add_column => "json-check-add-column",
    json_set_type => "json-set-type",
    icu_timestamptz_to_date => "icu-timestamptz-to-date",
    torn_foreign_migration => "torn-foreign-migration",
}

#[test]
fn every_fixture_has_a_test() {
    let tested: BTreeSet<String> = TESTED.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(scenarios(), tested);
}

#[test]
fn quarantine_suffixes_are_read_after_the_stamp() {
    assert_eq!(
        quarantine_suffix("/s/system.duckdb.broken.20261127T101503Z"),
        ""
    );
    assert_eq!(
        quarantine_suffix("/s/system.duckdb.broken.20261127T101503Z-2.wal"),
        ".wal"
    );
    assert_eq!(
        quarantine_suffix("/s/system.duckdb.broken.20261127T101503Z.wal.checkpoint"),
        ".wal.checkpoint"
    );
}
