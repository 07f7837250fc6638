//! Replaying a write-ahead log the way a plain open cannot: from an
//! in-memory DuckDB that has its built-in extensions loaded, which ATTACHes
//! a copy of the database.
//!
//! A plain open replays the log before DuckDB loads its built-in
//! extensions, and replaying an ALTER re-binds the table's CHECK
//! constraints, generated columns and `USING` casts: one that calls a
//! function of `core_functions` (`trim`, `now`, `levenshtein`), of the json
//! extension or of ICU fails there and replays through ATTACH. The replay
//! binds those expressions in the in-memory DuckDB's catalog, not in the
//! attached database's: a cast to one of the database's own types (`v::s.st`)
//! replays only where the in-memory DuckDB holds a type of that schema and
//! name, so the database's user types are created there first
//! ([`mirror_types`]), read from the database file *without* its log. Every
//! replay here runs on files in a scratch folder, never on the database's
//! own.

use std::io::{self, Read};

use camino::{Utf8Path, Utf8PathBuf};
use sysdb_errclass::{classify_error, ErrorClass, WalReplayCause};

use crate::connect::{sql_ident, sql_string};
use crate::report::ProbeOutcome;
use crate::{Connector, Failure, Paths, Probe};

/// The alias the replayed database is attached under.
const ALIAS: &str = "sysdb_replayed";

/// The alias the database file without its log is attached under, to read
/// its user types.
const TYPES_ALIAS: &str = "sysdb_types";

/// Replay the log beside `db` from an in-memory DuckDB that first holds the
/// user types of each of `types` in turn (the database file without its
/// log, then with a prefix of it). Read-only,
/// DuckDB replays it in memory and writes nothing; read-write, the replay
/// is checkpointed into `db` and the log removed, so that `db` then holds
/// every replayed commit by itself.
pub(crate) fn replay_attached(
    connector: &dyn Connector,
    db: &Utf8Path,
    types: &[Utf8PathBuf],
    read_only: bool,
) -> duckdb::Result<()> {
    let conn = connector.connect_in_memory()?;
    spill_beside(&conn, db)?;
    leave_headroom(&conn)?;
    for file in types {
        mirror_types(&conn, file)?;
    }
    let mode = if read_only { " (READ_ONLY)" } else { "" };
    conn.execute_batch(&format!(
        "ATTACH {} AS {ALIAS}{mode}",
        sql_string(db.as_str())
    ))?;
    if !read_only {
        // FORCE: checkpoint even where DuckDB finds nothing new to write.
        // A log it ignored whole (torn at its first entry) may still be
        // left beside the copy; `Replayer::build` refuses such a copy.
        conn.execute_batch(&format!("FORCE CHECKPOINT {ALIAS}"))?;
    }
    conn.execute_batch(&format!("DETACH {ALIAS}"))?;
    conn.close().map_err(|(_, e)| e)
}

/// Where an in-memory DuckDB spills what does not fit its `memory_limit`
/// unless told otherwise: a folder named so in the working folder.
const IN_MEMORY_TEMP: &str = ".tmp";

/// Let the in-memory DuckDB `conn` spill beside the copy `db` it replays
/// (`<db>.tmp`, in the scratch folder), unless the service chose a
/// `temp_directory`: the working folder of a service's container is often
/// read-only, and a replay larger than `memory_limit` would fail there.
fn spill_beside(conn: &duckdb::Connection, db: &Utf8Path) -> duckdb::Result<()> {
    let dir: String =
        conn.query_row("SELECT current_setting('temp_directory')", [], |r| r.get(0))?;
    if dir == IN_MEMORY_TEMP {
        conn.execute_batch(&format!(
            "SET temp_directory = {}",
            sql_string(&format!("{db}.tmp"))
        ))?;
    }
    Ok(())
}

