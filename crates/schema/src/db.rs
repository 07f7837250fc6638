//! The ladder against a database: status, plan and apply.

use std::fmt;
use std::time::{Duration, Instant};

use duckdb::Connection;

use crate::ladder::{Ladder, Step};
use crate::split::statements;
use crate::{Error, Result};

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (\
    version INTEGER PRIMARY KEY, name VARCHAR, checksum VARCHAR, applied_at TIMESTAMP)";

/// The `schema_version` row of a step, `values` being the SQL of its
/// version, name and checksum (`?` for parameters). `applied_at` is now, but
/// always after every earlier row, so that `ORDER BY applied_at DESC` finds
/// the newest step even when the clock went back or two steps ran within one
/// tick.
fn insert_row([version, name, checksum]: [&str; 3]) -> String {
    format!(
        "INSERT INTO schema_version (version, name, checksum, applied_at) \
         SELECT {version}, {name}, {checksum}, greatest(CAST(now() AS TIMESTAMP), \
         coalesce((SELECT max(applied_at) FROM schema_version) + INTERVAL 1 MICROSECOND, \
         CAST(now() AS TIMESTAMP)))"
    )
}

/// `text` as an SQL string literal.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Step {
    /// The step and its `schema_version` row as one SQL batch, in one
    /// transaction, as [`Ladder::apply`] commits them (without the
    /// `CHECKPOINT` that follows): for a process that must commit a step
    /// the way the ladder does and then die before the checkpoint.
    pub fn transaction_sql(&self) -> String {
        let row = insert_row([
            &self.version().to_string(),
            &quoted(self.name()),
            &quoted(self.checksum()),
        ]);
        format!(
            "BEGIN;\n{CREATE_TABLE};\n{}\n{row};\nCOMMIT;",
            self.sql().trim_end()
        )
    }
}

/// The current version of the database: the highest version
/// `schema_version` records (0 for a database without the table), the
/// same that [`Ladder::status`] reports as `current`. Reads only.
pub fn current_version(conn: &Connection) -> Result<u32> {
    Ok(read_recorded(conn)?.current())
}

/// An applied step whose recorded checksum differs from the ladder's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The step's version.
    pub version: u32,
    /// The step's name in the ladder.
    pub name: String,
    /// The checksum recorded when it was applied.
    pub recorded: String,
    /// The checksum of the ladder's SQL now.
    pub expected: String,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (recorded {}, ladder {})",
            self.version,
            self.name,
            short(&self.recorded),
            short(&self.expected)
        )
    }
}

fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
}

/// Where a database stands against a ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The database's version (0: no `schema_version` table or no rows).
    pub current: u32,
    /// The ladder's top version.
    pub target: u32,
    /// The steps above `current`, in order.
    pub pending: Vec<u32>,
    /// Applied steps whose SQL changed since.
    pub drift: Vec<Drift>,
    /// Versions missing between the lowest and highest recorded one.
    pub missing: Vec<u32>,
    /// `schema_version` lacks the `name` and `checksum` columns (an earlier
    /// tool's table); `apply` adds and fills them.
    pub legacy_table: bool,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "schema version {} of {}", self.current, self.target)?;
        if self.current > self.target {
            writeln!(f, "the database is newer than this build's ladder")?;
        }
        match self.pending.as_slice() {
            [] => writeln!(f, "pending: none")?,
            [one] => writeln!(f, "pending: {one}")?,
            [first, .., last] => writeln!(
                f,
                "pending: {first} to {last} ({} steps)",
                self.pending.len()
            )?,
        }
        for d in &self.drift {
            writeln!(f, "drift: {d}")?;
        }
        if !self.missing.is_empty() {
            writeln!(f, "missing versions: {}", crate::list(&self.missing))?;
        }
        if self.legacy_table {
            writeln!(
                f,
                "schema_version lacks name and checksum; they will be added"
            )?;
        }
        Ok(())
    }
}

