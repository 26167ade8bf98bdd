"""Heartbeats from every agent; a programmer in its own process killed with SIGKILL raises the dead
alert within 2.5 intervals and shows as dead in `pas agents`; started again, it recovers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

from pas.protocol import subjects as S
from pas.surfaces.stack import Stack
from tests.conftest import make_cfg

INTERVAL = 2.0
SETTINGS = [f"settings.heartbeat.interval_s={INTERVAL}"]


def cli_args() -> list[str]:
    out: list[str] = []
    for o in SETTINGS:
        out += ["-c", o]
    return out


async def test_heartbeats_alerts_and_recovery(nats_server: Any, nc: Any, pas_procs: Any) -> None:
    cfg = make_cfg(*SETTINGS)
    beats: dict[str, float] = {}

    async def on_beat(m: Any) -> None:
        hb = json.loads(m.data)
        assert set(hb) >= {"agent", "ts", "status", "run_id", "progress", "message"}
        beats.setdefault(hb["agent"], time.monotonic())

    alerts: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()

    async def on_alert(m: Any) -> None:
        await alerts.put((time.monotonic(), json.loads(m.data)))

    await nc.subscribe(S.HEARTBEAT_ALL, cb=on_beat)
    await nc.subscribe(S.alert_agent("prog-010"), cb=on_alert)

    prog = pas_procs("--nats-url", nats_server.url, "--only", "prog-010", *cli_args(), name="prog010")
    stack = await Stack(cfg, url=nats_server.url, exclude=["prog-010"]).start()
    try:
        t0 = time.monotonic()
        # every agent beats within one interval (plus start-up slack of the subscription)
        while len(beats) < 26 and time.monotonic() - t0 < INTERVAL * 1.5:
            await asyncio.sleep(0.05)
        assert set(beats) == {a.id for a in cfg.agents}, sorted({a.id for a in cfg.agents} - set(beats))

        # wait until the monitor has seen prog-010 alive, then kill its process
        async def monitor_sees_alive() -> bool:
            e = await stack.bus.kv[S.KV_AGENTS].get("prog-010")  # type: ignore[union-attr]
            return json.loads(e.value)["state"] == "alive"

        deadline = time.monotonic() + 10
        while not await monitor_sees_alive():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        killed_at = time.monotonic()
        prog.kill()
        at, alert = await asyncio.wait_for(alerts.get(), timeout=INTERVAL * 5)
        assert alert["agent"] == "prog-010" and alert["kind"] == "dead"
        assert at - killed_at <= 2.5 * INTERVAL, f"alert after {at - killed_at:.2f}s"

        out = subprocess.run([sys.executable, "-m", "pas", "agents", "--json", "--nats-url", nats_server.url],
                             capture_output=True, text=True, timeout=30)
        rows = {r["agent"]: r for r in json.loads(out.stdout)}
        assert rows["prog-010"]["state"] == "dead"
        assert rows["prog-001"]["state"] == "alive" and rows["prog-001"]["tier"] == "programmer"
        assert rows["mgr-code-01"]["model"] == "gemini-flash"
        table = subprocess.run([sys.executable, "-m", "pas", "agents", "--nats-url", nats_server.url],
                               capture_output=True, text=True, timeout=30).stdout
        assert any(line.startswith("prog-010") and " dead " in line for line in table.splitlines())

        pas_procs("--nats-url", nats_server.url, "--only", "prog-010", *cli_args(), name="prog010b")
        _, rec = await asyncio.wait_for(alerts.get(), timeout=INTERVAL * 5)
        assert rec["agent"] == "prog-010" and rec["kind"] == "recovered"
        # the alerts are kept in JetStream too
        js_msgs = await stack.bus.js.subscribe(S.alert_agent("prog-010"), ordered_consumer=True)  # type: ignore[union-attr]
        kinds = [json.loads((await js_msgs.next_msg(timeout=5)).data)["kind"] for _ in range(2)]
        assert kinds == ["dead", "recovered"]
    finally:
        await stack.stop()