/// Where the service set no `memory_limit`, give the in-memory DuckDB
/// `conn` half of DuckDB's default (the default is 80 % of the memory the
/// machine or the container has; this, 40 %): DuckDB's memory outside its
/// buffer pool comes on top of the pool, and a replay that checkpoints a
/// large log into its copy with the default pool gets the process killed
/// by the kernel in a small container (measured: a 271 MiB log in a cgroup
/// of 128 MiB), where the service's own open of the log never checkpoints
/// it. A limit the service chose is kept as it is.
fn leave_headroom(conn: &duckdb::Connection) -> duckdb::Result<()> {
    let limit = |conn: &duckdb::Connection| -> duckdb::Result<String> {
        conn.query_row("SELECT current_setting('memory_limit')", [], |r| r.get(0))
    };
    // DuckDB's default follows the machine's (or the container's) memory,
    // which does not change while the process runs: read once.
    static DEFAULT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let default = match DEFAULT.get() {
        Some(default) => default,
        None => {
            let fresh = duckdb::Connection::open_in_memory_with_flags(crate::connect::config()?)?;
            DEFAULT.get_or_init(|| limit(&fresh).unwrap_or_default())
        }
    };
    if limit(conn)? == *default {
        conn.execute_batch(&format!("SET memory_limit = '{HEADROOM_LIMIT}'"))?;
    }
    Ok(())
}

/// A replay's `memory_limit` where the service set none, as DuckDB takes
/// it: a share of the memory the machine or the container has.
const HEADROOM_LIMIT: &str = "40%";

