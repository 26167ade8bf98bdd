#!/usr/bin/env bash
# One command: set up (venv, dev extras, chromium, JS client, aider, the nats CLI) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
export PATH="${PAS_TOOLS_BIN:-$HOME/.local/share/pas/bin}:$HOME/.local/bin:$PATH"
# Test modules run side by side in PAS_TEST_WORKERS processes (pytest-xdist; 0: all in this one): most of a
# test's time is spent waiting for agents, servers and subprocesses: with 2 workers on 2 cores a third of the CPU
# sat idle (944 s), with 3 the suite took 847 s (same machine, same day; 4 not measured). A module
# stays in one worker (--dist loadfile: its shared stack and server with it), the longest modules first
# (tests/conftest.py LONGEST_FIRST, hence --no-loadscope-reorder).
# --durations: the 25 slowest tests close the report (the suite's time is a target: issue 21, <= 10 minutes).
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "${PAS_TEST_WORKERS:-3}" --dist loadfile --no-loadscope-reorder \
    --durations=25 "$@"
