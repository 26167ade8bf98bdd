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
"""

from __future__ import annotations

import re

PREFIX = "pas"

# Roles, as they appear in subjects. Role names are config values too (AgentConfig.role).
ROLES = ("gateway", "root", "architect", "dir", "mgr", "prog", "monitor")
LANES = ("code", "models", "data", "devsecops", "docs")

# ---- streams -------------------------------------------------------------------------------
STREAM_COMMS = "PAS_COMMS"
STREAM_WORK = "PAS_WORK"
STREAM_EVENTS = "PAS_EVENTS"
STREAM_RECORDINGS = "PAS_RECORDINGS"  # every model exchange (pas.recording)

# ---- KV buckets ----------------------------------------------------------------------------
KV_AGENTS = "pas_agents"  # key: agent id -> AgentState (heartbeat monitor)
KV_RUNS = "pas_runs"  # key: run id -> RunRecord
KV_TREE = "pas_tree"  # key: <run>.plan | <run>.lane.<lane> | <run>.job.<job> | <run>.task.<task>
KV_IDEMPOTENCY = "pas_idem"  # key: sha of idempotency key -> run id (TTL = dedupe window)
KV_MODELS = "pas_models"  # key: agent id -> live model override
KV_BREAKERS = "pas_breakers"  # key: model profile -> circuit-breaker state
KV_CLAIMS = "pas_claims"  # key: agent id -> the live instance that holds it (pas.claims)

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


def lane_submit(role: str, lane: str) -> str:
    """pas.dir.<lane>.submit / pas.mgr.<lane>.submit: shared by the lane's agents (queue group)."""
    return f"{PREFIX}.{role}.{lane}.submit"


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



# ---- comms log -----------------------------------------------------------------------------
NO_RUN = "_"  # run-id token for entries outside any run


def comms(run_id: str | None, from_agent: str, msg_type: str) -> str:
    return f"{PREFIX}.comms.{token(run_id or NO_RUN)}.{token(from_agent)}.{token(msg_type)}"


COMMS_ALL = "pas.comms.>"

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


def done_plan(run_id: str) -> str:
    """Every lane finished: consumed by root (root-done), which ends the run."""
    return f"{PREFIX}.run.{run_id}.done.plan"


def run_release(run_id: str, lane: str) -> str:
    """The approval decision for one lane: its managers release (or drop) the held tasks."""
    return f"{PREFIX}.run.{run_id}.release.{lane}"


RELEASE_FILTER = "pas.run.*.release.{lane}"
DONE_PLAN_FILTER = "pas.run.*.done.plan"

# ---- recordings of model exchanges (pas.recording) ------------------------------------------
RECORDINGS_ALL = "pas.rec.>"


def recording(request_sha: str) -> str:
    """pas.rec.<sha256 of the canonical request>: one model exchange (stream PAS_RECORDINGS)."""
    return f"{PREFIX}.rec.{request_sha}"


# ---- replay (pas replay --speed) -----------------------------------------------------------
REPLAY_ALL = "pas.replay.>"


def replay(run_id: str, rest: str) -> str:
    """pas.replay.<run>.run.<...> / .comms.<from>.<type> / .end: a past run re-published (core NATS)."""
    return f"{PREFIX}.replay.{token(run_id)}.{rest}"


# ---- helpers -------------------------------------------------------------------------------
_TOKEN_BAD = re.compile(r"[^A-Za-z0-9_-]")
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def token(value: str) -> str:
    """Make a value safe as one subject token (no dots, spaces or wildcards)."""
    return _TOKEN_BAD.sub("_", value) or NO_RUN