/// What [`Ladder::apply`] would do, computed by [`Ladder::plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The version before.
    pub from: u32,
    /// The version after.
    pub to: u32,
    /// `schema_version` will be created.
    pub create_table: bool,
    /// `schema_version`'s missing columns will be added and filled.
    pub adopt_legacy_table: bool,
    /// The steps to run, in order: `(version, name, sql)`.
    pub steps: Vec<(u32, String, String)>,
}

impl Plan {
    /// `true` when applying would change nothing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && !self.adopt_legacy_table
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "nothing to do: the database is at version {}", self.from);
        }
        writeln!(f, "migrate from version {} to {}", self.from, self.to)?;
        if self.create_table {
            writeln!(f, "  create schema_version")?;
        }
        if self.adopt_legacy_table {
            writeln!(f, "  add name and checksum to schema_version and fill them")?;
        }
        for (version, name, sql) in &self.steps {
            writeln!(f, "  {version} {name}")?;
            for line in sql.trim().lines() {
                writeln!(f, "      {line}")?;
            }
        }
        Ok(())
    }
}

/// How to apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Stop at this version instead of the ladder's top.
    pub target: Option<u32>,
    /// Apply even though applied steps changed since (drift).
    pub accept_drift: bool,
}

/// One step applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDone {
    /// The step's version.
    pub version: u32,
    /// The step's name.
    pub name: String,
    /// Time spent running it and committing.
    pub elapsed: Duration,
    /// Time spent in the CHECKPOINT after it.
    pub checkpoint: Duration,
}

/// What [`Ladder::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The version before.
    pub from: u32,
    /// The version after.
    pub to: u32,
    /// `schema_version`'s missing columns were added and filled.
    pub adopted_legacy_table: bool,
    /// The steps run, in order.
    pub steps: Vec<StepDone>,
}

/// What `schema_version` holds.
struct Recorded {
    exists: bool,
    legacy: bool,
    /// `(version, checksum)` sorted by version, without duplicates.
    rows: Vec<(u32, Option<String>)>,
}

impl Recorded {
    /// The current version: the highest recorded, 0 for none.
    fn current(&self) -> u32 {
        self.rows.last().map_or(0, |(v, _)| *v)
    }
}

fn bookkeeping(doing: &'static str) -> impl FnOnce(duckdb::Error) -> Error {
    move |source| Error::Bookkeeping {
        doing,
        cause: source,
    }
}

/// The rows of a `schema_version` with every column this crate writes:
/// naming `name` makes a table without it fail to bind, as one without
/// `checksum` does. A plain scan, sorted and made distinct in Rust
/// ([`valid_versions`]): on the open's path, a `GROUP BY` and `ORDER BY`
/// cost DuckDB more than the rest of the query.
const RECORDED_SQL: &str =
    "SELECT CAST(version AS BIGINT), checksum, name IS NULL FROM schema_version";

fn read_recorded(conn: &Connection) -> Result<Recorded> {
    // The usual case, a table this crate made, costs one query; anything
    // else (no table, a legacy table, an error) is looked at closely.
    if let Ok(raw) = query_versions(conn, RECORDED_SQL) {
        return Ok(Recorded {
            exists: true,
            legacy: false,
            rows: valid_versions(raw),
        });
    }
    let reading = "reading schema_version";
    // The table's own columns cost a millisecond; listing the catalog
    // (duckdb_tables(), information_schema) costs more than opening the
    // database, so it is asked only when the table seems missing.
    let listed: duckdb::Result<Vec<String>> = conn
        .prepare("SELECT name FROM pragma_table_info('main.schema_version')")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get::<_, String>(0))?.collect());
    let columns = match listed {
        Ok(columns) => columns,
        Err(e) => {
            let exists: bool = conn
                .query_row(
                    "SELECT count(*) > 0 FROM duckdb_tables() \
                     WHERE table_name = 'schema_version' AND schema_name = 'main' \
                       AND database_name = current_database()",
                    [],
                    |row| row.get(0),
                )
                .map_err(bookkeeping(reading))?;
            if exists {
                return Err(bookkeeping(reading)(e));
            }
            Vec::new()
        }
    };
    if columns.is_empty() {
        return Ok(Recorded {
            exists: false,
            legacy: false,
            rows: Vec::new(),
        });
    }
    let legacy = !columns.iter().any(|c| c == "checksum") || !columns.iter().any(|c| c == "name");
    let query = if legacy {
        "SELECT DISTINCT CAST(version AS BIGINT), NULL::VARCHAR FROM schema_version ORDER BY 1"
    } else {
        RECORDED_SQL
    };
    let raw = query_versions(conn, query).map_err(bookkeeping(reading))?;
    Ok(Recorded {
        exists: true,
        legacy,
        rows: valid_versions(raw),
    })
}

