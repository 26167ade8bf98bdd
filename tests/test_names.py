"""Names in one place: no subject, API subject, stream or bucket name is spelt out in pas/ outside
pas/subjects.py (which builds and parses them all, and which subjects.md documents).

A walk over the syntax tree of every module: every string constant, including the constant parts of
f-strings, is checked. Exempt: docstrings (and other bare string statements, which are documentation)
and the name given to logging.getLogger (a logger, not a subject)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pas import subjects as S

PAS = Path(S.__file__).parent
EXCLUDED = {PAS / "subjects.py"}

_heads = "|".join(map(re.escape, S.HEADS))
_assets = [S.STREAM_COMMS, S.STREAM_WORK, S.STREAM_EVENTS, S.STREAM_RECORDINGS,
           *(b for n, b in vars(S).items() if n.startswith("KV_") and isinstance(b, str) and b.startswith("pas_"))]
NAME_RE = re.compile(
    rf"(?<![\w.$])(?:{S.PREFIX}\.(?:{_heads})(?![\w-])|\$KV\.|\$JS\.|\$SRV\.)"
    rf"|(?<![\w.])(?:KV_)?(?:{'|'.join(map(re.escape, _assets))})(?!\w)")


def _exempt(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are documentation or logger names."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            out.add(id(node.value))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "getLogger"
              and node.args and isinstance(node.args[0], ast.Constant)):
            out.add(id(node.args[0]))
    return out


def offenders(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    skip = _exempt(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            m = NAME_RE.search(node.value)
            if m:
                where = path.relative_to(PAS.parent) if PAS.parent in path.parents else path
                found.append(f"{where}:{node.lineno}: {m.group(0)!r} in {node.value[:60]!r}")
    return found


def modules() -> list[Path]:
    return sorted(p for p in PAS.rglob("*.py") if p not in EXCLUDED)


def test_no_subject_literal_outside_subjects_py() -> None:
    bad = [line for p in modules() for line in offenders(p)]
    assert not bad, "subject/stream/bucket names spelt out outside pas/subjects.py (use its builders):\n" + \
        "\n".join(bad)


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
                   'f = "pas.recording"\n'
                   'g = "KV_pas_tree"\n')
    lines = sorted(int(x.split(":")[1]) for x in offenders(src))
    assert lines == [4, 5, 6, 10]


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
    assert not bad, "lanes listed outside pas/subjects.py:\n" + "\n".join(bad)
    assert lane_lists(PAS / "subjects.py"), "pas/subjects.py no longer defines the lanes"
    from pas import wire
    from pas.http import models

    assert wire.Lane is S.Lane and models.Lane is S.Lane


def test_tree_keys_are_the_documented_ones() -> None:
    """The pas_tree row of subjects.md lists exactly the keys pas.subjects builds."""
    doc = (PAS.parent / "subjects.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith(f"| `{S.KV_TREE}` |"))
    documented = set(re.findall(r"`(<run_id>[^`]*)`", row.split("|")[2]))
    r = "<run_id>"
    built = {S.plan_key(r), S.lane_key(r, "<lane>"), S.job_key(r, "<job_id>"), S.task_key(r, "<task_id>"),
             *(r + suffix for suffix in S.SIDE_KEYS)}
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
