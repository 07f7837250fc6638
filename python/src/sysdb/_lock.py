"""The open lock ``system.duckdb.lock``, taken from Python the way sysdb
takes it: an exclusive ``flock`` held while the database is open, the
holder's pid written in the file (ten characters, right-aligned, and a
newline), the file emptied on a clean release. A ``sysdb migrate
--inherit-lock`` this process starts then runs under it."""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Dict, Optional

from ._errors import Locked, Refused

_RETRY = 0.025

_guard = threading.Lock()
#: The locks this process holds, by path, with how many connections use
#: each: a second flock of the same file from this process would wait for
#: the first.
_held: Dict[str, list] = {}


def holds(path: Path) -> bool:
    """Whether this process holds the lock at ``path``."""
    with _guard:
        return str(path) in _held


def _holder(fd: int) -> Optional[int]:
    """The pid the holder wrote, if it names a live process."""
    for _ in range(200):
        text = os.pread(fd, 64, 0).decode(errors="replace").strip()
        if text.isdigit():
            pid = int(text)
            try:
                os.kill(pid, 0)
                return pid
            except ProcessLookupError:
                pass
            except PermissionError:
                return pid
        elif text:
            return None
        time.sleep(0.005)
    return None


def _counted(key: str) -> Optional["Hold"]:
    """One more use of a lock this process holds already; call under the guard."""
    if key in _held:
        _held[key][1] += 1
        return Hold(key)
    return None


def acquire(path: Path, wait: float) -> "Hold":
    """Take the lock at ``path`` (or count one more use of it, when this
    process holds it), waiting up to ``wait`` seconds for another holder."""
    key = str(path)
    with _guard:
        held = _counted(key)
    if held is not None:
        return held
    try:
        fd = os.open(key, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise Refused(f"while taking the open lock {path}: {e.strerror}") from None
    started = time.monotonic()
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EINTR):
                    raise Refused(f"while taking the open lock {path}: {e.strerror}") from None
            with _guard:
                # Another thread of this process took it meanwhile.
                held = _counted(key)
            if held is not None:
                os.close(fd)
                return held
            waited = time.monotonic() - started
            if waited >= wait:
                pid = _holder(fd)
                who = "another process" if pid is None else f"process {pid}"
                raise Locked(
                    f"{path} is held by {who} (waited {waited:.1f}s); "
                    "stop that process or retry when it is done",
                    pid=pid,
                    exit_code=3,
                    hint="stop the process that holds the database, or retry when it is done",
                )
            time.sleep(_RETRY)
        os.pwrite(fd, f"{os.getpid():>10}\n".encode(), 0)
        os.ftruncate(fd, 11)
    except BaseException:
        os.close(fd)
        raise
    with _guard:
        _held[key] = [fd, 1]
    return Hold(key)


class Hold:
    """One use of a lock this process holds; released once."""

    def __init__(self, key: str) -> None:
        self._key: Optional[str] = key

    def release(self) -> None:
        """Let go of this use; the last one empties the file and unlocks it."""
        with _guard:
            key, self._key = self._key, None
            if key is None or key not in _held:
                return
            entry = _held[key]
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _held[key]
            fd = entry[0]
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass  # a pid left behind is never reported once its process is gone
            os.close(fd)
