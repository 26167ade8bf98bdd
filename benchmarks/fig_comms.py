"""pas.comms: N comms entries written to PAS_COMMS, then read back with pas.comms.read()."""

from __future__ import annotations

import asyncio
import statistics
import time

from benchmarks.run import BenchContext, register
from benchmarks.stats import Figure, rate
from pas.config.model import load_config
from pas.protocol import subjects as S


# ---- 6. comms log replay -------------------------------------------------------------------
@register("pas.comms")
async def pas_comms(ctx: BenchContext) -> list[Figure]:
    from pas.runtime import comms as comms_mod
    from pas.transport.bus import Bus

    n = ctx.sizes.comms_n
    srv = await ctx.start_server("pas-comms")
    cfg = load_config()
    bus = await Bus.open(srv.url, cfg, name="bench-comms")
    try:
        log = comms_mod.CommsLog(bus.nc, cfg.settings.comms.preview_chars)
        agents = [a.id for a in cfg.agents]
        types = ("CMD", "STATUS", "RESPONSE")
        t0 = time.perf_counter()
        for k in range(n):
            await log.log(comms_mod.Entry(agents[k % len(agents)], agents[(k + 1) % len(agents)], types[k % 3],
                          f"task code-1-{k % 10:02d}: bench entry {k}", f"r-bench-{k // 100:05d}", "running",
                          metadata={"k": k}))
        await bus.nc.flush()
        deadline = time.monotonic() + 60
        stored = 0
        while time.monotonic() < deadline:
            stored = (await bus.js.stream_info(S.STREAM_COMMS)).state.messages
            if stored >= n:
                break
            await asyncio.sleep(0.05)
        write_s = time.perf_counter() - t0
        reads: list[tuple[int, float]] = []
        for _ in range(ctx.sizes.comms_reads):
            count = 0
            t0 = time.perf_counter()
            async for _e in comms_mod.read(bus.js):
                count += 1
            reads.append((count, time.perf_counter() - t0))
    finally:
        await bus.close()
        await asyncio.to_thread(srv.stop)
    rates = [rate(c, s) for c, s in reads]
    value = statistics.median(rates)
    ok = stored == n and all(c == n for c, _ in reads)
    ctx.details["pas.comms"] = {"entries": n, "stored": stored, "write_s": write_s,
                                "write_per_s": rate(stored, write_s),
                                "reads": [{"entries": c, "seconds": s, "per_s": rate(c, s)} for c, s in reads]}
    note = (f"{n} entries written with CommsLog.log ({rate(stored, write_s):,.0f}/s, stored {stored}), then read "
            f"back with pas.comms.read(js) (all of PAS_COMMS); median of {len(reads)} reads: "
            f"{', '.join(f'{c} in {s:.2f} s' for c, s in reads)}")
    if not ok:
        note += "; COUNT MISMATCH"
    return [Figure("pas.comms.replay_per_s", value, "entries/s", target=">= 50,000 entries/s",
                   passed=bool(ok and value >= 50000), note=note)]
