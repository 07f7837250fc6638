//! Setting a broken database aside, listing and pruning what was set aside.

use std::collections::BTreeMap;
use std::io;
use std::time::SystemTime;

use camino::Utf8PathBuf;

use crate::copy::{io_point, rename_noreplace};
use crate::names::{DbFiles, SIDECAR_SUFFIXES};
use crate::{sync_dir, ClosedDb, Error, Result};

/// How many `-<n>` names are tried within one second before giving up.
const MAX_SEQ: u32 = 100_000;

/// One file moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Where it was.
    pub from: Utf8PathBuf,
    /// Where it is now.
    pub to: Utf8PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What [`quarantine`] moved where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The set's id: the UTC stamp, and `-<n>` when the second was taken
    /// (`20261127T101500Z-1`).
    pub id: String,
    /// The files moved, sidecars first and the database last; empty when
    /// none of them existed.
    pub moved: Vec<Moved>,
}

impl Quarantined {
    /// Where the database file itself went, if it existed.
    pub fn database(&self) -> Option<&Moved> {
        self.moved.iter().find(|m| {
            !SIDECAR_SUFFIXES
                .iter()
                .any(|s| m.from.as_str().ends_with(s))
        })
    }
}

/// One quarantine set found in a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineSet {
    /// The set's id (`20261127T101500Z` or `20261127T101500Z-2`).
    pub id: String,
    /// When the set was made (the stamp, to the second).
    pub stamp: SystemTime,
    /// The set's files and their sizes, the database first.
    pub files: Vec<(Utf8PathBuf, u64)>,
}

impl QuarantineSet {
    /// The total size of the set's files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, b)| b).sum()
    }
}

/// Move the database and every sidecar DuckDB may have left aside, by
/// rename, to `<db>.broken.<UTC stamp>` and `<db>.broken.<stamp>.wal`, ….
///
/// A missing sidecar is not an error, and the sidecars are moved even when
/// the database file itself is missing. The sidecars are moved before the
/// database, so that a process killed halfway never leaves a database beside
/// a write-ahead log that does not belong to it. A set whose names are taken
/// (a second quarantine in the same second) gets `-1`, `-2`, …; an existing
/// file is never overwritten or deleted. The folder is synced before this
/// returns.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = camino::Utf8PathBuf::try_from(dir.path().join("system.duckdb"))?;
/// use sysdb_snapshot::{list, quarantine, ClosedDb, DbFiles};
///
/// let files = DbFiles::new(&path)?;
/// std::fs::write(files.db(), b"db")?;
/// std::fs::write(files.wal(), b"wal")?;
/// let set = quarantine(&ClosedDb::assume_closed(files.clone()))?;
/// assert_eq!(set.moved.len(), 2);
/// assert!(!files.db().exists() && !files.wal().exists());
/// assert_eq!(list(&files)?[0].id, set.id);
/// # Ok(()) }
/// ```
pub fn quarantine(db: &ClosedDb) -> Result<Quarantined> {
    quarantine_at(db, SystemTime::now())
}

