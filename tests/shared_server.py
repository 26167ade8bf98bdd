"""One nats-server (JetStream, temp store dir, free port) for the whole test session.

Isolation between tests: after each test that used it, `reset()` waits (bounded) until the test's
connections are gone (stacks stopped, clients closed, `pas up` processes killed), then deletes every
stream, which takes every KV bucket (pas_claims among them), object store and consumer with it, and
checks through the server's monitoring endpoint that nothing is left. A test that leaves a
connection open, or kills the server, fails at teardown, and the next test gets a fresh server.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

import nats

from pas.transport.server import EmbeddedServer

DRAIN_S = 10.0


class SharedServer:
    current: ClassVar[SharedServer | None] = None

    def __init__(self, base: Path) -> None:
        self.base = base
        self.starts = 0
        self.dirty = False
        self.server = self._start()
        SharedServer.current = self

    def _start(self) -> EmbeddedServer:
        self.starts += 1
        srv = EmbeddedServer(self.base / f"nats{self.starts}", port=-1, extra_args=["-m", "-1"])
        srv.start()
        assert srv.proc is not None
        ports = srv.data_dir / "ports" / f"nats-server_{srv.proc.pid}.ports"
        self.monitor = json.loads(ports.read_text())["monitoring"][0]
        return srv

    def use(self) -> EmbeddedServer:
        self.dirty = True
        if self.server.proc is None or self.server.proc.poll() is not None:
            self.server = self._start()
        return self.server

    def stop(self) -> None:
        self.server.stop()
        SharedServer.current = None

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.monitor + path, timeout=5) as r:
            return json.loads(r.read())

    def reset(self) -> None:
        self.dirty = False
        problem = self._clean()
        if problem:
            self.server.kill()
            self.server = self._start()
            raise AssertionError(f"the test left the shared nats-server unclean: {problem}")

    def _clean(self) -> str:
        if self.server.proc is None or self.server.proc.poll() is not None:
            return "the server is not running (a test that stops or kills a server starts its own)"
        deadline = time.monotonic() + DRAIN_S
        while (conns := self._get("/connz")["connections"] or []) and time.monotonic() < deadline:
            time.sleep(0.02)
        if conns:
            names = sorted(str(c.get("name") or c.get("cid")) for c in conns)
            return f"{len(conns)} connection(s) still open after {DRAIN_S:.0f}s: {names}"
        loop = asyncio.new_event_loop()  # not asyncio.run: it would unset a module's event loop
        try:
            loop.run_until_complete(_delete_streams(self.server.url))
        finally:
            loop.close()
        jsz = self._get("/jsz")
        if jsz["streams"] or jsz["consumers"]:
            return f"{jsz['streams']} stream(s) and {jsz['consumers']} consumer(s) left after deleting all"
        return ""


async def _delete_streams(url: str) -> None:
    nc = await nats.connect(url, name="tests-reset", allow_reconnect=False, connect_timeout=5)
    try:
        jsm = nc.jsm()
        for info in await jsm.streams_info():
            assert info.config.name
            await jsm.delete_stream(info.config.name)
    finally:
        await nc.close()
