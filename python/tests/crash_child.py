"""A service killed mid-migration: commits rows, then one migration step
the way sysdb's ladder commits it, and dies by SIGKILL before any
checkpoint, leaving the commits in the write-ahead log.

Run as ``python crash_child.py DB ROWS COMMITS [STEP_FILE]`` with the
DuckDB Python package of the service under test.
"""

import hashlib
import os
import pathlib
import signal
import sys

import duckdb


def checksum(sql: str) -> str:
    """A step's checksum as sysdb records it (`sysdb_schema::checksum`):
    line endings and trailing whitespace do not count."""
    lines = sql.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    text = "\n".join(line.rstrip() for line in lines).rstrip()
    return hashlib.sha256(text.encode()).hexdigest()


def step_transaction(path: pathlib.Path) -> str:
    """The step and its schema_version row in one transaction, as sysdb's
    ladder commits it (`Step::transaction_sql`)."""
    version, name = path.stem.split("_", 1)
    sql = path.read_text()
    return (
        "BEGIN;\n"
        f"{sql.rstrip()}\n"
        "INSERT INTO schema_version (version, name, checksum, applied_at) "
        f"SELECT {int(version)}, '{name}', '{checksum(sql)}', "
        "greatest(CAST(now() AS TIMESTAMP), "
        "coalesce((SELECT max(applied_at) FROM schema_version) + INTERVAL 1 MICROSECOND, "
        "CAST(now() AS TIMESTAMP)));\n"
        "COMMIT;"
    )


def main() -> None:
    db, rows, commits = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    step = pathlib.Path(sys.argv[4]) if len(sys.argv) > 4 else None
    conn = duckdb.connect(db)
    # Nothing reaches the database file before the kill.
    conn.execute("SET checkpoint_threshold = '1TB'")
    per_commit = rows // commits
    for c in range(commits):
        first = c * per_commit
        last = rows if c == commits - 1 else first + per_commit
        conn.execute(
            f"INSERT INTO jobs (id, state) SELECT range, 'queued' FROM range({first}, {last})"
        )
    if step is not None:
        conn.execute(step_transaction(step))
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
