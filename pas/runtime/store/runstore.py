"""RunStore: one agent's typed access to the run records (see pas.runtime.store)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.js.errors import KeyWrongLastSequenceError

from pas.base.errors import Conflict, NotFound
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime.store import views
from pas.runtime.store.memory import Memory, Versioned
from pas.runtime.store.tree import Noted, Parent, ParentRef, children, rollup
from pas.transport.bus import Bus

LIVE = ("queued", "running")
"""The statuses of records worth keeping in the memory (a finished one is read from the store)."""

T = TypeVar("T")
Written = wire.RunRecord | Parent
"""What the store writes by compare-and-set and keeps with its revision."""


def _run_entry(run_id: str) -> str:
    """The cache entry of a pas_runs record (pas_tree keys are used as they are: they never clash)."""
    return f"{S.KV_RUNS}:{run_id}"


def _task_entry(key: str) -> str:
    return f"task:{key}"


def _done(value: T) -> asyncio.Future[T]:
    fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


class RunStore:
    """One agent's access to the run records: the agent's connection over its process's Memory."""

    def __init__(self, bus: Bus, memory: Memory | None = None) -> None:
        self.bus = bus
        self.memory = memory if memory is not None else Memory()

    # ---- the last-write cache ---------------------------------------------------------------------------
    def _remember(self, entry: str, rec: Written, rev: int) -> None:
        """The record just written (revision rev), for the next compare-and-set."""
        if (rec.status not in LIVE and not isinstance(rec, wire.PlanRecord)) or not rev:
            self.memory.records.pop(entry, None)
            return
        self.memory.keep(entry, rec, rev)

    async def _update(self, bucket: str, key: str, entry: str, rec: Written, rev: int) -> None:
        """Compare-and-set rec at key over revision rev, and remember it. A lost race drops the entry
        (another process wrote it, or the copy was old) and raises KeyWrongLastSequenceError: the caller
        reads the store and tries again."""
        try:
            new = await self.bus.kv_update(bucket, key, wire.encode(rec), rev)
        except KeyWrongLastSequenceError:
            self.memory.records.pop(entry, None)
            raise
        self._remember(entry, rec, new)

    # ---- runs (pas_runs) --------------------------------------------------------------------------------
    async def run(self, run_id: str) -> Versioned[wire.RunRecord] | None:
        """The run as stored."""
        return await self._get(S.KV_RUNS, run_id, wire.RunRecord)

    def cached_run(self, run_id: str) -> Versioned[wire.RunRecord] | None:
        """The run as this process last wrote it (None if it did not, or it has ended). For a first look
        that a compare-and-set or a cancel event corrects; replies read the store."""
        return self.memory.cached(_run_entry(run_id), wire.RunRecord)

    async def known_run(self, run_id: str) -> Versioned[wire.RunRecord] | None:
        """cached_run(), else the stored record."""
        return self.cached_run(run_id) or await self.run(run_id)

    async def is_cancelled(self, run_id: str) -> bool:
        got = await self.run(run_id)
        return got is not None and got.record.status == "cancelled"

    async def runs(self) -> list[wire.RunRecord]:
        """Every run record."""
        return await self.bus.kv_values(S.KV_RUNS, ">", wire.RunRecord)

    async def create_run(self, run: wire.RunRecord, request: bytes) -> int:
        """Store a new run and its request (the JobSubmit, encoded), both create-if-absent, in one round
        trip; the run's revision. Conflict if the run exists (an existing run's request is never replaced;
        a request found without its run is left be)."""
        stored = await asyncio.gather(self.bus.kv_create(S.KV_TREE, S.request_key(run.run_id), request),
                                      self.bus.kv_create(S.KV_RUNS, run.run_id, run))
        if stored[0] is None and stored[1] is not None:
            await self.bus.kv_delete(S.KV_RUNS, run.run_id, last=stored[1])
        if stored[0] is None or stored[1] is None:
            raise Conflict(f"run {run.run_id!r} already exists")
        self._remember(_run_entry(run.run_id), run, stored[1])
        return stored[1]

    async def dedupe(self, key_hash: str, run_id: str, nonce: str) -> str | None:
        """Claim an idempotency key (its hash) for run_id: None if claimed now, else the run id that holds it.
        "<run id> <nonce>": Bus.kv_create counts a key holding exactly its value as its own stored but
        unacknowledged attempt, so each attempt writes a value of its own."""
        if await self.bus.kv_create(S.KV_IDEMPOTENCY, key_hash, f"{run_id} {nonce}".encode()) is not None:
            return None
        got = await self._get(S.KV_IDEMPOTENCY, key_hash, bytes)
        return got.record.decode().split(" ")[0] if got else run_id

    async def update_run(self, run_id: str, change: Callable[[wire.RunRecord], Awaitable[bool] | bool],
                         read: Versioned[wire.RunRecord] | None = None) -> wire.RunRecord | None:
        """The one way pas_runs is written after the run's creation (start, cancel, decide, finish):
        compare-and-set. change() edits the record and says whether to write; it is called again on a
        lost race. `read`: the record the caller has just read (saves the first read). The run if this
        caller wrote it, else None (no such run, or change() declined)."""
        while True:
            got, read = read or self.cached_run(run_id) or await self.run(run_id), None
            if got is None:
                return None
            run = got.record
            ok = change(run)
            if not isinstance(ok, bool):
                ok = await ok
            if not ok:
                return None
            try:
                await self._update(S.KV_RUNS, run_id, _run_entry(run_id), run, got.rev)
                return run
            except KeyWrongLastSequenceError:
                continue  # another writer (or our own write whose ack was lost): read again

    async def start_run(self, run_id: str, read: Versioned[wire.RunRecord] | None = None) -> wire.RunRecord | None:
        """queued -> running: the run if this caller started it, else None (started before, or over)."""

        def start(run: wire.RunRecord) -> bool:
            if run.status != "queued":
                return False
            run.status, run.started_at = "running", wire.now()
            return True

        return await self.update_run(run_id, start, read)

    async def cancel_run(self, run_id: str, check: Callable[[wire.RunRecord], None]) -> wire.RunRecord:
        """Cancel a run that has not ended; check(run) raises if the caller may not (a PasError). NotFound
        without such a run, Conflict if it ended already."""
        seen: list[str] = []

        def cancel(run: wire.RunRecord) -> bool:
            check(run)
            seen.append(run.status)
            if run.status in wire.TERMINAL_RUN:
                return False
            run.status, run.finished_at, run.message = "cancelled", wire.now(), "cancelled by request"
            return True

        run = await self.update_run(run_id, cancel)
        if run is None:
            if not seen:
                raise NotFound(f"no run {run_id!r}")
            raise Conflict(f"run {run_id!r} already {seen[-1]}")
        return run

    async def finish_run(self, end: wire.RunRecord, read: Versioned[wire.RunRecord]) -> wire.RunRecord | None:
        """Root's ending of a run, worked out in `end` (status, finished_at, message, result branch, conflicts)
        from the record it read: written unless the run ended meanwhile (cancelled, rejected: that stands).
        The run if this caller ended it, else None."""

        def finish(r: wire.RunRecord) -> bool:
            if r.status in wire.TERMINAL_RUN:
                return False
            r.status, r.finished_at, r.message = end.status, end.finished_at, end.message
            r.result_branch, r.conflicts = end.result_branch, end.conflicts
            return True

        return await self.update_run(end.run_id, finish, read)

    async def mark_degraded(self, run_id: str, reason: str, lanes: list[str] | None = None) -> None:
        """Record that a tier fell back to the offline planner (and, for the architect, the lanes chosen),
        by compare-and-set, so a concurrent note from another tier is not lost."""

        def change(run: wire.RunRecord) -> bool:
            if reason:
                run.degraded = True
                run.message = (run.message + "; " if run.message else "") + f"degraded: {reason}"[:500]
            if lanes is not None:
                run.lanes = lanes
            return True

        await self.update_run(run_id, change)

    async def view(self, run_id: str, offset: int = 0, limit: int | None = None) -> wire.RunStatus | None:
        """The run with a page of its tasks (pas.runtime.store.views.run_view); None without such a run."""
        return await views.run_view(self, run_id, offset, limit)

    async def page(self, limit: int = 50, status: str | None = None, offset: int = 0) -> wire.RunsReply:
        """The newest runs, optionally with one status (pas.runtime.store.views.list_runs)."""
        return await views.list_runs(self, limit, status, offset)

    # ---- the tree (pas_tree) ----------------------------------------------------------------------------
    async def get(self, key: str, typ: type[T]) -> Versioned[T] | None:
        """A pas_tree record as stored."""
        return await self._get(S.KV_TREE, key, typ)

    def read_soon(self, key: str, typ: type[T]) -> asyncio.Future[Versioned[T] | None]:
        """A pas_tree record as this process last wrote it, else its read from the store (started now:
        the caller awaits it when it needs it)."""
        got = self.memory.cached(key, typ)
        return _done(got) if got is not None else asyncio.ensure_future(self.get(key, typ))

    async def put(self, key: str, rec: Parent) -> int:
        """Write a parent's record (a job, lane or plan) and remember it for its children's updates."""
        rev = await self.bus.kv_put(S.KV_TREE, key, rec)
        self._remember(key, rec, rev)
        return rev

    async def request(self, run_id: str) -> Versioned[wire.JobSubmit] | None:
        """The run's request as the gateway stored it."""
        return await self.get(S.request_key(run_id), wire.JobSubmit)

    async def tasks(self, run_id: str) -> list[wire.TaskRecord]:
        return await self.bus.kv_values(S.KV_TREE, S.tasks_of(run_id), wire.TaskRecord)

    async def jobs(self, run_id: str) -> list[wire.JobRecord]:
        return await self.bus.kv_values(S.KV_TREE, S.jobs_of(run_id), wire.JobRecord)

    # ---- a child finished: noted in its parent ----------------------------------------------------------
    async def note_child(self, ref: ParentRef, status: str) -> Noted[Parent] | None:
        """Note that one child (task of a job, job of a lane, lane of a plan) finished, with compare-and-set
        on the parent's record: O(1) reads per completion however many children there are. None if the
        parent does not exist."""
        async with self.memory.lock(ref.key):  # siblings in this process take turns; other processes retry
            return await self._note(ref, {ref.child: status})

    async def note_children(self, ref: ParentRef, status: str) -> Noted[Parent] | None:
        """note_child, where siblings finishing in this process at the same time share one compare-and-set:
        while one sibling's write is in flight, the next ones wait for the lock, and the first of them to
        get it writes them all (group commit). The one whose write it was gets the result; the others get
        None: they have nothing more to do (the writer goes up if the parent finished). Not for a
        redelivery, which may have to re-announce (note_child)."""
        waiting = self.memory.carried.setdefault(ref.key, {})
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting[ref.child] = (status, mine)
        async with self.memory.lock(ref.key):
            if mine.done():  # a sibling's write carried this completion
                mine.result()  # (raises what that write raised: this completion is then retried)
                return None
            batch = self.memory.carried.pop(ref.key, {})
            try:
                res = await self._note(ref, {c: st for c, (st, _) in batch.items()})
            except BaseException as e:
                for _, fut in batch.values():
                    if fut is not mine and not fut.done():
                        fut.set_exception(e if isinstance(e, Exception) else RuntimeError("the sibling's write stopped"))
                raise
            for _, fut in batch.values():
                if fut is not mine and not fut.done():
                    fut.set_result(None)
            return res

    async def _note(self, ref: ParentRef, done: dict[str, str]) -> Noted[Parent] | None:
        while True:
            # Under the lock, this process's own last write is newer than any read.
            got: Versioned[Parent] | None = self.memory.cached(ref.key, ref.typ) or await self.get(ref.key, ref.typ)
            if got is None:
                return None
            rec = got.record
            if rec.status != "running":
                return Noted(rec, False)  # finished before (a redelivery): the caller re-announces
            total = children(rec)
            rec.done.update({c: st for c, st in done.items() if c in total})  # (a child it does not have: no note)
            if all(c in rec.done for c in total):
                rec.status = rollup([rec.done[c] for c in total])
            try:
                await self._update(S.KV_TREE, ref.key, ref.key, rec, got.rev)
            except KeyWrongLastSequenceError:
                continue  # a sibling finished at the same moment (or our own write's ack was lost): read again
            return Noted(rec, rec.status != "running")

    # ---- task records: the lane's managers' (pas.runtime.taskowner) --------------------------------------
    async def task(self, key: str) -> Versioned[wire.TaskRecord] | None:
        """A task record as stored."""
        return await self.get(key, wire.TaskRecord)

    def written_task(self, key: str) -> wire.TaskRecord | None:
        """The task record as this process last wrote it."""
        got = self.written_task_at(key)
        return got.record if got is not None else None

    def written_task_at(self, key: str) -> Versioned[wire.TaskRecord] | None:
        """The task record as this process last wrote it, with its revision when known (0: not known)."""
        return self.memory.cached(_task_entry(key), wire.TaskRecord)

    def remember_task(self, key: str, rec: wire.TaskRecord, rev: int = 0) -> None:
        """Keep a task record as this process writes it (rev: its revision, when the write's ack told it)."""
        self.memory.keep(_task_entry(key), rec, rev)

    def task_created(self, key: str, rev: int) -> None:
        """The create of a queued task record was acknowledged at rev: remembered with it, unless this
        process wrote the record again meanwhile."""
        got = self.written_task_at(key)
        if got is not None and got.rev == 0 and got.record.status == "queued":
            self.memory.keep(_task_entry(key), got.record, rev)

    def forget_task(self, key: str) -> None:
        self.memory.records.pop(_task_entry(key), None)

    def create_task(self, key: str, rec: wire.TaskRecord) -> Awaitable[int | None]:
        """Create-if-absent (None: the key holds another record already, e.g. a redelivered job card). Until
        it is acknowledged, created_rev(key) waits for its revision; then the record this process remembers
        carries it (task_created)."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.memory.creating[key] = fut

        async def create() -> int | None:
            rev: int | None = None
            try:
                rev = await self.bus.kv_create(S.KV_TREE, key, rec)
                if rev:
                    self.task_created(key, rev)
                return rev
            finally:
                if not fut.done():
                    fut.set_result(rev or 0)
                if self.memory.creating.get(key) is fut:
                    del self.memory.creating[key]

        return create()

    async def created_rev(self, key: str, timeout_s: float = 5.0) -> int:
        """The revision of a task create this process has in flight, once acknowledged (0: none in flight,
        refused, or not acknowledged within timeout_s)."""
        fut = self.memory.creating.get(key)
        if fut is None:
            return 0
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except TimeoutError:
            return 0

    async def put_task(self, key: str, rec: wire.TaskRecord) -> None:
        await self.bus.kv_put(S.KV_TREE, key, rec)

    async def put_task_progress(self, key: str, rec: wire.TaskRecord, last: int = 0) -> None:
        """A task's "running", not awaited by the store: superseded by the acknowledged result, and stored
        only over revision `last` when it is known (pas.transport.bus.Bus.kv_put_nowait)."""
        await self.bus.kv_put_nowait(S.KV_TREE, key, rec, last or None)

    async def update_task(self, key: str, rec: wire.TaskRecord, rev: int) -> None:
        """Compare-and-set: KeyWrongLastSequenceError if the record changed since rev."""
        await self.bus.kv_update(S.KV_TREE, key, wire.encode(rec), rev)

    # ---- reads ------------------------------------------------------------------------------------------
    async def _get(self, bucket: str, key: str, typ: type[T]) -> Versioned[T] | None:
        got = await self.bus.kv_get(bucket, key, typ)
        return Versioned(got[0], got[1]) if got is not None else None
