//! The intent marker `system.duckdb.migrating`: on disk exactly while a
//! migration window is open, naming the snapshot that window took.

use std::io::Read;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

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
    /// Its SHA-256, in lowercase hex.
    pub snapshot_sha256: String,
    /// When the window opened (RFC 3339, UTC).
    pub started_at: String,
    /// The process that opened it.
    pub pid: u32,
}

impl Marker {
    /// Read the marker at `path`; `Ok(None)` when there is none.
    pub fn read(path: &Utf8Path) -> Result<Option<Self>> {
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

    /// The marker as written to disk.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text.into_bytes()
    }

    /// Whether the file at [`snapshot`](Self::snapshot) is still the one
    /// this window took: same size, same SHA-256.
    pub fn matches_snapshot(&self) -> Result<bool> {
        let bytes = match fs_err::metadata(&self.snapshot) {
            Ok(m) => m.len(),
            Err(_) => return Ok(false),
        };
        Ok(bytes == self.snapshot_bytes && sha256_file(&self.snapshot)? == self.snapshot_sha256)
    }
}

/// The SHA-256 of a file, in lowercase hex, read in bounded memory.
pub fn sha256_file(path: &Utf8Path) -> Result<String> {
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
            snapshot_sha256: sha256_file(&snapshot).expect("hash"),
            started_at: "2026-11-27T12:00:00Z".to_owned(),
            pid: 42,
        };
        assert_eq!(
            marker.snapshot_sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let path = dir.join("system.duckdb.migrating");
        assert_eq!(Marker::read(&path).expect("read"), None);
        fs_err::write(&path, marker.to_bytes()).expect("write");
        assert_eq!(Marker::read(&path).expect("read"), Some(marker.clone()));
        assert!(marker.matches_snapshot().expect("check"));

        fs_err::write(&snapshot, b"abd").expect("write");
        assert!(!marker.matches_snapshot().expect("check"));
        fs_err::remove_file(&snapshot).expect("remove");
        assert!(!marker.matches_snapshot().expect("check"));

        fs_err::write(&path, b"from = 26").expect("write");
        match Marker::read(&path) {
            Err(Error::Marker { path: p, .. }) => assert_eq!(p, path),
            other => panic!("unexpected {other:?}"),
        }
    }
}
