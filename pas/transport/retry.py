"""The one retry policy of PAS for JetStream: what counts as transient unavailability (a leader election, a
client moving to another cluster node), and retry_js(), which every stream publish, KV write and ack goes
through (pas.transport.bus, pas.runtime.store)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.errors import ConnectionReconnectingError, NoRespondersError, OutboundBufferLimitError, StaleConnectionError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError

log = logging.getLogger("pas.bus")
T = TypeVar("T")

# What a JetStream write meets while a cluster elects a leader or the client moves to another node.
TRANSIENT: tuple[type[BaseException], ...] = (
    NoRespondersError, NoStreamResponseError, NatsTimeoutError, asyncio.TimeoutError,
    ConnectionReconnectingError, StaleConnectionError, OutboundBufferLimitError,
)
ATTEMPT_TIMEOUT_S = 2.0  # first attempt's bound; later ones wait 4 s (a request lost in a failover
# is not answered at all: a long wait on it would outlast the election it is waiting for)


def transient(e: BaseException) -> bool:
    if isinstance(e, TRANSIENT):
        return True
    # 503: "JetStream system temporarily unavailable", no stream/consumer leader yet (a pull's 503
    # status comes without a code).
    return isinstance(e, ServiceUnavailableError) or (isinstance(e, APIError) and getattr(e, "code", None) == 503)


async def retry_js(what: str, op: Callable[[], Awaitable[T]], deadline_s: float = 60.0) -> T:
    """Run a JetStream write, retrying transient unavailability with bounded exponential backoff.

    The one retry policy of PAS: every publish to a stream, KV write (Bus.kv_put, kv_create, kv_update,
    kv_delete; the one exception is Bus.kv_put_nowait) and ack goes through here, so a
    leader election or a failover to another node delays a handler by seconds instead of failing it
    (and a finished task is never redone because its completion could not be stored). Each attempt
    is bounded; each failed attempt is logged (WARNING, with what and which attempt). Past deadline_s
    the last error is raised. Writes retried here must be idempotent: publishes carry a message id,
    KV puts write the same value, CAS updates report a lost race (the caller reads again)."""
    start = time.monotonic()
    attempt, delay = 1, 0.05  # then 0.1, 0.2, 0.4, 0.5, 0.5, ...
    while True:
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT_S * min(attempt, 2)):  # no task per call, unlike wait_for
                return await op()
        except Exception as e:
            if not transient(e):
                raise
            spent = time.monotonic() - start
            if spent + delay > deadline_s:
                log.error("%s: JetStream still unavailable after %d attempts in %.1fs (%s): giving up",
                          what, attempt, spent, type(e).__name__)
                raise
            log.warning("%s: JetStream unavailable (%s: %s), attempt %d failed; retrying in %.2fs",
                        what, type(e).__name__, str(e)[:120], attempt, delay)
        await asyncio.sleep(delay)
        attempt += 1
        delay = min(delay * 2, 0.5)
