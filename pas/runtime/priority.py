"""The programmer pool's priority bands: one JetStream work-queue subject and durable consumer per
band (`pas.work.prog.<band>`, consumer `prog-<band>`, bands 20, 10, 5, 1), pulled highest first.

Why subjects per band, not NATS 2.11+ consumer priority groups: priority groups (`overflow`,
`pinned_client`, `prioritized`) choose which *client* gets the next message of one consumer; the
messages themselves still come out in stream order. What PAS needs is the opposite: which *message*
(task) goes next, whatever programmer asks. Separate subjects give that with nothing but plain pull
consumers, each band's backlog is its consumer's pending count, and every band keeps the pool's
at-least-once redelivery (ack wait, in-progress marks).

The rule, per programmer, each time it has a free slot:
1. try the bands from the highest down with a no-wait pull, take the first message there is;
2. aging: after `pool.priority_burst` tasks in a row from one band, first try the bands below it
   (a different one first each time), so waiting low-priority work gets a task through at least
   once every burst+1 tasks and is never starved by a stream of high-priority work.

Waking without a herd. The programmers of one process (one connection) share a `Bands`: ONE core
subscription to `pas.work.prog.*` for all of them, what is known of each band, and the queue of
idle programmers. A band is skipped while it is known empty: a pull sent at time t found it empty
(a 404, or a task whose metadata says 0 pending behind it) and no publish to it was seen since,
for at most 0.5 s (redeliveries publish nothing). A publish marks its band and wakes ONE idle
programmer of the process (the one idle longest), which pulls; a pull that leaves a band marked
(more pending, or a publish seen while it was on its way) wakes one more. A programmer whose slot
frees pulls at once only the bands not known empty (usually none), and never goes idle while a band
is marked. A task thus costs one pull in a process with idle programmers, instead of one per
programmer; the 0.5 s recheck is made by whichever idle programmer comes first, not by each.
Programmers in K processes make at most K pulls per task (each process wakes one of its own).

A backlog costs no pulls at all. A programmer whose slots are all busy acknowledges a finished task with
JetStream's AckNext (`+NXT` and a pull request, on the ack subject, answered on the band's inbox) when the
next pick would be from the same band anyway: the ack and the pull are one message, and the answer
is read as the next pull's (a task, or a 404 that marks the band empty). No answer within the fetch
timeout: the ack is sent again, plainly, and the loop pulls as usual.

A publish is seen before it can be pulled. nats-server hands the core copy of a publish to the
subscribers at once, and only then stores it in the stream and tells the consumer, each step in a
goroutine of its own; a no-wait pull answers 404 from the consumer's pending count. So a pull that a
publish woke can reach the consumer first and find nothing (about 1 in 150 under CPU load, measured),
and the band would then be believed empty until the recheck. A pull of a *marked* band therefore
waits at the server for up to SETTLE_S (no_wait with expires: the server answers as soon as there is
a message, else 408 at the expiry); a recheck of an unmarked band is a plain no-wait pull. While
such a pull waits on a band, a publish to it wakes no other loop of the process: the waiting pull
gets that message, or comes back with the band marked and its loop pulls again (else, with
programmers in two processes, every publish during a wait cost one more pull).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from pas.runtime.service import WorkLoop
from pas.transport.pull import Puller, Status, request_body

log = logging.getLogger("pas.runtime.priority")
RECHECK_S = 0.5
"""How long a band found empty is believed empty without a publish to it (redeliveries publish nothing)."""
SETTLE_S = 1.0
"""How long a pull of a marked band waits at the server for the message the mark promises (the
publish seen may not be stored and counted by the consumer yet); capped at half the fetch timeout."""


class Bands:
    """What the pool's loops on one connection know about the bands, and the idle ones waiting.

    Times are time.monotonic(). A band is *marked* when a publish to it (or work pending in it) was
    seen after the last pull that found it empty was sent: someone should pull it. Stamping "empty"
    with the pull's send time, not its answer's, keeps a publish the server took after that pull
    marked, whatever order this process handles the two messages in."""

    def __init__(self, subjects: list[str], wake_subject: str) -> None:
        self.band_of = {s: i for i, s in enumerate(subjects)}
        self.wake_subject = wake_subject
        self.seen_at = [0.0] * len(subjects)  # last publish seen / work reported pending, per band
        self.empty_at = [0.0] * len(subjects)  # when the last pull that found the band empty was sent
        self.settling = [0] * len(subjects)  # pulls of this process waiting at the server on the band (SETTLE_S)
        self.idle: dict[asyncio.Event, None] = {}  # idle loops' wake-ups, the longest idle first
        self.users = 0
        self._sub: Subscription | None = None
        self._lock = asyncio.Lock()

    async def join(self, nc: Client) -> None:
        async with self._lock:
            if self._sub is None:
                self._sub = await nc.subscribe(self.wake_subject, cb=self._on_publish)
            self.users += 1

    async def leave(self) -> None:
        async with self._lock:
            self.users -= 1
            if self.users > 0 or self._sub is None:
                return
            sub, self._sub = self._sub, None
        try:
            await sub.unsubscribe()
        except Exception:
            pass

    async def _on_publish(self, msg: Msg) -> None:
        i = self.band_of.get(msg.subject)
        if i is not None:
            self.seen_at[i] = time.monotonic()
            if not self.settling[i]:  # (a pull waiting on the band answers for it)
                self.wake_one()

    def wake_one(self) -> None:
        """Wake the loop idle longest, if any (no message: they share this process)."""
        for ev in self.idle:
            del self.idle[ev]
            ev.set()
            return

    def marked(self, i: int) -> bool:
        return self.seen_at[i] > self.empty_at[i]

    def any_marked(self) -> bool:
        return any(self.marked(i) for i in range(len(self.seen_at)))

    def known_empty(self, i: int, now: float) -> bool:
        return not self.marked(i) and now - self.empty_at[i] < RECHECK_S

    def found(self, i: int, sent_at: float, m: Msg | None) -> None:
        """Record what a pull of band i sent at sent_at found (None: nothing)."""
        pending = m.metadata.num_pending if m is not None else 0
        if pending:
            self.seen_at[i] = max(self.seen_at[i], time.monotonic())
        else:
            self.empty_at[i] = max(self.empty_at[i], sent_at)


def shared_bands(local: dict[Any, Any], subjects: list[str], wake_subject: str) -> Bands:
    """The Bands of these band subjects in this process (`local`: pas.runtime.agent.Process.local, shared by
    a process's agents, each with a connection of its own): one per process and pool, whichever connection
    subscribes."""
    key = ("bands", wake_subject, *subjects)
    if key not in local:
        local[key] = Bands(subjects, wake_subject)
    bands: Bands = local[key]
    return bands


class BandedWorkLoop(WorkLoop):
    """A WorkLoop over several durable consumers of one stream, highest priority first."""

    def __init__(self, nc: Client, durables: list[str], subjects: list[str], wake_subject: str, burst: int,
                 shared: dict[Any, Any], **kw: Any) -> None:
        super().__init__(durable=durables[0], **kw)
        self.nc = nc
        self.durables = durables
        self.bands = shared_bands(shared, subjects, wake_subject)
        self.burst = max(1, burst)
        self.streak_band: int | None = None  # index of the band the current streak is from
        self.streak = 0
        self.turn = 0  # which lower band gets the next aging pick first
        self._pullers: list[Puller] = []
        self._asked: tuple[int, float, bool, Msg] | None = None  # an ack that asked for the next task (below)

    def order(self) -> list[int]:
        """Band indexes to try, in order, for the next pick."""
        top = list(range(len(self.durables)))
        b = self.streak_band
        if self.streak >= self.burst and b is not None and b < len(top) - 1:
            lower = top[b + 1:]
            k = self.turn % len(lower)
            self.turn += 1
            first = lower[k:] + lower[:k]
            return first + [i for i in top if i not in first]
        return top

    def _picked(self, i: int) -> None:
        if i == self.streak_band:
            self.streak += 1
        else:
            self.streak_band, self.streak = i, 1

    async def _pull(self, i: int, settle: bool) -> Msg | None:
        """One no-wait pull from band i, answered on that band's own inbox (a JetStream delivery
        keeps its stream subject, so nc.request's reply matching cannot be used). `settle`: the band
        is marked, so a message is on its way: wait for it at the server (SETTLE_S, module docstring)."""
        pull = self._pullers[i]
        while pull.buffered:  # the late answer of a pull that timed out: a task may be in it
            m = await pull.next(self.fetch_timeout_s)
            if not isinstance(m, Status):
                return m
        await pull.request(1, no_wait=True, expires_s=self._expires(settle))
        self.bands.settling[i] += settle
        try:
            m = await pull.next(self.fetch_timeout_s)
        finally:
            self.bands.settling[i] -= settle
        return None if isinstance(m, Status) else m  # 404 no messages, 408, 409: nothing in this band now

    def _expires(self, settle: bool) -> float | None:
        """A no-wait pull's expiry: none, or, for a band marked (a message on its way), SETTLE_S at most."""
        return min(SETTLE_S, self.fetch_timeout_s / 2) if settle else None

    def _first_band(self) -> int | None:
        """The band the next pick would pull first (None: every band is known empty)."""
        now = time.monotonic()
        return next((i for i in self.order() if not self.bands.known_empty(i, now)), None)

    async def _ack_finished(self, m: Msg) -> None:
        """Acknowledge a finished task. When the loop will pull next from the same band, the ack also asks
        for the next task (JetStream's AckNext, `+NXT` with a pull request, answered on that band's
        inbox): one message instead of an ack and a pull. Only while every slot is busy, so the loop is
        waiting for this slot and reads the answer next (_next), and one such ack at a time."""
        band = self.durables.index(m.metadata.consumer) if m.reply and m.metadata.consumer in self.durables else None
        if (band is None or self._asked is not None or self.in_flight < self.concurrency or not self._pullers
                or self._first_band() != band):
            await self.ack(m)
            return
        settle = self.bands.marked(band)
        body = request_body(1, no_wait=True, expires_s=self._expires(settle))
        self._asked = (band, time.monotonic(), settle, m)
        self.bands.settling[band] += settle
        try:
            await self.nc.publish(m.reply, b"+NXT " + body, reply=self._pullers[band].inbox)
        except Exception:
            self._answered()
            await self.ack(m)

    def _answered(self) -> None:
        """The ack that asked for the next task is done with: its band no longer waits on it."""
        asked, self._asked = self._asked, None
        if asked is not None:
            self.bands.settling[asked[0]] -= asked[2]

    async def _asked_next(self) -> Msg | None:
        """The answer to an ack that asked for the next task: the task, or None (nothing there: the band is
        then known empty; no answer in time: the ack may be lost, so it is sent again, plainly)."""
        band, sent_at, _, acked = self._asked or (0, 0.0, False, None)
        try:
            got = await self._pullers[band].next(self.fetch_timeout_s)
        except TimeoutError:
            log.warning("%s: no answer to an ack that asked for the next task; acknowledging again", self.name)
            if acked is not None:
                await self.ack(acked)
            return None
        finally:
            self._answered()
        m = None if isinstance(got, Status) else got
        self.bands.found(band, sent_at, m)
        if m is not None:
            self._picked(band)
        return m

    async def _next(self) -> Msg | None:
        if self._asked is not None:
            m = await self._asked_next()
            if m is not None:
                return m
        b = self.bands
        for i in self.order():
            now = time.monotonic()
            if b.known_empty(i, now):
                continue
            marked = b.marked(i)
            if not marked:  # a recheck (nothing seen, the belief aged): the others skip it meanwhile
                b.empty_at[i] = now
            m = await self._pull(i, settle=marked)
            b.found(i, now, m)
            if m is not None:
                self._picked(i)
                return m
        return None

    async def _idle(self) -> None:
        """Wait for a publish (or a loop leaving work behind) to wake this loop, or for the oldest
        "empty" to age out (at most RECHECK_S): whichever idle loop wakes first then rechecks."""
        ev = asyncio.Event()
        self.bands.idle[ev] = None
        ages_out = min(self.bands.empty_at) + RECHECK_S - time.monotonic()
        timer = asyncio.get_running_loop().call_later(min(RECHECK_S, max(0.01, ages_out)), ev.set)
        try:
            await ev.wait()
        except asyncio.CancelledError:
            if ev.is_set() and ev not in self.bands.idle:  # woken as this loop stops: pass the wake on
                self.bands.wake_one()
            raise
        finally:
            timer.cancel()
            self.bands.idle.pop(ev, None)

    async def _run(self) -> None:
        await self.bands.join(self.nc)
        try:
            async with contextlib.AsyncExitStack() as stack:
                self._pullers = [await stack.enter_async_context(Puller(self.nc, self.stream, d))
                                 for d in self.durables]
                await self._loop()
        finally:
            self._answered()
            await self.bands.leave()

    async def _loop(self) -> None:
        failing_since: float | None = None
        while True:
            async with self._slot:
                await self._slot.wait_for(lambda: self.in_flight < self.concurrency)
            try:
                m = await self._next()
            except Exception as e:  # timeouts, no responders, a connection moving to another node
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning("%s: pull failed: %r; retrying every 0.5 s", self.name, e)
                await asyncio.sleep(0.5)
                continue
            if failing_since is not None:
                log.warning("%s: pulls no longer failing after %.1f s", self.name, time.monotonic() - failing_since)
                failing_since = None
            if m is None:
                if not self.bands.any_marked():  # (marked: a publish came while this loop pulled: pull again)
                    await self._idle()
                continue
            self._start(m)
            if self.bands.any_marked():  # work left behind: one more idle loop pulls
                self.bands.wake_one()

