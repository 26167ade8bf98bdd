"""subjects.md is the truth: every subject, stream, consumer and KV bucket the code uses is in it,
and every subject it lists is one the code uses."""

from __future__ import annotations

import re
from typing import Any

from pas.protocol import subjects as S
from pas.transport import provision
from tests.conftest import ROOT

DOC = (ROOT / "subjects.md").read_text()
BEGIN, END = "<!-- permissions:begin -->\n", "<!-- permissions:end -->"
PERMS_TABLE = DOC[DOC.index(BEGIN) + len(BEGIN):DOC.index(END)]
TICKED = set(re.findall(r"`([^`]+)`", DOC.replace(PERMS_TABLE, "")))  # the contract tables, not the grants


def generalise(subject: str, cfg: Any) -> str:
    parts = subject.split(".")
    ids = {a.id for a in cfg.agents}
    if len(parts) == 4 and parts[0] == "pas" and parts[2] in ids:
        role = "<role>" if parts[3] in ("health", "status") else parts[1]
        return f"pas.{role}.<agent_id>.{parts[3]}"
    if len(parts) == 4 and parts[0] == "pas" and parts[2] in S.LANES:
        return f"pas.{parts[1]}.<lane>.{parts[3]}"
    if len(parts) == 5 and parts[:2] == ["pas", "mgr"] and parts[2] in S.LANES and parts[4] == "*":
        return f"pas.mgr.<lane>.{parts[3]}.<agent_id>"  # a programmer's report (pas.runtime.taskowner)
    if len(parts) == 6 and parts[:2] == ["pas", "mgr"] and parts[2] in S.LANES and parts[4:] == ["*", "*"]:
        return f"pas.mgr.<lane>.{parts[3]}.<run_id>.<agent_id>"  # a programmer's start (pas.runtime.taskowner)
    if subject == S.gateway_as("*", parts[-1]):
        return S.gateway_as("<user>", parts[-1])
    return subject


def code_subjects(cfg: Any) -> set[str]:
    """Every subject pattern the code builds, with placeholders."""
    R, T, J, L, A = "RUNX", "TASKX", "JOBX", "LANEX", "AGENTX"

    def ph(s: str) -> str:
        return (s.replace(R, "<run_id>").replace(T, "<task_id>").replace(J, "<job_id>").replace(L, "<lane>")
                .replace(A, "<agent_id>").replace("MSGX", "<msg_type>").replace("PRIOX", "<priority>"))

    subs = {
        S.GATEWAY_SUBMIT, S.GATEWAY_STATUS, S.GATEWAY_RUNS, S.GATEWAY_CANCEL, S.PROG_EXECUTE,
        S.GATEWAY_PLAN, S.GATEWAY_APPROVE, S.GATEWAY_REJECT, ph(S.run_release(R, L)),
        ph(S.agent_endpoint("ROLEX", A, "health")).replace("ROLEX", "<role>"),
        ph(S.agent_endpoint("ROLEX", A, "status")).replace("ROLEX", "<role>"),
        ph(S.agent_endpoint("prog", A, "execute")),
        ph(S.lane_submit("mgr", L)), ph(S.task_done(L, A)), ph(S.task_started(L, A, R)), ph(S.child_done("dir", L)),
        S.ARCHITECT_DONE,
        ph(S.ctl(A, "set_model")), ph(S.ctl(A, "model_changed")),
        ph(S.heartbeat(A)), ph(S.alert_agent(A)), ph(S.comms(R, A, "MSGX")), ph(S.comms_record(R, "<rest>")),
        S.WORK_ARCHITECT, S.WORK_APPROVAL, ph(S.work_prog("PRIOX")), ph(S.work_dir(L)), ph(S.work_mgr(L)),
        ph(S.run_status(R)), ph(S.run_cancel(R)), ph(S.run_lane(R, L)), ph(S.run_job(R, J)), ph(S.run_task(R, T)),
        ph(S.done_plan(R)), ph(S.run_plan(R)),
        ph(S.replay(R, "run.<rest>")), ph(S.replay(R, "comms.<from_agent>.<msg_type>")), ph(S.replay(R, "end")),
        S.recording("<request_sha>"), *(S.gateway_as("<user>", a) for a in S.AS_ACTIONS),
    }
    return subs


def test_every_code_subject_is_documented(cfg: Any) -> None:
    missing = sorted(s for s in code_subjects(cfg) if s not in TICKED)
    assert not missing, f"subjects.md lacks: {missing}"


