"""The package itself: its binary, its API's answers and exceptions, the
open lock held by ``connect``, and the entrypoint pattern."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sysdb
from kit import (
    SERVICES,
    TOP,
    Holder,
    Service,
    broken,
    digest,
    grow,
    ladder,
    need_root,
    read_only,
    small_disk,
    step_file,
)


def test_the_binary_is_the_package_s_and_of_its_version() -> None:
    program = sysdb.binary()
    # Installed by the wheel beside this interpreter's packages.
    assert Path(program).parent == Path(sys.executable).parent, program
    out = subprocess.run([program, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["sysdb", sysdb.__version__]
    # `python -m sysdb` is the same command.
    module = subprocess.run(
        [sys.executable, "-m", "sysdb", "--version"], capture_output=True, text=True, check=True
    )
    assert module.stdout == out.stdout


def test_a_binary_of_another_version_is_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "sysdb"
    fake.write_text("#!/bin/sh\necho 'sysdb 0.0.1'\n")
    fake.chmod(0o755)
    from sysdb import _binary

    with pytest.raises(sysdb.Error, match="is version 0.0.1, this package is") as e:
        _binary._checked(str(fake), sysdb.__version__)
    assert "SYSDB_BIN" in (e.value.hint or "")
    not_sysdb = tmp_path / "other"
    not_sysdb.write_text("#!/bin/sh\necho hello\n")
    not_sysdb.chmod(0o755)
    with pytest.raises(sysdb.Error, match="is not a sysdb binary"):
        _binary._checked(str(not_sysdb), sysdb.__version__)


def test_the_binary_is_found_beside_the_package_else_sysdb_bin_else_path(tmp_path: Path) -> None:
    """The module run from a copy outside the install (as from a source
    checkout): no binary beside it, so SYSDB_BIN, then PATH, decide."""
    source = Path(sysdb.__file__).parent
    shutil.copytree(source, tmp_path / "src" / "sysdb")
    probe = "import sysdb\ntry:\n    print(sysdb.binary())\nexcept sysdb.Error as e:\n    print(e)"

    def found(**env: str) -> str:
        clean = {k: v for k, v in os.environ.items() if k != "SYSDB_BIN"}
        clean.update({"PYTHONPATH": str(tmp_path / "src"), "PATH": "/usr/bin:/bin", **env})
        done = subprocess.run(
            [sys.executable, "-c", probe], env=clean, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    assert found().startswith("no sysdb binary: none was installed with this package")
    assert "hint: install the sysdb wheel" in found()
    assert found(SYSDB_BIN=sysdb.binary()) == sysdb.binary()
    assert "SYSDB_BIN names /nowhere/sysdb, which is not a file" in found(SYSDB_BIN="/nowhere/sysdb")
    on_path = str(Path(sysdb.binary()).parent)
    assert found(PATH=on_path) == sysdb.binary()


def test_a_fresh_folder_is_created_migrated_and_then_healthy(
    data_dir: Path, tmp_path: Path, storage_version: str
) -> None:
    migrations = ladder(tmp_path / "m", TOP)
    check = sysdb.check(migrations=migrations)
    assert check.verdict == "migrate"
    assert any("create the database" in w for w in check.would)

    report = sysdb.migrate(migrations=migrations)
    assert report.created == storage_version
    assert not report.recovered
    assert report.migration is not None
    assert [s.version for s in report.migration.steps] == list(range(1, TOP + 1))
    assert report.path == data_dir / "state" / "system.duckdb"

    assert sysdb.check(migrations=migrations).verdict == "healthy"
    status = sysdb.status(migrations=migrations)
    assert status.version == TOP
    assert status.schema["storage_version"].startswith(storage_version)
    assert not status.lock_held
    # Again: nothing to do.
    again = sysdb.migrate(migrations=migrations)
    assert not again.migrated and not again.recovered


def test_without_a_data_folder_nothing_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DATA_DIR", raising=False)
    with pytest.raises(sysdb.Error, match="no database named"):
        sysdb.migrate(migrations=ladder(tmp_path / "m", TOP))
    with pytest.raises(sysdb.Error, match="needs the migrations"):
        sysdb.migrate(tmp_path)


def test_check_predicts_the_recovery_and_changes_nothing(
    service: Service, data_dir: Path, tmp_path: Path
) -> None:
    sysdb.migrate(migrations=ladder(tmp_path / "before", TOP - 1))
    db = data_dir / "state" / "system.duckdb"
    service.crash(db, 5_000, 5, step_file(TOP))
    before = digest(db.parent)
    check = sysdb.check(migrations=ladder(tmp_path / "after", TOP))
    assert check.verdict == "recover"
    assert (check.outcome, check.raw["source"]) == ("recovered", "salvaged")
    assert check.report is not None and check.report.restored is not None
    assert check.report.restored.log.commits_kept == 5
    assert "1 commit" in check.would_lose
    assert digest(db.parent) == before


def test_a_failing_step_is_refused_with_its_sql_and_duckdb_s_error(
    data_dir: Path, tmp_path: Path
) -> None:
    migrations = ladder(tmp_path / "m", TOP)
    sysdb.migrate(migrations=migrations)
    (migrations / f"{TOP + 1:04}_typo.sql").write_text("CREAT TABLE x (id INTEGER);\n")
    with pytest.raises(sysdb.Refused) as refused:
        sysdb.migrate(migrations=migrations)
    message = str(refused.value)
    assert "CREAT TABLE" in message and "Parser Error" in message, message
    assert refused.value.code == "schema"
    # The window had replaced the snapshot before the step failed: the
    # error says so.
    report = refused.value.report
    assert report is not None and report.migration is not None, refused.value
    assert (report.migration.from_version, report.migration.steps) == (TOP, [])
    assert sysdb.status(migrations=migrations).version == TOP


def test_a_read_only_folder_is_refused_and_left_as_it_is(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_root()
    migrations = ladder(tmp_path / "m", TOP)
    sysdb.migrate(migrations=migrations)
    (data_dir / "state" / "system.duckdb.lock").unlink()
    before = digest(data_dir / "state")
    with read_only(data_dir) as mounted:
        monkeypatch.setenv("DATA_DIR", str(mounted))
        # check, run on a copy elsewhere, still says what migrate does here.
        check = sysdb.check(migrations=migrations)
        assert check.verdict == "refuse", check
        assert "Read-only file system" in (check.error or ""), check
        for call in (sysdb.migrate, sysdb.connect):
            with pytest.raises(sysdb.Refused, match="Read-only file system"):
                call(migrations=migrations)
    assert digest(data_dir / "state") == before


def test_a_full_disk_is_refused_with_the_room_needed_then_recovered_once_there_is_room(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_root()
    with small_disk(tmp_path / "disk", "64m") as disk:
        monkeypatch.setenv("DATA_DIR", str(disk))
        sysdb.migrate(migrations=ladder(tmp_path / "before", TOP - 1))
        db = disk / "state" / "system.duckdb"
        service.crash(db, 200_000, 4, step_file(TOP))
        used = sum(p.stat().st_size for p in db.parent.iterdir())
        # Room for the files, not for a recovery's copies.
        grow(disk, f"{used // 1024 + 512}k")
        before = digest(db.parent)
        migrations = ladder(tmp_path / "after", TOP)

        check = sysdb.check(migrations=migrations)
        assert check.verdict == "refuse", check
        assert "not enough free space" in (check.error or ""), check
        with pytest.raises(sysdb.Refused) as refused:
            sysdb.migrate(migrations=migrations)
        assert "No space left on device" in refused.value.message, refused.value
        assert "free space on the file system of" in (refused.value.hint or ""), refused.value
        assert digest(db.parent) == before
        assert not broken(db.parent)[0]

        grow(disk, "64m")
        assert sysdb.check(migrations=migrations).verdict == "recover"
        with sysdb.connect(migrations=migrations) as conn:
            assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (200_000,)
        # The lock goes with the connection object.
        del conn


def test_connect_holds_the_lock_while_the_connection_lives(data_dir: Path, tmp_path: Path) -> None:
    migrations = ladder(tmp_path / "m", TOP)
    conn = sysdb.connect(migrations=migrations)
    lock = data_dir / "state" / "system.duckdb.lock"
    assert int(lock.read_text()) == os.getpid()
    assert sysdb.status().lock_holder_pid == os.getpid()

    # A second replica waits, then is told who holds it.
    replica = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, sysdb
                try:
                    sysdb.connect(migrations=sys.argv[1], lock_wait=0.5)
                except sysdb.Locked as e:
                    print(e.pid)
                """
            ),
            str(migrations),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replica.stdout.strip() == str(os.getpid()), replica.stderr
    # sysdb's own command waits the same way.
    done = subprocess.run(
        [sysdb.binary(), "--json", "--migrations", str(migrations), "migrate", "--lock-wait", "0.2s"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 3, done
    assert json.loads(done.stdout)["holder_pid"] == os.getpid()

    # This process may run the open again under its own lock: DuckDB, which
    # has the file open here, answers.
    with pytest.raises(sysdb.Locked):
        sysdb.migrate(migrations=migrations, probe=False, lock_wait=0.2)
    conn.close()
    again = sysdb.migrate(migrations=migrations, lock_wait=0.2)
    assert not again.migrated
    del conn
    assert lock.read_text() == ""
    assert sysdb.status().lock_holder_pid is None


def test_connect_waits_for_a_replica_and_names_it(
    service: Service, data_dir: Path, tmp_path: Path
) -> None:
    migrations = ladder(tmp_path / "m", TOP)
    holder = Holder(
        sys.executable,
        "import sys, sysdb; c = sysdb.connect(migrations=sys.argv[1]); print('ready', flush=True); sys.stdin.read()",
        str(migrations),
    )
    try:
        with pytest.raises(sysdb.Locked) as locked:
            sysdb.connect(migrations=migrations, lock_wait=0.3)
        assert locked.value.pid == holder.pid
        with pytest.raises(sysdb.Locked) as locked:
            sysdb.migrate(migrations=migrations, lock_wait=0.3)
        assert locked.value.pid == holder.pid
    finally:
        holder.stop()
    # The killed holder's lock went with it.
    with sysdb.connect(migrations=migrations) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


ENTRYPOINT = """#!/bin/sh
# entrypoint.sh: DATA_DIR is set in the container
sysdb --migrations "$MIGRATIONS" migrate --probe --json && exec "$SERVICE_PYTHON" "$SERVICE" "$@"
"""

SERVICE = """
import os, duckdb
conn = duckdb.connect(os.path.join(os.environ["DATA_DIR"], "state", "system.duckdb"))
print("service up:", conn.execute("SELECT count(*) FROM jobs").fetchone()[0], flush=True)
"""


def test_the_entrypoint_starts_the_service_only_on_a_ready_database(
    service: Service, data_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "entrypoint.sh").write_text(ENTRYPOINT)
    (tmp_path / "service.py").write_text(SERVICE)
    sysdb.migrate(migrations=ladder(tmp_path / "before", TOP - 1))
    db = data_dir / "state" / "system.duckdb"
    service.crash(db, 3_000, 3, step_file(TOP))
    env = dict(
        os.environ,
        MIGRATIONS=str(ladder(tmp_path / "after", TOP)),
        SERVICE_PYTHON=service.python,
        SERVICE=str(tmp_path / "service.py"),
        PATH=os.pathsep.join([str(Path(sysdb.binary()).parent), os.environ.get("PATH", "")]),
    )

    started = subprocess.run(
        ["sh", str(tmp_path / "entrypoint.sh")], env=env, capture_output=True, text=True
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout.splitlines()[-1] == "service up: 3000"
    assert len(broken(db.parent)[1]) == 1

    # A database sysdb refuses keeps the service down, every file as it was.
    db.write_bytes(b"corrupted")
    before = digest(db.parent)
    refused = subprocess.run(
        ["sh", str(tmp_path / "entrypoint.sh")], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 1
    assert "service up" not in refused.stdout
    assert digest(db.parent) == before


def test_services_cover_a_duckdb_1_and_a_2_where_ci_runs() -> None:
    majors = {s.duckdb_version.split(".")[0] for s in SERVICES}
    if os.environ.get("CI"):
        assert {"1", "2"} <= majors, [s.duckdb_version for s in SERVICES]
    else:
        assert majors, "no service DuckDB"


def test_every_service_reads_and_writes_what_sysdb_created(
    service: Service, data_dir: Path, tmp_path: Path, storage_version: str
) -> None:
    migrations = ladder(tmp_path / "m", TOP)
    sysdb.migrate(migrations=migrations)
    db = data_dir / "state" / "system.duckdb"
    done = service.run(
        "import sys, duckdb; c = duckdb.connect(sys.argv[1]); "
        "c.execute(\"INSERT INTO jobs (id, state) VALUES (7, 'done')\"); c.execute('CHECKPOINT')",
        str(db),
    )
    assert done.returncode == 0, done.stderr
    assert service.read(db) == {"version": TOP, "jobs": 1, "sum": 7}
    # sysdb opens what the service wrote, and leaves its storage version.
    assert not sysdb.migrate(migrations=migrations).migrated
    assert sysdb.status(migrations=migrations).schema["storage_version"].startswith(storage_version)


def test_the_wheel_carries_the_binary_and_the_typed_module() -> None:
    wheel = os.environ.get("SYSDB_TEST_WHEEL")
    if wheel is None:
        assert not os.environ.get("CI"), "CI names the wheel it built (cargo xtask python)"
        pytest.skip("no wheel named: run through `cargo xtask python`")
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        version = sysdb.__version__
        assert f"sysdb-{version}.data/scripts/sysdb" in names, sorted(names)
        assert {"sysdb/__init__.py", "sysdb/__main__.py", "sysdb/py.typed"} <= names
        info = z.getinfo(f"sysdb-{version}.data/scripts/sysdb")
        assert (info.external_attr >> 16) & 0o111, "the binary is not executable"
        metadata = z.read(f"sysdb-{version}.dist-info/METADATA").decode()
    assert f"\nVersion: {version}\n" in metadata
    # No Python extension: the service's process links no second DuckDB.
    assert not [n for n in names if n.endswith((".so", ".pyd"))], sorted(names)
