#!/usr/bin/env bash
# One command: set up the runtime and run the demo job on the embedded nats-server (no API keys).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pas demo "$@"
