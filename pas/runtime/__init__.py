"""Layer 6, the agent runtime: the agent, its service and work loops, run records, the comms log, claims,
priority bands, approval, LLM usage per run and reruns.
"""
