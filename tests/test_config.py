"""Every shipped config loads; each kind of bad config fails start-up with a message naming the entry."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pas.base.errors import ConfigError
from pas.config.model import DEFAULT_CONFIG_DIR, load_config


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
    with pytest.raises(ConfigError, match=r"settings\.heartbeat\.intervall_s: unknown key"):
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


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and ".venv" not in p.parts}


def test_packaged_defaults_are_the_repository_configs() -> None:
    """configs/ (fixed by the design) is a copy of what the package ships."""
    from pas.config.model import CONFIG_FILES, PACKAGED_CONFIG_DIR
    from pas.surfaces.demo import SAMPLE
    from tests.conftest import ROOT

    for f in CONFIG_FILES:
        assert (ROOT / "configs" / f).read_bytes() == (PACKAGED_CONFIG_DIR / f).read_bytes(), (
            f"configs/{f} and pas/defaults/{f} differ: edit both (or copy one onto the other)")
    assert "requirements.txt" in _tree(SAMPLE)


def test_config_precedence_and_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pas.config.model import PACKAGED_CONFIG_DIR, find_config_dir

    def run(*args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pas", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=60, env={k: v for k, v in os.environ.items() if k != "PAS_CONFIG_DIR"})

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PAS_CONFIG_DIR", raising=False)
    assert find_config_dir() == (PACKAGED_CONFIG_DIR, "the defaults shipped with pas")
    p = run("init")
    assert p.returncode == 0 and str(tmp_path / "configs") in p.stdout, p.stderr
    assert find_config_dir() == (tmp_path / "configs", "./configs in the working directory")
    edit_agents(tmp_path / "configs", lambda a: a.append({"id": "prog-011", "role": "prog"}))
    assert load_config().agent("prog-011")  # ./configs is what loads
    again = run("init")
    assert again.returncode == 1 and "already exist" in again.stderr and "--force" in again.stderr
    assert "prog-011" in (tmp_path / "configs" / "agents.yaml").read_text()  # untouched
    assert run("init", "--force").returncode == 0
    assert "prog-011" not in (tmp_path / "configs" / "agents.yaml").read_text()

    other = tmp_path / "other"
    assert run("init", str(other)).returncode == 0
    edit_agents(other, lambda a: a.append({"id": "prog-012", "role": "prog"}))
    monkeypatch.setenv("PAS_CONFIG_DIR", str(other))
    assert find_config_dir() == (other, "PAS_CONFIG_DIR") and load_config().agent("prog-012")
    third = copy_configs(tmp_path / "third")
    assert find_config_dir(third) == (third, "--config-dir")
    with pytest.raises(KeyError):
        load_config(third).agent("prog-012")
