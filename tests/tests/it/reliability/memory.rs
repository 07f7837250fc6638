//! A recovery under a container's memory limit: a real crash leaves a log
//! of a few hundred MiB (many commits of rows, then a migration step no
//! DuckDB replays), and the open that recovers it runs in a memory cgroup
//! whose limit is the service's `memory_limit` plus the allowance README
//! names, from a working folder where nothing can be created (a
//! container's read-only root). It must finish with every committed row,
//! or refuse as out of memory with every file byte-identical; the kernel
//! must never kill it. Killed anyway (a container smaller than the
//! service's own `memory_limit`), the next start converges.

use std::time::{Duration, Instant};

use sysdb_scenarios::cgroup::MemoryCgroup;
use sysdb_scenarios::child::{child_main, test_child, test_child_args, Crash};
use sysdb_scenarios::{folder_digest, Tally};

use super::{
    child, class_of, finish, leftovers, long, run_command, seed, seeded, ChildOptions, End, Job,
    PathsOf, ROWS, TOP,
};

/// The service's `memory_limit`.
const MEMORY_LIMIT_MIB: u64 = 64;
/// What a recovery needs beyond `memory_limit` (README, Performance):
/// sysdb's own work, DuckDB's memory outside its buffer pool, the program.
const ALLOWANCE_MIB: u64 = 64;
/// A container smaller than the service's `memory_limit`, where the
/// kernel kills the open.
const TOO_SMALL_MIB: u64 = 40;
/// Commits of rows in the log, and rows in each: about 270 MiB of log.
const COMMITS: u64 = 100;
const ROWS_EACH: u64 = 20_000;
/// A long payload, so that the log is large for its rows.
const PAYLOAD: &str = "'payload-' || range || '-' || repeat('x', 100)";
/// Every row's id and payload, summed as hashes: the digest of the rows
/// without holding them in one string.
const DIGEST: &str = "SELECT count(*) || ':' || sum(hash(id, payload)) FROM items";

/// The entry point of the crash child; a no-op in the parent.
#[test]
fn crash_child() {
    if let Some(args) = test_child_args() {
        match child_main(&args) {
            Ok(never) => match never {},
            Err(e) => panic!("crash child: {e}"),
        }
    }
}

/// The commits of the log: rows, then steps 3 and 4 of the ladder in one
/// transaction (a cast to a type the same commit creates), which no
/// DuckDB replays.
fn stages() -> Vec<String> {
    let mut stages: Vec<String> = (0..COMMITS)
        .map(|i| {
            let from = u64::from(ROWS) + i * ROWS_EACH;
            format!(
                "INSERT INTO items (id, payload, state) SELECT range, {PAYLOAD}, 'new' FROM range({from}, {});",
                from + ROWS_EACH
            )
        })
        .collect();
    let ladder = super::ladder_to(4);
    let sql = |v: u32| ladder.step(v).expect("a step").sql().to_owned();
    stages.push(format!("BEGIN; {} {} COMMIT;", sql(3), sql(4)));
    stages
}

/// [`DIGEST`] of the rows every committed insert leaves: the seeded rows
/// and the log's, made again in memory.
fn expected_digest() -> String {
    let conn = duckdb::Connection::open_in_memory().expect("in memory");
    conn.execute_batch(&format!(
        "CREATE TABLE items (id BIGINT, payload VARCHAR, state VARCHAR); \
         INSERT INTO items SELECT range, 'payload-' || range, 'new' FROM range({ROWS});"
    ))
    .expect("the seeded rows");
    for stage in &stages()[..COMMITS as usize] {
        conn.execute_batch(stage).expect("the logged rows");
    }
    conn.query_row(DIGEST, [], |r| r.get(0)).expect("digest")
}

