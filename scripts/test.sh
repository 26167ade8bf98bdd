#!/usr/bin/env bash
# One command: set up (venv, dev extras, chromium, JS client, aider) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
export PATH="$HOME/.local/bin:$PATH"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
