"""Layering, checked from the source with the standard library's `ast`:

- no import cycle among the modules of `pas` and `benchmarks`, counting EVERY import statement (at
  module level and inside functions; only `if TYPE_CHECKING:` blocks are skipped, as they never run);
- every msgspec Struct that travels on NATS is defined in the wire package, pas/protocol/wire/ (`pas.protocol.wire` and
  its modules, one a kind of message): a Struct defined anywhere else in `pas` is listed below with why
  it is not a wire type, and no other module decodes it or serves it on an endpoint or work queue.
"""

from __future__ import annotations

import ast
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pas", "benchmarks")


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module
    imports: dict[str, int] = field(default_factory=dict)  # imported module -> first line


def _modules(root: Path, packages: tuple[str, ...]) -> dict[str, Module]:
    mods: dict[str, Module] = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join(parts)
            mods[name] = Module(name, path, is_package, ast.parse(path.read_text(), str(path)))
    return mods


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(node: ast.AST, type_checking: bool = False) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement under node; the bodies of `if TYPE_CHECKING:` only when type_checking."""
    out: list[ast.Import | ast.ImportFrom] = []
    for child in ast.iter_child_nodes(node):
        if not type_checking and isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                out += _import_nodes(other) if not isinstance(other, (ast.Import, ast.ImportFrom)) else [other]
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            out.append(child)
        out += _import_nodes(child, type_checking)
    return out


def _resolve(name: str, mods: dict[str, Module]) -> str | None:
    """The module `name` refers to: itself, or its longest prefix that is a module of ours."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES,
                 type_checking: bool = False) -> dict[str, Module]:
    """Every module of `packages` under root, with the modules of those packages it imports (with
    type_checking, also what it imports only for annotations)."""
    mods = _modules(root, packages)
    for m in mods.values():
        for node in _import_nodes(m.tree, type_checking):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:  # relative: from the package this module is in
                    base = m.name.split(".") if m.is_package else m.name.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # `from pkg import mod` imports pkg.mod; `from mod import name` imports mod
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in mods else source for a in node.names]
            for t in targets:
                if t.split(".")[0] not in packages:
                    continue
                dep = _resolve(t, mods)
                if dep is not None and dep != m.name:
                    m.imports.setdefault(dep, node.lineno)
    return mods


def find_cycles(mods: dict[str, Module]) -> list[list[str]]:
    """One cycle (a -> b -> ... -> a) per strongly connected component of more than one module."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in mods[v].imports:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(mods):
        if v not in index:
            visit(v)
    cycles = []
    for comp in comps:  # a shortest way back to the start, inside the component
        start = min(comp)
        paths = {start: [start]}
        todo = [start]
        cycle: list[str] | None = None
        while todo and cycle is None:
            v = todo.pop(0)
            for w in sorted(mods[v].imports):
                if w == start:
                    cycle = paths[v] + [start]
                    break
                if w in comp and w not in paths:
                    paths[w] = paths[v] + [w]
                    todo.append(w)
        cycles.append(cycle or sorted(comp))
    return cycles


def describe(cycle: list[str], mods: dict[str, Module]) -> str:
    hops = [f"{a} (line {mods[a].imports[b]}) -> {b}" for a, b in itertools.pairwise(cycle) if b in mods[a].imports]
    return " ; ".join(hops) or " -> ".join(cycle)


def test_no_import_cycles() -> None:
    mods = import_graph()
    assert "pas.runtime.agent" in mods and "pas.surfaces.cli" in mods and "benchmarks" in mods  # the walk found the packages
    cycles = find_cycles(mods)
    assert not cycles, "import cycles:\n" + "\n".join(describe(c, mods) for c in cycles)


def test_the_checker_sees_imports_inside_functions_and_skips_type_checking(tmp_path: Path) -> None:
    """The checker itself, on a package written here: a cycle closed by a function-level import is
    found and named with its line; one that exists only under `if TYPE_CHECKING:` is not."""
    src = {
        "__init__": "",
        "a": "from pkg import b\n",
        "b": "import os\n\n\ndef f():\n    from pkg.c import g\n    return g\n",
        "c": "import pkg.a\n\ng = 1\n",
        "d": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import e\n",
        "e": "from . import d\n",
    }
    (tmp_path / "pkg").mkdir()
    for name, text in src.items():
        (tmp_path / "pkg" / f"{name}.py").write_text(text)
    mods = import_graph(tmp_path, ("pkg",))
    assert mods["pkg.e"].imports == {"pkg.d": 1} and mods["pkg.d"].imports == {}
    cycles = find_cycles(mods)
    assert cycles == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert describe(cycles[0], mods) == "pkg.a (line 1) -> pkg.b ; pkg.b (line 5) -> pkg.c ; pkg.c (line 1) -> pkg.a"


# ---- layers -----------------------------------------------------------------------------------
LAYERS = ("base", "protocol", "config", "transport", "llm", "execution", "runtime", "roles", "surfaces")
"""pas/'s folders, lowest first: a module imports only from its own layer or the ones below it."""


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "pas" or len(parts) < 2:
        return None
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def upward_imports(mods: dict[str, Module]) -> list[str]:
    out = []
    for m in mods.values():
        low = layer_of(m.name)
        if low is None:
            continue
        for dep, line in m.imports.items():
            high = layer_of(dep)
            if high is not None and high > low:
                out.append(f"{m.path.relative_to(m.path.parents[len(m.name.split('.')) - 1])}:{line} "
                           f"{m.name} ({LAYERS[low]}) imports {dep} ({LAYERS[high]})")
    return sorted(out)


