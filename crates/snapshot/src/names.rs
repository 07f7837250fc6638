//! The names of the files kept beside a database, derived in one place.

use camino::{Utf8Path, Utf8PathBuf};

use crate::{Error, Result};

/// Suffixes of the sidecar files DuckDB may leave beside a database.
pub const SIDECAR_SUFFIXES: [&str; 3] = [".wal", ".wal.checkpoint", ".wal.recovery"];

/// A database file and the names of the files kept beside it.
///
/// ```
/// use sysdb_snapshot::DbFiles;
///
/// let files = DbFiles::new("/data/state/system.duckdb").unwrap();
/// assert_eq!(files.wal(), "/data/state/system.duckdb.wal");
/// assert_eq!(files.snapshot(), "/data/state/system.duckdb.pre-migrate");
/// assert_eq!(files.dir(), "/data/state");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbFiles {
    db: Utf8PathBuf,
    dir: Utf8PathBuf,
    name: String,
}

impl DbFiles {
    /// The files of the database at `db`. Fails if `db` has no file name.
    pub fn new(db: impl Into<Utf8PathBuf>) -> Result<Self> {
        let db = db.into();
        let name = db
            .file_name()
            .ok_or_else(|| Error::NotAFile { path: db.clone() })?
            .to_owned();
        let dir = match db.parent() {
            Some(p) if !p.as_str().is_empty() => p.to_owned(),
            _ => Utf8PathBuf::from("."),
        };
        Ok(Self { db, dir, name })
    }

    /// The database file.
    pub fn db(&self) -> &Utf8Path {
        &self.db
    }

    /// The folder holding the database.
    pub fn dir(&self) -> &Utf8Path {
        &self.dir
    }

    /// The database's file name (`system.duckdb`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A file beside the database whose name is the database's plus `suffix`.
    pub fn sibling(&self, suffix: &str) -> Utf8PathBuf {
        self.dir.join(format!("{}{suffix}", self.name))
    }

    /// The write-ahead log, `<db>.wal`.
    pub fn wal(&self) -> Utf8PathBuf {
        self.sibling(".wal")
    }

    /// The pre-migrate snapshot, `<db>.pre-migrate`.
    pub fn snapshot(&self) -> Utf8PathBuf {
        self.sibling(".pre-migrate")
    }

    /// The snapshot kept from before the last migration window that has not
    /// completed, `<db>.pre-migrate.previous` (see
    /// [`keep_previous`](crate::keep_previous)).
    pub fn previous_snapshot(&self) -> Utf8PathBuf {
        self.sibling(".pre-migrate.previous")
    }

    /// The recovery marker, `<db>.recovering`: present only while a
    /// recovery runs (sysdb writes it), when the newest quarantine set may
    /// hold the only copy of the database.
    pub fn recovering(&self) -> Utf8PathBuf {
        self.sibling(".recovering")
    }

    /// Every sidecar DuckDB may leave (`.wal`, `.wal.checkpoint`,
    /// `.wal.recovery`), whether or not it exists.
    pub fn sidecars(&self) -> Vec<Utf8PathBuf> {
        SIDECAR_SUFFIXES.iter().map(|s| self.sibling(s)).collect()
    }

    /// The prefix every quarantined file's name starts with
    /// (`system.duckdb.broken.`).
    pub(crate) fn quarantine_prefix(&self) -> String {
        format!("{}.broken.", self.name)
    }

    /// The temporary name a durable copy to `dest` writes to: the
    /// destination's name, `.tmp-` and this process's id.
    pub(crate) fn temp_for(dest: &Utf8Path, pid: u32) -> Utf8PathBuf {
        let mut name = dest.as_str().to_owned();
        name.push_str(&format!(".tmp-{pid}"));
        Utf8PathBuf::from(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_derived_from_the_database() {
        let f = DbFiles::new("state/system.duckdb").expect("valid path");
        assert_eq!(f.dir(), "state");
        assert_eq!(f.name(), "system.duckdb");
        assert_eq!(
            f.sidecars(),
            [
                "state/system.duckdb.wal",
                "state/system.duckdb.wal.checkpoint",
                "state/system.duckdb.wal.recovery"
            ]
        );
        assert_eq!(f.quarantine_prefix(), "system.duckdb.broken.");
        assert_eq!(
            f.previous_snapshot(),
            "state/system.duckdb.pre-migrate.previous"
        );
        assert_eq!(
            DbFiles::temp_for(&f.snapshot(), 12),
            "state/system.duckdb.pre-migrate.tmp-12"
        );
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_folder() {
        let f = DbFiles::new("x.duckdb").expect("valid path");
        assert_eq!(f.dir(), ".");
        assert_eq!(f.wal(), "./x.duckdb.wal");
    }

    #[test]
    fn a_path_without_file_name_is_an_error() {
        assert!(matches!(DbFiles::new("/"), Err(Error::NotAFile { .. })));
        assert!(matches!(DbFiles::new("a/.."), Err(Error::NotAFile { .. })));
    }
}
