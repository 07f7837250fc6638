"""The seed service's four WAL-recovery tests (``test_system_db_wal_recovery.py``),
from Python, on real crashes: a service process on a real DuckDB Python
package commits and is SIGKILLed, and sysdb opens what it left. Where the
seed patched ``duckdb.connect`` to raise an error, these make DuckDB raise
it."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

import sysdb
from kit import TOP, Holder, Service, broken, digest, ladder, step_file, wait_for

ROWS = 10_000
COMMITS = 10


def crashed_mid_migration(service: Service, data_dir: Path, tmp_path: Path) -> Path:
    """A database sysdb migrated to version TOP-1, to which the service
    committed ROWS jobs in COMMITS commits and then the last step (which
    DuckDB commits but cannot replay from its log), killed before any
    checkpoint. Returns the database."""
    sysdb.migrate(migrations=ladder(tmp_path / "before", TOP - 1))
    db = data_dir / "state" / "system.duckdb"
    service.crash(db, ROWS, COMMITS, step_file(TOP))
    return db


def plain_open_fails(db: Path, tmp_path: Path) -> str:
    """DuckDB 2.0 (sysdb's, here the tests' own) no longer opens the crashed
    database (tried on a copy): its error. (DuckDB 1.1 replays the log of
    that step; 1.4 and 2.0 do not.)"""
    import duckdb

    assert duckdb.__version__.startswith("2."), duckdb.__version__
    copy = tmp_path / "plain-open"
    shutil.copytree(db.parent, copy)
    with pytest.raises(duckdb.Error, match="Failure while replaying WAL file") as failed:
        duckdb.connect(str(copy / db.name))
    return str(failed.value)


def test_recovery_restores_pre_migrate_snapshot_on_wal_replay_error(
    service: Service, data_dir: Path, tmp_path: Path
) -> None:
    db = crashed_mid_migration(service, data_dir, tmp_path)
    state = db.parent
    assert (state / "system.duckdb.pre-migrate").exists(), "fixture setup: snapshot must exist"
    plain_open_fails(db, tmp_path)

    reports = []
    conn = sysdb.connect(migrations=ladder(tmp_path / "after", TOP), on_report=reports.append)

    # The connection is usable, at the ladder's top, with every committed row.
    version = conn.execute(
        "SELECT version FROM schema_version ORDER BY applied_at DESC LIMIT 1"
    ).fetchone()
    assert version == (TOP,)
    assert conn.execute("SELECT count(*), sum(id) FROM jobs").fetchone() == (
        ROWS,
        ROWS * (ROWS - 1) // 2,
    )
    # The broken database and log were set aside, kept for post-mortem.
    dbs, wals = broken(state)
    assert (len(dbs), len(wals)) == (1, 1), (dbs, wals)
    # The database is in place and no log waits beside it.
    assert db.exists()
    assert not (state / "system.duckdb.wal").exists()

    # What was kept and lost, said: every row commit replayed, and the step
    # that does not replay was run again by the ladder.
    (report,) = reports
    assert report.recovered and report.migrated
    assert report.error is not None and report.error["class"] == "wal-replay"
    log = report.restored.log
    assert (log.commits, log.commits_kept, log.commits_lost) == (COMMITS + 1, COMMITS, 1)
    assert log.first_failed is not None and log.first_failed.commit == COMMITS + 1
    assert (report.migration.from_version, report.migration.to_version) == (TOP - 1, TOP)
    assert {m.to for m in report.quarantined} == set(dbs + wals)
    conn.close()
    del conn

    # Every service reads what sysdb left, whichever DuckDB it runs.
    from kit import SERVICES

    for reader in SERVICES:
        assert reader.read(db) == {
            "version": TOP,
            "jobs": ROWS,
            "sum": ROWS * (ROWS - 1) // 2,
        }, reader.duckdb_version


def test_recovery_does_not_fire_on_unrelated_error(
    service: Service, data_dir: Path, tmp_path: Path
) -> None:
    state = data_dir / "state"
    migrations = ladder(tmp_path / "m", TOP)

    # A file that is not a DuckDB database: refused, every file unchanged.
    db = state / "system.duckdb"
    db.write_bytes(b"corrupted")
    before = digest(state)
    with pytest.raises(sysdb.Refused, match="not a valid DuckDB database file") as refused:
        sysdb.migrate(migrations=migrations)
    assert refused.value.exit_code == 1
    assert refused.value.hint
    assert digest(state) == before
    assert not broken(state)[0]

    # Another process holds the database open with its own DuckDB: the
    # lock error propagates, naming it, and nothing is touched.
    db.unlink()
    sysdb.migrate(migrations=migrations)
    before = digest(state)
    holder = Holder(
        service.python,
        "import sys, duckdb; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); sys.stdin.read()",
        str(db),
    )
    try:
        with pytest.raises(sysdb.Locked) as locked:
            sysdb.migrate(migrations=migrations, probe=False)
        assert locked.value.pid == holder.pid
        assert locked.value.exit_code == 3
        assert "lock" in str(locked.value).lower()
    finally:
        holder.stop()
    assert digest(state) == before


def test_recovery_propagates_when_no_snapshot_exists(
    service: Service, data_dir: Path, tmp_path: Path
) -> None:
    db = crashed_mid_migration(service, data_dir, tmp_path)
    state = db.parent
    (state / "system.duckdb.pre-migrate").rename(tmp_path / "snapshot-elsewhere")
    before = digest(state)

    with pytest.raises(sysdb.Refused) as refused:
        sysdb.migrate(migrations=ladder(tmp_path / "after", TOP))
    # DuckDB's own replay error, whole.
    message = str(refused.value)
    assert "Failure while replaying WAL file" in message, message
    assert "job_state" in message, message
    assert "pre-migrate snapshot" in (refused.value.hint or "")
    assert digest(state) == before


def test_recovery_re_raises_if_snapshot_also_broken(data_dir: Path, tmp_path: Path) -> None:
    """A migration killed in its window (by SIGKILL, while its step runs),
    then the database and the snapshot both damaged: sysdb restores neither,
    touches neither, says what DuckDB said of the database, and, in its
    hint, what DuckDB says of the snapshot."""
    migrations = ladder(tmp_path / "m", TOP - 1)
    sysdb.migrate(migrations=migrations)
    (migrations / f"{TOP:04}_slow.sql").write_text(
        "CREATE TABLE big AS SELECT range AS id, md5(range::VARCHAR) AS h FROM range(50000000);\n"
    )
    state = data_dir / "state"
    child = subprocess.Popen(
        [sysdb.binary(), "--migrations", str(migrations), "-q", "migrate"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(state / "system.duckdb.migrating", timeout=60)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert (state / "system.duckdb.migrating").exists()

    (state / "system.duckdb").write_bytes(b"corrupted")
    (state / "system.duckdb.pre-migrate").write_bytes(b"also-corrupted")
    before = digest(state)

    with pytest.raises(sysdb.Refused, match="not a valid DuckDB database file") as refused:
        sysdb.migrate(migrations=migrations)
    # The snapshot's own error is not swallowed: the hint says it does not
    # read either, with DuckDB's words, instead of offering to restore it.
    hint = refused.value.hint or ""
    assert "system.duckdb.pre-migrate does not read either" in hint, hint
    assert "not a valid DuckDB database file" in hint, hint
    assert sysdb.check(migrations=migrations).next == hint
    assert digest(state) == before
    status = sysdb.status(migrations=migrations)
    assert status.snapshot is not None and status.snapshot["version"] is None
