"""ruff and mypy, with the configs in pyproject.toml, are part of the default suite: both stay clean."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.conftest import ROOT


def _tool(name: str) -> list[str]:
    exe = shutil.which(name, path=str(ROOT / ".venv" / "bin")) or shutil.which(name)
    return [exe] if exe else [sys.executable, "-m", name]


def test_ruff_is_clean() -> None:
    r = subprocess.run([*_tool("ruff"), "check", "pas", "tests", "benchmarks", "scripts"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_is_clean() -> None:
    r = subprocess.run([*_tool("mypy")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
