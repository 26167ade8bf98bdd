"""The HTTP request models (pas/surfaces/http/models.py) mirror the wire types field for field: same names,
same types, same defaults, and limits never looser than the wire's. Checked through the JSON Schema
each side publishes (pydantic's model_json_schema, msgspec.json.schema), so any field, type or limit
that drifts fails here."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from pydantic import BaseModel

from pas.protocol import wire
from pas.surfaces.http import models as M

try:  # the wire type's home (it moves from the programmer role into pas.protocol.wire)
    ExecuteRequest: Any = wire.ExecuteRequest  # type: ignore[attr-defined]
except AttributeError:
    from pas.roles.programmer import ExecuteRequest

PAIRS: list[tuple[type[BaseModel], Any]] = [
    (M.TaskIn, wire.TaskSpec), (M.BudgetIn, wire.Budget), (M.JobSubmitIn, wire.JobSubmit),
    (M.JobCardIn, wire.JobCardSubmit), (M.ExecuteIn, ExecuteRequest), (M.DecisionIn, wire.Decision),
]
NAMES = {m.__name__: s.__name__ for m, s in PAIRS}
# HTTP-only fields, and fields the HTTP side may leave out because to_wire() fills them.
HTTP_ONLY = {("ExecuteIn", "task")}
WIRE_ONLY = {("DecisionIn", "run_id")}  # from the URL path
FILLED = {("ExecuteIn", "instruction"), ("JobCardIn", "lane")}
UPPER = ("maxLength", "maxItems", "maximum")  # HTTP value <= wire value
LOWER = ("minLength", "minItems", "minimum", "exclusiveMinimum")  # HTTP value >= wire value


def _props(schema: dict[str, Any]) -> dict[str, Any]:
    return schema.get("properties", {})


def _shape(s: dict[str, Any], defs: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """(nullable, the schema without null, titles/descriptions/defaults dropped, refs as names)."""
    nullable = False
    if "anyOf" in s:
        alts = [a for a in s["anyOf"] if a != {"type": "null"}]
        nullable = len(alts) < len(s["anyOf"])
        s = alts[0] if len(alts) == 1 else {"anyOf": alts}
    out: dict[str, Any] = {}
    for k, v in s.items():
        if k in ("title", "description", "default"):
            continue
        if k == "$ref":
            out["ref"] = NAMES.get(v.rsplit("/", 1)[1], v.rsplit("/", 1)[1])
        elif k == "items":
            out["items"] = _shape(v, defs)[1]
        elif k == "enum":
            out["enum"] = sorted(v, key=str)
        else:
            out[k] = v
    if "enum" in out:
        out.pop("type", None)  # pydantic adds the enum's JSON type, msgspec does not
    return nullable, out


def _limits(shape: dict[str, Any]) -> dict[str, Any]:
    return {k: shape.pop(k) for k in (*UPPER, *LOWER, "pattern") if k in shape}


@pytest.mark.parametrize(("model", "struct"), PAIRS, ids=[m.__name__ for m, _ in PAIRS])
def test_http_model_mirrors_wire_type(model: type[BaseModel], struct: Any) -> None:
    (_,), wdefs = msgspec.json.schema_components([struct])
    wprops, hprops = _props(wdefs[struct.__name__]), _props(model.model_json_schema())
    name = model.__name__
    assert {f for f in hprops if (name, f) not in HTTP_ONLY} == {f for f in wprops if (name, f) not in WIRE_ONLY}, \
        f"{name} and {struct.__name__} have different fields"
    wreq = set(wdefs[struct.__name__].get("required", []))
    problems = []
    for field in set(hprops) & set(wprops):
        (hn, hs), (wn, ws) = _shape(hprops[field], {}), _shape(wprops[field], {})
        where = f"{name}.{field}"
        if hn != wn and (name, field) not in FILLED:
            problems.append(f"{where}: nullable {hn} on HTTP, {wn} on the wire")
        hl, wl = _limits(hs), _limits(ws)
        for sub in ("items",):  # limits inside list items
            if sub in hs and sub in ws:
                hl.update({f"{sub}.{k}": v for k, v in _limits(hs[sub]).items()})
                wl.update({f"{sub}.{k}": v for k, v in _limits(ws[sub]).items()})
        if hs != ws:
            problems.append(f"{where}: type {hs} on HTTP, {ws} on the wire")
        for k, wv in wl.items():  # the HTTP side may add limits (a pattern, a bound), never loosen one
            hv, kind = hl.get(k), k.rsplit(".", 1)[-1]
            if hv is None or (hv != wv if kind == "pattern" else hv > wv if kind in UPPER else hv < wv):
                problems.append(f"{where}: {k} {hv} on HTTP is looser than {wv} on the wire")
        hdef = model.model_fields[field].get_default(call_default_factory=True)
        wdef = wprops[field].get("default")
        if field not in wreq and (name, field) not in FILLED and hdef != wdef:
            problems.append(f"{where}: default {hdef!r} on HTTP, {wdef!r} on the wire")
    assert not problems, "\n".join(problems)


def test_what_the_adapter_sends_decodes_as_the_wire_type() -> None:
    job = M.JobSubmitIn(title="t", tasks=[M.TaskIn(lane="code", instruction="i", command="true")],
                        budget=M.BudgetIn(tokens_max=5), priority=10)
    got = wire.decode(msgspec.json.encode(job.to_wire()), wire.JobSubmit)
    assert (got.budget.tokens_max, got.priority, got.tasks[0].command) == (5, 10, "true")
    card = M.JobCardIn(job_id="j", run_id="r", tasks=[M.TaskIn(lane="docs", instruction="i")])
    assert wire.decode(msgspec.json.encode({**card.to_wire(), "lane": "docs"}), wire.JobCardSubmit).job_id == "j"
    ex = M.ExecuteIn(task="do", timeout_s=20)
    assert wire.decode(msgspec.json.encode(ex.to_wire()), ExecuteRequest).instruction == "do"
