"""Least-privilege NATS users, generated from the topology.

One NATS user per agent id (topology plus --agents overlays) and three service users (`client`,
`adapter`, `admin`). An agent may publish and subscribe only what its role uses (subjects.md,
"Permissions") and, where a subject or key names an agent, only its own id: heartbeat, claim, model
key, comms entries, breakers, endpoints. Records are granted to their owners (task and job: managers, who
store a task's result only from the programmer holding it; lane: its director; plan: the architect). Every
user has its own inbox prefix (`_INBOX.<user>`), so no user can read another's replies.

    creds = ensure_creds(creds_dir, users(cfg))   # passwords, generated once, files 0600
    server_block(cfg, creds)                      # `authorization { users = [...] }` for nats-server
    connect_kw(creds["prog-001"])                 # user=, password=, inbox_prefix= for nats.connect

Where `pas` finds credentials: --creds-dir, else $PAS_CREDS_DIR, else settings.nats.creds_dir, else
<settings.nats.data_dir>/creds (what `pas up` writes for its embedded server).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pas.base.errors import PasError
from pas.base.redact import register_value
from pas.protocol import subjects as S
from pas.protocol import wire

SERVICE_USERS = ("client", "adapter", "admin")
"""The users that are not agents; no agent id may take one of these names (pas.config.model refuses it)."""
ANONYMOUS = "anonymous"
"""Who a comms entry of a client's command names when it came on a plain gateway subject (no user in it)."""
OWN_RUNS_ONLY = ("client",)
"""Users that may cancel, approve or reject only the runs they submitted (pas.roles.gateway); `adapter`
(the HTTP adapter's token holders) and `admin` act on all runs."""

if TYPE_CHECKING:  # the client commands load no pydantic (pas.config.doc)
    from pas.config.doc import ClientConfig
    from pas.config.model import AgentConfig, PasConfig


def users(cfg: PasConfig) -> tuple[str, ...]:
    """Every NATS user of this topology (with its --agents overlays): client, one per agent id, adapter, admin."""
    return ("client", *(a.id for a in cfg.agents), "adapter", "admin")


@dataclass(frozen=True)
class Creds:
    user: str
    password: str

    @property
    def inbox_prefix(self) -> str:
        return S.inbox_prefix(self.user)


@dataclass(frozen=True)
class Grant:
    """Several JetStream API subjects that together give one right; `label` is how subjects.md shows it."""

    label: str
    subjects: tuple[str, ...]
    deny: tuple[str, ...] = ()
    """Subjects refused although `subjects` cover them (PAS's durable consumers under a reader's wildcard)."""


Rule = str | Grant


@dataclass
class Perms:
    publish: list[str] = field(default_factory=list)
    subscribe: list[str] = field(default_factory=list)
    allow_responses: int = 0
    """Replies allowed per request received (0: none)."""
    doc_publish: list[str] = field(default_factory=list)
    doc_subscribe: list[str] = field(default_factory=list)
    deny_publish: list[str] = field(default_factory=list)

    def add(self, pub: list[Rule] | tuple[Rule, ...] = (), sub: list[Rule] | tuple[Rule, ...] = ()) -> Perms:
        for rules, subjects, doc in ((pub, self.publish, self.doc_publish), (sub, self.subscribe, self.doc_subscribe)):
            for r in rules:
                label, subs = (r.label, r.subjects) if isinstance(r, Grant) else (f"`{r}`", (r,))
                subjects += [x for x in subs if x not in subjects]
                if isinstance(r, Grant):
                    self.deny_publish += [x for x in r.deny if x not in self.deny_publish]
                if label not in doc:
                    doc.append(label)
        return self


# ---- JetStream grants ----------------------------------------------------------------------
def consume(stream: str, durable: str) -> Grant:
    """Pull from one durable consumer and ack/nak/in-progress its messages."""
    return Grant(f"consume `{stream}`/`{durable}`",
                 (S.js_next(stream, durable), S.js_acks(stream, durable)))


def pas_durables(stream: str) -> list[str]:
    """PAS's durable consumers on a stream (every lane's, whether the topology has it or not)."""
    if stream == S.STREAM_EVENTS:
        return [S.CONSUMER_ROOT_DONE, *(S.consumer_mgr_release(lane) for lane in S.LANES)]
    if stream == S.STREAM_WORK:
        return [S.CONSUMER_ARCHITECT, S.CONSUMER_APPROVAL, *(S.consumer_dir(lane) for lane in S.LANES),
                *(S.consumer_mgr(lane) for lane in S.LANES), *(S.consumer_prog(b) for b in wire.PRIORITIES)]
    return []


