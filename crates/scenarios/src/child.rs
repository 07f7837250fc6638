//! The child processes of the scenarios, each a real process so that a
//! kill is a real process death and DuckDB's locks are another process's.
//!
//! A child is the calling program re-run: `cargo xtask` and `sysdb drill`
//! through a hidden command that hands its arguments to [`child_main`],
//! a test binary through [`test_child`], whose child finds its arguments
//! with [`test_child_args`]. Each child says what it did on its standard
//! output, one marked line at a time, and the parent half reads those
//! lines:
//!
//! - [`Crash`]: open the database, turn every checkpoint off, commit each
//!   stage, then die: SIGKILL from the parent, `abort`, or (for the `jobs`
//!   ladder) a `CHECKPOINT` that DuckDB stops just before it writes the new
//!   header, then SIGKILL. What was committed exists only in the
//!   write-ahead log.
//! - [`LockHolder`]: hold a DuckDB connection, and so DuckDB's own lock on
//!   the file, until the parent lets go.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use duckdb::Connection;

use crate::{Error, Result};

/// What a connection runs so that nothing it commits leaves the
/// write-ahead log: no checkpoint on shutdown, an automatic checkpoint
/// threshold no test reaches.
pub const CHECKPOINTS_OFF: &str =
    "PRAGMA disable_checkpoint_on_shutdown; SET checkpoint_threshold = '100GB';";

/// The environment variable that carries a test child's arguments (a JSON
/// array of strings).
pub const TEST_CHILD_ENV: &str = "SYSDB_SCENARIO_CHILD";

/// This test binary re-run as a child that runs only the test `test`, with
/// `args` in [`TEST_CHILD_ENV`]; that test starts with
/// [`test_child_args`]. Standard input and output are piped.
pub fn test_child(test: &str, args: &[String]) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(exe);
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(
            TEST_CHILD_ENV,
            serde_json::to_string(args).expect("strings serialise"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// In a test: the arguments [`test_child`] gave this process, or `None` in
/// the parent (the test then does nothing).
pub fn test_child_args() -> Option<Vec<String>> {
    let json = std::env::var(TEST_CHILD_ENV).ok()?;
    Some(serde_json::from_str(&json).expect("a test child's arguments are a JSON array"))
}

/// The child half of every kit child, for the arguments its parent half
/// gave ([`Crash::args`], [`LockHolder::args`]). Returns only on error:
/// a crash child dies, a lock holder exits when its parent lets go.
pub fn child_main(args: &[String]) -> Result<Infallible> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["crash", db, death, stages @ ..] => crash_child(Utf8Path::new(db), death, stages),
        ["hold-lock", db] => {
            hold_lock_child(Utf8Path::new(db))?;
            std::process::exit(0)
        }
        other => Err(Error::Child {
            role: "scenario",
            problem: format!("unknown arguments {other:?}"),
        }),
    }
}

/// How a crash child dies after its last commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Death {
    /// The parent sends SIGKILL.
    Kill,
    /// The child calls `abort` (SIGABRT).
    Abort,
    /// After its commits the child runs a `CHECKPOINT`, with a second
    /// connection committing single `jobs` rows meanwhile, that DuckDB stops
    /// just before writing the new header (its `debug_checkpoint_abort`
    /// setting), as a kill at that instant would; then the parent sends
    /// SIGKILL.
    KillInCheckpoint,
}

impl Death {
    fn as_str(self) -> &'static str {
        match self {
            Death::Kill => "kill",
            Death::Abort => "abort",
            Death::KillInCheckpoint => "checkpoint",
        }
    }
}

/// A crash: a child commits `stages` (each a batch that commits by itself,
/// e.g. `sysdb_schema::Step::transaction_sql`) on `db` with every
/// checkpoint off, then dies by `death`.
#[derive(Debug, Clone)]
pub struct Crash {
    /// The database.
    pub db: Utf8PathBuf,
    /// How the child dies.
    pub death: Death,
    /// What it commits, in order.
    pub stages: Vec<String>,
}

