"""What the binary's ``--json`` says, as dataclasses. Each keeps the whole
object in ``raw``, so a field this package does not name is still there."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional


def _path(value: Optional[str]) -> Optional[Path]:
    return None if value is None else Path(value)


@dataclass(frozen=True)
class MovedFile:
    """A file a recovery set aside (renamed, never deleted)."""

    source: Path
    to: Path
    bytes: int

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "MovedFile":
        return cls(source=Path(d["from"]), to=Path(d["to"]), bytes=d["bytes"])


@dataclass(frozen=True)
class FailedCommit:
    """The first commit of a log that did not replay."""

    #: Its number, from 1, when the log's framing was read.
    commit: Optional[int]
    #: The byte of the log where it starts.
    at: int
    #: DuckDB's error.
    error: str


@dataclass(frozen=True)
class LogKept:
    """What of a write-ahead log a recovery kept, and what it set aside."""

    commits: Optional[int]
    commits_kept: Optional[int]
    bytes: int
    bytes_kept: int
    replays: int
    first_failed: Optional[FailedCommit]
    #: Commits that replay but were left out for the ladder to apply again.
    reapplied: Optional[Dict[str, Any]]

    @property
    def commits_lost(self) -> Optional[int]:
        """Commits in the log that the restored database does not hold
        (all of them stay in quarantine)."""
        if self.commits is None or self.commits_kept is None:
            return None
        return max(self.commits - self.commits_kept, 0)

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "LogKept":
        failed = d.get("first_failed")
        return cls(
            commits=d.get("commits"),
            commits_kept=d.get("commits_kept"),
            bytes=d["bytes"],
            bytes_kept=d["bytes_kept"],
            replays=d["replays"],
            first_failed=None if failed is None else FailedCommit(**failed),
            reapplied=d.get("reapplied"),
        )


@dataclass(frozen=True)
class Restored:
    """What a recovery restored."""

    #: ``replayed`` (the whole log), ``salvaged`` (the commits before the
    #: first that does not replay), ``database-at-last-checkpoint`` or
    #: ``snapshot``.
    source: str
    #: The file it came from (for a replay, the database set aside).
    source_path: Path
    #: Its schema version, where it could be read.
    version: Optional[int]
    snapshot_age_secs: Optional[int]
    log: Optional[LogKept]

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "Restored":
        log = d.get("log")
        return cls(
            source=d["source"],
            source_path=Path(d["from"]),
            version=d.get("version"),
            snapshot_age_secs=d.get("snapshot_age_secs"),
            log=None if log is None else LogKept._from(log),
        )


@dataclass(frozen=True)
class StepRun:
    """A migration step that ran."""

    version: int
    name: str
    millis: int
    checkpoint_millis: int


@dataclass(frozen=True)
class Migration:
    """A migration run: from and to which version, after which snapshot."""

    from_version: int
    to_version: int
    snapshot: Path
    steps: List[StepRun]

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "Migration":
        return cls(
            from_version=d["from"],
            to_version=d["to"],
            snapshot=Path(d["snapshot"]),
            steps=[
                StepRun(
                    version=s["version"],
                    name=s["name"],
                    millis=s["millis"],
                    checkpoint_millis=s["checkpoint_millis"],
                )
                for s in d.get("steps", [])
            ],
        )


@dataclass(frozen=True)
class Report:
    """What an open found and did (``sysdb migrate --json``)."""

    #: The database.
    path: Path
    #: The write-ahead log's size when the open began, if there was one.
    wal_at_open: Optional[int]
    #: The storage version a new database was created at, if one was.
    created: Optional[str]
    #: The first open's error that started a recovery: ``class``, ``cause``
    #: and DuckDB's ``text``.
    error: Optional[Dict[str, Any]]
    #: Files set aside.
    quarantined: List[MovedFile]
    #: What a recovery restored, if one ran.
    restored: Optional[Restored]
    #: The migration, if steps ran.
    migration: Optional[Migration]
    #: The whole JSON object.
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @property
    def recovered(self) -> bool:
        """Whether files were set aside and a copy restored."""
        return self.restored is not None

    @property
    def migrated(self) -> bool:
        """Whether migration steps ran."""
        return self.migration is not None

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "Report":
        restored = d.get("restored")
        migration = d.get("migration")
        return cls(
            path=Path(d["path"]),
            wal_at_open=d.get("wal_at_open"),
            created=d.get("created"),
            error=d.get("error"),
            quarantined=[MovedFile._from(m) for m in d.get("quarantined", [])],
            restored=None if restored is None else Restored._from(restored),
            migration=None if migration is None else Migration._from(migration),
            raw=d,
        )


@dataclass(frozen=True)
class Check:
    """What ``migrate`` would do (``sysdb check --json``), found by running
    it on a copy: no file of the database changes."""

    #: ``healthy``, ``migrate``, ``recover`` or ``refuse``.
    verdict: str
    #: The same as the library says it: ``healthy``, ``migrated``,
    #: ``recovered`` (``raw["source"]`` says from what) or ``refused``.
    outcome: str
    #: For ``refused``: why, as a short stable name (``wal-replay``,
    #: ``disk-full``, ``vanished``, …; the JSON error's ``code``).
    why: Optional[str]
    #: What it would do, in words.
    would: List[str]
    #: What that would lose, in words.
    would_lose: str
    #: The report of the open on the copy, with the real paths.
    report: Optional[Report]
    #: For ``refuse``: the error, and what an operator can do next.
    error: Optional[str]
    next: Optional[str]
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "Check":
        report = d.get("report")
        return cls(
            verdict=d["verdict"],
            outcome=d.get("outcome", ""),
            why=d.get("why"),
            would=list(d.get("would", [])),
            would_lose=d.get("would_lose", ""),
            report=None if report is None else Report._from(report),
            error=d.get("error"),
            next=d.get("next"),
            raw=d,
        )


@dataclass(frozen=True)
class Status:
    """The files and where the schema stands (``sysdb status --json``);
    changes no file."""

    database: Path
    #: None when the database file does not exist.
    database_bytes: Optional[int]
    #: The pre-migrate snapshot: ``path``, ``bytes``, ``age``, ``version``.
    snapshot: Optional[Dict[str, Any]]
    #: The sets of files set aside, newest first.
    quarantine: List[Dict[str, Any]]
    #: Whether a process holds the open lock, and which.
    lock_held: bool
    lock_holder_pid: Optional[int]
    #: ``storage_version``, ``version``, ``top``, ``pending``, ``drift``.
    schema: Optional[Dict[str, Any]]
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @property
    def version(self) -> Optional[int]:
        """The database's schema version, where it could be read."""
        return None if self.schema is None else self.schema.get("version")

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "Status":
        return cls(
            database=Path(d["database"]),
            database_bytes=d.get("database_bytes"),
            snapshot=d.get("snapshot"),
            quarantine=list(d.get("quarantine", [])),
            lock_held=bool(d.get("lock_held")),
            lock_holder_pid=d.get("lock_holder_pid"),
            schema=d.get("schema"),
            raw=d,
        )
