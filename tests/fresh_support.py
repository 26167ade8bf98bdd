"""What the fresh-install tests share (tests/test_fresh_install.py, tests/test_fresh_wheel.py): a clone of
the committed HEAD, a clean environment to run it in, and the wheelhouse every install of theirs reads.

Nothing from the test run leaks in: the clone is of the committed HEAD, the subprocesses get no PYTHONPATH
and no PAS venv on PATH, and caches start empty. Every dependency comes from the registry once a day per
machine: `pip wheel` fills a wheelhouse with every dependency, kept under ~/.cache/pas-tests for the day's
other sessions (the registry here sends no cacheable responses, so pip's own cache cannot help), and PAS's
own wheel is built from HEAD each session. Every `pip install` of both tests reads it (PIP_FIND_LINKS +
PIP_NO_INDEX), and so does setup.sh's uv (UV_FIND_LINKS + UV_OFFLINE; uv itself is in the wheelhouse): the
demo takes setup.sh's main path, uv, as on a reader's machine, not its fallback, pip.

The two tests are modules of their own so that pytest-xdist can run them side by side; the first to need
the wheelhouse builds it, under a lock, in the directory the session's workers share, and the other reads it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import ROOT


def head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def clone_head(dest: Path) -> Path:
    """A clone of this checkout's committed HEAD at dest (no work-tree changes, no .venv)."""
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(dest)], check=True)
    subprocess.run(["git", "checkout", "-q", head()], cwd=dest, check=True)
    return dest


def clean_env(cache: Path, wheelhouse: Path) -> dict[str, str]:
    own_bin = str(Path(sys.prefix) / "bin")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PAS_CONFIG_DIR", "PAS_NATS_URL", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(d for d in env.get("PATH", "").split(os.pathsep) if d and d != own_bin)
    env["XDG_CACHE_HOME"] = str(cache)  # the demo's venv cache starts cold ...
    env.update(PIP_FIND_LINKS=str(wheelhouse), PIP_NO_INDEX="1", UV_FIND_LINKS=str(wheelhouse), UV_OFFLINE="1")
    # No byte-compiling of every installed file (litellm alone is thousands): what runs compiles
    # on first import, as it would from a source checkout. The install itself is unchanged.
    env["PIP_NO_COMPILE"] = "1"
    return env


def _deps_cache(clone: Path) -> Path:
    """Where this machine keeps the dependencies' wheels of today's sessions: keyed by the UTC day, the
    Python version and what names the dependencies (pyproject.toml, the sample project's requirements), so
    a new release on the registry is picked up the next day at the latest, and a changed dependency at once."""
    key = hashlib.sha256()
    for f in (clone / "pyproject.toml", clone / "pas" / "defaults" / "sample_project" / "requirements.txt"):
        key.update(f.read_bytes())
    key.update(f"{sys.version}|{datetime.now(UTC).date()}".encode())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pas-tests"
    return base / f"wheelhouse-{key.hexdigest()[:16]}"


def _pip_wheel(dest: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(dest), *args], check=True, timeout=1200,
                   cwd=dest.parent, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})


def _build(wheels: Path) -> None:
    src = wheels.parent / f"{wheels.name}-src"
    shutil.rmtree(src, ignore_errors=True)  # what a build that failed left
    clone = clone_head(src)
    t0 = time.monotonic()
    deps = _deps_cache(clone)
    cached = (deps / ".complete").exists()
    if not cached:  # every dependency from the registry (PAS's own wheel is built below, from HEAD)
        for old in deps.parent.glob("wheelhouse-*"):
            shutil.rmtree(old, ignore_errors=True)
        deps.mkdir(parents=True)
        _pip_wheel(deps, str(clone), "pip", "uv", "setuptools>=68",
                   "-r", str(clone / "pas" / "defaults" / "sample_project" / "requirements.txt"))
        for own in deps.glob("pas-*.whl"):
            own.unlink()
        (deps / ".complete").touch()
    shutil.copytree(deps, wheels, ignore=shutil.ignore_patterns(".complete"))
    _pip_wheel(wheels, "--no-deps", str(clone))
    print(f"\nwheelhouse (pas wheel + every dependency, {'from ' + str(deps) if cached else 'from the registry'}): "
          f"{time.monotonic() - t0:.1f}s")


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """PAS's wheel (built from a clone of HEAD) and every dependency: one registry download per session.
    Under pytest-xdist the directory is in the session's root, which every worker shares ("master": the
    session's own directory, as without xdist), built by the first worker that gets the lock."""
    base = tmp_path_factory.getbasetemp()
    root = base if worker_id == "master" else base.parent
    wheels = root / f"fresh-wheels-{head()[:12]}"
    with (root / "fresh-wheels.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when the build fails
        if not (wheels / ".complete").exists():
            _build(wheels)
            (wheels / ".complete").touch()
    return wheels
