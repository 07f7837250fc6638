"""The fixtures of the Python tests; the scenario kit is ``kit.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit import SERVICES, STORAGE_VERSION


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that takes ``service`` runs once per service DuckDB."""
    if "service" in metafunc.fixturenames:
        metafunc.parametrize(
            "service", SERVICES, ids=[f"duckdb-{s.duckdb_version}" for s in SERVICES]
        )


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``DATA_DIR``, set in the environment as a container sets it."""
    data = tmp_path / "data"
    (data / "state").mkdir(parents=True)
    monkeypatch.setenv("DATA_DIR", str(data))
    return data


@pytest.fixture(autouse=True)
def storage_version(monkeypatch: pytest.MonkeyPatch) -> str:
    """Databases at a storage version every service reads, set as a
    container sets it: in the environment the binary reads."""
    monkeypatch.setenv("SYSDB_STORAGE_VERSION", STORAGE_VERSION)
    return STORAGE_VERSION