#[test]
fn a_large_log_recovers_under_a_memory_limit_and_is_never_killed() {
    let started = Instant::now();
    let mut tally = Tally::new("memory limit", seed(), long());
    let limit = (MEMORY_LIMIT_MIB + ALLOWANCE_MIB) << 20;
    let cgroup = match MemoryCgroup::new(limit) {
        Ok(cgroup) => cgroup,
        Err(why) => {
            if std::env::var("SYSDB_CGROUP").is_ok_and(|v| v == "required") {
                tally
                    .failures
                    .push(format!("SYSDB_CGROUP=required, and no cgroup: {why}"));
            }
            tally.skipped += 1;
            *tally.classes.entry(format!("skipped: {why}")).or_default() += 1;
            tally.millis = started.elapsed().as_millis() as u64;
            finish(&tally);
            return;
        }
    };
    let (folder, _) = seeded(2);
    let paths = folder.paths();
    let sizes = Crash::killed(paths.db(), stages())
        .run(|args| test_child("reliability::memory::crash_child", &args))
        .expect("the crash");
    tally.kills += 1;
    let log = sizes.last().copied().unwrap_or(0);
    assert!(
        log > 200 << 20,
        "a log of {log} bytes, not a few hundred MiB"
    );
    let want = expected_digest();

    let job = Job {
        data: folder.data.clone(),
        options: ChildOptions {
            duckdb_settings: vec![("memory_limit".to_owned(), format!("{MEMORY_LIMIT_MIB}MiB"))],
            digest_sql: Some(DIGEST.to_owned()),
            ..ChildOptions::default()
        },
        ..Job::default()
    };
    // A working folder where nothing can be created, as a container's
    // read-only root: DuckDB's in-memory default spills there.
    let mut command = child::command(&job);
    command.current_dir("/proc");

    // First in a container too small for the service's own memory_limit:
    // the kernel kills the open wherever its memory peaks, and the next
    // start must converge all the same.
    let small = MemoryCgroup::new(TOO_SMALL_MIB << 20).expect("a second cgroup");
    match run_command(small.enter(&command), Duration::from_secs(900)) {
        End::Died { status, .. } if small.oom_kills().unwrap_or(0) > 0 => {
            tally.kills += 1;
            *tally
                .classes
                .entry("killed by the kernel (out of memory)".to_owned())
                .or_default() += 1;
            eprintln!("in a cgroup of {TOO_SMALL_MIB} MiB the open was killed: {status}");
        }
        other => eprintln!("in a cgroup of {TOO_SMALL_MIB} MiB the open ended as {other:?}"),
    }
    drop(small);
    let before = folder_digest(&folder.state());

    let end = run_command(cgroup.enter(&command), Duration::from_secs(900));
    tally.scenarios += 1;
    let kills = cgroup
        .oom_kills()
        .expect("the cgroup's out-of-memory kills");
    let peak = cgroup.peak().map_or(0, |b| b >> 20);
    eprintln!(
        "a log of {} MiB in a cgroup of {} MiB: peak {peak} MiB (page cache included), {kills} killed",
        log >> 20,
        limit >> 20
    );
    if kills > 0 {
        tally.failures.push(format!(
            "the kernel killed {kills} process(es) of the recovery in a cgroup of {} MiB",
            limit >> 20
        ));
    }
    let checked = match end {
        End::Finished(outcome) if outcome.ok => {
            *tally.classes.entry(class_of(&outcome)).or_default() += 1;
            if outcome.version != Some(TOP) {
                Err(format!("version {:?}, not {TOP}", outcome.version))
            } else if outcome.digest.as_deref() != Some(want.as_str()) {
                Err(format!(
                    "rows {:?} (count:hash), every committed row is {want}",
                    outcome.digest
                ))
            } else {
                let left = leftovers(&folder.state());
                match left.is_empty() {
                    true => Ok(()),
                    false => Err(format!("left behind: {left:?}")),
                }
            }
        }
        End::Finished(outcome) => {
            *tally.classes.entry(class_of(&outcome)).or_default() += 1;
            let text = outcome.error.unwrap_or_default();
            if !text.to_lowercase().contains("out of memory") {
                Err(format!("refused, and not as out of memory: {text}"))
            } else if folder_digest(&folder.state()) != before {
                Err("refused as out of memory, but the files changed".to_owned())
            } else {
                Ok(())
            }
        }
        other => Err(format!("the recovery ended as {other:?}")),
    };
    if let Err(e) = checked {
        tally.failures.push(e);
    }
    tally.millis = started.elapsed().as_millis() as u64;
    finish(&tally);
}
