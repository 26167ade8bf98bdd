"""Every NATS subject, stream, consumer and KV bucket name PAS uses, built in one place.

subjects.md documents each of these; tests/test_subjects_doc.py fails when the two disagree.

The subject tree is role-first so that each role's permissions are a few wildcards:

    pas.<role>.<endpoint>              role-wide request endpoints (pas.gateway.submit)
    pas.<role>.<lane>.<endpoint>       lane-level endpoints shared by the lane's agents (queue group)
    pas.<role>.<agent_id>.<endpoint>   one agent's own endpoints (health, status, ...)
    pas.hb.<agent_id>                  heartbeats (core NATS)
    pas.alert.agent.<agent_id>         dead / recovered alerts (core NATS + PAS_EVENTS)
    pas.ctl.<agent_id>.<verb>          control plane (set_model)
    pas.comms.<run_id>.<from>.<type>   comms log entries (stream PAS_COMMS)
    pas.work.<tier>[.<lane>]           durable work queues between tiers (stream PAS_WORK)
    pas.run.<run_id>.>                 run and task state changes (stream PAS_EVENTS)
    pas.rec.<sha256>                   recorded model exchanges (stream PAS_RECORDINGS)
    pas.replay.<run_id>.>              a past run's events re-published by `pas replay --speed` (core NATS)

Also here: the keys of KV pas_tree (<run>.plan, <run>.task.<task>, ...), the JetStream and KV API
subjects ($JS.API..., $JS.ACK..., $KV.<bucket>.<key>), micro discovery ($SRV...) and per-user inbox
prefixes, and the parsers for the subjects PAS reads back (parse_run, parse_kv, parse_js_ack).
tests/test_names.py fails on a subject string literal anywhere else in pas/.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple, get_args

PREFIX = "pas"

# Roles, as they appear in subjects. Role names are config values too (AgentConfig.role).
ROLES = ("gateway", "root", "architect", "dir", "mgr", "prog", "monitor")
Lane = Literal["code", "models", "data", "devsecops", "docs"]
"""The lanes: defined here once (wire.Lane, the HTTP models, config validation and LANES derive from it)."""
LANES: tuple[str, ...] = get_args(Lane)
HEADS = (*ROLES, "hb", "alert", "ctl", "comms", "work", "run", "rec", "replay")
"""The first token after pas. of every subject PAS uses."""

# ---- streams -------------------------------------------------------------------------------
STREAM_COMMS = "PAS_COMMS"
STREAM_WORK = "PAS_WORK"
STREAM_EVENTS = "PAS_EVENTS"
STREAM_RECORDINGS = "PAS_RECORDINGS"  # every model exchange (pas.llm.recording)

# ---- KV buckets ----------------------------------------------------------------------------
KV_AGENTS = "pas_agents"  # key: agent id -> AgentState (heartbeat monitor)
KV_RUNS = "pas_runs"  # key: run id -> RunRecord
KV_TREE = "pas_tree"  # key: <run>.plan | <run>.lane.<lane> | <run>.job.<job> | <run>.task.<task>
KV_IDEMPOTENCY = "pas_idem"  # key: sha of idempotency key -> run id (TTL = dedupe window)
KV_MODELS = "pas_models"  # key: agent id -> live model override
KV_BREAKERS = "pas_breakers"  # key: <agent_id>.<model profile> -> that agent's circuit-breaker state
KV_CLAIMS = "pas_claims"  # key: agent id -> the live instance that holds it (pas.runtime.claims)



def kv_stream(bucket: str) -> str:
    """The stream that holds a KV bucket (KV_<bucket>)."""
    return f"KV_{bucket}"


# ---- keys of KV pas_tree (one run's records; <run> is a run id) -----------------------------
def plan_key(run_id: str) -> str:
    return f"{run_id}.plan"


def lane_key(run_id: str, lane: str) -> str:
    return f"{run_id}.lane.{lane}"


def job_key(run_id: str, job_id: str) -> str:
    return f"{run_id}.job.{job_id}"


def task_key(run_id: str, task_id: str) -> str:
    return f"{run_id}.task.{task_id}"


def request_key(run_id: str) -> str:
    """The submitted JobSubmit (what `pas rerun` resubmits)."""
    return f"{run_id}.request"


def usage_key(run_id: str, agent_id: str = "") -> str:
    """One agent's LLM usage in the run (pas.runtime.usage); no agent: the suffix every such key starts with."""
    return f"{run_id}.usage.{agent_id}" if agent_id else f"{run_id}.usage"


