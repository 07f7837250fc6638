"""sysdb from Python: keep a service's DuckDB system database at its schema
version, and bring it back by itself after a crash mid-migration.

Every call runs the ``sysdb`` binary installed with this package (so the
service's process never links a second DuckDB, and a replay that aborts
kills a child, not the service) and reads its ``--json`` output::

    import sysdb

    # $DATA_DIR/state/system.duckdb, migrations/0001_create_jobs.sql, ...
    conn = sysdb.connect(migrations="migrations")
    conn.execute("INSERT INTO jobs (id, state) VALUES (1, 'queued')")

The database is ``<data_dir>/state/system.duckdb`` (``data_dir`` defaults
to ``$DATA_DIR``) unless ``db`` names the file itself.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Union

from . import _binary, _lock
from ._errors import Error, Locked, Refused
from ._report import (
    Check,
    FailedCommit,
    LogKept,
    Migration,
    MovedFile,
    Report,
    Restored,
    Status,
    StepRun,
)

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "Check",
    "Error",
    "FailedCommit",
    "Locked",
    "LogKept",
    "Migration",
    "MovedFile",
    "Refused",
    "Report",
    "Restored",
    "Status",
    "StepRun",
    "binary",
    "check",
    "connect",
    "migrate",
    "status",
]

__version__ = _binary.package_version()

_log = logging.getLogger("sysdb")

PathLike = Union[str, "os.PathLike[str]"]

#: The data folder's environment variable, as the binary reads it.
DATA_DIR_ENV = "DATA_DIR"


def binary() -> str:
    """The path of the ``sysdb`` binary this package runs: the one installed
    with it, else ``$SYSDB_BIN``, else the first on ``PATH``. Raises
    :class:`Error` when there is none or its version is not this package's."""
    return _binary.find()


def _database(data_dir: Optional[PathLike], db: Optional[PathLike]) -> Path:
    """The database file these arguments name, as the binary resolves them."""
    if db is not None:
        return Path(db)
    folder = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if not folder:
        raise Error(
            "no database named: pass data_dir or db, or set DATA_DIR",
            exit_code=2,
        )
    return Path(folder) / "state" / "system.duckdb"


def _common(
    data_dir: Optional[PathLike],
    db: Optional[PathLike],
    migrations: Optional[PathLike],
    storage_version: Optional[str],
    duckdb_settings: Optional[Mapping[str, Any]],
) -> List[str]:
    args = ["--json", "-q", "--db", str(_database(data_dir, db))]
    if migrations is not None:
        args += ["--migrations", str(migrations)]
    if storage_version is not None:
        args += ["--storage-version", storage_version]
    for name, value in (duckdb_settings or {}).items():
        args += ["--duckdb-setting", f"{name}={value}"]
    return args


