#!/usr/bin/env bash
# One command: set up (venv, dev extras, chromium, JS client, aider, the nats CLI) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
export PATH="${PAS_TOOLS_BIN:-$HOME/.local/share/pas/bin}:$HOME/.local/bin:$PATH"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