def usages_of(run_id: str) -> str:
    """Key filter: every agent's usage entry of a run."""
    return usage_key(run_id, "*")


def rerun_key(run_id: str) -> str:
    """A rerun's spec (pas.runtime.rerun)."""
    return f"{run_id}.rerun"


def divergence_key(run_id: str, agent_id: str = "") -> str:
    """An agent's first divergence of a rerun from its recordings (pas.runtime.rerun); no agent: the suffix."""
    return f"{run_id}.divergence.{agent_id}" if agent_id else f"{run_id}.divergence"


def forked_key(run_id: str, agent_id: str = "") -> str:
    """A rerun that went past its recordings to the model, noted by the agent that did (pas.runtime.rerun)."""
    return f"{run_id}.forked.{agent_id}" if agent_id else f"{run_id}.forked"


def jobs_of(run_id: str) -> str:
    """Key filter: every job record of a run."""
    return job_key(run_id, "*")


def tasks_of(run_id: str) -> str:
    """Key filter: every task record of a run."""
    return task_key(run_id, "*")


def run_keys(run_id: str) -> str:
    """Key filter: every record of a run."""
    return f"{run_id}.>"


SIDE_KEYS = tuple(f("").lstrip(".") for f in (request_key, usage_key, rerun_key, divergence_key, forked_key))
"""Kinds (request, usage, ...) of the records that events cannot rebuild (pas replay --rebuild)."""


def is_side_key(key: str) -> bool:
    """Whether a pas_tree key (<run>.<kind>[.<agent>]) is one of the SIDE_KEYS records."""
    return key.split(".")[1:2] in ([k] for k in SIDE_KEYS)

# ---- durable consumers (all pull, explicit ack) --------------------------------------------
CONSUMER_ARCHITECT = "architect"  # pas.work.architect
CONSUMER_APPROVAL = "gateway-approval"  # pas.work.approval (approval deadlines, gateway)
CONSUMER_ROOT_DONE = "root-done"  # pas.run.*.done.plan


def consumer_dir(lane: str) -> str:
    return f"dir-{lane}"  # pas.work.dir.<lane>


def consumer_mgr(lane: str) -> str:
    return f"mgr-{lane}"  # pas.work.mgr.<lane>


def consumer_mgr_release(lane: str) -> str:
    return f"mgr-{lane}-release"  # pas.run.*.release.<lane>


def consumer_prog(priority: int) -> str:
    return f"prog-{priority}"  # pas.work.prog.<priority>: one per band, shared by the pool


# ---- request endpoints ---------------------------------------------------------------------
GATEWAY_SUBMIT = "pas.gateway.submit"
GATEWAY_STATUS = "pas.gateway.status"
GATEWAY_RUNS = "pas.gateway.runs"
GATEWAY_CANCEL = "pas.gateway.cancel"
GATEWAY_PLAN = "pas.gateway.plan"
GATEWAY_APPROVE = "pas.gateway.approve"
GATEWAY_REJECT = "pas.gateway.reject"
PROG_EXECUTE = "pas.prog.execute"
AS_ACTIONS = ("submit", "cancel", "approve", "reject")
"""The gateway's requests that act on a run, also offered per requester (gateway_as)."""


def gateway_as(user: str, action: str) -> str:
    """pas.gateway.as.<user>.<action>: the gateway's request as a NATS user, who alone may publish it
    (pas.transport.auth): the gateway knows who asks, records who submitted a run, and lets `client` act only on
    the runs it submitted."""
    return f"{PREFIX}.gateway.as.{user}.{action}"


