"""pas.transport.retry.retry_js, the one retry policy for JetStream writes, against a real nats-server: a write
to a stream that is not there yet (what a client sees during a leader election: no responders) is
retried with logged, bounded backoff and lands once the stream is back; past the deadline the error
is raised; errors that are not transient are raised at once. No KV write goes around it."""

from __future__ import annotations

import ast
import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from nats.js.errors import BadRequestError, NoStreamResponseError

from pas.protocol import subjects as S
from pas.transport.bus import Bus
from pas.transport.retry import retry_js
from tests.conftest import make_cfg


async def test_write_lands_once_the_stream_is_back(nc: Any, caplog: pytest.LogCaptureFixture) -> None:
    js = nc.jetstream(timeout=2)

    async def bring_back() -> None:
        await asyncio.sleep(0.4)
        await js.add_stream(name="BACK", subjects=["back.>"])

    caplog.set_level(logging.WARNING, logger="pas.bus")
    later = asyncio.ensure_future(bring_back())
    ack = await retry_js("publish back.x", lambda: js.publish("back.x", b"1", headers={"Nats-Msg-Id": "m1"}),
                         deadline_s=10)
    await later
    assert ack.stream == "BACK" and ack.seq == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and all("publish back.x" in w for w in warnings)
    assert "attempt 1 failed" in warnings[0] and "NoStreamResponseError" in warnings[0]
    # A retry that follows a lost ack is a no-op: same message id, still one message.
    again = await retry_js("publish back.x", lambda: js.publish("back.x", b"1", headers={"Nats-Msg-Id": "m1"}))
    assert again.duplicate and (await js.stream_info("BACK")).state.messages == 1


async def test_gives_up_after_the_deadline(nc: Any, caplog: pytest.LogCaptureFixture) -> None:
    js = nc.jetstream(timeout=2)
    caplog.set_level(logging.WARNING, logger="pas.bus")
    t0 = time.monotonic()
    with pytest.raises(NoStreamResponseError):
        await retry_js("publish nowhere.x", lambda: js.publish("nowhere.x", b"1"), deadline_s=0.5)
    assert 0.3 < time.monotonic() - t0 < 3
    assert any(r.levelno == logging.ERROR and "giving up" in r.getMessage() for r in caplog.records)


async def test_other_errors_are_not_retried(nc: Any) -> None:
    js = nc.jetstream(timeout=2)
    await js.add_stream(name="ONE", subjects=["one.>"])
    calls = 0

    async def bad() -> Any:
        nonlocal calls
        calls += 1  # a wrong expected sequence is a real answer, not unavailability
        return await js.publish("one.x", b"1", headers={"Nats-Expected-Last-Sequence": "99"})

    with pytest.raises(BadRequestError):
        await retry_js("publish one.x", bad, deadline_s=10)
    assert calls == 1


def kv_writes_around_the_bus(root: Path) -> list[str]:
    """`<x>.kv[<bucket>].put/create/update/delete/purge(...)` and a plain publish to a KV subject
    (`publish(S.kv_subject(...))`) anywhere but pas/transport/bus.py: writes that skip retry_js."""
    found = []
    for f in sorted((root / "pas").rglob("*.py")):
        if f.relative_to(root).as_posix() == "pas/transport/bus.py":
            continue
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            target = node.func.value
            direct = (node.func.attr in ("put", "create", "update", "delete", "purge")
                      and isinstance(target, ast.Subscript) and isinstance(target.value, ast.Attribute)
                      and target.value.attr == "kv")
            published = (node.func.attr == "publish" and node.args and isinstance(node.args[0], ast.Call)
                         and isinstance(node.args[0].func, ast.Attribute) and node.args[0].func.attr == "kv_subject")
            if direct or published:
                found.append(f"{f.relative_to(root)}:{node.lineno}")
    return found


def test_every_kv_write_goes_through_the_bus() -> None:
    """KV writes go through Bus.kv_put / kv_create / kv_update / kv_delete (retry_js); the one write that
    does not wait for its ack, Bus.kv_put_nowait (a progress state), lives in the bus too."""
    assert kv_writes_around_the_bus(Path(__file__).resolve().parent.parent) == []


async def test_kv_create_counts_its_own_stored_write_as_created(nats_server: Any) -> None:
    """Bus.kv_create, retried through a failover, may find its own first attempt stored (the ack was
    lost): a key holding exactly the value counts as created; another value means it exists."""
    bus = await Bus.open(nats_server.url, make_cfg(), name="kv-create")
    try:
        first = await bus.kv_create(S.KV_TREE, "kvc.a", b"mine")
        assert first is not None and first > 0
        assert await bus.kv_create(S.KV_TREE, "kvc.a", b"mine") == first  # the retry of a stored create
        assert await bus.kv_create(S.KV_TREE, "kvc.a", b"theirs") is None
        await bus.kv_delete(S.KV_TREE, "kvc.a", last=first)
        assert await bus.kv_create(S.KV_TREE, "kvc.a", b"theirs") is not None  # deleted: created anew
    finally:
        await bus.close()
