"""The comms log survives a full restart (nats-server included) and reads back with filters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pas.transport import auth
from pas.transport.client import PasClient
from pas.transport.connection import connect as pas_connect
from tests.conftest import fast_args, wait_for


def pas_log(url: str, *args: str) -> list[dict[str, Any]]:
    p = subprocess.run([sys.executable, "-m", "pas", "log", "--json", "--nats-url", url, *args],
                       capture_output=True, text=True, timeout=60)  # creds: PAS_CREDS_DIR
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


async def test_comms_entry_survives_restart(tmp_path: Path, pas_procs: Any, monkeypatch: Any) -> None:
    data = tmp_path / "store"
    up = pas_procs("--nats-port", "-1", "--data-dir", str(data), *fast_args(), name="first")
    monkeypatch.setenv("PAS_CREDS_DIR", str(data / "creds"))  # NATS users are on: read as `client`
    client = await PasClient.connect(up.url, creds=auth.load_creds(data / "creds")["client"])
    try:
        await client.submit({"title": "persist me", "run_id": "persist-1",
                             "tasks": [{"lane": "docs", "instruction": "hello", "executor": "echo"}]})
        st = await client.wait("persist-1", timeout_s=30)
        assert st["status"] == "completed"
    finally:
        await client.close()
    # root's STATUS is the run record's last write, copied into the log by the server a moment after the event
    before = await wait_for(lambda: (got := pas_log(up.url, "--run", "persist-1")) and got[-1]["msg_type"] == "STATUS"
                            and got, timeout_s=30, interval_s=0.5)
    assert up.terminate() == 0  # SIGTERM stops agents and the embedded nats-server
    again = pas_procs("--nats-port", "-1", "--data-dir", str(data), *fast_args(), name="second")
    after = pas_log(again.url, "--run", "persist-1")
    assert after == before and len(after) >= 10
    hops = {(e["from_agent"], e["to_agent"]) for e in after}
    assert {("client", "gateway"), ("gateway", "architect"), ("architect", "dir-docs"), ("dir-docs", "mgr-docs"),
            ("root", "gateway")} <= hops, hops
    assert all(set(e) >= {"ts", "from_agent", "to_agent", "msg_type", "message", "run_id", "status"} for e in after)

    # filters: by agent (sender or receiver), by type, by time
    by_agent = pas_log(again.url, "--run", "persist-1", "--agent", "architect")
    assert by_agent and all("architect" in (e["from_agent"], e["to_agent"]) for e in by_agent)
    assert len(by_agent) < len(after)
    cmds = pas_log(again.url, "--run", "persist-1", "--type", "CMD")
    assert cmds and all(e["msg_type"] == "CMD" for e in cmds)
    assert pas_log(again.url, "--run", "persist-1", "--since", "2099-01-01T00:00:00") == []
    assert pas_log(again.url, "--run", "no-such-run") == []
    # the human format prints one line per entry
    text = subprocess.run([sys.executable, "-m", "pas", "log", "--run", "persist-1", "--nats-url", again.url],
                          capture_output=True, text=True, timeout=60).stdout
    assert len(text.strip().splitlines()) == len(after) and "root -> gateway" in text.replace("  ", " ")


async def test_sigterm_and_sigkill_take_the_embedded_server_along(tmp_path: Path, pas_procs: Any) -> None:
    import asyncio
    import signal


    for sig, name in ((signal.SIGINT, "int"), (signal.SIGKILL, "kill")):
        up = pas_procs("--nats-port", "-1", "--data-dir", str(tmp_path / name), name=f"sig{name}")
        url = up.url
        c = auth.load_creds(tmp_path / name / "creds")["client"]
        nc = await pas_connect(url, user=c.user, password=c.password)
        await nc.close()
        assert up.proc is not None
        up.proc.send_signal(sig)
        assert up.proc.wait(30) == (0 if sig == signal.SIGINT else -9)

        # the embedded server went with it (after SIGKILL via the parent-death signal)
        from tests.conftest import wait_for

        host, port = url.removeprefix("nats://").rsplit(":", 1)

        async def gone() -> bool:
            try:
                _, w = await asyncio.open_connection(host, int(port))
            except OSError:
                return True
            w.close()
            return False

        await wait_for(gone, 15, 0.2)


async def test_log_follow_tails_new_entries(stack: Any, client: Any) -> None:
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pas", "log", "--follow", "--json", "--run", "tail-1", "--nats-url", stack.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await client.submit({"title": "tail", "run_id": "tail-1",
                             "tasks": [{"lane": "code", "instruction": "x", "executor": "echo"}]})
        seen: list[dict[str, Any]] = []
        assert proc.stdout is not None
        while not any(e["from_agent"] == "root" and e["status"] == "completed" for e in seen):
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, (await proc.stderr.read()).decode() if proc.stderr else ""
            seen.append(json.loads(line))
        assert all(e["run_id"] == "tail-1" for e in seen)
        # the submitter, as the gateway knows it: no NATS user here, so `anonymous`. Its entry (the run
        # record) and the gateway's hand-over (the request) are written together: either comes first.
        assert ("anonymous", "gateway") in [(e["from_agent"], e["to_agent"]) for e in seen[:2]], seen[:2]
    finally:
        proc.kill()
        await proc.wait()
