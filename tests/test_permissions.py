"""Least-privilege NATS users (pas/transport/auth.py) against the real embedded server with permissions on.

Each refusal test shows three things: the nats-server logs its permissions violation (with the real
subject), PAS logs the violation its error callback received at WARNING (with the subject), and the
forged message had no effect (nothing queued, stored or changed)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pas.protocol import subjects as S
from pas.protocol import wire
from pas.surfaces.stack import Stack
from pas.transport import auth
from pas.transport.bus import AuthRefused, connect
from pas.transport.client import PasClient
from tests.conftest import as_user, make_cfg, wait_for
from tests.natscli_support import eval_creds, until_all_listed

AGENTS = ["monitor", "gateway", "root", "architect", "dir-code", "mgr-code-01", "prog-001", "prog-002"]


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Stack]:
    """The embedded server as `pas up` starts it by default (NATS users on), with a few agents."""
    cfg = make_cfg("settings.nats.port=-1", f"settings.nats.data_dir={tmp_path / 'data'}")
    assert cfg.settings.nats.auth == "on"  # the default
    st = Stack(cfg, only=AGENTS)
    await st.start()
    try:
        yield st
    finally:
        await st.stop()


async def refused(st: Stack, caplog: Any, user: str, subject: str) -> None:
    """Wait (bounded) for the server's violation line and PAS's WARNING for `subject`."""
    assert st.server is not None and st.server.log_path is not None
    log_path = st.server.log_path
    await wait_for(lambda: f'user:{user}" - Publish Violation - Subject "{subject}"' in log_path.read_text(),
                   timeout_s=10)
    await wait_for(lambda: any(r.levelno == logging.WARNING and r.name == "pas.bus" and user in r.getMessage()
                               and subject.lower() in r.getMessage() and "permissions violation" in r.getMessage()
                               for r in caplog.records), timeout_s=10)


async def stream_count(st: Stack, stream: str) -> int:
    assert st.bus is not None
    return (await st.bus.js.stream_info(stream)).state.messages


def test_credentials_are_private_files(secured: Stack, tmp_path: Path) -> None:
    creds_dir = tmp_path / "data" / "creds"
    assert stat.S_IMODE(creds_dir.stat().st_mode) == 0o700
    files = sorted(p.name for p in creds_dir.iterdir())
    assert files == sorted(f"{u}.json" for u in auth.users(secured.cfg))  # one user per agent id
    for p in creds_dir.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data" / "nats-server.conf").stat().st_mode) == 0o600
    # one connection per agent, each as its own user
    assert sorted(secured.buses) == sorted(AGENTS)
    assert {b.nc.options["user"] for b in secured.buses.values()} == set(AGENTS)
    assert auth.ensure_creds(creds_dir, auth.users(secured.cfg)) == secured.creds  # generated once, then reused


async def test_anonymous_and_wrong_password_are_refused_with_a_hint(secured: Stack) -> None:
    with pytest.raises(AuthRefused) as e:
        await connect(secured.url or "", name="anon")
    assert "no credentials were given" in e.value.message and "--creds-dir" in e.value.message
    with pytest.raises(AuthRefused) as e:
        await connect(secured.url or "", name="bad", user="client", password="wrong")
    assert "user 'client'" in e.value.message


async def test_programmer_cannot_submit_to_the_gateway(secured: Stack, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, "pas.bus")
    nc = await as_user(secured, "prog-001")
    try:
        job = {"title": "forged", "run_id": "forged-1", "tasks": [{"lane": "code", "instruction": "x",
                                                                    "executor": "echo"}]}
        await nc.publish(S.GATEWAY_SUBMIT, json.dumps(job).encode(), reply=nc.new_inbox())
        await refused(secured, caplog, "prog-001", S.GATEWAY_SUBMIT)
    finally:
        await nc.close()
    client = await PasClient.connect(secured.url or "", 10, creds=secured.creds["client"])
    try:
        assert (await client.runs())["runs"] == []  # the gateway never saw it
    finally:
        await client.close()


@pytest.mark.parametrize("subject", [S.work_prog(20), S.WORK_ARCHITECT, S.work_mgr("code")])
async def test_programmer_cannot_publish_work(secured: Stack, caplog: Any, subject: str) -> None:
    caplog.set_level(logging.WARNING, "pas.bus")
    before = await stream_count(secured, S.STREAM_WORK)
    nc = await as_user(secured, "prog-001")
    try:
        await nc.publish(subject, b'{"run_id":"forged"}')
        await refused(secured, caplog, "prog-001", subject)
    finally:
        await nc.close()
    assert await stream_count(secured, S.STREAM_WORK) == before


async def test_programmer_cannot_publish_control(secured: Stack, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, "pas.bus")
    nc = await as_user(secured, "prog-001")
    subject = S.ctl("prog-002", "set_model")
    try:
        await nc.publish(subject, b'{"primary":"gpt-4o"}', reply=nc.new_inbox())
        await refused(secured, caplog, "prog-001", subject)
    finally:
        await nc.close()
    prog2 = next(a for a in secured.agents if a.id == "prog-002")
    assert prog2.model == prog2.cfg.model  # unchanged


async def test_programmer_cannot_write_another_roles_kv_keys(secured: Stack, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, "pas.bus")
    nc = await as_user(secured, "prog-001")
    # job, lane and plan records are their owners' (manager, director, architect): tests/test_identities.py
    request_key, run_key = f"$KV.{S.KV_TREE}.r-x.request", f"$KV.{S.KV_RUNS}.r-x"
    try:
        for subject in (request_key, run_key):
            await nc.publish(subject, b'{"forged":true}')
            await refused(secured, caplog, "prog-001", subject)
        # the keys it owns it may write: the rule is narrow, not a blanket refusal
        js = nc.jetstream(timeout=5)
        await js.publish(S.kv_subject(S.KV_BREAKERS, S.breaker_key("prog-001", "gpt-4o")), b'{"ok":true}')
    finally:
        await nc.close()
    assert secured.bus is not None
    assert await secured.buses["gateway"].kv_get(S.KV_RUNS, "r-x", dict) is None
    assert await secured.buses["mgr-code-01"].kv_get(S.KV_TREE, "r-x.request", dict) is None
    admin = await as_user(secured, "admin")
    try:
        breakers = await admin.jetstream().key_value(S.KV_BREAKERS)
        assert (await breakers.get(S.breaker_key("prog-001", "gpt-4o"))).value == b'{"ok":true}'
    finally:
        await admin.close()


@pytest.mark.parametrize("subject", [S.run_task("r-1", "code-1-01"), S.done_plan("r-1")])
async def test_client_cannot_forge_done_events(secured: Stack, caplog: Any, subject: str) -> None:
    caplog.set_level(logging.WARNING, "pas.bus")
    before = await stream_count(secured, S.STREAM_EVENTS)
    client = await PasClient.connect(secured.url or "", 10, creds=secured.creds["client"])
    try:
        await client.nc.publish(subject, b'{"run_id":"r-1","kind":"task","status":"completed"}')
        await refused(secured, caplog, "client", subject)
    finally:
        await client.close()
    assert await stream_count(secured, S.STREAM_EVENTS) == before


async def test_client_cannot_publish_work(secured: Stack, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, "pas.bus")
    before = await stream_count(secured, S.STREAM_WORK)
    client = await PasClient.connect(secured.url or "", 10, creds=secured.creds["client"])
    try:
        await client.nc.publish(S.work_prog(20), b"{}")
        await refused(secured, caplog, "client", S.work_prog(20))
    finally:
        await client.close()
    assert await stream_count(secured, S.STREAM_WORK) == before


async def test_manager_cannot_change_models_admin_can(secured: Stack, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, "pas.bus")
    subject = S.ctl("prog-001", "set_model")
    nc = await as_user(secured, "mgr-code-01")
    try:
        await nc.publish(subject, b'{"primary":"gpt-4o"}', reply=nc.new_inbox())
        await refused(secured, caplog, "mgr-code-01", subject)
    finally:
        await nc.close()
    prog1 = next(a for a in secured.agents if a.id == "prog-001")
    assert prog1.model == prog1.cfg.model
    for agent in ("mgr-code-01", "prog-001"):  # model overrides are admin's: not even an agent's own
        nc = await as_user(secured, agent)
        try:
            own = S.kv_subject(S.KV_MODELS, agent)
            await nc.publish(own, b'{"model":"gpt-4o"}')
            await refused(secured, caplog, agent, own)
        finally:
            await nc.close()
    admin = await PasClient.connect(secured.url or "", 10, creds=secured.creds["admin"])
    try:
        res = await admin.set_model("prog-001", secured.cfg.models, primary="gpt-4o")
        stored = await (await admin.nc.jetstream().key_value(S.KV_MODELS)).get("prog-001")
    finally:
        await admin.close()
    assert res["model"] == "gpt-4o" and prog1.model == "gpt-4o"
    assert wire.decode(stored.value or b"", dict)["model"] == "gpt-4o"  # written by admin; the agent reads it
    prog1.model = None
    await prog1.load_model_override()
    assert prog1.model == "gpt-4o"


async def test_job_runs_end_to_end_with_permissions_on(secured: Stack, caplog: Any) -> None:
    """Every tier acts as its own user; the client only submits and watches. No violation anywhere."""
    caplog.set_level(logging.WARNING)
    client = await PasClient.connect(secured.url or "", 10, creds=secured.creds["client"])
    try:
        job = {"title": "secured", "run_id": "sec-1", "tasks": [
            {"lane": "code", "instruction": "echo hi", "command": "echo hi", "executor": "command"},
            {"lane": "code", "instruction": "x", "executor": "echo"}]}
        assert (await client.submit(job, msg_id="sec-key"))["run_id"] == "sec-1"
        assert (await client.submit(job, msg_id="sec-key"))["duplicate"] is True  # idempotency KV as gateway
        st = await client.wait("sec-1", timeout_s=60)
        assert st["status"] == "completed" and [t["status"] for t in st["tasks"]] == ["completed", "completed"]
        assert st["tasks"][0]["output"] == "hi\n"
        health = await client.request(S.agent_endpoint("mgr", "mgr-code-01", "health"), {})
        assert health["handled"] >= 1
        from pas.runtime import comms

        async def every_tier_logged() -> bool:  # the record writes' entries: there once the server copied them
            # the submitter (the run record names the NATS user), and each tier whose record or entry it is
            senders = {e.from_agent async for e in comms.read(client.nc.jetstream(), run_id="sec-1")}
            return {"client", "gateway", "root", "architect", "dir-code", "mgr-code-01"} <= senders

        await wait_for(every_tier_logged, 20, 0.2)
        cancel = await client.submit({"title": "to cancel", "run_id": "sec-2", "tasks": [
            {"lane": "code", "instruction": "sleep 30", "command": "sleep 30", "executor": "command"}]})
        assert cancel["run_id"] == "sec-2"
        assert (await client.cancel("sec-2"))["status"] == "cancelled"  # gateway -> pas.run.<id>.cancel
        assert (await client.wait("sec-2", timeout_s=30))["status"] == "cancelled"
    finally:
        await client.close()
    assert "Violation" not in secured.server.log_path.read_text()  # type: ignore[union-attr]
    assert not [r for r in caplog.records if "violation" in r.getMessage().lower()]


async def test_llm_planning_at_every_tier_with_permissions_on(tmp_path: Path, fake_llm: Any) -> None:
    """Model calls as each tier's user: usage (pas_tree <run>.usage.<agent>), breakers (pas_breakers) and the
    architect's lane choice (pas_runs) are written with no violation."""
    from tests.test_llm_pipeline import failover_swarm

    cfg = failover_swarm(fake_llm)
    cfg.settings.nats.port, cfg.settings.nats.data_dir = -1, str(tmp_path / "data")
    st = Stack(cfg, only=["monitor", "gateway", "root", "architect", "dir-docs", "mgr-docs-01", "prog-001"])
    await st.start()
    try:
        client = await PasClient.connect(st.url or "", 10, creds=st.creds["client"])
        try:
            await client.submit({"title": "docs", "goal": "Document the calc API", "run_id": "llm-sec"})
            res = await client.wait("llm-sec", timeout_s=60)
            breakers = await client.nc.jetstream().key_value(S.KV_BREAKERS)  # `pas agents` reads it as client
            assert (await breakers.get(S.breaker_key("architect", "pa"))).value  # the architect's own key
        finally:
            await client.close()
    finally:
        await st.stop()
    assert res["status"] == "completed" and res["lanes"] == ["docs"], res
    assert res["usage"]["tokens"] == 120 + 80 + 50 and res["usage"]["llm_calls"] == 4
    text = (tmp_path / "data" / "nats-server.log").read_text()
    assert "Publish Violation" not in text and "Subscription Violation" not in text


