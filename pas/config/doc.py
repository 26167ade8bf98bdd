"""The config directory read into a plain document, and the client commands' view of it. No pydantic here.

    d, doc = read_doc(config_dir, overrides, agent_files)   # {"settings": ..., "models": ..., "agents": [...]}
    pas.config.model.load_config(...)                             # the whole config, validated (pydantic)
    client_config(...)                                      # settings.nats and the agents' names only

The commands that only talk to NATS as a client (`pas agents`, `status`, `runs`, `log`, ...) use
client_config: it reads the same files with the same precedence, overrides and environment variables,
checks the types of what it reads, and imports neither pydantic nor the runtime, so such a command
starts about as fast as a bare nats-py script. `pas up` and everything that runs agents validate the
whole config with pas.config.model.load_config.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from pas.base.errors import ConfigError

PACKAGED_CONFIG_DIR = Path(__file__).resolve().parent.parent / "defaults"
"""The default configs, shipped in the package (wheel included); configs/ in the source tree is a copy."""
CONFIG_FILES = ("pas.yaml", "models.yaml", "agents.yaml")
TIER_OF_ROLE = {
    "gateway": "gateway",
    "root": "root",
    "architect": "architect",
    "dir": "director",
    "mgr": "manager",
    "prog": "programmer",
    "monitor": "monitor",
}
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster to parse


def yaml_load(text: str) -> Any:
    """yaml.safe_load, with libyaml's loader when PyYAML was built with it."""
    return yaml.load(text, Loader=_LOADER)  # a safe loader (SafeLoader or CSafeLoader)


def read_yaml(path: Path) -> Any:
    try:
        return yaml_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e


def find_config_dir(config_dir: str | Path | None = None) -> tuple[Path, str]:
    """The config directory to use and why: --config-dir, then $PAS_CONFIG_DIR, then ./configs in
    the working directory if it exists, then the packaged defaults."""
    if config_dir:
        return Path(config_dir), "--config-dir"
    env = os.environ.get("PAS_CONFIG_DIR")
    if env:
        return Path(env), "PAS_CONFIG_DIR"
    local = Path("configs")
    if local.is_dir():
        return local.resolve(), "./configs in the working directory"
    return PACKAGED_CONFIG_DIR, "the defaults shipped with pas"


def set_dotted(doc: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    cur: Any = doc
    for p in parts[:-1]:
        if isinstance(cur, list):
            cur = next((a for a in cur if isinstance(a, dict) and a.get("id") == p), None)
            if cur is None:
                raise ConfigError(f"override {key!r}: no agent {p!r}")
            continue
        cur = cur.setdefault(p, {})
    if isinstance(cur, list):
        raise ConfigError(f"override {key!r}: cannot set a whole agent")
    cur[parts[-1]] = value


def merge_agent_files(doc: dict[str, Any], files: list[str | Path]) -> None:
    """Overlay topology files (`pas up --agents FILE`), each shaped like agents.yaml: an entry with
    a new id is appended; an entry with an existing id changes only the keys it gives."""
    agents = doc.setdefault("agents", [])
    for f in files:
        p = Path(f)
        if not p.is_file():
            raise ConfigError(f"agents file {p} does not exist")
        data = read_yaml(p)
        if not isinstance(data, dict) or set(data) != {"agents"} or not isinstance(data["agents"], list):
            raise ConfigError(f"{p}: expected a single top-level key 'agents' holding a list of agents")
        by_id = {a.get("id"): a for a in agents if isinstance(a, dict)}
        for i, entry in enumerate(data["agents"]):
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                raise ConfigError(f"{p}: agents[{i}]: expected a mapping with an 'id'")
            if entry["id"] in by_id:
                by_id[entry["id"]].update(entry)
            else:
                agents.append(dict(entry))
                by_id[entry["id"]] = agents[-1]


def read_doc(config_dir: str | Path | None = None, overrides: list[str] | None = None,
             agent_files: list[str | Path] | None = None) -> tuple[Path, dict[str, Any]]:
    """{pas,models,agents}.yaml from find_config_dir(config_dir), overlay agent files merged, `key=value`
    overrides and PAS_NATS_URL / PAS_CREDS_DIR applied; not validated."""
    d, _ = find_config_dir(config_dir)
    if not d.is_dir():
        raise ConfigError(f"config directory {d} does not exist")
    doc: dict[str, Any] = {"settings": {}, "models": {}, "agents": []}
    for name, key in zip(CONFIG_FILES, ("settings", "models", "agents"), strict=True):
        p = d / name
        if p.exists():
            data = read_yaml(p)
            if not isinstance(data, dict) or set(data) - {key}:
                unknown = sorted(set(data) - {key}) if isinstance(data, dict) else data
                raise ConfigError(f"{p}: expected a single top-level key {key!r}, found {unknown!r}")
            doc[key] = data.get(key) or doc[key]
    merge_agent_files(doc, list(agent_files or []))
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r}: expected key=value")
        k, v = ov.split("=", 1)
        set_dotted(doc, k.strip(), yaml_load(v))
    env_url = os.environ.get("PAS_NATS_URL")
    if env_url:
        doc.setdefault("settings", {}).setdefault("nats", {})["url"] = env_url
    env_creds = os.environ.get("PAS_CREDS_DIR")
    if env_creds:
        doc.setdefault("settings", {}).setdefault("nats", {})["creds_dir"] = env_creds
    return d, doc


