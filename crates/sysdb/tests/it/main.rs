//! The open flow end to end: the seed service's four tests ported one to
//! one (`seed`), the same scenarios on real files made by real processes
//! (`real`), and the helpers they share.
//!
//! Some tests re-run this binary as a child process (see [`child`]): to
//! hold DuckDB's lock, to be killed in the middle of a migration step, or
//! to race another process to the open.

mod real;
mod seed;

pub(crate) use sysdb_scenarios::{folder_digest, StateDir};

use std::io::{BufRead, BufReader, Write};
use std::process::Child;

use camino::Utf8Path;
use sysdb::{OpenReport, Paths};
use sysdb_scenarios::child::{child_main, test_child, test_child_args, Crash, LockHolder};
pub(crate) use sysdb_scenarios::ladders::{job_count, seed_version};
use sysdb_scenarios::ladders::{jobs_ladder, JOBS_TOP};
use sysdb_schema::Ladder;

/// The ladder's top, as in the seed service.
pub(crate) const SCHEMA_VERSION: u32 = JOBS_TOP;

/// The service's ladder up to `top`: the seed service's
/// (`sysdb_scenarios::ladders::jobs_ladder`), whose step 27 creates an enum
/// in another schema and moves `jobs.state` to it, which DuckDB 2.0
/// commits but cannot replay from the write-ahead log, not even through
/// ATTACH: "Type with name job_state does not exist!".
pub(crate) fn ladder_to(top: u32) -> Ladder {
    jobs_ladder(top)
}

/// The whole ladder.
pub(crate) fn ladder() -> Ladder {
    ladder_to(SCHEMA_VERSION)
}

/// `dir.paths()`: the `sysdb::Paths` of a kit state folder.
pub(crate) trait PathsOf {
    fn paths(&self) -> Paths;
}

impl PathsOf for StateDir {
    fn paths(&self) -> Paths {
        Paths::from_data_dir(&self.data).expect("paths")
    }
}

/// An error as DuckDB's connect would return it.
pub(crate) fn duck_error(message: &str) -> duckdb::Error {
    duckdb::Error::DuckDBFailure(
        duckdb::ffi::Error::new(duckdb::ffi::DuckDBError),
        Some(message.to_owned()),
    )
}

/// The quarantined files in `state`, split into databases and WALs.
pub(crate) fn broken(state: &Utf8Path) -> (Vec<String>, Vec<String>) {
    let mut all: Vec<String> = fs_err::read_dir(state)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("system.duckdb.broken."))
        .collect();
    all.sort();
    all.into_iter().partition(|n| !n.ends_with(".wal"))
}

/// The report as JSON with what varies between runs replaced: the temp
/// folder, quarantine stamps, timings, ages, times and pids.
pub(crate) fn redacted(report: &OpenReport, dir: &StateDir) -> String {
    let value = serde_json::to_value(report).expect("serialise report");
    sysdb_scenarios::redacted(value, &dir.root().to_string_lossy())
}

// ---------------------------------------------------------------------------
// Child processes.

/// The one test a child runs.
const CHILD_TEST: &str = "child";

/// Spawn this test binary as a child opening the data folder `data`
/// through sysdb (see [`child`]).
pub(crate) fn spawn_opener(data: &Utf8Path) -> Child {
    test_child(CHILD_TEST, &["open".to_owned(), data.to_string()])
        .spawn()
        .expect("spawn child")
}

/// A real process holds a plain DuckDB connection to `db`, and so DuckDB's
/// own lock on it.
pub(crate) fn hold_duckdb_lock(db: &Utf8Path) -> LockHolder {
    LockHolder::start(db, |args| test_child(CHILD_TEST, &args)).expect("a lock holder")
}

/// A real process applies step 27 the way the ladder does (the step and
/// its `schema_version` row in one transaction) with every checkpoint
/// off, and is killed by SIGKILL after its commit.
pub(crate) fn crash_in_step_27(db: &Utf8Path) {
    let step = ladder().step(27).expect("step 27").transaction_sql();
    Crash::killed(db, vec![step])
        .run(|args| test_child(CHILD_TEST, &args))
        .expect("a crash after step 27's commit");
}

/// Read the child's stdout up to a line ending with `word`; return the
/// rest of that line.
pub(crate) fn wait_for(child: &mut Child, word: &str) -> String {
    let stdout = child.stdout.as_mut().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(at) = line.find(&format!("{word}:")) {
                    return line[at + word.len() + 1..].trim().to_owned();
                }
            }
            other => panic!("child ended before saying {word:?}: {other:?}"),
        }
    }
}

/// The entry point of every child process; a no-op in the parent.
#[test]
fn child() {
    let Some(args) = test_child_args() else {
        return;
    };
    match args.as_slice() {
        [role, data] if role == "open" => open_and_report(Utf8Path::new(data)),
        // The probe protocol adds the database after the test's arguments.
        [role] if role == "probe" => {
            let db = std::env::args().next_back().expect("the database");
            if let Err(e) =
                sysdb::probe_open(Utf8Path::new(&db), std::time::Duration::from_secs(30))
            {
                eprintln!("probe: {e}");
                std::process::exit(1);
            }
        }
        _ => match child_main(&args) {
            Ok(never) => match never {},
            Err(e) => panic!("child {args:?}: {e}"),
        },
    }
}

fn say(word: &str, rest: &str) {
    println!("{word}: {rest}");
    std::io::stdout().flush().expect("flush stdout");
}

/// Open through sysdb with a long lock wait; print the report as JSON.
fn open_and_report(data: &Utf8Path) {
    let paths = Paths::from_data_dir(data).expect("paths");
    let options = sysdb::OpenOptions::default().lock_wait(std::time::Duration::from_secs(60));
    match sysdb::SystemDb::open(&paths, &ladder(), &options) {
        Ok(db) => {
            let report = serde_json::to_string(db.report()).expect("serialise report");
            let version = seed_version(db.conn());
            let rows = job_count(db.conn());
            say("opened", &format!("{version} {rows} {report}"));
        }
        Err(e) => say("failed", &e.to_string()),
    }
}
