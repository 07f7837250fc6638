//! `sysdb status` and `sysdb check`: look, change nothing.

use std::fmt::Write as _;
use std::time::Duration;

use camino::Utf8PathBuf;
use serde::Serialize;
use sysdb::report::{Marker, Recovering, RestoreSource};
use sysdb::{OpenOptions, Outcome, Paths, SystemDb};

use crate::error::Error;
use crate::global::{open_read_only, read_version, ProbeArgs};
use crate::out::{age, bytes, emit};
use crate::Global;

#[derive(Debug, Serialize)]
struct FileInfo {
    path: Utf8PathBuf,
    bytes: u64,
}

fn file_info(path: Utf8PathBuf) -> Option<FileInfo> {
    let bytes = fs_err::metadata(&path).ok()?.len();
    Some(FileInfo { path, bytes })
}

#[derive(Debug, Serialize)]
struct SnapshotInfo {
    path: Utf8PathBuf,
    bytes: u64,
    age: String,
    version: Option<u32>,
}

#[derive(Debug, Serialize)]
struct SetInfo {
    id: String,
    bytes: u64,
    files: Vec<FileInfo>,
}

#[derive(Debug, Serialize)]
struct SchemaInfo {
    /// The file's storage version, as DuckDB names it (`v1.4.0+`).
    storage_version: Option<String>,
    version: Option<u32>,
    top: Option<u32>,
    pending: Vec<u32>,
    drift: Vec<u32>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Status {
    database: Utf8PathBuf,
    database_bytes: Option<u64>,
    sidecars: Vec<FileInfo>,
    snapshot: Option<SnapshotInfo>,
    previous_snapshot: Option<SnapshotInfo>,
    marker: Option<Marker>,
    marker_error: Option<String>,
    recovering: Option<Recovering>,
    recovering_error: Option<String>,
    quarantine: Vec<SetInfo>,
    lock_held: bool,
    lock_holder_pid: Option<u32>,
    schema: SchemaInfo,
}

fn schema_info(global: &Global, paths: &Paths, ladder: Option<&sysdb::Ladder>) -> SchemaInfo {
    let mut info = SchemaInfo {
        storage_version: None,
        version: None,
        top: ladder.map(sysdb::Ladder::top),
        pending: Vec::new(),
        drift: Vec::new(),
        error: None,
    };
    if !paths.db().exists() {
        info.error = Some("the database file does not exist".to_owned());
        return info;
    }
    let conn = match open_read_only(global, paths.db()) {
        Ok(conn) => conn,
        Err(e) => {
            let class = sysdb_errclass::classify_error(&e);
            info.error = Some(format!("{}: {e}", class.as_str()));
            return info;
        }
    };
    info.storage_version = sysdb::storage_version_of(&conn).ok().flatten();
    match ladder {
        Some(ladder) => match ladder.status(&conn) {
            Ok(s) => {
                info.version = Some(s.current);
                info.pending = s.pending;
                info.drift = s.drift.iter().map(|d| d.version).collect();
            }
            Err(e) => info.error = Some(e.to_string()),
        },
        None => info.version = read_version(&conn),
    }
    info
}

/// `sysdb status`.
pub fn status(global: &Global) -> Result<u8, Error> {
    let paths = global.paths()?;
    let ladder = global.ladder()?;
    let files = paths.files();
    let snapshot_info = |path| {
        file_info(path).map(|f| SnapshotInfo {
            age: fs_err::metadata(&f.path)
                .and_then(|m| m.modified())
                .map(age)
                .unwrap_or_default(),
            version: open_read_only(global, &f.path)
                .ok()
                .and_then(|c| read_version(&c)),
            path: f.path,
            bytes: f.bytes,
        })
    };
    let snapshot = snapshot_info(paths.snapshot());
    let previous_snapshot = snapshot_info(paths.previous_snapshot());
    let (marker, marker_error) = match Marker::read(&paths.marker()) {
        Ok(m) => (m, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let (recovering, recovering_error) = match Recovering::read(&paths.recovering()) {
        Ok(m) => (m, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let quarantine = sysdb_snapshot::list(files)?
        .into_iter()
        .map(|set| SetInfo {
            bytes: set.bytes(),
            files: set
                .files
                .into_iter()
                .map(|(path, bytes)| FileInfo { path, bytes })
                .collect(),
            id: set.id,
        })
        .collect();
    let holder = sysdb::by_hand::lock_holder(&paths);
    let status = Status {
        database: paths.db().to_owned(),
        database_bytes: fs_err::metadata(paths.db()).ok().map(|m| m.len()),
        sidecars: files.sidecars().into_iter().filter_map(file_info).collect(),
        snapshot,
        previous_snapshot,
        marker,
        marker_error,
        recovering,
        recovering_error,
        quarantine,
        lock_held: holder.is_some(),
        lock_holder_pid: holder.and_then(|h| h.pid),
        schema: schema_info(global, &paths, ladder.as_ref()),
    };
    emit(global, &status, human_status);
    Ok(0)
}

fn human_status(s: &Status) -> String {
    let mut out = String::new();
    let _ = match s.database_bytes {
        Some(b) => writeln!(out, "database    {} ({})", s.database, bytes(b)),
        None => writeln!(out, "database    {} (missing)", s.database),
    };
    for f in &s.sidecars {
        let _ = writeln!(
            out,
            "sidecar     {} ({}; commits not yet checkpointed into the database)",
            f.path,
            bytes(f.bytes)
        );
    }
    let _ = match &s.snapshot {
        Some(snap) => writeln!(
            out,
            "snapshot    {} ({}, written {} ago, schema version {})",
            snap.path,
            bytes(snap.bytes),
            snap.age,
            snap.version.map_or("unknown".to_owned(), |v| v.to_string())
        ),
        None => writeln!(out, "snapshot    none"),
    };
    if let Some(snap) = &s.previous_snapshot {
        let _ = writeln!(
            out,
            "previous    {} ({}, written {} ago, schema version {}; kept until a migration completes)",
            snap.path,
            bytes(snap.bytes),
            snap.age,
            snap.version.map_or("unknown".to_owned(), |v| v.to_string())
        );
    }
    let _ = match (&s.marker, &s.marker_error) {
        (Some(m), _) => writeln!(
            out,
            "marker      a migration {} -> {} started at {} by process {} did not finish",
            m.from, m.to, m.started_at, m.pid
        ),
        (None, Some(e)) => writeln!(out, "marker      unreadable: {e}"),
        (None, None) => writeln!(out, "marker      none (no migration in flight)"),
    };
    let _ = match (&s.recovering, &s.recovering_error) {
        (Some(r), _) => writeln!(
            out,
            "recovery    a recovery started at {} by process {} ({}) did not finish; the next open finishes it",
            r.started_at, r.pid, r.class
        ),
        (None, Some(e)) => writeln!(out, "recovery    marker unreadable: {e}"),
        (None, None) => Ok(()),
    };
    if s.quarantine.is_empty() {
        let _ = writeln!(out, "quarantine  empty");
    }
    for set in &s.quarantine {
        let _ = writeln!(
            out,
            "quarantine  set {} ({} files, {})",
            set.id,
            set.files.len(),
            bytes(set.bytes)
        );
    }
    let _ = match (s.lock_held, s.lock_holder_pid) {
        (false, _) => writeln!(out, "lock        free"),
        (true, Some(pid)) => writeln!(out, "lock        held by process {pid}"),
        (true, None) => writeln!(out, "lock        held by another process"),
    };
    let schema = &s.schema;
    if let Some(version) = &schema.storage_version {
        let _ = writeln!(
            out,
            "storage     version {version} (the oldest DuckDB that reads the file)"
        );
    }
    let _ = match (&schema.error, schema.version, schema.top) {
        (Some(e), _, _) => writeln!(out, "schema      cannot be read: {e}"),
        (None, v, Some(top)) => writeln!(
            out,
            "schema      version {} of {top}; pending: {}; drift: {}",
            v.unwrap_or(0),
            list(&schema.pending),
            list(&schema.drift)
        ),
        (None, v, None) => writeln!(
            out,
            "schema      version {} (pass --migrations DIR to compare with the ladder)",
            v.map_or("unknown".to_owned(), |v| v.to_string())
        ),
    };
    out
}

fn list(v: &[u32]) -> String {
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
    }
}

// ---------------------------------------------------------------------------

/// What `check` found.
#[derive(Debug, Serialize)]
struct Verdict {
    /// What the open on the copy came to (`outcome`, with `source` or
    /// `why`).
    #[serde(flatten)]
    outcome: Outcome,
    /// `healthy`, `migrate`, `recover` or `refuse`: the outcome as what
    /// `migrate` would do.
    verdict: &'static str,
    /// What `migrate` would do, in words.
    would: Vec<String>,
    /// What that would lose, in words.
    would_lose: String,
    /// The report of the open run on the copy, with the real paths.
    report: Option<serde_json::Value>,
    /// The error the open on the copy ended with.
    error: Option<String>,
    /// For a refusal, what an operator can do next.
    next: Option<String>,
}

/// `n thing` or `n things`.
fn plural(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// `sysdb check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    probe: ProbeArgs,
    /// Say what `migrate --accept-drift` would do
    #[arg(long)]
    accept_drift: bool,
}

/// `sysdb check`: run the whole open flow on a copy and say what happened.
pub fn check(global: &Global, args: &CheckArgs) -> Result<u8, Error> {
    let paths = global.paths()?;
    let ladder = global.require_ladder()?;
    if let Some(holder) = sysdb::by_hand::lock_holder(&paths) {
        // A copy taken while another process works on the files may be torn.
        return Err(sysdb::Error::Locked {
            path: paths.lock(),
            pid: holder.pid,
            waited: Duration::ZERO,
        }
        .into());
    }
    // What the real folder must allow, which a copy elsewhere cannot show.
    if let Err(e) = sysdb::by_hand::preflight(&paths) {
        let next = crate::error::next_step(&e, &paths);
        return Ok(say(
            global,
            &paths,
            Verdict::refuse(e.outcome(), e.to_string(), next),
        ));
    }
    let tmp =
        tempfile::tempdir().map_err(Error::io("creating a temporary folder for", paths.dir()))?;
    let scratch = Utf8PathBuf::try_from(tmp.path().to_owned())
        .map_err(|e| Error::Refused(format!("the temporary folder is not UTF-8: {e}")))?;
    crate::out::note(&format!(
        "copying the files of {} to a temporary folder",
        paths.db()
    ));
    let copy = sysdb::by_hand::copy_state(&paths, &scratch)?;
    let options = OpenOptions::default()
        .lock_wait(Duration::ZERO)
        .probe(args.probe.probe(global)?)
        .accept_drift(args.accept_drift)
        .storage_version(global.storage_version())
        .progress(crate::out::progress_bars());
    let result = SystemDb::open_with(&copy, &ladder, &options, &global.connector());
    let real = |text: &str| text.replace(copy.dir().as_str(), paths.dir().as_str());
    let verdict = match &result {
        Ok(db) => {
            let report = db.report();
            let mut would = Vec::new();
            let mut would_lose = "nothing".to_owned();
            if let Some(restored) = &report.restored {
                for m in &report.quarantined {
                    would.push(real(&format!("set aside {} ({})", m.from, bytes(m.bytes))));
                }
                let log = restored.log.as_ref();
                let count = |n: Option<u64>| n.map_or("?".to_owned(), |n| n.to_string());
                let first_failed =
                    log.and_then(|l| l.first_failed.as_ref())
                        .map_or(String::new(), |f| {
                            format!(
                                "; the first that does not replay is commit {}: {}",
                                count(f.commit),
                                real(&f.error).replace('\n', " ")
                            )
                        });
                match restored.source {
                    RestoreSource::Replayed => {
                        would.push(format!(
                            "restore the database with its whole write-ahead log ({}), replayed on a copy through ATTACH",
                            log.and_then(|l| l.commits).map_or("every commit".to_owned(), |n| plural(n, "commit"))
                        ));
                    }
                    RestoreSource::Salvaged => {
                        let (kept, total, lost) = log.map_or((None, None, None), |l| {
                            (l.commits_kept, l.commits, l.commits_lost())
                        });
                        would.push(format!(
                            "restore the database with {} of the {} commits of its write-ahead log, replayed on a copy",
                            count(kept),
                            count(total),
                        ));
                        let reapplied = log.and_then(|l| l.reapplied.as_ref());
                        let for_ladder = reapplied.and_then(|r| r.commits).unwrap_or(0);
                        let mut lose = Vec::new();
                        if reapplied.is_none() || !first_failed.is_empty() {
                            lose.push(format!(
                                "{} of the write-ahead log, which DuckDB cannot replay{first_failed}",
                                lost.map_or("the last commits".to_owned(), |n| plural(n.saturating_sub(for_ladder), "commit"))
                            ));
                        }
                        if let Some(r) = reapplied {
                            lose.push(reapplied_words(r, &real));
                        }
                        would_lose =
                            format!("{}; the whole log stays in quarantine", lose.join("; and "));
                    }
                    RestoreSource::DatabaseAtLastCheckpoint => {
                        would.push("restore the database file at its last checkpoint".to_owned());
                        let why = match log.and_then(|l| l.reapplied.as_ref()) {
                            Some(r) if first_failed.is_empty() => {
                                format!(": {}", reapplied_words(r, &real))
                            }
                            _ => format!(", which DuckDB cannot replay{first_failed}"),
                        };
                        would_lose = format!(
                            "the commits in the write-ahead log set aside ({}{}){why}; they stay in quarantine",
                            bytes(report.wal_bytes_set_aside),
                            log.and_then(|l| l.commits).map_or(String::new(), |n| format!(", {}", plural(n, "commit")))
                        );
                    }
                    RestoreSource::Snapshot => {
                        let age = restored
                            .snapshot_age_secs
                            .map_or("unknown".to_owned(), |s| {
                                humantime::format_duration(Duration::from_secs(s)).to_string()
                            });
                        would.push(format!(
                            "restore the pre-migrate snapshot, written {age} ago"
                        ));
                        would_lose = format!(
                            "every write made after the snapshot was taken ({age} ago); the unreadable files stay in quarantine"
                        );
                    }
                }
            }
            if let Some(version) = &report.created {
                would.push(format!(
                    "create the database at storage version {version} (the oldest DuckDB that reads it)"
                ));
            }
            if let Some(m) = &report.migration {
                let steps: Vec<String> = m
                    .steps
                    .iter()
                    .map(|s| format!("{} {}", s.version, s.name))
                    .collect();
                would.push(format!(
                    "migrate from version {} to {} ({}), after a new pre-migrate snapshot",
                    m.from,
                    m.to,
                    steps.join(", ")
                ));
            }
            if would.is_empty() {
                would.push("open it at the ladder's top, with nothing to do".to_owned());
            }
            let value = serde_json::to_value(report).unwrap_or_default();
            let value = serde_json::from_str(&real(&value.to_string())).unwrap_or_default();
            let outcome = report.outcome();
            Verdict {
                verdict: verb(&outcome),
                outcome,
                would,
                would_lose,
                report: Some(value),
                error: None,
                next: None,
            }
        }
        Err(e) => Verdict::refuse(
            e.outcome(),
            real(&e.to_string()),
            crate::error::next_step(e, &paths),
        ),
    };
    drop(result);
    // A recovery needs room beside the real files for its copies.
    let verdict = match verdict.outcome {
        Outcome::Recovered { .. } => {
            let needed = sysdb::by_hand::recovery_space(&paths);
            match sysdb_snapshot::available_space(paths.dir()) {
                Ok(free) if free < needed => Verdict::refuse(
                    Outcome::Refused {
                        why: "disk-full".to_owned(),
                    },
                    format!(
                        "not enough free space beside {} for the recovery: it may take up to {}, and {} are free",
                        paths.db(),
                        bytes(needed),
                        bytes(free)
                    ),
                    Some(crate::error::room_hint(&paths)),
                ),
                _ => verdict,
            }
        }
        _ => verdict,
    };
    Ok(say(global, &paths, verdict))
}

impl Verdict {
    /// `refuse`, because of `error`.
    fn refuse(outcome: Outcome, error: String, next: Option<String>) -> Self {
        Verdict {
            verdict: verb(&outcome),
            outcome,
            would: vec!["refuse to open, and leave every file as it is".to_owned()],
            would_lose: "nothing; the service cannot start until an operator acts".to_owned(),
            report: None,
            error: Some(error),
            next,
        }
    }
}

/// `outcome` as what `migrate` would do.
fn verb(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Healthy => "healthy",
        Outcome::Migrated => "migrate",
        Outcome::Recovered { .. } => "recover",
        _ => "refuse",
    }
}

/// Print `verdict`; its exit code.
fn say(global: &Global, paths: &Paths, verdict: Verdict) -> u8 {
    emit(global, &verdict, |v| {
        let mut out = format!("{}: {}\n", paths.db(), v.verdict);
        for line in &v.would {
            let _ = writeln!(out, "  would {line}");
        }
        if let Some(error) = &v.error {
            let _ = writeln!(out, "  because: {error}");
        }
        let _ = writeln!(out, "  would lose: {}", v.would_lose);
        if v.verdict == "refuse" {
            let next = v.next.as_deref().unwrap_or(
                "see `sysdb status`; `sysdb recover --drop-wal` or `--from-snapshot` act by hand",
            );
            let _ = writeln!(out, "  next: {next}");
        } else if v.verdict != "healthy" {
            let _ = writeln!(out, "  next: `sysdb migrate` does this for real");
        }
        out
    });
    match verdict.outcome {
        Outcome::Healthy => 0,
        Outcome::Migrated => 10,
        Outcome::Recovered { .. } => 11,
        _ => 12,
    }
}

/// The commits a recovery leaves for the ladder to apply again, in words.
fn reapplied_words(r: &sysdb::report::Reapplied, real: &dyn Fn(&str) -> String) -> String {
    let which = match r.commits {
        Some(1) => "the last commit".to_owned(),
        Some(n) => format!("the last {n} commits"),
        None => "the last commits".to_owned(),
    };
    format!(
        "{which} of the log that replays, a migration committed without its version row, which the ladder applies again ({})",
        real(&r.error).replace('\n', " ")
    )
}
