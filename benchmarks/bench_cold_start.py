"""Issue 11, case 9a: the first semantic lookup of a new process on a 100k-entry DiskStore.

``fill`` builds the fixture once (random unit vectors under the real embedder's id in one
partition, plus one real MiniLM entry the lookups must find); then every measurement is a fresh
``python`` process that loads the embedder (timed apart), builds a ``SemanticCache`` on the store
and times its first semantic lookup: ``rebuild`` (no saved index: every entry is read and the
ANN graph built) against ``snapshot`` (the saved index loaded, the change log replayed). Rounds
alternate; medians; ``os.getloadavg()`` is printed next to the figures.

    PYTHONPATH=.pkgs:. HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python3 benchmarks/bench_cold_start.py \\
        --dir /tmp/cold100k --entries 100000 --rounds 2 [--baseline-path /path/to/old/package/root]

``--baseline-path``: a PYTHONPATH whose ``cachemux`` is the code before snapshots, run for the
``rebuild`` rounds instead of this tree with ``index_path=False``.

Measured 2026-12-01 on the shared 2-core machine (load average 7-8 throughout), 100,001 entries,
one partition, random unit vectors (the worst case for the HNSW build), model loaded beforehand:

    start                                     first semantic lookup
    rebuild, code before snapshots            631 s  (1 run)
    rebuild + save, this code                 644 s  (1 run; the save alone 2.5 s, 211 MB)
    saved index, nothing to replay            0.83 / 0.89 / 1.14 s  (0.0014 x the rebuild)
    saved index, 999 changes to replay        2.0 / 2.0 s  (1.1 s at load 5.2; 6.8 s before the
                                              replayed entries were deferred from the graph)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

LLM = "bench-llm temperature=0"
PROMPT = "What is the capital of France?"
QUERY = "what is the capital of France"  # another exact key, cosine ~0.91 to PROMPT
THRESHOLD = 0.9


def fill(directory: Path, entries: int) -> None:
    import numpy as np

    from cachemux.cache import SemanticCache
    from cachemux.semantic import Embedder
    from cachemux.stores import DiskStore, Entry

    t0 = time.perf_counter()
    exists = (directory / "store").exists()
    store = DiskStore(directory / "store", capacity=None if exists else 2 * entries)
    cache = SemanticCache(store, embedder=Embedder(), threshold=THRESHOLD, index_path=False)
    _, part, _ = cache._prepare(PROMPT, LLM, None, "")
    meta = {"ns": "", "llm": LLM, "emb": cache._embedder_id}
    rng = np.random.default_rng(0)
    have = len(store)
    for start in range(have, entries, 1000):
        vecs = rng.standard_normal((min(1000, entries - start), cache.embedder.dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        # one SQLite transaction per 1,000 puts (diskcache transactions nest): the fixture only
        with store._cache.transact():  # type: ignore[union-attr]
            for i, v in enumerate(vecs):
                store.put(f"fill-{start + i}", Entry(value=f"filler {start + i}", cost=1.0, partition=part,
                                                     prompt=f"filler {start + i}", embedding=v, meta=meta))
    cache.update(PROMPT, LLM, "Paris", cost=1.0)
    print(json.dumps({"fill_s": time.perf_counter() - t0, "entries": len(store), "load": os.getloadavg()}))
    store.close()


def measure(directory: Path, mode: str) -> None:
    t0 = time.perf_counter()
    from cachemux.cache import SemanticCache
    from cachemux.semantic import Embedder
    from cachemux.stores import DiskStore

    emb = Embedder().load()
    emb.embed(["warm the model"])
    t1 = time.perf_counter()
    kw = {} if mode == "baseline" else {"index_path": False} if mode == "rebuild" else {}
    cache = SemanticCache(DiskStore(directory / "store"), embedder=emb, threshold=THRESHOLD, **kw)
    t2 = time.perf_counter()
    m = cache.match(QUERY, LLM)
    t3 = time.perf_counter()
    s = cache.stats()
    out = {"mode": mode, "imports_and_model_s": t1 - t0, "open_s": t2 - t1, "first_lookup_s": t3 - t2,
           "hit": None if m is None else [m.kind, m.value, round(m.similarity, 3)], "indexed": s["indexed"],
           "snapshot_errors": s.get("snapshot_errors"), "load": os.getloadavg()}
    if mode == "save":
        t4 = time.perf_counter()
        saved = cache.save_index()
        out["save_s"] = time.perf_counter() - t4
        out["saved"] = saved
        folder = directory / "store" / "semantic-index"
        out["snapshot_bytes"] = sum(p.stat().st_size for p in folder.iterdir()) if folder.exists() else 0
    cache.store.close()  # not cache.close(): leave the snapshot as it is
    print(json.dumps(out))


def _run(args: list[str], pythonpath: str | None = None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", nargs="?", default="bench", choices=["bench", "fill", "measure"])
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--mode", default="snapshot")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--replay", type=int, default=1000, help="entries added after the snapshot (replayed)")
    ap.add_argument("--baseline-path", default=None)
    a = ap.parse_args()
    if a.cmd == "fill":
        return fill(a.dir, a.entries)
    if a.cmd == "measure":
        return measure(a.dir, a.mode)
    print("fill:", _run(["fill", "--dir", str(a.dir), "--entries", str(a.entries)]), flush=True)
    print("first process (rebuilds, then saves):", _run(["measure", "--dir", str(a.dir), "--mode", "save"]), flush=True)
    rows: dict[str, list[dict]] = {"rebuild": [], "snapshot": []}
    for r in range(a.rounds):
        for mode in ("rebuild", "snapshot"):
            if a.baseline_path and mode == "rebuild":
                res = _run(["measure", "--dir", str(a.dir), "--mode", "baseline"], a.baseline_path)
            else:
                res = _run(["measure", "--dir", str(a.dir), "--mode", mode])
            rows[mode].append(res)
            print(f"round {r}:", res, flush=True)
    if a.replay:  # other writers after the snapshot: the new process replays the log
        _run(["fill", "--dir", str(a.dir), "--entries", str(a.entries + a.replay)])
        res = _run(["measure", "--dir", str(a.dir), "--mode", "snapshot"])
        rows[f"snapshot + {a.replay} replayed"] = [res]
        print("after more writes:", res, flush=True)
    base = statistics.median(x["first_lookup_s"] for x in rows["rebuild"])
    print("\n| start | runs | first semantic lookup, median s | vs rebuild | hit | load |")
    print("|---|---|---|---|---|---|")
    for mode, rs in rows.items():
        med = statistics.median(x["first_lookup_s"] for x in rs)
        print(f"| {mode} | {len(rs)} | {med:.3f} | {med / base:.4f} | {rs[0]['hit']} | {rs[0]['load'][0]:.1f} |")


if __name__ == "__main__":
    main()