/// The user types of the database attached as [`TYPES_ALIAS`], as
/// `(schema, name)`.
fn attached_types(conn: &duckdb::Connection) -> duckdb::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT schema_name, type_name FROM duckdb_types() \
         WHERE database_name = ? AND NOT internal ORDER BY ALL",
    )?;
    let rows = stmt.query_map([TYPES_ALIAS], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// The user types of the database file `types` (which has no log beside
/// it), as `schema.name`.
pub(crate) fn user_types(
    connector: &dyn Connector,
    types: &Utf8Path,
) -> duckdb::Result<Vec<String>> {
    let conn = connector.connect_in_memory()?;
    conn.execute_batch(&format!(
        "ATTACH {} AS {TYPES_ALIAS} (READ_ONLY)",
        sql_string(types.as_str())
    ))?;
    Ok(attached_types(&conn)?
        .into_iter()
        .map(|(schema, name)| format!("{schema}.{name}"))
        .collect())
}

/// Create in the in-memory DuckDB `conn`, under the same schema and name,
/// every user type of the database file `types`: each as an alias of the
/// attached file's own type, which DuckDB resolves whole (an enum's labels,
/// a struct of an enum), so that a replay that binds `s.st` finds it. The
/// file must have no log beside it: a read-only ATTACH would replay it.
/// Returns the types created, as `schema.name`. A type DuckDB refuses to
/// create is left out (the replay fails on it only if the log needs it);
/// a failure to read the file is returned.
pub(crate) fn mirror_types(
    conn: &duckdb::Connection,
    types: &Utf8Path,
) -> duckdb::Result<Vec<String>> {
    conn.execute_batch(&format!(
        "ATTACH {} AS {TYPES_ALIAS} (READ_ONLY)",
        sql_string(types.as_str())
    ))?;
    let names = attached_types(conn);
    let mut created = Vec::new();
    for (schema, name) in names.as_deref().unwrap_or_default() {
        let held: i64 = conn.query_row(
            "SELECT count(*) FROM duckdb_types() WHERE database_name = 'memory' AND schema_name = ? AND type_name = ?",
            [schema, name],
            |r| r.get(0),
        )?;
        if held > 0 {
            continue;
        }
        let (s, n) = (sql_ident(schema), sql_ident(name));
        let made = conn.execute_batch(&format!(
            "CREATE SCHEMA IF NOT EXISTS memory.{s}; CREATE TYPE memory.{s}.{n} AS {TYPES_ALIAS}.{s}.{n};"
        ));
        match made {
            Ok(()) => created.push(format!("{schema}.{name}")),
            Err(e) => {
                tracing::warn!(error = %e, "the type {schema}.{name} could not be created for the replay")
            }
        }
    }
    conn.execute_batch(&format!("DETACH {TYPES_ALIAS}"))?;
    names?;
    if !created.is_empty() {
        tracing::debug!(types = ?created, "the replaying DuckDB holds the database's user types");
    }
    Ok(created)
}

/// The scratch folder beside the database, `<db>.replay/`: copies to
/// replay, nothing else. What is in it is derived from the database's
/// files, so it is removed when a recovery ends and when the next one
/// starts.
pub(crate) struct Scratch {
    dir: Utf8PathBuf,
    name: String,
}

impl Scratch {
    /// The scratch folder of `paths`, as a name only.
    pub fn at(paths: &Paths) -> Self {
        Self {
            dir: Utf8PathBuf::from(format!("{}.replay", paths.db())),
            name: paths.files().name().to_owned(),
        }
    }

    /// The scratch folder, emptied of what an earlier recovery left.
    pub fn new(paths: &Paths) -> io::Result<Self> {
        let scratch = Self::at(paths);
        scratch.remove();
        fs_err::create_dir(&scratch.dir)?;
        Ok(scratch)
    }

    /// The folder.
    pub fn dir(&self) -> &Utf8Path {
        &self.dir
    }

    /// A fresh subfolder `sub`, and the database's name in it.
    pub fn fresh(&self, sub: &str) -> io::Result<Utf8PathBuf> {
        let dir = self.dir.join(sub);
        if fs_err::symlink_metadata(&dir).is_ok() {
            fs_err::remove_dir_all(&dir)?;
        }
        fs_err::create_dir(&dir)?;
        Ok(dir.join(&self.name))
    }

    /// The database file without its log, as a hard link where the file
    /// system allows (else a copy) in `types/`: the replays read the
    /// database's user types from it. Made once a recovery.
    pub fn types(&self, paths: &Paths) -> io::Result<Utf8PathBuf> {
        let db = self.dir.join("types").join(&self.name);
        if fs_err::symlink_metadata(&db).is_ok() {
            return Ok(db);
        }
        let db = self.fresh("types")?;
        link_or_copy(paths.db(), &db)?;
        Ok(db)
    }

    /// The database file with the first `cut` bytes of its log, in
    /// `types-prefix/`: its types are those the log's commits up to the
    /// cut have created too (a read-only ATTACH replays that prefix in
    /// memory, writing nothing).
    pub fn prefix_types(&self, paths: &Paths, cut: u64) -> io::Result<Utf8PathBuf> {
        let db = self.fresh("types-prefix")?;
        link_or_copy(paths.db(), &db)?;
        write_prefix(&paths.wal(), &sibling(&db, ".wal"), cut)?;
        Ok(db)
    }

    /// `text` (DuckDB's error on a copy) naming the database's own files
    /// instead of the copies.
    /// The query DuckDB quotes after the message (the ATTACH, naming the
    /// copy) is left out.
    pub fn as_original(&self, text: &str, paths: &Paths) -> String {
        let text = text
            .split_once("\n\nLINE ")
            .map_or(text, |(message, _)| message);
        ["try", "build", "types", "types-prefix", "ladder"]
            .iter()
            .fold(text.to_owned(), |text, sub| {
                text.replace(
                    self.dir.join(sub).join(&self.name).as_str(),
                    paths.db().as_str(),
                )
            })
    }

    /// Remove the folder, if it is there, and sync the folder it was in.
    /// Best effort: what is left (or what a power cut brings back) is
    /// removed by the next open.
    pub fn remove(&self) {
        if fs_err::symlink_metadata(&self.dir).is_ok() {
            let removed =
                fs_err::remove_dir_all(&self.dir).and_then(|()| match self.dir.parent() {
                    Some(parent) => sysdb_snapshot::sync_dir(parent).map_err(io::Error::other),
                    None => Ok(()),
                });
            if let Err(e) = removed {
                tracing::warn!(error = %e, "the scratch folder of a replay could not be removed");
            }
        }
    }
}

/// Where the replaying DuckDB reads the database's user types from.
#[derive(Clone, Copy)]
pub(crate) enum Types<'a> {
    /// The database file at its last checkpoint ([`Scratch::types`]).
    Checkpoint(&'a Paths, &'a Scratch),
    /// That, then this file, with a prefix of the log beside it
    /// ([`Scratch::prefix_types`]).
    Prefix(&'a Paths, &'a Scratch, &'a Utf8Path),
}

/// What one replay of a copy gave.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// It replayed; for a copy built to restore, the database that now
    /// holds the replayed commits by itself.
    Replayed(Utf8PathBuf),
    /// It did not.
    Failed {
        /// The failure's class.
        class: ErrorClass,
        /// DuckDB's error (or the probe child's end).
        error: Failure,
    },
}

