//! File-system faults injected into the snapshot, the restore, quarantine
//! and the markers (ENOSPC, EIO on write, fsync and rename); a read-only
//! state folder; a database the process may not read; and the probe of a
//! replay that aborts its process.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use camino::Utf8Path;
use sysdb_scenarios::{folder_digest, Tally};

use super::{
    check_opened, class_of, finish, leftovers, long, run, seed, seeded, ChildOptions, Death, End,
    Job, Kill, Outcome, PathsOf, StateDir,
};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Run one open with `faults` armed; it must fail naming `doing`.
fn faulty_open(state: &StateDir, faults: &[(&str, &str)], doing: &str) -> Result<Outcome, String> {
    let job = Job {
        data: state.data.clone(),
        faults: faults
            .iter()
            .map(|(p, a)| ((*p).to_owned(), (*a).to_owned()))
            .collect(),
        ..Job::default()
    };
    let outcome = match run(&job, TIMEOUT) {
        End::Finished(outcome) => *outcome,
        other => return Err(format!("the open ended as {other:?}")),
    };
    match &outcome.error {
        None => Err("the open succeeded despite the fault".to_owned()),
        Some(text) if !text.contains(doing) => {
            Err(format!("the error does not say it was {doing}: {text}"))
        }
        Some(_) => Ok(outcome),
    }
}

/// After a faulty open: no temporary file, and a fault-free open brings the
/// folder to the top with every row.
fn then_recovers(state: &StateDir, digest: &str) -> Result<(), String> {
    let temps: Vec<String> = leftovers(&state.state())
        .into_iter()
        .filter(|n| n.contains(".tmp-"))
        .collect();
    if !temps.is_empty() {
        return Err(format!("temporary files left: {temps:?}"));
    }
    match run(
        &Job {
            data: state.data.clone(),
            ..Job::default()
        },
        TIMEOUT,
    ) {
        End::Finished(outcome) => check_opened(&outcome, digest, &state.state()),
        other => Err(format!("the open after the fault ended as {other:?}")),
    }
}

fn errno_text(errno: &str) -> &'static str {
    match errno {
        "ENOSPC" => "No space left on device",
        _ => "Input/output error",
    }
}

#[test]
fn file_system_faults_leave_a_clear_error_and_a_state_that_opens() {
    let seed = seed();
    let mut tally = Tally::new("file-system faults", seed, long());
    let started = Instant::now();
    let (healthy, digest) = seeded(1);
    // A recovery that restores by copy: a log no replay can apply.
    let (crashed, crashed_digest) = super::kills::crashed_unreplayable();
    assert_eq!(crashed_digest, digest, "the same seeded rows");

    // (starting state, failpoint, what the error must say it was doing)
    let cases: [(&str, &StateDir, &str, &str); 10] = [
        (
            "migration",
            &healthy,
            "snapshot::copy::write",
            "taking the pre-migrate snapshot",
        ),
        (
            "migration",
            &healthy,
            "snapshot::copy::sync",
            "taking the pre-migrate snapshot",
        ),
        (
            "migration",
            &healthy,
            "snapshot::copy::rename",
            "taking the pre-migrate snapshot",
        ),
        (
            "migration",
            &healthy,
            "snapshot::durable::write",
            "writing the intent marker",
        ),
        (
            "migration",
            &healthy,
            "snapshot::durable::rename",
            "writing the intent marker",
        ),
        (
            "recovery",
            &crashed,
            "snapshot::durable::write",
            "writing the recovery marker",
        ),
        (
            "recovery",
            &crashed,
            "snapshot::quarantine::rename",
            "quarantining",
        ),
        ("recovery", &crashed, "snapshot::copy::write", "restoring"),
        ("recovery", &crashed, "snapshot::copy::sync", "restoring"),
        ("recovery", &crashed, "snapshot::copy::rename", "restoring"),
    ];
    for (label, start, point, doing) in cases {
        for errno in ["ENOSPC", "EIO"] {
            let state = start.copy();
            let snapshot_before = folder_digest(&state.state())
                .get("system.duckdb.pre-migrate")
                .cloned();
            tally.faults += 1;
            tally.scenarios += 1;
            let action = format!("return({errno})");
            let result = faulty_open(&state, &[(point, &action)], doing).and_then(|outcome| {
                let text = outcome.error.clone().unwrap_or_default();
                if !text.contains(errno_text(errno)) {
                    return Err(format!("the error does not name the fault: {text}"));
                }
                *tally.classes.entry(class_of(&outcome)).or_default() += 1;
                // A failed snapshot keeps the old one, in place or as the
                // previous one.
                let after = folder_digest(&state.state());
                let kept = [".pre-migrate", ".pre-migrate.previous"]
                    .iter()
                    .any(|s| after.get(&format!("system.duckdb{s}")) == snapshot_before.as_ref());
                if snapshot_before.is_some() && !kept {
                    return Err("the old snapshot is gone".to_owned());
                }
                then_recovers(&state, &digest)
            });
            if let Err(e) = result {
                tally
                    .failures
                    .push(format!("{label}, {point}={action}: {e}"));
            }
        }
    }

    // After the rename: the new snapshot is in place but the folder's fsync
    // failed; the open must stop, and the next one go on.
    for (label, start, point, doing) in [
        (
            "migration",
            &healthy,
            "snapshot::copy::sync-dir",
            "taking the pre-migrate snapshot",
        ),
        (
            "recovery",
            &crashed,
            "snapshot::quarantine::sync-dir",
            "quarantining",
        ),
    ] {
        let state = start.copy();
        tally.faults += 1;
        tally.scenarios += 1;
        let result = faulty_open(&state, &[(point, "return(EIO)")], doing)
            .and_then(|_| then_recovers(&state, &digest));
        if let Err(e) = result {
            tally
                .failures
                .push(format!("{label}, {point}=return(EIO): {e}"));
        }
    }

    tally.millis = started.elapsed().as_millis() as u64;
    finish(&tally);
}

