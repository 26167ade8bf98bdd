"""`pas up` runs the HTTP adapter in a process of its own (pas.surfaces.http.process): on the ports `pas up`
bound, started again if it dies, and gone when `pas up` is."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import httpx

from tests.cli_support import PasCommand
from tests.conftest import fast_args, make_cfg
from tests.http_support import free_port_offset

UP = r"pas: (\d+) agents up on "


def _adapter_children(parent: int) -> list[int]:
    """The pids of `parent`'s children running the adapter process."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"pas.surfaces.http.process" in cmd:
            out.append(int(d.name))
    return out


def _poll(pred, timeout_s: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        got = pred()
        if got:
            return got
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.1)


def _health(base: str) -> bool:
    try:
        return httpx.get(base + "/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_pas_up_serves_http_from_a_child_it_restarts_and_takes_down(tmp_path: Path) -> None:
    off = free_port_offset(make_cfg())
    up = PasCommand(["pas", "up", "--nats-port", "-1", "--data-dir", str(tmp_path / "data"),
                     "-c", f"settings.http.port_offset={off}", *fast_args()], tmp_path, "up")
    try:
        up.wait_for_line(UP)
        pid = up.proc.pid
        [child] = _poll(lambda: _adapter_children(pid), 10)
        gw, hmi = f"http://127.0.0.1:{6120 + off}", f"http://127.0.0.1:{6101 + off}"
        assert _health(hmi)
        # a job through the child's gateway port completes (this OS user's loopback connection needs no token)
        run_id = httpx.post(gw + "/submit", json={"title": "t", "tasks": [
            {"lane": "code", "instruction": "echo hi", "command": "echo hi"}]}, timeout=30).json()["run_id"]
        done = _poll(lambda: (r := httpx.get(f"{gw}/runs/{run_id}", timeout=10).json())["status"]
                     in ("completed", "failed") and r, 60)
        assert done["status"] == "completed", done

        os.kill(child, signal.SIGKILL)  # the adapter dies: started again, on the same ports
        [again] = _poll(lambda: [c for c in _adapter_children(pid) if c != child], 30)
        _poll(lambda: _health(hmi), 30)
        assert httpx.get(f"{gw}/runs/{run_id}", timeout=10).json()["status"] == "completed"
        assert "the HTTP adapter process ended (exit -9); starting it again on the same ports" in up.text()

        os.kill(pid, signal.SIGKILL)  # `pas up` dies: its adapter does not outlive it
        _poll(lambda: not Path(f"/proc/{again}").exists() or "Z" in Path(f"/proc/{again}/stat").read_text().split()[2],
              20)
        assert not _health(hmi)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(up.proc.pid, signal.SIGKILL)  # the group: the embedded nats-server too
        up.proc.wait()
