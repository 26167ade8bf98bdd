"""Role behaviour, one module per role. An agent's `role` in configs/agents.yaml picks the class.

pas.agent (the runtime) imports no role: new_agent() hands it the class, so the imports go one way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pas.config.model import AgentConfig
from pas.roles.architect import ArchitectRole
from pas.roles.director import DirectorRole
from pas.roles.gateway import GatewayRole
from pas.roles.manager import ManagerRole
from pas.roles.monitor import MonitorRole
from pas.roles.programmer import ProgrammerRole
from pas.roles.root import RootRole
from pas.runtime.agent import Agent, Process, Role
from pas.runtime.comms import CommsLog
from pas.transport.bus import Bus

if TYPE_CHECKING:
    from pas.runtime.usage import RunLLM

ROLE_CLASSES: dict[str, type[Role]] = {
    "gateway": GatewayRole,
    "root": RootRole,
    "architect": ArchitectRole,
    "dir": DirectorRole,
    "mgr": ManagerRole,
    "prog": ProgrammerRole,
    "monitor": MonitorRole,
}


def new_agent(bus: Bus, cfg: AgentConfig, comms: CommsLog, llm: RunLLM | None = None,
              process: Process | None = None) -> Agent:
    """The agent `cfg` describes, with the behaviour of its role (`process`: what it shares with the other
    agents of its process, pas.runtime.agent.Process; a Process of its own if none)."""
    return Agent(bus, cfg, comms, ROLE_CLASSES[cfg.role], llm, process)