def requester(subject: str) -> str | None:
    """The user of a pas.gateway.as.<user>.<action> subject; None for any other (the anonymous ones)."""
    parts = subject.split(".")
    return parts[3] if len(parts) == 5 and parts[:3] == [PREFIX, "gateway", "as"] else None


def lane_submit(role: str, lane: str) -> str:
    """pas.dir.<lane>.submit / pas.mgr.<lane>.submit: shared by the lane's agents (queue group)."""
    return f"{PREFIX}.{role}.{lane}.submit"


def child_done(role: str, lane: str) -> str:
    """pas.mgr.<lane>.done (a task ended: its job's managers note it), pas.dir.<lane>.done (a job ended: the
    lane's director notes it), pas.architect.lanes.done (lane = "lanes": the architect notes a lane): the
    completion walk goes up to the owner of each record (queue group <role>-<lane>)."""
    return f"{PREFIX}.{role}.{lane}.done"


ARCHITECT_DONE = child_done("architect", "lanes")


def breaker_key(agent_id: str, profile: str) -> str:
    """pas_breakers[<agent_id>.<profile>]: the breaker state of a profile as one agent's calls found it; only
    that agent may write it (pas.transport.auth), `pas agents` shows each agent's own."""
    return f"{agent_id}.{profile}"


def task_done(lane: str, programmer: str) -> str:
    """pas.mgr.<lane>.done.<programmer>: a programmer's task ended; the lane's managers, who own task
    records, check that the sender holds the task, store its result and note it in the job (queue group
    mgr-<lane>). The last token is the sender: each programmer may publish only its own (pas.transport.auth)."""
    return f"{child_done('mgr', lane)}.{programmer}"


def task_started(lane: str, programmer: str, run_id: str = "*") -> str:
    """pas.mgr.<lane>.started.<run>.<programmer>: a programmer took a task of run <run>; the lane's managers
    record it as the task's holder (only the holder may report the result: task_done). The one message of
    the start: PAS_COMMS stores it too (STARTED_TO_COMMS), as the programmer's "run task" entry."""
    return f"{PREFIX}.mgr.{lane}.started.{run_id}.{programmer}"


def started_run(subject: str) -> str:
    """The run a task_started subject names (its second-to-last token)."""
    parts = subject.split(".")
    return parts[-2] if len(parts) == 6 else ""


def sender(subject: str) -> str:
    """The agent a task_done or task_started subject names as its sender (its last token)."""
    return subject.rsplit(".", 1)[-1]


def agent_endpoint(role: str, agent_id: str, endpoint: str) -> str:
    """pas.<role>.<agent_id>.<endpoint>: health, status, and execute for programmers."""
    return f"{PREFIX}.{role}.{agent_id}.{endpoint}"


# ---- heartbeats, alerts, control -----------------------------------------------------------
def heartbeat(agent_id: str) -> str:
    return f"{PREFIX}.hb.{agent_id}"


HEARTBEAT_ALL = "pas.hb.*"


def alert_agent(agent_id: str) -> str:
    return f"{PREFIX}.alert.agent.{agent_id}"


ALERT_ALL = "pas.alert.>"


def ctl(agent_id: str, verb: str) -> str:
    return f"{PREFIX}.ctl.{agent_id}.{verb}"


CTL_ALL = "pas.ctl.>"


# ---- comms log -----------------------------------------------------------------------------
NO_RUN = "_"  # run-id token for entries outside any run


def comms(run_id: str | None, from_agent: str, msg_type: str) -> str:
    return f"{PREFIX}.comms.{token(run_id or NO_RUN)}.{token(from_agent)}.{token(msg_type)}"


COMMS_ALL = "pas.comms.>"