impl Crash {
    /// A crash on `db` killed by SIGKILL after `stages`.
    pub fn killed(db: &Utf8Path, stages: Vec<String>) -> Self {
        Self {
            db: db.to_owned(),
            death: Death::Kill,
            stages,
        }
    }

    /// The child's arguments, for [`child_main`].
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "crash".to_owned(),
            self.db.to_string(),
            self.death.as_str().to_owned(),
        ];
        args.extend(self.stages.iter().cloned());
        args
    }

    /// Run the crash: `launch` makes the command that starts this program
    /// as a child handing the given arguments to [`child_main`] (its
    /// standard output piped). Returns the size of the write-ahead log
    /// after each commit, once the child is dead.
    pub fn run(&self, launch: impl FnOnce(Vec<String>) -> Command) -> Result<Vec<u64>> {
        let fail = |problem: String| Error::Child {
            role: "crash",
            problem,
        };
        let mut child = launch(self.args())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("starting it for {}: {e}", self.db)))?;
        let mut sizes = Vec::new();
        let lines = child_lines(&mut child, "crash")?;
        for line in lines {
            let line = line.map_err(|e| fail(format!("reading its output: {e}")))?;
            if let Some(size) = said(&line, "committed ") {
                sizes.push(size.parse().map_err(|e| fail(format!("{line:?}: {e}")))?);
            } else if said(&line, "done").is_some() {
                break;
            }
        }
        if self.death != Death::Abort {
            child.kill().map_err(|e| fail(format!("killing it: {e}")))?;
        }
        let status = child
            .wait()
            .map_err(|e| fail(format!("waiting for it: {e}")))?;
        if sizes.len() != self.stages.len() {
            return Err(fail(format!(
                "it committed {} of {} stages on {} before it ended ({status})",
                sizes.len(),
                self.stages.len(),
                self.db
            )));
        }
        if status.success() {
            return Err(fail("it exited normally instead of dying".to_owned()));
        }
        Ok(sizes)
    }
}

fn child_lines(
    child: &mut Child,
    role: &'static str,
) -> Result<std::io::Lines<BufReader<ChildStdout>>> {
    let stdout = child.stdout.take().ok_or(Error::Child {
        role,
        problem: "its standard output is not piped".to_owned(),
    })?;
    Ok(BufReader::new(stdout).lines())
}

/// What starts every line a child says to its parent: a test harness may
/// print before it on the same line (`test child ... `).
const SAID: &str = "sysdb-scenario: ";

/// What the child said in `line` after `word`, if it said `word`.
fn said<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    let at = line.find(SAID)? + SAID.len();
    line[at..].strip_prefix(word).map(str::trim)
}

fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout();
    writeln!(out, "{SAID}{line}")
        .and_then(|()| out.flush())
        .map_err(|e| Error::Child {
            role: "scenario",
            problem: format!("writing to the parent: {e}"),
        })
}

