"""A new user's first minutes, for real: a fresh clone with a fresh venv runs the README's demo command
(the wheel installed into a new venv, run from an unrelated directory, is tests/test_fresh_wheel.py).
How both stay clean of the test run and read one wheelhouse: tests/fresh_support.py. Bounds are
generous; nothing here waits on a clock that a cold process could miss.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.fresh_support import clean_env, clone_head

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def test_readme_demo_on_a_fresh_clone(wheelhouse: Path, tmp_path: Path) -> None:
    clone, env = clone_head(tmp_path / "clone"), clean_env(tmp_path / "cache", wheelhouse)
    assert not (clone / ".venv").exists()
    t0 = time.monotonic()
    p = subprocess.run(["bash", "scripts/demo.sh"], cwd=clone, env=env, capture_output=True, text=True,
                       timeout=1200, stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert "COMPLETED" in out and "FAILED" not in out
    assert "building the sample project's environment" in out  # the cold path ran
    assert (clone / ".venv" / "bin" / "uv").is_file()  # setup.sh's main path: uv installed PAS, not pip
    assert "environment of every task: venv" in out and "(the repository's own)" in out
    # the venv is the one setup.sh made: no dev extras in it
    probe = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c", "import pytest"], capture_output=True)
    assert probe.returncode != 0, "the demo venv should not have pytest (no dev extras)"
    print(f"\nfresh clone: bash scripts/demo.sh took {took:.1f}s (cold)")
