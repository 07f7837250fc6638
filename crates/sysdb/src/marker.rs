//! The two markers sysdb keeps on disk while it changes the database: the
//! intent marker `system.duckdb.migrating`, present exactly while a
//! migration window is open and naming the snapshot that window took, and
//! the recovery marker `system.duckdb.recovering`, present from just before
//! a recovery sets the first file aside until the restored database opens.

use std::io::Read;

use camino::{Utf8Path, Utf8PathBuf};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Paths, Result};

/// What a migration window records before it changes the database.
///
/// It is written (atomically and durably) right after the pre-migrate
/// snapshot is complete, so a marker on disk always describes a whole
/// snapshot: one that the window's database changes have not reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The schema version before the window.
    pub from: u32,
    /// The version the window migrates to.
    pub to: u32,
    /// The pre-migrate snapshot.
    pub snapshot: Utf8PathBuf,
    /// Its size in bytes.
    pub snapshot_bytes: u64,
    /// Its XXH3-128, in lowercase hex; absent in a marker of a version
    /// before it, which recorded the SHA-256 alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_xxh3_128: Option<String>,
    /// Its SHA-256, in lowercase hex, in a marker of a version before the
    /// XXH3-128; empty since. It is still written, empty, so that a version
    /// that requires it reads the marker (and, unable to confirm the
    /// snapshot with it, keeps the snapshot and the database as they are).
    #[serde(default)]
    pub snapshot_sha256: String,
    /// When the window opened (RFC 3339, UTC).
    pub started_at: String,
    /// The process that opened it.
    pub pid: u32,
}

/// What a recovery records before it sets the first file aside, so that a
/// recovery killed half-way is finished by the next open instead of being
/// mistaken for a database that vanished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovering {
    /// The class of the failure that started it (`wal-replay`).
    pub class: String,
    /// Its text, as DuckDB (or the probe) gave it.
    pub error: String,
    /// When the recovery started (RFC 3339, UTC).
    pub started_at: String,
    /// The process that started it.
    pub pid: u32,
    /// The database the recovery restores, replayed on a copy before the
    /// first file was set aside, relative to the database's folder; absent
    /// when it restores the database file at its last checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<Utf8PathBuf>,
    /// The snapshot a recovery by hand restores (see
    /// [`by_hand::recover`](crate::by_hand::recover)), relative to the
    /// database's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Utf8PathBuf>,
}

impl Marker {
    /// Read the marker at `path`; `Ok(None)` when there is none.
    pub fn read(path: &Utf8Path) -> Result<Option<Self>> {
        read_json(path)
    }

    /// The marker as written to disk.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        json_bytes(self)
    }

    /// Whether `snapshot` is the snapshot this window took: the same file
    /// name (the folder may have moved since, say to another mount point),
    /// the same size, the same digest (the XXH3-128, or the SHA-256 that a
    /// version before it recorded).
    pub fn names_snapshot(&self, snapshot: &Utf8Path) -> Result<bool> {
        if self.snapshot.file_name() != snapshot.file_name() {
            return Ok(false);
        }
        let bytes = match fs_err::metadata(snapshot) {
            Ok(m) => m.len(),
            Err(_) => return Ok(false),
        };
        if bytes != self.snapshot_bytes {
            return Ok(false);
        }
        Ok(
            match (&self.snapshot_xxh3_128, self.snapshot_sha256.as_str()) {
                (Some(digest), _) => {
                    crate::blocks::digest(snapshot).map_err(|source| Error::Scan {
                        path: snapshot.to_owned(),
                        cause: source,
                    })? == *digest
                }
                (None, "") => false,
                (None, sha256) => sha256_file(snapshot)? == sha256,
            },
        )
    }
}

impl Recovering {
    /// Read the recovery marker at `path`; `Ok(None)` when there is none.
    pub fn read(path: &Utf8Path) -> Result<Option<Self>> {
        read_json(path)
    }

    /// The marker as written to disk.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        json_bytes(self)
    }
}

fn read_json<T: DeserializeOwned>(path: &Utf8Path) -> Result<Option<T>> {
    let text = match fs_err::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Marker {
                path: path.to_owned(),
                problem: source.to_string(),
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Marker {
            path: path.to_owned(),
            problem: e.to_string(),
        })
}

fn json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text.into_bytes()
}

impl Recovering {
    /// Write this recovery marker beside the database, durably.
    pub(crate) fn write(&self, paths: &Paths) -> Result<()> {
        sysdb_snapshot::write_durably(&paths.recovering(), &self.to_bytes())
            .map_err(Error::moving("writing the recovery marker for", paths.db()))
    }
}

