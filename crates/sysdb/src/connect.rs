//! Opening a DuckDB connection, behind a seam tests can replace.

use std::fmt;

use camino::Utf8Path;
use duckdb::{Config, Connection};
use serde::Serialize;

/// Opens connections to a database file: every connection sysdb makes
/// goes through one (the first connect, the replays of copies, the
/// read-only reads of a snapshot's version, the probe child's open when it
/// calls [`probe_open_with`](crate::probe_open_with)). [`DuckDbConnector`]
/// is the real one, [`DuckDbSettings`] the real one with the service's own
/// DuckDB settings; tests put failures here, the way the seed service
/// patched `duckdb.connect`.
pub trait Connector {
    /// The settings of the connections this connector opens. By default,
    /// DuckDB's with extension auto-install and auto-load turned off.
    fn config(&self) -> duckdb::Result<Config> {
        config()
    }

    /// Open a connection to the database at `path`.
    fn connect(&self, path: &Utf8Path) -> duckdb::Result<Connection> {
        Connection::open_with_flags(path, self.config()?)
    }

    /// Open the database at `path` read-only: no write lock, no file
    /// written.
    fn connect_read_only(&self, path: &Utf8Path) -> duckdb::Result<Connection> {
        let config = self.config()?.access_mode(duckdb::AccessMode::ReadOnly)?;
        Connection::open_with_flags(path, config)
    }

    /// Open an in-memory database, for replaying a write-ahead log through
    /// ATTACH.
    fn connect_in_memory(&self) -> duckdb::Result<Connection> {
        Connection::open_in_memory_with_flags(self.config()?)
    }
}

/// The real connector: DuckDB with extension auto-install and auto-load
/// turned off, so that opening a foreign file never reaches for the network.
#[derive(Debug, Clone, Copy, Default)]
pub struct DuckDbConnector;

/// The settings every connection sysdb opens uses (what
/// [`DuckDbConnector`]'s [`Connector::config`] gives).
pub(crate) fn config() -> duckdb::Result<Config> {
    Config::default()
        .with("autoinstall_known_extensions", "false")?
        .with("autoload_known_extensions", "false")
}

impl Connector for DuckDbConnector {}

/// The real connector with DuckDB settings of the service's own
/// (`memory_limit`, `temp_directory`, `threads`, `TimeZone`, …) on top of
/// the real connector's, for every connection sysdb makes.
///
/// The settings of ICU (`TimeZone`, `Calendar`) exist only once ICU is
/// loaded, after DuckDB has opened the file (and replayed its log), and
/// with extension auto-load off DuckDB refuses them at open: they are set
/// with `SET GLOBAL` right after each open instead. A replay through ATTACH
/// from an in-memory DuckDB then evaluates a `TIMESTAMPTZ` cast in the
/// service's zone.
///
/// ```
/// use sysdb::{Connector, DuckDbSettings};
///
/// let settings = DuckDbSettings::new([("memory_limit", "256MB"), ("threads", "2")]);
/// let conn = settings.connect_in_memory().unwrap();
/// let limit: String = conn
///     .query_row("SELECT current_setting('memory_limit')", [], |r| r.get(0))
///     .unwrap();
/// assert_eq!(limit, "244.1 MiB");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DuckDbSettings {
    settings: Vec<(String, String)>,
}

impl DuckDbSettings {
    /// The settings, as `(name, value)`, applied in order.
    pub fn new<K: Into<String>, V: Into<String>>(
        settings: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            settings: settings
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The settings, as `(name, value)`.
    pub fn settings(&self) -> &[(String, String)] {
        &self.settings
    }
}

/// The settings of an extension sysdb links that DuckDB knows only once the
/// extension is loaded, after the open.
const AFTER_OPEN: [&str; 2] = ["TimeZone", "Calendar"];

impl DuckDbSettings {
    fn after_open(&self, name: &str) -> bool {
        AFTER_OPEN.iter().any(|s| s.eq_ignore_ascii_case(name))
    }