def read_stream(stream: str) -> Grant:
    """Read a stream through short-lived consumers of one's own (pas log, KV listings). Their names are the
    server's, hence the wildcards; PAS's own durables on the stream are denied by name, so a reader can
    neither pull from one (stealing its deliveries) nor delete or redefine it."""
    deny = []
    for d in pas_durables(stream):
        deny += [S.js_next(stream, d), S.js_acks(stream, d), S.js_api("CONSUMER", "DELETE", stream, d),
                 S.js_api("CONSUMER", "CREATE", stream, d), S.js_api("CONSUMER", "CREATE", stream, d, ">")]
    return Grant(f"read `{stream}`",
                 (S.js_api("STREAM", "INFO", stream), S.js_api("CONSUMER", "CREATE", stream),
                  S.js_api("CONSUMER", "CREATE", stream, ">"), S.js_api("CONSUMER", "INFO", stream, "*"),
                  S.js_next(stream, "*"), S.js_api("CONSUMER", "DELETE", stream, "*")), tuple(deny))


def kv_read(bucket: str, key: str = ">") -> Grant:
    """Get keys and, for key=">", list the bucket. A direct get (what PAS provisions on a single server)
    names the key in its subject; a bucket without allow_direct (PAS on a cluster) is read with
    STREAM.MSG.GET, which names no key."""
    stream = S.kv_stream(bucket)
    subs = [S.js_api("DIRECT", "GET", stream, S.kv_subject(bucket, key)), S.js_api("STREAM", "MSG", "GET", stream)]
    if key == ">":
        subs += read_stream(stream).subjects
        return Grant(f"read KV `{bucket}`", tuple(subs))
    return Grant(f"get KV `{bucket}.{key}`", tuple(subs))


def kv_write(bucket: str, key: str) -> str:
    return S.kv_subject(bucket, key)


def _lanes(cfg: PasConfig, role: str) -> list[str]:
    return [lane for lane in S.LANES if any(a.lane == lane for a in cfg.by_role(role))]


# ---- per-agent rules -----------------------------------------------------------------------
MAX_REPLIES = 1000
"""Replies one connection may send per request it receives (a $SRV.PING, a request to a queue group)."""


def _agent_common(cfg: PasConfig, a: AgentConfig) -> Perms:
    """What the agent runtime (pas.agent.Agent, pas.runtime.claims) does, for this agent id only: its heartbeat,
    claim, comms entries (as sender), micro endpoints and discovery; it reads its model key (written by
    admin or the HTTP adapter: pas.transport.client.PasClient.set_model)."""
    p = Perms(allow_responses=MAX_REPLIES)
    p.add(sub=[S.SRV_ALL, f"{S.inbox_prefix(a.id)}.>", S.agent_endpoint(a.role, a.id, "health"),
               S.agent_endpoint(a.role, a.id, "status"), S.ctl(a.id, "set_model")],
          pub=[S.comms_filter(from_agent=a.id), S.js_api("STREAM", "INFO", "*"), S.heartbeat(a.id),
               S.ctl(a.id, "model_changed"), kv_read(S.KV_MODELS, a.id),  # overrides are admin's and the adapter's
               kv_write(S.KV_CLAIMS, a.id), kv_read(S.KV_CLAIMS, a.id), S.srv_ping(a.id, "*")])
    return p


LLM_ROLES = ("architect", "dir", "mgr", "prog")  # they call models: usage, breakers, recordings


