"""Every use of nats-py's private attributes, in this one module.

nats-py has no public way to do these few things, so PAS reaches inside it here and nowhere else
(tests/test_layering.py-style guard: tests/test_natscompat.py fails on a private attribute used
outside this module). nats-py is pinned exactly in pyproject.toml, and tests/test_natscompat.py has
one test per attribute listed in PRIVATE: an upgrade that renames or removes one fails there, naming
the attribute and the function here to adapt, instead of somewhere deep inside a run.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any


class _ImportedOnUse:
    """A module imported on its first attribute read (truthy, as the module would be)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        module: ModuleType = importlib.import_module(self._name)
        return getattr(module, attr)


def _import_nats_transport_without_aiohttp() -> None:
    """nats-py imports aiohttp when it is imported, for its WebSocket transport alone: ~0.35 s of every
    process's start (`pas creds client` took 0.87 s, 0.34 s of it aiohttp), and litellm puts aiohttp in the venv.
    PAS connects over nats:// and tls://, so nats-py's transport module is imported with aiohttp hidden and
    then given a stand-in that imports aiohttp on first use: a ws:// URL still works. Runs before any other
    nats-py import of the process (pas/__init__.py imports this module first)."""
    if "nats.aio.transport" in sys.modules or "aiohttp" in sys.modules:
        return
    sys.modules["aiohttp"] = None  # type: ignore[assignment]  # `import aiohttp` raises ImportError meanwhile
    try:
        import nats.aio.transport as transport
    finally:
        del sys.modules["aiohttp"]
    names = vars(transport)  # (aiohttp: a module global nats-py does not export)
    if names.get("aiohttp") is None and importlib.util.find_spec("aiohttp") is not None:
        names["aiohttp"] = _ImportedOnUse("aiohttp")


_import_nats_transport_without_aiohttp()

from nats.aio.client import Client as NatsClient  # noqa: E402
from nats.js import JetStreamContext  # noqa: E402
from nats.micro.request import Request  # noqa: E402
from nats.micro.service import Endpoint, Service  # noqa: E402
from nats.nuid import NUID  # noqa: E402

PRIVATE: dict[str, tuple[str, ...]] = {
    # owner -> the private attributes PAS touches on it (each has its test)
    "nats.aio.client.Client": ("_flusher", "_flush_queue", "_transport", "_pending", "_pending_data_size",
                               "_error_cb", "_process_op_err", "_send_ping", "_pongs"),
    "nats.js.JetStreamContext": ("_nc",),
    "nats.micro.request.Request": ("_msg",),
    "nats.micro.service.Service": ("_endpoints",),
    "nats.micro.service.Endpoint": ("_num_errors", "_last_error"),
}

_nuid = NUID()  # nats-py's public id generator (what nc.new_inbox() uses), one per process


def unique_name() -> str:
    """A fresh unique token (ephemeral consumer names, message ids): nats-py's NUID, without
    borrowing the connection's private one."""
    return _nuid.next().decode()


def connection_of(js: JetStreamContext) -> NatsClient:
    """The connection a JetStream context was made from (nats-py keeps it private)."""
    nc: NatsClient = js._nc
    return nc


def reply_of(req: Request) -> str:
    """A micro request's reply subject ('' for a publish nobody waits on); nats.micro hides the message."""
    return req._msg.reply or ""


def last_endpoint(service: Service) -> Endpoint:
    """The endpoint add_endpoint() just added (nats.micro returns nothing)."""
    ep: Endpoint = service._endpoints[-1]
    return ep


def count_error(ep: Endpoint, text: str) -> None:
    """Count an error in the endpoint's STATS, as nats.micro does for a handler that raises (PAS
    handlers answer their errors themselves, so they never raise to it)."""
    ep._num_errors += 1
    ep._last_error = text  # type: ignore[assignment]


class Client(NatsClient):
    """nats-py's client, writing to the socket less often.

    nats-py queues a flush request with every publish and its flusher task writes what is pending
    at once, so publishes made by different handlers in the same turn of the event loop mostly go
    out one socket write each. On these machines a write to a socket costs far more than building
    a message (profile: ~22 % of an agents' process under load was socket sends). This flusher
    waits one turn of the loop first (everything already runnable publishes too), then writes all
    of it in one go: 100 1-task jobs made 23 % fewer writes (3,320 -> 2,549), and a 3,000-task job
    took 0.82x the CPU (median of 3 pairs, loaded machine). The order of messages is unchanged;
    flush() and requests behave as before. `writes` counts the writes.

    It overrides nats-py's private _flusher, a copy of it plus the one-turn wait."""

    writes = 0

    async def _send_ping(self, future: asyncio.Future[None] | None = None) -> None:
        """nats-py writes a PING straight to the socket, ahead of what is still pending, so a
        flush() right after subscribe() (or a publish) could get its PONG before the server saw the
        SUB: a request made next found no responders (CI, under load). Pending commands go first."""
        assert self._transport is not None
        if self._pending_data_size > 0:
            self._transport.writelines(self._pending[:])
            self._pending = []
            self._pending_data_size = 0
            self.writes += 1
        self._pongs.append(future if future is not None else asyncio.Future())
        self._transport.write(b"PING\r\n")
        await self._flush_pending()  # as nats-py does: wakes the flusher (nothing is left to write)

    async def _flusher(self) -> None:
        while True:
            if not self.is_connected or self.is_connecting:
                break
            assert self._flush_queue is not None and self._transport is not None
            waiting = [await self._flush_queue.get()]
            try:
                await asyncio.sleep(0)  # one turn: whatever is runnable now publishes before we write
                while not self._flush_queue.empty():
                    waiting.append(self._flush_queue.get_nowait())
                if self._pending_data_size > 0:
                    self._transport.writelines(self._pending[:])
                    self._pending = []
                    self._pending_data_size = 0
                    self.writes += 1
                    await self._transport.drain()  # type: ignore[no-untyped-call]  # nats-py leaves it untyped
            except OSError as e:
                await self._error_cb(e)
                await self._process_op_err(e)
                break
            except (asyncio.CancelledError, RuntimeError, AttributeError):
                break  # RuntimeError: the event loop is closed
            finally:
                for fut in waiting:
                    if not fut.done():  # a waiter may have given up (nats-py issue #624)
                        fut.set_result(None)

