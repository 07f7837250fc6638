"""Finding the ``sysdb`` binary this package runs, and checking its version."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import List, Optional

from ._errors import Error

#: The environment variable that names a ``sysdb`` binary to use where the
#: package carries none (a source checkout, a binary built by hand).
BIN_ENV = "SYSDB_BIN"

_EXE = "sysdb" + (sysconfig.get_config_var("EXE") or "")


def _schemes() -> List[str]:
    """The install schemes whose scripts folder may hold the package's
    binary: the interpreter's own, then the user's (``pip install --user``)."""
    return [sysconfig.get_default_scheme(), sysconfig.get_preferred_scheme("user")]


def beside_package() -> Optional[Path]:
    """The binary the wheel installed with this package: in the scripts
    folder of the scheme whose library folder holds the package, or in
    ``bin`` beside it (``pip install --target``). None for a package that
    was not installed from the wheel (a source checkout on ``sys.path``)."""
    package_root = Path(__file__).resolve().parent.parent
    for scheme in _schemes():
        try:
            libs = {
                Path(sysconfig.get_path(name, scheme)).resolve()
                for name in ("purelib", "platlib")
            }
            scripts = Path(sysconfig.get_path("scripts", scheme))
        except KeyError:
            continue
        if package_root in libs and (scripts / _EXE).is_file():
            return scripts / _EXE
    target = package_root / "bin" / _EXE
    return target if target.is_file() else None


def package_version() -> Optional[str]:
    """This package's version, as installed; None when it runs from a source
    checkout without being installed."""
    try:
        return version("sysdb")
    except PackageNotFoundError:
        return None


@lru_cache(maxsize=None)
def _checked(path: str, expected: Optional[str]) -> str:
    """``path`` once it ran as a ``sysdb`` of the ``expected`` version."""
    try:
        out = subprocess.run(
            [path, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError as e:
        raise Error(f"while running the sysdb binary {path}: {e}") from None
    words = out.stdout.split()
    if out.returncode != 0 or len(words) != 2 or words[0] != "sysdb":
        raise Error(
            f"{path} is not a sysdb binary: `--version` printed {out.stdout.strip()!r}"
            f" and exited {out.returncode}",
            hint=f"point {BIN_ENV} at the sysdb binary, or reinstall the sysdb package",
        )
    if expected is not None and words[1] != expected:
        raise Error(
            f"the sysdb binary {path} is version {words[1]}, this package is {expected}",
            hint=f"reinstall the sysdb package, or point {BIN_ENV} at sysdb {expected}",
        )
    return path


def find() -> str:
    """The ``sysdb`` binary to run: the one installed with this package,
    else ``$SYSDB_BIN``, else the first on ``PATH``; its version must be
    this package's."""
    found = beside_package()
    if found is None and os.environ.get(BIN_ENV):
        found = Path(os.environ[BIN_ENV])
        if not found.is_file():
            raise Error(
                f"{BIN_ENV} names {found}, which is not a file",
                hint=f"point {BIN_ENV} at the sysdb binary, or unset it",
            )
    if found is None:
        on_path = shutil.which(_EXE)
        if on_path is None:
            raise Error(
                "no sysdb binary: none was installed with this package, "
                f"{BIN_ENV} is not set, and none is on PATH",
                hint="install the sysdb wheel (it carries the binary), "
                f"or set {BIN_ENV} to the binary's path",
            )
        found = Path(on_path)
    return _checked(str(found), package_version())
