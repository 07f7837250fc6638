//! Kills: at every failpoint hit of a migration, then of the recovery that
//! follows (nested up to three deep); at random moments; and processes
//! racing over a folder a kill left behind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use sysdb_scenarios::{folder_digest, Tally};

use super::child::positions;
use super::{
    check_opened, class_of, finish, ladder_to, long, nothing_deleted, run, seed, seeded, Death,
    End, Job, Kill, Outcome, PathsOf, StateDir, ROWS, STARTS,
};

/// No open of these small folders takes this long, even on a busy machine.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Kills nested in recoveries: the migration's, then up to this many deep.
const DEPTH: u32 = 3;

/// The open a fresh process makes after a kill, on a copy of the killed
/// state (the state itself stays for the next kills): it must succeed at
/// the top with every seeded row, keep every file set aside, and leave no
/// work half done.
pub(crate) fn verify(state: &StateDir, digest: &str) -> Result<Outcome, String> {
    let copy = state.copy();
    let before = folder_digest(&copy.state());
    let job = Job {
        data: copy.data.clone(),
        ..Job::default()
    };
    match run(&job, TIMEOUT) {
        End::Finished(outcome) => {
            check_opened(&outcome, digest, &copy.state())?;
            nothing_deleted(&before, &folder_digest(&copy.state()))?;
            Ok(*outcome)
        }
        End::Died { status, tail } => Err(format!("the open died ({status}):\n{tail}")),
        End::TimedOut => Err(format!("the open did not finish within {TIMEOUT:?}")),
    }
}

/// A copy of `state` in which a child open was killed at `kill`.
pub(crate) fn killed(state: &StateDir, kill: &Kill) -> Result<StateDir, String> {
    killed_in(state, kill, &Job::default())
}

/// A copy of `state` in which a child doing `job` was killed at `kill`.
fn killed_in(state: &StateDir, kill: &Kill, job: &Job) -> Result<StateDir, String> {
    let copy = state.copy();
    let job = Job {
        data: copy.data.clone(),
        kill: Some(kill.clone()),
        ..job.clone()
    };
    match run(&job, TIMEOUT) {
        End::Died { status, .. } if status.contains("signal") => Ok(copy),
        End::Died { status, tail } => {
            Err(format!("the child died unexpectedly ({status}):\n{tail}"))
        }
        End::Finished(_) => Err("the child finished without reaching its failpoint".to_owned()),
        End::TimedOut => Err(format!("the child did not die within {TIMEOUT:?}")),
    }
}

/// Whether an open recovered, or finished a recovery.
fn recovered(outcome: &Outcome) -> bool {
    outcome
        .report
        .as_ref()
        .is_some_and(|r| !r["restored"].is_null() || !r["recovery_resumed"].is_null())
}

/// The failpoint hits that belong to the recovery in an open's trace: up to
/// the restored database's reconnect, and the marker's removal after it.
fn recovery_part(trace: &[String]) -> Vec<(String, u32)> {
    let all = positions(trace);
    let end = all
        .iter()
        .position(|(p, _)| p == "sysdb::recover::reconnected")
        .map_or(all.len(), |i| (i + 2).min(all.len()));
    all.into_iter().take(end).collect()
}

struct Explorer {
    /// How deep kills nest: 1 kills the migration only, 2 also the
    /// recovery after it, 3 also the recovery of that recovery.
    depth: u32,
    digest: String,
    /// Rows of `items` with an owner every converged open must have.
    owned: Option<i64>,
    tally: Tally,
    /// Opens that recovered, or finished a recovery.
    recoveries: u64,
    rng: rand::rngs::StdRng,
    started: Instant,
}

