//! The scenario kit: what the crates' tests, the workspace suites
//! (`tests/`), `cargo xtask` and `sysdb drill` share to make real states
//! of a system database, so that each is written once.
//!
//! - [`ladders`]: the example migration ladders (the seed service's
//!   27 steps over `jobs`, the reliability suite's six over `items`) and a
//!   ladder written out as a migrations folder;
//! - [`child`]: the child processes: the crash child (checkpoints off,
//!   commit, then die by SIGKILL, `abort` or a checkpoint stopped before
//!   its header) and the holder of DuckDB's own lock, with the parent half
//!   of each and the way a test binary re-runs itself as one;
//! - [`damage`]: bytes flipped until DuckDB refuses a file, files cut;
//! - [`cow`]: a loop-mounted XFS with reflink, for the snapshot's
//!   copy-on-write branch;
//! - [`cgroup`]: a memory cgroup to run a child in, as a container's
//!   memory limit runs a service;
//! - [`sqlite`]: a real, empty SQLite file, the foreign file of the tests;
//! - [`StateDir`]: a temporary `DATA_DIR` with its `state` folder;
//! - [`connect`]: a DuckDB connection opened as sysdb opens one
//!   (extension auto-install and auto-load off);
//! - the fixture manifests, folder digests, report redaction and the
//!   reliability suite's tallies (the `suite` module, re-exported here).
//!
//! It depends on `sysdb-schema` and DuckDB, never on `sysdb`, so that every
//! layer's tests can use it.

pub mod cgroup;
pub mod child;
pub mod cow;
pub mod damage;
pub mod ladders;
pub mod sqlite;
mod state;
mod suite;

pub use state::StateDir;
pub use suite::*;

use camino::{Utf8Path, Utf8PathBuf};
use duckdb::{Config, Connection};

/// What can go wrong while making a scenario. Each message names the file
/// or the child it concerns and ends with DuckDB's or the system's words.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system call failed.
    #[error("{doing} {path}: {cause}")]
    Io {
        /// What was being done (`reading`, `writing`, …).
        doing: &'static str,
        /// The file or folder.
        path: Utf8PathBuf,
        /// The system's error.
        cause: std::io::Error,
    },
    /// DuckDB refused a statement or an open.
    #[error("{doing} {path}: {cause}")]
    DuckDb {
        /// What was being done.
        doing: String,
        /// The database.
        path: Utf8PathBuf,
        /// DuckDB's error.
        cause: duckdb::Error,
    },
    /// A child process did not do what its part says.
    #[error("the {role} child: {problem}")]
    Child {
        /// `crash` or `hold-lock`.
        role: &'static str,
        /// What went wrong.
        problem: String,
    },
    /// No flipped byte damaged the file as wanted.
    #[error("no flipped byte damaged {path} as wanted")]
    Undamaged {
        /// The file.
        path: Utf8PathBuf,
    },
    /// The file is shorter than an offset.
    #[error("{path} has no byte at offset {offset}")]
    Offset {
        /// The file.
        path: Utf8PathBuf,
        /// The offset asked for.
        offset: u64,
    },
    /// A path is not UTF-8.
    #[error("the path {path} is not UTF-8")]
    NotUtf8 {
        /// The path, lossily.
        path: String,
    },
}

/// The kit's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn io(doing: &'static str, path: &Utf8Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |cause| Self::Io { doing, path, cause }
    }

    fn duckdb(doing: impl Into<String>, path: &Utf8Path) -> impl FnOnce(duckdb::Error) -> Self {
        let (doing, path) = (doing.into(), path.to_owned());
        move |cause| Self::DuckDb { doing, path, cause }
    }
}

/// DuckDB's settings as sysdb opens a database: no extension is installed
/// or loaded behind the caller's back (a foreign file would otherwise make
/// DuckDB reach for the network).
pub fn config() -> Config {
    Config::default()
        .with("autoinstall_known_extensions", "false")
        .and_then(|c| c.with("autoload_known_extensions", "false"))
        .expect("DuckDB knows both settings")
}

/// Open `path` with [`config`].
pub fn connect(path: &Utf8Path) -> Result<Connection> {
    Connection::open_with_flags(path, config()).map_err(Error::duckdb("opening", path))
}

/// `path` as UTF-8.
pub fn utf8(path: &std::path::Path) -> Result<Utf8PathBuf> {
    Utf8PathBuf::try_from(path.to_owned()).map_err(|e| Error::NotUtf8 {
        path: e.into_path_buf().display().to_string(),
    })
}
