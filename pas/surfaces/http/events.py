"""Live events for the HMI: a few NATS subscriptions fanned out to every SSE client.

    pas.hb.*                      -> "beats"  {agent: latest beat}
    pas.alert.agent.*             -> "alert"  (dead / recovered, from the heartbeat monitor)
    pas.run.<run>.{status,lane,job,task}.* -> "runs" {t, items: [{kind, run_id, data} | ["task", run_id, *TASK_FIELDS]]}
    PAS_COMMS (pas.comms.>)       -> "comms"  {t, entries: [CommsEntry + seq], upto?}
    pas.ctl.*.model_changed       -> "model"  (the change an agent announces after set_model)

Nothing is lost between the bus and the page, and neither browsers nor the event rate make the hub
costly (issue 22):
- what arrives after a quiet spell is flushed at once, then at most every flush_s: the hub encodes
  what arrived once, the latest state of each run, lane, job and task that changed (coalesced), the
  comms entries with their PAS_COMMS sequence, the beats (at most once every BEATS_S: the page shows
  their age to the second). That one bytes object is queued for every client: the hub's work does
  not grow with the number of browsers, and the queued chunks are shared. Idle, the hub wakes for
  nothing (no timer); busy, every flush is one render of each page, so flush_s paces the pages too;
- a client more than QUEUE_MAX chunks behind is sent no more chunks; its next read is a catch-up:
  the current state of every object that changed since what it was last sent (from the hub's
  latest states, bounded by the live objects, not by the events), and `upto`, the last comms
  sequence read; the page fills the hole in the comms from PAS_COMMS by sequence
  (GET /api/comms?start_seq=). Never a silent gap.
Each batch carries `t`, when the hub received the oldest item in it (ms since the epoch), so the page
can say how far behind the bus it is.

One subscription per kind for the whole adapter, whatever the number of browsers. Runs and comms
are followed only while at least one browser listens: with none, a job costs the adapter no message.
Every body is validated (pas.protocol.wire) before it is forwarded: a bad one is skipped with a WARNING.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, get_args

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime.comms import check as check_entry
from pas.transport.streams import ReadOptions, read_raw

log = logging.getLogger("pas.surfaces.http.events")

RUN_KINDS = {"status", "lane", "job", "task"}
QUEUE_MAX = 10  # flushes (1 s at 0.1 s) a client may fall behind before it is sent a catch-up instead
BEATS_S = 1.0  # beats are sent at most this often
MISC_BACKLOG = 1000   # alerts and model changes (rare) kept per client
LIVE_TEXT = 300  # characters of a task's texts sent live (the page shows one line; a run's detail has more)
_RANK = {"queued": 0, "running": 1, "waiting_approval": 1.5}


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


def _rank(status: str) -> float:
    return _RANK.get(status, 2)


@dataclass(frozen=True)
class State:
    """The latest known state of one run, lane, job or task, encoded once for every client."""

    status: str
    message: str
    text: str  # {"kind":..,"run_id":..,"data":..} as JSON; a task's: its row (_task_row)

    def replaces(self, old: State) -> bool:
        """Records only move forward (queued -> running -> terminal); an approval moves a run
        from waiting_approval back to running."""
        return _rank(self.status) >= _rank(old.status) or self.message == "plan approved"


# What one row of the run view shows, as one JSON array per task state: a job of 2,000 tasks sends
# 6,000 states to every page, which parses each (a run's detail, GET /api/runs/<id>, has every field
# in full). ["task", run_id, *TASK_FIELDS], the status as its index in TASK_STATES; "text" is what the
# row's last cell shows, "hover" its tooltip. The page is told both tuples in "hello".
TASK_FIELDS = ("task_id", "lane", "status", "programmer", "attempts", "started_at", "finished_at", "tokens",
               "cost_usd", "text", "hover")
TASK_STATES: tuple[str, ...] = get_args(wire.TaskStatusValue)
_STATE_CODE = {s: i for i, s in enumerate(TASK_STATES)}
_encode_row = msgspec.json.Encoder().encode


def _task_row(run_id: str, t: wire.TaskRecord) -> str:
    text = t.error or t.command or t.instruction or ""
    hover = t.error or t.output[-LIVE_TEXT:] or t.command or t.instruction or ""
    return _encode_row(("task", run_id, t.task_id, t.lane, _STATE_CODE[t.status], t.programmer, t.attempts,
                        t.started_at, t.finished_at, t.tokens, t.cost_usd, text[:LIVE_TEXT], hover[:LIVE_TEXT])).decode()


@dataclass(frozen=True)
class Chunk:
    """What one flush sends: encoded once, the same bytes object queued for every client."""

    version: int  # the hub's flush number
    t: float  # hub receive time (ms) of the oldest item in it
    data: bytes


@dataclass(eq=False)
class SseClient:
    queue: deque[Chunk] = field(default_factory=deque)  # shared chunks not yet sent (<= QUEUE_MAX)
    sent: int = 0  # the last hub version this client was sent (or, on connecting, had no need of)
    behind_t: float | None = None  # its queue overflowed (t of the oldest lost chunk): catch it up
    misc: deque[str] = field(default_factory=lambda: deque(maxlen=MISC_BACKLOG))
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    catch_ups: int = 0  # times it fell QUEUE_MAX flushes behind and got the current state instead
    max_catch_up: int = 0  # most run states one catch-up carried (the bound: the live objects)


@dataclass
class HubStats:
    run_events: int = 0  # run events received from the bus
    run_states_sent: int = 0  # coalesced states encoded into chunks and catch-ups (once for all clients)
    chunks: int = 0  # flushes encoded
    comms: int = 0
    skipped: int = 0  # bodies that did not validate
    held_ms: float = 0.0  # summed over chunks: from the oldest item's arrival to its flush (pas bench)
    held_ms_max: float = 0.0


class EventHub:
    def __init__(self, nc: Client, flush_s: float = 0.1, ping_s: float = 10.0) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.flush_s = flush_s
        self.ping_s = ping_s
        self.clients: set[SseClient] = set()
        self.stats = HubStats()
        self._beats: dict[str, Any] = {}  # beats since the last flush
        self._all_beats: dict[str, Any] = {}  # the latest beat of every agent (for a catch-up)
        self._runs: dict[tuple[str, ...], State] = {}  # states since the last flush
        # The latest state of every object of every run while browsers listen, with the version
        # (flush) it changed in: what a client that fell behind is sent instead of what it missed.
        self._latest: dict[str, dict[tuple[str, ...], tuple[int, State]]] = {}
        self._ended: dict[str, int] = {}  # run -> the version its status went terminal
        self.version = 0
        self._comms: list[str] = []
        self._misc: list[str] = []
        self._t0: float | None = None
        self._wake = asyncio.Event()  # something arrived: the flusher flushes it (no sooner than flush_s after the last)
        self._beats_at = 0.0  # monotonic time beats were last sent
        self._subs: list[Any] = []
        self.live: list[Any] = []  # what follows runs and comms, held while a browser listens
        self._comms_stop: asyncio.Event | None = None
        self._comms_next = 0  # the PAS_COMMS sequence the reader goes on from
        self._follow_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flusher: asyncio.Task[Any] | None = None
        self.closed = False

    async def start(self) -> None:
        self._subs = [
            await self.nc.subscribe(S.HEARTBEAT_ALL, cb=self._on_beat),
            await self.nc.subscribe(S.alert_agent("*"), cb=self._on_alert),
            await self.nc.subscribe(S.ctl("*", "model_changed"), cb=self._on_model),
        ]
        self._flusher = asyncio.ensure_future(self._flush_loop())

    async def follow(self) -> None:
        """Hold the runs subscription and the PAS_COMMS reader while there are browsers, drop them
        when the last one leaves."""
        async with self._follow_lock:
            if self.clients and not self.live and not self.closed:
                runs = await self.nc.subscribe(S.EVENTS_ALL, cb=self._on_run)
                self._comms_stop = asyncio.Event()
                comms = await self._comms_reader(self._comms_stop)
                self.live = [runs, comms]
                await self.nc.flush()  # live at the server before the browser hears "hello"
            elif (not self.clients or self.closed) and self.live:
                (runs, comms), self.live = self.live, []
                if self._comms_stop is not None:
                    self._comms_stop.set()
                with contextlib.suppress(Exception):
                    await runs.unsubscribe()
                comms.cancel()
                await asyncio.gather(comms, return_exceptions=True)
                self._latest.clear()
                self._ended.clear()

    async def _comms_reader(self, stop: asyncio.Event) -> asyncio.Task[Any]:
        """A task tailing PAS_COMMS from its next sequence on (entries stored from now)."""
        try:
            info = await self.js.stream_info(S.STREAM_COMMS)
            self._comms_next = (info.state.last_seq or 0) + 1
        except Exception as e:
            log.warning("no comms for the HMI: %s %r", S.STREAM_COMMS, e)
            return asyncio.ensure_future(stop.wait())

        async def tail() -> None:
            while not stop.is_set():
                try:
                    async for m in read_raw(self.js, S.STREAM_COMMS, S.COMMS_ALL,
                                            ReadOptions(follow=True, start_seq=self._comms_next, stop=stop, inactive_s=10.0)):
                        self._on_comms(m.seq, m.subject, m.data)
                    return
                except Exception as e:  # a leader election, a restart: read on from where we were
                    log.warning("reading %s for the HMI: %r; again", S.STREAM_COMMS, e)
                    await asyncio.sleep(1.0)

        return asyncio.ensure_future(tail())

    async def close(self) -> None:
        self.closed = True
        if self._flusher:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.follow()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for c in list(self.clients):
            c.closed = True
            c.wake.set()

    # ---- from the bus ----------------------------------------------------------------------
    def _received(self) -> None:
        if self._t0 is None:
            self._t0 = time.time() * 1000
        self._wake.set()

    def _misc_event(self, event: str, data: Any) -> None:
        if self.clients:
            self._received()
            self._misc.append(sse(event, data))

    @staticmethod
    def _json(msg: Msg) -> Any:
        try:
            return json.loads(msg.data)
        except ValueError:
            return None

    async def _on_beat(self, msg: Msg) -> None:
        d = self._json(msg)
        if isinstance(d, dict) and isinstance(d.get("agent"), str):
            beat = {k: d.get(k) for k in ("ts", "status", "run_id", "message")}
            self._beats[d["agent"]] = self._all_beats[d["agent"]] = beat
            self._wake.set()

    async def _on_alert(self, msg: Msg) -> None:
        d = self._json(msg)
        if isinstance(d, dict):
            self._misc_event("alert", d)

    async def _on_model(self, msg: Msg) -> None:
        d = self._json(msg)
        if isinstance(d, dict):
            self._misc_event("model", d)

    async def _on_run(self, msg: Msg) -> None:
        ev = S.parse_run(msg.subject)
        if ev is None or ev.kind not in RUN_KINDS:
            return  # done.* and cancel: internal hand-offs, already visible as status changes
        self.stats.run_events += 1
        if not msg.data:
            return  # a record's deletion
        try:  # a task state (most events) straight to its record: no second parse of the subject
            body: Any = (wire.decode(msg.data, wire.TaskRecord) if ev.kind == "task"
                         else wire.run_event(msg.subject, msg.data))
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            self.stats.skipped += 1
            log.warning("HMI skips a bad %s event on %s: %s", ev.kind, msg.subject, e)
            return
        if body is None:
            return
        if isinstance(body, wire.TaskRecord):
            text = _task_row(ev.run_id, body)
        else:
            text = f'{{"kind":{json.dumps(ev.kind)},"run_id":{json.dumps(ev.run_id)},"data":{wire.encode(body).decode()}}}'
        state = State(body.status, getattr(body, "message", ""), text)
        key = (ev.run_id, ev.kind, *ev.rest)
        old = self._runs.get(key)
        if old is None or state.replaces(old):
            self._runs[key] = state
        self._received()

    def _on_comms(self, seq: int, subject: str, data: bytes) -> None:
        self._comms_next = max(self._comms_next, seq + 1)
        try:
            e = wire.decode(data, wire.CommsEntry)
            check_entry(subject, e)  # the sender NATS checked (the subject) is the one it names
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as err:
            self.stats.skipped += 1
            log.warning("HMI skips bad comms entry %s #%d: %s", S.STREAM_COMMS, seq, err)
            return
        self.stats.comms += 1
        e.metadata = {}  # the log shows none of it; pas log and the timeline do
        self._comms.append(wire.encode(e).decode()[:-1] + f',"seq":{seq}}}')
        self._received()

    # ---- to the browsers -------------------------------------------------------------------
    def flush(self) -> None:
        """Encode what arrived since the last flush once, and queue that one chunk for every client:
        the hub's work per flush does not grow with the number of browsers. A client already
        QUEUE_MAX chunks behind gets no more chunks; its next read is a catch-up instead."""
        beats_due = bool(self._beats) and time.monotonic() - self._beats_at >= BEATS_S
        if not (self._runs or self._comms or self._misc or beats_due):
            if self._beats:
                self._wake.set()  # held back: looked at again after the next flush_s
            return
        runs, comms, misc, t0 = self._runs, self._comms, self._misc, self._t0
        self._runs, self._comms, self._misc, self._t0 = {}, [], [], None
        beats: dict[str, Any] = {}
        if beats_due:
            beats, self._beats, self._beats_at = self._beats, {}, time.monotonic()
        elif self._beats:
            self._wake.set()
        self.version += 1
        changed = self._remember(runs)
        t = t0 if t0 is not None else time.time() * 1000
        data = self._encode(t, changed, comms, beats)
        chunk = Chunk(self.version, t, data) if data else None
        self.stats.chunks += 1
        if t0 is not None:
            held = time.time() * 1000 - t0
            self.stats.held_ms += held
            self.stats.held_ms_max = max(self.stats.held_ms_max, held)
        self.stats.run_states_sent += len(changed)
        for c in self.clients:
            c.misc.extend(misc)
            if chunk is not None and c.behind_t is None:
                if len(c.queue) >= QUEUE_MAX:  # the page reads too slowly: drop, catch up later
                    c.behind_t = c.queue[0].t
                    c.queue.clear()
                else:
                    c.queue.append(chunk)
            c.wake.set()
        self._prune()

    def _remember(self, runs: dict[tuple[str, ...], State]) -> list[State]:
        """Record the new states in _latest; the ones that move an object forward."""
        changed = []
        for key, state in runs.items():
            states = self._latest.setdefault(key[0], {})
            old = states.get(key)
            if old is None or state.replaces(old[1]):
                states[key] = (self.version, state)
                changed.append(state)
                if key[1] == "status" and _rank(state.status) >= 2:
                    self._ended[key[0]] = self.version
        return changed

    def _prune(self) -> None:
        """Forget the runs that ended before what every client has been sent."""
        if not self._ended:
            return
        upto = min((c.sent for c in self.clients), default=self.version)
        for run in [r for r, v in self._ended.items() if v <= upto]:
            self._ended.pop(run)
            self._latest.pop(run, None)

    @staticmethod
    def _encode(t: float, states: list[State], comms: list[str], beats: dict[str, Any],
                upto: int | None = None) -> bytes:
        """SSE text of a batch: runs (t, items), comms (t, entries[, upto]: the last sequence the hub
        has read, so a page can fill a hole at the end too) and beats."""
        out = []
        if states:
            out.append(f'event: runs\ndata: {{"t":{t},"items":[{",".join(s.text for s in states)}]}}\n\n')
        if comms or upto is not None:
            tail = "" if upto is None else f',"upto":{upto}'
            out.append(f'event: comms\ndata: {{"t":{t},"entries":[{",".join(comms)}]{tail}}}\n\n')
        if beats:
            out.append(sse("beats", beats))
        return "".join(out).encode()

    async def _flush_loop(self) -> None:
        """Flush as soon as something arrives, then let flush_s pass before the next flush: the first
        event after a quiet spell waits for nothing, a busy stream is coalesced into flush_s batches."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            self.flush()
            await asyncio.sleep(self.flush_s)

    def _catch_up(self, c: SseClient, t: float) -> bytes:
        """The current state of every object that changed since what c was last sent; comms since
        then are not resent: the page reads the hole back from PAS_COMMS by sequence."""
        states = [s for run in self._latest.values() for v, s in run.values() if v > c.sent]
        c.catch_ups += 1
        c.max_catch_up = max(c.max_catch_up, len(states))
        self.stats.run_states_sent += len(states)
        return self._encode(t, states, [], dict(self._all_beats), upto=self._comms_next - 1)

    def _drain(self, c: SseClient) -> bytes:
        """Everything the client has not been sent yet: its queued chunks as they are (shared), or
        one catch-up."""
        out: list[bytes] = ["".join(c.misc).encode()] if c.misc else []
        c.misc.clear()
        if c.behind_t is not None:
            out.append(self._catch_up(c, c.behind_t))
            c.behind_t = None
            c.sent = self.version
        elif c.queue:
            out.extend(ch.data for ch in c.queue)
            c.sent = c.queue[-1].version
            c.queue.clear()
        return out[0] if len(out) == 1 else b"".join(out)

    async def stream(self, hello: dict[str, Any]) -> AsyncIterator[bytes]:
        """The text/event-stream of one client; ends when the adapter stops. A client that reads
        slowly makes this generator wait in its yield; meanwhile its queue fills, then it is caught up."""
        c = SseClient(sent=self.version)  # what happened before, it reads from /api after "hello"
        self.clients.add(c)
        try:
            # Shielded: a browser that leaves at once cancels this generator, and a NATS flush cancelled
            # mid-way makes nats-py drop what it was reading (InvalidStateError on the PONG): other
            # requests' replies on the adapter's connection were lost (504).
            await asyncio.shield(self.follow())
            yield b"retry: 1000\n\n"  # EventSource reconnects after 1 s, never faster
            yield sse("hello", {**hello, "now": time.time() * 1000}).encode()
            while not (self.closed or c.closed):
                try:
                    await asyncio.wait_for(c.wake.wait(), self.ping_s)
                except TimeoutError:
                    yield b": ping\n\n"
                    continue
                c.wake.clear()
                if c.closed:
                    return
                data = self._drain(c)
                if data:
                    yield data
        finally:
            self.clients.discard(c)
            if not self.clients:  # (a task: a generator being closed may not wait)
                t = asyncio.ensure_future(self.follow())
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
