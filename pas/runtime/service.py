"""Validation at the edge: request endpoints and work-queue loops that hand handlers typed structs.

- endpoint(): wraps a `async def handler(req: T, ctx: Call) -> Struct` for nats.micro. It decodes
  and validates JSON into T, answers errors with the micro error headers (Nats-Service-Error,
  Nats-Service-Error-Code) plus a JSON ErrorBody, logs bad input (python log + comms ERROR entry),
  and never lets an exception kill the agent.
- WorkLoop: a pull consumer loop with a concurrency limit. Every work handler is
  `async def handler(item: T, ctx: WorkCtx) -> None`: T is the decoded wire struct, ctx the run,
  the delivery attempt, the message headers (trace context), in_progress() and typed ways to
  publish and log. No handler sees a nats Msg. Outcomes are exceptions, settled in one place
  (settle()): return -> ack; Unavailable ("try again": Retry, a model or JetStream not answering,
  even after retry_js's retries) -> nak(its delay); BudgetExceeded -> ack (the work is over);
  BadInput (a body that does not decode, or names nothing) and other PasErrors -> term + ERROR
  comms entry; anything else (a bug) -> nak(1 s).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.micro.request import Request

from pas.base.errors import (
    BadInput,
    BadRequest,
    BudgetExceeded,
    PasError,
    PayloadTooLarge,
    Retry,
    Unavailable,
    is_bad_input,
)
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime.comms import Entry
from pas.runtime.store import RunStore
from pas.transport import tracing
from pas.transport.natscompat import reply_of
from pas.transport.pull import PullFeed
from pas.transport.retry import transient

if TYPE_CHECKING:
    from pas.runtime.comms import CommsLog
    from pas.transport.bus import Bus

log = logging.getLogger("pas.runtime.service")

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
    replies: bool = True,
) -> Callable[[Request], Awaitable[None]]:
    """Make a nats.micro handler. `on_error` records an error in the endpoint's STATS. replies=False: the
    messages are reports, answered neither with a result nor with an error."""

    async def handle(req: Request) -> None:
        call = Call(subject=req.subject, headers=dict(req.headers or {}), reply=reply_of(req) if replies else "")
        try:
            body = decode_body(req.data, req_type)
            with tracing.hop(req.headers, handler, req.subject, body, "server"):
                result = await handler(body, call)
            if call.reply:
                await req.respond(wire.encode(result) if result is not None else b"{}")
            return
        except PasError as e:
            err = e
        except Exception as e:
            got = outcome_of(e)
            if isinstance(got, PasError):  # JetStream still unavailable after the retries: try again later
                log.warning("handler %s: %s", req.subject, got.message)
                err = got
            else:
                log.exception("handler %s failed", req.subject)
                err = PasError(f"internal error: {e!r}")
        on_error(f"{err.code} {err.message}"[:500])
        if is_bad_input(err):
            log.warning("bad input on %s: %s (%d bytes: %r)", req.subject, err.message, len(req.data), req.data[:200])
            if on_bad_input is not None:
                try:
                    await on_bad_input(req.subject, req.data, err)
                except Exception:
                    log.exception("logging bad input failed")
        if call.reply:
            try:
                await req.respond_error(str(err.code), err.message[:1000], data=error_body(err))
            except Exception:
                log.exception("could not send error reply on %s", req.subject)

    return handle


@dataclass
class WorkCtx:
    """What a work handler gets besides its item: whose run, which attempt, the message headers
    (trace context travels there: `traceparent`), a keepalive, and typed ways to publish and log."""

    run_id: str
    attempt: int
    """JetStream's delivery count: 1 the first time, more on a redelivery (a crash, a nak)."""
    headers: dict[str, str]
    subject: str
    agent_id: str
    bus: Bus
    comms: CommsLog
    store: RunStore
    """The run records (pas.runtime.store), as this agent writes them."""
    _msg: Msg | None = field(default=None, repr=False)
    """The work item (None: a walk handed up by request, pas.runtime.runs.note_child_done, has none to keep alive)."""

    @property
    def redelivered(self) -> bool:
        """Only a redelivery can find its own earlier work in KV: first deliveries skip the reads."""
        return self.attempt > 1

    async def in_progress(self) -> None:
        """Push the ack deadline back (the loop already does this every ack_wait/3)."""
        if self._msg is not None:
            await self._msg.in_progress()

    async def emit(self, subject: str, obj: Any, msg_id: str | None = None) -> None:
        """Something others act on: stored and acknowledged before the handler goes on;
        msg_id makes a re-emit (a redelivery) a no-op within the duplicate window."""
        await self.bus.publish_js(subject, obj, msg_id=msg_id)

    async def log(self, to: str, kind: str, text: str, status: str = "", *, sender: str | None = None,
                  **kw: Any) -> None:
        """A comms log entry of this run, from this agent (or `sender`, for a record it owns)."""
        await self.comms.log(Entry(sender or self.agent_id, to, kind, text, self.run_id or None, status, **kw))