def comms_filter(run_id: str | None = None, from_agent: str | None = None, msg_type: str | None = None) -> str:
    """Comms entries of one run / sender / type (None: any)."""
    return (f"{PREFIX}.comms.{token(run_id) if run_id else '*'}.{token(from_agent) if from_agent else '*'}."
            f"{token(msg_type) if msg_type else '*'}")


def comms_run(run_id: str) -> str:
    """Every comms entry of one run."""
    return f"{PREFIX}.comms.{token(run_id)}.>"


COMMS_RECORD = "record"
"""The sender token of the comms entries the server derives from record writes (no agent has that id):
pas.comms.<run>.record.<rest> is the write that is also the event pas.run.<run>.<rest>."""


def comms_record(run_id: str, rest: str) -> str:
    """pas.comms.<run>.record.<rest>: where PAS_COMMS keeps the record write that is pas.run.<run>.<rest>."""
    return f"{PREFIX}.comms.{run_id}.{COMMS_RECORD}.{rest}"


def record_of_comms(subject: str) -> str | None:
    """pas.comms.<run>.record.<rest> -> pas.run.<run>.<rest>; None for an agent's own entry."""
    parts = subject.split(".")
    if len(parts) < 5 or parts[:2] != [PREFIX, "comms"] or parts[3] != COMMS_RECORD:
        return None
    return ".".join((PREFIX, "run", parts[2], *parts[4:]))


def comms_type_filters(run_id: str | None, msg_type: str) -> tuple[str, str]:
    """The entries of one type (of one run): the agents' own, and the record writes the type may be
    derived from (the reader tells which are)."""
    run = token(run_id) if run_id else "*"
    return comms_filter(run_id, None, msg_type), f"{PREFIX}.comms.{run}.{COMMS_RECORD}.>"


# ---- work queues ---------------------------------------------------------------------------
WORK_ALL = "pas.work.>"
WORK_ARCHITECT = "pas.work.architect"
WORK_PROG_ALL = "pas.work.prog.*"  # every band (the programmers' wake-up subscription)
WORK_APPROVAL = "pas.work.approval"  # one item per run waiting for approval: its deadline timer


def work_prog(priority: int) -> str:
    """pas.work.prog.<band>: the pool's queue for one priority band (20, 10, 5, 1)."""
    return f"{PREFIX}.work.prog.{priority}"


def work_dir(lane: str) -> str:
    return f"{PREFIX}.work.dir.{lane}"


def work_mgr(lane: str) -> str:
    return f"{PREFIX}.work.mgr.{lane}"


# ---- run events ----------------------------------------------------------------------------
EVENTS_ALL = "pas.run.>"
"""Every run event: the records, fanned out by the server (below), and the commands PAS publishes."""

EVENTS_COMMANDS = ("pas.run.*.cancel", "pas.run.*.release.*", "pas.run.*.done.*")
"""What PAS_EVENTS captures as published (besides the alerts): commands for agents, not state."""


def run_events(run_id: str) -> str:
    """Every state change of one run (what `pas submit --wait` and the MCP/A2A watchers subscribe to)."""
    return f"{PREFIX}.run.{run_id}.>"


def run_tasks(run_id: str) -> str:
    """Every task state change of one run."""
    return f"{PREFIX}.run.{run_id}.task.>"


def run_status(run_id: str) -> str:
    return f"{PREFIX}.run.{run_id}.status"


def run_cancel(run_id: str) -> str:
    return f"{PREFIX}.run.{run_id}.cancel"


RUN_CANCEL_ALL = "pas.run.*.cancel"


def run_task(run_id: str, task_id: str) -> str:
    """Every state change of one task (queued, running, completed, ...)."""
    return f"{PREFIX}.run.{run_id}.task.{task_id}"


def run_job(run_id: str, job_id: str) -> str:
    return f"{PREFIX}.run.{run_id}.job.{job_id}"


def run_lane(run_id: str, lane: str) -> str:
    return f"{PREFIX}.run.{run_id}.lane.{lane}"


def run_plan(run_id: str) -> str:
    """The plan record's event (the architect's lanes and which of them finished)."""
    return f"{PREFIX}.run.{run_id}.plan"


