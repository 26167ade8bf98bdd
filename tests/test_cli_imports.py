"""The read-only `pas` commands stay light: they import neither pydantic nor the web, LLM or tracing stacks
nor the agent runtime, and the config view they read (pas.config.doc) is the one `pas up` validates.

The import checks run the real command (`pas.surfaces.cli.main`) in a fresh interpreter against `pas up` with NATS
users on, then read that interpreter's sys.modules. No timing here: the wall times are a benchmark
(benchmarks/cli_bare.py is the bare nats-py yardstick)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pas.base.errors import ConfigError
from pas.config.doc import ClientConfig, ClientNats, client_config
from pas.config.model import PasConfig, load_config

HEAVY = ("pydantic", "pydantic_core", "fastapi", "starlette", "uvicorn", "litellm", "openai", "httpx",
         "opentelemetry")
"""Top-level packages a read-only command must not import."""
RUNTIME = ("pas.config.model", "pas.surfaces.stack", "pas.runtime.agent", "pas.roles", "pas.runtime.service", "pas.llm.client",
           "pas.surfaces.http", "pas.transport.server", "pas.execution.sandbox", "pas.bench", "benchmarks")
"""PAS modules a read-only command must not import (absent names pass: a module may be renamed)."""

PROBE = """
import json, sys
from pas.surfaces.cli import main
rc = main(sys.argv[1:])
sys.stdout.flush()
print("\\n" + json.dumps({"rc": rc, "modules": sorted(sys.modules)}))
"""


def heavy_in(modules: list[str]) -> list[str]:
    return sorted(m for m in modules
                  if m.split(".")[0] in HEAVY or any(m == r or m.startswith(r + ".") for r in RUNTIME))


def probe(*argv: str, cwd: Path, **env: str) -> tuple[int, str, list[str]]:
    """Run `pas ARGV` in a fresh interpreter: (exit code, what it printed, the modules it had imported)."""
    base = {k: v for k, v in os.environ.items()  # OTEL_* would turn tracing on: then OpenTelemetry is wanted
            if k not in ("PAS_NATS_URL", "PAS_CONFIG_DIR", "PAS_CREDS_DIR") and not k.startswith("OTEL_")}
    p = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60, cwd=cwd,
                       env={**base, **env}, stdin=subprocess.DEVNULL)
    out, _, last = p.stdout.rstrip("\n").rpartition("\n")
    assert p.returncode == 0 and last.startswith("{"), f"pas {argv}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    res = json.loads(last)
    return res["rc"], out, res["modules"]


def test_importing_the_cli_and_building_its_parser_is_light(tmp_path: Path) -> None:
    code = "import json, sys, pas.surfaces.cli; pas.surfaces.cli.build_parser(); print(json.dumps(sorted(sys.modules)))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    modules = json.loads(p.stdout)
    assert "pas.surfaces.cli" in modules and "argparse" in modules
    assert heavy_in(modules) == []


READ_ONLY: dict[str, tuple[list[str], Any]] = {  # name -> (argv, a check of what it printed)
    "agents": (["agents", "--json"], lambda out: {"gateway", "prog-010"} <= {r["agent"] for r in json.loads(out)}),
    "status": (["status", "probe-1", "--json"], lambda out: json.loads(out)["status"] == "completed"),
    "runs": (["runs", "--json"], lambda out: "probe-1" in [r["run_id"] for r in json.loads(out)["runs"]]),
    "plan": (["plan", "probe-1", "--json"], lambda out: json.loads(out)["run_id"] == "probe-1"),
    "log": (["log", "--run", "probe-1", "--json"],
            lambda out: "gateway" in {json.loads(x)["from_agent"] for x in out.splitlines()}),
}


def test_read_only_commands_import_nothing_heavy(pas_procs: Any, tmp_path: Path) -> None:
    """Against one `pas up` (NATS users on) with one completed run, each read-only command works and
    imports nothing on the HEAVY or RUNTIME lists."""
    from tests.conftest import fast_args

    url = pas_procs("--nats-port", "-1", "--data-dir", str(tmp_path / "d"), *fast_args(), name="imports").url
    env = {"PAS_CREDS_DIR": str(tmp_path / "d" / "creds")}
    rc, out, _ = probe("submit", "probe", "--task", "code:true", "--run-id", "probe-1", "--wait",
                       "--nats-url", url, cwd=tmp_path, **env)
    assert rc == 0 and "run probe-1 COMPLETED" in out, out
    imported = {}
    for name, (argv, check) in READ_ONLY.items():
        rc, out, modules = probe(*argv, "--nats-url", url, cwd=tmp_path, **env)
        assert rc == 0 and check(out), f"pas {name}: {out}"
        assert "nats" in modules and "pas.config.doc" in modules  # the probe saw the real command's imports
        imported[name] = heavy_in(modules)
    assert imported == {name: [] for name in READ_ONLY}, imported


def test_a_bad_value_the_client_commands_read_is_a_config_error(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "pas", "runs", "-c", "settings.nats.port=abc"], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 2
    assert "pas: config error: invalid config in" in p.stderr and "settings.nats.port: Expected `int`" in p.stderr


def _view(cfg: PasConfig | ClientConfig) -> tuple[Any, ...]:
    """What the client commands read, from either loader."""
    n = cfg.settings.nats
    fields = tuple(getattr(n, f) for f in ClientNats.__struct_fields__)
    return fields, [(a.id, a.role, a.lane, a.model, a.tier) for a in cfg.agents]


def test_client_config_reads_what_load_config_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same directory precedence (--config-dir > PAS_CONFIG_DIR > ./configs > packaged), overrides, overlay
    files and environment variables; same defaults; the same bad values refused."""
    from pas.config.model import PACKAGED_CONFIG_DIR, NatsConfig

    assert {f: getattr(NatsConfig(), f) for f in ClientNats.__struct_fields__} == {
        f: getattr(ClientNats(), f) for f in ClientNats.__struct_fields__}
    monkeypatch.chdir(tmp_path)
    for var in ("PAS_CONFIG_DIR", "PAS_NATS_URL", "PAS_CREDS_DIR"):
        monkeypatch.delenv(var, raising=False)

    def dir_with(name: str, nats: dict[str, Any], extra_agent: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        for f in ("pas.yaml", "models.yaml", "agents.yaml"):
            (d / f).write_text((PACKAGED_CONFIG_DIR / f).read_text())
        doc = yaml.safe_load((d / "pas.yaml").read_text())
        doc["settings"].setdefault("nats", {}).update(nats)
        (d / "pas.yaml").write_text(yaml.safe_dump(doc))
        agents = yaml.safe_load((d / "agents.yaml").read_text())
        agents["agents"].append({"id": extra_agent, "role": "prog", "model": "gpt-4o"})
        (d / "agents.yaml").write_text(yaml.safe_dump(agents))
        return d

    same = [_view(load_config())]
    assert _view(client_config()) == same[0]
    dir_with("configs", {"port": 4300, "auth": False}, "prog-local")  # ./configs
    explicit = dir_with("explicit", {"request_timeout_s": 7, "host": "127.0.0.2"}, "prog-explicit")
    env_dir = dir_with("env", {"client_connect_timeout_s": "3", "data_dir": "elsewhere"}, "prog-env")
    overlay = tmp_path / "extra.yaml"
    overlay.write_text("agents:\n  - {id: prog-extra, role: prog, lane: docs}\n  - {id: prog-001, model: gpt-4o}\n")
    cases: list[tuple[str | None, list[str], list[str | Path]]] = [
        (None, [], []), (str(explicit), [], []), (None, ["settings.nats.url=nats://127.0.0.1:4999"], [overlay]),
        (None, ["settings.nats.auth=on", "agents.prog-001.lane=code"], []),
    ]
    for env in ({}, {"PAS_CONFIG_DIR": str(env_dir)}, {"PAS_NATS_URL": "nats://127.0.0.1:5000",
                                                      "PAS_CREDS_DIR": str(tmp_path / "creds")}):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        for config_dir, overrides, files in cases:
            full, light = load_config(config_dir, overrides, files), client_config(config_dir, overrides, files)
            assert _view(light) == _view(full), (env, config_dir, overrides)
            same.append(_view(full))
        for k in env:
            monkeypatch.delenv(k)
    assert len({repr(v) for v in same}) >= 6  # the cases did change what is read
    ids = {a[0] for v in same for a in v[1]}
    assert {"prog-local", "prog-explicit", "prog-env", "prog-extra"} <= ids

    for bad in (["settings.nats.port=abc"], ["settings.nats.auth=maybe"], ["settings.nats.host=null"],
                ["agents.prog-001.role=boss"], ["agents.prog-001.lane=3"], ["settings.nats=3"]):
        with pytest.raises(ConfigError):
            load_config(None, bad)
        with pytest.raises(ConfigError, match=r"invalid config in .*: (settings|agent 'prog-001')"):
            client_config(None, bad)
