"""Issue 11, case 5: drift between the semantic index and its store under concurrency, with figures.

Runs ``--runs`` rounds per store kind of ``--threads`` threads x ``--ops`` operations (lookups,
updates on a miss, deletes; capacity 12 of 40 prompts, so constant evictions) on one
``SemanticCache``, and counts afterwards, without a sync (what the next lookup searches): stray
keys (indexed, gone from the store) and missing ones (embedded in the store, not indexed).
Optionally ``--procs`` processes on one DiskStore and one RedisStore, compared after one sync.

    PYTHONPATH=.pkgs:. HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python3 benchmarks/stress_index_sync.py --runs 5

Measured 2026-12-01 (2 busy cores, load average 7-10), 8 threads x 300 operations per run:
before the index lock, runs with drift: disk 2 of 5 and 1 of 10 (1 stray or missing key each),
memory 0 of 15, disk via asyncio 0 of 5; after: 0 of 15 (disk), 0 of 15 (memory), 0 of 5
(asyncio); 3 processes x 2 threads on one DiskStore / RedisStore: 0 drift after a sync, before
and after (the change log already converged them).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from index_stress import PROMPTS, MemoEmbedder, drift, run_processes, run_tasks, run_threads  # noqa: E402

from cachemux.cache import SemanticCache  # noqa: E402
from cachemux.semantic import Embedder  # noqa: E402
from cachemux.stores import DiskStore, MemoryStore  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--ops", type=int, default=300, help="operations per thread")
    ap.add_argument("--kinds", default="memory,disk,disk-asyncio")
    ap.add_argument("--procs", type=int, default=0, help="also N processes on one DiskStore and one RedisStore")
    ap.add_argument("--switch", type=float, default=1e-5, help="sys.setswitchinterval (more interleaving)")
    a = ap.parse_args()
    sys.setswitchinterval(a.switch)
    emb = MemoEmbedder(Embedder().load())
    emb.embed(PROMPTS)
    print(f"load {os.getloadavg()}")
    print("| store | runs | operations | runs with drift | stray keys (per run) | missing keys (per run) | s/run |")
    print("|---|---|---|---|---|---|---|")
    for kind in a.kinds.split(","):
        strays, missings, ops, secs = [], [], 0, []
        for run in range(a.runs):
            d = tempfile.mkdtemp(prefix="cachemux-stress-")
            store = MemoryStore(capacity=12) if kind == "memory" else DiskStore(d, capacity=12)
            cache = SemanticCache(store, embedder=emb).warmup()
            t = time.perf_counter()
            if kind.endswith("asyncio"):
                n = run_tasks(cache, tasks=a.threads, ops=a.ops, seed=run)
            else:
                n = run_threads(cache, threads=a.threads, ops=a.ops, seed=run)
            secs.append(time.perf_counter() - t)
            s, m = drift(cache)
            strays.append(s)
            missings.append(m)
            ops += n["ops"]
            cache.close()
        bad = sum(1 for s, m in zip(strays, missings) if s or m)
        print(f"| {kind} | {a.runs} | {ops} | {bad} | {strays} | {missings} | {sorted(secs)[len(secs) // 2]:.1f} |",
              flush=True)
    if a.procs:
        from redis_server import RedisServer

        d = tempfile.mkdtemp(prefix="cachemux-stress-")
        DiskStore(Path(d) / "disk", capacity=12).close()
        (Path(d) / "redis").mkdir()
        server = RedisServer(Path(d) / "redis").start()
        try:
            for kind, target in (("disk", str(Path(d) / "disk")), ("redis", server.url)):
                reports = run_processes(kind, target, emb, procs=a.procs, threads=2, ops=a.ops)
                print(f"| {kind} x {a.procs} processes (after a sync) | 1 | {sum(r['ops'] for r in reports)} | "
                      f"{sum(1 for r in reports if r['stray'] or r['missing'])} | "
                      f"{[r['stray'] for r in reports]} | {[r['missing'] for r in reports]} | - |", flush=True)
        finally:
            server.stop()
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
