//! Real crashes: this binary re-run as the scenario kit's crash child
//! (`sysdb_scenarios::child`), which commits with every checkpoint turned
//! off and then dies, so the commits exist only in the write-ahead log.

use std::process::Command;

use camino::Utf8Path;
use sysdb_scenarios::child::{Crash, Death};

/// The hidden command that runs a kit child.
pub const CHILD: &str = "scenario-child";

/// A child of this binary commits each of `stages` on `db` and dies by
/// `death`; the size of the write-ahead log after each commit.
pub fn crash(db: &Utf8Path, death: Death, stages: &[String]) -> Result<Vec<u64>, String> {
    let crash = Crash {
        db: db.to_owned(),
        death,
        stages: stages.to_vec(),
    };
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    crash
        .run(|args| {
            let mut child = Command::new(exe);
            child.arg(CHILD).args(args);
            child
        })
        .map_err(|e| e.to_string())
}

/// The child half: `scenario-child ARGS...`.
pub fn child(args: &[&str]) -> Result<(), String> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    match sysdb_scenarios::child::child_main(&args) {
        Ok(never) => match never {},
        Err(e) => Err(e.to_string()),
    }
}
