"""A new user's first minutes, for real: a fresh clone with a fresh venv runs the README's demo
command, and the wheel installed into a new venv works from an unrelated directory.

Nothing from the test run leaks in: the clone is of the committed HEAD, the subprocesses get no
PYTHONPATH and no PAS venv on PATH, and the demo's environment cache starts empty. Every package
comes from the registry once per session: `pip wheel` fills a wheelhouse with PAS's wheel and every
dependency (the registry here sends no cacheable responses, so pip's own cache cannot help), and
every `pip install` of both tests (setup.sh's included) reads it (PIP_FIND_LINKS + PIP_NO_INDEX).
Bounds are generous; nothing here waits on a clock that a cold process could miss.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pas.config.model import load_config
from tests.conftest import ROOT
from tests.http_support import free_port_offset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def clean_env(cache: Path, wheelhouse: Path) -> dict[str, str]:
    own_bin = str(Path(sys.prefix) / "bin")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PAS_CONFIG_DIR", "PAS_NATS_URL", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(d for d in env.get("PATH", "").split(os.pathsep) if d and d != own_bin)
    env["XDG_CACHE_HOME"] = str(cache)  # the demo's venv cache starts cold ...
    env.update(PIP_FIND_LINKS=str(wheelhouse), PIP_NO_INDEX="1")
    # No byte-compiling of every installed file (litellm alone is thousands): what runs compiles
    # on first import, as it would from a source checkout. The install itself is unchanged.
    env["PIP_NO_COMPILE"] = "1"
    return env


@pytest.fixture(scope="session")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A clone of the committed HEAD and the clean environment to run it in (one per session)."""
    base = tmp_path_factory.mktemp("fresh")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    clone = base / "clone"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", head], cwd=clone, check=True)
    wheels = base / "wheels"
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels), str(clone), "pip", "setuptools>=68",
                    "-r", str(clone / "pas" / "defaults" / "sample_project" / "requirements.txt")],
                   check=True, timeout=1200, cwd=base, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    print(f"\nwheelhouse (pas wheel + every dependency from the registry): {time.monotonic() - t0:.1f}s")
    yield clone, clean_env(base / "cache", wheels)


def test_readme_demo_on_a_fresh_clone(fresh: tuple[Path, dict[str, str]]) -> None:
    clone, env = fresh
    assert not (clone / ".venv").exists()
    t0 = time.monotonic()
    p = subprocess.run(["bash", "scripts/demo.sh"], cwd=clone, env=env, capture_output=True, text=True,
                       timeout=1200, stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert "COMPLETED" in out and "FAILED" not in out
    assert "building the sample project's environment" in out  # the cold path ran
    assert "environment of every task: venv" in out and "(the repository's own)" in out
    # the venv is the one setup.sh made: no dev extras in it
    probe = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c", "import pytest"], capture_output=True)
    assert probe.returncode != 0, "the demo venv should not have pytest (no dev extras)"
    print(f"\nfresh clone: bash scripts/demo.sh took {took:.1f}s (cold)")


def test_wheel_installs_and_runs_from_another_directory(fresh: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    _clone, env = fresh
    venv, elsewhere = tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    t0 = time.monotonic()
    wheel = next(Path(env["PIP_FIND_LINKS"]).glob("pas-*.whl"))  # built from the clone by `pip wheel`
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True, env=env, timeout=300)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, env=env, timeout=900)
    print(f"\nnew venv + pip install of the wheel: {time.monotonic() - t0:.1f}s")
    pas = str(venv / "bin" / "pas")

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([pas, *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    demo = run("demo")
    assert demo.returncode == 0 and "COMPLETED" in demo.stdout, demo.stdout[-3000:] + demo.stderr[-3000:]

    cfg = load_config()
    off = free_port_offset(cfg)
    ready, log = tmp_path / "ready", tmp_path / "up.log"
    with log.open("w") as fh:
        up = subprocess.Popen([pas, "up", "--nats-port", "-1", "--data-dir", str(tmp_path / "data"),
                               "--ready-file", str(ready), "-c", f"settings.http.port_offset={off}"],
                              cwd=elsewhere, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            assert up.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        url = ready.read_text().strip()
        site = subprocess.run([str(venv / "bin" / "python"), "-c", "import pas, pathlib; "
                               "print(pathlib.Path(pas.__file__).parent)"], capture_output=True, text=True,
                              env=env, cwd=elsewhere, check=True).stdout.strip()
        assert site.startswith(str(venv))  # the installed copy, not the source tree
        assert f"config from {site}/defaults (the defaults shipped with pas)" in log.read_text()
        rows: list[dict[str, str]] = []
        while len([r for r in rows if r["state"] == "alive"]) < 26:  # the monitor marks agents as they beat
            assert time.monotonic() < deadline, rows
            a = run("agents", "--json", "--nats-url", url, "--creds-dir", str(tmp_path / "data" / "creds"), timeout=60)
            assert a.returncode == 0, a.stderr
            rows = json.loads(a.stdout)
            time.sleep(0.2)
        assert len(rows) == 26
        hmi = cfg.settings.http.hmi_port + off
        with urllib.request.urlopen(f"http://127.0.0.1:{hmi}/", timeout=30) as r:  # static files are packaged
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()
    assert up.returncode == 0, log.read_text()[-3000:]

    init = run("init", timeout=60)
    assert init.returncode == 0, init.stderr
    for f in ("pas.yaml", "models.yaml", "agents.yaml"):
        assert (elsewhere / "configs" / f).read_bytes() == (Path(site) / "defaults" / f).read_bytes()
