//! `sysdb drill`: the crash and the recovery, for real, in a scratch
//! folder. A demonstration for new users and a self-test for operators.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Instant;

use camino::{Utf8Path, Utf8PathBuf};
use clap::Args;
use serde::Serialize;
use sysdb::{Connector, DuckDbConnector, OpenOptions, Paths, SystemDb};
use sysdb_scenarios::child::{child_main, Crash};
use sysdb_scenarios::ladders::{insert_jobs, jobs_ladder};

use crate::error::Error;
use crate::global::read_version;
use crate::out::emit;
use crate::Global;

/// `sysdb drill`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Run in this folder (absent or empty) and keep it; a temporary
    /// folder, removed at the end, by default
    #[arg(long, value_name = "DIR")]
    dir: Option<Utf8PathBuf>,
    /// Jobs in the table before the crash
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    rows: u64,
}

#[derive(Debug, Serialize)]
struct Event {
    at_millis: u64,
    what: String,
}

#[derive(Debug, Serialize)]
struct Check {
    check: String,
    ok: bool,
}

#[derive(Debug, Serialize)]
struct Drill {
    dir: Utf8PathBuf,
    rows: u64,
    timeline: Vec<Event>,
    duckdb_error: Option<String>,
    report: Option<sysdb::OpenReport>,
    checks: Vec<Check>,
    ok: bool,
}

struct Timeline {
    started: Instant,
    events: Vec<Event>,
}

impl Timeline {
    fn mark(&mut self, what: String) {
        crate::out::note(&format!(
            "{:>8.2}s  {what}",
            self.started.elapsed().as_secs_f64()
        ));
        self.events.push(Event {
            at_millis: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            what,
        });
    }
}

/// `sysdb drill`.
pub fn run(global: &Global, args: &DrillArgs) -> Result<u8, Error> {
    let tmp;
    let dir = match &args.dir {
        Some(dir) => {
            let empty = fs_err::read_dir(dir).map_or(true, |mut d| d.next().is_none());
            if !empty {
                return Err(Error::Usage(format!(
                    "{dir} is not empty; the drill needs an absent or empty folder"
                )));
            }
            dir.clone()
        }
        None => {
            tmp = tempfile::tempdir().map_err(Error::io(
                "creating a temporary folder in",
                Utf8Path::new("/tmp"),
            ))?;
            Utf8PathBuf::try_from(tmp.path().to_owned())
                .map_err(|e| Error::Refused(format!("the temporary folder is not UTF-8: {e}")))?
        }
    };
    let paths = Paths::from_data_dir(&dir)?;
    let mut t = Timeline {
        started: Instant::now(),
        events: Vec::new(),
    };

    // 1. A database at version 26 with data, and the snapshot that the
    //    migration to 27 takes first.
    let db = SystemDb::open(&paths, &jobs_ladder(26), &OpenOptions::default())?;
    db.conn()
        .execute_batch(&insert_jobs(0, args.rows))
        .map_err(Error::duck("filling", paths.db()))?;
    let closed = db.close();
    sysdb_snapshot::take(closed.db())?;
    drop(closed);
    t.mark(format!(
        "created {} at version 26 with {} jobs, and its pre-migrate snapshot",
        paths.db(),
        args.rows
    ));

    // 2. Migration 27 in a child process, killed after its commit and
    //    before any checkpoint.
    let exe = std::env::current_exe().map_err(Error::io("finding", Utf8Path::new("sysdb")))?;
    let ladder = jobs_ladder(27);
    let step = ladder
        .step(27)
        .ok_or_else(|| Error::Refused("the drill's ladder has no step 27".to_owned()))?;
    let crash = Crash::killed(paths.db(), vec![step.transaction_sql()]);
    let committed = crash.run(|args| {
        let mut child = Command::new(exe);
        child.arg("drill-child").args(args);
        child
    });
    t.mark(match &committed {
        Ok(_) => {
            "a child process committed migration 27 and was killed before the checkpoint".to_owned()
        }
        Err(e) => format!("the child process did not crash as planned: {e}"),
    });

    // 3. Plain DuckDB now fails to open the database.
    let plain = DuckDbConnector.connect(paths.db());
    let duckdb_error = plain.as_ref().err().map(ToString::to_string);
    let class = plain.as_ref().err().map(sysdb_errclass::classify_error);
    drop(plain);
    t.mark(match &duckdb_error {
        Some(e) => format!("plain DuckDB fails to open it: {e}"),
        None => "plain DuckDB opens it (the crash did not leave an unreplayable WAL)".to_owned(),
    });

    // 4. sysdb opens it.
    let opened = SystemDb::open(&paths, &jobs_ladder(27), &OpenOptions::default());
    let (report, version, jobs) = match &opened {
        Ok(db) => {
            let jobs: Option<u64> = db
                .conn()
                .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
                .ok();
            (Some(db.report().clone()), read_version(db.conn()), jobs)
        }
        Err(e) => {
            t.mark(format!("sysdb failed to open it: {e}"));
            (None, None, None)
        }
    };
    drop(opened);
    if let Some(r) = &report {
        t.mark(format!(
            "sysdb recovered it: {} files set aside, migrated to version {}",
            r.quarantined.len(),
            version.map_or("?".to_owned(), |v| v.to_string())
        ));
    }

    let checks = vec![
        Check {
            check: "the child committed migration 27 and was killed".to_owned(),
            ok: committed.is_ok(),
        },
        Check {
            check: "plain DuckDB fails with a write-ahead-log replay error".to_owned(),
            ok: class.is_some_and(|c| c.is_wal_replay()),
        },
        Check {
            check: "sysdb set the files aside and restored the database".to_owned(),
            ok: report
                .as_ref()
                .is_some_and(|r| r.restored.is_some() && !r.quarantined.is_empty()),
        },
        Check {
            check: format!("every one of the {} jobs survived", args.rows),
            ok: jobs == Some(args.rows),
        },
        Check {
            check: "the schema is at version 27".to_owned(),
            ok: version == Some(27),
        },
    ];
    let ok = checks.iter().all(|c| c.ok);
    let drill = Drill {
        dir: dir.clone(),
        rows: args.rows,
        timeline: t.events,
        duckdb_error,
        report,
        checks,
        ok,
    };
    emit(global, &drill, human);
    Ok(if ok { 0 } else { 1 })
}

fn human(d: &Drill) -> String {
    let mut out = format!("crash drill in {}\n", d.dir);
    for e in &d.timeline {
        let _ = writeln!(out, "{:>8.2}s  {}", e.at_millis as f64 / 1000.0, e.what);
    }
    for c in &d.checks {
        let _ = writeln!(out, "[{}] {}", if c.ok { "ok" } else { "FAILED" }, c.check);
    }
    let _ = writeln!(
        out,
        "{}",
        if d.ok {
            "drill passed: the crash was real, the recovery lost nothing"
        } else {
            "drill FAILED: see the checks above"
        }
    );
    out
}

/// The drill's child: the scenario kit's crash child
/// (`sysdb_scenarios::child`), which commits migration 27 as the ladder
/// does with every checkpoint off, says so, and waits to be killed.
pub fn child(args: &[String]) -> Result<u8, Error> {
    match child_main(args)? {}
}