/// `(version, checksum)` from the first two columns of `sql`.
fn query_versions(
    conn: &Connection,
    sql: &str,
) -> duckdb::Result<Vec<(Option<i64>, Option<String>)>> {
    conn.prepare(sql)?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect()
}

/// The recorded versions, sorted, each once with the first checksum
/// recorded for it. Versions outside 1..=u32::MAX cannot be ours; they
/// count as missing history rather than being silently dropped.
fn valid_versions(raw: Vec<(Option<i64>, Option<String>)>) -> Vec<(u32, Option<String>)> {
    let mut rows: Vec<(u32, Option<String>)> = raw
        .into_iter()
        .filter_map(|(v, c)| Some((u32::try_from(v?).ok().filter(|v| *v > 0)?, c)))
        .collect();
    // Stable: rows of one version keep the order DuckDB gave them.
    rows.sort_by_key(|(v, _)| *v);
    rows.dedup_by(|later, first| {
        let same = later.0 == first.0;
        if same && first.1.is_none() {
            first.1 = later.1.take();
        }
        same
    });
    rows
}

impl Ladder {
    /// Where the database stands against this ladder. Reads only.
    pub fn status(&self, conn: &Connection) -> Result<Status> {
        let recorded = read_recorded(conn)?;
        Ok(self.status_of(&recorded))
    }

    fn status_of(&self, recorded: &Recorded) -> Status {
        let current = recorded.current();
        let mut missing = Vec::new();
        for pair in recorded.rows.windows(2) {
            missing.extend(pair[0].0 + 1..pair[1].0);
        }
        let drift = recorded
            .rows
            .iter()
            .filter_map(|(version, recorded)| {
                let step = self.step(*version)?;
                let recorded = recorded.as_deref()?;
                (recorded != step.checksum()).then(|| Drift {
                    version: *version,
                    name: step.name().to_owned(),
                    recorded: recorded.to_owned(),
                    expected: step.checksum().to_owned(),
                })
            })
            .collect();
        Status {
            current,
            target: self.top(),
            pending: (current + 1..=self.top()).collect(),
            drift,
            missing,
            legacy_table: recorded.legacy,
        }
    }

    /// Refuse what `apply` must refuse; return the status otherwise.
    fn checked(&self, recorded: &Recorded, options: &ApplyOptions) -> Result<Status> {
        let status = self.status_of(recorded);
        if status.current > status.target {
            return Err(Error::DatabaseNewer {
                database: status.current,
                ladder: status.target,
            });
        }
        if !status.missing.is_empty() {
            return Err(Error::MissingVersions {
                missing: status.missing,
            });
        }
        if !status.drift.is_empty() && !options.accept_drift {
            return Err(Error::Drift {
                drift: status.drift,
            });
        }
        Ok(status)
    }

    fn pending_steps(&self, status: &Status, options: &ApplyOptions) -> Vec<&Step> {
        let target = options.target.unwrap_or(status.target).min(status.target);
        self.steps()
            .iter()
            .filter(|s| s.version() > status.current && s.version() <= target)
            .collect()
    }

