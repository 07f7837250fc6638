//! The open flow end to end: the seed service's four tests ported one to
//! one (`seed`), the same scenarios on real files made by real processes
//! (`real`), and the helpers they share.
//!
//! Some tests re-run this binary as a child process (see [`child`]): to
//! hold DuckDB's lock, to be killed in the middle of a migration step, or
//! to race another process to the open.

mod real;
mod seed;

pub(crate) use sysdb_tests::folder_digest;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use camino::{Utf8Path, Utf8PathBuf};
use duckdb::Connection;
use sysdb::{Connector, DuckDbConnector, OpenReport, Paths};
use sysdb_schema::Ladder;

/// The ladder's top, as in the seed service.
pub(crate) const SCHEMA_VERSION: u32 = 27;

/// The step that moves `jobs.state` to an enum kept in another schema.
/// DuckDB 2.0.0 commits it, but cannot replay it from the write-ahead log:
/// "Type with name job_state does not exist!".
pub(crate) const UNREPLAYABLE_STEP: &str =
    "ALTER TABLE jobs ALTER COLUMN state SET TYPE s.job_state USING state::s.job_state;";

/// The service's ladder up to `top`: 1 creates `jobs` and the enum type,
/// 2..=26 each add a column, 27 is [`UNREPLAYABLE_STEP`].
pub(crate) fn ladder_to(top: u32) -> Ladder {
    let mut steps = vec![(
        1,
        "create_jobs".to_owned(),
        "CREATE SCHEMA s;
         CREATE TYPE s.job_state AS ENUM ('queued', 'running', 'done');
         CREATE TABLE jobs (id INTEGER, state VARCHAR);"
            .to_owned(),
    )];
    for v in 2..=top.min(26) {
        steps.push((
            v,
            format!("add_c{v}"),
            format!("ALTER TABLE jobs ADD COLUMN c{v} INTEGER;"),
        ));
    }
    if top >= 27 {
        steps.push((27, "typed_state".to_owned(), UNREPLAYABLE_STEP.to_owned()));
    }
    Ladder::new(steps).expect("valid ladder")
}

/// The whole ladder.
pub(crate) fn ladder() -> Ladder {
    ladder_to(SCHEMA_VERSION)
}

/// `DATA_DIR` with an empty `state` folder, as the seed's fixture makes.
pub(crate) struct StateDir {
    tmp: tempfile::TempDir,
    pub(crate) data: Utf8PathBuf,
}

impl StateDir {
    pub(crate) fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = Utf8PathBuf::try_from(tmp.path().join("data")).expect("utf-8");
        fs_err::create_dir_all(data.join("state")).expect("state folder");
        Self { tmp, data }
    }
    pub(crate) fn paths(&self) -> Paths {
        Paths::from_data_dir(&self.data).expect("paths")
    }
    pub(crate) fn state(&self) -> Utf8PathBuf {
        self.data.join("state")
    }
    /// The temp folder, for redaction.
    pub(crate) fn root(&self) -> &std::path::Path {
        self.tmp.path()
    }
}

/// An error as DuckDB's connect would return it.
pub(crate) fn duck_error(message: &str) -> duckdb::Error {
    duckdb::Error::DuckDBFailure(
        duckdb::ffi::Error::new(duckdb::ffi::DuckDBError),
        Some(message.to_owned()),
    )
}

/// The version, read the way the seed service reads it.
pub(crate) fn seed_version(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT version FROM schema_version ORDER BY applied_at DESC LIMIT 1",
        [],
        |r| r.get(0),
    )
    .expect("seed query")
}

/// The number of rows in `jobs`.
pub(crate) fn job_count(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
        .expect("count jobs")
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
    sysdb_tests::redacted(value, &dir.root().to_string_lossy())
}

// ---------------------------------------------------------------------------
// Child processes.

/// The environment variable that turns [`child`] into a role.
const CHILD_ENV: &str = "SYSDB_IT_CHILD";
/// The one test a child runs.
const CHILD_TEST: &str = "child";

/// Spawn this test binary as a child playing `role` on `path`.
pub(crate) fn spawn_child(role: &str, path: &Utf8Path) -> Child {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{role} {path}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child")
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
    let Ok(job) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (role, path) = job.split_once(' ').expect("role and path");
    let path = Utf8Path::new(path);
    match role {
        "hold-duckdb-lock" => hold_duckdb_lock(path),
        "crash-in-step-27" => crash_in_step_27(path),
        "open" => open_and_report(path),
        other => panic!("unknown child role {other}"),
    }
}

fn say(word: &str, rest: &str) {
    println!("{word}: {rest}");
    std::io::stdout().flush().expect("flush stdout");
}

/// Hold a plain DuckDB connection (and so DuckDB's own file lock) until
/// stdin closes.
fn hold_duckdb_lock(db: &Utf8Path) {
    let conn = DuckDbConnector
        .connect(db)
        .expect("child opens the database");
    say("locked", &std::process::id().to_string());
    let mut sink = String::new();
    while std::io::stdin()
        .read_line(&mut sink)
        .map(|n| n > 0)
        .unwrap_or(false)
    {}
    drop(conn);
}

/// Apply step 27 the way the ladder does (the step and its
/// `schema_version` row in one transaction), with every checkpoint turned
/// off; then wait to be killed.
fn crash_in_step_27(db: &Utf8Path) {
    let conn = DuckDbConnector
        .connect(db)
        .expect("child opens the database");
    let ladder = ladder();
    let step = ladder.step(27).expect("step 27");
    conn.execute_batch(
        "PRAGMA disable_checkpoint_on_shutdown; SET checkpoint_threshold = '100GB';",
    )
    .expect("turn checkpoints off");
    conn.execute_batch(&format!(
        "BEGIN; {} INSERT INTO schema_version VALUES (27, '{}', '{}', now()); COMMIT;",
        step.sql(),
        step.name(),
        step.checksum()
    ))
    .expect("apply step 27");
    say("committed", "27");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// Open through sysdb with a long lock wait; print the report as JSON.
fn open_and_report(data: &Utf8Path) {
    let paths = Paths::from_data_dir(data).expect("paths");
    let options = sysdb::OpenOptions {
        lock_wait: std::time::Duration::from_secs(60),
        ..sysdb::OpenOptions::default()
    };
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

/// Kill a child for real (SIGKILL) and reap it.
pub(crate) fn kill(mut child: Child) {
    child.kill().expect("kill child");
    let status = child.wait().expect("reap child");
    assert!(!status.success(), "the child was not killed: {status}");
}