def agent_perms(cfg: PasConfig, a: AgentConfig) -> Perms:
    """The rights of one agent id. The completion walk goes up by owner (pas.runtime.runs): a programmer tells the
    job's managers (pas.mgr.<lane>.done.<its id>), who write the task record if it holds the task
    (pas.runtime.taskowner); a manager writes job records and tells the
    lane's director (pas.dir.<lane>.done); a director writes its lane's record and tells the architect
    (pas.architect.lanes.done); only the architect writes plan records and publishes done.plan."""
    p = _agent_common(cfg, a)
    role, lane = a.role, a.lane or ""
    if role in ("gateway", "root", "architect", "dir", "mgr", "prog"):
        p.add(pub=[kv_read(S.KV_RUNS), kv_read(S.KV_TREE)])
    if role in ("architect", "dir", "mgr"):  # runs.mark_degraded notes a fallback on the run
        p.add(pub=[kv_write(S.KV_RUNS, "*")])
    if role in LLM_ROLES:
        p.add(pub=[kv_write(S.KV_TREE, S.usage_key("*", a.id)), kv_write(S.KV_BREAKERS, S.breaker_key(a.id, ">")),
                   # every exchange recorded; a rerun reads recordings, notes a divergence
                   S.RECORDINGS_ALL, Grant(f"get from `{S.STREAM_RECORDINGS}`",
                                           (S.js_api("STREAM", "MSG", "GET", S.STREAM_RECORDINGS),)),
                   kv_write(S.KV_TREE, S.divergence_key("*", a.id)),
                   kv_write(S.KV_TREE, S.forked_key("*", a.id))])
    if role in ("architect", "dir", "mgr"):
        p.add(pub=[S.GATEWAY_CANCEL])  # a diverged rerun is cancelled (pas.runtime.rerun)
    if role == "gateway":
        # it logs clients' commands as the user that sent them (pas.gateway.as.<user>.*), else `anonymous`
        p.add(pub=[S.comms_filter(from_agent=u, msg_type="CMD") for u in (*SERVICE_USERS, ANONYMOUS)])
        p.add(sub=[S.GATEWAY_SUBMIT, S.GATEWAY_STATUS, S.GATEWAY_RUNS, S.GATEWAY_CANCEL, S.GATEWAY_PLAN,
                   S.GATEWAY_APPROVE, S.GATEWAY_REJECT, *(S.gateway_as("*", a) for a in S.AS_ACTIONS)],
              pub=[consume(S.STREAM_WORK, S.CONSUMER_APPROVAL), S.WORK_APPROVAL, S.run_release("*", "*"),
                   S.WORK_ARCHITECT, S.run_status("*"), S.run_cancel("*"), kv_write(S.KV_RUNS, "*"),
                   kv_write(S.KV_TREE, S.request_key("*")), kv_write(S.KV_IDEMPOTENCY, "*"), kv_read(S.KV_IDEMPOTENCY)])
    elif role == "root":
        p.add(pub=[consume(S.STREAM_EVENTS, S.CONSUMER_ROOT_DONE), S.run_status("*"), kv_write(S.KV_RUNS, "*")])
    elif role == "architect":
        p.add(sub=[S.ARCHITECT_DONE],
              pub=[consume(S.STREAM_WORK, S.CONSUMER_ARCHITECT), S.run_status("*"),  # the run starts
                   *[S.work_dir(x) for x in _lanes(cfg, "dir")], kv_write(S.KV_TREE, S.plan_key("*")),
                   S.done_plan("*")])
    elif role == "dir":
        p.add(sub=[S.child_done("dir", lane)],
              pub=[consume(S.STREAM_WORK, S.consumer_dir(lane)), S.work_mgr(lane),
                   kv_write(S.KV_TREE, S.lane_key("*", lane)), S.run_lane("*", lane), S.ARCHITECT_DONE])
    elif role == "mgr":
        p.add(sub=[S.lane_submit("mgr", lane), S.task_started(lane, "*"), S.task_done(lane, "*")],
              pub=[consume(S.STREAM_WORK, S.consumer_mgr(lane)), consume(S.STREAM_EVENTS, S.consumer_mgr_release(lane)),
                   S.work_mgr(lane), S.WORK_PROG_ALL, S.WORK_APPROVAL, S.run_status("*"), S.run_job("*", "*"),
                   S.run_task("*", "*"), kv_write(S.KV_TREE, S.job_key("*", "*")),
                   kv_write(S.KV_TREE, S.task_key("*", "*")), S.child_done("dir", lane)])
    elif role == "prog":
        p.add(sub=[S.agent_endpoint("prog", a.id, "execute"), S.PROG_EXECUTE, S.RUN_CANCEL_ALL,
                   S.WORK_PROG_ALL],  # wake-up of an idle pool (pas.runtime.priority)
              # no task record nor its event: it tells the lane's managers, under its own id, what it took and
              # what came of it; they write the record if it holds the task (pas.runtime.taskowner)
              pub=[*[consume(S.STREAM_WORK, S.consumer_prog(b)) for b in wire.PRIORITIES],
                   S.task_started("*", a.id), S.task_done("*", a.id)])
    elif role == "monitor":
        p.add(sub=[S.HEARTBEAT_ALL],
              pub=[S.alert_agent("*"), kv_write(S.KV_AGENTS, "*"), kv_read(S.KV_AGENTS),
                   # a stalled source restarted (pas.roles.monitor)
                   *(S.js_api("STREAM", "LEADER", "STEPDOWN", st) for st in S.SOURCING_STREAMS)])
    return p