    /// What [`apply`](Self::apply) would do, without doing it; refuses what
    /// `apply` refuses.
    pub fn plan(&self, conn: &Connection, options: &ApplyOptions) -> Result<Plan> {
        let recorded = read_recorded(conn)?;
        let status = self.checked(&recorded, options)?;
        let steps: Vec<(u32, String, String)> = self
            .pending_steps(&status, options)
            .into_iter()
            .map(|s| (s.version(), s.name().to_owned(), s.sql().to_owned()))
            .collect();
        Ok(Plan {
            from: status.current,
            to: steps.last().map_or(status.current, |s| s.0),
            create_table: !recorded.exists && !steps.is_empty(),
            adopt_legacy_table: recorded.legacy,
            steps,
        })
    }

    /// Apply the pending steps (up to [`ApplyOptions::target`]).
    ///
    /// Each step runs in its own transaction with its `schema_version` row and
    /// is followed by a `CHECKPOINT`; after the last one the write-ahead log
    /// must be empty. Refuses, changing nothing, a database newer than the
    /// ladder, versions missing from `schema_version`, and drift unless
    /// accepted. A failing step is rolled back, leaving the database at the
    /// version before it.
    pub fn apply(&self, conn: &Connection, options: &ApplyOptions) -> Result<Applied> {
        self.apply_with(conn, options, &mut |_| {})
    }

    /// [`apply`](Self::apply), reporting each step to `on_step` once it is
    /// committed and checkpointed.
    pub fn apply_with(
        &self,
        conn: &Connection,
        options: &ApplyOptions,
        on_step: &mut dyn FnMut(&StepDone),
    ) -> Result<Applied> {
        let recorded = read_recorded(conn)?;
        let status = self.checked(&recorded, options)?;
        let mut applied = Applied {
            from: status.current,
            to: status.current,
            adopted_legacy_table: false,
            steps: Vec::new(),
        };
        if recorded.legacy {
            self.adopt_legacy_table(conn, &recorded)?;
            applied.adopted_legacy_table = true;
        }
        for step in self.pending_steps(&status, options) {
            let done = apply_step(conn, step)?;
            applied.to = step.version();
            on_step(&done);
            applied.steps.push(done);
        }
        if applied.adopted_legacy_table || !applied.steps.is_empty() {
            let wal_size = wal_size(conn)?;
            if wal_size.as_deref().is_some_and(|s| s != "0 bytes") {
                return Err(Error::WalNotEmpty {
                    version: applied.to,
                    wal_size: wal_size.unwrap_or_default(),
                });
            }
        }
        Ok(applied)
    }

    /// Add `name` and `checksum` to an earlier tool's `schema_version` and
    /// fill them from the ladder, in one transaction, then checkpoint.
    fn adopt_legacy_table(&self, conn: &Connection, recorded: &Recorded) -> Result<()> {
        let adopting = "adding name and checksum to schema_version";
        let tx = conn
            .unchecked_transaction()
            .map_err(bookkeeping(adopting))?;
        tx.execute_batch(
            "ALTER TABLE schema_version ADD COLUMN IF NOT EXISTS name VARCHAR;
             ALTER TABLE schema_version ADD COLUMN IF NOT EXISTS checksum VARCHAR;",
        )
        .map_err(bookkeeping(adopting))?;
        for (version, _) in &recorded.rows {
            if let Some(step) = self.step(*version) {
                tx.execute(
                    "UPDATE schema_version SET name = ?, checksum = ? WHERE version = ?",
                    duckdb::params![step.name(), step.checksum(), version],
                )
                .map_err(bookkeeping(adopting))?;
            }
        }
        tx.commit().map_err(bookkeeping(adopting))?;
        conn.execute_batch("CHECKPOINT")
            .map_err(bookkeeping("checkpointing after adopting schema_version"))
    }
}

