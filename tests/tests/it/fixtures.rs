//! Every fixture, opened by `SystemDb::open` in a copy of its folder, must
//! do what its manifest says; and a plain DuckDB open must still fail the
//! way the manifest recorded.

use std::collections::BTreeSet;

use camino::{Utf8Path, Utf8PathBuf};
use duckdb::Connection;
use sysdb::{Error, Ladder, OpenOptions, Paths, SystemDb};
use sysdb_errclass::classify_error;
use sysdb_tests::{describe, folder_digest, Manifest, GENERATED};

fn fixtures() -> Utf8PathBuf {
    Utf8Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("fixtures")
}

fn manifests() -> Vec<Manifest> {
    let mut out: Vec<Manifest> = fs_err::read_dir(fixtures())
        .expect("list fixtures/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("manifest.json").exists())
        .map(|p| {
            let text = fs_err::read_to_string(p.join("manifest.json")).expect("read manifest");
            serde_json::from_str(&text).expect("parse manifest")
        })
        .collect();
    out.sort_by(|a, b| a.scenario.cmp(&b.scenario));
    out
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
    match Connection::open_with_flags(paths.db(), sysdb::config().expect("config")) {
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

fn count_jobs(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
        .expect("count jobs")
}

fn seed_version(conn: &Connection) -> u32 {
    conn.query_row(
        "SELECT version FROM schema_version ORDER BY applied_at DESC LIMIT 1",
        [],
        |r| r.get(0),
    )
    .expect("read version")
}

/// Open the fixture with sysdb and check the manifest's expectations;
/// return a line for the summary.
fn check(manifest: &Manifest, ladder: &Ladder) -> String {
    let name = &manifest.scenario;
    let expect = &manifest.expect;
    let tmp = tempfile::tempdir().expect("temp dir");
    let paths = copy_fixture(manifest, Utf8Path::from_path(tmp.path()).expect("utf-8"));
    let state = paths.dir().to_owned();
    let before = folder_digest(&state);
    let result = SystemDb::open(&paths, ladder, &OpenOptions::default());

    match expect.outcome.as_str() {
        "refused" => {
            let err = match result {
                Ok(_) => panic!("{name}: opened, but the manifest expects a refusal"),
                Err(e) => e,
            };
            match &err {
                Error::Open { class, .. } => assert_eq!(
                    Some(class.as_str()),
                    expect.class.as_deref(),
                    "{name}: {err}"
                ),
                other => panic!("{name}: unexpected error {other:?}"),
            }
            assert_eq!(folder_digest(&state), before, "{name}: a file changed");
            format!(
                "{name}: refused ({})",
                expect.class.as_deref().unwrap_or("?")
            )
        }
        outcome @ ("opened" | "recovered") => {
            let db = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            let report = db.report().clone();
            assert_eq!(
                report.wal_at_open.is_some(),
                expect.wal_at_open,
                "{name}: WAL at open"
            );
            assert_eq!(
                Some(seed_version(db.conn())),
                expect.version,
                "{name}: version"
            );
            assert_eq!(Some(count_jobs(db.conn())), expect.jobs, "{name}: jobs");
            drop(db);
            let after = folder_digest(&state);
            if outcome == "opened" {
                assert!(report.error.is_none(), "{name}: {:?}", report.error);
                assert!(report.quarantined.is_empty(), "{name}: set aside files");
            } else {
                let met = report.error.as_ref().expect("an error was met");
                assert_eq!(Some(met.class), expect.class.as_deref(), "{name}: class");
                let restored = report.restored.as_ref().expect("restored");
                let source = serde_json::to_value(restored.source).expect("source");
                assert_eq!(
                    source.as_str(),
                    expect.restored_from.as_deref(),
                    "{name}: restored from"
                );
                let mut set_aside: Vec<String> = report
                    .quarantined
                    .iter()
                    .map(|m| quarantine_suffix(m.to.as_str()))
                    .collect();
                set_aside.sort();
                let mut expected = expect.quarantined.clone();
                expected.sort();
                assert_eq!(set_aside, expected, "{name}: set aside");
                // Nothing was lost: every file the crash left is still there,
                // byte for byte, under its own name or in quarantine. Two
                // exceptions: the pre-migrate snapshot is replaced by the new
                // migration's, and after a crash in the middle of a
                // checkpoint DuckDB's own first open rewrites the WAL.
                let rewritten = expect.duckdb_rewrites_wal;
                let kept: BTreeSet<&String> = after.values().collect();
                for (file, digest) in &before {
                    if file.ends_with(".pre-migrate") || (rewritten && file.contains(".wal")) {
                        continue;
                    }
                    assert!(kept.contains(digest), "{name}: {file} is gone");
                }
            }
            assert!(
                !state.join("system.duckdb.wal").exists(),
                "{name}: a WAL is left beside the database"
            );
            let quarantined = report.quarantined.len();
            format!(
                "{name}: {outcome}, version {}, {} jobs, {quarantined} files set aside",
                expect.version.unwrap_or(0),
                expect.jobs.unwrap_or(0)
            )
        }
        other => panic!("{name}: unknown outcome {other}"),
    }
}

#[test]
fn every_fixture_opens_the_way_its_manifest_says() {
    let ladder = Ladder::from_dir(fixtures().join("migrations")).expect("fixture migrations");
    let manifests = manifests();
    assert!(
        manifests.len() >= 11,
        "only {} fixtures; run `cargo xtask fixtures`",
        manifests.len()
    );
    let mut summary = Vec::new();
    for manifest in &manifests {
        assert_eq!(manifest.generated, GENERATED);
        let dir = fixtures().join(&manifest.scenario);
        let mut on_disk: Vec<String> = fs_err::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n != "manifest.json")
            .collect();
        on_disk.sort();
        assert_eq!(on_disk, manifest.files, "{}: files", manifest.scenario);
        assert_eq!(
            plain_open(manifest),
            manifest.plain_open,
            "{}: the pinned DuckDB no longer fails this way",
            manifest.scenario
        );
        summary.push(check(manifest, &ladder));
    }
    println!("{}", summary.join("\n"));
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
