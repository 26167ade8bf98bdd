"""scripts/setup.sh as a new user meets it: it waits for the dpkg lock instead of failing, says what it is
doing and how long each step took, and does not re-run `npm ci` when the JS client's lock file is unchanged."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.conftest import ROOT


def test_every_apt_get_waits_for_the_dpkg_lock() -> None:
    calls = [(f.name, line.strip()) for f in (ROOT / "scripts").glob("*.sh")
             for line in f.read_text().splitlines() if re.search(r"\bapt-get (?:-\S+ \S+ )*(update|install)\b", line)]
    assert calls, "setup.sh installs Debian packages with apt-get"
    assert all("-o DPkg::Lock::Timeout=" in line for _, line in calls), calls


def _setup(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`bash scripts/setup.sh --dev` with a recording `npm` first on PATH (the real node_modules stay)."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    calls = tmp_path / "npm-calls"
    (fake / "npm").write_text(f'#!/bin/sh\necho "$PWD $*" >> {calls}\n')
    (fake / "npm").chmod(0o755)
    tools = [os.path.expanduser("~/.local/share/pas/bin"), os.path.expanduser("~/.local/bin")]
    env = {**os.environ, "PATH": os.pathsep.join([str(fake), *tools, os.environ["PATH"]])}
    r = subprocess.run(["bash", "scripts/setup.sh", "--dev"], cwd=ROOT, capture_output=True, text=True, env=env,
                       timeout=600, stdin=subprocess.DEVNULL)
    return r, calls.read_text().splitlines() if calls.exists() else []


def test_npm_ci_only_when_the_lock_file_changed_and_steps_are_timed(tmp_path: Path) -> None:
    for stamp in (ROOT / "tests" / "js" / "node_modules").glob(".pas-lock-*"):
        stamp.unlink()  # as after a change of package-lock.json
    first, calls = _setup(tmp_path)
    assert first.returncode == 0, first.stderr
    assert calls == [f"{ROOT / 'tests' / 'js'} ci --no-audit --no-fund --silent"], calls
    assert re.search(r"^setup: installing the JS NATS client \(npm ci\): done in \d+s$", first.stderr, re.M), first.stderr
    again, calls = _setup(tmp_path)
    assert again.returncode == 0 and len(calls) == 1, (again.stderr, calls)  # the lock file is unchanged: no npm
    assert "npm ci" not in again.stderr, again.stderr
