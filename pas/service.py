"""Validation at the edge: request endpoints and work-queue loops that hand handlers typed structs.

- endpoint(): wraps a `async def handler(req: T, ctx: Call) -> Struct` for nats.micro. It decodes
  and validates JSON into T, answers errors with the micro error headers (Nats-Service-Error,
  Nats-Service-Error-Code) plus a JSON ErrorBody, logs bad input (python log + comms ERROR entry),
  and never lets an exception kill the agent.
- WorkLoop: a pull consumer loop with a concurrency limit; handler outcome -> ack / nak / term.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import msgspec
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.micro.request import Request

from pas import wire
from pas.bus import transient
from pas.errors import BadRequest, PasError, PayloadTooLarge, Retry, Unavailable, is_bad_input

log = logging.getLogger("pas.service")

MAX_BODY = 2 * 1024 * 1024  # bytes; larger request bodies get 413


@dataclass
class Call:
    """What a request handler may want besides the body."""

    subject: str
    headers: dict[str, str]
    reply: str


def error_body(e: PasError) -> bytes:
    return wire.encode(wire.ErrorBody(code=e.code, error=e.error, message=e.message, detail=e.detail))


def decode_body(data: bytes, typ: type[Any]) -> Any:
    if len(data) > MAX_BODY:
        raise PayloadTooLarge(f"body of {len(data)} bytes exceeds {MAX_BODY}")
    if typ is wire.Empty:
        return wire.Empty()
    if not data.strip():
        data = b"{}"
    try:
        return msgspec.json.decode(data, type=typ)
    except msgspec.ValidationError as e:
        raise BadRequest(f"invalid {typ.__name__}: {e}") from None
    except msgspec.DecodeError as e:
        raise BadRequest(f"body is not valid JSON: {e}") from None


OnBadInput = Callable[[str, bytes, PasError], Awaitable[None]]


def endpoint(
    handler: Callable[[Any, Call], Awaitable[Any]],
    req_type: type[Any],
    *,
    on_error: Callable[[str], None],
    on_bad_input: OnBadInput | None = None,
) -> Callable[[Request], Awaitable[None]]:
    """Make a nats.micro handler. `on_error` records an error in the endpoint's STATS."""

    async def handle(req: Request) -> None:
        msg: Msg = req._msg  # noqa: SLF001 - the reply subject is needed to honour plain publishes
        call = Call(subject=req.subject, headers=dict(req.headers or {}), reply=msg.reply or "")
        try:
            body = decode_body(req.data, req_type)
            result = await handler(body, call)
            if call.reply:
                await req.respond(wire.encode(result) if result is not None else b"{}")
            return
        except PasError as e:
            err = e
        except Exception as e:  # noqa: BLE001 - no payload may kill an agent
            if transient(e):  # JetStream still unavailable after the retries: try again later
                log.warning("handler %s: JetStream unavailable: %r", req.subject, e)
                err = Unavailable(f"JetStream unavailable, try again: {type(e).__name__}")
            else:
                log.exception("handler %s failed", req.subject)
                err = PasError(f"internal error: {e!r}")
        on_error(f"{err.code} {err.message}"[:500])
        if is_bad_input(err):
            log.warning("bad input on %s: %s (%d bytes: %r)", req.subject, err.message, len(req.data), req.data[:200])
            if on_bad_input is not None:
                try:
                    await on_bad_input(req.subject, req.data, err)
                except Exception:  # noqa: BLE001
                    log.exception("logging bad input failed")
        if call.reply:
            try:
                await req.respond_error(str(err.code), err.message[:1000], data=error_body(err))
            except Exception:  # noqa: BLE001
                log.exception("could not send error reply on %s", req.subject)

    return handle


WorkHandler = Callable[[Any, Msg], Awaitable[None]]


