"""The port-based HTTP adapter (every agent's legacy port) and the HMI dashboard, over NATS.

Start it with `pas up` (default) or `pas http`; in code: `await pas.surfaces.http.adapter.start_adapter(cfg, url)`.
"""