    /// Set the settings DuckDB takes only after the open.
    fn set_after_open(&self, conn: Connection) -> duckdb::Result<Connection> {
        for (name, value) in self.settings.iter().filter(|(n, _)| self.after_open(n)) {
            conn.execute_batch(&format!(
                "SET GLOBAL {} = {}",
                sql_ident(name),
                sql_string(value)
            ))?;
        }
        Ok(conn)
    }
}

impl Connector for DuckDbSettings {
    fn config(&self) -> duckdb::Result<Config> {
        self.settings
            .iter()
            .filter(|(name, _)| !self.after_open(name))
            .try_fold(config()?, |config, (name, value)| config.with(name, value))
    }

    fn connect(&self, path: &Utf8Path) -> duckdb::Result<Connection> {
        self.set_after_open(Connection::open_with_flags(path, self.config()?)?)
    }

    fn connect_read_only(&self, path: &Utf8Path) -> duckdb::Result<Connection> {
        let config = self.config()?.access_mode(duckdb::AccessMode::ReadOnly)?;
        self.set_after_open(Connection::open_with_flags(path, config)?)
    }

    fn connect_in_memory(&self) -> duckdb::Result<Connection> {
        self.set_after_open(Connection::open_in_memory_with_flags(self.config()?)?)
    }
}

impl<F> Connector for F
where
    F: Fn(&Utf8Path) -> duckdb::Result<Connection>,
{
    fn connect(&self, path: &Utf8Path) -> duckdb::Result<Connection> {
        self(path)
    }
}

/// The storage version a *new* database is created with: DuckDB's
/// `STORAGE_VERSION` (`v1.4.0`, `v1.5.0`, `latest`, …), which decides the
/// oldest DuckDB that can read the file. An existing file keeps the
/// version it has: sysdb never upgrades one.
///
/// The default, [`StorageVersion::DEFAULT`], is `v1.4.0`: a file DuckDB
/// 1.4, 1.5 and 2.0 all read and write, so a service on DuckDB 1.4 or
/// later can share the database sysdb creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StorageVersion(String);

impl StorageVersion {
    /// The version new databases get unless told otherwise.
    pub const DEFAULT: &'static str = "v1.4.0";

    /// `version`, as DuckDB reads it: `Err` with DuckDB's message, which
    /// lists the versions it knows, if it is not one of them.
    pub fn new(version: &str) -> duckdb::Result<Self> {
        let conn = Connection::open_in_memory_with_flags(config()?)?;
        conn.execute_batch(&format!(
            "SET storage_compatibility_version = {}",
            sql_string(version)
        ))?;
        conn.close().map_err(|(_, e)| e)?;
        Ok(Self(version.to_owned()))
    }

    /// The version's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for StorageVersion {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for StorageVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Create a new, empty database at `path` with storage version `version`,
/// through ATTACH from an in-memory DuckDB, and sync it.
pub(crate) fn create(
    connector: &dyn Connector,
    path: &Utf8Path,
    version: &StorageVersion,
) -> duckdb::Result<()> {
    let conn = connector.connect_in_memory()?;
    conn.execute_batch(&format!(
        "ATTACH {} AS sysdb_created (STORAGE_VERSION {}); DETACH sysdb_created",
        sql_string(path.as_str()),
        sql_string(version.as_str())
    ))?;
    conn.close().map_err(|(_, e)| e)
}

/// The storage version DuckDB reads in the open database `conn` is
/// connected to (DuckDB's `storage_version` tag, e.g. `v1.4.0+`).
pub fn storage_version_of(conn: &Connection) -> duckdb::Result<Option<String>> {
    conn.query_row(
        "SELECT tags['storage_version'] FROM duckdb_databases() WHERE database_name = current_database()",
        [],
        |row| row.get(0),
    )
}

/// `text` as an SQL string literal.
pub(crate) fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `name` as a quoted SQL identifier.
pub(crate) fn sql_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
