"""PAS, the Polyglot Agent Swarm."""

# First, before any other import of nats-py: it then imports aiohttp only if a ws:// URL is used (see there).
from pas.transport import natscompat as _natscompat  # noqa: F401

__version__ = "0.1.0"