impl Explorer {
    /// Verify `state`; if it is the start, or a recovery followed, kill
    /// that open at each of its failpoint hits and explore each result.
    fn explore(&mut self, state: &StateDir, depth: u32, path: &str) {
        let outcome = match verify(state, &self.digest) {
            Ok(outcome) => outcome,
            Err(e) => {
                self.tally
                    .failures
                    .push(format!("after kills [{path}]: {e}"));
                return;
            }
        };
        self.tally.scenarios += 1;
        *self.tally.classes.entry(class_of(&outcome)).or_default() += 1;
        self.recoveries += u64::from(recovered(&outcome));
        if let Some(owned) = self.owned {
            if outcome.owned != Some(owned) {
                self.tally.failures.push(format!(
                    "after kills [{path}]: {:?} rows with an owner, not the {owned} the logged commits before the unreplayable step wrote",
                    outcome.owned
                ));
            }
            self.tally.rows_kept += u64::try_from(outcome.owned.unwrap_or(0)).unwrap_or(0);
        }
        if depth == self.depth || (depth > 0 && !recovered(&outcome)) {
            return;
        }
        let mut targets = if depth == 0 {
            positions(&outcome.trace)
        } else {
            recovery_part(&outcome.trace)
        };
        // The deepest level is sampled (one kill per state, seeded) in the
        // default mode.
        if depth == self.depth - 1 && depth > 0 && !long() {
            let keep = 1.min(targets.len());
            for i in 0..keep {
                let j = self.rng.random_range(i..targets.len());
                targets.swap(i, j);
            }
            targets.truncate(keep);
        }
        for (i, (point, hit)) in targets.into_iter().enumerate() {
            let deaths: &[Death] = match (long(), i % 2) {
                (true, _) => &[Death::Kill, Death::Abort],
                (false, 0) => &[Death::Kill],
                (false, _) => &[Death::Abort],
            };
            for &death in deaths {
                let kill = Kill {
                    point: point.clone(),
                    hit,
                    death,
                };
                let here = format!(
                    "{path}{}{point}#{hit} {death:?}",
                    if path.is_empty() { "" } else { " > " }
                );
                match killed(state, &kill) {
                    Ok(next) => {
                        self.tally.kills += 1;
                        self.explore(&next, depth + 1, &here);
                    }
                    Err(e) => self.tally.failures.push(format!("kill [{here}]: {e}")),
                }
            }
        }
    }
}

fn matrix(start: u32) {
    let seed = seed();
    let (folder, digest) = seeded(start);
    let mut explorer = Explorer {
        // The default mode nests kills from the first start version only.
        depth: if long() || start == STARTS[0] {
            DEPTH
        } else {
            1
        },
        digest,
        owned: None,
        tally: Tally::new(&format!("kill matrix from v{start}"), seed, long()),
        recoveries: 0,
        rng: rand::rngs::StdRng::seed_from_u64(seed ^ u64::from(start)),
        started: Instant::now(),
    };
    explorer.explore(&folder, 0, "");
    if explorer.recoveries == 0 {
        explorer
            .tally
            .failures
            .push("no kill led to a recovery: the matrix does not reach the recovery".to_owned());
    }
    explorer.tally.millis = explorer.started.elapsed().as_millis() as u64;
    finish(&explorer.tally);
}

/// The commits of owners a crashed service left in the log before the
/// unreplayable step 4, each updating a quarter of the seeded rows.
pub(crate) const LOGGED_UPDATES: u32 = 3;

/// [`LOGGED_UPDATES`] commits of owners.
fn owner_updates() -> Vec<String> {
    (0..LOGGED_UPDATES)
        .map(|k| format!("UPDATE items SET owner = 'owner-{k}' WHERE id % 4 = {k};"))
        .collect()
}

/// A folder at `version` with the seeded rows, then `commits` committed
/// by a connection with checkpoints off that is dropped without one: the
/// log a killed service leaves.
fn crashed_with(version: u32, commits: &[String]) -> (StateDir, String) {
    let (folder, digest) = seeded(version);
    let paths = folder.paths();
    let conn = duckdb::Connection::open_with_flags(
        paths.db(),
        sysdb::Connector::config(&sysdb::DuckDbConnector).expect("config"),
    )
    .expect("open");
    conn.execute_batch(sysdb_scenarios::child::CHECKPOINTS_OFF)
        .expect("checkpoints off");
    for commit in commits {
        conn.execute_batch(commit)
            .unwrap_or_else(|e| panic!("{commit}: {e}"));
    }
    drop(conn);
    assert!(paths.wal().exists(), "no write-ahead log");
    (folder, digest)
}

/// The SQL of step `version` of the suite's ladder, alone.
fn step_sql(version: u32) -> String {
    ladder_to(version)
        .step(version)
        .expect("a step")
        .sql()
        .to_owned()
}

/// A folder at version 2 whose log holds [`LOGGED_UPDATES`] commits of
/// owners, then the statements of steps 3 and 4 in one commit (a service's
/// own: step 3 creates the enum type, step 4 casts to it), which DuckDB 2.0
/// cannot replay, not even through ATTACH: no DuckDB holds a type the same
/// commit creates.
pub(crate) fn crashed_with_updates_before_step_4() -> (StateDir, String) {
    let mut commits = owner_updates();
    commits.push(steps_3_and_4());
    crashed_with(2, &commits)
}