def test_every_documented_subject_exists_in_code(cfg: Any) -> None:
    documented = {t for t in TICKED if t.startswith("pas.") and " " not in t and not t.endswith(">")
                  and "*" not in t and "'" not in t}
    documented = {d for d in documented if re.fullmatch(r"[a-z._<>-]+", d)}
    extra = sorted(documented - code_subjects(cfg))
    assert not extra, f"subjects.md lists subjects the code does not use: {extra}"


async def test_live_endpoints_are_documented(stack: Any) -> None:
    seen = set()
    for agent in stack.agents:
        for ep in agent.service.info().endpoints:
            seen.add(generalise(ep.subject, stack.cfg))
    missing = sorted(s for s in seen if s not in TICKED)
    assert not missing, f"endpoints not in subjects.md: {missing}"
    assert seen <= code_subjects(stack.cfg)


def test_streams_consumers_buckets_documented(cfg: Any) -> None:
    for sc in provision.stream_configs(cfg):
        assert sc.name in TICKED, sc.name
        for subj in sc.subjects or []:
            assert subj in TICKED, subj
    for stream, cc in provision.consumer_specs(cfg):
        name = cc.durable_name or ""
        for lane in S.LANES:
            name = name.replace(f"-{lane}", "-<lane>") if name.startswith(("dir-", "mgr-")) else name
        filt = cc.filter_subject or ""
        for lane in S.LANES:
            filt = filt.replace(f".{lane}", ".<lane>")
        assert name in TICKED, name
        assert filt in TICKED, filt
        row = next(line for line in DOC.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"`{stream}`" in row and f"`{filt}`" in row, row
    for kc in provision.kv_specs(cfg):
        assert kc.bucket in TICKED, kc.bucket
    # the streams the monitor watches and may restart are the ones provisioned with sources
    assert sorted(S.SOURCING_STREAMS) == sorted(sc.name for sc in provision.stream_configs(cfg) if sc.sources)


def test_code_subjects_list_is_complete() -> None:
    """Every subject constant and builder in pas.protocol.subjects is in code_subjects() (so in subjects.md)."""
    import inspect

    from tests.conftest import make_cfg

    known = code_subjects(make_cfg())
    for name, value in vars(S).items():
        if name.startswith("_"):
            continue
        if isinstance(value, str) and value.startswith("pas.") and "*" not in value and ">" not in value:
            assert value in known, f"subjects.{name} = {value!r} is not in code_subjects()/subjects.md"
        elif inspect.isfunction(value) and value.__module__ == S.__name__ and name not in (
                "token", "consumer_dir", "consumer_mgr"):
            args = ["X"] * len(inspect.signature(value).parameters)
            out = value(*args)
            if isinstance(out, str) and out.startswith("pas."):  # not the parsers
                def fits(doc: str, built: str = out) -> bool:  # token by token; placeholders match anything
                    a, b = doc.split("."), built.split(".")
                    if b[-1] == ">":  # a filter: its tokens before > lead to a documented subject
                        a, b = a[:len(b) - 1], b[:-1]
                    return len(a) == len(b) and all(x.startswith("<") or y in ("X", "_", "*") or x == y
                                                    for x, y in zip(a, b, strict=False))

                assert any(fits(k) for k in known), f"subjects.{name}() builds {out!r}, not documented"


def test_permissions_table_is_pas_auth() -> None:
    """subjects.md's permissions table is exactly what pas/transport/auth.py grants (python -m pas.transport.auth)."""
    from pas.transport import auth
    from tests.conftest import make_cfg

    assert auth.table_markdown(make_cfg()) == PERMS_TABLE, "subjects.md permissions table is stale: python -m pas.transport.auth"


def test_every_granted_pas_subject_is_documented() -> None:
    """Each pas.* subject a user may publish or subscribe is (a wildcard over) a documented subject."""
    from pas.transport import auth
    from tests.conftest import make_cfg

    cfg = make_cfg()
    documented = [d for d in TICKED if d.startswith("pas.") and " " not in d]

    def covers(grant: str, doc: str) -> bool:
        g, d = grant.split("."), doc.split(".")
        if g[-1] == ">":
            return len(d) >= len(g) and all(x in ("*", "<role>") or x == y or y.startswith("<") or x.startswith("<")
                                            for x, y in zip(g[:-1], d, strict=False))
        return len(g) == len(d) and all(x == y or x == "*" or x.startswith("<") or y.startswith("<")
                                        for x, y in zip(g, d, strict=False))

    for user, p in auth.permissions(cfg).items():
        for subject in p.publish + p.subscribe:
            if subject.startswith("pas."):
                gen = auth._generalise(f"`{subject}`").strip("`")
                assert any(covers(gen, d) for d in documented), f"{user}: {subject} matches nothing in subjects.md"
