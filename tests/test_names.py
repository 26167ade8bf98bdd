"""Names in one place: no subject, API subject, stream or bucket name is spelt out in pas/ outside
pas/protocol/subjects.py (which builds and parses them all, and which subjects.md documents), nor in the
benchmarks and scripts that drive PAS (benchmarks/, scripts/).

A walk over the syntax tree of every module: every string constant, including the constant parts of
f-strings, is checked. Exempt: docstrings (and other bare string statements, which are documentation)
and the name given to logging.getLogger (a logger, not a subject). In benchmarks/ and scripts/ also
the figures' words: a figure's name (Figure's first argument, a producer's registered name, e.g. the
figure "pas.comms") and prose (a constant with a space, e.g. a figure's note: a name never has one).
benchmarks/cli_bare.py writes its names out on purpose (a bare nats-py script, importing nothing of
pas); they are checked against pas.protocol.subjects instead."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pas.protocol import subjects as S

PAS = Path(S.__file__).parents[1]
ROOT = PAS.parent
EXCLUDED = {PAS / "protocol" / "subjects.py"}
BARE = ROOT / "benchmarks" / "cli_bare.py"

_heads = "|".join(map(re.escape, S.HEADS))
_assets = [S.STREAM_COMMS, S.STREAM_WORK, S.STREAM_EVENTS, S.STREAM_RECORDINGS,
           *(b for n, b in vars(S).items() if n.startswith("KV_") and isinstance(b, str) and b.startswith("pas_"))]
NAME_RE = re.compile(
    rf"(?<![\w.$])(?:{S.PREFIX}\.(?:{_heads})(?![\w-])|\$KV\.|\$JS\.|\$SRV\.)"
    rf"|(?<![\w.])(?:KV_)?(?:{'|'.join(map(re.escape, _assets))})(?!\w)")


def _exempt(tree: ast.AST, figures: frozenset[str] | None) -> set[int]:
    """ids of the string nodes that are documentation or logger names; with `figures` (the registered
    figure names), also those that are a figure's name or prose."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            out.add(id(node.value))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "getLogger"
              and node.args and isinstance(node.args[0], ast.Constant)):
            out.add(id(node.args[0]))
        elif figures is None:
            continue
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Figure":
            name = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "name"), None)
            if name is not None:
                out.update(id(c) for c in ast.walk(name) if isinstance(c, ast.Constant))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                node.value in figures or any(c.isspace() for c in node.value)):
            out.add(id(node))
    return out


def offenders(path: Path, figures: frozenset[str] | None = None) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    skip = _exempt(tree, figures)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            m = NAME_RE.search(node.value)
            if m:
                where = path.relative_to(ROOT) if ROOT in path.parents else path
                found.append(f"{where}:{node.lineno}: {m.group(0)!r} in {node.value[:60]!r}")
    return found


def modules() -> list[Path]:
    return sorted(p for p in PAS.rglob("*.py") if p not in EXCLUDED)


def drivers() -> list[Path]:
    """The benchmarks and scripts, which drive PAS over NATS."""
    return sorted(p for d in ("benchmarks", "scripts") for p in (ROOT / d).rglob("*.py") if p != BARE)


def figure_names() -> frozenset[str]:
    """The names the benchmark producers register under (importing each registers it)."""
    import importlib

    from benchmarks import run

    for m in run.DEFAULT_PRODUCER_MODULES:
        importlib.import_module(m)
    return frozenset(r.name for r in (*run.PRODUCERS, *run.FLOOR_PRODUCERS))


def test_no_subject_literal_outside_subjects_py() -> None:
    bad = [line for p in modules() for line in offenders(p)]
    assert not bad, "subject/stream/bucket names spelt out outside pas/protocol/subjects.py (use its builders):\n" + \
        "\n".join(bad)


def test_no_subject_literal_in_benchmarks_and_scripts() -> None:
    figures = figure_names()
    assert "pas.comms" in figures and len(drivers()) > 10  # the registry and the walk found what they look for
    bad = [line for p in drivers() for line in offenders(p, figures)]
    assert not bad, "PAS names spelt out in benchmarks/ or scripts/ (use pas.protocol.subjects):\n" + "\n".join(bad)


def test_the_bare_cli_script_names_what_pas_names() -> None:
    """benchmarks/cli_bare.py spells its names out on purpose; they are PAS's names."""
    from benchmarks import cli_bare

    assert offenders(BARE), "cli_bare.py no longer spells names out: scan it with the others"
    assert cli_bare.BUCKETS == (S.KV_AGENTS, S.KV_MODELS, S.KV_BREAKERS)
    assert (cli_bare.STATUS, cli_bare.RUNS) == (S.GATEWAY_STATUS, S.GATEWAY_RUNS)


