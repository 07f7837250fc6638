//! Power cuts: an open runs on the FUSE layer ([`super::lazyfs`]), DuckDB's
//! own log and checkpoints included; the layer records what a power cut
//! would leave at every fsync, directory fsync and rename it serves (and a
//! torn variant: the newest unsynced write half kept); each distinct
//! remains is written to a plain folder and a fresh process opens it. It
//! must reach the ladder's top with every committed row, or refuse with a
//! classified error while a copy holding every row stays readable.
//!
//! The default mode opens every distinct remains of every start; the long
//! mode (`SYSDB_LONG=1`) adds the starts from versions 2 and 3.

use std::time::{Duration, Instant};

use camino::Utf8PathBuf;
use sysdb_scenarios::{folder_digest, StateDir, Tally};

use super::kills::{crashed_in_step_4, crashed_with_updates_before_step_4};
use super::lazyfs::{available, LazyFs, Remains};
use super::{
    check_opened, class_of, finish, long, nothing_deleted, run, seed, seeded, End, Job, ROWS,
};

/// No open of these small folders takes this long, even on a busy machine.
const TIMEOUT: Duration = Duration::from_secs(180);

/// A folder to open on the layer, and what every converged open must hold.
struct Start {
    name: String,
    folder: StateDir,
    digest: String,
    /// Rows of `items` with an owner: the salvaged commits.
    owned: Option<i64>,
}

fn starts() -> Vec<Start> {
    let mut starts = Vec::new();
    let versions: &[u32] = if long() { &[1, 2, 3] } else { &[1] };
    for &v in versions {
        let (folder, digest) = seeded(v);
        starts.push(Start {
            name: format!("a migration from v{v}"),
            folder,
            digest,
            owned: None,
        });
    }
    let (seeded_v1, digest) = seeded(1);
    starts.push(Start {
        name: "a recovery after a crash in step 4".to_owned(),
        folder: crashed_in_step_4(&seeded_v1),
        digest,
        owned: None,
    });
    let (folder, digest) = crashed_with_updates_before_step_4();
    starts.push(Start {
        name: "a salvage of the logged commits".to_owned(),
        folder,
        digest,
        owned: Some(i64::from(ROWS / 4 * super::kills::LOGGED_UPDATES)),
    });
    starts
}

/// Run the open of `start` on the layer; the remains it recorded.
fn open_on_the_layer(start: &Start) -> Result<Vec<Remains>, String> {
    let layer = LazyFs::with_copy_of(&start.folder.data).map_err(|e| format!("load: {e}"))?;
    let mount = tempfile::tempdir().map_err(|e| format!("mount point: {e}"))?;
    let at = Utf8PathBuf::try_from(mount.path().to_owned()).map_err(|e| e.to_string())?;
    let session = layer.mount(&at).map_err(|e| format!("mount {at}: {e}"))?;
    let job = Job {
        data: at.clone(),
        ..Job::default()
    };
    let outcome = match run(&job, TIMEOUT) {
        End::Finished(outcome) => *outcome,
        End::Died { status, tail } => {
            return Err(format!("the open on the layer died ({status}):\n{tail}"))
        }
        End::TimedOut => return Err(format!("the open on the layer ran past {TIMEOUT:?}")),
    };
    // Read through the mount, before it goes.
    let opened = check_opened(&outcome, &start.digest, &at.join("state"));
    drop(session);
    opened.map_err(|e| format!("the open on the layer: {e}"))?;
    Ok(layer.cuts())
}

/// The remains, each distinct one once.
fn distinct(cuts: Vec<Remains>) -> Vec<Remains> {
    let mut kept: Vec<Remains> = Vec::new();
    for cut in cuts {
        if !kept.iter().any(|k| k.same_as(&cut)) {
            kept.push(cut);
        }
    }
    kept
}

