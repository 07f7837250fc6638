//! The first open of a folder with a write-ahead log, tried in a child
//! process: a replay that aborts takes down the child, not the service.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use camino::Utf8Path;

use crate::report::ProbeOutcome;
use crate::{Connector, DuckDbConnector, Error, Result};

/// How often the child is looked at.
const POLL: Duration = Duration::from_millis(10);

/// The child process [`OpenOptions::probe`](crate::OpenOptions::probe)
/// runs: `program args… <database>`. It must open the database with DuckDB
/// and close it, exiting 0 when that worked; `sysdb probe-open` does, and a
/// service can offer the same from its own binary with [`probe_open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The program.
    pub program: PathBuf,
    /// Its arguments; the database's path is added after them.
    pub args: Vec<String>,
    /// How long the child may take; after that it is killed and the open
    /// fails with [`Error::Probe`].
    pub timeout: Duration,
}

/// What a probe child does: open the database at `db` as sysdb would
/// (replaying its write-ahead log), then close it.
///
/// Under the open lock: a probe that the open holding the lock started
/// (the lock file names this process's parent, or one of its ancestors)
/// runs under that one; a probe run by hand takes the lock first, waiting up to `lock_wait`, so
/// that it never replays a log while another process opens or recovers.
pub fn probe_open(db: &Utf8Path, lock_wait: Duration) -> Result<()> {
    probe_open_with(db, lock_wait, &DuckDbConnector)
}

/// [`probe_open`] through `connector`: the service's own DuckDB settings
/// (give the child the same ones as the open that runs it).
pub fn probe_open_with(
    db: &Utf8Path,
    lock_wait: Duration,
    connector: &dyn Connector,
) -> Result<()> {
    let paths = crate::Paths::for_db(db)?;
    let _lock = crate::take_lock(&paths, lock_wait, true)?;
    connector
        .connect(db)
        .and_then(|conn| conn.close().map_err(|(_, e)| e))
        .map_err(Error::open(db))
}

/// Run the probe on `db` and say how it ended.
pub(crate) fn run(probe: &Probe, db: &Utf8Path) -> Result<ProbeOutcome> {
    let program = probe.program.display();
    let problem = |problem: String| Error::Probe {
        path: db.to_owned(),
        problem,
    };
    let mut child = Command::new(&probe.program)
        .args(&probe.args)
        .arg(db)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| problem(format!("{program} could not be started: {e}")))?;
    let started = Instant::now();
    loop {
        let waited = child
            .try_wait()
            .map_err(|e| problem(format!("while waiting for {program}: {e}")))?;
        if let Some(status) = waited {
            let outcome = match (status.code(), status.signal()) {
                (Some(code), _) => ProbeOutcome::Exited { code },
                (None, signal) => ProbeOutcome::Killed {
                    signal: signal.unwrap_or(0),
                },
            };
            tracing::info!(%program, %outcome, "probe child ended");
            return Ok(outcome);
        }
        if started.elapsed() >= probe.timeout {
            // Best effort: it may have ended in between.
            let _ = child.kill();
            let _ = child.wait();
            return Err(problem(format!(
                "{program} did not finish within {} and was killed; a long write-ahead log can take that long to replay: raise the probe's timeout",
                humantime::format_duration(probe.timeout)
            )));
        }
        std::thread::sleep(POLL);
    }
}