def test_the_check_sees_names(tmp_path: Path) -> None:
    """The walk finds names in plain strings and in f-strings, and exempts docstrings and loggers."""
    src = tmp_path / "m.py"
    src.write_text('"""pas.run.<id>.> in a docstring is documentation."""\n'
                   'import logging\n'
                   'log = logging.getLogger("pas.root")\n'
                   'a = "pas.gateway.submit"\n'
                   'b = f"$KV.{x}.{y}"\n'
                   'c = f"run {r} not in " "PAS_EVENTS"\n'
                   'd = f"x {y}.pas.work.root"\n'
                   'e = "pas.yaml"\n'
                   'f = "pas.llm.recording"\n'
                   'g = "KV_pas_tree"\n')
    lines = sorted(int(x.split(":")[1]) for x in offenders(src))
    assert lines == [4, 5, 6, 10]


def test_the_check_of_the_benchmarks_spares_only_figure_words(tmp_path: Path) -> None:
    """In benchmarks/: a figure's name and prose are exempt; a subject built by hand is not, nor a
    registered figure name's extension used elsewhere than as a figure's name."""
    src = tmp_path / "fig.py"
    src.write_text('@register("pas.comms")\n'
                   'async def f(ctx):\n'
                   '    ctx.details["pas.comms"] = {}\n'
                   '    note = f"read back with pas.comms.read(js), {n} entries"\n'
                   '    sub = await nc.subscribe(f"pas.run.{run_id}.>")\n'
                   '    x = "pas.comms.r1.gateway.LOG"\n'
                   '    return [Figure("pas.comms.replay_per_s", 1.0, "entries/s", note=note)]\n')
    lines = sorted(int(x.split(":")[1]) for x in offenders(src, frozenset({"pas.comms"})))
    assert lines == [5, 6]


def lane_lists(path: Path) -> list[int]:
    """Lines where a module spells out the lanes (a Literal, tuple, list or set holding all of them)."""
    out: set[int] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        elts: list[ast.expr] = []
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Tuple):
            elts = node.slice.elts
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            elts = node.elts
        names = {e.value for e in elts if isinstance(e, ast.Constant)}
        if set(S.LANES) <= names and isinstance(node, ast.expr):
            out.add(node.lineno)
    return sorted(out)


def test_lanes_are_defined_once() -> None:
    """subjects.Lane is the only list of lanes; wire, the HTTP models and config derive from it."""
    bad = [f"{p.relative_to(PAS.parent)}:{n}" for p in modules() for n in lane_lists(p)]
    assert not bad, "lanes listed outside pas/protocol/subjects.py:\n" + "\n".join(bad)
    assert lane_lists(PAS / "protocol" / "subjects.py"), "pas/protocol/subjects.py no longer defines the lanes"
    from pas.protocol import wire
    from pas.surfaces.http import models

    assert wire.Lane is S.Lane and models.Lane is S.Lane


def test_tree_keys_are_the_documented_ones() -> None:
    """The pas_tree row of subjects.md lists exactly the keys pas.protocol.subjects builds."""
    doc = (PAS.parent / "subjects.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith(f"| `{S.KV_TREE}` |"))
    documented = set(re.findall(r"`(<run_id>[^`]*)`", row.split("|")[2]))
    r = "<run_id>"
    a = "<agent_id>"
    built = {S.plan_key(r), S.lane_key(r, "<lane>"), S.job_key(r, "<job_id>"), S.task_key(r, "<task_id>"),
             S.request_key(r), S.rerun_key(r), S.usage_key(r, a), S.divergence_key(r, a), S.forked_key(r, a)}
    assert {k.split(".")[1] for k in built if S.is_side_key(k)} == set(S.SIDE_KEYS)  # every side kind is built
    assert documented == built


def test_parsers_read_what_the_builders_build() -> None:
    assert S.parse_run(S.run_task("r-1", "t-3")) == S.RunSubject("r-1", "task", ("t-3",))
    assert S.parse_run(S.done_plan("r-1")) == S.RunSubject("r-1", "done", ("plan",))
    assert S.parse_run(S.run_status("r-1")) == S.RunSubject("r-1", "status", ())
    assert S.parse_run(S.heartbeat("prog-001")) is None
    assert S.parse_kv(S.kv_subject(S.KV_TREE, S.task_key("r-1", "t-3"))) == (S.KV_TREE, "r-1.task.t-3")
    assert S.parse_kv(S.run_status("r-1")) is None
    assert S.parse_js_ack("$JS.ACK.PAS_WORK.root.1.42.7.1700000000000000000.0") == (42, 1700000000000000000)
    assert S.parse_js_ack("_INBOX.x.y") is None
