"""Layer 4, models: the LLM client with failover, breakers and budgets, env overrides of profiles, recordings of
every exchange, and the structured planner.
"""
