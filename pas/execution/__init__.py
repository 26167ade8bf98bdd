"""Layer 5, execution: what a programmer runs and where: executors, the sandbox, the target repository's
environment, command/path policy, PAS's hardened git, integration of task branches, aider and the LLM edit
loop.
"""
