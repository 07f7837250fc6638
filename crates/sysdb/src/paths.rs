//! Where the system database and the files sysdb keeps beside it live.

use camino::{Utf8Path, Utf8PathBuf};
use sysdb_snapshot::DbFiles;

use crate::{Error, Result};

/// The environment variable naming the service's data folder.
pub const DATA_DIR_ENV: &str = "DATA_DIR";

/// The system database and every file kept beside it, derived in one place.
///
/// ```
/// use sysdb::Paths;
///
/// let paths = Paths::from_data_dir("/srv/data").unwrap();
/// assert_eq!(paths.db(), "/srv/data/state/system.duckdb");
/// assert_eq!(paths.wal(), "/srv/data/state/system.duckdb.wal");
/// assert_eq!(paths.snapshot(), "/srv/data/state/system.duckdb.pre-migrate");
/// assert_eq!(paths.lock(), "/srv/data/state/system.duckdb.lock");
/// assert_eq!(paths.marker(), "/srv/data/state/system.duckdb.migrating");
/// assert_eq!(paths.recovering(), "/srv/data/state/system.duckdb.recovering");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    files: DbFiles,
}

impl Paths {
    /// `dir/state/system.duckdb` and its neighbours.
    pub fn from_data_dir(dir: impl AsRef<Utf8Path>) -> Result<Self> {
        Self::for_db(dir.as_ref().join("state").join("system.duckdb"))
    }

    /// The paths under `$DATA_DIR`.
    pub fn from_env() -> Result<Self> {
        let dir = std::env::var(DATA_DIR_ENV).map_err(|_| Error::NoDataDir)?;
        Self::from_data_dir(dir)
    }

    /// Any database file and its neighbours.
    pub fn for_db(path: impl Into<Utf8PathBuf>) -> Result<Self> {
        let files = DbFiles::new(path).map_err(Error::Files)?;
        Ok(Self { files })
    }

    /// The names sysdb-snapshot works with.
    pub fn files(&self) -> &DbFiles {
        &self.files
    }

    /// The database file.
    pub fn db(&self) -> &Utf8Path {
        self.files.db()
    }

    /// The folder holding it.
    pub fn dir(&self) -> &Utf8Path {
        self.files.dir()
    }

    /// DuckDB's write-ahead log.
    pub fn wal(&self) -> Utf8PathBuf {
        self.files.wal()
    }

    /// The pre-migrate snapshot.
    pub fn snapshot(&self) -> Utf8PathBuf {
        self.files.snapshot()
    }

    /// The snapshot kept from before a migration window that has not
    /// completed.
    pub fn previous_snapshot(&self) -> Utf8PathBuf {
        self.files.previous_snapshot()
    }

    /// The advisory lock held for the whole open flow.
    pub fn lock(&self) -> Utf8PathBuf {
        self.files.sibling(".lock")
    }

    /// The intent marker present while a migration is in flight.
    pub fn marker(&self) -> Utf8PathBuf {
        self.files.sibling(".migrating")
    }

    /// The recovery marker present while a recovery is in flight.
    pub fn recovering(&self) -> Utf8PathBuf {
        self.files.recovering()
    }
}