# Requests any client may make: reads of the gateway, every agent's health/status, micro discovery; and
# the gateway's actions on runs under its own name (pas.gateway.as.<user>.*).
READS = (S.GATEWAY_SUBMIT, S.GATEWAY_STATUS, S.GATEWAY_RUNS, S.GATEWAY_PLAN,
         S.agent_endpoint("*", "*", "health"), S.agent_endpoint("*", "*", "status"), S.SRV_ALL)


def requests(user: str) -> tuple[str, ...]:
    """What `user` may ask: READS, its own pas.gateway.as.<user>.* and, unless it may act only on its own
    runs (OWN_RUNS_ONLY), the anonymous cancel, approve and reject too."""
    anonymous = () if user in OWN_RUNS_ONLY else (S.GATEWAY_CANCEL, S.GATEWAY_APPROVE, S.GATEWAY_REJECT)
    return (*READS, *anonymous, *(S.gateway_as(user, a) for a in S.AS_ACTIONS))


def permissions(cfg: PasConfig) -> dict[str, Perms]:
    """user -> its permissions, for this topology (one user per agent id)."""
    out = {a.id: agent_perms(cfg, a) for a in cfg.agents}
    out["client"] = Perms().add(
        pub=[*requests("client"), read_stream(S.STREAM_COMMS), kv_read(S.KV_AGENTS), kv_read(S.KV_MODELS),
             kv_read(S.KV_BREAKERS), S.js_api("STREAM", "INFO", "*"), S.JS_FLOW_CONTROL_ALL,
             # pas replay (PAS_EVENTS, --rebuild against KV, --speed), pas rerun (its spec, its comms entry), pas diff
             read_stream(S.STREAM_EVENTS), kv_read(S.KV_RUNS), kv_read(S.KV_TREE), S.REPLAY_ALL,
             kv_write(S.KV_TREE, S.rerun_key("*")), S.comms_filter(from_agent="client"),
             # `nats stream view PAS_COMMS` acks what it shows (its own consumer: the log has no work consumers)
             S.js_acks(S.STREAM_COMMS, "*")],
        sub=[S.EVENTS_ALL, S.COMMS_ALL, S.REPLAY_ALL, f"{S.inbox_prefix('client')}.>"])
    out["adapter"] = Perms().add(
        pub=[*requests("adapter"), S.lane_submit("mgr", "*"), S.agent_endpoint("prog", "*", "execute"), S.PROG_EXECUTE,
             S.ctl("*", "set_model"), kv_write(S.KV_MODELS, "*"),  # the HMI's model switch writes the override
             read_stream(S.STREAM_COMMS), kv_read(S.KV_AGENTS), kv_read(S.KV_MODELS),
             kv_read(S.KV_TREE), S.js_api("STREAM", "INFO", "*"), read_stream(S.STREAM_EVENTS)],  # + timelines
        sub=[S.HEARTBEAT_ALL, S.ALERT_ALL, S.EVENTS_ALL, S.COMMS_ALL, S.REPLAY_ALL, S.ctl("*", "model_changed"),
             f"{S.inbox_prefix('adapter')}.>"])
    out["admin"] = Perms().add(pub=[*requests("admin"), S.CTL_ALL, S.JS_API_ALL, S.JS_FLOW_CONTROL_ALL,
                                    kv_write(S.KV_MODELS, "*")],  # `pas model` writes the override
                               sub=[S.CTL_ALL, f"{S.inbox_prefix('admin')}.>"])
    return {u: out[u] for u in users(cfg)}


# ---- credentials ---------------------------------------------------------------------------
def creds_dir(cfg: PasConfig | ClientConfig, data_dir: str | Path | None = None) -> Path:
    """settings.nats.creds_dir (--creds-dir, else $PAS_CREDS_DIR, else pas.yaml), else <data dir>/creds."""
    if cfg.settings.nats.creds_dir:
        return Path(cfg.settings.nats.creds_dir)
    return Path(data_dir or cfg.settings.nats.data_dir) / "creds"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def ensure_creds(directory: Path, names: tuple[str, ...] | list[str]) -> dict[str, Creds]:
    """The credentials of these users (users(cfg)): read from directory/<user>.json, generated once if
    missing (0600). A user added later (a new agent id) gets its file then; the others keep theirs."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    out = load_creds(directory)
    for user in names:
        if user not in out:
            out[user] = Creds(user, secrets.token_urlsafe(24))
            _write_private(directory / f"{user}.json",
                           json.dumps({"user": user, "password": out[user].password}) + "\n")
            register_value(out[user].password)
    return out


def load_creds(directory: Path) -> dict[str, Creds]:
    """Every <user>.json in directory."""
    out: dict[str, Creds] = {}
    if not directory.is_dir():
        return out
    for p in sorted(directory.glob("*.json")):
        user = p.stem
        if p.is_file():
            try:
                d = json.loads(p.read_text())
                out[user] = Creds(str(d["user"]), str(d["password"]))
                register_value(out[user].password)  # never shown in a log, an error or a comms entry
            except (OSError, ValueError, KeyError) as e:
                raise PasError(f"credentials file {p} is unreadable: {e}") from None
    return out


def missing_user(user: str, where: Path) -> PasError:
    """An agent id with no NATS user: the server's users were made for a topology without it."""
    return PasError(f"no NATS user for agent {user!r} in {where}: each agent id is a user of the server, listed "
                    "when the server's users are made. Give its --agents overlay to the `pas up` that starts the "
                    "server (or to `pas nats-config`, then reload that server)")


