"""Least-privilege NATS users, generated from the topology.

One NATS user per role (`client`, the seven agent tiers, `adapter`, `admin`), each allowed to publish
and subscribe only the subjects its role uses (subjects.md, "Permissions") plus the JetStream API
calls on its own consumers and buckets. Every user has its own inbox prefix (`_INBOX.<user>`), so
no user can read another's replies.

    creds = ensure_creds(creds_dir)           # passwords, generated once, files 0600
    server_block(cfg, creds)                  # `authorization { users = [...] }` for nats-server
    connect_kw(creds["programmer"])           # user=, password=, inbox_prefix= for nats.connect

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

from pas import subjects as S
from pas import wire
from pas.configdoc import TIER_OF_ROLE
from pas.errors import PasError
from pas.redact import register_value

AGENT_USERS = tuple(TIER_OF_ROLE.values())  # gateway root architect director manager programmer monitor
USERS = ("client", *AGENT_USERS, "adapter", "admin")
ROLE_OF_USER = {user: role for role, user in TIER_OF_ROLE.items()}

if TYPE_CHECKING:  # the client commands load no pydantic (pas.configdoc)
    from pas.config import PasConfig
    from pas.configdoc import ClientConfig


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


Rule = str | Grant


@dataclass
class Perms:
    publish: list[str] = field(default_factory=list)
    subscribe: list[str] = field(default_factory=list)
    allow_responses: int = 0
    """Replies allowed per request received (0: none)."""
    doc_publish: list[str] = field(default_factory=list)
    doc_subscribe: list[str] = field(default_factory=list)

    def add(self, pub: list[Rule] | tuple[Rule, ...] = (), sub: list[Rule] | tuple[Rule, ...] = ()) -> Perms:
        for rules, subjects, doc in ((pub, self.publish, self.doc_publish), (sub, self.subscribe, self.doc_subscribe)):
            for r in rules:
                label, subs = (r.label, r.subjects) if isinstance(r, Grant) else (f"`{r}`", (r,))
                subjects += [x for x in subs if x not in subjects]
                if label not in doc:
                    doc.append(label)
        return self


# ---- JetStream grants ----------------------------------------------------------------------
def consume(stream: str, durable: str) -> Grant:
    """Pull from one durable consumer and ack/nak/in-progress its messages."""
    return Grant(f"consume `{stream}`/`{durable}`",
                 (S.js_next(stream, durable), S.js_acks(stream, durable)))


def read_stream(stream: str) -> Grant:
    """Read a stream through short-lived consumers of one's own (pas log, KV listings)."""
    return Grant(f"read `{stream}`",
                 (S.js_api("STREAM", "INFO", stream), S.js_api("CONSUMER", "CREATE", stream),
                  S.js_api("CONSUMER", "CREATE", stream, ">"), S.js_api("CONSUMER", "INFO", stream, "*"),
                  S.js_next(stream, "*"), S.js_api("CONSUMER", "DELETE", stream, "*")))


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


# ---- per-role rules ------------------------------------------------------------------------
MAX_REPLIES = 1000
"""Replies one connection may send per request it receives. A $SRV.PING is answered by every agent on
the connection (a process runs many agents of a role, more with a --agents overlay)."""


def _agent_common(cfg: PasConfig, user: str) -> Perms:
    """What the agent runtime (pas.agent.Agent, pas.claims) does for every agent of a role. Agent ids are
    wildcards, not the topology's list: a process may add ids with a --agents overlay."""
    role = ROLE_OF_USER[user]
    p = Perms(allow_responses=MAX_REPLIES)
    p.add(sub=[S.SRV_ALL, f"{S.inbox_prefix(user)}.>", S.agent_endpoint(role, "*", "health"),
               S.agent_endpoint(role, "*", "status"), S.ctl("*", "set_model")],
          pub=[S.COMMS_ALL, S.js_api("STREAM", "INFO", "*"), S.heartbeat("*"), S.ctl("*", "model_changed"),
               kv_write(S.KV_MODELS, "*"), kv_read(S.KV_MODELS, "*"),
               kv_write(S.KV_CLAIMS, "*"), kv_read(S.KV_CLAIMS, "*"), S.SRV_PING_ALL])
    return p


LLM_USERS = ("architect", "director", "manager", "programmer")  # they call models: usage and breakers


