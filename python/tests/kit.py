"""The scenario kit of the Python tests (the fixtures are in conftest.py):
services on real DuckDB Python packages, crashes by SIGKILL, folders
compared byte for byte.

``SYSDB_TEST_SERVICE_PYTHONS`` lists (separated by ``os.pathsep``) the
interpreters whose ``duckdb`` package plays the service; every scenario
runs once for each. Unset, the interpreter running the tests is the only
service. Where ``CI`` is set, the list must cover a DuckDB 1.x and a 2.x.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest


HERE = Path(__file__).resolve().parent
MIGRATIONS = HERE / "migrations"
CRASH_CHILD = HERE / "crash_child.py"
#: The ladder's top.
TOP = len(list(MIGRATIONS.glob("*.sql")))


@dataclass(frozen=True)
class Service:
    """A Python interpreter whose ``duckdb`` package plays the service."""

    python: str
    duckdb_version: str

    def run(self, code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``code`` in this service's interpreter."""
        return subprocess.run(
            [self.python, "-c", code, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def read(self, db: Path) -> Dict[str, object]:
        """What this service reads from ``db`` (the seed's version query,
        the jobs, their ids' sum), or the error its DuckDB raises."""
        done = self.run(READ, str(db))
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def crash(self, db: Path, rows: int, commits: int, step: Optional[Path]) -> None:
        """Commit ``rows`` jobs in ``commits`` commits, then ``step`` the way
        sysdb's ladder commits a step, and die by SIGKILL."""
        args = [self.python, str(CRASH_CHILD), str(db), str(rows), str(commits)]
        if step is not None:
            args.append(str(step))
        done = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr)
        wal = Path(str(db) + ".wal")
        assert wal.exists() and wal.stat().st_size > 0, "the crash left no log"


READ = """
import json, sys
import duckdb
try:
    conn = duckdb.connect(sys.argv[1])
    version = conn.execute(
        "SELECT version FROM schema_version ORDER BY applied_at DESC LIMIT 1"
    ).fetchone()[0]
    count, total = conn.execute("SELECT count(*), coalesce(sum(id), 0) FROM jobs").fetchone()
    print(json.dumps({"version": version, "jobs": count, "sum": int(total)}))
except duckdb.Error as e:
    print(json.dumps({"error": str(e)}))
"""


def _service(python: str) -> Service:
    done = subprocess.run(
        [python, "-c", "import duckdb; print(duckdb.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{python} has no duckdb package: {done.stderr}"
    return Service(python=python, duckdb_version=done.stdout.strip())


def services() -> List[Service]:
    listed = os.environ.get("SYSDB_TEST_SERVICE_PYTHONS")
    pythons = [p for p in listed.split(os.pathsep) if p] if listed else [sys.executable]
    return [_service(p) for p in pythons]


SERVICES = services()


def _release(version: str) -> tuple:
    return tuple(int(part) for part in version.split(".")[:2])


#: The storage version the tests create databases at: the oldest that every
#: service reads (DuckDB before 1.4 reads up to v1.0.0), else sysdb's default.
STORAGE_VERSION = (
    "v1.0.0" if any(_release(s.duckdb_version) < (1, 4) for s in SERVICES) else "v1.4.0"
)


def ladder(folder: Path, top: int) -> Path:
    """A migrations folder with the first ``top`` steps of the tests' ladder."""
    folder.mkdir(parents=True, exist_ok=True)
    for step in sorted(MIGRATIONS.glob("*.sql"))[:top]:
        shutil.copy(step, folder / step.name)
    return folder


def step_file(version: int) -> Path:
    return sorted(MIGRATIONS.glob("*.sql"))[version - 1]


def digest(folder: Path) -> Dict[str, str]:
    """Every file in ``folder`` and its SHA-256, but the open lock, whose
    content is the pid of whoever held it last."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.endswith(".lock")
    }


def broken(state: Path) -> tuple:
    """The databases and logs a recovery set aside."""
    sets = sorted(state.glob("system.duckdb.broken.*"))
    return (
        [p for p in sets if not p.name.endswith(".wal")],
        [p for p in sets if p.name.endswith(".wal")],
    )


class Holder:
    """A process that holds something until it is stopped."""

    def __init__(self, python: str, code: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [python, "-c", code, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if line.strip() != "ready":
            self.stop()
            raise AssertionError(f"the holder did not start: {line!r} {self.stderr()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        try:
            return self.proc.communicate(timeout=5)[1] or ""
        except subprocess.TimeoutExpired:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def wait_for(path: Path, timeout: float) -> None:
    started = time.monotonic()
    while not path.exists():
        assert time.monotonic() - started < timeout, f"{path} never appeared"
        time.sleep(0.01)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` seen through a read-only bind mount (root only), as a
    container mounts a volume read-only."""
    mount = folder.parent / (folder.name + "-ro")
    mount.mkdir()
    subprocess.run(["mount", "--bind", str(folder), str(mount)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=True)
        yield mount
    finally:
        # Lazily: a failed test may still hold a file there.
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (as ``mount -o size=`` reads it) mounted on the
    new ``folder`` (root only): a disk that fills."""
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        # Lazily: a failed test may still hold a file there.
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def grow(disk: Path, size: str) -> None:
    """Give the tmpfs at ``disk`` the new ``size``."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True)


def need_root() -> None:
    """Mounts need root; CI has it, elsewhere the test is skipped."""
    if os.geteuid() != 0:
        assert not os.environ.get("CI"), "CI runs as root, for the mounts"
        pytest.skip("mounting needs root")