/// A folder at version 2 whose log holds one commit that no replay can
/// apply, not even through ATTACH: the statements of steps 3 and 4 in one
/// transaction (a cast to a type the same commit creates). Its recovery
/// restores the database file at its last checkpoint, by copy.
pub(crate) fn crashed_unreplayable() -> (StateDir, String) {
    crashed_with(2, &[steps_3_and_4()])
}

/// The statements of steps 3 and 4 in one commit.
fn steps_3_and_4() -> String {
    format!("BEGIN; {} {} COMMIT;", step_sql(3), step_sql(4))
}

/// A folder at version 4 whose log holds [`LOGGED_UPDATES`] commits of
/// owners, a table with `CHECK (trim(note) <> '')` and an ALTER of it
/// (which DuckDB 2.0's plain open cannot replay, ATTACH can), then step 5's
/// statement committed alone, without its version row, as a service's own
/// ladder that runs its DDL outside the transaction of its version row
/// leaves it when killed between the two.
pub(crate) fn crashed_with_a_torn_step_5() -> (StateDir, String) {
    let mut commits = owner_updates();
    commits
        .push("CREATE TABLE notes (id INTEGER, note VARCHAR CHECK (trim(note) <> ''));".to_owned());
    commits.push("ALTER TABLE notes ADD COLUMN extra INTEGER;".to_owned());
    commits.push(step_sql(5));
    crashed_with(4, &commits)
}

/// The kill matrix from a folder whose log holds the owners' commits:
/// its first open must be what `start` accepts (its report and failpoint
/// trace), and every converged open after every kill keeps those commits.
fn matrix_over_logged_updates(
    name: &str,
    (folder, digest): (StateDir, String),
    start: impl Fn(&serde_json::Value, &str) -> bool,
) {
    let seed = seed();
    let mut explorer = Explorer {
        depth: if long() { DEPTH } else { 2 },
        digest,
        owned: Some(i64::from(ROWS / 4 * LOGGED_UPDATES)),
        tally: Tally::new(name, seed, long()),
        recoveries: 0,
        rng: rand::rngs::StdRng::seed_from_u64(seed),
        started: Instant::now(),
    };
    match verify(&folder, &explorer.digest) {
        Ok(outcome) => {
            let report = outcome.report.unwrap_or_default();
            if !start(&report, &outcome.trace.join(" ")) {
                explorer.tally.failures.push(format!(
                    "the start does not open as this matrix needs: {report}"
                ));
            }
        }
        Err(e) => explorer.tally.failures.push(format!("the start: {e}")),
    }
    explorer.explore(&folder, 0, "");
    explorer.tally.millis = explorer.started.elapsed().as_millis() as u64;
    finish(&explorer.tally);
}

/// Kills at every failpoint of an open that salvages the log's commits
/// before the unreplayable step (the whole log replayed on a copy, the
/// read-only replays of cut copies, the copy restored), and of the
/// recovery after each: every converged open keeps those commits.
#[test]
fn kill_matrix_in_a_salvage() {
    matrix_over_logged_updates(
        "kill matrix in a salvage",
        crashed_with_updates_before_step_4(),
        |report, trace| {
            report["restored"]["source"] == "salvaged" && trace.contains("sysdb::recover::probed")
        },
    );
}

/// Kills at every failpoint of an open whose log replays through ATTACH
/// but ends with a torn step, which the recovery leaves for the ladder to
/// apply again (the whole log replayed on a copy, the ladder run on copies
/// of it and of the prefix without the torn step, that prefix restored),
/// and of the recovery after each: every converged open keeps the logged
/// commits before the torn step and reaches the top.
#[test]
fn kill_matrix_over_a_torn_step() {
    matrix_over_logged_updates(
        "kill matrix over a torn step",
        crashed_with_a_torn_step_5(),
        |report, _| {
            let log = &report["restored"]["log"];
            report["restored"]["source"] == "salvaged"
                && log["reapplied"]["commits"] == 1
                && log["first_failed"].is_null()
        },
    );
}

#[test]
fn kill_matrix_from_version_1() {
    matrix(STARTS[0]);
}

#[test]
fn kill_matrix_from_version_2() {
    matrix(STARTS[1]);
}

#[test]
fn kill_matrix_from_version_3() {
    matrix(STARTS[2]);
}

