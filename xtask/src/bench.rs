//! `cargo xtask bench [--quick]`: each path of sysdb timed side by side
//! with its baseline in the same run (alternating, so a noisy machine slows
//! both alike), at growing database sizes. Prints a table and writes every
//! raw sample to `<target>/bench/latest.json`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use camino::{Utf8Path, Utf8PathBuf};
use duckdb::Connection;
use serde::Serialize;
use sysdb::{Ladder, OpenOptions, Paths, SystemDb};
use sysdb_snapshot::{take, ClosedDb};

use crate::crash;
use sysdb_scenarios::child::Death;

const MIB: u64 = 1 << 20;

/// The benchmark's ladder: 1 makes the table, 2 a small table and an enum
/// type (so that a crash can leave a log that does not replay), 3 adds a
/// column (the migration measured).
fn ladder(top: u32) -> Ladder {
    let steps = [
        (
            1,
            "create_items",
            "CREATE TABLE items (id BIGINT, payload VARCHAR, state VARCHAR);",
        ),
        (
            2,
            "create_tags",
            "CREATE TABLE tags (state VARCHAR); INSERT INTO tags VALUES ('new'); CREATE SCHEMA s;",
        ),
        (
            3,
            "add_owner",
            "ALTER TABLE items ADD COLUMN owner VARCHAR;",
        ),
    ];
    Ladder::new(steps.into_iter().filter(|(v, _, _)| *v <= top)).expect("valid ladder")
}

/// A commit DuckDB 2.0 cannot replay from its write-ahead log, not even
/// through ATTACH: it casts to a type it creates itself.
const UNREPLAYABLE: &str = "CREATE TYPE s.item_state AS ENUM ('new', 'done'); ALTER TABLE tags ALTER COLUMN state SET TYPE s.item_state USING state::s.item_state;";

/// Timings of one measure at one size: subject (sysdb) and baseline,
/// alternating, in seconds.
#[derive(Debug, Default, Serialize)]
struct Measure {
    name: &'static str,
    subject: &'static str,
    baseline: &'static str,
    subject_secs: Vec<f64>,
    baseline_secs: Vec<f64>,
    /// The goal for the ratio of medians, if there is one.
    goal: Option<f64>,
    /// Where the subject's time went, by the open report's phases
    /// (`lock`, `connect`, `plan`, `snapshot`, …), per run, in seconds.
    phases: BTreeMap<String, Vec<f64>>,
    /// Peak resident memory of the subject in a process of its own (KiB).
    peak_kib: Option<u64>,
    /// How the subject copied (stream or reflink), where it copies.
    method: Option<String>,
    /// What else the table says of the measure.
    note: Option<String>,
}

impl Measure {
    fn ratio(&self) -> f64 {
        median(&self.subject_secs) / median(&self.baseline_secs)
    }

    /// Record one subject run's phases from its report.
    fn phases_of(&mut self, report: &sysdb::OpenReport) {
        for phase in &report.timings {
            if phase.name != "total" {
                self.phases
                    .entry(phase.name.to_owned())
                    .or_default()
                    .push(phase.millis as f64 / 1e3);
            }
        }
    }
}

#[derive(Debug, Serialize)]
struct Size {
    target_bytes: u64,
    bytes: u64,
    rows: i64,
    measures: Vec<Measure>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    memory: String,
    kernel: String,
    file_system: String,
    profile: &'static str,
}

#[derive(Debug, Serialize)]
struct Report {
    quick: bool,
    repetitions: usize,
    machine: Machine,
    sizes: Vec<Size>,
    /// Seconds per GiB (least squares over the sizes) of snapshot and
    /// recovery, and of their baselines.
    slopes: Vec<(String, f64, f64)>,
}

