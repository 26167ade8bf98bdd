"""The ground the wire types stand on: status values, limits, priorities, the Base struct and the
JSON codecs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from pas.protocol.ids import ID_PATTERN

Executor = Literal["command", "echo", "llm", "aider"]
AgentStatusValue = Literal[
    "ok", "degraded", "down", "queued", "running", "blocked", "waiting_approval", "paused", "error", "done"
]
RunStatusValue = Literal["queued", "running", "waiting_approval", "completed", "failed", "cancelled", "rejected"]
TaskStatusValue = Literal[
    "queued", "running", "completed", "failed", "cancelled", "timeout", "budget_exceeded", "skipped"
]
EventStatusValue = Literal[
    "queued", "running", "waiting_approval", "completed", "failed", "cancelled", "rejected", "timeout",
    "budget_exceeded", "skipped", "pending", "approved"]
"""Every status a RunEvent may carry: anything else is refused where it is read (pas.replay, the HMI)."""
EventKind = Literal["run", "lane", "job", "task", "plan", "approval"]
TERMINAL_TASK = frozenset({"completed", "failed", "cancelled", "timeout", "budget_exceeded", "skipped"})
TERMINAL_RUN = frozenset({"completed", "failed", "cancelled", "rejected"})
PRIORITIES = (20, 10, 5, 1)  # the priority bands of the programmer pool, highest first


def band(priority: int) -> int:
    """The pool band of a priority: the highest band not above it (7 -> 5; below 1 -> 1)."""
    return next((b for b in PRIORITIES if priority >= b), PRIORITIES[-1])


RunId = Annotated[str, Meta(pattern=ID_PATTERN, description="a run id (pas.protocol.ids)")]
JobId = Annotated[str, Meta(pattern=ID_PATTERN, description="a job id (pas.protocol.ids)")]
TaskId = Annotated[str, Meta(pattern=ID_PATTERN, description="a task id (pas.protocol.ids)")]
Title = Annotated[str, Meta(min_length=1, max_length=500)]
MAX_TEXT = 64 * 1024  # instructions, goals: 64 KiB
Text = Annotated[str, Meta(max_length=MAX_TEXT)]
MAX_OUTPUT = 16 * 1024  # task output kept in status (capped)
MAX_ERROR = 4 * 1024  # a task's error (the reason), capped


def now() -> datetime:
    return datetime.now(UTC)


class Base(Struct, forbid_unknown_fields=True, omit_defaults=False):
    pass


# ---- codecs --------------------------------------------------------------------------------
_encoder = msgspec.json.Encoder()


def encode(obj: Any) -> bytes:
    return _encoder.encode(obj)


def decode(data: bytes, typ: type[Any]) -> Any:
    return msgspec.json.decode(data, type=typ)


def to_builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)
