//! The child process: one `SystemDb::open` with failpoints armed as the
//! job says, reporting what it saw on stdout.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use camino::Utf8PathBuf;
use serde::{Deserialize, Serialize};
use sysdb::{Connector as _, Error, OpenOptions, Paths, Probe, SystemDb};
use sysdb_errclass::classify_error;
use sysdb_scenarios::describe;

use super::{ladder_to, test_binary, ChildOptions, DIGEST_SQL, TOP};

/// The environment variable that carries the job to the child.
const JOB_ENV: &str = "SYSDB_RELIABILITY_JOB";
/// The prefix of the outcome line.
pub(crate) const OUTCOME: &str = "outcome: ";

/// How a child dies at its failpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Death {
    /// SIGKILL, sent to itself: no destructor, no flush, nothing.
    Kill,
    /// `abort()`: SIGABRT, as a failed assertion in C++ would.
    Abort,
}

/// Where a child dies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Kill {
    /// The failpoint.
    pub(crate) point: String,
    /// At its `hit`-th hit (1-based).
    pub(crate) hit: u32,
    /// How.
    pub(crate) death: Death,
}

/// What a child does.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Job {
    /// The data folder.
    pub(crate) data: Utf8PathBuf,
    /// Die here, if set.
    pub(crate) kill: Option<Kill>,
    /// Failpoint actions (`return(ENOSPC)`, …) to arm, by failpoint.
    pub(crate) faults: Vec<(String, String)>,
    /// Open options.
    pub(crate) options: ChildOptions,
    /// Instead of the open: read every copy of the data in the folder.
    pub(crate) digests: bool,
    /// Instead of the open: an operator's recovery by hand, from the
    /// snapshot (`true`) or from the database at its last checkpoint.
    pub(crate) by_hand: Option<bool>,
}

/// What a child saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Outcome {
    /// The open succeeded.
    pub(crate) ok: bool,
    /// The schema version after it.
    pub(crate) version: Option<u32>,
    /// [`DIGEST_SQL`] after it.
    pub(crate) digest: Option<String>,
    /// Rows in `items`.
    pub(crate) rows: Option<i64>,
    /// Rows in `events`, where the table exists.
    pub(crate) events: Option<i64>,
    /// Rows of `items` with an owner: the salvage matrix's logged updates.
    pub(crate) owned: Option<i64>,
    /// What the open came to (healthy, migrated, recovered from which
    /// source, refused and why), as the library says it.
    pub(crate) came_to: Option<sysdb::Outcome>,
    /// The open report, as JSON: on an error, what was done before it,
    /// where it had changed files.
    pub(crate) report: Option<serde_json::Value>,
    /// The error's text.
    pub(crate) error: Option<String>,
    /// The error's kind: its variant, and DuckDB's class where it has one.
    pub(crate) error_kind: Option<String>,
    /// Every failpoint hit, in order.
    pub(crate) trace: Vec<String>,
    /// The child's pid.
    pub(crate) pid: u32,
    /// For `Locked`: the holder's pid the error named.
    pub(crate) locked_by: Option<u32>,
    /// For a `digests` job: each copy of the data (the database with its
    /// log, the snapshots, each database set aside) and what reading it
    /// gave: [`DIGEST_SQL`]'s value or the error.
    pub(crate) digests: BTreeMap<String, String>,
}

/// The outcome's JSON, if `line` carries it (libtest may print the test's
/// name before it on the same line).
pub(crate) fn outcome_in(line: &str) -> Option<&str> {
    line.find(OUTCOME).map(|at| &line[at + OUTCOME.len()..])
}