/// Run the benchmark. Without `--quick` it needs a release build, and
/// re-runs itself as one.
pub fn run(quick: bool) -> Result<(), String> {
    if !quick && cfg!(debug_assertions) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        eprintln!("building and running the benchmark in the release profile");
        let status = Command::new(cargo)
            .args(["run", "--release", "--locked", "-p", "xtask", "--", "bench"])
            .status()
            .map_err(|e| format!("cargo run --release: {e}"))?;
        return match status.success() {
            true => Ok(()),
            false => Err(format!("the release benchmark failed ({status})")),
        };
    }
    let (sizes, repetitions): (&[u64], usize) = if quick {
        (&[16 * MIB], 3)
    } else {
        (&[16 * MIB, 256 * MIB, 1024 * MIB], 7)
    };
    let out_dir = sysdb_scenarios::target_dir().join("bench");
    let work = out_dir.join("work");
    if work.exists() {
        fs_err::remove_dir_all(&work).map_err(|e| e.to_string())?;
    }
    fs_err::create_dir_all(&work).map_err(|e| e.to_string())?;

    let mut report = Report {
        quick,
        repetitions,
        machine: machine(&work),
        sizes: Vec::new(),
        slopes: Vec::new(),
    };
    // A copy-on-write file system, where this machine can make one (root,
    // xfsprogs): the snapshot's reflink branch, measured for real.
    let cow = match sysdb_scenarios::cow::CowMount::xfs(4 * 1024 * MIB) {
        Ok(mount) => Some(mount),
        Err(why) => {
            eprintln!("no copy-on-write mount, its measures are left out: {why}");
            None
        }
    };
    for &target in sizes {
        eprintln!("generating a {} MiB database", target / MIB);
        let base = work.join(format!("base-{}", target / MIB));
        let (bytes, rows) = generate(&base, target)?;
        let mut size = Size {
            target_bytes: target,
            bytes,
            rows,
            measures: Vec::new(),
        };
        eprintln!("  open, nothing to do");
        size.measures.push(open_noop(&base, repetitions)?);
        eprintln!("  snapshot");
        size.measures.push(snapshot(&base, &work, repetitions)?);
        if let Some(mount) = &cow {
            eprintln!("  snapshot and restore on XFS with reflink");
            size.measures
                .extend(on_cow(&base, mount.path(), repetitions)?);
        }
        eprintln!("  recovery");
        size.measures.push(recovery(&base, &work, repetitions)?);
        eprintln!("  migration window");
        size.measures
            .push(migration(&base, &work, target, repetitions)?);
        if !quick && target == sizes[0] {
            eprintln!("  salvage of a log of 1001 commits, the last failing");
            size.measures
                .push(salvage(&base, &work, rows, repetitions, 1000)?);
            eprintln!("  salvage of a log of 1001 commits, the 501st failing");
            size.measures
                .push(salvage(&base, &work, rows, repetitions, 500)?);
        }
        report.sizes.push(size);
        fs_err::remove_dir_all(&base).map_err(|e| e.to_string())?;
    }
    for name in ["snapshot", "recovery"] {
        let points = |subject: bool| -> Vec<(f64, f64)> {
            report
                .sizes
                .iter()
                .filter_map(|s| {
                    let m = s.measures.iter().find(|m| m.name == name)?;
                    let secs = if subject {
                        &m.subject_secs
                    } else {
                        &m.baseline_secs
                    };
                    Some((s.bytes as f64 / (1024.0 * MIB as f64), median(secs)))
                })
                .collect()
        };
        report
            .slopes
            .push((name.to_owned(), slope(&points(true)), slope(&points(false))));
    }
    fs_err::remove_dir_all(&work).map_err(|e| e.to_string())?;

    print!("{}", table(&report));
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    let path = out_dir.join("latest.json");
    fs_err::write(&path, json).map_err(|e| e.to_string())?;
    println!("raw samples: {path}");
    check_harness(&report)
}

