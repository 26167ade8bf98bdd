"""Node loss on a 3-node JetStream cluster: how much later does a run end, and how long until the
next task completes after the loss?

    python benchmarks/cluster_loss.py [--trials 3] [--kill-after 2.5] [--out benchmarks/cluster_loss.json]

Method (one benchmark run, one cluster, one PAS deployment):
- 3 nats-server nodes on loopback from configs/nats/cluster.conf (tests/cluster.py), R3 streams/KV.
- `pas up --except 'prog-*'` attached to node 1, `pas up --only 'prog-*'` (10 programmers) to node 2.
- A job of 30 `sleep 1` command tasks (6 per lane). Its duration = the run record's finished_at
  minus created_at (both stamped by PAS).
- Trials alternate: a baseline run, then the same run with one node SIGKILLed `--kill-after` s
  after the submit, for each victim: node 2 (the programmers' node), node 1 (the core agents'
  node), node 3 (no PAS process). Before each loss run, the leaders of every replicated stream and
  durable consumer are moved onto the victim ("leads all": every asset needs an election, the
  worst case) or off it ("leads none": only its clients move). After each loss run the node is
  restarted and must have caught up (same last sequence on every stream) before the next trial.
- Figures: delay = loss run's duration - the median baseline duration; next completion = the
  earliest task finished_at after the kill minus the kill time; leaders back = from the kill until
  a survivor sees a live leader for every replicated asset (nats-server's own election time);
  end after leaders back = how long PAS took to finish once JetStream was whole again;
  redelivered = tasks with attempts > 1 (delivered again after the ack deadline: a work item the
  dying node had sent but no programmer received, or a task whose result was not stored in time).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pas.protocol import subjects as S  # noqa: E402
from pas.transport.client import PasClient  # noqa: E402
from tests.cluster import Cluster, Node  # noqa: E402

N_TASKS = 30
R3 = ["-c", "settings.nats.replicas=3"]


def ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def start_pas(url: str, sel: list[str], base: Path, name: str) -> subprocess.Popen[bytes]:
    ready = base / f"{name}.ready"
    args = [sys.executable, "-m", "pas", "up", "--no-http", "--nats-url", url, "--ready-file", str(ready), *sel, *R3]
    p = subprocess.Popen(args, stdout=(base / f"{name}.log").open("ab"), stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(base),
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 120
    while not ready.exists():
        if p.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"pas up ({name}) did not start: {(base / f'{name}.log').read_text()[-2000:]}")
        time.sleep(0.05)
    return p


def wait_leaders(cluster: Cluster, victim: Node, killed_at: float) -> float:
    """Seconds from the kill until every replicated asset (meta, streams, durable consumers) has a
    leader again on a surviving node, as a survivor sees it (polled every 50 ms)."""
    survivor = next(n for n in cluster.nodes if n is not victim)
    live = {n.name for n in cluster.nodes if n is not victim}
    while True:
        try:
            if all(v in live for v in cluster.leaders(survivor).values()):
                return time.time() - killed_at
        except (OSError, ValueError):
            pass
        time.sleep(0.05)


async def one_run(client: PasClient, run_id: str, cluster: Cluster, victim: Node | None,
                  kill_after: float, leads: str = "") -> dict[str, Any]:
    tasks = [{"lane": S.LANES[i % len(S.LANES)], "instruction": f"t{i}", "executor": "command",
              "command": "sleep 1"} for i in range(N_TASKS)]
    if victim is not None:  # before the clock starts: the victim leads every asset, or none
        await cluster.place_leaders(client.nc, on=victim if leads == "all" else None,
                                    off=victim if leads == "none" else None)
    await client.submit({"title": "cluster-loss", "run_id": run_id, "tasks": tasks})
    killed_at = None
    leaders_back: asyncio.Future[float] | None = None
    if victim is not None:
        await asyncio.sleep(kill_after)
        led = [k for k, v in cluster.leaders(victim).items() if v == victim.name]
        killed_at = time.time()
        cluster.kill(victim)
        leaders_back = asyncio.ensure_future(asyncio.to_thread(wait_leaders, cluster, victim, killed_at))
    st = await client.wait(run_id, timeout_s=300)
    out: dict[str, Any] = {
        "run_id": run_id, "victim": victim.name if victim else None, "leads": leads, "status": st["status"],
        "duration_s": round(ts(st["finished_at"]) - ts(st["created_at"]), 3),
        "redelivered": sum(1 for t in st["tasks"] if t["attempts"] != 1),
        "completed": sum(1 for t in st["tasks"] if t["status"] == "completed"),
    }
    if killed_at is not None:
        after = [ts(t["finished_at"]) - killed_at for t in st["tasks"]
                 if t.get("finished_at") and ts(t["finished_at"]) > killed_at]
        out["next_completion_s"] = round(min(after), 3) if after else None
        out["end_after_kill_s"] = round(ts(st["finished_at"]) - killed_at, 3)
        out["victim_led"] = len(led)
        assert leaders_back is not None
        out["leaders_back_s"] = round(await leaders_back, 3)
        cluster.start_node(victim)  # back, and caught up, before the next trial
        cluster.wait_healthy([victim], timeout_s=120)
        deadline = time.monotonic() + 120
        while not cluster.caught_up(victim, skip={f"KV_{S.KV_AGENTS}"}):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{victim.name} did not catch up within 120 s")
            await asyncio.sleep(0.5)
        out["caught_up"] = True
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=3, help="loss runs per victim (and as many baselines)")
    ap.add_argument("--kill-after", type=float, default=2.5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "cluster_loss.json"))
    a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pas-cluster-loss-"))
    cluster = Cluster(base).start()
    n1, n2, n3 = cluster.nodes
    procs = []
    results: list[dict[str, Any]] = []
    try:
        procs.append(start_pas(n1.url, ["--except", "prog-*"], base, "core"))
        procs.append(start_pas(n2.url, ["--only", "prog-*"], base, "progs"))
        client = await PasClient.connect(cluster.urls, timeout_s=10)
        await one_run(client, "warmup", cluster, None, 0)
        k = 0
        for victim in (n2, n1, n3):
            for _ in range(a.trials):
                for leads in ("all", "none"):
                    k += 1
                    for v in (None, victim):
                        r = await one_run(client, f"cl{k}{'k' if v else 'b'}", cluster, v, a.kill_after, leads)
                        results.append(r)
                        print(json.dumps(r), flush=True)
        await client.close()
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        cluster.stop()
    base_d = [r["duration_s"] for r in results if r["victim"] is None]
    summary: dict[str, Any] = {"baseline_duration_s": {"median": statistics.median(base_d), "max": max(base_d)}}
    for (name, role), leads in itertools.product(
            (("n2", "programmers' node"), ("n1", "core agents' node"), ("n3", "no PAS client")), ("all", "none")):
        rs = [r for r in results if r["victim"] == name and r["leads"] == leads]
        delays = [round(r["duration_s"] - statistics.median(base_d), 3) for r in rs]
        nxt = [r["next_completion_s"] for r in rs if r["next_completion_s"] is not None]
        summary[f"{name}, leads {leads}"] = {"role": role, "delay_s": delays, "delay_max_s": max(delays),
                         "leaders_back_s": [r["leaders_back_s"] for r in rs],
                         "end_after_leaders_back_s": [round(r["end_after_kill_s"] - r["leaders_back_s"], 3)
                                                      for r in rs],
                         "next_completion_s": nxt, "redelivered": sum(r["redelivered"] for r in rs),
                         "all_completed": all(r["status"] == "completed" and r["completed"] == N_TASKS for r in rs)}
    doc = {"tasks": N_TASKS, "kill_after_s": a.kill_after, "trials": a.trials, "summary": summary,
           "runs": results, "loadavg": os.getloadavg()}
    Path(a.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