class WorkLoop:
    """Fetch from a durable pull consumer and run handlers concurrently (at most `concurrency`).

    Outcome mapping: return -> ack; Retry -> nak(delay); PasError (bad data) -> term + log;
    other exceptions -> nak(1s) so another attempt (or agent) can take it. While a handler runs,
    the message is marked in-progress every ack_wait/3 so the deadline only hits dead agents.
    Handlers retry their own JetStream writes (pas.bus.retry_js); the ack is retried the same way.
    """

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        durable: str,
        typ: type[Any],
        handler: WorkHandler,
        *,
        concurrency: int,
        ack_wait_s: float,
        spawn: Callable[[Awaitable[Any]], asyncio.Task[Any]],
        on_bad_input: OnBadInput | None = None,
        name: str = "",
        ack: Callable[[Msg], Awaitable[Any]] | None = None,
        fetch_timeout_s: float = 2.0,
    ) -> None:
        self.js, self.stream, self.durable, self.typ = js, stream, durable, typ
        self.handler = handler
        self.concurrency = max(1, concurrency)
        self.ack_wait_s = ack_wait_s
        self.spawn = spawn
        self.on_bad_input = on_bad_input
        self.name = name or durable
        self.ack = ack or (lambda m: m.ack())  # pas.bus.Bus.ack: confirmed, retried through elections
        # A pull request lives at the consumer's leader, reached through our server: if either dies,
        # the request is lost silently; a short expiry bounds how long this loop waits on a dead one.
        self.fetch_timeout_s = fetch_timeout_s
        self.in_flight = 0
        self.handled = 0
        self.errors = 0
        self._slot = asyncio.Condition()
        self._task: asyncio.Task[Any] | None = None
        self._running: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        self._task = self.spawn(self._run())

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._running:
            await asyncio.wait(self._running, timeout=drain_timeout_s)

    async def _run(self) -> None:
        psub = await self.js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        failing_since: float | None = None  # fetches failing (consumer leader lost, reconnecting)
        failures = 0
        try:
            while True:
                async with self._slot:
                    await self._slot.wait_for(lambda: self.in_flight < self.concurrency)
                    free = self.concurrency - self.in_flight
                try:
                    msgs = await psub.fetch(min(free, 64), timeout=self.fetch_timeout_s)
                except (NatsTimeoutError, asyncio.TimeoutError):
                    msgs = []  # nothing to do (or a pull lost on the way): ask again
                except Exception as e:  # noqa: BLE001 - connection trouble: back off, retry
                    failures += 1
                    if failing_since is None:
                        failing_since = time.monotonic()
                        log.warning("%s: fetch failed: %r; retrying every 0.5 s", self.name, e)
                    await asyncio.sleep(0.5)
                    continue
                if failing_since is not None:
                    log.warning("%s: fetch no longer failing, after %d failed attempts in %.1f s",
                                self.name, failures, time.monotonic() - failing_since)
                    failing_since, failures = None, 0
                for m in msgs:
                    self.in_flight += 1
                    t = self.spawn(self._handle(m))
                    self._running.add(t)
                    t.add_done_callback(self._running.discard)
        finally:
            try:
                await psub.unsubscribe()
            except Exception:  # noqa: BLE001
                pass

    async def _keepalive(self, m: Msg) -> None:
        """Mark the message in progress every ack_wait/3 for as long as its handler runs. A failed
        mark (connection moving to another node) is logged and the next one tried: a keepalive that
        stopped would let the work be redelivered to a second agent while this one still runs it."""
        period = max(0.2, self.ack_wait_s / 3)
        while True:
            await asyncio.sleep(period)
            try:
                await m.in_progress()
            except Exception as e:  # noqa: BLE001
                log.warning("%s: in-progress mark on %s failed (%r); trying again in %.1fs",
                            self.name, m.subject, e, period)

    async def _handle(self, m: Msg) -> None:
        keep = self.spawn(self._keepalive(m))
        try:
            try:
                body = decode_body(m.data, self.typ)
            except PasError as e:
                self.errors += 1
                log.warning("%s: dropping bad work item on %s: %s", self.name, m.subject, e.message)
                if self.on_bad_input:
                    await self.on_bad_input(m.subject, m.data, e)
                await m.term()
                return
            try:
                await self.handler(body, m)
                self.handled += 1
                await self.ack(m)
            except Retry as e:
                await m.nak(delay=e.delay_s)
            except PasError as e:
                self.errors += 1
                log.warning("%s: work item on %s failed for good: %s", self.name, m.subject, e.message)
                if self.on_bad_input:
                    await self.on_bad_input(m.subject, m.data, e)
                await m.term()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                self.errors += 1
                log.exception("%s: handler failed on %s; will be redelivered", self.name, m.subject)
                await m.nak(delay=1.0)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - ack/nak on a closed connection: redelivery covers it
            log.warning("%s: could not settle message on %s", self.name, m.subject)
        finally:
            keep.cancel()
            async with self._slot:
                self.in_flight -= 1
                self._slot.notify_all()
