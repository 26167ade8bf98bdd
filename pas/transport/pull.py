"""The one pull primitive: every pull request PAS makes, and the one decoding of what answers it.

A pull request (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`, body: batch, expires, no_wait) is
answered on the reply subject it names by deliveries (messages with an ack reply subject) and at most
one status (no reply subject, a `Status` header): status_of() decodes a status once, for everyone,
and ended() says what it means for the request. Two shapes use them:

- Puller: one-shot requests answered on an inbox of their own, read in order (next()): stream reads
  (pas.transport.streams.read_raw) and the programmers' no-wait pulls of the priority bands
  (pas.runtime.priority).
- PullFeed: requests kept outstanding for a work loop's free slots (pas.runtime.service.WorkLoop),
  each delivery handed on from the inbox callback, as nats.go's Consume does.

PullFeed, in detail. Pull requests stay outstanding at the consumer, answered on an inbox
subscription whose callback hands each delivery on at once: no request per delivery, no no-wait
probe, no 404s.

- Never more asked for than there are free slots: `outstanding` (messages requested, not yet
  delivered or released by a status) + the handlers running <= the slots, so a loop never holds
  work it cannot start while another agent of the same consumer idles. (A delivery is always
  handed on, even past the slots: only a request given up as lost that was alive after all can
  cause that.)
- Ask again when more than half of the free slots have nothing asked for them (the outstanding
  count dropped to half): a steady stream costs one pull per ~limit/2 deliveries.
- Each request expires after `expires_s` (a pull lives at the consumer leader and is lost silently
  with it, or with our server): the server then answers 408 with how many were not delivered
  (Nats-Pending-Messages), and the slots are asked for again. An idle loop costs one pull and one
  408 per `expires_s`. No idle heartbeats: they would cost more messages than the expiry does, and
  a request that gets no answer at all by `expires_s` + a grace (half of it, at least 0.5 s) counts
  as lost and is asked again at once.
- Each request's reply subject is `<inbox>.<generation>.<batch>`, so a status names the request it
  ends. 100 (idle heartbeat): the consumer is alive. 408, and a 409 that carries
  Nats-Pending-Messages: that many are no longer outstanding. 503 (no responders: no consumer
  leader, no consumer), 400 and 409 "Exceeded MaxWaiting": the request was never served (its whole
  batch). Any other status (409 Leadership Change, Consumer Deleted, Server Shutdown): every
  request is gone; a new generation starts (late statuses of the old one are ignored).
- Failures (503, 400, a 409 other than a leadership change or one with a count, a lost request, a
  publish that raised) are logged once ("fetch failed ...; retrying") and retried every 0.5 s; the
  first answer after them logs "fetch no longer failing, after N failed attempts in T s".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from pas.protocol import subjects as S

log = logging.getLogger("pas.transport.pull")

RETRY_S = 0.5
PENDING = "Nats-Pending-Messages"
HEARTBEAT = "100"


@dataclass(frozen=True)
class Status:
    """What the server said instead of a message: 100 idle heartbeat, 404 no messages (no_wait),
    408 request expired, 409 (max bytes, max waiting, leadership change, consumer deleted, server
    shutdown), 503 no responders, 400 bad request. `pending`: Nats-Pending-Messages, how many of the
    request's batch were not delivered, when the server says."""

    code: str
    description: str = ""
    pending: int | None = None


def status_of(m: Msg) -> Status | None:
    """None for a delivery (it carries its ack subject), else the status it is, decoded here only."""
    if m.reply:
        return None
    hdrs = m.headers or {}
    pending = hdrs.get(PENDING)
    return Status(hdrs.get("Status", ""), hdrs.get("Description", ""), int(pending) if pending else None)


def ended(st: Status, batch: int) -> tuple[int | None, bool]:
    """A status that ends a pull request of `batch` -> (how many it releases, None: every request
    of its generation is gone; whether the consumer answered as it should)."""
    what = st.description.lower()
    if st.pending is not None:  # 408 expired, 409 over max bytes: the rest is released
        return st.pending, True
    if st.code in ("503", "400") or "maxwaiting" in what:  # never served: no leader / consumer, refused
        return batch, False
    if st.code == "404":  # no_wait: nothing there now (the whole batch)
        return batch, True
    # 409 Leadership Change (ask the new leader at once), Consumer Deleted, Server Shutdown, others
    return None, "leadership change" in what


def request_body(batch: int, *, expires_s: float | None = None, no_wait: bool = False) -> bytes:
    """A pull request's body: `batch` messages, the request expiring after expires_s, or answered
    at once (404 when there is nothing) with no_wait."""
    parts = [b'"batch":%d' % batch]
    if expires_s is not None:
        parts.append(b'"expires":%d' % int(expires_s * 1e9))
    if no_wait:
        parts.append(b'"no_wait":true')
    return b"{" + b",".join(parts) + b"}"


