"""`pas eval`: a task set, a harness that runs it through the swarm and one model alone, reports."""