WorkHandler = Callable[[Any, WorkCtx], Awaitable[None]]
Settle = Literal["ack", "nak", "term"]


def settle(e: BaseException | None) -> tuple[Settle, float]:
    """A handler's outcome -> what happens to its message (and the nak delay): the one mapping."""
    if e is None or isinstance(e, BudgetExceeded):
        return "ack", 0.0
    if isinstance(e, Unavailable):
        return "nak", e.delay_s
    if isinstance(e, PasError):
        return "term", 0.0
    return "nak", 1.0


def outcome_of(e: Exception) -> Exception:
    """JetStream still unavailable after retry_js's retries is an Unavailable (try again later), for
    a work item as for a request (endpoint()); anything else stays what it is."""
    if transient(e):
        return Unavailable(f"JetStream unavailable, try again: {type(e).__name__}: {e}"[:500])
    return e


def task_status(e: BaseException) -> str:
    """A task's terminal status from the exception that ended it: the other half of the mapping."""
    if isinstance(e, BudgetExceeded):
        return "budget_exceeded"
    return "failed"


@dataclass(frozen=True)
class WorkLoopOptions:
    """How one agent runs a work loop: who it is (its bus, comms log, run store, id) and its limits; what
    the loop pulls (stream, durable consumer, item type, handler) is given beside it."""

    bus: Bus
    comms: CommsLog
    agent_id: str
    concurrency: int
    ack_wait_s: float
    store: RunStore | None = None  # default: a store of its own over bus (a loop outside an agent)
    spawn: Callable[[Awaitable[Any]], asyncio.Task[Any]] | None = None  # default: bus.spawn
    on_bad_input: OnBadInput | None = None
    name: str = ""  # default: the durable's name
    ack: Callable[[Msg], Awaitable[Any]] | None = None  # default: Msg.ack
    fetch_timeout_s: float = 2.0


class Held:
    """A work item whose handler runs in this loop, and its newest delivery: the server redelivers an
    item whose in-progress marks did not reach it in time (an event loop stalled past the ack deadline:
    measured 1.5-2.5 s on a loaded machine while litellm imports in a thread), and that redelivery
    comes back to this loop while the first handler still runs. It is not run a second time (a plan
    made twice, test_replay's --rebuild): it replaces the delivery the handler marks and settles. One
    that was already on its way when the handler finished is acknowledged again, not run (SETTLED)."""

    __slots__ = ("msg",)

    def __init__(self, msg: Msg) -> None:
        self.msg = msg


SETTLED = 1024
"""How many of its last settled (acked or terminated) items a work loop remembers, by stream sequence."""


def stream_seq(m: Msg) -> int | None:
    """A JetStream delivery's stream sequence (the same for every redelivery of it); None otherwise."""
    return m.metadata.sequence.stream if m.reply else None