async def test_http_adapter_forwards_as_adapter(tmp_path: Path) -> None:
    """`pas up` with the HTTP adapter, NATS users on: every kind of call the adapter forwards works
    (submit, run view, agents, comms, model switch, job card, direct execute), none is refused."""
    import httpx

    from tests.http_support import http_cfg, poll

    cfg = http_cfg("settings.nats.port=-1", f"settings.nats.data_dir={tmp_path / 'data'}")
    st = Stack(cfg, only=AGENTS, http=True)
    await st.start()
    try:
        ports = st.http_server.ports  # type: ignore[union-attr]
        hmi = f"http://{cfg.settings.http.host}:{ports['hmi']}"
        async with httpx.AsyncClient(timeout=20) as c:
            r = await c.post(f"{hmi}/api/submit", json={"title": "via http", "run_id": "http-1", "tasks": [
                {"lane": "code", "instruction": "echo via-http", "command": "echo via-http", "executor": "command"}]})
            assert r.status_code == 200, r.text
            run = await poll(lambda: c.get(f"{hmi}/api/runs/http-1"), lambda r: r.json().get("status") == "completed")
            assert run.json()["lane_states"][0]["status"] == "completed"  # KV pas_tree read as adapter
            await poll(lambda: c.get(f"{hmi}/api/agents"),  # KV pas_agents, written by the monitor, read by the adapter
                       lambda r: {a["id"] for a in r.json()["agents"] if a["state"] == "alive"} >= set(AGENTS))
            comms = await poll(lambda: c.get(f"{hmi}/api/comms", params={"run": "http-1"}),  # a plain submit: anonymous
                               lambda r: {"anonymous", "gateway", "root"} <= {e["from_agent"] for e in r.json()["entries"]})
            assert comms.status_code == 200
            r = await c.post(f"{hmi}/api/agents/prog-002/model", json={"primary": "gpt-4o"})
            assert r.status_code == 200 and r.json()["model"] == "gpt-4o", r.text
            models = (await c.get(f"{hmi}/api/models")).json()  # the override, written by the adapter to KV
            assert models["agents"]["prog-002"]["model"] == "gpt-4o", models
            mgr = f"http://{cfg.settings.http.host}:{ports['mgr-code-01']}"
            card = {"job_id": "card-1", "run_id": "http-2", "lane": "code",
                    "tasks": [{"lane": "code", "instruction": "x", "executor": "echo"}]}
            r = await c.post(f"{mgr}/submit", json=card)
            assert r.status_code == 200 and r.json()["status"] == "queued", r.text
            prog = f"http://{cfg.settings.http.host}:{ports['prog-001']}"
            r = await c.post(f"{prog}/execute", json={"instruction": "hello", "executor": "echo"})
            assert r.status_code == 200 and r.json()["output"] == "hello", r.text
    finally:
        await st.stop()
    text = (tmp_path / "data" / "nats-server.log").read_text()
    assert "Publish Violation" not in text and "Subscription Violation" not in text