/// The state a kill right after step 4's commit leaves: the step only in
/// a write-ahead log DuckDB cannot replay.
pub(crate) fn crashed_in_step_4(folder: &StateDir) -> StateDir {
    // From version 1, steps 2, 3 and 4 run: step 4 is the third step.
    killed(
        folder,
        &Kill {
            point: "schema::step::checkpoint".to_owned(),
            hit: 3,
            death: Death::Kill,
        },
    )
    .expect("crash in step 4")
}

#[test]
fn random_kills() {
    let seed = seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut tally = Tally::new("random kills", seed, long());
    let started = Instant::now();
    let (healthy, digest) = seeded(1);
    let crashed = crashed_in_step_4(&healthy);
    // How long a whole open takes here, to aim the kills inside it.
    let timed = Instant::now();
    let full = verify(&crashed, &digest).expect("the crashed state recovers");
    let span = timed.elapsed();
    assert!(full.ok);
    let iterations = if long() { 300 } else { 12 };
    for i in 0..iterations {
        let start = if i % 2 == 0 { &healthy } else { &crashed };
        let state = start.copy();
        let kills = rng.random_range(1..=3u32);
        let mut path = Vec::new();
        for _ in 0..kills {
            let delay = Duration::from_micros(rng.random_range(0..span.as_micros() as u64));
            let mut child = super::child::command(&Job {
                data: state.data.clone(),
                ..Job::default()
            })
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn child");
            std::thread::sleep(delay);
            let finished = child.try_wait().expect("wait").is_some();
            let _ = child.kill();
            let _ = child.wait();
            path.push(format!(
                "{}ms{}",
                delay.as_millis(),
                if finished { " (done first)" } else { "" }
            ));
            tally.kills += u64::from(!finished);
        }
        match verify(&state, &digest) {
            Ok(outcome) => {
                tally.scenarios += 1;
                *tally.classes.entry(class_of(&outcome)).or_default() += 1;
            }
            Err(e) => tally.failures.push(format!(
                "iteration {i} from {} after SIGKILL at [{}]: {e}",
                if i % 2 == 0 {
                    "healthy v1"
                } else {
                    "crash in step 4"
                },
                path.join(", ")
            )),
        }
    }
    tally.millis = started.elapsed().as_millis() as u64;
    finish(&tally);
}

/// Run `job` in `n` children started together.
fn at_once(job: &Job, n: usize) -> Vec<End> {
    // A child that holds the database until released is released once
    // every other child has ended.
    let ended = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    let end = run(job, TIMEOUT);
                    if ended.fetch_add(1, Ordering::SeqCst) + 1 == n - 1 {
                        if let Some(release) = &job.options.hold_until {
                            fs_err::write(release, "").expect("release the holder");
                        }
                    }
                    end
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("runner"))
            .collect()
    })
}

/// `n` processes open a folder at once; every one must end at the top with
/// every row, and exactly `recoveries` of them recover (or resume one).
fn race(
    tally: &mut Tally,
    label: &str,
    state: &StateDir,
    digest: &str,
    n: usize,
    recoveries: usize,
) {
    let copy = state.copy();
    let before = folder_digest(&copy.state());
    let job = Job {
        data: copy.data.clone(),
        ..Job::default()
    };
    let outcomes: Vec<End> = at_once(&job, n);
    tally.scenarios += 1;
    let mut recovered_by = 0;
    for end in outcomes {
        match end {
            End::Finished(outcome) => {
                *tally.classes.entry(class_of(&outcome)).or_default() += 1;
                recovered_by += usize::from(recovered(&outcome));
                if let Err(e) = check_opened(&outcome, digest, &copy.state()) {
                    tally.failures.push(format!("{label}, {n} processes: {e}"));
                }
            }
            other => tally.failures.push(format!(
                "{label}, {n} processes: a child ended as {other:?}"
            )),
        }
    }
    if recovered_by != recoveries {
        tally.failures.push(format!(
            "{label}, {n} processes: {recovered_by} recovered, expected {recoveries}"
        ));
    }
    if let Err(e) = nothing_deleted(&before, &folder_digest(&copy.state())) {
        tally.failures.push(format!("{label}, {n} processes: {e}"));
    }
}

