"""`pas bench --figure NAME`: one figure alone (the integrator re-measures the hmi figure that way). A
name that is no figure is refused before anything starts, with the names there are."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_an_unknown_figure_is_refused_with_the_list() -> None:
    proc = subprocess.run([sys.executable, "-m", "pas", "bench", "--figure", "hmi", "--figure", "nope"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "pas bench: no figure nope; figures: " in proc.stderr
    assert "hmi" in proc.stderr.split("figures: ", 1)[1].split(", ")