def done_plan(run_id: str) -> str:
    """Every lane finished: consumed by root (root-done), which ends the run."""
    return f"{PREFIX}.run.{run_id}.done.plan"


def run_release(run_id: str, lane: str) -> str:
    """The approval decision for one lane: its managers release (or drop) the held tasks."""
    return f"{PREFIX}.run.{run_id}.release.{lane}"


# One write per fact: a record written to KV is its event. The server fans each write out twice,
# both as pas.run.<run>.<rest>: live, republished by the bucket's stream (core NATS, for watchers),
# and durably, sourced into PAS_EVENTS (a node loss loses none; readers of the past read that).
# Each is a (src, dest) subject transform.
_W1, _W2 = "{{wildcard(1)}}", "{{wildcard(2)}}"
RUNS_REPUBLISH = (f"$KV.{KV_RUNS}.*", run_status(_W1))  # the run record
TREE_REPUBLISH = (f"$KV.{KV_TREE}.*.>", run_events(_W1))  # every pas_tree record of the run
TREE_EVENT_SOURCES = ((f"$KV.{KV_TREE}.{plan_key('*')}", run_plan(_W1)),
                      (f"$KV.{KV_TREE}.{lane_key('*', '*')}", run_lane(_W1, _W2)),
                      (f"$KV.{KV_TREE}.{job_key('*', '*')}", run_job(_W1, _W2)),
                      (f"$KV.{KV_TREE}.{task_key('*', '*')}", run_task(_W1, _W2)))
"""The pas_tree records PAS_EVENTS keeps (a run's request, usage and rerun notes are not events)."""
COMMS_RECORD_SOURCES = {
    KV_RUNS: ((RUNS_REPUBLISH[0], comms_record(_W1, "status")),),
    KV_TREE: ((f"$KV.{KV_TREE}.{request_key('*')}", comms_record(_W1, "request")),
              (f"$KV.{KV_TREE}.{plan_key('*')}", comms_record(_W1, "plan")),
              (f"$KV.{KV_TREE}.{lane_key('*', '*')}", comms_record(_W1, f"lane.{_W2}")),
              (f"$KV.{KV_TREE}.{job_key('*', '*')}", comms_record(_W1, f"job.{_W2}")),
              (f"$KV.{KV_TREE}.{task_key('*', '*')}", comms_record(_W1, f"task.{_W2}")))}
"""The same writes and the run's request, sourced into PAS_COMMS as pas.comms.<run>.record.<rest>: a comms
entry that repeats a record (a run submitted and handed to the architect, a task started or ended, a job,
lane, plan or run handed on or finished) is derived from the record's write by its readers
(pas.runtime.comms.stored_entry), not published a second time."""

SOURCING_STREAMS = (STREAM_EVENTS, STREAM_COMMS)
"""The streams that copy the record buckets' writes (the sources above): provisioned with those sources
(pas.transport.provision), watched on a cluster by the monitor, which may restart them (pas.roles.monitor)."""

COMMS_START = "start"
STARTED_TO_COMMS = (task_started("*", "*"), comms_record("{{wildcard(2)}}", f"{COMMS_START}.{{{{wildcard(3)}}}}"))
"""PAS_COMMS captures the programmers' start reports (task_started) and keeps each as
pas.comms.<run>.record.start.<programmer> (a stream subject transform): the message the managers act on
is also the stored "run task" entry, published once (pas.runtime.comms.stored_entry)."""

RELEASE_FILTER = "pas.run.*.release.{lane}"
DONE_PLAN_FILTER = "pas.run.*.done.plan"

# ---- recordings of model exchanges (pas.llm.recording) ------------------------------------------
RECORDINGS_ALL = "pas.rec.>"


def recording(request_sha: str) -> str:
    """pas.rec.<sha256 of the canonical request>: one model exchange (stream PAS_RECORDINGS)."""
    return f"{PREFIX}.rec.{request_sha}"


