"""The exceptions, one per way a command can end that a service acts on."""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

if TYPE_CHECKING:
    from ._report import Report


class Error(Exception):
    """A sysdb command failed: the message names the path, ``hint`` the
    next step, ``caused_by`` each cause (DuckDB's error among them)."""

    def __init__(
        self,
        message: str,
        *,
        hint: Optional[str] = None,
        caused_by: Optional[List[str]] = None,
        exit_code: Optional[int] = None,
        report: Optional["Report"] = None,
        code: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        #: What failed, naming the path.
        self.message = message
        #: What to do next, where the message alone does not say it.
        self.hint = hint
        #: The causes under the message, outermost first.
        self.caused_by = list(caused_by or [])
        #: The binary's exit code (see ``sysdb --help``); None where the
        #: binary did not run or did not end by itself.
        self.exit_code = exit_code
        #: What the open had done before it failed, where it had changed
        #: files by then (set files aside, restored a copy, replaced the
        #: snapshot, applied steps); None where it changed none.
        self.report = report
        #: Why, as a short stable name (``wal-replay``, ``disk-full``,
        #: ``locked``, ``vanished``, ``schema``, ``usage``, …); None where the
        #: binary did not say.
        self.code = code

    def __str__(self) -> str:
        lines = [self.message]
        lines += [f"caused by: {cause}" for cause in self.caused_by]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


class Refused(Error):
    """The open did not make the database ready (exit code 1): sysdb
    refused to act on what it found (DuckDB's error is in the message), or
    a step failed. The service must not start; an operator acts."""


class Locked(Error):
    """Another process holds the database (exit code 3), ``pid`` when it is
    known and alive."""

    def __init__(self, message: str, *, pid: Optional[int] = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        #: The process that holds it.
        self.pid = pid