class WorkLoop:
    """Take work from a durable pull consumer and run handlers concurrently (at most `concurrency`),
    with pull requests kept outstanding for the free slots (pas.transport.pull.PullFeed), never for more.

    Outcomes are settled by settle() (see the module docstring). While a handler runs,
    the message is marked in-progress every ack_wait/3 so the deadline only hits dead agents; a
    redelivery that comes back while its handler still runs joins that handler (Held).
    Handlers retry their own JetStream writes (pas.transport.retry.retry_js); the ack is retried the same way.
    """

    def __init__(self, js: JetStreamContext, stream: str, durable: str, typ: type[Any], handler: WorkHandler,
                 opts: WorkLoopOptions) -> None:
        self.js, self.stream, self.durable, self.typ = js, stream, durable, typ
        self.handler = handler
        self.bus, self.comms, self.agent_id = opts.bus, opts.comms, opts.agent_id
        self.store = opts.store or RunStore(opts.bus)
        self.concurrency = max(1, opts.concurrency)
        self.ack_wait_s = opts.ack_wait_s
        self.spawn = opts.spawn or opts.bus.spawn
        self.on_bad_input = opts.on_bad_input
        self.name = opts.name or durable
        self.ack = opts.ack or (lambda m: m.ack())  # pas.transport.bus.Bus.ack: confirmed, retried through elections
        # A pull request lives at the consumer's leader, reached through our server: if either dies,
        # the request is lost silently; its expiry (this) bounds how long this loop waits on a dead one.
        self.fetch_timeout_s = opts.fetch_timeout_s
        self.in_flight = 0
        self.handled = 0
        self.errors = 0
        self._slot = asyncio.Condition()
        self._task: asyncio.Task[Any] | None = None
        self._running: set[asyncio.Task[Any]] = set()
        self._held: dict[int, Held] = {}  # stream sequence -> the item a handler here runs
        self._settled: dict[int, None] = {}  # stream sequences of the last SETTLED items acked or terminated here
        self._feed: PullFeed | None = None

    def start(self) -> None:
        self._task = self.spawn(self._run())

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        # Cancel until the loop has ended: on Python 3.11 a cancel can be lost inside nats-py
        # (next_msg's inner wait_for returns a reply that arrived at the same moment), and the loop
        # would run on, holding its agent's stop for the stack's whole 15 s stop timeout.
        while self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=0.2)
        if self._running:
            await asyncio.wait(self._running, timeout=drain_timeout_s)
        if self._running:  # unacked: redelivered to another agent, or to this one's next start
            log.warning("%s: stopping with %d work item(s) unfinished after %.0fs of draining; they will be "
                        "redelivered", self.name, len(self._running), drain_timeout_s)

    async def _run(self) -> None:
        """Pull requests stay outstanding (pas.transport.pull.PullFeed): a delivery starts its handler from the
        inbox callback, a finished handler asks for more when half the free slots are unasked for."""
        self._feed = PullFeed(self.bus.nc, S.js_next(self.stream, self.durable), deliver=self._start, free=self._free,
                              expires_s=self.fetch_timeout_s, name=self.name)
        try:
            await self._feed.run()
        finally:
            self._feed = None

    def _joined(self, m: Msg) -> bool:
        """A redelivery of an item a handler here runs (it answers for it) or has just settled (acked
        again): not run a second time (Held)."""
        seq = stream_seq(m)
        if seq is None:
            return False
        held = self._held.get(seq)
        if held is not None:
            held.msg = m
            self.spawn(self._mark(m))
        elif seq in self._settled:
            self.spawn(self.ack(m))
        else:
            return False
        log.warning("%s: %s (stream seq %d) redelivered while its handler %s here (in-progress marks late: "
                    "the event loop stalled?); not run twice", self.name, m.subject, seq,
                    "still runs" if held else "has just settled it")
        return True

    async def _ack_finished(self, m: Msg) -> None:
        """Acknowledge an item whose handler ended here (a subclass may ask for the next item with it)."""
        await self.ack(m)

    def _free(self) -> int:
        return self.concurrency - self.in_flight

    def _start(self, m: Msg) -> None:
        if self._joined(m):
            if self._feed is not None:
                self.spawn(self._feed.top_up())  # the delivery took no slot: ask for it again
            return
        self.in_flight += 1
        t = self.spawn(self._handle(m))
        self._running.add(t)
        t.add_done_callback(self._running.discard)

    def _keep(self, held: Held) -> Callable[[], None]:
        """Mark the item in progress every ack_wait/3 for as long as its handler runs; returns
        the stopper. Until the first mark is due this is a timer, not a task: most handlers end
        well before it."""
        period = max(0.2, self.ack_wait_s / 3)
        task: asyncio.Task[Any] | None = None

        def due() -> None:
            nonlocal task
            task = self.spawn(self._keepalive(held, period))

        timer = asyncio.get_running_loop().call_later(period, due)

        def stop() -> None:
            timer.cancel()
            if task is not None:
                task.cancel()

        return stop

    async def _keepalive(self, held: Held, period: float) -> None:
        """A failed mark (connection moving to another node) is logged and the next one tried: a
        keepalive that stopped would let the work be redelivered to a second agent while this one
        still runs it."""
        while True:
            await self._mark(held.msg, f" failed; trying again in {period:.1f}s")
            await asyncio.sleep(period)

    async def _mark(self, m: Msg, then: str = " failed") -> None:
        try:
            await m.in_progress()
        except Exception as e:
            log.warning("%s: in-progress mark on %s%s (%r)", self.name, m.subject, then, e)

    def _ctx(self, m: Msg, body: Any) -> WorkCtx:
        md = m.metadata if m.reply else None
        return WorkCtx(run_id=getattr(body, "run_id", "") or "", attempt=md.num_delivered if md else 1,
                       headers=dict(m.headers or {}), subject=m.subject, agent_id=self.agent_id, bus=self.bus,
                       comms=self.comms, store=self.store, _msg=m)

    def _decode(self, data: bytes) -> Any:
        """The work item, or BadInput: a body that does not decode never will (terminated, logged)."""
        try:
            return decode_body(data, self.typ)
        except PasError as e:
            raise BadInput(e.message, e.detail) from None

    async def _handle(self, m: Msg) -> None:
        held, seq = Held(m), stream_seq(m)
        if seq is not None:
            self._held[seq] = held
        stop_keeping = self._keep(held)
        try:
            outcome: BaseException | None = None
            try:
                body = self._decode(m.data)
                with tracing.hop(m.headers, self.handler, m.subject, body, msg=m):
                    await self.handler(body, self._ctx(m, body))  # the one place a work handler runs
                self.handled += 1
            except asyncio.CancelledError:
                raise
            except Exception as e:
                outcome = outcome_of(e)
            how, delay = settle(outcome)
            m = held.msg  # the newest delivery (Held)
            if how != "nak" and seq is not None:
                self._settled[seq] = None
                if len(self._settled) > SETTLED:
                    del self._settled[next(iter(self._settled))]
            if how == "ack":
                await self._ack_finished(m)
            elif how == "nak":
                if isinstance(outcome, Unavailable) and not isinstance(outcome, Retry):
                    self.errors += 1
                    log.warning("%s: %s on %s; redelivered in %.1f s", self.name, outcome.message, m.subject, delay)
                elif not isinstance(outcome, Retry):
                    self.errors += 1
                    log.error("%s: handler failed on %s; will be redelivered", self.name, m.subject,
                              exc_info=outcome)
                await m.nak(delay=delay)
            else:
                assert isinstance(outcome, PasError)
                self.errors += 1
                log.warning("%s: work item on %s dropped for good: %s", self.name, m.subject, outcome.message)
                if self.on_bad_input:
                    await self.on_bad_input(m.subject, m.data, outcome)
                await m.term()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("%s: could not settle message on %s", self.name, m.subject)
        finally:
            stop_keeping()
            if seq is not None:
                self._held.pop(seq, None)
            async with self._slot:
                self.in_flight -= 1
                self._slot.notify_all()
            if self._feed is not None:
                await self._feed.top_up()