def test_pas_top_level_is_its_layers() -> None:
    """pas/ holds the layers, the package data (defaults) and the entry points: about ten entries, no
    loose module beside them."""
    entries = sorted(p.name for p in (ROOT / "pas").iterdir() if p.name != "__pycache__")
    assert entries == sorted([*LAYERS, "defaults", "__init__.py", "__main__.py", "py.typed"]
                             if (ROOT / "pas" / "py.typed").exists() else [*LAYERS, "defaults", "__init__.py", "__main__.py"])
    for layer in LAYERS:
        init = ROOT / "pas" / layer / "__init__.py"
        assert init.is_file() and ast.get_docstring(ast.parse(init.read_text())), f"pas/{layer} says what it is"


def test_no_layer_imports_a_higher_one() -> None:
    """Direction, with every import counted: module level, inside functions, and under TYPE_CHECKING."""
    mods = import_graph(type_checking=True)
    assert layer_of("pas.transport.bus") == 3 and "pas.transport.bus" in mods
    bad = upward_imports(mods)
    assert not bad, "imports from a higher layer:\n" + "\n".join(bad)


def test_the_layer_check_flags_an_upward_import_even_lazy_or_for_types(tmp_path: Path) -> None:
    src = {
        "pas/__init__.py": "",
        "pas/base/__init__.py": "",
        "pas/base/a.py": "def f():\n    from pas.runtime import r\n    return r\n",
        "pas/transport/__init__.py": "",
        "pas/transport/t.py": ("from typing import TYPE_CHECKING\nfrom pas.base import a\n"
                               "if TYPE_CHECKING:\n    from pas.roles.x import X\n"),
        "pas/runtime/__init__.py": "",
        "pas/runtime/r.py": "from pas.transport import t\n",
        "pas/roles/__init__.py": "",
        "pas/roles/x.py": "X = 1\n",
    }
    for rel, text in src.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    bad = upward_imports(import_graph(tmp_path, ("pas",), type_checking=True))
    assert [b.split(" ", 1)[1] for b in bad] == ["pas.base.a (base) imports pas.runtime.r (runtime)",
                                                  "pas.transport.t (transport) imports pas.roles.x (roles)"]
    assert upward_imports(import_graph(tmp_path, ("pas",))) == [
        b for b in bad if "roles" not in b]  # without type_checking the TYPE_CHECKING import is not seen


# ---- wire types ------------------------------------------------------------------------------
# Structs defined outside pas/protocol/wire/, and why none of them is a message on NATS. Each is encoded and
# decoded only by its home module (checked below).
NOT_WIRE = {
    "pas.config.doc.ClientNats": "the client commands' view of the config files (YAML), never on NATS",
    "pas.config.doc.ClientSettings": "part of ClientConfig",
    "pas.config.doc.ClientAgent": "part of ClientConfig",
    "pas.config.doc.ClientConfig": "the client commands' view of the config files (YAML), never on NATS",
    "pas.runtime.claims.Claim": "the agent-id claim record in KV, read and written only by pas.runtime.claims",
    "pas.runtime.usage.RunUsage": "a run's token/cost counter in KV, read and written only by pas.runtime.usage",
    "pas.llm.recording.Recording": "an LLM call in PAS_RECORDINGS, stored and loaded only by pas.llm.recording",
    "pas.runtime.rerun.RecordedCall": "part of RerunSpec",
    "pas.runtime.rerun.RerunSpec": "a rerun's recorded calls in KV, read and written only by pas.runtime.rerun",
    "pas.runtime.rerun.Divergence": "a rerun's divergence report, built and logged only by pas.runtime.rerun",
    "pas.llm.planner.LanePlan": "the JSON a model answers the architect with (validated in pas.llm.planner)",
    "pas.llm.planner.ArchitectPlan": "the JSON a model answers the architect with (validated in pas.llm.planner)",
    "pas.llm.planner.JobPlan": "the JSON a model answers a director with (validated in pas.llm.planner)",
    "pas.llm.planner.DirectorPlan": "the JSON a model answers a director with (validated in pas.llm.planner)",
    "pas.llm.planner.ManagerPlan": "the JSON a model answers a manager with (validated in pas.llm.planner)",
    "pas.surfaces.mcp.tools.Args": "MCP tool arguments (JSON-RPC over stdio/HTTP, not NATS)",
}
# calls through which a struct type goes onto or comes off NATS
WIRE_CALLS = {"EndpointSpec", "WorkSpec", "endpoint", "decode", "kv_get", "kv_values"}


