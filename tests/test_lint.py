"""ruff and mypy, with the configs in pyproject.toml, are part of the default suite: both stay clean."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib

from tests.conftest import ROOT


def _tool(name: str) -> list[str]:
    exe = shutil.which(name, path=str(ROOT / ".venv" / "bin")) or shutil.which(name)
    return [exe] if exe else [sys.executable, "-m", name]


def test_ruff_is_clean() -> None:
    r = subprocess.run([*_tool("ruff"), "check", "pas", "tests", "benchmarks", "scripts"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def mypy_cache() -> str:
    """mypy's incremental cache, kept per user like pip's and uv's, so that every clone of PAS on this machine
    shares it: a fresh clone's first run takes a minute or two of CPU, the next ones seconds. mypy checks each
    cached module against its source (size, then hash where the mtime differs), so a stale entry is redone,
    never trusted."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pas-tests", "mypy")


def test_mypy_is_clean() -> None:
    r = subprocess.run([*_tool("mypy"), "--cache-dir", mypy_cache()], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


STRICT_LAYERS = ["pas.transport.*", "pas.runtime.*"]


def _strict_flags() -> set[str]:
    """The flags `mypy --strict` turns on, read from this mypy's own --help (as config keys)."""
    r = subprocess.run([*_tool("mypy"), "--help"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "COLUMNS": "1000"})
    text = re.split(r"\n  --strict\s", r.stdout, maxsplit=1)[1].split("\n  --", 1)[0]
    text = re.sub(r"-\n\s*", "-", text)  # argparse wraps inside a flag's name at a hyphen
    flags = {f.replace("-", "_") for f in re.findall(r"--([a-z][a-z-]+)", text)}
    assert {"disallow_untyped_defs", "warn_return_any"} <= flags, r.stdout
    return flags


def test_transport_and_runtime_are_mypy_strict() -> None:
    """test_mypy_is_clean runs mypy with pyproject's config: its override must hold every flag of
    --strict for the transport and runtime layers (the global section holds the ones mypy applies to all)."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    override = next((o for o in cfg.get("overrides", []) if o.get("module") == STRICT_LAYERS), None)
    assert override is not None, f"no [[tool.mypy.overrides]] for {STRICT_LAYERS}"
    on = {k for k, v in {**cfg, **override}.items() if v is True}
    assert _strict_flags() - on == set()


def test_ruff_limits_arguments_in_pas() -> None:
    """ruff's too-many-arguments (PLR0913) is on with max-args 6 and nothing in pas/ is exempt."""
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "PLR0913" in lint["select"] and lint["pylint"]["max-args"] == 6
    assert not any("PLR0913" in codes for path, codes in lint["per-file-ignores"].items() if path.startswith("pas"))
    r = subprocess.run([*_tool("ruff"), "check", "--select", "PLR0913", "--output-format", "concise", "pas"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
