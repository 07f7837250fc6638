//! The reliability suite: kills at every failpoint of the open flow (and
//! kills of the recovery itself, nested), kills at random moments,
//! corrupted files, file-system faults, racing processes, and a replay that
//! aborts its process, and power cuts on a FUSE layer that loses what was
//! not synced. Every open under test runs in a child process (this
//! test binary, re-run), so a kill is a real process death and a fault
//! injected into one open never reaches another test.
//!
//! `SYSDB_LONG=1` runs the long mode (every nested kill, many more random
//! kills and corruptions); `SYSDB_SEED=N` repeats a run's random choices.
//! Each area writes its tally to `<target>/reliability/<area>.json`, which
//! `cargo xtask reliability` prints as one table.

mod child;
mod faults;
mod fuzz;
mod kills;
mod lazyfs;
mod memory;
mod power;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use sysdb::{Ladder, OpenOptions, Paths, SystemDb};
use sysdb_scenarios::ladders::{items_ladder, ITEMS_TOP};
use sysdb_scenarios::{StateDir, Tally};

pub(crate) use child::{Death, Job, Kill, Outcome};

/// The ladder's top version.
pub(crate) const TOP: u32 = ITEMS_TOP;
/// The versions the kill matrix starts from: every one crosses step 4,
/// which DuckDB commits but cannot replay from its write-ahead log.
pub(crate) const STARTS: [u32; 3] = [1, 2, 3];
/// Rows seeded before any migration under test.
pub(crate) const ROWS: u32 = 1000;

/// The suite's ladder (`sysdb_scenarios::ladders::items_ladder`): the
/// steps a real service has (tables, a column, a type, an index) and the
/// enum conversion whose replay fails on DuckDB 2.0's plain open (sysdb
/// replays it through ATTACH, with the database's types held).
pub(crate) fn ladder_to(top: u32) -> Ladder {
    items_ladder(top)
}

/// The digest of the seeded data: every row's id and payload, in order.
pub(crate) const DIGEST_SQL: &str =
    "SELECT md5(coalesce(string_agg(id::VARCHAR || '=' || payload, ';' ORDER BY id), '')) FROM items";

