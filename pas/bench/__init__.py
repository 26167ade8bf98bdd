"""PAS benchmarks (`python -m pas.bench`): transport floors, and PAS figures measured against them.

pas.bench.floors  raw floor measurements (core / JetStream / HTTP chains, raw work queue)
pas.bench.stats   percentiles, rates, ratios, and the Figure every benchmark reports
pas.bench.report  terminal table, JSON, BENCHMARKS.md
pas.bench.run     run_floors / run_all, and register() for extra figure producers
"""