pub(crate) fn quarantine_at(db: &ClosedDb, now: SystemTime) -> Result<Quarantined> {
    let files = db.files();
    // Sidecars first, the database last.
    let mut remaining: Vec<(&str, Utf8PathBuf, u64)> = SIDECAR_SUFFIXES
        .iter()
        .map(|s| (*s, files.sibling(s)))
        .chain(std::iter::once(("", files.db().to_owned())))
        .filter_map(|(suffix, path)| {
            let meta = fs_err::symlink_metadata(&path).ok()?;
            Some((suffix, path, meta.len()))
        })
        .collect();
    let stamp = stamp(now);
    let mut moved = Vec::new();
    let mut id = stamp.clone();
    let mut seq = 0u32;
    while !remaining.is_empty() {
        id = if seq == 0 {
            stamp.clone()
        } else {
            format!("{stamp}-{seq}")
        };
        let target = |suffix: &str| files.sibling(&format!(".broken.{id}{suffix}"));
        let all_free = std::iter::once("")
            .chain(SIDECAR_SUFFIXES)
            .all(|s| fs_err::symlink_metadata(target(s)).is_err());
        if all_free {
            while let Some((suffix, from, bytes)) = remaining.first().cloned() {
                let to = target(suffix);
                match io_point("snapshot::quarantine::rename")
                    .and_then(|()| rename_noreplace(&from, &to))
                {
                    Ok(()) => {
                        remaining.remove(0);
                        moved.push(Moved { from, to, bytes });
                    }
                    // Someone took the name after we looked: next name.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => break,
                    Err(source) => {
                        // What was moved stays moved; make that durable.
                        sync_dir(files.dir())?;
                        return Err(Error::Rename {
                            from,
                            to,
                            cause: source,
                        });
                    }
                }
            }
        }
        if remaining.is_empty() {
            break;
        }
        seq += 1;
        if seq > MAX_SEQ {
            sync_dir(files.dir())?;
            return Err(Error::NamesExhausted {
                db: files.db().to_owned(),
                last: target(""),
            });
        }
    }
    if !moved.is_empty() {
        io_point("snapshot::quarantine::sync-dir").map_err(|source| Error::SyncDir {
            dir: files.dir().to_owned(),
            cause: source,
        })?;
        sync_dir(files.dir())?;
    }
    Ok(Quarantined { id, moved })
}

/// The quarantine sets beside the database, newest first.
///
/// Only names of the exact form `<db>.broken.<stamp>[-<n>][<sidecar suffix>]`
/// are considered; nothing else in the folder is part of a set.
pub fn list(files: &DbFiles) -> Result<Vec<QuarantineSet>> {
    let dir = files.dir();
    let prefix = files.quarantine_prefix();
    let entries = match fs_err::read_dir(dir) {
        Ok(entries) => entries,
        // A folder that does not exist yet holds no set.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::List {
                dir: dir.to_owned(),
                cause: source,
            })
        }
    };
    let mut sets: BTreeMap<(SystemTime, u32), QuarantineSet> = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::List {
            dir: dir.to_owned(),
            cause: source,
        })?;
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some((stamp, seq, id, _)) = parse_member(rest) else {
            continue;
        };
        let path = dir.join(name.to_str().unwrap_or_default());
        let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
        let set = sets.entry((stamp, seq)).or_insert_with(|| QuarantineSet {
            id: id.to_owned(),
            stamp,
            files: Vec::new(),
        });
        set.files.push((path, bytes));
    }
    let mut sets: Vec<QuarantineSet> = sets.into_values().rev().collect();
    for set in &mut sets {
        // The database (the shortest name) first, then the sidecars by name.
        set.files
            .sort_by(|(a, _), (b, _)| (a.as_str().len(), a).cmp(&(b.as_str().len(), b)));
    }
    Ok(sets)
}

/// [`Error::RecoveryInFlight`] while the recovery marker
/// ([`DbFiles::recovering`]) is there: [`prune`] refuses then, deleting
/// nothing, and a caller may ask first, before it asks its user.
pub fn prune_possible(files: &DbFiles) -> Result<()> {
    let marker = files.recovering();
    match fs_err::symlink_metadata(&marker) {
        Ok(_) => Err(Error::RecoveryInFlight {
            db: files.db().to_owned(),
            marker,
        }),
        Err(_) => Ok(()),
    }
}

/// Remove the oldest quarantine sets beyond the newest `keep`, returning the
/// sets removed. The live database, its sidecars and the snapshot are never
/// part of a set and so are never touched. Refused, deleting nothing, while
/// the recovery marker ([`DbFiles::recovering`]) says a recovery is in
/// flight: the newest set may then hold the only copy of the database.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = camino::Utf8PathBuf::try_from(dir.path().join("system.duckdb"))?;
/// use sysdb_snapshot::{list, prune, quarantine, ClosedDb, DbFiles};
///
/// let files = DbFiles::new(&path)?;
/// let db = ClosedDb::assume_closed(files.clone());
/// for _ in 0..3 {
///     std::fs::write(files.db(), b"db")?;
///     quarantine(&db)?;
/// }
/// let removed = prune(&files, 1)?;
/// assert_eq!(removed.len(), 2);
/// assert_eq!(list(&files)?.len(), 1);
/// # Ok(()) }
/// ```
pub fn prune(files: &DbFiles, keep: usize) -> Result<Vec<QuarantineSet>> {
    prune_possible(files)?;
    let removed: Vec<QuarantineSet> = list(files)?.into_iter().skip(keep).collect();
    for set in &removed {
        for (path, _) in &set.files {
            fs_err::remove_file(path).map_err(|source| Error::Remove {
                path: path.clone(),
                cause: source,
            })?;
        }
    }
    if !removed.is_empty() {
        sync_dir(files.dir())?;
    }
    Ok(removed)
}