/// The child half of [`Crash`].
fn crash_child(db: &Utf8Path, death: &str, stages: &[&str]) -> Result<Infallible> {
    let conn = crate::connect(db)?;
    conn.execute_batch(CHECKPOINTS_OFF)
        .map_err(Error::duckdb("turning checkpoints off in", db))?;
    let wal = Utf8PathBuf::from(format!("{db}.wal"));
    for stage in stages {
        conn.execute_batch(stage)
            .map_err(Error::duckdb(format!("committing `{stage}` to"), db))?;
        let size = fs_err::metadata(&wal).map_or(0, |m| m.len());
        say(&format!("committed {size}"))?;
    }
    if death == Death::KillInCheckpoint.as_str() {
        checkpoint_stopped_before_header(&conn, db)?;
    }
    say("done")?;
    if death == Death::Abort.as_str() {
        std::process::abort();
    }
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Run a checkpoint that DuckDB stops before its header write, while a
/// second connection commits single rows (which go to the checkpoint WAL,
/// `.wal.checkpoint`, while the checkpoint runs): the data blocks are
/// written, the WAL ends in a checkpoint marker, but the file still names
/// the previous checkpoint.
fn checkpoint_stopped_before_header(conn: &Connection, db: &Utf8Path) -> Result<()> {
    conn.execute_batch("SET debug_checkpoint_abort = 'before_header';")
        .map_err(Error::duckdb("setting debug_checkpoint_abort in", db))?;
    let writer = conn
        .try_clone()
        .map_err(Error::duckdb("a second connection to", db))?;
    std::thread::spawn(move || {
        for id in 10_000_000.. {
            let sql = format!("INSERT INTO jobs (id, state) VALUES ({id}, 'queued');");
            if writer.execute_batch(&sql).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    std::thread::sleep(Duration::from_millis(20));
    match conn.execute_batch("CHECKPOINT;") {
        Ok(()) => Err(Error::Child {
            role: "crash",
            problem: format!("the CHECKPOINT of {db} was not stopped"),
        }),
        Err(_) => Ok(()),
    }
}

/// A child process holding a plain DuckDB connection to a database, and
/// so DuckDB's own lock on it, until [`LockHolder::release`] (or drop).
#[derive(Debug)]
pub struct LockHolder {
    child: Child,
    /// The holder's pid, as it said it.
    pub pid: u32,
}

impl LockHolder {
    /// The child's arguments, for [`child_main`].
    pub fn args(db: &Utf8Path) -> Vec<String> {
        vec!["hold-lock".to_owned(), db.to_string()]
    }

    /// Start a holder of `db` (`launch` as for [`Crash::run`]) and wait
    /// until it holds the lock.
    pub fn start(db: &Utf8Path, launch: impl FnOnce(Vec<String>) -> Command) -> Result<Self> {
        let fail = |problem: String| Error::Child {
            role: "hold-lock",
            problem,
        };
        let mut child = launch(Self::args(db))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("starting it for {db}: {e}")))?;
        for line in child_lines(&mut child, "hold-lock")? {
            let line = line.map_err(|e| fail(format!("reading its output: {e}")))?;
            if let Some(pid) = said(&line, "locked ") {
                let pid = pid.parse().map_err(|e| fail(format!("{line:?}: {e}")))?;
                return Ok(Self { child, pid });
            }
        }
        let status = child
            .wait()
            .map_err(|e| fail(format!("waiting for it: {e}")))?;
        Err(fail(format!(
            "it ended before it held the lock on {db} ({status})"
        )))
    }

    /// Let go: the holder closes its connection and exits; its status.
    pub fn release(mut self) -> Result<ExitStatus> {
        drop(self.child.stdin.take());
        self.child.wait().map_err(|e| Error::Child {
            role: "hold-lock",
            problem: format!("waiting for it: {e}"),
        })
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        if self.child.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The child half of [`LockHolder`]: hold the connection until standard
/// input closes.
fn hold_lock_child(db: &Utf8Path) -> Result<()> {
    let conn = crate::connect(db)?;
    say(&format!("locked {}", std::process::id()))?;
    let mut sink = String::new();
    while std::io::stdin()
        .read_line(&mut sink)
        .map(|n| n > 0)
        .unwrap_or(false)
    {}
    drop(conn);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::said;

    #[test]
    fn a_child_is_heard_after_what_a_test_harness_prints_before_it() {
        assert_eq!(
            said("sysdb-scenario: committed 4096", "committed "),
            Some("4096")
        );
        assert_eq!(
            said("test child ... sysdb-scenario: locked 42", "locked "),
            Some("42")
        );
        assert_eq!(said("sysdb-scenario: done", "done"), Some(""));
        assert_eq!(said("committed 4096", "committed "), None);
        assert_eq!(said("sysdb-scenario: done", "locked "), None);
    }
}