/// What `--quick` asserts: every measure has every sample, all positive.
fn check_harness(report: &Report) -> Result<(), String> {
    for size in &report.sizes {
        for m in &size.measures {
            let complete = m.subject_secs.len() == report.repetitions
                && m.baseline_secs.len() == report.repetitions
                && m.subject_secs
                    .iter()
                    .chain(&m.baseline_secs)
                    .all(|s| *s > 0.0);
            if !complete {
                return Err(format!(
                    "{} at {} bytes: samples missing",
                    m.name, size.bytes
                ));
            }
        }
    }
    Ok(())
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn min_max(samples: &[f64]) -> (f64, f64) {
    samples
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| {
            (lo.min(*s), hi.max(*s))
        })
}

/// Least-squares slope of `(x, y)` points; NaN with fewer than two.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return f64::NAN;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let num: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    num / den
}

fn table(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let m = &report.machine;
    let _ = writeln!(
        out,
        "machine: {} cpus, {} memory, {}, {} file system, {} profile; {} repetitions, medians (min-max) in ms",
        m.cpus, m.memory, m.kernel, m.file_system, m.profile, report.repetitions
    );
    let _ = writeln!(
        out,
        "{:<10} {:<10} {:>24} {:>24} {:>7} {:>6}  notes",
        "size", "measure", "sysdb", "baseline", "ratio", "goal"
    );
    for size in &report.sizes {
        for me in &size.measures {
            let fmt = |s: &[f64]| {
                let (lo, hi) = min_max(s);
                format!("{:.1} ({:.1}-{:.1})", median(s) * 1e3, lo * 1e3, hi * 1e3)
            };
            let mut notes = Vec::new();
            if let Some(kib) = me.peak_kib {
                notes.push(format!("peak {} MiB", kib / 1024));
            }
            if let Some(method) = &me.method {
                notes.push(format!("copy: {method}"));
            }
            notes.extend(me.note.clone());
            if !me.phases.is_empty() {
                let phases: Vec<String> = me
                    .phases
                    .iter()
                    .map(|(name, secs)| format!("{name} {:.1}", median(secs) * 1e3))
                    .collect();
                notes.push(phases.join(" "));
            }
            let ratio = me.ratio();
            let goal = me.goal.map_or("-".to_owned(), |g| format!("{g:.2}"));
            if me.goal.is_some_and(|g| ratio > g) {
                notes.push("above goal".to_owned());
            }
            let _ = writeln!(
                out,
                "{:<10} {:<10} {:>24} {:>24} {:>7.2} {:>6}  {}",
                format!("{} MiB", size.bytes / MIB),
                me.name,
                fmt(&me.subject_secs),
                fmt(&me.baseline_secs),
                ratio,
                goal,
                notes.join("; ")
            );
        }
    }
    for (name, subject, baseline) in &report.slopes {
        if subject.is_finite() {
            let _ = writeln!(
                out,
                "slope {name}: {subject:.2} s/GiB (baseline {baseline:.2} s/GiB)"
            );
        }
    }
    out
}

fn machine(work: &Utf8Path) -> Machine {
    let sh = |cmd: &str| {
        Command::new("sh")
            .args(["-c", cmd])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory: sh("free -h | awk '/^Mem:/ {print $2}'"),
        kernel: sh("uname -sr"),
        file_system: sh(&format!("stat -f -c %T '{work}'")),
        profile: if cfg!(debug_assertions) {
            "dev (timings not representative)"
        } else {
            "release"
        },
    }
}

fn timed<T>(f: impl FnOnce() -> Result<T, String>) -> Result<(f64, T), String> {
    let started = Instant::now();
    let value = f()?;
    Ok((started.elapsed().as_secs_f64(), value))
}

fn paths(dir: &Utf8Path) -> Paths {
    Paths::for_db(dir.join("system.duckdb")).expect("a file name")
}

/// The paths of the database `db`.
fn paths_of(db: &str) -> Result<Paths, String> {
    Paths::for_db(db).map_err(|e| e.to_string())
}