def _run(args: List[str], *, ok: Callable[[int], bool], failed: type) -> Dict[str, Any]:
    """Run the binary; the JSON object it printed when ``ok(exit code)``, else
    the exception its exit code stands for (``failed`` for exit code 1)."""
    program = binary()
    try:
        done = subprocess.run(
            [program, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
    except OSError as e:
        raise Error(f"while running {program}: {e}") from None
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        value = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        value = None
    stderr = done.stderr.strip()
    if done.returncode >= 0 and ok(done.returncode) and isinstance(value, dict):
        if stderr:
            _log.warning("%s", stderr)
        return value
    if isinstance(value, dict) and "error" in value:
        kind = {1: failed, 3: Locked}.get(done.returncode, Error)
        kwargs: Dict[str, Any] = dict(
            hint=value.get("hint"),
            caused_by=value.get("caused_by"),
            exit_code=done.returncode,
            code=value.get("code"),
        )
        if isinstance(value.get("report"), dict):
            kwargs["report"] = Report._from(value["report"])
        if kind is Locked:
            kwargs["pid"] = value.get("holder_pid")
        raise kind(value["error"], **kwargs)
    how = (
        f"was killed by signal {-done.returncode}"
        if done.returncode < 0
        else f"exited {done.returncode}"
    )
    raise Error(
        f"{program} {how} without a report" + (f": {stderr}" if stderr else ""),
        exit_code=None if done.returncode < 0 else done.returncode,
    )


def _lock_file(database: Path) -> Path:
    """The open lock beside ``database``: ``system.duckdb.lock``."""
    return database.parent / (database.name + ".lock")


def migrate(
    data_dir: Optional[PathLike] = None,
    migrations: Optional[PathLike] = None,
    *,
    db: Optional[PathLike] = None,
    probe: bool = True,
    storage_version: Optional[str] = None,
    duckdb_settings: Optional[Mapping[str, Any]] = None,
    lock_wait: float = 30.0,
) -> Report:
    """The service's own open, in a child process: recover where sysdb may,
    migrate to the top of ``migrations`` (a folder of ``NNNN_name.sql``),
    and say what it did.

    ``probe`` first opens a folder that has a write-ahead log in a further
    child, so a replay that aborts is recovered from. ``storage_version``
    is the one a new database is created at (default ``v1.4.0``: DuckDB
    1.4 and newer read it). ``duckdb_settings`` (``memory_limit``,
    ``temp_directory``, ``threads``, ``TimeZone``) go on every connection
    sysdb makes. Waits up to ``lock_wait`` seconds for another process
    that holds the database.

    Raises :class:`Refused` when the database was not made ready (the
    message says why, with DuckDB's error, and what to do), :class:`Locked`
    when another process holds it, :class:`Error` otherwise.
    """
    if migrations is None:
        raise Error("migrate needs the migrations: pass migrations=<folder of NNNN_name.sql>", exit_code=2)
    database = _database(data_dir, db)
    args = _common(data_dir, db, migrations, storage_version, duckdb_settings)
    args += ["migrate", "--lock-wait", f"{max(lock_wait, 0.0):.3f}s"]
    if probe:
        args.append("--probe")
    if _lock.holds(_lock_file(database)):
        args.append("--inherit-lock")
    report = Report._from(_run(args, ok=lambda code: code == 0, failed=Refused))
    if report.recovered:
        _log.warning("recovered %s: %s", report.path, _summary(report))
    elif report.migrated:
        _log.info("migrated %s: %s", report.path, _summary(report))
    return report


def _summary(report: Report) -> str:
    parts = []
    if report.restored is not None:
        r = report.restored
        parts.append(f"restored {r.source} from {r.source_path}")
        if r.log is not None and r.log.commits_lost:
            parts.append(f"{r.log.commits_lost} commit(s) of the log set aside")
        parts.append(f"{len(report.quarantined)} file(s) set aside")
    if report.migration is not None:
        m = report.migration
        parts.append(f"migrated {m.from_version} -> {m.to_version}")
    return "; ".join(parts) or "nothing to do"


def check(
    data_dir: Optional[PathLike] = None,
    migrations: Optional[PathLike] = None,
    *,
    db: Optional[PathLike] = None,
    probe: bool = False,
    storage_version: Optional[str] = None,
    duckdb_settings: Optional[Mapping[str, Any]] = None,
) -> Check:
    """What :func:`migrate` would do, found by running it on a copy of the
    files in a temporary folder; no file of the database changes. A
    refusal is a :class:`Check` whose verdict is ``refuse``, not an
    exception; :class:`Locked` when another process holds the database."""
    if migrations is None:
        raise Error("check needs the migrations: pass migrations=<folder of NNNN_name.sql>", exit_code=2)
    args = _common(data_dir, db, migrations, storage_version, duckdb_settings) + ["check"]
    if probe:
        args.append("--probe")
    return Check._from(_run(args, ok=lambda code: code in (0, 10, 11, 12), failed=Error))


def status(
    data_dir: Optional[PathLike] = None,
    migrations: Optional[PathLike] = None,
    *,
    db: Optional[PathLike] = None,
) -> Status:
    """The files, the snapshot, quarantine, the lock holder and, with
    ``migrations``, where the schema stands against them; changes no file."""
    args = _common(data_dir, db, migrations, None, None) + ["status"]
    return Status._from(_run(args, ok=lambda code: code == 0, failed=Error))


def connect(
    data_dir: Optional[PathLike] = None,
    migrations: Optional[PathLike] = None,
    *,
    db: Optional[PathLike] = None,
    probe: bool = True,
    storage_version: Optional[str] = None,
    duckdb_settings: Optional[Mapping[str, Any]] = None,
    lock_wait: float = 30.0,
    on_report: Optional[Callable[[Report], None]] = None,
) -> "duckdb.DuckDBPyConnection":
    """:func:`migrate`, then ``duckdb.connect`` on the database, with the
    open lock ``system.duckdb.lock`` taken first and held as long as the
    connection object lives: a second process's ``connect`` or ``migrate``
    waits for it (``lock_wait`` seconds) and then raises :class:`Locked`
    naming this process.

    The connection is DuckDB's own (usable as a context manager, which
    closes it); the lock goes when it is garbage-collected (``del conn``,
    or the end of the ``with`` block's scope), at the latest when the
    process exits. ``duckdb_settings`` are given to ``duckdb.connect`` as
    its ``config`` too. ``on_report`` is called with the :class:`Report`;
    a recovery is also logged as a warning on the ``sysdb`` logger.
    """
    try:
        import duckdb
    except ImportError:
        raise Error(
            "sysdb.connect needs DuckDB's Python package: pip install duckdb",
        ) from None
    database = _database(data_dir, db)
    hold = _lock.acquire(_lock_file(database), lock_wait)
    try:
        report = migrate(
            data_dir,
            migrations,
            db=db,
            probe=probe,
            storage_version=storage_version,
            duckdb_settings=duckdb_settings,
            lock_wait=lock_wait,
        )
        if on_report is not None:
            on_report(report)
        config = {k: str(v) for k, v in (duckdb_settings or {}).items()}
        conn = duckdb.connect(str(database), config=config)
    except BaseException:
        hold.release()
        raise
    weakref.finalize(conn, hold.release)
    return conn