# ---- replay (pas replay --speed) -----------------------------------------------------------
REPLAY_ALL = "pas.replay.>"


def replay(run_id: str, rest: str) -> str:
    """pas.replay.<run>.run.<...> / .comms.<from>.<type> / .end: a past run re-published (core NATS)."""
    return f"{PREFIX}.replay.{token(run_id)}.{rest}"


# ---- NATS and JetStream API subjects -------------------------------------------------------
JS_API = "$JS.API"
JS_API_ALL = "$JS.API.>"
JS_FLOW_CONTROL_ALL = "$JS.FC.>"  # flow-control replies of ordered consumers
SRV_ALL = "$SRV.>"  # micro discovery: PING, INFO, STATS
SRV_PING_ALL = "$SRV.PING.>"


def js_api(*parts: str) -> str:
    """$JS.API.<parts...>: e.g. js_api("STREAM", "INFO", stream)."""
    return ".".join((JS_API, *parts))


def js_next(stream: str, consumer: str) -> str:
    """The pull request subject of a consumer ($JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>)."""
    return js_api("CONSUMER", "MSG", "NEXT", stream, consumer)


def js_acks(stream: str, consumer: str) -> str:
    """Every ack/nak/in-progress reply subject of a consumer's messages."""
    return f"$JS.ACK.{stream}.{consumer}.>"


def kv_subject(bucket: str, key: str) -> str:
    """The subject a KV value is stored on ($KV.<bucket>.<key>; key may hold wildcards)."""
    return f"$KV.{bucket}.{key}"


def srv_ping(service: str, instance: str) -> str:
    """Ping one instance of a micro service ($SRV.PING.<name>.<id>)."""
    return f"$SRV.PING.{service}.{instance}"


def inbox_prefix(user: str) -> str:
    """A PAS user's own inbox prefix (its permissions allow replies only there)."""
    return f"_INBOX.{user}"


INBOX_HEAD = inbox_prefix("")[:-1]


# ---- parsing subjects PAS reads back -------------------------------------------------------
class RunSubject(NamedTuple):
    """pas.run.<run_id>.<kind>[.<rest>...]: kind is status, cancel, task, job, lane, release, done."""

    run_id: str
    kind: str
    rest: tuple[str, ...]


def parse_run(subject: str) -> RunSubject | None:
    """Split a run event subject (pas.run.r-1.task.t-3 -> ("r-1", "task", ("t-3",))); None if it is not one."""
    parts = subject.split(".")
    if len(parts) < 4 or parts[0] != PREFIX or parts[1] != "run":
        return None
    return RunSubject(parts[2], parts[3], tuple(parts[4:]))


def parse_kv(subject: str) -> tuple[str, str] | None:
    """$KV.<bucket>.<key> -> (bucket, key); None if it is not a KV subject."""
    head, _, rest = subject.partition(".")
    bucket, _, key = rest.partition(".")
    if head != "$KV" or not bucket or not key:
        return None
    return bucket, key


def parse_js_ack(reply: str) -> tuple[int, int] | None:
    """(stream sequence, stored-at ns) from a JetStream message's reply subject, None if it is not one.

    $JS.ACK.<stream>.<consumer>.<delivered>.<stream_seq>.<consumer_seq>.<ts_ns>.<pending>; v2 adds
    <domain>.<account hash> after ACK and a random token at the end."""
    parts = reply.split(".")
    if parts[:2] != ["$JS", "ACK"] or len(parts) not in (9, 12):
        return None
    i = 5 if len(parts) == 9 else 7
    try:
        return int(parts[i]), int(parts[i + 2])
    except ValueError:
        return None


# ---- helpers -------------------------------------------------------------------------------
_TOKEN_BAD = re.compile(r"[^A-Za-z0-9_-]")


def token(value: str) -> str:
    """Make a value safe as one subject token (no dots, spaces or wildcards)."""
    return _TOKEN_BAD.sub("_", value) or NO_RUN
