"""The PAS benchmark harness, beside the package (not installed with it): `pas bench` from a checkout,
or `python -m benchmarks`. Transport floors, and PAS figures measured against them in the same run.

benchmarks.floors      raw floor measurements (core / JetStream / HTTP chains, raw work queue)
benchmarks.natsbench   floors from the official `nats bench` tool, and PAS set against them
benchmarks.fig_*       one module per PAS figure (latency, throughput, parallel, failover, footprint,
                       comms, cli), each against the floors of the same run
benchmarks.stats       percentiles, rates, ratios, and the Figure every benchmark reports
benchmarks.report      terminal table, JSON, BENCHMARKS.md
benchmarks.run         run_all, the floors as producers, and register() for figure producers
benchmarks.cli         the command line (`pas bench`, `python -m benchmarks`)

cluster_loss.py and sandbox_cost.py are separate scripts (see their docstrings), not part of a run.
"""