/// Whether this run is the long mode.
pub(crate) fn long() -> bool {
    std::env::var("SYSDB_LONG").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The seed of this run's random choices: `SYSDB_SEED`, or the clock.
pub(crate) fn seed() -> u64 {
    std::env::var("SYSDB_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        })
}

/// `folder.paths()`: the `sysdb::Paths` of a kit state folder.
pub(crate) trait PathsOf {
    fn paths(&self) -> Paths;
}

impl PathsOf for StateDir {
    fn paths(&self) -> Paths {
        Paths::from_data_dir(&self.data).expect("paths")
    }
}

/// A folder at `version` holding [`ROWS`] seeded rows, closed and
/// checkpointed, with the snapshot its first migration took; and the
/// digest of its rows.
pub(crate) fn seeded(version: u32) -> (StateDir, String) {
    let folder = StateDir::new();
    let db = SystemDb::open(
        &folder.paths(),
        &ladder_to(version),
        &OpenOptions::default(),
    )
    .expect("open the new folder");
    db.conn()
        .execute_batch(&format!(
            "INSERT INTO items (id, payload, state) SELECT range, 'payload-' || range, CASE WHEN range % 3 = 0 THEN 'done' ELSE 'new' END FROM range({ROWS});"
        ))
        .expect("seed rows");
    let digest: String = db
        .conn()
        .query_row(DIGEST_SQL, [], |r| r.get(0))
        .expect("digest");
    drop(db);
    (folder, digest)
}

/// How a child process ended.
#[derive(Debug)]
pub(crate) enum End {
    /// It printed its outcome and exited 0.
    Finished(Box<Outcome>),
    /// It died (killed, aborted, panicked) or exited without an outcome.
    Died {
        /// Its exit status, described.
        status: String,
        /// The last lines it printed.
        tail: String,
    },
    /// It ran past the timeout and was killed.
    TimedOut,
}

/// Run `job` in a child process, waiting at most `timeout`.
pub(crate) fn run(job: &Job, timeout: Duration) -> End {
    run_command(child::command(job), timeout)
}

/// Run a child `command` (a job's, as [`child::command`] makes it),
/// waiting at most `timeout`.
pub(crate) fn run_command(mut command: Command, timeout: Duration) -> End {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let errors = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return End::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let lines = reader.join().expect("stdout reader");
    let errors = errors.join().expect("stderr reader");
    let outcome = lines
        .iter()
        .find_map(|l| child::outcome_in(l))
        .map(|json| serde_json::from_str::<Outcome>(json).expect("outcome JSON"));
    match outcome {
        Some(outcome) if status.success() => End::Finished(Box::new(outcome)),
        _ => End::Died {
            status: status.to_string(),
            tail: {
                let all: Vec<&String> = lines.iter().chain(&errors).collect();
                let from = all.len().saturating_sub(12);
                all[from..]
                    .iter()
                    .map(|l| l.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            },
        },
    }
}

/// Files of a state folder whose names show sysdb left work unfinished.
pub(crate) fn leftovers(state: &Utf8Path) -> Vec<String> {
    fs_err::read_dir(state)
        .expect("list state")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.contains(".tmp-")
                || n.ends_with(".migrating")
                || n.ends_with(".recovering")
                || n.ends_with(".replay")
        })
        .collect()
}

/// Write an area's tally where `cargo xtask reliability` finds it, print
/// it, and fail the test if anything failed.
pub(crate) fn finish(tally: &Tally) {
    let dir = sysdb_scenarios::reliability_dir();
    fs_err::create_dir_all(&dir).expect("reliability folder");
    let path = dir.join(format!("{}.json", tally.area));
    fs_err::write(&path, serde_json::to_vec_pretty(tally).expect("tally JSON"))
        .expect("write tally");
    eprintln!("{}", sysdb_scenarios::table(std::slice::from_ref(tally)));
    assert!(
        tally.failures.is_empty(),
        "{} failure(s) in {} (seed {}):\n{}",
        tally.failures.len(),
        tally.area,
        tally.seed,
        tally.failures.join("\n")
    );
}

/// A class name for the table, from a child's outcome.
pub(crate) fn class_of(outcome: &Outcome) -> String {
    if let Some(kind) = &outcome.error_kind {
        return kind.clone();
    }
    let Some(came_to) = &outcome.came_to else {
        return "no outcome".to_owned();
    };
    let report = outcome.report.as_ref();
    let met = report.and_then(|r| r["error"]["class"].as_str());
    let resumed = report.is_some_and(|r| !r["recovery_resumed"].is_null());
    match (resumed, met) {
        (true, _) => format!("resumed, {came_to}"),
        (false, Some(class)) => format!("{class}, {came_to}"),
        (false, None) => came_to.to_string(),
    }
}

/// What every successful open must show: the ladder's top, every seeded
/// row, nothing left half done.
pub(crate) fn check_opened(
    outcome: &Outcome,
    digest: &str,
    state: &Utf8Path,
) -> Result<(), String> {
    if !outcome.ok {
        return Err(format!(
            "the open failed: {}",
            outcome.error.as_deref().unwrap_or("?")
        ));
    }
    if outcome.version != Some(TOP) {
        return Err(format!("version {:?}, not {TOP}", outcome.version));
    }
    if outcome.digest.as_deref() != Some(digest) {
        return Err(format!(
            "the seeded rows changed: digest {:?}, rows {:?}",
            outcome.digest, outcome.rows
        ));
    }
    let left = leftovers(state);
    if !left.is_empty() {
        return Err(format!("left behind: {left:?}"));
    }
    Ok(())
}

/// Every file set aside in `before` (by name and content) is still there.
pub(crate) fn nothing_deleted(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Result<(), String> {
    for (name, sha) in before {
        if name.contains(".broken.") && after.get(name) != Some(sha) {
            return Err(format!("{name} was removed or changed"));
        }
    }
    Ok(())
}

/// Options every child open uses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ChildOptions {
    /// Restore the snapshot only with the intent marker.
    pub(crate) strict: bool,
    /// The probe child's command, if any: program, arguments, timeout (ms).
    pub(crate) probe: Option<(String, Vec<String>, u64)>,
    /// How long to wait for the open lock (ms); two minutes if unset.
    pub(crate) lock_wait_ms: Option<u64>,
    /// Keep the database open after the open until this file exists (at
    /// most two minutes).
    pub(crate) hold_until: Option<Utf8PathBuf>,
    /// The service's DuckDB settings (`memory_limit`, …), for every
    /// connection the open makes.
    pub(crate) duckdb_settings: Vec<(String, String)>,
    /// The query whose value is the outcome's digest, in place of
    /// [`DIGEST_SQL`] (which holds every row in one string).
    pub(crate) digest_sql: Option<String>,
}

/// This test binary, for children.
pub(crate) fn test_binary() -> Command {
    Command::new(std::env::current_exe().expect("test binary path"))
}
