//! The versioned migration ladder over a `duckdb::Connection`.
//!
//! A [`Ladder`] is a validated list of steps `(version, name, sql)`. Against
//! a connection it reports the [`Status`] (current version, pending steps,
//! drift), a [`Plan`] (what `apply` would do) and applies pending steps: each
//! in its own transaction together with its `schema_version` row, so a crash
//! can never leave a step applied but unrecorded or recorded but unapplied,
//! followed by a `CHECKPOINT`, so no step waits in the write-ahead log once
//! `apply` returns.
//!
//! The bookkeeping table is
//! `schema_version(version INTEGER PRIMARY KEY, name VARCHAR, checksum VARCHAR, applied_at TIMESTAMP)`;
//! `SELECT version FROM schema_version ORDER BY applied_at DESC LIMIT 1`
//! returns the current version. A table with only `(version, applied_at)`
//! (written by an earlier tool) is adopted: the missing columns are added and
//! filled from the ladder.
//!
//! This crate knows nothing of files beyond reading a folder of steps: where
//! the database lives, snapshots and recovery belong to the `sysdb` crate.
//!
//! ```
//! use duckdb::Connection;
//! use sysdb_schema::{ApplyOptions, Ladder};
//!
//! let ladder = Ladder::new([
//!     (1, "create_jobs", "CREATE TABLE jobs (id INTEGER PRIMARY KEY, state VARCHAR);"),
//!     (2, "add_owner", "ALTER TABLE jobs ADD COLUMN owner VARCHAR;"),
//! ])
//! .unwrap();
//! let conn = Connection::open_in_memory().unwrap();
//! let applied = ladder.apply(&conn, &ApplyOptions::default()).unwrap();
//! assert_eq!((applied.from, applied.to), (0, 2));
//! assert!(ladder.status(&conn).unwrap().pending.is_empty());
//! ```

mod db;
mod ladder;
mod split;

use camino::Utf8PathBuf;

pub use db::{current_version, Applied, ApplyOptions, Drift, Plan, Status, StepDone};
pub use ladder::{checksum, Ladder, Step};

#[doc(hidden)]
pub use include_dir as __include_dir;

/// The ladder of the `NNNN_name.sql` files of a folder, embedded in the
/// binary at compile time: `Result<Ladder>`, checked as
/// [`Ladder::from_dir`] checks a folder (a bad name, a duplicate or a gap
/// is an error naming the file). The path is resolved at compile time;
/// `$CARGO_MANIFEST_DIR` (and any environment variable) is expanded.
///
/// ```
/// let ladder = sysdb_schema::embed_migrations!("$CARGO_MANIFEST_DIR/../../fixtures/migrations")
///     .expect("a valid ladder");
/// assert_eq!(ladder.top(), 27);
/// assert_eq!(ladder.step(1).map(|s| s.name()), Some("create_jobs"));
/// ```
#[macro_export]
macro_rules! embed_migrations {
    ($dir:tt) => {{
        use $crate::__include_dir as include_dir;
        static DIR: include_dir::Dir<'static> = include_dir::include_dir!($dir);
        $crate::Ladder::from_embedded(&DIR)
    }};
}

/// The failpoints of [`Ladder::apply`], hit once per step, for crash tests
/// built with the `failpoints` feature (the `fail` crate): before the
/// step's `COMMIT`, after it (the step lives only in the write-ahead log),
/// and after its `CHECKPOINT`.
pub const FAILPOINTS: [&str; 3] = [
    "schema::step::commit",
    "schema::step::checkpoint",
    "schema::step::done",
];

/// Everything that can go wrong with a ladder or while migrating.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ladder's steps are not versions 1, 2, … with identifier names.
    #[error("invalid migration ladder: {at}: {problem}")]
    Invalid {
        /// The step (`step 3 add_owner`) or the file it came from.
        at: String,
        /// What is wrong.
        problem: String,
    },
    /// A `.sql` file in the migrations folder is not named `NNNN_name.sql`.
    #[error("invalid migration ladder: {path} is not named NNNN_name.sql (for example 0027_add_owner.sql)")]
    FileName {
        /// The file.
        path: Utf8PathBuf,
    },
    /// The migrations folder could not be read.
    #[error("while reading the migrations folder {dir}: {cause}")]
    ReadDir {
        /// The folder.
        dir: Utf8PathBuf,
        /// The underlying failure.
        cause: std::io::Error,
    },
    /// A migration file could not be read.
    #[error("while reading migration {path}: {cause}")]
    ReadFile {
        /// The file.
        path: Utf8PathBuf,
        /// The underlying failure.
        cause: std::io::Error,
    },
    /// Reading or writing the bookkeeping failed.
    #[error("while {doing}: {cause}")]
    Bookkeeping {
        /// What was being done (`reading schema_version`).
        doing: &'static str,
        /// DuckDB's error.
        cause: duckdb::Error,
    },
    /// The database was migrated by a newer build.
    #[error(
        "database is at version {database}, this build knows up to {ladder}; run a build that knows version {database} or newer"
    )]
    DatabaseNewer {
        /// The database's version.
        database: u32,
        /// The ladder's top version.
        ladder: u32,
    },
    /// `schema_version` lacks versions between its lowest and highest.
    #[error("schema_version has versions missing in the middle: {}; the database's history cannot be trusted, restore it or repair schema_version by hand", list(.missing))]
    MissingVersions {
        /// The missing versions.
        missing: Vec<u32>,
    },
    /// Applied steps differ from this build's ladder.
    #[error("applied migrations differ from this build's ladder: {}; if the change is intended, accept the drift explicitly", drift_list(.drift))]
    Drift {
        /// The steps whose recorded checksum differs.
        drift: Vec<Drift>,
    },
    /// A step failed; the database stays at the version before it.
    #[error("while applying migration {version} {name}{}: statement `{statement}` failed: {cause}", .file.as_ref().map_or(String::new(), |f| format!(" ({f})")))]
    Step {
        /// The step's version.
        version: u32,
        /// The step's name.
        name: String,
        /// The file it was read from, for a ladder read from a folder.
        file: Option<Utf8PathBuf>,
        /// The statement that failed.
        statement: String,
        /// DuckDB's error.
        cause: Box<duckdb::Error>,
    },
    /// The CHECKPOINT after a step failed (the step itself is committed).
    #[error("while checkpointing after migration {version} {name}: {cause}")]
    Checkpoint {
        /// The step's version.
        version: u32,
        /// The step's name.
        name: String,
        /// DuckDB's error.
        cause: duckdb::Error,
    },
    /// After the final CHECKPOINT the write-ahead log is not empty.
    #[error("after migrating to version {version} the write-ahead log still holds {wal_size}; another connection may be writing, close it and retry")]
    WalNotEmpty {
        /// The version reached.
        version: u32,
        /// The size DuckDB reports (`"1.2 KiB"`).
        wal_size: String,
    },
}

fn list(versions: &[u32]) -> String {
    versions
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn drift_list(drift: &[Drift]) -> String {
    drift
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