def user_creds(cfg: PasConfig | ClientConfig, user: str, data_dir: str | Path | None = None) -> Creds | None:
    """The credentials `pas` uses as `user`, or None if none are stored (a server without auth)."""
    if cfg.settings.nats.auth == "off":
        return None
    return load_creds(creds_dir(cfg, data_dir)).get(user)


def connect_kw(creds: Creds | None) -> dict[str, Any]:
    if creds is None:
        return {}
    return {"user": creds.user, "password": creds.password, "inbox_prefix": creds.inbox_prefix}


# ---- nats-server config --------------------------------------------------------------------
def server_block(cfg: PasConfig, creds: dict[str, Creds]) -> str:
    """The `authorization { users = [...] }` block for nats-server (JSON values are valid NATS conf)."""
    perms = permissions(cfg)
    lines = ["authorization {", "  users = ["]
    for user, p in perms.items():
        publish: dict[str, list[str]] = {"allow": p.publish}
        if p.deny_publish:
            publish["deny"] = p.deny_publish
        entry: dict[str, Any] = {"user": user, "password": creds[user].password,
                                 "permissions": {"publish": publish, "subscribe": {"allow": p.subscribe}}}
        if p.allow_responses:
            entry["permissions"]["allow_responses"] = {"max": p.allow_responses}
        lines.append("    " + json.dumps(entry) + ",")
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def _generalise(label: str, agent_id: str = "") -> str:
    """The topology's lanes in a rule, shown as <lane> (dir-code -> dir-<lane>), and the agent's own id in a
    subject as <agent_id>."""

    def one(subject: str) -> str:
        parts = subject.split(".")
        for i, tok in enumerate(parts):
            m = re.fullmatch(r"(dir|mgr)-([a-z]+)(-done)?", tok)
            if agent_id and tok == agent_id and len(parts) > 1:
                parts[i] = "<agent_id>"
            elif tok in S.LANES and parts[0] != S.INBOX_HEAD:
                parts[i] = "<lane>"
            elif m and m.group(2) in S.LANES:
                parts[i] = f"{m.group(1)}-<lane>{m.group(3) or ''}"
        return ".".join(parts)

    return re.sub(r"`([^`]+)`", lambda m: f"`{one(m.group(1))}`", label)


def table_rows(cfg: PasConfig) -> list[tuple[str, str, str]]:
    """(user, publish, subscribe) rows of subjects.md's permissions table: the service users, and one row per
    role for its agents (each agent id is a user of its own; the row shows the first one's rights)."""
    perms = permissions(cfg)
    first: dict[str, AgentConfig] = {}
    for a in cfg.agents:
        first.setdefault(a.role, a)
    # (an id that is also its role's name, `gateway`, stays as it is: it names the role's subjects too)
    who = [("client", "`client`", ""),
           *((a.id, f"`{a.id}`" if a.id == a.role else f"each `{a.role}` agent", "" if a.id == a.role else a.id)
             for a in first.values()),
           ("adapter", "`adapter`", ""), ("admin", "`admin`", "")]
    rows = []
    for user, label, agent_id in who:
        p = perms[user]
        pub = list(dict.fromkeys(_generalise(x, agent_id) for x in p.doc_publish))
        sub = list(dict.fromkeys(_generalise(x, agent_id) for x in p.doc_subscribe))
        rows.append((label, ", ".join(pub), ", ".join(sub) + (", replies" if p.allow_responses else "")))
    return rows


def table_markdown(cfg: PasConfig) -> str:
    lines = ["| user | publish | subscribe |", "|---|---|---|"]
    lines += [f"| {u} | {pub} | {sub} |" for u, pub, sub in table_rows(cfg)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # regenerate subjects.md's permissions table: python -m pas.transport.auth
    from pas.config.model import load_config

    print(table_markdown(load_config()), end="")
