//! Corruption: random bit flips, truncations, extensions and zeroed pages in
//! the database, its write-ahead log, the snapshot and the intent marker,
//! in any combination. `SystemDb::open` and `sysdb check` must never panic
//! or hang, `check` must change nothing and say what the open then does,
//! and the open must either succeed with every row or fail with a
//! classified error, keeping every copy of the data it could not use.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use sysdb_scenarios::child::CHECKPOINTS_OFF;
use sysdb_scenarios::ladders::write_migrations;
use sysdb_scenarios::{folder_digest, Tally};

use super::{
    class_of, finish, ladder_to, long, run, seed, seeded, ChildOptions, End, Job, PathsOf,
    StateDir, TOP,
};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Which file a damage hits.
#[derive(Debug, Clone, Copy)]
enum Target {
    Db,
    Wal,
    Snapshot,
    Marker,
}

/// One damage; positions are fractions of the file's length.
#[derive(Debug, Clone)]
enum Damage {
    Flip {
        at: f64,
        bit: u8,
    },
    Truncate {
        to: f64,
    },
    /// `len` pseudo-random bytes (from `seed`) appended.
    Extend {
        len: usize,
        seed: u64,
    },
    ZeroPage {
        at: f64,
    },
}

#[derive(Debug, Clone)]
struct Case {
    /// 0: at the top with commits waiting in a log that replays; 1: killed
    /// right after committing step 4, which does not replay; 2: at version
    /// 1 with a snapshot of every row, steps 2 to 6 pending.
    template: usize,
    damages: Vec<(Target, Damage)>,
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0.0..1.0f64, 0..8u8).prop_map(|(at, bit)| Damage::Flip { at, bit }),
        (0.0..1.0f64).prop_map(|to| Damage::Truncate { to }),
        (1..4096usize, any::<u64>()).prop_map(|(len, seed)| Damage::Extend { len, seed }),
        (0.0..1.0f64).prop_map(|at| Damage::ZeroPage { at }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let target = prop_oneof![
        Just(Target::Db),
        Just(Target::Wal),
        Just(Target::Snapshot),
        Just(Target::Marker)
    ];
    (
        0..3usize,
        proptest::collection::vec((target, damage()), 1..=3),
    )
        .prop_map(|(template, damages)| Case { template, damages })
}

