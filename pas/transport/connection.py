"""The one way PAS connects to NATS: connect() (agents, the HTTP adapter, the CLI, MCP, tests).

Kept apart from pas.bus (JetStream provisioning, KV helpers) so a client that only makes requests
(pas.transport.client, the CLI) does not import the JetStream side.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.errors import AuthorizationError

from pas.base.errors import Unavailable

log = logging.getLogger("pas.bus")


class Client(NatsClient):
    """nats-py's client, writing to the socket less often.

    nats-py queues a flush request with every publish and its flusher task writes what is pending
    at once, so publishes made by different handlers in the same turn of the event loop mostly go
    out one socket write each. On these machines a write to a socket costs far more than building
    a message (profile: ~22 % of an agents' process under load was socket sends). This flusher
    waits one turn of the loop first (everything already runnable publishes too), then writes all
    of it in one go: 100 1-task jobs made 23 % fewer writes (3,320 -> 2,549), and a 3,000-task job
    took 0.82x the CPU (median of 3 pairs, loaded machine). The order of messages is unchanged;
    flush() and requests behave as before. `writes` counts the writes."""

    writes = 0

    async def _flusher(self) -> None:  # nats-py 2.x internals (pinned in pyproject.toml)
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


def split_servers(url: str) -> list[str]:
    """"nats://a:4222,nats://b:4222" -> the server list."""
    return [u.strip() for u in url.split(",") if u.strip()]


CREDS_HINT = ("PAS reads credentials from --creds-dir, $PAS_CREDS_DIR, settings.nats.creds_dir or "
              "<data_dir>/creds (default .pas/creds, written by `pas up`): run `pas` where `pas up` runs, or point "
              "one of those at that directory. A server you run yourself needs the users of `pas nats-config`.")


class AuthRefused(Unavailable):
    """The server refused who we are (or that we said nobody): waiting will not help."""


def on_nats_error(user: str | None) -> Any:
    """nats-py's error callback once connected: a refused publish/subscribe is logged at WARNING with
    its subject (and the PAS user), anything else as before."""

    async def _err(e: Exception) -> None:
        text = str(e)
        if "permissions violation" in text.lower():  # nats-py lowercases the server's -ERR text
            log.warning("NATS refused %s: %s", user or "this connection", text.removeprefix("nats: "))
        else:
            log.warning("nats: %s", e)

    return _err


async def connect(url: str, name: str = "pas", *, connect_timeout_s: float = 30.0,
                  ping_interval_s: float = 3.0, timeout_setting: str = "settings.nats.connect_timeout_s",
                  **kw: Any) -> Client:
    """The one way PAS connects to NATS (agents, the HTTP adapter, the CLI).

    Until the first connection is made, every failed attempt is retried; the wait is logged at
    WARNING with the URL (first failure at once, then every 5 s), and after connect_timeout_s it
    gives up with Unavailable naming the URL and the last error. A refused authorization fails at
    once. Once connected, reconnects are retried forever. Extra keywords (user, password, tls, ...)
    go to nats.connect unchanged. `timeout_setting` is the setting the give-up message names (the
    client commands wait settings.nats.client_connect_timeout_s)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    state: dict[str, Any] = {"connected": False, "last": None, "logged": None}
    fatal: asyncio.Future[BaseException] = loop.create_future()
    report = kw.pop("error_cb", None) or on_nats_error(kw.get("user"))

    async def _err(e: Exception) -> None:
        if state["connected"]:
            await report(e)
            return
        state["last"] = e
        if _refused(e):
            if not fatal.done():
                fatal.set_result(e)
            return
        now = loop.time()
        if state["logged"] is None or now - state["logged"] >= 5.0:
            state["logged"] = now
            log.warning("waiting for NATS at %s (%s); giving up in %.0fs", url, _reason(e),
                        max(0.0, connect_timeout_s - (now - t0)))

    nc = Client()
    # ping_interval: a silent (frozen, cut off) server is left after 2 missed pings.
    opts: dict[str, Any] = {"max_reconnect_attempts": -1, "reconnect_time_wait": 0.5,
                            "ping_interval": ping_interval_s, "max_outstanding_pings": 2,
                            "connect_timeout": min(2.0, max(connect_timeout_s, 0.1)), **kw}
    attempt: asyncio.Future[Any] = asyncio.ensure_future(
        nc.connect(servers=split_servers(url), name=name, error_cb=_err, **opts))
    waiters: list[asyncio.Future[Any]] = [attempt, fatal]
    done, _ = await asyncio.wait(waiters, timeout=connect_timeout_s, return_when=asyncio.FIRST_COMPLETED)
    if attempt in done and attempt.exception() is None:
        state["connected"] = True
        if state["logged"] is not None:
            log.warning("connected to NATS at %s after %.1fs", url, loop.time() - t0)
        return nc
    attempt.cancel()
    await asyncio.gather(attempt, return_exceptions=True)
    try:
        await nc.close()
    except Exception:
        pass
    err = fatal.result() if fatal.done() else (attempt.exception() if attempt.done() and not attempt.cancelled()
                                                else state["last"])
    if err is not None and _refused(err):
        who = f"user {kw['user']!r}" if kw.get("user") else "no credentials were given"
        raise AuthRefused(f"NATS at {url} refused the credentials ({_reason(err)}; {who}). {CREDS_HINT}")
    raise Unavailable(f"cannot reach NATS at {url} after {connect_timeout_s:g}s ({_reason(err)}); is nats-server "
                      f"running there? (wait longer with --connect-timeout or {timeout_setting})")


def _refused(e: BaseException) -> bool:
    """The server refused who we are: waiting will not help."""
    return isinstance(e, AuthorizationError) or "authorization violation" in str(e).lower()


def _reason(e: BaseException | None) -> str:
    if e is None:
        return "no answer"
    text = str(e) or type(e).__name__
    return text if isinstance(e, OSError) else f"{type(e).__name__}: {text}".rstrip(": ")
