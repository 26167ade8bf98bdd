"""pas.transport.natscompat is the only place PAS touches nats-py's private attributes: one test per
attribute it uses, on live objects of the pinned nats-py (an upgrade that renames or removes one fails
here, naming it), the compat functions doing what they say, and no other module of pas/ using one."""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.micro import add_service
from nats.micro.request import Request

from pas.transport import natscompat
from pas.transport.connection import connect
from pas.transport.connection import connect as pas_connect
from tests.conftest import wait_for

PAS = Path(__file__).resolve().parent.parent / "pas"
ATTRIBUTES = [(owner, attr) for owner, attrs in natscompat.PRIVATE.items() for attr in attrs]


async def live_objects(url: str) -> AsyncIterator[dict[str, Any]]:
    """One live object of each owner in natscompat.PRIVATE: a plain nats-py connection, its JetStream
    context, a micro service, its endpoint and a request that endpoint handled."""
    nc = await nats.connect(url)
    svc = await add_service(nc, name="compat", version="0.0.1")
    got: list[Request] = []

    async def handler(req: Request) -> None:
        got.append(req)
        await req.respond(b"ok")

    try:
        await svc.add_endpoint(name="probe", subject="compat.probe", handler=handler)
        reply = await nc.request("compat.probe", b"", timeout=5)
        assert reply.data == b"ok"
        yield {"nats.aio.client.Client": nc, "nats.js.JetStreamContext": nc.jetstream(),
               "nats.micro.request.Request": got[0], "nats.micro.service.Service": svc,
               "nats.micro.service.Endpoint": natscompat.last_endpoint(svc)}
    finally:
        await svc.stop()
        await nc.close()


@pytest.mark.parametrize(("owner", "attr"), ATTRIBUTES, ids=[f"{o.rsplit('.', 1)[1]}.{a}" for o, a in ATTRIBUTES])
async def test_private_attribute_is_still_there(nats_server: Any, owner: str, attr: str) -> None:
    async for objs in live_objects(nats_server.url):
        obj = objs[owner]
        assert hasattr(obj, attr), (
            f"nats-py {version('nats-py')}: {owner} has no {attr} any more; pas.transport.natscompat uses it: "
            f"adapt it there (and the exact pin in pyproject.toml)")
        if owner.endswith("Client") and attr in ("_flusher", "_process_op_err", "_error_cb"):
            assert inspect.iscoroutinefunction(getattr(obj, attr)), f"nats-py {owner}.{attr} is no longer a coroutine"


async def test_flusher_override_replaces_the_one_nats_py_runs(nats_server: Any) -> None:
    """pas's Client overrides nats-py's own _flusher (the one connect() starts), and its writes carry
    every publish, in order."""
    assert "_flusher" in vars(NatsClient)  # defined there, so the override replaces the real one
    nc = await connect(nats_server.url, name="compat-flusher")
    sub = await pas_connect(nats_server.url)
    seen: list[bytes] = []

    async def on(m: Any) -> None:
        seen.append(m.data)

    try:
        await sub.subscribe("compat.flush", cb=on)
        await sub.flush()
        assert isinstance(nc, natscompat.Client)
        for i in range(50):
            await nc.publish("compat.flush", str(i).encode())
        await nc.flush()
        await wait_for(lambda: len(seen) == 50, 30)
        assert seen == [str(i).encode() for i in range(50)]
        assert 1 <= nc.writes < 50  # batched: fewer writes than publishes
    finally:
        await sub.close()
        await nc.close()


async def test_compat_functions_read_what_they_say(nats_server: Any) -> None:
    async for objs in live_objects(nats_server.url):
        nc, js, req, ep = (objs[k] for k in ("nats.aio.client.Client", "nats.js.JetStreamContext",
                                              "nats.micro.request.Request", "nats.micro.service.Endpoint"))
        assert natscompat.connection_of(js) is nc
        assert natscompat.reply_of(req).startswith("_INBOX.")
        natscompat.count_error(ep, "503 try again")
        stats = objs["nats.micro.service.Service"].stats()
        assert [(e.num_errors, e.last_error) for e in stats.endpoints] == [(1, "503 try again")]
        assert natscompat.unique_name() != natscompat.unique_name()
        await asyncio.sleep(0)


def nats_py_private_names() -> set[str]:
    """Every private attribute name nats-py's own code sets or defines."""
    root = Path(inspect.getfile(nats)).parent
    names: set[str] = set()
    for f in root.rglob("*.py"):
        text = f.read_text()
        names |= set(re.findall(r"self\.(_[a-z]\w*)", text)) | set(re.findall(r"def (_[a-z]\w*)", text))
    return names


def test_no_module_but_natscompat_touches_nats_py_privates() -> None:
    """`x._name` (x not self/cls), where _name is one of nats-py's private names, only in natscompat."""
    private = nats_py_private_names()
    assert {a for _, a in ATTRIBUTES} <= private
    found = []
    for f in sorted(PAS.rglob("*.py")):
        if f.name == "natscompat.py":
            continue
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if (isinstance(node, ast.Attribute) and node.attr in private and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{f.relative_to(PAS.parent)}:{node.lineno} .{node.attr}")
    assert found == [], f"nats-py private attributes used outside pas/transport/natscompat.py: {found}"


def test_nats_py_imports_aiohttp_only_for_a_websocket() -> None:
    """Importing PAS leaves aiohttp (nats-py's WebSocket transport, ~0.35 s a process) unimported; the
    transport's stand-in imports it on first use and is the real module's then."""
    probe = (
        "import sys, asyncio\n"
        "import pas.transport.connection, pas.surfaces.cli\n"
        "assert 'aiohttp' not in sys.modules, 'aiohttp imported by PAS'\n"
        "import nats.aio.transport as t\n"
        "assert t.aiohttp\n"
        "async def ws():\n"
        "    w = t.WebSocketTransport()\n"
        "    import aiohttp\n"
        "    assert isinstance(w._client, aiohttp.ClientSession) and t.aiohttp.WSMsgType is aiohttp.WSMsgType\n"
        "    await w._client.close()\n"
        "asyncio.run(ws())\n"
        "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