/// The SHA-256 of a file, in lowercase hex, read in bounded memory.
pub(crate) fn sha256_file(path: &Utf8Path) -> Result<String> {
    let read_error = |source: std::io::Error| Error::Marker {
        path: path.to_owned(),
        problem: format!("reading it for its checksum: {source}"),
    };
    let mut file = fs_err::File::open(path).map_err(read_error)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(read_error)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The intent marker as the version before the XXH3-128 read it.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct MarkerBefore {
        from: u32,
        to: u32,
        snapshot: Utf8PathBuf,
        snapshot_bytes: u64,
        snapshot_sha256: String,
        started_at: String,
        pid: u32,
    }

    #[test]
    fn the_version_before_reads_a_marker_written_now() {
        let marker = Marker {
            from: 26,
            to: 27,
            snapshot: "/data/state/system.duckdb.pre-migrate".into(),
            snapshot_bytes: 3,
            snapshot_xxh3_128: Some("06b05ab6733a618578af5f94892f3950".to_owned()),
            snapshot_sha256: String::new(),
            started_at: "2026-11-27T12:00:00Z".to_owned(),
            pid: 42,
        };
        let bytes = marker.to_bytes();
        let before: MarkerBefore =
            serde_json::from_slice(&bytes).expect("the version before reads it");
        assert_eq!((before.from, before.to, before.snapshot_bytes), (26, 27, 3));
        assert_eq!(before.snapshot_sha256, "", "confirms no snapshot");
        insta::assert_snapshot!(String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn a_marker_round_trips_and_checks_its_snapshot() {
        let dir = tempfile::tempdir().expect("temp dir");
        let dir = Utf8PathBuf::try_from(dir.path().to_owned()).expect("utf-8");
        let snapshot = dir.join("system.duckdb.pre-migrate");
        fs_err::write(&snapshot, b"abc").expect("write");
        let marker = Marker {
            from: 26,
            to: 27,
            snapshot: snapshot.clone(),
            snapshot_bytes: 3,
            snapshot_xxh3_128: Some(
                crate::blocks::scan(&snapshot, None, &|_| {})
                    .expect("scan")
                    .digest,
            ),
            snapshot_sha256: String::new(),
            started_at: "2026-11-27T12:00:00Z".to_owned(),
            pid: 42,
        };
        // XXH3-128 of "abc", as the reference implementation gives it.
        assert_eq!(
            marker.snapshot_xxh3_128.as_deref(),
            Some("06b05ab6733a618578af5f94892f3950")
        );
        let path = dir.join("system.duckdb.migrating");
        assert_eq!(Marker::read(&path).expect("read"), None);
        fs_err::write(&path, marker.to_bytes()).expect("write");
        assert_eq!(Marker::read(&path).expect("read"), Some(marker.clone()));
        assert!(marker.names_snapshot(&snapshot).expect("check"));
        // The same snapshot in a folder that moved.
        let moved = dir.join("elsewhere");
        fs_err::create_dir(&moved).expect("mkdir");
        fs_err::copy(&snapshot, moved.join("system.duckdb.pre-migrate")).expect("copy");
        assert!(marker
            .names_snapshot(&moved.join("system.duckdb.pre-migrate"))
            .expect("check"));
        assert!(!marker
            .names_snapshot(&dir.join("system.duckdb"))
            .expect("another name"));

        fs_err::write(&snapshot, b"abd").expect("write");
        assert!(!marker.names_snapshot(&snapshot).expect("check"));
        fs_err::remove_file(&snapshot).expect("remove");
        assert!(!marker.names_snapshot(&snapshot).expect("check"));

        // A marker as the version before wrote it: its SHA-256 alone.
        let older = Marker {
            snapshot_xxh3_128: None,
            snapshot_sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                .to_owned(),
            ..marker.clone()
        };
        fs_err::write(&snapshot, b"abc").expect("write");
        assert_eq!(older.snapshot_sha256, sha256_file(&snapshot).expect("hash"));
        assert!(older.names_snapshot(&snapshot).expect("check"));
        let neither = Marker {
            snapshot_sha256: String::new(),
            ..older.clone()
        };
        assert!(!neither.names_snapshot(&snapshot).expect("check"));

        fs_err::write(&path, b"from = 26").expect("write");
        match Marker::read(&path) {
            Err(Error::Marker { path: p, .. }) => assert_eq!(p, path),
            other => panic!("unexpected {other:?}"),
        }
    }
}