/// `20261127T101500Z` for a time.
fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace(['-', ':'], "")
}

/// The time a stamp names.
fn parse_stamp(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
    if !shape_ok {
        return None;
    }
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    );
    humantime::parse_rfc3339(&rfc).ok()
}

/// Split `<stamp>[-<n>][<suffix>]` into its parts.
fn parse_member(rest: &str) -> Option<(SystemTime, u32, &str, &str)> {
    let stamp = parse_stamp(rest.get(..16)?)?;
    let after = &rest[16..];
    let (seq, suffix) = match after.strip_prefix('-') {
        Some(tail) => {
            let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
            let seq = tail[..digits].parse::<u32>().ok().filter(|n| *n > 0)?;
            if tail[..digits].starts_with('0') {
                return None;
            }
            (seq, &tail[digits..])
        }
        None => (0, after),
    };
    if !(suffix.is_empty() || SIDECAR_SUFFIXES.contains(&suffix)) {
        return None;
    }
    let id = &rest[..rest.len() - suffix.len()];
    Some((stamp, seq, id, suffix))
}

/// The quarantine names of a set, for tests.
#[cfg(test)]
pub(crate) fn member_path(files: &DbFiles, id: &str, suffix: &str) -> Utf8PathBuf {
    files.sibling(&format!(".broken.{id}{suffix}"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn setup() -> (tempfile::TempDir, DbFiles) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Utf8PathBuf::try_from(dir.path().join("system.duckdb")).expect("utf-8 path");
        (dir, DbFiles::new(db).expect("valid path"))
    }

    const T: u64 = 1_795_774_500; // 2026-11-27T10:15:00Z

    #[test]
    fn stamps_round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(T);
        assert_eq!(stamp(t), "20261127T101500Z");
        assert_eq!(parse_stamp("20261127T101500Z"), Some(t));
        assert_eq!(parse_stamp("20261127T101500"), None);
        assert_eq!(parse_stamp("2026112XT101500Z"), None);
    }

    #[test]
    fn member_names_parse_strictly() {
        let t = UNIX_EPOCH + Duration::from_secs(T);
        assert_eq!(
            parse_member("20261127T101500Z"),
            Some((t, 0, "20261127T101500Z", ""))
        );
        assert_eq!(
            parse_member("20261127T101500Z-12.wal.checkpoint"),
            Some((t, 12, "20261127T101500Z-12", ".wal.checkpoint"))
        );
        for bad in [
            "20261127T101500Z-0",
            "20261127T101500Z-01",
            "20261127T101500Z-",
            "20261127T101500Z.tmp",
            "20261127T101500Z.wal.bak",
            "x",
            "",
        ] {
            assert_eq!(parse_member(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_hundred_quarantines_in_one_second_make_a_hundred_complete_sets() {
        let (_dir, files) = setup();
        let db = ClosedDb::assume_closed(files.clone());
        let now = UNIX_EPOCH + Duration::from_secs(T);
        let mut ids = Vec::new();
        for i in 0..100u32 {
            fs_err::write(files.db(), format!("db {i}")).expect("write");
            fs_err::write(files.wal(), format!("wal {i}")).expect("write");
            let q = quarantine_at(&db, now).expect("quarantine");
            assert_eq!(q.moved.len(), 2);
            assert_eq!(
                fs_err::read_to_string(member_path(&files, &q.id, "")).expect("read"),
                format!("db {i}")
            );
            assert_eq!(
                fs_err::read_to_string(member_path(&files, &q.id, ".wal")).expect("read"),
                format!("wal {i}")
            );
            ids.push(q.id);
        }
        assert_eq!(ids[0], "20261127T101500Z");
        assert_eq!(ids[1], "20261127T101500Z-1");
        assert_eq!(ids[99], "20261127T101500Z-99");
        let sets = list(&files).expect("list");
        assert_eq!(sets.len(), 100);
        assert!(sets.iter().all(|s| s.files.len() == 2));
        assert_eq!(sets[0].id, "20261127T101500Z-99", "newest first");
    }

    #[test]
    fn a_name_taken_by_a_stray_file_is_skipped_not_overwritten() {
        let (_dir, files) = setup();
        let now = UNIX_EPOCH + Duration::from_secs(T);
        let stray = member_path(&files, "20261127T101500Z", ".wal.recovery");
        fs_err::write(&stray, b"stray").expect("write");
        fs_err::write(files.db(), b"db").expect("write");
        let q = quarantine_at(&ClosedDb::assume_closed(files.clone()), now).expect("quarantine");
        assert_eq!(q.id, "20261127T101500Z-1");
        assert_eq!(fs_err::read(&stray).expect("read"), b"stray");
    }

    #[test]
    fn a_missing_database_with_a_wal_is_still_quarantined() {
        let (_dir, files) = setup();
        fs_err::write(files.wal(), b"wal").expect("write");
        let q = quarantine(&ClosedDb::assume_closed(files.clone())).expect("quarantine");
        assert_eq!(q.moved.len(), 1);
        assert_eq!(q.moved[0].from, files.wal());
        assert!(q.database().is_none());
        assert!(!files.wal().exists());
    }

    #[test]
    fn nothing_to_move_is_not_an_error() {
        let (dir, files) = setup();
        let q = quarantine(&ClosedDb::assume_closed(files)).expect("quarantine");
        assert!(q.moved.is_empty());
        assert_eq!(fs_err::read_dir(dir.path()).expect("list").count(), 0);
    }

    #[test]
    fn prune_refuses_while_a_recovery_is_in_flight_and_deletes_nothing() {
        let (dir, files) = setup();
        let db = ClosedDb::assume_closed(files.clone());
        for i in 0..3u64 {
            fs_err::write(files.db(), b"db").expect("write");
            quarantine_at(&db, UNIX_EPOCH + Duration::from_secs(T + i)).expect("quarantine");
        }
        fs_err::write(files.recovering(), b"{}").expect("write the marker");
        let before = list(&files).expect("list");
        match prune(&files, 0) {
            Err(Error::RecoveryInFlight { marker, .. }) => assert_eq!(marker, files.recovering()),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(list(&files).expect("list"), before);
        assert_eq!(fs_err::read_dir(dir.path()).expect("list").count(), 4);
        fs_err::remove_file(files.recovering()).expect("remove the marker");
        assert_eq!(prune(&files, 0).expect("prune").len(), 3);
    }

    #[test]
    fn prune_keeps_the_newest_and_never_the_live_files() {
        let (dir, files) = setup();
        let db = ClosedDb::assume_closed(files.clone());
        for i in 0..5u64 {
            fs_err::write(files.db(), b"db").expect("write");
            fs_err::write(files.wal(), b"wal").expect("write");
            quarantine_at(&db, UNIX_EPOCH + Duration::from_secs(T + i)).expect("quarantine");
        }
        fs_err::write(files.db(), b"live").expect("write");
        fs_err::write(files.wal(), b"live wal").expect("write");
        fs_err::write(files.snapshot(), b"snapshot").expect("write");
        fs_err::write(files.sibling(".broken.notes.txt"), b"operator notes").expect("write");
        let removed = prune(&files, 2).expect("prune");
        let removed_ids: Vec<&str> = removed.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            removed_ids,
            ["20261127T101502Z", "20261127T101501Z", "20261127T101500Z"]
        );
        let mut left: Vec<String> = fs_err::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "system.duckdb",
                "system.duckdb.broken.20261127T101503Z",
                "system.duckdb.broken.20261127T101503Z.wal",
                "system.duckdb.broken.20261127T101504Z",
                "system.duckdb.broken.20261127T101504Z.wal",
                "system.duckdb.broken.notes.txt",
                "system.duckdb.pre-migrate",
                "system.duckdb.wal",
            ]
        );
    }
}