async def test_second_process_joins_with_the_creds_dir(tmp_path: Path, pas_procs: Any) -> None:
    """README's split start: a programmer of a --agents overlay in its own `pas up --nats-url` process
    connects as its own user (`prog-104`), which the server has because the process that started it was
    given the overlay too; a job runs across both."""
    from tests.conftest import fast_args

    data = tmp_path / "data"
    extra = tmp_path / "extra.yaml"
    extra.write_text("agents:\n  - {id: prog-104, role: prog}\n")
    core = pas_procs("--nats-port", "-1", "--data-dir", str(data), "--agents", str(extra), "--except", "prog-*",
                     *fast_args(), name="core")
    pas_procs("--nats-url", core.url, "--creds-dir", str(data / "creds"), "--agents", str(extra), "--only",
              "prog-104", *fast_args(), name="pool")
    client = await PasClient.connect(core.url, 10, creds=auth.load_creds(data / "creds")["client"])
    try:
        await client.submit({"title": "split", "run_id": "split-1", "tasks": [
            {"lane": "docs", "instruction": "echo split", "command": "echo split", "executor": "command"}]})
        st = await client.wait("split-1", timeout_s=60)
    finally:
        await client.close()
    assert st["status"] == "completed" and st["tasks"][0]["programmer"] == "prog-104"
    text = (data / "nats-server.log").read_text()
    assert "Publish Violation" not in text and "Subscription Violation" not in text


