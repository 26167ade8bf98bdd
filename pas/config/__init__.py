"""Layer 2, configuration: the config directory read as a plain document (doc, for the client commands) and as
validated pydantic models (model, for agents).
"""