/// The command that runs `job` in a child.
pub(crate) fn command(job: &Job) -> Command {
    let mut command = test_binary();
    command
        .args([
            "--exact",
            "reliability::child::reliability_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(JOB_ENV, serde_json::to_string(job).expect("job JSON"));
    command
}

/// Every failpoint of the flow.
pub(crate) fn all_failpoints() -> Vec<&'static str> {
    sysdb::FAILPOINTS
        .into_iter()
        .chain(sysdb_snapshot::FAILPOINTS)
        .chain(sysdb_schema::FAILPOINTS)
        .collect()
}

/// The entry point of every child process; a no-op in the parent.
#[test]
fn reliability_child() {
    let Ok(job) = std::env::var(JOB_ENV) else {
        return;
    };
    let job: Job = serde_json::from_str(&job).expect("job JSON");
    if job.digests {
        let outcome = Outcome {
            digests: digests(&job.data),
            ..Outcome::default()
        };
        println!(
            "{OUTCOME}{}",
            serde_json::to_string(&outcome).expect("outcome JSON")
        );
        return;
    }
    let _scenario = fail::FailScenario::setup();
    let trace = Arc::new(Mutex::new(Vec::new()));
    let kill = job.kill.clone();
    let hits = Arc::new(AtomicU32::new(0));
    for point in all_failpoints() {
        if job.faults.iter().any(|(p, _)| p == point) {
            continue;
        }
        let trace = Arc::clone(&trace);
        let kill = kill.clone().filter(|k| k.point == point);
        let hits = Arc::clone(&hits);
        fail::cfg_callback(point, move || {
            trace
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(point.to_owned());
            if let Some(kill) = &kill {
                if hits.fetch_add(1, Ordering::SeqCst) + 1 == kill.hit {
                    die(kill.death);
                }
            }
        })
        .expect("arm failpoint");
    }
    for (point, action) in &job.faults {
        fail::cfg(point, action).expect("arm fault");
    }

    let paths = Paths::from_data_dir(&job.data).expect("paths");
    if let Some(from_snapshot) = job.by_hand {
        let source = match from_snapshot {
            true => sysdb::by_hand::HandSource::Snapshot(paths.snapshot()),
            false => sysdb::by_hand::HandSource::LastCheckpoint,
        };
        let done = sysdb::by_hand::lock(&paths, Duration::from_secs(120)).and_then(|lock| {
            sysdb::by_hand::recover(&paths, &lock, &source, &sysdb::ProgressHook::default())
        });
        let outcome = Outcome {
            ok: done.is_ok(),
            error: done.err().map(|e| e.to_string()),
            pid: std::process::id(),
            trace: trace
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            ..Outcome::default()
        };
        println!(
            "{OUTCOME}{}",
            serde_json::to_string(&outcome).expect("outcome JSON")
        );
        return;
    }
    let options = OpenOptions::default()
        .lock_wait(Duration::from_millis(
            job.options.lock_wait_ms.unwrap_or(120_000),
        ))
        .strict_snapshot(job.options.strict)
        .probe(
            job.options
                .probe
                .as_ref()
                .map(|(program, args, millis)| Probe {
                    program: program.into(),
                    args: args.clone(),
                    timeout: Duration::from_millis(*millis),
                }),
        );
    let settings = sysdb::DuckDbSettings::new(job.options.duckdb_settings.clone());
    let digest_sql = job.options.digest_sql.as_deref().unwrap_or(DIGEST_SQL);
    let mut outcome = match SystemDb::open_with(&paths, &ladder_to(TOP), &options, &settings) {
        Ok(db) => {
            let conn = db.conn();
            let outcome = Outcome {
                ok: true,
                version: sysdb::Ladder::status(&ladder_to(TOP), conn)
                    .ok()
                    .map(|s| s.current),
                digest: conn.query_row(digest_sql, [], |r| r.get(0)).ok(),
                rows: conn
                    .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
                    .ok(),
                events: conn
                    .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                    .ok(),
                owned: conn
                    .query_row(
                        "SELECT count(*) FROM items WHERE owner IS NOT NULL",
                        [],
                        |r| r.get(0),
                    )
                    .ok(),
                came_to: Some(db.report().outcome()),
                report: serde_json::to_value(db.report()).ok(),
                ..Outcome::default()
            };
            if let Some(release) = &job.options.hold_until {
                let started = std::time::Instant::now();
                while !release.exists() && started.elapsed() < Duration::from_secs(120) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            outcome
        }
        Err(e) => Outcome {
            came_to: Some(e.outcome()),
            report: e.report().and_then(|r| serde_json::to_value(r).ok()),
            error: Some(e.to_string()),
            error_kind: Some(kind(&e)),
            locked_by: match e.kind() {
                Error::Locked { pid, .. } => *pid,
                _ => None,
            },
            ..Outcome::default()
        },
    };
    outcome.pid = std::process::id();
    outcome.trace = trace
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    println!(
        "{OUTCOME}{}",
        serde_json::to_string(&outcome).expect("outcome JSON")
    );
    std::io::stdout().flush().expect("flush");
}

/// Read each copy of the data in `data`'s state folder, each in a
/// scratch folder of its own (the database together with its sidecars).
fn digests(data: &Utf8PathBuf) -> BTreeMap<String, String> {
    let paths = Paths::from_data_dir(data).expect("paths");
    let mut copies = vec![
        paths.db().to_owned(),
        paths.snapshot(),
        paths.previous_snapshot(),
    ];
    for set in sysdb_snapshot::list(paths.files()).expect("list quarantine") {
        copies.extend(set.files.into_iter().map(|(p, _)| p).filter(|p| {
            !sysdb_snapshot::SIDECAR_SUFFIXES
                .iter()
                .any(|s| p.as_str().ends_with(s))
        }));
    }
    let mut out = BTreeMap::new();
    for copy in copies.into_iter().filter(|p| p.exists()) {
        let scratch = tempfile::tempdir().expect("scratch");
        let db = Utf8PathBuf::try_from(scratch.path().join("system.duckdb")).expect("utf-8");
        fs_err::copy(&copy, &db).expect("copy");
        if copy == paths.db() {
            for (from, to) in paths
                .files()
                .sidecars()
                .into_iter()
                .zip(sysdb_snapshot::DbFiles::new(&db).expect("names").sidecars())
            {
                if from.exists() {
                    fs_err::copy(&from, &to).expect("copy sidecar");
                }
            }
        }
        let read = sysdb::DuckDbConnector
            .connect(&db)
            .and_then(|conn| conn.query_row(DIGEST_SQL, [], |r| r.get::<_, String>(0)));
        let name = copy.file_name().unwrap_or_default().to_owned();
        out.insert(name, read.unwrap_or_else(|e| format!("error: {e}")));
    }
    out
}

fn die(death: Death) -> ! {
    match death {
        Death::Kill => {
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
            unreachable!("SIGKILL returned")
        }
        Death::Abort => std::process::abort(),
    }
}

/// An error's kind for the tally: its variant, and DuckDB's class where it
/// carries one.
pub(crate) fn kind(e: &Error) -> String {
    match e.kind() {
        Error::Open { class, .. } => format!("refused: {}", describe(*class)),
        Error::Unreadable { class, .. } => format!("refused: Unreadable ({})", describe(*class)),
        Error::Reopen { reconnect, .. } => {
            format!("reopen failed: {}", describe(classify_error(reconnect)))
        }
        other => {
            let debug = format!("{other:?}");
            let variant: String = debug.chars().take_while(|c| c.is_alphanumeric()).collect();
            // DuckDB's class, where DuckDB's error is among the causes.
            let mut cause = std::error::Error::source(other);
            while let Some(e) = cause {
                if let Some(duck) = e.downcast_ref::<duckdb::Error>() {
                    return format!("refused: {variant} ({})", describe(classify_error(duck)));
                }
                cause = e.source();
            }
            format!("refused: {variant}")
        }
    }
}

/// Hit counts by failpoint, from a trace.
pub(crate) fn positions(trace: &[String]) -> Vec<(String, u32)> {
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    trace
        .iter()
        .map(|p| {
            let n = seen.entry(p).or_default();
            *n += 1;
            (p.clone(), *n)
        })
        .collect()
}
