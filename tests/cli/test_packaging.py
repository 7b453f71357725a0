"""The client ships its type information (PEP 561): `py.typed` is in the package as built for installing,
so type checkers read `gpucloud_cli`'s annotations (the generated models included) in a user's project."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from django.conf import settings

REPO = Path(settings.BASE_DIR)


def test_the_built_package_carries_py_typed(tmp_path: Path) -> None:
    # A copy of what setuptools reads, so the build leaves nothing in the working tree.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "gpucloud_cli", source / "gpucloud_cli", ignore=shutil.ignore_patterns("__pycache__")
    )
    built = tmp_path / "lib"

    # build_py is the step of a wheel's build that copies the packages and their package data.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from setuptools import setup; setup()",
            "-q",
            "build_py",
            "--build-lib",
            str(built),
        ],
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert (built / "gpucloud_cli" / "client.py").is_file()
    assert (built / "gpucloud_cli" / "py.typed").is_file(), sorted(
        p.name for p in (built / "gpucloud_cli").iterdir()
    )
