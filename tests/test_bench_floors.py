"""The benchmark floors run end to end (real nats-server, real uvicorn processes) and produce sane
figures. Never asserts a time: only shapes, counts and internal consistency."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import report, run
from benchmarks.stats import Figure, Summary, percentile, ratio

pytestmark = pytest.mark.slow


def test_percentile_and_ratio_helpers() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 50) == 1.5
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))
    assert ratio(6.0, 2.0) == 3.0
    assert ratio(1.0, 0.0) is None and ratio(None, 1.0) is None
    assert Figure("x", 4.0, "ms", floor_name="f", floor_value=2.0).ratio == 2.0
    s = Summary.of([0.1, 0.2, 0.3, 0.4])
    assert s.n == 4 and s.min <= s.p50 <= s.p99 <= s.max


def test_register_extra_producer() -> None:
    async def extra(ctx: run.BenchContext) -> list[Figure]:
        return []

    run.register(extra, name="test-extra")
    try:
        assert [r.name for r in run.PRODUCERS].count("test-extra") == 1
        run.register("test-extra")(extra)  # re-registering replaces, not duplicates
        assert [r.name for r in run.PRODUCERS].count("test-extra") == 1
    finally:
        run.unregister("test-extra")
    assert "test-extra" not in [r.name for r in run.PRODUCERS]


async def test_quick_floors_and_reports(tmp_path) -> None:
    seen: dict[str, object] = {}

    async def extra(ctx: run.BenchContext) -> list[Figure]:
        # an extra producer sees the floors already measured, on the shared server
        core = ctx.figure("core_chain.p50")
        assert core is not None and ctx.url.startswith("nats://") and ctx.quick
        seen["core"] = core.value
        return [Figure("extra.latency", core.value * 2, "ms", floor_name=core.name, floor_value=core.value,
                       target="<= 3x floor", passed=True)]

    async def broken(ctx: run.BenchContext) -> list[Figure]:
        raise RuntimeError("boom")

    ctx = await run.run_all(True, producers=[run.Registered("extra", extra), run.Registered("broken", broken)],
                            log=lambda s: None)
    by_name = {f.name: f for f in ctx.figures}
    sizes = run.Sizes.for_mode(True)

    for kind in ("core", "js", "http"):
        name = f"{kind}_chain"
        p50, p99 = by_name[f"{name}.p50"], by_name[f"{name}.p99"]
        assert p50.unit == p99.unit == "ms"
        assert 0 < p50.value <= p99.value and math.isfinite(p99.value)
        raw = ctx.raw[name]
        assert raw.n == sizes.chain_n and len(raw.latencies_s) == sizes.chain_n
        assert raw.hops == sizes.hops and raw.errors == 0
        assert all(t > 0 for t in raw.latencies_s)
        assert p50.passed is None and p99.passed is None
        if kind != "core":  # compared against the core chain
            assert p50.floor_name == "core_chain.p50" and p50.floor_value == by_name["core_chain.p50"].value
            assert p50.ratio == pytest.approx(p50.value / p50.floor_value)
            assert p99.ratio == pytest.approx(p99.value / by_name["core_chain.p99"].value)
    js_raw = ctx.raw["js_chain"]
    assert js_raw.appends == sizes.hops * (js_raw.n + js_raw.warmup)

    # the work-queue floor in both shapes (issue 21), and the faster one is the one PAS is set against
    for prefix, shape in (("workqueue_raw", "per_worker"), ("workqueue_1conn", "one_connection")):
        wq = ctx.raw[prefix]
        assert wq.shape == shape and wq.n == wq.published == wq.acked == sizes.wq_n
        assert wq.remaining == 0 and sum(wq.per_worker) == wq.n + wq.redelivered
        assert len(wq.per_worker) == sizes.wq_workers
        tps = by_name[f"{prefix}.tasks_per_s"]
        assert tps.unit == "tasks/s" and tps.value > 0 and math.isfinite(tps.value)
        assert tps.value == pytest.approx(wq.acked / wq.elapsed_s)
    faster = run.workqueue_floor(ctx)
    assert faster is not None and faster.value == max(by_name["workqueue_raw.tasks_per_s"].value,
                                                      by_name["workqueue_1conn.tasks_per_s"].value)

    assert by_name["extra.latency"].ratio == pytest.approx(2.0) and seen["core"] == by_name["core_chain.p50"].value
    assert by_name["broken"].passed is False and "boom" in by_name["broken"].note

    # the three renderings
    table = report.render_table(ctx.figures)
    for name in by_name:
        assert name in table
    machine = report.machine_info("python -m benchmarks --quick")
    assert machine["cpu_count"] >= 1 and machine["nats_server"].startswith("v")
    out = report.write_json(tmp_path / "b.json", ctx.figures, machine, details=ctx.details)
    data = json.loads(out.read_text())
    assert len(data["figures"]) == len(ctx.figures) and data["details"]["core_chain"]["n"] == sizes.chain_n
    figs, _ = report.load_json(out)
    assert [f.name for f in figs] == [f.name for f in ctx.figures]
    notes = tmp_path / "NOTES.md"
    notes.write_text("# What limits each figure / profile-driven fixes\n\nthe finding\n")
    md = report.write_markdown(tmp_path / "BENCHMARKS.md", ctx.figures, machine, notes_path=notes).read_text()
    assert "| core_chain.p50 |" in md and "## Machine" in md and "the finding" in md
    assert md.count("What limits each figure") == 1


async def test_natsbench_floors_without_a_monitoring_port_report_skipped(tmp_path: Path) -> None:
    """The `nats bench` floors that read the server's monitoring port report themselves skipped, with
    why, when the server has none (natscli installed or not): never a failure, never a number."""
    from benchmarks import natsbench  # noqa: F401  (registers the floors)

    ctx = run.BenchContext(url="nats://127.0.0.1:1", quick=True, data_dir=tmp_path, sizes=run.Sizes.for_mode(True))
    for name in ("natsbench_pubsub", "natsbench_reqrep"):
        producer = next(r.fn for r in run.FLOOR_PRODUCERS if r.name == name)
        (fig,) = await producer(ctx)
        assert fig.name == name.replace("_", ".", 1) and math.isnan(fig.value) and fig.passed is None
        assert fig.note and fig.note.startswith("skipped: "), fig.note
    assert not ctx.details  # nothing was measured

def test_pas_bench_without_the_checkout_says_so(tmp_path: Path) -> None:
    """An installation without benchmarks/ beside the package (a wheel): a clear message, exit 2."""
    import pas

    shutil.copytree(Path(pas.__file__).parent, tmp_path / "pas", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pas", "bench", "--quick"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    assert "benchmarks/ of a PAS checkout" in proc.stderr and "python -m benchmarks" in proc.stderr
