"""The run store's memory: what a process keeps of the run records (see pas.runtime.store)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pas.protocol import wire

CACHED_RECORDS = 20000
LOCKS = 10000

T = TypeVar("T")


@dataclass(frozen=True)
class Versioned(Generic[T]):
    """A record and the revision it was read or written at (what a compare-and-set is checked against)."""

    record: T
    rev: int


@dataclass
class Memory:
    """What a process's agents share of the store: the records it last wrote, the parents' locks, the
    completions a sibling's write carries (pas.runtime.store's docstring)."""

    records: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    carried: dict[str, dict[str, tuple[str, asyncio.Future[None]]]] = field(default_factory=dict)
    creating: dict[str, asyncio.Future[int]] = field(default_factory=dict)  # task key -> its create's revision

    def forget(self) -> None:
        """Drop every cached record (a reconnect: what was written meanwhile is read from the store)."""
        self.records.clear()

    def keep(self, entry: str, rec: object, rev: int) -> None:
        if len(self.records) >= CACHED_RECORDS:
            self.records.clear()
        self.records[entry] = (wire.encode(rec), rev)

    def cached(self, entry: str, typ: type[T]) -> Versioned[T] | None:
        got = self.records.get(entry)
        return Versioned(wire.decode(got[0], typ), got[1]) if got is not None else None

    def lock(self, key: str) -> asyncio.Lock:
        if len(self.locks) > LOCKS:
            for k in [k for k, lk in self.locks.items() if not lk.locked()]:
                del self.locks[k]
        return self.locks.setdefault(key, asyncio.Lock())