/// Apply a damage; `false` when the file does not exist.
fn apply(path: &Utf8Path, damage: &Damage) -> bool {
    let Ok(mut bytes) = fs_err::read(path) else {
        return false;
    };
    let at = |f: f64| ((bytes.len() as f64 * f) as usize).min(bytes.len().saturating_sub(1));
    match damage {
        Damage::Flip { at: f, bit } => {
            if !bytes.is_empty() {
                let i = at(*f);
                bytes[i] ^= 1 << bit;
            }
        }
        Damage::Truncate { to } => bytes.truncate(at(*to)),
        Damage::Extend { len, seed } => {
            let mut x = seed | 1;
            bytes.extend((0..*len).map(|_| {
                // xorshift64: enough to look like garbage, and repeatable.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            }));
        }
        Damage::ZeroPage { at: f } => {
            let start = at(*f) / 4096 * 4096;
            let end = (start + 4096).min(bytes.len());
            bytes[start..end].fill(0);
        }
    }
    fs_err::write(path, bytes).expect("write damaged file");
    true
}

/// The copies of the data in `state` that read with every seeded row;
/// `None` when DuckDB took the reading process down.
fn readable(state: &StateDir, digest: &str) -> Result<Option<Vec<String>>, String> {
    let job = Job {
        data: state.data.clone(),
        digests: true,
        ..Job::default()
    };
    match run(&job, TIMEOUT) {
        End::Finished(outcome) => Ok(Some(
            outcome
                .digests
                .into_iter()
                .filter(|(_, d)| d == digest)
                .map(|(name, _)| name)
                .collect(),
        )),
        End::Died { .. } => Ok(None),
        End::TimedOut => Err(format!("reading the copies took over {TIMEOUT:?}")),
    }
}

/// The `sysdb` binary cargo built beside this test binary.
fn sysdb_binary() -> Utf8PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target folder")
        .join("sysdb");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo test --workspace` (or `cargo build -p sysdb-cli`)",
        path.display()
    );
    Utf8PathBuf::try_from(path).expect("utf-8 path")
}

/// Run `sysdb check` on `state`; its exit code.
fn check(state: &StateDir, migrations: &Utf8Path) -> Result<i32, String> {
    let mut child = std::process::Command::new(sysdb_binary())
        .args(["check", "--json", "--data-dir"])
        .arg(&state.data)
        .arg("--migrations")
        .arg(migrations)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn sysdb check");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status
                .code()
                .ok_or_else(|| format!("sysdb check died: {status}"));
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("sysdb check did not finish within {TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The commits template 0 leaves in its log, and the rows of each.
const LOGGED_COMMITS: u64 = 5;
const ROWS_PER_COMMIT: u64 = 100;

struct Templates {
    folders: [StateDir; 3],
    /// Template 0's log, and where each of its commits ends.
    wal: Vec<u8>,
    commit_ends: Vec<u64>,
    digest: String,
    migrations: Utf8PathBuf,
    _scratch: tempfile::TempDir,
}

fn templates() -> Templates {
    let (start, digest) = seeded(1);
    // At the top, then commits that wait in the log: checkpoints off, and
    // the connection simply dropped.
    let at_top = start.copy();
    let paths = at_top.paths();
    drop(
        sysdb::SystemDb::open(&paths, &ladder_to(TOP), &sysdb::OpenOptions::default())
            .expect("migrate to the top"),
    );
    let conn = duckdb::Connection::open_with_flags(
        paths.db(),
        sysdb::Connector::config(&sysdb::DuckDbConnector).expect("config"),
    )
    .expect("open");
    conn.execute_batch(CHECKPOINTS_OFF)
        .expect("checkpoints off");
    let mut commit_ends = Vec::new();
    for c in 0..LOGGED_COMMITS {
        conn.execute_batch(&format!(
            "INSERT INTO events SELECT range, range % 100, now() FROM range({}, {});",
            c * ROWS_PER_COMMIT,
            (c + 1) * ROWS_PER_COMMIT
        ))
        .expect("commit into the log");
        commit_ends.push(fs_err::metadata(paths.wal()).expect("the log").len());
    }
    drop(conn);
    let wal = fs_err::read(paths.wal()).expect("the log");
    assert!(paths.wal().exists(), "no write-ahead log");
    let crashed = super::kills::crashed_in_step_4(&start);
    let pending = start.copy();
    sysdb_snapshot::take(&sysdb_snapshot::ClosedDb::assume_closed(
        pending.paths().files().clone(),
    ))
    .expect("snapshot every row");
    let scratch = tempfile::tempdir().expect("temp dir");
    let migrations_dir = Utf8PathBuf::try_from(scratch.path().join("migrations")).expect("utf-8");
    write_migrations(&ladder_to(TOP), &migrations_dir).expect("the migrations folder");
    Templates {
        folders: [at_top, crashed, pending],
        wal,
        commit_ends,
        digest,
        migrations: migrations_dir,
        _scratch: scratch,
    }
}

/// One corrupted folder: `check`, then the open, and what both must hold.
fn one(templates: &Templates, case: &Case, tally: &mut Tally) -> Result<(), String> {
    let state = templates.folders[case.template].copy();
    let paths = state.paths();
    let mut db_damaged = false;
    let mut copies_damaged = false;
    for (target, damage) in &case.damages {
        let path = match target {
            Target::Db => paths.db().to_owned(),
            Target::Wal => paths.wal(),
            Target::Snapshot => paths.snapshot(),
            Target::Marker => paths.marker(),
        };
        if apply(&path, damage) {
            tally.corruptions += 1;
            db_damaged |= matches!(target, Target::Db);
            copies_damaged |= matches!(target, Target::Db | Target::Snapshot);
        }
    }
    // Template 0 with only its log (or marker) damaged: every commit that
    // ends before the first damaged byte of the log replays, and must be
    // in the database the open goes on with.
    let must_keep = (case.template == 0 && !copies_damaged).then(|| {
        let now = fs_err::read(paths.wal()).unwrap_or_default();
        let first_damaged = templates
            .wal
            .iter()
            .zip(&now)
            .position(|(a, b)| a != b)
            .unwrap_or(templates.wal.len().min(now.len())) as u64;
        let commits = templates
            .commit_ends
            .iter()
            .filter(|end| **end <= first_damaged)
            .count() as u64;
        commits * ROWS_PER_COMMIT
    });
    tally.scenarios += 1;
    let before = folder_digest(&state.state());
    let readable_before = match readable(&state, &templates.digest)? {
        Some(names) => names,
        None => {
            tally.skipped += 1;
            return Ok(());
        }
    };

    let verdict = check(&state, &templates.migrations)?;
    if folder_digest(&state.state()) != before {
        return Err("sysdb check changed a file".to_owned());
    }
    if ![0, 10, 11, 12].contains(&verdict) {
        return Err(format!("sysdb check exited {verdict}"));
    }

    let job = Job {
        data: state.data.clone(),
        options: ChildOptions {
            probe: Some(super::faults::probe_with_this_binary()),
            ..ChildOptions::default()
        },
        ..Job::default()
    };
    let outcome = match run(&job, TIMEOUT) {
        End::Finished(outcome) => outcome,
        End::Died { status, tail } => return Err(format!("the open died ({status}):\n{tail}")),
        End::TimedOut => return Err(format!("the open did not finish within {TIMEOUT:?}")),
    };
    let mut class = class_of(&outcome);
    // The open reads `schema_version` alone: damage in other data shows
    // only when that data is read. Such an open is right when the database
    // itself did not read whole before it.
    let rows_damaged = outcome.ok && outcome.digest.as_deref() != Some(&templates.digest);
    if rows_damaged {
        let db_name = paths.db().file_name().unwrap_or_default();
        let db_read_whole = readable_before.iter().any(|n| n == db_name);
        if !db_damaged || db_read_whole {
            return Err(format!(
                "opened without every seeded row ({:?} rows; copies that read with every row before: {readable_before:?}); the open's report: {}",
                outcome.rows,
                outcome.report.as_ref().map(|r| r.to_string()).unwrap_or_default()
            ));
        }
        class.push_str(match outcome.digest {
            None => ", rows unreadable (damage in data the open does not read)",
            Some(_) => ", rows differ (damage DuckDB did not detect)",
        });
    }
    if class.contains("unknown") {
        tally
            .unknown
            .push(outcome.error.clone().unwrap_or_default());
    }
    *tally.classes.entry(class).or_default() += 1;

    if outcome.ok && outcome.version != Some(TOP) {
        return Err(format!("opened at version {:?}", outcome.version));
    }
    if let Some(must_keep) = must_keep {
        let events = outcome.events.map_or(0, |n| u64::try_from(n).unwrap_or(0));
        if !outcome.ok || events < must_keep {
            return Err(format!(
                "{events} logged rows kept, but the {must_keep} rows of the commits before the first damaged byte of the log replay; the open: {}",
                outcome
                    .report
                    .as_ref()
                    .map_or(outcome.error.clone().unwrap_or_default(), ToString::to_string)
            ));
        }
        tally.rows_kept += events;
        tally.rows_lost += (LOGGED_COMMITS * ROWS_PER_COMMIT).saturating_sub(events);
    }
    if (!outcome.ok || rows_damaged) && !readable_before.is_empty() {
        // The open could not use the data, or opened a database whose data
        // is damaged; some copy of it must still read.
        match readable(&state, &templates.digest)? {
            Some(names) if !names.is_empty() => {}
            Some(_) => {
                return Err(format!(
                    "the open failed and no copy of every row reads any more (before it: {readable_before:?}); the error: {}",
                    outcome.error.as_deref().unwrap_or("?")
                ))
            }
            None => tally.skipped += 1,
        }
    }
    let recovered = outcome
        .report
        .as_ref()
        .is_some_and(|r| !r["restored"].is_null() || !r["recovery_resumed"].is_null());
    let migrated = outcome
        .report
        .as_ref()
        .is_some_and(|r| !r["migration"].is_null());
    let expected = match (outcome.ok, recovered, migrated) {
        (false, _, _) => 12,
        (true, true, _) => 11,
        (true, false, true) => 10,
        (true, false, false) => 0,
    };
    if verdict != expected {
        return Err(format!(
            "sysdb check said {verdict}, but the open then did {expected}: {}",
            outcome.error.as_deref().unwrap_or("opened")
        ));
    }
    Ok(())
}

#[test]
fn corrupted_files_never_panic_hang_or_lose_the_last_copy() {
    let seed = seed();
    let tally = RefCell::new(Tally::new("corruption", seed, long()));
    let started = Instant::now();
    let templates = templates();
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases: if long() { 400 } else { 20 },
        failure_persistence: None,
        max_shrink_iters: 32,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let result = runner.run(&case(), |case| {
        one(&templates, &case, &mut tally.borrow_mut()).map_err(TestCaseError::fail)
    });
    let mut tally = tally.into_inner();
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, case)) => tally
            .failures
            .push(format!("{reason}; the smallest failing case: {case:?}")),
        Err(e) => tally.failures.push(e.to_string()),
    }
    tally.millis = started.elapsed().as_millis() as u64;
    finish(&tally);
}