# ---- the client commands' view -------------------------------------------------------------
Role = Literal["gateway", "root", "architect", "dir", "mgr", "prog", "monitor"]


class ClientNats(msgspec.Struct):
    """The settings.nats keys a client command reads. Their defaults are the only copy:
    pas.config.model.NatsConfig takes its defaults for these keys from here."""

    url: str | None = None
    host: str = "127.0.0.1"
    port: int = 4222
    data_dir: str = ".pas"
    request_timeout_s: float = 5.0
    connect_timeout_s: float = 30.0
    client_connect_timeout_s: float = 5.0
    auth: Literal["on", "off"] = "on"
    creds_dir: str | None = None


class ClientSettings(msgspec.Struct):
    nats: ClientNats = msgspec.field(default_factory=ClientNats)


class ClientAgent(msgspec.Struct):
    id: str
    role: Role
    lane: str | None = None
    model: str | None = None

    @property
    def tier(self) -> str:
        return TIER_OF_ROLE[self.role]


class ClientConfig(msgspec.Struct):
    """What `pas agents`, `status`, `runs`, ... read of the config: shaped like pas.config.model.PasConfig
    (cfg.settings.nats.url, cfg.agents), so the same code serves both. Other keys are not read."""

    settings: ClientSettings = msgspec.field(default_factory=ClientSettings)
    agents: list[ClientAgent] = msgspec.field(default_factory=list)
    models: dict[str, Any] = msgspec.field(default_factory=dict)
    """models.yaml's profiles (only their names are read: a stored model override must name one)."""


def check_model_override(value: Any, profiles: Any, agent_id: str | None = None) -> dict[str, Any]:
    """A stored model override (KV pas_models), checked where it is read: a dict whose model and
    backup_model are profiles of models.yaml (`profiles`; empty: not known here) and whose `agent` is the
    key's (`agent_id`, when known). ValueError otherwise."""
    if not isinstance(value, dict):
        raise ValueError("not an object")
    if agent_id is not None and value.get("agent", agent_id) != agent_id:
        raise ValueError(f"names agent {value.get('agent')!r}, not {agent_id!r}")
    for which in ("model", "backup_model"):
        p = value.get(which)
        if p is not None and (not isinstance(p, str) or (profiles and p not in profiles)):
            raise ValueError(f"{which} {p!r} is not a profile of models.yaml")
    return value


def _where(path: str, doc: dict[str, Any]) -> str:
    """msgspec's `$.agents[3].role` as `agent 'prog-001'.role`, `$.settings.nats.port` as settings.nats.port."""

    def agent(m: re.Match[str]) -> str:
        a = doc["agents"][int(m.group(1))]
        return f"agent {a.get('id')!r}" if isinstance(a, dict) and a.get("id") else m.group(0)[2:]

    return re.sub(r"^\$\.agents\[(\d+)\]", agent, path).removeprefix("$.")


def client_config(config_dir: str | Path | None = None, overrides: list[str] | None = None,
                  agent_files: list[str | Path] | None = None) -> ClientConfig:
    """The client commands' view of the config: settings.nats and each agent's id, role, lane and model,
    type-checked as pas.config.model checks them (numbers given as strings are accepted, as pydantic does)."""
    d, doc = read_doc(config_dir, overrides, agent_files)
    settings = doc.get("settings")
    nats = settings.get("nats") if isinstance(settings, dict) else None
    if isinstance(nats, dict) and isinstance(nats.get("auth"), bool):  # YAML reads on/off as booleans
        nats["auth"] = "on" if nats["auth"] else "off"
    try:
        return msgspec.convert(doc, ClientConfig, strict=False)
    except msgspec.ValidationError as e:
        msg, _, path = str(e).rpartition(" - at `")  # "Expected `int`, got `str` - at `$.settings.nats.port`"
        where = f"{_where(path.rstrip('`'), doc)}: " if msg else ""
        raise ConfigError(f"invalid config in {d}: {where}{msg or str(e)}") from None


__all__ = ["CONFIG_FILES", "PACKAGED_CONFIG_DIR", "TIER_OF_ROLE", "ClientConfig", "Role", "client_config",
           "find_config_dir", "merge_agent_files", "read_doc", "read_yaml", "yaml_load"]
