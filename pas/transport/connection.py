"""The one way PAS connects to NATS: connect() (agents, the HTTP adapter, the CLI, MCP, tests).

Kept apart from pas.transport.bus (JetStream, KV helpers) and pas.transport.provision, so a client that only
makes requests (pas.transport.client, the CLI) does not import the JetStream side.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nats.errors import AuthorizationError

from pas.base.errors import Unavailable
from pas.transport.natscompat import Client

log = logging.getLogger("pas.bus")


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
    # ping_interval: a silent (frozen, cut off) server is left after 2 missed pings. drain_timeout: a drain at
    # stop waits for every subscription's pending callbacks; one that never returns would hold a stopping
    # process for nats-py's default 30 s (seen once in CI: an overlay `pas up` outlived SIGTERM's 30 s).
    opts: dict[str, Any] = {"max_reconnect_attempts": -1, "reconnect_time_wait": 0.5, "drain_timeout": 5,
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