def _role_rules(cfg: PasConfig, user: str) -> Perms:
    p = _agent_common(cfg, user)
    run_readers = ("gateway", "root", "architect", "director", "manager", "programmer")
    if user in run_readers:
        p.add(pub=[kv_read(S.KV_RUNS)])
    if user in ("gateway", "root", "architect", "director", "manager", "programmer"):  # root: integration
        p.add(pub=[kv_read(S.KV_TREE)])
    if user in ("architect", "director", "manager"):  # runs.mark_degraded notes a fallback on the run
        p.add(pub=[kv_write(S.KV_RUNS, "*")])
    if user in ("director", "manager", "programmer"):
        # pas.runs.child_done: whoever records a parent's last child finishes the parent, up the tree
        # (a programmer its task's job, lane and plan; a manager at approval; a director a cancelled lane).
        p.add(pub=[kv_write(S.KV_TREE, S.job_key("*", "*")), kv_write(S.KV_TREE, S.lane_key("*", "*")),
                   kv_write(S.KV_TREE, S.plan_key("*")),
                   S.run_job("*", "*"), S.run_lane("*", "*"), S.done_plan("*")])
    if user in LLM_USERS:
        p.add(pub=[kv_write(S.KV_TREE, S.usage_key("*")), kv_write(S.KV_BREAKERS, ">"),
                   # every exchange recorded; a rerun reads recordings, notes a divergence, cancels on it
                   S.RECORDINGS_ALL, Grant(f"get from `{S.STREAM_RECORDINGS}`",
                                           (S.js_api("STREAM", "MSG", "GET", S.STREAM_RECORDINGS),)),
                   kv_write(S.KV_TREE, S.divergence_key("*")), kv_write(S.KV_TREE, S.forked_key("*")),
                   S.GATEWAY_CANCEL])
    if user == "gateway":
        p.add(sub=[S.GATEWAY_SUBMIT, S.GATEWAY_STATUS, S.GATEWAY_RUNS, S.GATEWAY_CANCEL, S.GATEWAY_PLAN,
                   S.GATEWAY_APPROVE, S.GATEWAY_REJECT],
              pub=[consume(S.STREAM_WORK, S.CONSUMER_APPROVAL), S.WORK_APPROVAL, S.run_release("*", "*"),
                   S.WORK_ARCHITECT, S.run_status("*"), S.run_cancel("*"), kv_write(S.KV_RUNS, "*"),
                   kv_write(S.KV_TREE, S.request_key("*")), kv_write(S.KV_IDEMPOTENCY, "*"), kv_read(S.KV_IDEMPOTENCY)])
    elif user == "root":
        p.add(pub=[consume(S.STREAM_EVENTS, S.CONSUMER_ROOT_DONE), S.run_status("*"), kv_write(S.KV_RUNS, "*")])
    elif user == "architect":
        p.add(pub=[consume(S.STREAM_WORK, S.CONSUMER_ARCHITECT), S.run_status("*"),  # the run starts
                   *[S.work_dir(lane) for lane in _lanes(cfg, "dir")], kv_write(S.KV_TREE, S.plan_key("*"))])
    elif user == "director":
        for lane in _lanes(cfg, "dir"):
            p.add(pub=[consume(S.STREAM_WORK, S.consumer_dir(lane)),
                       S.work_mgr(lane), kv_write(S.KV_TREE, S.lane_key("*", lane))])
    elif user == "manager":
        for lane in _lanes(cfg, "mgr"):
            p.add(sub=[S.lane_submit("mgr", lane)],
                  pub=[consume(S.STREAM_WORK, S.consumer_mgr(lane)),
                       consume(S.STREAM_EVENTS, S.consumer_mgr_release(lane)), S.work_mgr(lane)])
        # Approval mode: the manager completing a plan moves the run to waiting_approval.
        p.add(pub=[S.WORK_PROG_ALL, S.WORK_APPROVAL, S.run_status("*"), S.run_job("*", "*"), S.run_task("*", "*"),
                   kv_write(S.KV_TREE, S.job_key("*", "*")), kv_write(S.KV_TREE, S.task_key("*", "*"))])
    elif user == "programmer":
        p.add(sub=[S.agent_endpoint("prog", "*", "execute"), S.PROG_EXECUTE, S.RUN_CANCEL_ALL,
                   S.WORK_PROG_ALL],  # wake-up of an idle pool (pas.priority)
              pub=[*[consume(S.STREAM_WORK, S.consumer_prog(b)) for b in wire.PRIORITIES], S.run_task("*", "*"),
                   kv_write(S.KV_TREE, S.task_key("*", "*"))])
    elif user == "monitor":
        p.add(sub=[S.HEARTBEAT_ALL],
              pub=[S.alert_agent("*"), kv_write(S.KV_AGENTS, "*"), kv_read(S.KV_AGENTS)])
    return p


# Requests any client may make: the gateway's endpoints, every agent's health/status, micro discovery.
REQUESTS = (S.GATEWAY_SUBMIT, S.GATEWAY_STATUS, S.GATEWAY_RUNS, S.GATEWAY_CANCEL, S.GATEWAY_PLAN,
            S.GATEWAY_APPROVE, S.GATEWAY_REJECT,
            S.agent_endpoint("*", "*", "health"), S.agent_endpoint("*", "*", "status"), S.SRV_ALL)