/// Where the replays of copies run.
pub(crate) enum Replayer<'a> {
    /// In this process, through ATTACH from an in-memory DuckDB.
    InProcess(&'a dyn Connector),
    /// In the probe's child, a plain open of the copy: the plain open
    /// kills the process that tries it, and so may a replay of a copy.
    Child(&'a Probe),
}

impl Replayer<'_> {
    /// Replay the database with its log cut at `cut` bytes, writing
    /// nothing of the database's own (in this process read-only, on a hard
    /// link of the database; in the child on a copy).
    pub fn try_prefix(&self, paths: &Paths, scratch: &Scratch, cut: u64) -> io::Result<Attempt> {
        let db = scratch.fresh("try")?;
        match self {
            Replayer::InProcess(_) => link_or_copy(paths.db(), &db)?,
            Replayer::Child(_) => {
                fs_err::copy(paths.db(), &db)?;
            }
        }
        write_prefix(&paths.wal(), &sibling(&db, ".wal"), cut)?;
        self.replay(&db, Types::Checkpoint(paths, scratch), true)
    }

    /// Replay the whole log (every sidecar) in this process, read-only on
    /// a hard link of the database, writing nothing of the database's own
    /// and copying nothing but the sidecars; `None` where this replayer
    /// runs in the child or the file system cannot link.
    pub fn try_whole(&self, paths: &Paths, scratch: &Scratch) -> io::Result<Option<Attempt>> {
        let Replayer::InProcess(_) = self else {
            return Ok(None);
        };
        let db = scratch.fresh("try")?;
        if fs_err::hard_link(paths.db(), &db).is_err() {
            return Ok(None);
        }
        copy_sidecars(paths, &db)?;
        self.replay(&db, Types::Checkpoint(paths, scratch), true)
            .map(Some)
    }

    /// Build, on a copy, the database the log (cut at `cut` bytes, or
    /// whole with every sidecar) replays to, checkpointed so that the copy
    /// holds every replayed commit without a log.
    pub fn build(&self, paths: &Paths, scratch: &Scratch, cut: Option<u64>) -> io::Result<Attempt> {
        self.build_with(paths, scratch, cut, Types::Checkpoint(paths, scratch))
    }

    /// [`build`](Self::build), the replaying DuckDB holding `types`.
    pub fn build_with(
        &self,
        paths: &Paths,
        scratch: &Scratch,
        cut: Option<u64>,
        types: Types<'_>,
    ) -> io::Result<Attempt> {
        let db = scratch.fresh("build")?;
        fs_err::copy(paths.db(), &db)?;
        match cut {
            Some(cut) => write_prefix(&paths.wal(), &sibling(&db, ".wal"), cut)?,
            None => copy_sidecars(paths, &db)?,
        }
        let attempt = self.replay(&db, types, false)?;
        if let Attempt::Replayed(_) = attempt {
            let left: Vec<&str> = sysdb_snapshot::SIDECAR_SUFFIXES
                .into_iter()
                .filter(|s| fs_err::metadata(sibling(&db, s)).is_ok_and(|m| m.len() > 0))
                .collect();
            if !left.is_empty() {
                return Ok(Attempt::Failed {
                    class: ErrorClass::Unknown,
                    error: Failure::Text(format!(
                        "the replayed copy {db} still has a write-ahead log ({}) after its checkpoint",
                        left.join(", ")
                    )),
                });
            }
            // The copy's bytes, then its name in `build/` and that of
            // `build/` in the scratch folder: a recovery marker will name
            // the copy, and a power cut must not leave the marker without
            // it. (The scratch folder's own name is synced with the
            // marker, in the same folder.)
            fs_err::File::open(&db)?.sync_all()?;
            for dir in [self_dir(&db), scratch.dir()] {
                sysdb_snapshot::sync_dir(dir).map_err(io::Error::other)?;
            }
        }
        Ok(attempt)
    }

    fn replay(&self, db: &Utf8Path, types: Types<'_>, read_only: bool) -> io::Result<Attempt> {
        match self {
            Replayer::InProcess(connector) => {
                // Without the types a replay fails only where the log
                // needs them: a file system that can neither link nor hold a
                // copy of the database does not stop a replay that may not.
                let (paths, scratch, prefix) = match types {
                    Types::Checkpoint(paths, scratch) => (paths, scratch, None),
                    Types::Prefix(paths, scratch, file) => (paths, scratch, Some(file)),
                };
                let types: Vec<Utf8PathBuf> = scratch
                    .types(paths)
                    .inspect_err(|e| tracing::warn!(error = %e, "the database's types could not be read for the replay; replaying without them"))
                    .ok()
                    .into_iter()
                    .chain(prefix.map(Utf8Path::to_owned))
                    .collect();
                Ok(match replay_attached(*connector, db, &types, read_only) {
                    Ok(()) => Attempt::Replayed(db.to_owned()),
                    Err(error) => Attempt::Failed {
                        class: classify_error(&error),
                        error: Failure::DuckDb(error),
                    },
                })
            }
            Replayer::Child(probe) => {
                let outcome = crate::probe::run(probe, db).map_err(io::Error::other)?;
                Ok(match outcome {
                    ProbeOutcome::Exited { code: 0 } => Attempt::Replayed(db.to_owned()),
                    ProbeOutcome::Exited { code } => Attempt::Failed {
                        class: ErrorClass::WalReplay {
                            cause: WalReplayCause::Other,
                        },
                        error: Failure::Probe(format!(
                            "the probe child opening the copy {db} exited with code {code}"
                        )),
                    },
                    ProbeOutcome::Killed { signal } => Attempt::Failed {
                        class: ErrorClass::WalReplay {
                            cause: WalReplayCause::ProcessAborted,
                        },
                        error: Failure::Probe(format!(
                            "the probe child opening the copy {db} was killed by signal {signal}"
                        )),
                    },
                })
            }
        }
    }
}