class Puller:
    """One-shot pull requests on one consumer, answered on an inbox of their own and read in order
    with next(). The inbox is a callback subscription feeding a queue (nats-py's next_msg costs a
    task and a timer per message). Use as `async with Puller(...) as p:`."""

    def __init__(self, nc: Client, stream: str, consumer: str) -> None:
        self.nc = nc
        self.subject = S.js_next(stream, consumer)
        self.inbox = nc.new_inbox()
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._sub: Subscription | None = None

    async def __aenter__(self) -> Puller:
        async def on_msg(m: Msg) -> None:
            self._queue.put_nowait(m)

        self._sub = await self.nc.subscribe(self.inbox, cb=on_msg)
        return self

    async def __aexit__(self, *exc: object) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:
                pass

    async def request(self, batch: int, *, expires_s: float | None = None, no_wait: bool = False) -> None:
        await self.nc.publish(self.subject, request_body(batch, expires_s=expires_s, no_wait=no_wait),
                              reply=self.inbox)

    @property
    def buffered(self) -> int:
        """Answers arrived and not read yet (the late answer of a request given up on, say)."""
        return self._queue.qsize()

    async def next(self, timeout_s: float) -> Msg | Status:
        """The next answer: a delivery, or the Status that ends a request (idle heartbeats skipped);
        TimeoutError when none comes within timeout_s."""
        while True:
            if self._queue.empty():
                async with asyncio.timeout(timeout_s):
                    m = await self._queue.get()
            else:
                m = self._queue.get_nowait()
            st = status_of(m)
            if st is None:
                return m
            if st.code != HEARTBEAT:
                return st


class PullFeed:
    """Keeps pull requests outstanding on a durable consumer (`subject`: its S.js_next(stream, durable));
    `deliver` gets every message, `free()` says how many more the owner can start now. Run with run()
    (until cancelled); call top_up() when a slot is freed."""

    def __init__(self, nc: Client, subject: str, *, deliver: Callable[[Msg], None], free: Callable[[], int],
                 expires_s: float, name: str) -> None:
        self.nc, self.name = nc, name
        self.subject = subject
        self.deliver, self.free = deliver, free
        self.expires_s = expires_s
        self.grace_s = max(0.5, expires_s / 2)  # a 408 later than this: the request is lost
        self.outstanding = 0
        self.pulls = 0  # requests sent, for tests and stats
        self._gen = 0
        self._inbox = ""
        self._last_pull = 0.0
        self._retry_at = 0.0  # after a failure: no pull before this
        self._failing_since: float | None = None
        self._failures = 0
        self._sub: Subscription | None = None
        self._changed = asyncio.Event()

    async def run(self) -> None:
        self._inbox = self.nc.new_inbox()
        self._sub = sub = await self.nc.subscribe(f"{self._inbox}.*.*", cb=self._on_msg)
        try:
            await self.top_up()
            while True:
                await self._wait()
                now = time.monotonic()
                if self.outstanding and now >= self._last_pull + self.expires_s + self.grace_s:
                    if sub.pending_msgs:  # answers queued, not yet seen: the event loop is behind
                        await asyncio.sleep(0.05)
                        continue
                    self._failed(f"no answer to a pull in {now - self._last_pull:.1f} s (request lost)", backoff=False)
                    self._new_generation()
                await self.top_up()
        finally:
            self._sub = None
            try:
                await sub.unsubscribe()
            except Exception:
                pass

    async def _wait(self) -> None:
        """Until a status or failure changed something, the retry time comes, or the outstanding
        requests should all have been answered."""
        due = []
        if self.outstanding:
            due.append(self._last_pull + self.expires_s + self.grace_s)
        if self._retry_at:
            due.append(self._retry_at)
        self._changed.clear()
        try:
            async with asyncio.timeout(max(0.0, min(due) - time.monotonic()) if due else None):
                await self._changed.wait()
        except TimeoutError:
            pass

    async def top_up(self) -> None:
        """Ask for the free slots nothing is asked for, when that is more than half of them."""
        if self._sub is None:
            return
        free = self.free()
        want = free - self.outstanding
        if want <= free // 2:
            return
        now = time.monotonic()
        if now < self._retry_at:
            return  # run() asks again at _retry_at
        self._retry_at = 0.0
        self.outstanding += want
        self._last_pull = now
        self.pulls += 1
        body = request_body(want, expires_s=self.expires_s)
        try:
            await self.nc.publish(self.subject, body, reply=f"{self._inbox}.{self._gen}.{want}")
        except Exception as e:
            self.outstanding = max(0, self.outstanding - want)
            self._failed(repr(e))

    async def _on_msg(self, m: Msg) -> None:
        st = status_of(m)
        if st is None:  # a delivery
            self.outstanding = max(0, self.outstanding - 1)
            if self._failing_since is not None:
                self._recovered()
            self.deliver(m)
            return
        _, gen, batch = m.subject.rsplit(".", 2)
        if st.code == HEARTBEAT or gen != str(self._gen):
            return  # an idle heartbeat, or the late answer to a request already given up
        released, ok = ended(st, int(batch))
        if released is None:
            self._new_generation()
        else:
            self.outstanding = max(0, self.outstanding - released)
        if not ok:
            self._failed(f"{st.code} {st.description}")
        elif self._failing_since is not None:
            self._recovered()
        await self.top_up()

    def _new_generation(self) -> None:
        self._gen += 1
        self.outstanding = 0

    def _failed(self, why: str, backoff: bool = True) -> None:
        """Logged once until an answer comes; the next pull waits RETRY_S (a lost request, which
        already took expires + grace, is asked again at once)."""
        self._failures += 1
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning("%s: fetch failed: %s; retrying (every %.1f s while it fails)", self.name, why, RETRY_S)
        if backoff:
            self._retry_at = time.monotonic() + RETRY_S
        self._changed.set()

    def _recovered(self) -> None:
        assert self._failing_since is not None
        log.warning("%s: fetch no longer failing, after %d failed attempts in %.1f s",
                    self.name, self._failures, time.monotonic() - self._failing_since)
        self._failing_since, self._failures = None, 0