/// Run a child open without the privilege to ignore file permissions: as
/// root, with `CAP_DAC_OVERRIDE` and `CAP_DAC_READ_SEARCH` dropped.
fn unprivileged_open(state: &StateDir) -> End {
    let job = Job {
        data: state.data.clone(),
        ..Job::default()
    };
    let child = super::child::command(&job);
    let mut command = if rustix::process::geteuid().is_root() {
        let mut wrapped = std::process::Command::new("setpriv");
        wrapped
            .arg("--bounding-set=-dac_override,-dac_read_search")
            .arg("--")
            .arg(child.get_program())
            .args(child.get_args());
        for (k, v) in child.get_envs() {
            if let Some(v) = v {
                wrapped.env(k, v);
            }
        }
        wrapped
    } else {
        child
    };
    let output = command
        .stdin(Stdio::null())
        .output()
        .expect("run the child (setpriv, from util-linux, is needed when the tests run as root)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().find_map(super::child::outcome_in) {
        Some(json) if output.status.success() => {
            End::Finished(Box::new(serde_json::from_str(json).expect("outcome JSON")))
        }
        _ => End::Died {
            status: output.status.to_string(),
            tail: String::from_utf8_lossy(&output.stderr).into_owned(),
        },
    }
}

fn set_mode(path: &Utf8Path, mode: u32) {
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn a_read_only_folder_and_an_unreadable_database_are_refused_touching_nothing() {
    let seed = seed();
    let mut tally = Tally::new("permissions", seed, long());
    let started = Instant::now();
    let (healthy, digest) = seeded(1);

    type Damage = fn(&StateDir);
    let cases: [(&str, Damage); 3] = [
        ("read-only state folder", |f| set_mode(&f.state(), 0o555)),
        ("read-only folder and files", |f| {
            for entry in fs_err::read_dir(f.state()).expect("list") {
                let path = Utf8Path::from_path(&entry.expect("entry").path())
                    .expect("utf-8")
                    .to_owned();
                set_mode(&path, 0o444);
            }
            set_mode(&f.state(), 0o555);
        }),
        ("database not readable", |f| set_mode(f.paths().db(), 0o000)),
    ];
    for (label, damage) in cases {
        let state = healthy.copy();
        let before = folder_digest(&state.state());
        damage(&state);
        tally.faults += 1;
        tally.scenarios += 1;
        let end = unprivileged_open(&state);
        // Give every file back its permissions before looking at it.
        set_mode(&state.state(), 0o755);
        for entry in fs_err::read_dir(state.state()).expect("list") {
            let path = Utf8Path::from_path(&entry.expect("entry").path())
                .expect("utf-8")
                .to_owned();
            set_mode(&path, 0o644);
        }
        let result = match end {
            End::Finished(outcome) if !outcome.ok => {
                *tally.classes.entry(class_of(&outcome)).or_default() += 1;
                let after = folder_digest(&state.state());
                if after != before {
                    Err(format!("a file changed: {before:?} -> {after:?}"))
                } else if !leftovers(&state.state()).is_empty() {
                    Err(format!("left behind: {:?}", leftovers(&state.state())))
                } else {
                    then_recovers(&state, &digest)
                }
            }
            End::Finished(_) => Err("the open succeeded without permission".to_owned()),
            other => Err(format!("the open ended as {other:?}")),
        };
        if let Err(e) = result {
            tally.failures.push(format!("{label}: {e}"));
        }
    }
    tally.millis = started.elapsed().as_millis() as u64;
    finish(&tally);
}

/// The probe's program when this test binary plays it: `--exact
/// reliability::faults::probe_child <db>`.
pub(crate) fn probe_with_this_binary() -> (String, Vec<String>, u64) {
    (
        std::env::current_exe()
            .expect("test binary")
            .to_string_lossy()
            .into_owned(),
        vec![
            "--exact".to_owned(),
            "reliability::faults::probe_child".to_owned(),
            "--nocapture".to_owned(),
            "--test-threads=1".to_owned(),
        ],
        60_000,
    )
}

/// The probe child, when the last argument names a database; a no-op in
/// every other run.
#[test]
fn probe_child() {
    let Some(db) = std::env::args()
        .next_back()
        .filter(|a| a.ends_with("system.duckdb"))
    else {
        return;
    };
    if let Err(e) = sysdb::probe_open(Utf8Path::new(&db), std::time::Duration::from_secs(30)) {
        eprintln!("probe: {e}");
        std::process::exit(1);
    }
}

fn probed_open(state: &StateDir, probe: (String, Vec<String>, u64)) -> Outcome {
    let job = Job {
        data: state.data.clone(),
        options: ChildOptions {
            probe: Some(probe),
            ..ChildOptions::default()
        },
        ..Job::default()
    };
    match run(&job, TIMEOUT) {
        End::Finished(outcome) => *outcome,
        other => panic!("the probed open ended as {other:?}"),
    }
}

#[test]
fn a_replay_that_aborts_the_probe_is_recovered_and_a_slow_probe_is_refused() {
    let seed = seed();
    let mut tally = Tally::new("probe", seed, long());
    let started = Instant::now();
    let (healthy, digest) = seeded(1);
    let crashed = super::kills::crashed_in_step_4(&healthy);

    // A probe that aborts, as a replay that trips an assertion would.
    let state = crashed.copy();
    let outcome = probed_open(
        &state,
        (
            "/bin/sh".to_owned(),
            vec![
                "-c".to_owned(),
                "kill -ABRT $$".to_owned(),
                "probe".to_owned(),
            ],
            60_000,
        ),
    );
    tally.scenarios += 1;
    *tally.classes.entry(class_of(&outcome)).or_default() += 1;
    check_opened(&outcome, &digest, &state.state()).expect("recovered after the probe aborted");
    let report = outcome.report.expect("report");
    assert_eq!(report["probe"]["killed"]["signal"], 6, "{report:#}");
    assert_eq!(report["error"]["cause"], "process-aborted", "{report:#}");
    assert_eq!(report["restored"]["source"], "database-at-last-checkpoint");

    // A probe that hangs: refused, nothing touched.
    let state = crashed.copy();
    let before = folder_digest(&state.state());
    let outcome = probed_open(
        &state,
        (
            "/bin/sh".to_owned(),
            vec![
                "-c".to_owned(),
                "exec sleep 30".to_owned(),
                "probe".to_owned(),
            ],
            300,
        ),
    );
    tally.scenarios += 1;
    *tally.classes.entry(class_of(&outcome)).or_default() += 1;
    assert_eq!(
        outcome.error_kind.as_deref(),
        Some("refused: Probe"),
        "{outcome:?}"
    );
    assert!(outcome
        .error
        .unwrap_or_default()
        .contains("did not finish within 300ms"));
    assert_eq!(folder_digest(&state.state()), before, "a file changed");

    // The real probe (DuckDB in a child) on both a log that replays and
    // one that does not.
    let replayable = super::kills::killed(
        &healthy,
        &Kill {
            point: "schema::step::checkpoint".to_owned(),
            hit: 1,
            death: Death::Kill,
        },
    )
    .expect("a crash after step 2's commit");
    for (label, state, probe_exit) in [
        ("replayable", replayable.copy(), 0),
        ("not replayable", crashed.copy(), 1),
    ] {
        let outcome = probed_open(&state, probe_with_this_binary());
        tally.scenarios += 1;
        *tally.classes.entry(class_of(&outcome)).or_default() += 1;
        if let Err(e) = check_opened(&outcome, &digest, &state.state()) {
            tally.failures.push(format!("real probe, {label} log: {e}"));
        }
        let report = outcome.report.unwrap_or_default();
        if report["probe"]["exited"]["code"] != probe_exit {
            tally.failures.push(format!(
                "real probe, {label} log: probe {}",
                report["probe"]
            ));
        }
    }
    tally.millis = started.elapsed().as_millis() as u64;
    finish(&tally);
}
