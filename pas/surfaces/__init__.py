"""Layer 8, the surfaces users touch: the `pas` CLI, the process stack, the HTTP adapter and HMI, MCP, A2A,
replay, evals and the demo. (Layer 7 is pas.roles.)
"""
