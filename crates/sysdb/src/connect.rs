//! Opening a DuckDB connection, behind a seam tests can replace.

use camino::Utf8Path;
use duckdb::{Config, Connection};

/// Opens connections to a database file. [`DuckDbConnector`] is the real
/// one; tests put failures here, the way the seed service patched
/// `duckdb.connect`.
pub trait Connector {
    /// Open a connection to the database at `path`.
    fn connect(&self, path: &Utf8Path) -> duckdb::Result<Connection>;

    /// Open an in-memory database, for replaying a write-ahead log through
    /// ATTACH. By default, with [`config`]'s settings.
    fn connect_in_memory(&self) -> duckdb::Result<Connection> {
        Connection::open_in_memory_with_flags(config()?)
    }
}

/// The real connector: DuckDB with extension auto-install and auto-load
/// turned off, so that opening a foreign file never reaches for the network.
#[derive(Debug, Clone, Copy, Default)]
pub struct DuckDbConnector;

/// The settings every connection sysdb opens uses.
pub fn config() -> duckdb::Result<Config> {
    Config::default()
        .with("autoinstall_known_extensions", "false")?
        .with("autoload_known_extensions", "false")
}

impl Connector for DuckDbConnector {
    fn connect(&self, path: &Utf8Path) -> duckdb::Result<Connection> {
        Connection::open_with_flags(path, config()?)
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