/// `n` processes open a folder at once without waiting for the lock, and
/// the one that gets it keeps it until every other has ended: exactly one
/// opens, every other gets `Locked` naming that one's pid.
fn contend(tally: &mut Tally, label: &str, state: &StateDir, n: usize) {
    let copy = state.copy();
    let job = Job {
        data: copy.data.clone(),
        options: super::ChildOptions {
            lock_wait_ms: Some(0),
            hold_until: Some(copy.data.parent().expect("copy folder").join("release")),
            ..super::ChildOptions::default()
        },
        ..Job::default()
    };
    let ends: Vec<End> = at_once(&job, n);
    tally.scenarios += 1;
    let outcomes: Vec<Outcome> = ends
        .into_iter()
        .filter_map(|end| match end {
            End::Finished(outcome) => Some(*outcome),
            other => {
                tally.failures.push(format!(
                    "{label}, {n} contending: a child ended as {other:?}"
                ));
                None
            }
        })
        .collect();
    let opened: Vec<&Outcome> = outcomes.iter().filter(|o| o.ok).collect();
    let [holder] = opened.as_slice() else {
        tally.failures.push(format!(
            "{label}, {n} contending: {} opened, expected exactly one",
            opened.len()
        ));
        return;
    };
    for o in outcomes.iter().filter(|o| !o.ok) {
        *tally.classes.entry(class_of(o)).or_default() += 1;
        if o.locked_by != Some(holder.pid) {
            tally.failures.push(format!(
                "{label}, {n} contending: expected Locked by {}, got {:?} ({:?})",
                holder.pid, o.locked_by, o.error
            ));
        }
    }
}

#[test]
fn processes_racing_over_killed_migrations_and_recoveries() {
    let seed = seed();
    let mut tally = Tally::new("concurrency", seed, long());
    let started = Instant::now();
    let (healthy, digest) = seeded(1);
    let crashed = crashed_in_step_4(&healthy);
    // The recovery killed with the database set aside and not yet restored.
    let half_recovered = killed(
        &crashed,
        &Kill {
            point: "snapshot::quarantine::sync-dir".to_owned(),
            hit: 1,
            death: Death::Kill,
        },
    )
    .expect("kill the recovery");
    tally.kills += 2;
    assert!(!half_recovered.paths().db().exists());
    for n in [2, 4, 8] {
        race(&mut tally, "healthy", &healthy, &digest, n, 0);
        race(&mut tally, "crash in step 4", &crashed, &digest, n, 1);
        race(
            &mut tally,
            "recovery killed",
            &half_recovered,
            &digest,
            n,
            1,
        );
    }
    for n in [2, 4, 8] {
        contend(&mut tally, "crash in step 4", &crashed, n);
    }
    tally.millis = started.elapsed().as_millis() as u64;
    finish(&tally);
}

/// Kills at every failpoint hit of an operator's recovery by hand, from
/// the database at its last checkpoint and from the snapshot, after a
/// crash in step 4: the next open finishes the recovery the operator chose
/// and reaches the top with every seeded row, deleting nothing.
#[test]
fn kill_matrix_of_a_recovery_by_hand() {
    let seed = seed();
    let mut tally = Tally::new("kill matrix by hand", seed, long());
    let started = Instant::now();
    let (folder, digest) = seeded(STARTS[0]);
    let crashed = crashed_in_step_4(&folder);
    for from_snapshot in [false, true] {
        let job = Job {
            by_hand: Some(from_snapshot),
            ..Job::default()
        };
        let copy = crashed.copy();
        let trace = match run(
            &Job {
                data: copy.data.clone(),
                ..job.clone()
            },
            TIMEOUT,
        ) {
            End::Finished(outcome) if outcome.ok => outcome.trace,
            other => {
                tally.failures.push(format!(
                    "the recovery by hand (from snapshot: {from_snapshot}) failed: {other:?}"
                ));
                continue;
            }
        };
        if let Err(e) = verify(&copy, &digest) {
            tally
                .failures
                .push(format!("the open after the recovery by hand: {e}"));
        }
        tally.scenarios += 1;
        for (point, hit) in positions(&trace) {
            let kill = Kill {
                point: point.clone(),
                hit,
                death: Death::Kill,
            };
            tally.scenarios += 1;
            let state = match killed_in(&crashed, &kill, &job) {
                Ok(state) => state,
                Err(e) => {
                    tally.failures.push(format!("{point}#{hit}: {e}"));
                    continue;
                }
            };
            tally.kills += 1;
            if let Err(e) = verify(&state, &digest) {
                tally.failures.push(format!(
                    "killed at {point}#{hit} of a recovery by hand (from snapshot: {from_snapshot}): {e}"
                ));
            }
        }
    }
    tally.millis = started.elapsed().as_millis() as u64;
    finish(&tally);
}