fn apply_step(conn: &Connection, step: &Step) -> Result<StepDone> {
    let started = Instant::now();
    let fail = |statement: &str, source| Error::Step {
        version: step.version(),
        name: step.name().to_owned(),
        file: step.origin().map(ToOwned::to_owned),
        statement: statement.to_owned(),
        cause: Box::new(source),
    };
    // Dropping the transaction without commit rolls it back.
    let tx = conn
        .unchecked_transaction()
        .map_err(|e| fail("BEGIN TRANSACTION", e))?;
    tx.execute_batch(CREATE_TABLE)
        .map_err(|e| fail(CREATE_TABLE, e))?;
    for statement in statements(step.sql()) {
        tx.execute_batch(statement)
            .map_err(|e| fail(statement, e))?;
    }
    let insert = insert_row(["?", "?", "?"]);
    tx.execute(
        &insert,
        duckdb::params![step.version(), step.name(), step.checksum()],
    )
    .map_err(|e| fail(&insert, e))?;
    #[cfg(feature = "failpoints")]
    fail::fail_point!("schema::step::commit");
    tx.commit().map_err(|e| fail("COMMIT", e))?;
    let elapsed = started.elapsed();

    // Committed, only in the write-ahead log until the checkpoint.
    #[cfg(feature = "failpoints")]
    fail::fail_point!("schema::step::checkpoint");
    let started = Instant::now();
    conn.execute_batch("CHECKPOINT")
        .map_err(|source| Error::Checkpoint {
            version: step.version(),
            name: step.name().to_owned(),
            cause: source,
        })?;
    #[cfg(feature = "failpoints")]
    fail::fail_point!("schema::step::done");
    Ok(StepDone {
        version: step.version(),
        name: step.name().to_owned(),
        elapsed,
        checkpoint: started.elapsed(),
    })
}

/// The size of the database's write-ahead log as DuckDB reports it
/// (`"0 bytes"`), or `None` for a database without one (in memory).
fn wal_size(conn: &Connection) -> Result<Option<String>> {
    conn.query_row(
        "SELECT wal_size FROM pragma_database_size() WHERE database_name = current_database()",
        [],
        |row| row.get::<_, Option<String>>(0),
    )
    .map_err(bookkeeping("reading the write-ahead log's size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_versions_are_sorted_and_distinct() {
        let c = |s: &str| Some(s.to_owned());
        type Raw = Vec<(Option<i64>, Option<String>)>;
        type Rows = Vec<(u32, Option<String>)>;
        let table: [(Raw, Rows); 4] = [
            (vec![], vec![]),
            (
                vec![(Some(2), c("b")), (Some(1), c("a"))],
                vec![(1, c("a")), (2, c("b"))],
            ),
            (
                vec![(Some(1), None), (Some(1), c("a")), (Some(1), c("z"))],
                vec![(1, c("a"))],
            ),
            (
                vec![
                    (None, c("x")),
                    (Some(0), c("x")),
                    (Some(-3), None),
                    (Some(1 << 40), None),
                    (Some(3), None),
                ],
                vec![(3, None)],
            ),
        ];
        for (raw, want) in table {
            assert_eq!(valid_versions(raw.clone()), want, "{raw:?}");
        }
    }

    #[test]
    fn the_plain_scan_reads_what_duckdb_groups() {
        let conn = Connection::open_in_memory().expect("DuckDB");
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER, name VARCHAR, checksum VARCHAR);
             INSERT INTO schema_version VALUES
                 (2, 'two', 'b'), (1, 'one', NULL), (1, 'one', 'a'), (3, NULL, 'c'), (1, 'one', 'z');",
        )
        .expect("a table with duplicates");
        let grouped = query_versions(
            &conn,
            "SELECT CAST(version AS BIGINT), any_value(checksum) FROM schema_version GROUP BY 1 ORDER BY 1",
        )
        .expect("grouped");
        let scanned = query_versions(&conn, RECORDED_SQL).expect("scanned");
        assert_eq!(valid_versions(scanned), valid_versions(grouped));
    }
}
