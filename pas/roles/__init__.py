"""Role behaviour, one module per role. An agent's `role` in configs/agents.yaml picks the class."""

from __future__ import annotations

from pas.roles.architect import ArchitectRole
from pas.roles.director import DirectorRole
from pas.roles.gateway import GatewayRole
from pas.roles.manager import ManagerRole
from pas.roles.monitor import MonitorRole
from pas.roles.programmer import ProgrammerRole
from pas.roles.root import RootRole

ROLE_CLASSES = {
    "gateway": GatewayRole,
    "root": RootRole,
    "architect": ArchitectRole,
    "dir": DirectorRole,
    "mgr": ManagerRole,
    "prog": ProgrammerRole,
    "monitor": MonitorRole,
}