def cli(*args: str, creds_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAS_CREDS_DIR": str(creds_dir)}
    return subprocess.run([sys.executable, "-m", "pas", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


async def test_pas_creds_gives_the_nats_cli_a_users_rights(secured: Stack, tmp_path: Path) -> None:
    import shutil

    creds_dir = tmp_path / "data" / "creds"
    p = cli("creds", "client", "--nats-url", secured.url or "", creds_dir=creds_dir)
    assert p.returncode == 0, p.stderr
    env = eval_creds(p.stdout, dict(os.environ)).env  # what `eval "$(pas creds client)"` sets
    assert env["NATS_USER"] == "client" and env["NATS_PASSWORD"] == secured.creds["client"].password
    nats_cli = shutil.which("nats")
    assert nats_cli, "the nats CLI (natscli) is installed by scripts/setup.sh --dev"


    async def nats(*args: str) -> tuple[int, str]:  # the gateway answers from this event loop: never block it
        proc = await asyncio.create_subprocess_exec(nats_cli, "--inbox-prefix", "_INBOX.client", *args, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode or 0, out.decode()

    code, out = await nats("req", S.GATEWAY_RUNS, "{}")
    assert code == 0 and '"runs":[]' in out, out
    def micro_ls() -> str:  # run in a thread (below): the event loop keeps answering
        r = subprocess.run([nats_cli, "--inbox-prefix", "_INBOX.client", "micro", "ls"], env=env, timeout=30,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    wanted = ["gateway", "prog-001"]
    seen = await asyncio.to_thread(until_all_listed, micro_ls, lambda out: {a for a in wanted if a in out}, wanted)
    assert seen == set(wanted), seen
    code, out = await nats("pub", S.work_prog(20), "{}")
    assert code != 0 and f'Permissions Violation for Publish to "{S.work_prog(20)}"' in out, out
    missing = cli("creds", "client", creds_dir=tmp_path / "nowhere")
    assert missing.returncode == 1 and "no credentials for 'client'" in missing.stderr


def test_pas_nats_config_prints_the_same_rules(tmp_path: Path) -> None:
    """The block for an external server: a nats-server started with it enforces the same users."""
    from pas.transport.server import EmbeddedServer

    creds_dir = tmp_path / "creds"
    p = cli("nats-config", creds_dir=creds_dir)
    assert p.returncode == 0, p.stderr
    cfg = make_cfg()
    creds = auth.load_creds(creds_dir)
    assert p.stdout.endswith(auth.server_block(cfg, creds)) and set(creds) == set(auth.users(cfg))
    assert cli("nats-config", creds_dir=creds_dir).stdout == p.stdout  # generated once
    srv = EmbeddedServer(tmp_path / "ext", port=-1, auth_block=p.stdout)
    srv.start()
    try:
        anon = subprocess.run([sys.executable, "-m", "pas", "runs", "--nats-url", srv.url, "--creds-dir",
                               str(tmp_path / "none")], capture_output=True, text=True, timeout=60)
        assert anon.returncode == 1 and "no credentials were given" in anon.stderr
        assert "--creds-dir" in anon.stderr
    finally:
        srv.stop()


async def test_permissions_off_switch(tmp_path: Path) -> None:
    """settings.nats.auth=off: no users in the server config, anyone may connect, one shared bus."""
    cfg = make_cfg("settings.nats.port=-1", "settings.nats.auth=off", f"settings.nats.data_dir={tmp_path / 'data'}")
    st = Stack(cfg, only=["monitor", "gateway"])
    await st.start()
    try:
        assert "authorization" not in (tmp_path / "data" / "nats-server.conf").read_text()
        assert not (tmp_path / "data" / "creds").exists() and list(st.buses) == [""]
        client = await PasClient.connect(st.url or "", 10)  # anonymous
        try:
            assert (await client.runs())["runs"] == []
        finally:
            await client.close()
    finally:
        await st.stop()
