//! Real crashes: this binary re-run as a child that commits work with every
//! checkpoint turned off, then dies by SIGKILL from the parent or by
//! `abort`, so the commits exist only in the write-ahead log.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use std::time::Duration;

use camino::Utf8Path;
use duckdb::Connection;

/// The hidden command that runs the child half.
pub const CHILD: &str = "crash-child";

/// How the child dies after its last commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Death {
    /// The parent sends SIGKILL.
    Kill,
    /// The child calls `abort` (SIGABRT).
    Abort,
    /// After its commits the child runs a `CHECKPOINT`, with a second
    /// connection committing meanwhile, that DuckDB stops just before
    /// writing the new header (its `debug_checkpoint_abort` setting), as a
    /// kill at that instant would; then the parent sends SIGKILL.
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

/// Run a child that opens `db`, turns checkpoints off, commits each of
/// `stages` (each a batch that commits by itself), and dies. Returns the
/// size of the write-ahead log after each commit.
pub fn crash(db: &Utf8Path, death: Death, stages: &[String]) -> Result<Vec<u64>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let mut child = Command::new(exe)
        .arg(CHILD)
        .arg(db.as_str())
        .arg(death.as_str())
        .args(stages)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting the crash child: {e}"))?;
    let stdout = child.stdout.take().ok_or("the crash child has no stdout")?;
    let mut sizes = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.map_err(|e| format!("reading the crash child: {e}"))?;
        if let Some(size) = line.strip_prefix("committed ") {
            sizes.push(size.trim().parse().map_err(|e| format!("{line}: {e}"))?);
        } else if line == "done" {
            break;
        }
    }
    match death {
        Death::Kill | Death::KillInCheckpoint => child
            .kill()
            .map_err(|e| format!("killing the crash child: {e}"))?,
        Death::Abort => {}
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the crash child: {e}"))?;
    if sizes.len() != stages.len() {
        return Err(format!(
            "the crash child committed {} of {} stages before it ended ({status})",
            sizes.len(),
            stages.len()
        ));
    }
    if status.success() {
        return Err("the crash child exited normally instead of dying".to_owned());
    }
    Ok(sizes)
}

/// The child half: `crash-child DB kill|abort|checkpoint STAGE...`.
pub fn child(args: &[&str]) -> Result<(), String> {
    let [db, death, stages @ ..] = args else {
        return Err(format!("usage: {CHILD} DB kill|abort|checkpoint STAGE..."));
    };
    let db = Utf8Path::new(db);
    let conn = crate::fixtures::connect(db)?;
    conn.execute_batch(
        "PRAGMA disable_checkpoint_on_shutdown; SET checkpoint_threshold = '100GB';",
    )
    .map_err(|e| format!("turning checkpoints off: {e}"))?;
    let wal = db.as_str().to_owned() + ".wal";
    let mut out = std::io::stdout();
    for stage in stages {
        conn.execute_batch(stage)
            .map_err(|e| format!("committing `{stage}`: {e}"))?;
        let size = fs_err::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        writeln!(out, "committed {size}").map_err(|e| e.to_string())?;
    }
    if *death == "checkpoint" {
        checkpoint_stopped_before_header(&conn)?;
    }
    writeln!(out, "done").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    if *death == "abort" {
        std::process::abort();
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// Run a checkpoint that DuckDB stops before its header write, while a
/// second connection commits single rows (which go to the checkpoint WAL,
/// `.wal.checkpoint`, while the checkpoint runs): the data blocks are
/// written, the WAL ends in a checkpoint marker, but the file still names
/// the previous checkpoint.
fn checkpoint_stopped_before_header(conn: &Connection) -> Result<(), String> {
    conn.execute_batch("SET debug_checkpoint_abort = 'before_header';")
        .map_err(|e| format!("debug_checkpoint_abort: {e}"))?;
    let writer = conn.try_clone().map_err(|e| e.to_string())?;
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
        Ok(()) => Err("the CHECKPOINT was not stopped".to_owned()),
        Err(_) => Ok(()),
    }
}