def _struct_classes(mods: dict[str, Module]) -> dict[str, str]:
    """'module.Class' -> module, for every class deriving from a Struct (msgspec's, or wire's bases)."""
    out: dict[str, str] = {}
    for m in mods.values():
        if not m.name.startswith("pas"):
            continue
        for node in ast.walk(m.tree):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                if bases & {"Struct", "msgspec.Struct", "wire.Struct", "wire.Base", "Base"}:
                    out[f"{m.name}.{node.name}"] = m.name
    return out


WIRE = "pas.protocol.wire"


def in_wire(module: str) -> bool:
    """The wire package, pas/protocol/wire/: `pas.protocol.wire` itself and its modules (pas.protocol.wire.records, ...)."""
    return module == WIRE or module.startswith(WIRE + ".")


def structs_outside_wire(mods: dict[str, Module]) -> set[str]:
    return {name for name, mod in _struct_classes(mods).items() if not in_wire(mod)}


def _call_name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def test_wire_structs_live_in_the_wire_package() -> None:
    mods = import_graph()
    structs = _struct_classes(mods)
    outside = structs_outside_wire(mods)
    in_package = {name.rpartition(".")[2] for name, mod in structs.items() if in_wire(mod)}
    assert {"ExecuteRequest", "StatusRef", "SetModel", "RunRecord", "TaskWork", "CommsEntry"} <= in_package
    unlisted = sorted(outside - set(NOT_WIRE))
    assert not unlisted, (f"Structs defined outside pas/protocol/wire/: {unlisted}. A message on NATS belongs in "
                          "the pas.protocol.wire package; anything else goes into NOT_WIRE here with the reason")
    stale = sorted(set(NOT_WIRE) - outside)
    assert not stale, f"NOT_WIRE lists structs that no longer exist: {stale}"

    # no module but its home decodes a NOT_WIRE struct, or serves it on an endpoint / work queue
    short = {name.rpartition(".")[2]: name for name in NOT_WIRE}
    misuse = []
    for m in mods.values():
        for node in ast.walk(m.tree):
            if not (isinstance(node, ast.Call) and _call_name(node) in WIRE_CALLS):
                continue
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                for sub in ast.walk(arg):
                    ident = (sub.attr if isinstance(sub, ast.Attribute) else
                             sub.id if isinstance(sub, ast.Name) else None)
                    full = short.get(ident or "")
                    if full and not full.startswith(m.name + "."):
                        misuse.append(f"{m.path.relative_to(ROOT)}:{node.lineno} {_call_name(node)}(... {ident} ...)")
    assert not misuse, f"structs that are not wire types used on the wire outside their module: {misuse}"


def test_the_wire_check_flags_a_struct_outside_the_wire_package(tmp_path: Path) -> None:
    """The check itself, on a package written here: a Struct in a module of the wire package passes; one
    in a role module, or in a module merely named like it (pas/wire_extra.py), is outside."""
    src = {
        "pas/__init__.py": "",
        "pas/protocol/wire/__init__.py": "from pas.protocol.wire.records import Rec\n",
        "pas/protocol/wire/records.py": "from msgspec import Struct\n\n\nclass Rec(Struct):\n    a: int\n",
        "pas/roles/__init__.py": "",
        "pas/roles/worker.py": "import msgspec\n\n\nclass Order(msgspec.Struct):\n    a: int\n",
        "pas/wire_extra.py": "from pas.protocol.wire import Base\n\n\nclass Extra(Base):\n    a: int\n",
    }
    for rel, text in src.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    mods = import_graph(tmp_path, ("pas",))
    assert structs_outside_wire(mods) == {"pas.roles.worker.Order", "pas.wire_extra.Extra"}


def test_the_cycles_of_issue_11_stay_broken() -> None:
    """By name: the runtime imports no role, and no module imports the CLI (only `python -m pas`)."""
    mods = import_graph()
    assert not [d for d in mods["pas.runtime.agent"].imports if d.startswith("pas.roles")]
    assert "pas.runtime.agent" in mods["pas.roles"].imports
    assert sorted(m.name for m in mods.values() if "pas.surfaces.cli" in m.imports) == ["pas.__main__"]
    assert "pas.surfaces.commands" not in mods["pas.surfaces.cliutil"].imports


def test_the_benchmark_harness_is_split_by_figure() -> None:
    """The harness lives beside the package, one module per figure, none over ~400 lines."""
    assert not (ROOT / "pas" / "bench").exists()
    from benchmarks import run

    figure_modules = [m for m in run.DEFAULT_PRODUCER_MODULES if m.startswith("benchmarks.fig_")]
    assert len(figure_modules) >= 7 and all((ROOT / (m.replace(".", "/") + ".py")).is_file() for m in figure_modules)
    sizes = {p.name: len(p.read_text().splitlines()) for p in (ROOT / "benchmarks").glob("*.py")}
    assert not {name: n for name, n in sizes.items() if n > 400}, sizes
