"""SIGTERM while a run is in hand: `pas up` drains, and a run whose last task ends during the drain is
ended by PAS Root before the process exits (it used to wait for the next `pas up`)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import nats

from pas.protocol import subjects as S
from pas.transport.server import EmbeddedServer
from tests.cli_support import PasCommand
from tests.conftest import fast_args, make_cfg
from tests.http_support import free_port_offset


async def _run_record(url: str, run_id: str) -> dict[str, Any]:
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(S.KV_RUNS)
        return json.loads((await kv.get(run_id)).value or b"{}")
    finally:
        await nc.close()


async def _wait_task_running(url: str, run_id: str, timeout_s: float = 30) -> None:
    nc = await nats.connect(url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            reply = json.loads((await nc.request(S.GATEWAY_STATUS, json.dumps({"run_id": run_id}).encode(),
                                                 timeout=5)).data)
            if any(t["status"] == "running" for t in reply.get("tasks", [])):
                return
            assert time.monotonic() < deadline, reply
            await asyncio.sleep(0.05)
    finally:
        await nc.close()


async def test_sigterm_during_a_run_lets_root_end_it(nats_server: EmbeddedServer, pas_procs: Any,
                                                     tmp_path: Path) -> None:
    up = pas_procs("--nats-url", nats_server.url, *fast_args(), name="drain")
    nc = await nats.connect(nats_server.url)
    try:
        run_id = "drain-1"
        body = {"run_id": run_id, "title": "drained", "tasks": [{"lane": "code", "instruction": "sleep 4",
                                                                  "command": "sleep 4"}]}
        await nc.request(S.GATEWAY_SUBMIT, json.dumps(body).encode(), timeout=10)
    finally:
        await nc.close()
    await _wait_task_running(nats_server.url, run_id)
    assert up.terminate(30) == 0  # SIGTERM; the task's 4 s fit in the drain
    log = up.log.read_text()
    run = await _run_record(nats_server.url, run_id)
    assert run["status"] == "completed" and run["finished_at"], (run, log[-3000:])
    assert "unfinished" not in log, log[-3000:]


def test_pas_up_ends_without_the_interpreters_finalisation(tmp_path: Path) -> None:
    """A stopped `pas up` leaves at once, whatever the interpreter's finalisation would still run: there,
    a litellm __del__ once waited forever for the import lock a frozen daemon thread held (CI). Here the
    finalisation would hang an hour (an atexit handler a sitecustomize installs); `pas up` and its HTTP
    adapter's process exit 0 within the test's bound."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import atexit, time\natexit.register(time.sleep, 3600)\n")
    off = free_port_offset(make_cfg())
    up = PasCommand(["pas", "up", "--nats-port", "-1", "--data-dir", str(tmp_path / "d"),
                     "-c", f"settings.http.port_offset={off}", *fast_args()], tmp_path, "up", PYTHONPATH=str(site))
    try:
        up.wait_for_line(r"pas: \d+ agents up on ")
        assert up.stop(30) == 0, up.text()[-3000:]
        assert "pas: stopped in" in up.text()
        assert "HTTP adapter process did not stop" not in up.text()
    finally:
        up.kill()