def permissions(cfg: PasConfig) -> dict[str, Perms]:
    """user -> its permissions, for this topology."""
    out = {u: _role_rules(cfg, u) for u in AGENT_USERS}
    out["client"] = Perms().add(
        pub=[*REQUESTS, read_stream(S.STREAM_COMMS), kv_read(S.KV_AGENTS), kv_read(S.KV_MODELS),
             kv_read(S.KV_BREAKERS), S.js_api("STREAM", "INFO", "*"), S.JS_FLOW_CONTROL_ALL,
             # pas replay (PAS_EVENTS, --rebuild against KV, --speed), pas rerun (its spec, its comms entry), pas diff
             read_stream(S.STREAM_EVENTS), kv_read(S.KV_RUNS), kv_read(S.KV_TREE), S.REPLAY_ALL,
             kv_write(S.KV_TREE, S.rerun_key("*")), S.comms_filter(from_agent="client"),
             # `nats stream view PAS_COMMS` acks what it shows (its own consumer: the log has no work consumers)
             S.js_acks(S.STREAM_COMMS, "*")],
        sub=[S.EVENTS_ALL, S.COMMS_ALL, S.REPLAY_ALL, f"{S.inbox_prefix('client')}.>"])
    out["adapter"] = Perms().add(
        pub=[*REQUESTS, S.lane_submit("mgr", "*"), S.agent_endpoint("prog", "*", "execute"), S.PROG_EXECUTE,
             S.ctl("*", "set_model"), read_stream(S.STREAM_COMMS), kv_read(S.KV_AGENTS), kv_read(S.KV_MODELS),
             kv_read(S.KV_TREE), S.js_api("STREAM", "INFO", "*"), read_stream(S.STREAM_EVENTS)],  # + timelines
        sub=[S.HEARTBEAT_ALL, S.ALERT_ALL, S.EVENTS_ALL, S.COMMS_ALL, S.REPLAY_ALL, S.ctl("*", "model_changed"),
             f"{S.inbox_prefix('adapter')}.>"])
    out["admin"] = Perms().add(pub=[S.CTL_ALL, S.JS_API_ALL, S.SRV_ALL],
                               sub=[S.CTL_ALL, f"{S.inbox_prefix('admin')}.>"])
    return {u: out[u] for u in USERS}


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


def ensure_creds(directory: Path) -> dict[str, Creds]:
    """Every user's credentials: read from directory/<user>.json, generated once if missing (0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    out = load_creds(directory)
    for user in USERS:
        if user not in out:
            out[user] = Creds(user, secrets.token_urlsafe(24))
            _write_private(directory / f"{user}.json",
                           json.dumps({"user": user, "password": out[user].password}) + "\n")
            register_value(out[user].password)
    return out


def load_creds(directory: Path) -> dict[str, Creds]:
    out: dict[str, Creds] = {}
    if not directory.is_dir():
        return out
    for user in USERS:
        p = directory / f"{user}.json"
        if p.is_file():
            try:
                d = json.loads(p.read_text())
                out[user] = Creds(str(d["user"]), str(d["password"]))
                register_value(out[user].password)  # never shown in a log, an error or a comms entry
            except (OSError, ValueError, KeyError) as e:
                raise PasError(f"credentials file {p} is unreadable: {e}") from None
    return out


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
    for user in USERS:
        p = perms[user]
        entry: dict[str, Any] = {"user": user, "password": creds[user].password,
                                 "permissions": {"publish": {"allow": p.publish},
                                                 "subscribe": {"allow": p.subscribe}}}
        if p.allow_responses:
            entry["permissions"]["allow_responses"] = {"max": p.allow_responses}
        lines.append("    " + json.dumps(entry) + ",")
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def _generalise(label: str) -> str:
    """The topology's lanes in a rule, shown as <lane> (dir-code -> dir-<lane>)."""

    def one(subject: str) -> str:
        parts = subject.split(".")
        for i, tok in enumerate(parts):
            m = re.fullmatch(r"(dir|mgr)-([a-z]+)(-done)?", tok)
            if tok in S.LANES and parts[0] != S.INBOX_HEAD:
                parts[i] = "<lane>"
            elif m and m.group(2) in S.LANES:
                parts[i] = f"{m.group(1)}-<lane>{m.group(3) or ''}"
        return ".".join(parts)

    return re.sub(r"`([^`]+)`", lambda m: f"`{one(m.group(1))}`", label)


def table_rows(cfg: PasConfig) -> list[tuple[str, str, str]]:
    """(user, publish, subscribe) rows of subjects.md's permissions table."""
    rows = []
    for user, p in permissions(cfg).items():
        pub = list(dict.fromkeys(_generalise(x) for x in p.doc_publish))
        sub = list(dict.fromkeys(_generalise(x) for x in p.doc_subscribe))
        rows.append((user, ", ".join(pub), ", ".join(sub) + (", replies" if p.allow_responses else "")))
    return rows


def table_markdown(cfg: PasConfig) -> str:
    lines = ["| user | publish | subscribe |", "|---|---|---|"]
    lines += [f"| `{u}` | {pub} | {sub} |" for u, pub, sub in table_rows(cfg)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # regenerate subjects.md's permissions table: python -m pas.auth
    from pas.config import load_config

    print(table_markdown(load_config()), end="")
