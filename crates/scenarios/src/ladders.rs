//! The example migration ladders, written once.
//!
//! [`jobs_ladder`] is the seed service's: 27 steps over `jobs`, whose last
//! one DuckDB 2.0 commits but cannot replay from its write-ahead log. It
//! is the drill's, the fixtures' (`fixtures/migrations` is written from
//! it), the `sysdb` crate's tests' and the CLI tests'. [`items_ladder`] is
//! the reliability suite's six steps, the shape of a real service's.

use camino::Utf8Path;
use duckdb::Connection;
use sysdb_schema::Ladder;

use crate::{Error, Result};

/// The top of [`jobs_ladder`], as in the seed service.
pub const JOBS_TOP: u32 = 27;

/// Step 27 of [`jobs_ladder`]: `jobs.state` becomes an enum, created by the
/// same step in another schema. DuckDB 2.0 commits it but cannot replay it
/// from the write-ahead log ("Type with name job_state does not exist!"),
/// through ATTACH neither: the replay binds the cast in the replaying
/// DuckDB's catalog, and the type is not in the database file at its last
/// checkpoint, from which a recovery reads the types it creates there.
pub const UNREPLAYABLE_STEP: &str = "CREATE TYPE s.job_state AS ENUM ('queued', 'running', 'done');\nALTER TABLE jobs ALTER COLUMN state SET TYPE s.job_state USING state::s.job_state;\n";

/// The steps of [`jobs_ladder`] up to `top`: 1 creates schema `s` and
/// `jobs (id INTEGER, state VARCHAR)`; 2..=26 each add a column
/// `cN INTEGER`; 27 is [`UNREPLAYABLE_STEP`].
pub fn jobs_steps(top: u32) -> Vec<(u32, String, String)> {
    let mut steps = vec![(
        1,
        "create_jobs".to_owned(),
        "CREATE SCHEMA s;\nCREATE TABLE jobs (id INTEGER, state VARCHAR);\n".to_owned(),
    )];
    for v in 2..=top.min(JOBS_TOP - 1) {
        steps.push((
            v,
            format!("add_c{v}"),
            format!("ALTER TABLE jobs ADD COLUMN c{v} INTEGER;\n"),
        ));
    }
    if top >= JOBS_TOP {
        steps.push((
            JOBS_TOP,
            "typed_state".to_owned(),
            UNREPLAYABLE_STEP.to_owned(),
        ));
    }
    steps.truncate(top as usize);
    steps
}

/// The seed service's ladder up to `top` (see [`jobs_steps`]).
pub fn jobs_ladder(top: u32) -> Ladder {
    Ladder::new(jobs_steps(top)).expect("the jobs ladder is valid")
}

/// `jobs` rows `from..to`, each `queued`.
pub fn insert_jobs(from: u64, to: u64) -> String {
    format!("INSERT INTO jobs (id, state) SELECT range, 'queued' FROM range({from}, {to});")
}

/// The schema version, read the way the seed service reads it (a query
/// that must keep working on every database sysdb leaves).
pub fn seed_version(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT version FROM schema_version ORDER BY applied_at DESC LIMIT 1",
        [],
        |r| r.get(0),
    )
    .expect("the seed's version query")
}

/// The rows of `jobs`.
pub fn job_count(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
        .expect("count the jobs")
}

/// The top of [`items_ladder`].
pub const ITEMS_TOP: u32 = 6;

/// The reliability suite's ladder up to `top`: the steps a real service
/// has (tables, a column, a type, an index) and, at 4, the enum conversion
/// whose replay fails on DuckDB 2.0's plain open (a replay through ATTACH
/// that holds the database's types replays it).
pub fn items_ladder(top: u32) -> Ladder {
    let steps = [
        (1, "create_items", "CREATE TABLE items (id BIGINT PRIMARY KEY, payload VARCHAR NOT NULL, state VARCHAR NOT NULL);"),
        (2, "add_owner", "ALTER TABLE items ADD COLUMN owner VARCHAR;"),
        (3, "create_state_type", "CREATE SCHEMA s; CREATE TYPE s.item_state AS ENUM ('new', 'done');"),
        (4, "state_as_enum", "ALTER TABLE items ALTER COLUMN state SET TYPE s.item_state USING state::s.item_state;"),
        (5, "create_events", "CREATE TABLE events (id BIGINT, item BIGINT, created TIMESTAMP DEFAULT now());"),
        (6, "index_owner", "CREATE INDEX items_owner ON items (owner);"),
    ];
    Ladder::new(steps.into_iter().filter(|(v, _, _)| *v <= top)).expect("the items ladder is valid")
}

/// Write `ladder` as a migrations folder (`dir/NNNN_name.sql`, one file a
/// step), the form `Ladder::from_dir` and `sysdb --migrations` read.
pub fn write_migrations(ladder: &Ladder, dir: &Utf8Path) -> Result<()> {
    fs_err::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    for step in ladder.steps() {
        let file = dir.join(format!("{:04}_{}.sql", step.version(), step.name()));
        fs_err::write(&file, step.sql()).map_err(Error::io("writing", &file))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_of_the_jobs_ladder_has_its_top() {
        for top in 1..=JOBS_TOP {
            let ladder = jobs_ladder(top);
            assert_eq!(ladder.top(), top);
            assert_eq!(ladder.steps().len(), top as usize);
        }
        assert_eq!(
            jobs_ladder(JOBS_TOP).step(27).map(|s| s.sql()),
            Some(UNREPLAYABLE_STEP)
        );
        assert_eq!(items_ladder(ITEMS_TOP).top(), ITEMS_TOP);
    }

    #[test]
    fn a_written_ladder_reads_back_with_the_same_checksums() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = crate::utf8(tmp.path()).expect("utf-8").join("migrations");
        let ladder = jobs_ladder(JOBS_TOP);
        write_migrations(&ladder, &dir).expect("write");
        let read = Ladder::from_dir(&dir).expect("read back");
        let sums = |l: &Ladder| {
            l.steps()
                .iter()
                .map(|s| s.checksum().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(sums(&read), sums(&ladder));
    }
}