/// `to` as a hard link of `from` where the file system allows, else a copy
/// made under a temporary name: a copy cut short (a full disk) is never
/// left where a replay would take it for the database.
fn link_or_copy(from: &Utf8Path, to: &Utf8Path) -> io::Result<()> {
    if fs_err::hard_link(from, to).is_ok() {
        return Ok(());
    }
    let partial = sibling(to, ".partial");
    let copied = fs_err::copy(from, &partial).and_then(|_| fs_err::rename(&partial, to));
    if copied.is_err() {
        let _ = fs_err::remove_file(&partial);
    }
    copied
}

/// Copy every sidecar of the database beside `db`.
fn copy_sidecars(paths: &Paths, db: &Utf8Path) -> io::Result<()> {
    for suffix in sysdb_snapshot::SIDECAR_SUFFIXES {
        let from = paths.files().sibling(suffix);
        if fs_err::metadata(&from).is_ok() {
            fs_err::copy(&from, sibling(db, suffix))?;
        }
    }
    Ok(())
}

/// The folder `db` is in.
fn self_dir(db: &Utf8Path) -> &Utf8Path {
    db.parent().unwrap_or(Utf8Path::new("."))
}

/// `db` with `suffix` appended.
fn sibling(db: &Utf8Path, suffix: &str) -> Utf8PathBuf {
    Utf8PathBuf::from(format!("{db}{suffix}"))
}