/// A database of at least `target` bytes at version 2, checkpointed and
/// closed, in `dir`; its size and rows. Seeded: every run makes the same
/// rows.
fn generate(dir: &Utf8Path, target: u64) -> Result<(u64, i64), String> {
    fs_err::create_dir_all(dir).map_err(|e| e.to_string())?;
    let paths = paths(dir);
    let db =
        SystemDb::open(&paths, &ladder(2), &OpenOptions::default()).map_err(|e| e.to_string())?;
    let conn = db.conn();
    let chunk: i64 = 100_000;
    let mut rows = 0;
    while fs_err::metadata(paths.db()).map_or(0, |m| m.len()) < target {
        conn.execute_batch(&format!(
            "INSERT INTO items SELECT range, md5(range::VARCHAR || '-a') || md5(range::VARCHAR || '-b'), CASE WHEN range % 3 = 0 THEN 'done' ELSE 'new' END FROM range({rows}, {}); CHECKPOINT;",
            rows + chunk
        ))
        .map_err(|e| format!("generating rows: {e}"))?;
        rows += chunk;
    }
    drop(db);
    // The generator's snapshot is of the empty table; the measures take
    // their own.
    let _ = fs_err::remove_file(paths.snapshot());
    let bytes = fs_err::metadata(paths.db())
        .map_err(|e| e.to_string())?
        .len();
    Ok((bytes, rows))
}

/// A fresh copy of `base` in `work/<name>`, synced (not timed).
fn fresh(base: &Utf8Path, work: &Utf8Path, name: &str) -> Result<Utf8PathBuf, String> {
    let dir = work.join(name);
    if dir.exists() {
        fs_err::remove_dir_all(&dir).map_err(|e| e.to_string())?;
    }
    fs_err::create_dir_all(&dir).map_err(|e| e.to_string())?;
    fs_err::copy(paths(base).db(), paths(&dir).db()).map_err(|e| e.to_string())?;
    // On disk before any timing starts: a copy left to write back would
    // slow whichever fsync comes next.
    fs_err::File::open(paths(&dir).db())
        .and_then(|f| f.sync_all())
        .map_err(|e| e.to_string())?;
    Ok(dir)
}

