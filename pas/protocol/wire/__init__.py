"""Wire types: every message PAS puts on NATS, as msgspec structs, JSON on the wire.

A person can publish any of these with `nats pub` and read them with `nats sub`. Handlers receive
decoded, validated structs (see pas.runtime.service); bad input never reaches business code.

Every struct that travels on NATS is defined in this package (tests/test_layering.py checks it), one
module a kind, each building only on the ones before it:

- pas.protocol.wire.base: status values, limits, priorities, the Base struct, the JSON codecs;
- pas.protocol.wire.requests: what clients send (a job and its tasks, the request endpoints' bodies);
- pas.protocol.wire.records: the KV records (a run, its plan, lanes, jobs and tasks; an agent's state);
- pas.protocol.wire.work: the work items, one a tier;
- pas.protocol.wire.replies: replies, events, heartbeats, alerts, agent health, comms entries, error bodies;
- pas.protocol.wire.events: the one decoder of run events (a record written is its event).

Callers use the package: `from pas.protocol import wire`, then `wire.RunRecord`.
"""

from __future__ import annotations

from msgspec import Struct

from pas.protocol.subjects import Lane  # the one definition of the lanes, re-exported
from pas.protocol.wire.base import (
    MAX_ERROR,
    MAX_OUTPUT,
    MAX_TEXT,
    PRIORITIES,
    TERMINAL_RUN,
    TERMINAL_TASK,
    AgentStatusValue,
    Base,
    Executor,
    JobId,
    RunId,
    RunStatusValue,
    TaskId,
    TaskStatusValue,
    Text,
    Title,
    band,
    decode,
    encode,
    now,
    to_builtins,
)
from pas.protocol.wire.context import RunContext
from pas.protocol.wire.events import record_event, run_event
from pas.protocol.wire.records import (
    AgentState,
    Approval,
    JobRecord,
    LaneRecord,
    PlanRecord,
    RunRecord,
    TaskRecord,
    decider,
)
from pas.protocol.wire.replies import (
    AgentHealth,
    Alert,
    ChildDone,
    CommsEntry,
    Empty,
    ErrorBody,
    Heartbeat,
    PlanJob,
    PlanTask,
    PlanView,
    RunEvent,
    RunsReply,
    RunStatus,
    RunSummary,
    SubmitReply,
    Usage,
)
from pas.protocol.wire.requests import (
    Budget,
    Decision,
    ExecuteRequest,
    JobCardSubmit,
    JobSubmit,
    RunRef,
    RunsQuery,
    SetModel,
    StatusQuery,
    StatusRef,
    TaskSpec,
    effective_executor,
)
from pas.protocol.wire.work import CARRY_BYTES, JobCard, LaneWork, PlanWork, TaskWork

__all__ = [
    "CARRY_BYTES",
    "MAX_ERROR", "MAX_OUTPUT",
    "MAX_TEXT",
    "PRIORITIES",
    "TERMINAL_RUN",
    "TERMINAL_TASK",
    "AgentHealth",
    "AgentState",
    "AgentStatusValue",
    "Alert",
    "Approval",
    "Base",
    "Budget",
    "ChildDone",
    "CommsEntry",
    "Decision",
    "Empty",
    "ErrorBody",
    "ExecuteRequest",
    "Executor",
    "Heartbeat",
    "JobCard",
    "JobCardSubmit",
    "JobId",
    "JobRecord",
    "JobSubmit",
    "Lane",
    "LaneRecord",
    "LaneWork",
    "PlanJob",
    "PlanRecord",
    "PlanTask",
    "PlanView",
    "PlanWork",
    "RunContext",
    "RunEvent",
    "RunId",
    "RunRecord",
    "RunRef",
    "RunStatus",
    "RunStatusValue",
    "RunSummary",
    "RunsQuery",
    "RunsReply",
    "SetModel",
    "StatusQuery", "StatusRef",
    "Struct",
    "SubmitReply",
    "TaskId",
    "TaskRecord",
    "TaskSpec",
    "TaskStatusValue",
    "TaskWork",
    "Text",
    "Title",
    "Usage",
    "band",
    "decider",
    "decode",
    "effective_executor",
    "encode",
    "now",
    "record_event",
    "run_event",
    "to_builtins",
]