/// Write the first `cut` bytes of the log `from` to `to`.
fn write_prefix(from: &Utf8Path, to: &Utf8Path, cut: u64) -> io::Result<()> {
    let source = fs_err::File::open(from)?;
    let mut out = fs_err::File::create(to)?;
    // The log's own mode: a copy is never more readable than the original.
    out.set_permissions(source.metadata()?.permissions())?;
    let copied = io::copy(&mut source.take(cut), &mut out)?;
    if copied != cut {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{from} is shorter than {cut} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DuckDbConnector;
    use duckdb::Connection;

    #[test]
    fn a_name_with_a_quote_is_quoted() {
        assert_eq!(sql_string("/a/it's"), "'/a/it''s'");
    }

    /// A replay gets half of DuckDB's default pool where the service set
    /// no `memory_limit` (checked against DuckDB's own default and its
    /// reading of the share), and the service's own where it did.
    #[test]
    fn a_replay_leaves_headroom_unless_the_service_chose_its_limit() {
        let shown = |conn: &Connection| -> String {
            conn.query_row("SELECT current_setting('memory_limit')", [], |r| r.get(0))
                .expect("shown")
        };
        let limit_of = |connector: &dyn Connector| {
            let conn = connector.connect_in_memory().expect("in memory");
            leave_headroom(&conn).expect("headroom");
            shown(&conn)
        };
        let fresh = Connection::open_in_memory().expect("in memory");
        let default = shown(&fresh);
        fresh
            .execute_batch("SET memory_limit = '80%'")
            .expect("80 %");
        assert_eq!(shown(&fresh), default, "DuckDB's default is 80 %");
        fresh
            .execute_batch("SET memory_limit = '40%'")
            .expect("40 %");
        let half = shown(&fresh);
        assert_ne!(half, default);
        assert_eq!(limit_of(&DuckDbConnector), half);
        let chosen = crate::DuckDbSettings::new([("memory_limit", "300MiB")]);
        assert_eq!(limit_of(&chosen), "300.0 MiB");
    }

    #[test]
    fn a_replay_spills_beside_its_copy_unless_the_service_chose_where() {
        let temp_of = |connector: &dyn Connector| {
            let conn = connector.connect_in_memory().expect("in memory");
            spill_beside(&conn, Utf8Path::new("/data/x.duckdb.replay/build/x.duckdb"))
                .expect("set");
            conn.query_row("SELECT current_setting('temp_directory')", [], |r| {
                r.get::<_, String>(0)
            })
            .expect("read")
        };
        assert_eq!(
            temp_of(&DuckDbConnector),
            "/data/x.duckdb.replay/build/x.duckdb.tmp"
        );
        let chosen = crate::DuckDbSettings::new([("temp_directory", "/spill")]);
        assert_eq!(temp_of(&chosen), "/spill");
    }

    fn crash(db: &Utf8Path, setup: &str, logged: &str) {
        let conn = Connection::open(db).expect("open");
        conn.execute_batch(setup).expect("setup");
        conn.execute_batch("CHECKPOINT").expect("checkpoint");
        conn.execute_batch(sysdb_scenarios::child::CHECKPOINTS_OFF)
            .expect("checkpoints off");
        conn.execute_batch(logged).expect("logged");
        drop(conn);
    }

    /// A log DuckDB 2.0's plain open cannot replay (the ALTER re-binds a
    /// CHECK that calls `trim`, before `core_functions` is loaded) replays
    /// through ATTACH: read-only without changing a byte, read-write into a
    /// database that needs no log.
    #[test]
    fn a_log_the_plain_open_cannot_replay_replays_through_attach() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Utf8PathBuf::try_from(dir.path().join("x.duckdb")).expect("utf8");
        crash(
            &db,
            "CREATE TABLE t (id INT, note VARCHAR CHECK (trim(note) <> ''));",
            "INSERT INTO t SELECT i, 'n' || i FROM range(400) r(i); ALTER TABLE t ADD COLUMN extra INT;",
        );
        let wal = sibling(&db, ".wal");
        let layout = crate::wal::WalLayout::parse(&fs_err::read(&wal).expect("wal"))
            .expect("DuckDB's log parses");
        assert_eq!(layout.commits.len(), 2, "{layout:?}");
        assert_eq!(layout.tail, crate::wal::Tail::Clean);

        let before = (
            fs_err::read(&db).expect("db"),
            fs_err::read(&wal).expect("wal"),
        );
        let plain = DuckDbConnector.connect(&db).map(drop);
        let class = plain.as_ref().err().map(classify_error);
        assert!(class.is_some_and(|c| c.is_wal_replay()), "{plain:?}");
        replay_attached(&DuckDbConnector, &db, &[], true).expect("read-only replay");
        let after = (
            fs_err::read(&db).expect("db"),
            fs_err::read(&wal).expect("wal"),
        );
        assert!(before == after, "a read-only replay changed the files");

        replay_attached(&DuckDbConnector, &db, &[], false).expect("replay");
        assert!(fs_err::metadata(&wal).is_err(), "the log was checkpointed");
        let conn = DuckDbConnector.connect(&db).expect("reopen");
        let (n, cols): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM duckdb_columns() WHERE table_name = 't')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("count");
        assert_eq!((n, cols), (400, 3));
    }

    /// What a table holds and how it is defined: columns and their types,
    /// comments, constraints, the table's SQL and its rows.
    fn catalog_and_rows(conn: &Connection) -> Vec<String> {
        let mut out = Vec::new();
        for query in [
            "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || coalesce(comment, '') FROM duckdb_columns() WHERE database_name = current_database() ORDER BY ALL",
            "SELECT constraint_type || ' ' || coalesce(expression, '') FROM duckdb_constraints() WHERE database_name = current_database() ORDER BY ALL",
            "SELECT sql FROM duckdb_tables() WHERE database_name = current_database() ORDER BY ALL",
            "SELECT t::VARCHAR FROM t ORDER BY id",
        ] {
            let mut stmt = conn.prepare(query).expect(query);
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .expect(query);
            out.extend(rows.map(|r| r.expect("a row")));
        }
        out
    }

    /// The replay failures of DuckDB 2.0 whose log binds against something
    /// its plain open does not have: the database's own types (a `USING`
    /// cast, a struct of an enum, a generated column or a CHECK casting to
    /// one), the json extension, ICU. Each log, from a real crash of this
    /// DuckDB, fails the plain open and replays through ATTACH from a
    /// DuckDB that holds the database's user types, to the rows and table
    /// definitions of a twin where the same statements ran without a crash.
    /// A `TIMESTAMPTZ` cast is evaluated in the replaying DuckDB's
    /// `TimeZone`: the service's, given as a setting.
    #[test]
    fn the_replay_binds_what_the_log_needs() {
        const ENUM: &str = "CREATE SCHEMA s; CREATE TYPE s.st AS ENUM ('a', 'b');";
        let cases: [(&str, String, &str); 8] = [
            (
                "SET TYPE to an enum of another schema, with USING",
                format!("{ENUM} CREATE TABLE t (id INT, v VARCHAR); INSERT INTO t VALUES (1, 'a');"),
                "INSERT INTO t VALUES (2, 'b'); ALTER TABLE t ALTER v SET TYPE s.st USING v::s.st;",
            ),
            (
                "SET TYPE to a struct of an enum",
                format!("{ENUM} CREATE TYPE s.sr AS STRUCT(k s.st, n INT); CREATE TABLE t (id INT, v VARCHAR); INSERT INTO t VALUES (1, 'a');"),
                "INSERT INTO t VALUES (2, 'b'); ALTER TABLE t ALTER v SET TYPE s.sr USING {'k': v::s.st, 'n': id};",
            ),
            (
                "a generated column casting to an enum, then ADD COLUMN",
                format!("{ENUM} CREATE TABLE t (id INT, v VARCHAR, g s.st AS (v::s.st)); INSERT INTO t (id, v) VALUES (1, 'a');"),
                "INSERT INTO t (id, v) VALUES (2, 'b'); ALTER TABLE t ADD COLUMN w INT;",
            ),
            (
                "a CHECK casting to an enum, then ADD PRIMARY KEY",
                format!("{ENUM} CREATE TABLE t (id INT NOT NULL, v VARCHAR CHECK (v::s.st IS NOT NULL)); INSERT INTO t VALUES (1, 'a');"),
                "INSERT INTO t VALUES (2, 'b'); ALTER TABLE t ADD PRIMARY KEY (id);",
            ),
            (
                "a CHECK casting to an enum, then COMMENT ON COLUMN",
                format!("{ENUM} CREATE TABLE t (id INT, v VARCHAR CHECK (v::s.st IS NOT NULL)); INSERT INTO t VALUES (1, 'a');"),
                "INSERT INTO t VALUES (2, 'b'); COMMENT ON COLUMN t.v IS 'state';",
            ),
            (
                "a CHECK calling json_valid, then ADD COLUMN",
                "CREATE TABLE t (id INT, doc VARCHAR CHECK (json_valid(doc))); INSERT INTO t VALUES (1, '{}');".to_owned(),
                "INSERT INTO t VALUES (2, '[]'); ALTER TABLE t ADD COLUMN w INT;",
            ),
            (
                "SET TYPE JSON",
                "CREATE TABLE t (id INT, doc VARCHAR); INSERT INTO t VALUES (1, '{}');".to_owned(),
                "INSERT INTO t VALUES (2, '[]'); ALTER TABLE t ALTER doc SET TYPE JSON;",
            ),
            (
                "SET TYPE DATE from TIMESTAMPTZ, in the service's time zone",
                "CREATE TABLE t (id INT, ts TIMESTAMPTZ); INSERT INTO t VALUES (1, '2024-01-01 23:30:00-05');".to_owned(),
                "INSERT INTO t VALUES (2, '2024-06-01 23:30:00-04'); ALTER TABLE t ALTER ts SET TYPE DATE;",
            ),
        ];
        let zone = crate::DuckDbSettings::new([("TimeZone", "America/New_York")]);
        for (name, setup, logged) in cases {
            let dir = tempfile::tempdir().expect("tempdir");
            let dir = Utf8PathBuf::try_from(dir.path().to_owned()).expect("utf8");
            let twin = dir.join("twin.duckdb");
            let conn = zone.connect(&twin).expect("twin");
            let tz: String = conn
                .query_row("SELECT current_setting('TimeZone')", [], |r| r.get(0))
                .expect("the time zone");
            assert_eq!(
                tz, "America/New_York",
                "the service's zone, set after the open"
            );
            conn.execute_batch(&setup).expect(name);
            conn.execute_batch(logged).expect(name);
            let want = catalog_and_rows(&conn);
            drop(conn);

            let db = dir.join("x.duckdb");
            let conn = zone.connect(&db).expect("open");
            conn.execute_batch(&setup).expect("setup");
            conn.execute_batch("CHECKPOINT").expect("checkpoint");
            conn.execute_batch(sysdb_scenarios::child::CHECKPOINTS_OFF)
                .expect("checkpoints off");
            conn.execute_batch(logged).expect("logged");
            drop(conn);
            assert!(
                fs_err::metadata(sibling(&db, ".wal")).is_ok(),
                "{name}: a log"
            );
            let types = dir.join("types.duckdb");
            fs_err::copy(&db, &types).expect("the file without its log");

            let plain = zone.connect(&db).map(drop);
            let class = plain.as_ref().err().map(classify_error);
            assert!(
                class.is_some_and(|c| c.is_wal_replay()),
                "{name}: {plain:?}"
            );
            replay_attached(&zone, &db, &[types], false).expect(name);
            let conn = zone.connect(&db).expect("reopen");
            assert_eq!(catalog_and_rows(&conn), want, "{name}");
        }
    }

    /// The types are read from the database file alone: an enum and a
    /// struct of it in another schema, a type of `main`, with names that
    /// need quoting, each created under its own schema and name.
    #[test]
    fn the_replaying_duckdb_holds_the_database_user_types() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Utf8PathBuf::try_from(dir.path().join("x.duckdb")).expect("utf8");
        let conn = Connection::open(&db).expect("open");
        conn.execute_batch(
            r#"CREATE SCHEMA "my s"; CREATE TYPE "my s"."the ""st""" AS ENUM ('a', 'b');
               CREATE TYPE "my s".sr AS STRUCT(k "my s"."the ""st""");
               CREATE TYPE main.al AS VARCHAR;"#,
        )
        .expect("types");
        drop(conn);
        let memory = DuckDbConnector.connect_in_memory().expect("in memory");
        let created = mirror_types(&memory, &db).expect("mirror");
        assert_eq!(created, ["main.al", "my s.sr", r#"my s.the "st""#]);
        let labels: String = memory
            .query_row(
                r#"SELECT enum_range(NULL::memory."my s"."the ""st""")::VARCHAR"#,
                [],
                |r| r.get(0),
            )
            .expect("the enum in memory");
        assert_eq!(labels, "[a, b]");
        let attached: i64 = memory
            .query_row(
                "SELECT count(*) FROM duckdb_databases() WHERE database_name = 'sysdb_types'",
                [],
                |r| r.get(0),
            )
            .expect("databases");
        assert_eq!(attached, 0, "the file is detached again");
    }
}
