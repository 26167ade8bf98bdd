"""PAS, the Polyglot Agent Swarm."""

__version__ = "0.1.0"
