"""Every shipped config loads; each kind of bad config fails start-up with a message naming the entry."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pas.config import DEFAULT_CONFIG_DIR, load_config
from pas.errors import ConfigError


def test_shipped_configs_load() -> None:
    cfg = load_config()
    ids = [a.id for a in cfg.agents]
    assert len(ids) == 26
    assert {"gateway", "root", "architect", "monitor"} <= set(ids)
    assert [a.id for a in cfg.by_role("dir")] == ["dir-code", "dir-models", "dir-data", "dir-devsecops", "dir-docs"]
    assert len(cfg.by_role("mgr")) == 7 and len(cfg.by_role("prog")) == 10
    m = cfg.agent("mgr-code-01")
    assert (m.port, m.lane, m.parent, m.tier) == (6141, "code", "dir-code", "manager")
    assert cfg.models[m.model or ""].model == "gemini/gemini-2.5-flash"
    assert cfg.models[cfg.agent("prog-008").model or ""].model == "openai/gpt-4o"
    assert cfg.agent("prog-010").port == 6160 and cfg.agent("gateway").port == 6120
    assert "python -m pytest*" in cfg.settings.policy.command_allowlist


def copy_configs(tmp: Path) -> Path:
    d = tmp / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, d)
    return d


def edit_agents(d: Path, fn) -> None:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load((d / "agents.yaml").read_text())
    fn(doc["agents"])
    (d / "agents.yaml").write_text(yaml.safe_dump(doc))


def test_adding_a_programmer_is_one_entry(tmp_path: Path) -> None:
    d = copy_configs(tmp_path)
    with (d / "agents.yaml").open("a") as f:
        f.write("  - {id: prog-011, role: prog, port: 6161, model: qwen-coder-7b}\n")
    cfg = load_config(d)
    assert len(cfg.agents) == 27 and cfg.agent("prog-011").tier == "programmer"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda a: a.append(dict(a[-2])), "agent 'prog-010': duplicate id"),
        (lambda a: a.append({"id": "prog-099", "role": "prog", "port": 6141}),
         "agent 'prog-099': port 6141 already used by 'mgr-code-01'"),
        (lambda a: a.append({"id": "mgr-code-09", "role": "mgr", "lane": "code", "parent": "dir-nowhere"}),
         "agent 'mgr-code-09': unknown parent 'dir-nowhere'"),
        (lambda a: a.append({"id": "mgr-x-01", "role": "mgr", "lane": "frontend", "parent": "architect"}),
         "agent 'mgr-x-01': unknown lane 'frontend'"),
        (lambda a: a.append({"id": "prog-077", "role": "prog", "modle": "gpt-4o"}),
         "agent 'prog-077'.modle: unknown key 'modle'"),
        (lambda a: a.append({"id": "prog-078", "role": "prog", "model": "no-such-profile"}),
         "agent 'prog-078': unknown model profile 'no-such-profile'"),
        (lambda a: a.append({"id": "prog-079", "role": "wizard"}), "agent 'prog-079'.role"),
    ],
    ids=["duplicate-id", "duplicate-port", "unknown-parent", "unknown-lane", "unknown-key", "unknown-model",
         "unknown-role"],
)
def test_bad_topology_names_the_entry(tmp_path: Path, mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    d = copy_configs(tmp_path)
    edit_agents(d, mutate)
    with pytest.raises(ConfigError) as e:
        load_config(d)
    assert expected in e.value.message


def test_unknown_settings_key_and_override(tmp_path: Path) -> None:
    d = copy_configs(tmp_path)
    with pytest.raises(ConfigError, match="settings.heartbeat.intervall_s: unknown key"):
        load_config(d, ["settings.heartbeat.intervall_s=3"])
    cfg = load_config(d, ["settings.heartbeat.interval_s=3", "models.gpt-4o.api_base=http://127.0.0.1:9/v1",
                          "agents.prog-001.model=gpt-4o"])
    assert cfg.settings.heartbeat.interval_s == 3
    assert cfg.models["gpt-4o"].api_base == "http://127.0.0.1:9/v1"
    assert cfg.agent("prog-001").model == "gpt-4o"


def test_pas_up_refuses_a_bad_config(tmp_path: Path) -> None:
    d = copy_configs(tmp_path)
    edit_agents(d, lambda a: a.append(dict(a[0])))
    p = subprocess.run([sys.executable, "-m", "pas", "up", "--config-dir", str(d), "--nats-port", "-1",
                        "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "agent 'gateway': duplicate id" in p.stderr
