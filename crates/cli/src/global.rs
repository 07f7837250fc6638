//! What every command shares: the global options, the probe's options,
//! and reading a database's schema version.

use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use clap::Args;
use duckdb::Connection;
use sysdb::Connector as _;

use crate::error::Error;

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The service's data folder; the database is `DIR/state/system.duckdb`
    #[arg(long, global = true, value_name = "DIR", env = "DATA_DIR")]
    data_dir: Option<Utf8PathBuf>,
    /// The database file itself; wins over --data-dir and DATA_DIR, so it
    /// works inside the service's container, where DATA_DIR is set
    #[arg(long, global = true, value_name = "FILE")]
    db: Option<Utf8PathBuf>,
    /// The folder of migrations, `NNNN_name.sql` files
    #[arg(long, global = true, value_name = "DIR")]
    migrations: Option<Utf8PathBuf>,
    /// The storage version a new database is created with (DuckDB's
    /// STORAGE_VERSION: v1.4.0, v1.5.0, latest, …): the oldest DuckDB that
    /// can read the file. An existing file keeps its own [default: v1.4.0]
    #[arg(long, global = true, value_name = "VERSION", env = "SYSDB_STORAGE_VERSION", value_parser = storage_version)]
    storage_version: Option<sysdb::StorageVersion>,
    /// A DuckDB setting (NAME=VALUE: memory_limit=2GB, temp_directory=/tmp,
    /// threads=2, TimeZone=Europe/Berlin) for every connection sysdb makes,
    /// the probe child's and the replaying DuckDB's included (give the
    /// service's own TimeZone: a replayed TIMESTAMPTZ cast is evaluated in
    /// it); repeat for more, or list them in SYSDB_DUCKDB_SETTINGS
    /// separated by commas
    #[arg(long = "duckdb-setting", global = true, value_name = "NAME=VALUE", env = "SYSDB_DUCKDB_SETTINGS", value_delimiter = ',', value_parser = setting)]
    duckdb_settings: Vec<(String, String)>,
    /// Print JSON for machines instead of text: one object per line
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Log more of what happens, on stderr: -v what each step does, -vv
    /// and -vvv the details (RUST_LOG, when set, chooses instead)
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Print only errors on stderr: no warnings, no progress
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
}

impl Global {
    /// The database's paths.
    pub fn paths(&self) -> Result<sysdb::Paths, Error> {
        match (&self.db, &self.data_dir) {
            (Some(db), _) => Ok(sysdb::Paths::for_db(db.clone())?),
            (None, Some(dir)) => Ok(sysdb::Paths::from_data_dir(dir)?),
            (None, None) => Err(Error::Usage(
                "no database named: pass --data-dir DIR (or set DATA_DIR) or --db FILE".to_owned(),
            )),
        }
    }

    /// The ladder, when --migrations names one.
    pub fn ladder(&self) -> Result<Option<sysdb::Ladder>, Error> {
        self.migrations
            .as_ref()
            .map(|dir| sysdb::Ladder::from_dir(dir).map_err(Error::from))
            .transpose()
    }

    /// The migrations folder, which this command needs.
    pub fn require_migrations(&self) -> Result<&camino::Utf8Path, Error> {
        self.migrations.as_deref().ok_or_else(|| {
            Error::Usage(
                "this command needs the migrations: pass --migrations DIR (a folder of NNNN_name.sql files)"
                    .to_owned(),
            )
        })
    }

    /// The ladder, which this command needs.
    pub fn require_ladder(&self) -> Result<sysdb::Ladder, Error> {
        Ok(sysdb::Ladder::from_dir(self.require_migrations()?)?)
    }

    /// The connector every connection goes through: DuckDB with the
    /// --duckdb-setting settings.
    pub fn connector(&self) -> sysdb::DuckDbSettings {
        sysdb::DuckDbSettings::new(self.duckdb_settings.iter().cloned())
    }

    /// The arguments that give a child `sysdb` the same settings.
    pub fn setting_args(&self) -> Vec<String> {
        self.duckdb_settings
            .iter()
            .flat_map(|(k, v)| ["--duckdb-setting".to_owned(), format!("{k}={v}")])
            .collect()
    }

    /// The storage version new databases get.
    pub fn storage_version(&self) -> sysdb::StorageVersion {
        self.storage_version.clone().unwrap_or_default()
    }
}

/// A read-only connection: it takes no write lock and writes no file.
pub fn open_read_only(global: &Global, path: &Utf8Path) -> duckdb::Result<Connection> {
    global.connector().connect_read_only(path)
}

/// The schema version of the database (the schema crate's meaning of it), if it has one.
pub fn read_version(conn: &Connection) -> Option<u32> {
    sysdb_schema::current_version(conn).ok().filter(|v| *v > 0)
}

/// `--probe` and its timeout, for `migrate` and `check`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// When a write-ahead log waits, open the database first in a child
    /// process (`sysdb probe-open`), so that a replay that aborts kills the
    /// child and is recovered from like any replay failure
    #[arg(long)]
    probe: bool,
    /// How long the probe child may take
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration, requires = "probe")]
    probe_timeout: Duration,
}

impl ProbeArgs {
    /// The probe these flags ask for: this binary's `probe-open`, with the
    /// same DuckDB settings.
    pub fn probe(&self, global: &Global) -> Result<Option<sysdb::Probe>, Error> {
        if !self.probe {
            return Ok(None);
        }
        Ok(Some(sysdb::Probe {
            program: std::env::current_exe().map_err(|e| {
                Error::Refused(format!(
                    "cannot find this sysdb binary to run it as the probe: {e}"
                ))
            })?,
            args: [global.setting_args(), vec!["probe-open".to_owned()]].concat(),
            timeout: self.probe_timeout,
        }))
    }
}

fn setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!(
            "expected NAME=VALUE, as memory_limit=2GB, not {text:?}"
        )),
    }
}

fn storage_version(text: &str) -> Result<sysdb::StorageVersion, String> {
    sysdb::StorageVersion::new(text).map_err(|e| e.to_string())
}