fn raw_open(db: &Utf8Path) -> Result<Connection, String> {
    let conn = Connection::open_with_flags(
        db,
        sysdb::Connector::config(&sysdb::DuckDbConnector).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

/// 1. `SystemDb::open` on an up-to-date database vs
///    `Connection::open` + `SELECT 1`.
fn open_noop(base: &Utf8Path, reps: usize) -> Result<Measure, String> {
    let paths = paths(base);
    let ladder = ladder(2);
    let mut m = Measure {
        name: "open",
        subject: "SystemDb::open, nothing to do",
        baseline: "Connection::open + SELECT 1",
        goal: Some(1.05),
        ..Measure::default()
    };
    // One of each first, so both meet a warm page cache.
    drop(SystemDb::open(&paths, &ladder, &OpenOptions::default()).map_err(|e| e.to_string())?);
    drop(raw_open(paths.db())?);
    for _ in 0..reps {
        let (secs, db) = timed(|| {
            SystemDb::open(&paths, &ladder, &OpenOptions::default()).map_err(|e| e.to_string())
        })?;
        if db.report().migration.is_some() || db.report().error.is_some() {
            return Err("the open had something to do".to_owned());
        }
        m.phases_of(db.report());
        drop(db);
        m.subject_secs.push(secs);
        let (secs, conn) = timed(|| raw_open(paths.db()))?;
        drop(conn);
        m.baseline_secs.push(secs);
    }
    Ok(m)
}

/// 2. `take` vs `cp --reflink=never` + `sync` of the same file into the
///    same folder.
fn snapshot(base: &Utf8Path, work: &Utf8Path, reps: usize) -> Result<Measure, String> {
    let dir = fresh(base, work, "snapshot")?;
    let paths = paths(&dir);
    let closed = ClosedDb::assume_closed(paths.files().clone());
    let copy = dir.join("copy");
    let mut m = Measure {
        name: "snapshot",
        subject: "sysdb_snapshot::take",
        baseline: "cp --reflink=never && sync",
        goal: Some(1.10),
        ..Measure::default()
    };
    for _ in 0..reps {
        let _ = fs_err::remove_file(paths.snapshot());
        let (secs, taken) = timed(|| take(&closed).map_err(|e| e.to_string()))?;
        m.subject_secs.push(secs);
        m.method = Some(format!("{:?}", taken.method).to_lowercase());
        let _ = fs_err::remove_file(&copy);
        let (secs, ()) = timed(|| cp_and_sync("never", paths.db(), &copy))?;
        m.baseline_secs.push(secs);
    }
    m.peak_kib = Some(peak_of("take", paths.db())?);
    fs_err::remove_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(m)
}

/// `cp --reflink=WHEN FROM TO && sync TO`: the baseline of a copy.
fn cp_and_sync(when: &str, from: &Utf8Path, to: &Utf8Path) -> Result<(), String> {
    let status = Command::new("sh")
        .args([
            "-c",
            "cp --reflink=\"$1\" \"$2\" \"$3\" && sync \"$3\"",
            "cp",
        ])
        .args([when, from.as_str(), to.as_str()])
        .status()
        .map_err(|e| e.to_string())?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("cp failed: {status}"))
}

/// 2b. On a copy-on-write file system: `take` and `restore` vs
///     `cp --reflink=always` + `sync`. Both must clone.
fn on_cow(base: &Utf8Path, mount: &Utf8Path, reps: usize) -> Result<Vec<Measure>, String> {
    let dir = fresh(base, mount, "cow")?;
    let paths = paths(&dir);
    let closed = ClosedDb::assume_closed(paths.files().clone());
    let copy = dir.join("copy");
    let clone = |from: &Utf8Path| {
        let _ = fs_err::remove_file(&copy);
        cp_and_sync("always", from, &copy)
    };
    let measure = |name, subject| Measure {
        name,
        subject,
        baseline: "cp --reflink=always && sync",
        ..Measure::default()
    };
    let mut taking = measure("take-cow", "sysdb_snapshot::take");
    let mut restoring = measure("restore-cow", "sysdb_snapshot::restore");
    for _ in 0..reps {
        let _ = fs_err::remove_file(paths.snapshot());
        let (secs, taken) = timed(|| take(&closed).map_err(|e| e.to_string()))?;
        taking.subject_secs.push(secs);
        taking.method = Some(format!("{:?}", taken.method).to_lowercase());
        let (secs, ()) = timed(|| clone(paths.db()))?;
        taking.baseline_secs.push(secs);

        let snapshot = paths.snapshot();
        fs_err::remove_file(paths.db()).map_err(|e| e.to_string())?;
        let (secs, restored) =
            timed(|| sysdb_snapshot::restore(&closed, &snapshot).map_err(|e| e.to_string()))?;
        restoring.subject_secs.push(secs);
        restoring.method = Some(format!("{:?}", restored.method).to_lowercase());
        let (secs, ()) = timed(|| clone(&snapshot))?;
        restoring.baseline_secs.push(secs);
    }
    fs_err::remove_dir_all(&dir).map_err(|e| e.to_string())?;
    for m in [&taking, &restoring] {
        if m.method.as_deref() != Some("reflink") {
            return Err(format!(
                "{} on XFS with reflink copied by {:?}",
                m.name, m.method
            ));
        }
    }
    Ok(vec![taking, restoring])
}

/// The child that measures the peak memory of one `take` or one open.
pub const PEAK_CHILD: &str = "bench-peak";

/// The service's `memory_limit` in the child that measures an open's peak
/// memory: the peak shows what a recovery holds beside DuckDB's own pool.
const PEAK_MEMORY_LIMIT: &str = "256MiB";

/// Run `what` (`take` or `open`) on `db` in a process of its own; its peak
/// RSS in KiB.
fn peak_of(what: &str, db: &Utf8Path) -> Result<u64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args([PEAK_CHILD, what, db.as_str()])
        .output()
        .map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| {
            format!(
                "{PEAK_CHILD} {what}: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// The child half: take a snapshot of `db`, or open it as a service does
/// with `memory_limit` [`PEAK_MEMORY_LIMIT`]; print `VmHWM` in KiB.
pub fn peak_child(args: &[&str]) -> Result<(), String> {
    match args {
        ["take", db] => {
            let files = sysdb_snapshot::DbFiles::new(*db).map_err(|e| e.to_string())?;
            take(&ClosedDb::assume_closed(files)).map_err(|e| e.to_string())?;
        }
        ["open", db] => {
            let settings = sysdb::DuckDbSettings::new([("memory_limit", PEAK_MEMORY_LIMIT)]);
            let db = SystemDb::open_with(
                &paths_of(db)?,
                &ladder(2),
                &OpenOptions::default(),
                &settings,
            )
            .map_err(|e| e.to_string())?;
            if db.report().restored.is_none() {
                return Err("the open measured did not recover".to_owned());
            }
        }
        _ => return Err(format!("usage: {PEAK_CHILD} take|open DB")),
    }
    let status = fs_err::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or("no VmHWM in /proc/self/status")?;
    println!("{kib}");
    Ok(())
}

/// A copy of `base` in `work/<name>` with its snapshot, then a process
/// killed after committing a step whose log does not replay (not timed).
fn crashed(base: &Utf8Path, work: &Utf8Path, name: &str) -> Result<Paths, String> {
    let dir = fresh(base, work, name)?;
    let paths = paths(&dir);
    take(&ClosedDb::assume_closed(paths.files().clone())).map_err(|e| e.to_string())?;
    crash::crash(
        paths.db(),
        Death::Kill,
        &[format!("BEGIN; {UNREPLAYABLE} COMMIT;")],
    )?;
    Ok(paths)
}

/// 3. The whole recovery from a log that does not replay (quarantine,
///    restore, reopen; the ladder already at its top) vs the work no
///    recovery can skip: one open that fails on the log, a copy of the
///    snapshot made durable (`cp` + `sync`), one open of the copy.
fn recovery(base: &Utf8Path, work: &Utf8Path, reps: usize) -> Result<Measure, String> {
    let mut m = Measure {
        name: "recovery",
        subject: "SystemDb::open recovering",
        baseline: "failing open + cp && sync + open",
        goal: Some(1.20),
        ..Measure::default()
    };
    let ladder = ladder(2);
    for _ in 0..reps {
        let paths = crashed(base, work, "recovery")?;
        let dir = paths.dir().to_owned();
        let (secs, db) = timed(|| {
            SystemDb::open(&paths, &ladder, &OpenOptions::default()).map_err(|e| e.to_string())
        })?;
        if db.report().restored.is_none() {
            return Err("the recovery measure did not recover".to_owned());
        }
        m.phases_of(db.report());
        drop(db);
        m.subject_secs.push(secs);

        fs_err::remove_dir_all(&dir).map_err(|e| e.to_string())?;

        let paths = crashed(base, work, "recovery")?;
        let copy = paths.dir().join("restored.duckdb");
        let (secs, conn) = timed(|| {
            if raw_open(paths.db()).is_ok() {
                return Err("the baseline's log replayed".to_owned());
            }
            cp_and_sync("never", &paths.snapshot(), &copy)?;
            raw_open(&copy)
        })?;
        drop(conn);
        m.baseline_secs.push(secs);
        fs_err::remove_dir_all(paths.dir()).map_err(|e| e.to_string())?;
    }
    let paths = crashed(base, work, "recovery")?;
    m.peak_kib = Some(peak_of("open", paths.db())?);
    m.note = Some(format!("memory_limit {PEAK_MEMORY_LIMIT} for the peak"));
    fs_err::remove_dir_all(paths.dir()).map_err(|e| e.to_string())?;
    Ok(m)
}

/// 4. One ADD COLUMN step through `SystemDb::open` (snapshot, apply,
///    checkpoint) vs the same SQL + CHECKPOINT on a raw connection. The
///    window's floor on a file system without reflink is the step, its
///    checkpoint and one durable copy.
fn migration(
    base: &Utf8Path,
    work: &Utf8Path,
    target: u64,
    reps: usize,
) -> Result<Measure, String> {
    let mut m = Measure {
        name: "migration",
        subject: "SystemDb::open migrating 2 -> 3",
        baseline: "ALTER TABLE + CHECKPOINT",
        goal: Some(if target >= 1024 * MIB { 1.7 } else { 2.0 }),
        ..Measure::default()
    };
    let ladder = ladder(3);
    let step = ladder.step(3).ok_or("no step 3")?.sql().to_owned();
    for _ in 0..reps {
        let dir = fresh(base, work, "migration")?;
        let (secs, db) = timed(|| {
            SystemDb::open(&paths(&dir), &ladder, &OpenOptions::default())
                .map_err(|e| e.to_string())
        })?;
        if db.report().migration.is_none() {
            return Err("the migration measure did not migrate".to_owned());
        }
        m.phases_of(db.report());
        drop(db);
        m.subject_secs.push(secs);

        let dir = fresh(base, work, "migration")?;
        let (secs, ()) = timed(|| {
            let conn = raw_open(paths(&dir).db())?;
            conn.execute_batch(&format!("{step} CHECKPOINT;"))
                .map_err(|e| e.to_string())
        })?;
        m.baseline_secs.push(secs);
        fs_err::remove_dir_all(&dir).map_err(|e| e.to_string())?;
    }
    Ok(m)
}

/// 5. The salvage of a log of 1001 commits (about 13 MiB): 1000 of 180
///    rows and one that does not replay, last (the usual crash: the
///    migration step that was running) or after the first `failing`
///    commits of rows (the rows after it then replay no more). Every
///    commit before it is kept, in at most [`salvage_bound`] replays of
///    copies (2 for the usual crash), vs one open replaying those commits
///    (the same files, the log cut after the last of them).
fn salvage(
    base: &Utf8Path,
    work: &Utf8Path,
    rows: i64,
    reps: usize,
    failing: i64,
) -> Result<Measure, String> {
    const COMMITS: i64 = 1000;
    const ROWS_EACH: i64 = 180;
    let usual = failing == COMMITS;
    let most_replays = if usual { 2 } else { salvage_bound(COMMITS + 1) };
    let mut m = Measure {
        name: if usual { "salvage" } else { "salvage-mid" },
        subject: if usual {
            "SystemDb::open salvaging 1000 of 1001 commits"
        } else {
            "SystemDb::open salvaging the commits before a failing one"
        },
        baseline: "open replaying the commits kept",
        goal: usual.then_some(3.0),
        ..Measure::default()
    };
    let ladder = ladder(2);
    let mut stages: Vec<String> = (0..COMMITS)
        .map(|i| {
            let from = rows + i * ROWS_EACH;
            format!(
                "INSERT INTO items SELECT range, md5(range::VARCHAR || '-a') || md5(range::VARCHAR || '-b'), 'new' FROM range({from}, {});",
                from + ROWS_EACH
            )
        })
        .collect();
    let failing_at = usize::try_from(failing).map_err(|e| e.to_string())?;
    stages.insert(failing_at, format!("BEGIN; {UNREPLAYABLE} COMMIT;"));
    let count = |conn: &Connection| {
        conn.query_row("SELECT count(*) FROM items", [], |r| r.get::<_, i64>(0))
            .map_err(|e| e.to_string())
    };
    let want = rows + failing * ROWS_EACH;
    let mut most = 0;
    let mut log_bytes = 0;
    // The crashed folder, and a copy of it cut after the commits kept (the
    // baseline's); not timed.
    let crash = |name: &str| -> Result<(Paths, Paths), String> {
        let plain = paths(&fresh(base, work, &format!("{name}-plain"))?);
        let paths = paths(&fresh(base, work, name)?);
        take(&ClosedDb::assume_closed(paths.files().clone())).map_err(|e| e.to_string())?;
        let sizes = crash::crash(paths.db(), Death::Kill, &stages)?;
        fs_err::copy(paths.db(), plain.db()).map_err(|e| e.to_string())?;
        let good = sizes[failing_at
            .checked_sub(1)
            .ok_or("no commit before the failing one")?];
        let log = fs_err::File::open(paths.wal()).map_err(|e| e.to_string())?;
        let mut cut = fs_err::File::create(plain.wal()).map_err(|e| e.to_string())?;
        std::io::copy(&mut std::io::Read::take(log, good), &mut cut).map_err(|e| e.to_string())?;
        for file in [plain.db().to_owned(), plain.wal()] {
            fs_err::File::open(file)
                .and_then(|f| f.sync_all())
                .map_err(|e| e.to_string())?;
        }
        Ok((paths, plain))
    };
    for _ in 0..reps {
        let (paths, plain) = crash("salvage")?;
        log_bytes = fs_err::metadata(paths.wal())
            .map_err(|e| e.to_string())?
            .len();
        let (secs, db) = timed(|| {
            SystemDb::open(&paths, &ladder, &OpenOptions::default()).map_err(|e| e.to_string())
        })?;
        let kept = db
            .report()
            .restored
            .as_ref()
            .and_then(|r| r.log.clone())
            .ok_or("the salvage measure did not salvage")?;
        if kept.commits_kept != Some(failing as u64) || count(db.conn())? != want {
            return Err(format!(
                "the salvage kept {:?} of {failing} commits, {} of {want} rows",
                kept.commits_kept,
                count(db.conn())?
            ));
        }
        if kept.replays > most_replays {
            return Err(format!(
                "the salvage took {} replays, more than {most_replays}",
                kept.replays
            ));
        }
        most = most.max(kept.replays);
        m.phases_of(db.report());
        drop(db);
        m.subject_secs.push(secs);

        let (secs, conn) = timed(|| raw_open(plain.db()))?;
        if count(&conn)? != want {
            return Err("the baseline's cut log did not replay every commit".to_owned());
        }
        drop(conn);
        m.baseline_secs.push(secs);
        fs_err::remove_dir_all(paths.dir()).map_err(|e| e.to_string())?;
        fs_err::remove_dir_all(plain.dir()).map_err(|e| e.to_string())?;
    }
    let (paths, plain) = crash("salvage")?;
    m.peak_kib = Some(peak_of("open", paths.db())?);
    fs_err::remove_dir_all(paths.dir()).map_err(|e| e.to_string())?;
    fs_err::remove_dir_all(plain.dir()).map_err(|e| e.to_string())?;
    m.note = Some(format!(
        "a log of {:.1} MiB, {} commits, commit {} fails: all {failing} before it kept, at most {most} replays (bound {most_replays}); memory_limit {PEAK_MEMORY_LIMIT} for the peak",
        log_bytes as f64 / MIB as f64,
        COMMITS + 1,
        failing + 1
    ));
    Ok(m)
}

/// The most replays of copies a salvage of a log of `commits` may take:
/// the whole log, the first guess (all but the last commit), ⌈log2⌉
/// halvings, the build of the prefix found.
fn salvage_bound(commits: i64) -> u32 {
    u64::try_from(commits)
        .unwrap_or(1)
        .max(1)
        .next_power_of_two()
        .trailing_zeros()
        + 3
}
