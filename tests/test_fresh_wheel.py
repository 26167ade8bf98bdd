"""The wheel, installed into a new venv, works from an unrelated directory: `pas demo`, `pas up` (every agent
alive, the HMI's packaged static files served), `pas agents` and `pas init`. A module of its own so that it
runs beside tests/test_fresh_install.py; both read one wheelhouse and stay clean of the test run
(tests/fresh_support.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from pas.config.model import load_config
from tests.fresh_support import clean_env
from tests.http_support import free_port_offset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def test_wheel_installs_and_runs_from_another_directory(wheelhouse: Path, tmp_path: Path) -> None:
    env = clean_env(tmp_path / "cache", wheelhouse)
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