/// Open `remains` in a fresh process, on a plain folder: `Ok(class)` when it
/// converged (or refused, classified, with a copy of every row readable).
fn after_the_cut(start: &Start, remains: &Remains) -> Result<String, String> {
    let folder = StateDir::new();
    fs_err::remove_dir_all(&folder.data).map_err(|e| e.to_string())?;
    remains
        .write_to(&folder.data)
        .map_err(|e| format!("write the remains: {e}"))?;
    fs_err::create_dir_all(folder.state()).map_err(|e| e.to_string())?;
    let before = folder_digest(&folder.state());
    let job = Job {
        data: folder.data.clone(),
        ..Job::default()
    };
    let outcome = match run(&job, TIMEOUT) {
        End::Finished(outcome) => *outcome,
        End::Died { status, tail } => return Err(format!("the open died ({status}):\n{tail}")),
        End::TimedOut => return Err(format!("the open ran past {TIMEOUT:?}")),
    };
    if outcome.ok {
        check_opened(&outcome, &start.digest, &folder.state())?;
        // Every file a recovery before the cut set aside is still there,
        // byte for byte.
        nothing_deleted(&before, &folder_digest(&folder.state()))?;
        if let Some(owned) = start.owned {
            if outcome.owned != Some(owned) {
                return Err(format!(
                    "{:?} rows with an owner, not the {owned} the logged commits wrote",
                    outcome.owned
                ));
            }
        }
        return Ok(class_of(&outcome));
    }
    // A refusal: classified, and some copy in the folder holds every row.
    let kind = outcome.error_kind.clone().unwrap_or_default();
    if kind.is_empty() || kind.contains("unknown") {
        return Err(format!(
            "refused unclassified: {}",
            outcome.error.as_deref().unwrap_or("?")
        ));
    }
    let digests = Job {
        data: folder.data.clone(),
        digests: true,
        ..Job::default()
    };
    match run(&digests, TIMEOUT) {
        End::Finished(copies) if copies.digests.values().any(|d| *d == start.digest) => {
            Ok(format!("refused ({kind}), a copy holds every row"))
        }
        End::Finished(copies) => Err(format!(
            "refused ({kind}: {}) and no copy holds every row: {:?}",
            outcome.error.as_deref().unwrap_or("?"),
            copies.digests
        )),
        _ => Err(format!("refused ({kind}) and the copies could not be read")),
    }
}

#[test]
fn power_cuts_at_every_sync_point() {
    let started = Instant::now();
    let mut tally = Tally::new("power cuts", seed(), long());
    if let Err(why) = available() {
        if std::env::var("SYSDB_POWER_CUTS").is_ok_and(|v| v == "required") {
            tally.failures.push(format!(
                "SYSDB_POWER_CUTS=required, and the layer cannot run: {why}"
            ));
        }
        tally.skipped += 1;
        *tally.classes.entry(format!("skipped: {why}")).or_default() += 1;
        eprintln!("power cuts skipped: {why}");
        tally.millis = started.elapsed().as_millis() as u64;
        finish(&tally);
        return;
    }
    for start in starts() {
        let cuts = match open_on_the_layer(&start) {
            Ok(done) => done,
            Err(e) => {
                tally.failures.push(format!("{}: {e}", start.name));
                continue;
            }
        };
        let recorded = cuts.len();
        let torn = cuts.iter().filter(|c| c.torn).count();
        let cuts = distinct(cuts);
        eprintln!(
            "{}: {recorded} cuts recorded ({torn} torn), {} distinct",
            start.name,
            cuts.len()
        );
        if cuts.len() < 3 {
            tally.failures.push(format!(
                "{}: only {} distinct remains: the layer saw no syncs",
                start.name,
                cuts.len()
            ));
        }
        for remains in &cuts {
            tally.cuts += 1;
            tally.scenarios += 1;
            match after_the_cut(&start, remains) {
                Ok(class) => {
                    *tally.classes.entry(class).or_default() += 1;
                    tally.rows_kept +=
                        u64::from(ROWS) + start.owned.map_or(0, |o| u64::try_from(o).unwrap_or(0));
                }
                Err(e) => tally.failures.push(format!(
                    "{}, power cut {} {}: {e}",
                    start.name,
                    if remains.torn { "torn" } else { "at" },
                    remains.at
                )),
            }
        }
    }
    tally.millis = started.elapsed().as_millis() as u64;
    finish(&tally);
}
