"""Records as this process last wrote them: a read saved before each compare-and-set.

Before a compare-and-set a record must be read; in one process (`pas up`, a Stack) it is nearly
always the record this process has just written (the gateway's new run, the manager's job, the last
sibling's update). Kept here (`Bus.records`, shared by a Stack's buses), encoded and with its
revision, it saves that read. Nothing is decided from it alone: the compare-and-set checks the
revision, a lost race drops the entry and reads the store; only records still queued or running are
kept (a finished one is always read), and finished plans, which nothing writes again: root checks a
done.plan against the plan as this process's architect wrote it (pas.roles.root). A reconnect drops
them all (pas.surfaces.stack), as a cancel might have gone unheard.
"""

from __future__ import annotations

from typing import Any

from nats.js.errors import KeyWrongLastSequenceError

from pas.protocol import subjects as S
from pas.protocol import wire
from pas.transport.bus import Bus

CACHED_RECORDS = 20000
LIVE = ("queued", "running")


def run_entry(run_id: str) -> str:
    """The entry of a pas_runs record (pas_tree keys are used as they are: they never clash)."""
    return f"{S.KV_RUNS}:{run_id}"


def remember(bus: Bus, entry: str, rec: Any, rev: int) -> None:
    """The record just written (revision rev), for the next compare-and-set."""
    if (getattr(rec, "status", "") not in LIVE and not isinstance(rec, wire.PlanRecord)) or not rev:
        bus.records.pop(entry, None)
        return
    if len(bus.records) >= CACHED_RECORDS:
        bus.records.clear()
    bus.records[entry] = (wire.encode(rec), rev)


def remember_run(bus: Bus, run: wire.RunRecord, rev: int) -> None:
    remember(bus, run_entry(run.run_id), run, rev)


def cached(bus: Bus, entry: str, typ: type[Any]) -> tuple[Any, int] | None:
    got = bus.records.get(entry)
    return (wire.decode(got[0], typ), got[1]) if got is not None else None


def cached_run(bus: Bus, run_id: str) -> tuple[wire.RunRecord, int] | None:
    """The run as this process last wrote it (None if it did not, or it has ended). For a first
    look that a compare-and-set or a cancel event corrects; replies read the store."""
    return cached(bus, run_entry(run_id), wire.RunRecord)


async def put_parent(bus: Bus, key: str, rec: Any) -> int:
    """Write a parent's record (a job, lane or plan) and remember it for its children's updates."""
    rev = await bus.kv_put(S.KV_TREE, key, rec)
    remember(bus, key, rec, rev)
    return rev


async def update(bus: Bus, bucket: str, key: str, entry: str, rec: Any, rev: int) -> None:
    """Compare-and-set rec at key over revision rev, and remember it. A lost race drops the entry
    (another process wrote it, or the copy was old) and raises KeyWrongLastSequenceError: the
    caller reads the store and tries again."""
    try:
        new = await bus.kv_update(bucket, key, wire.encode(rec), rev)
    except KeyWrongLastSequenceError:
        bus.records.pop(entry, None)
        raise
    remember(bus, entry, rec, new)
