"""Latency of cachemux's semantic cache beside LangChain's InMemoryCache and SQLiteCache, same run.

For each cache size N (1k, 10k, 100k entries) it measures p50/p99 of

* an exact hit (same prompt again: hash + store read, no embedding),
* a semantic hit (a paraphrase: embedding with the real model + nearest neighbour + store read),
* a miss (a new question: embedding + search, nothing found),

through ``SemanticCache.lookup`` (the core) and ``CacheMuxCache.lookup`` (the LangChain adapter,
which also revives the generations with ``langchain_core.load.loads``), and LangChain's own
``InMemoryCache`` (a dict) and ``SQLiteCache`` (SQLAlchemy over SQLite; from langchain-community)
holding N entries, as the baselines: exact match only, so their "hit" is our exact hit.

Large caches are filled with synthetic prompts whose embeddings are random unit vectors (passed
as ``update(embedding=...)``, so the model is not run 100k times); the measured queries are real
Quora questions with real embeddings: the cached question of a duplicate pair is inserted and
its paraphrase looked up (pairs whose cosine reaches the cache's threshold), and misses are other
real questions. Past 20k entries the index is usearch HNSW, so ``recall`` (semantic probes that
found their entry) is reported too.

Goals on the 2-core reference machine: exact hit <= 1 ms p50, semantic hit <= 15 ms p50.

    python benchmarks/bench_cache.py            # 1k, 10k, 100k; writes results/bench_cache.json
    python benchmarks/bench_cache.py --quick    # 1k and 10k, fewer queries
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from cachemux import paths

LLM = "bench-llm temperature=0"
GOALS_MS = {"exact_hit": 1.0, "semantic_hit": 15.0}


def percentiles(times_s: list[float]) -> dict[str, float]:
    a = np.asarray(times_s) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 4), "p99_ms": round(float(np.percentile(a, 99)), 4),
            "n": len(a)}


def timed(fn, args_list) -> tuple[list[float], list[Any]]:
    times, results = [], []
    for args in args_list:
        t = time.perf_counter()
        r = fn(*args)
        times.append(time.perf_counter() - t)
        results.append(r)
    return times, results


def load_probes(n: int, threshold: float, embedder, seed: int) -> dict[str, Any]:
    """Real duplicate pairs whose cosine reaches ``threshold`` (cached question, paraphrase) and
    real questions far from all of them (misses), with their embeddings."""
    from cachemux.lab.calibrate_semantic import _default_data, load_pairs
    from cachemux.semantic.embed_form import embed_form
    from cachemux.semantic.keys import normalize_prompt

    data = _default_data()
    pairs = load_pairs(data, data.with_name("SPLITS.json"), 0, seed)["test"]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    dups = [pairs[i] for i in order if pairs[i]["label"] == 1]
    others = [pairs[i] for i in order if pairs[i]["label"] == 0]
    chosen: list[tuple[str, str]] = []
    va_all, vb_all = [], []
    step = min(512, 4 * n)
    for start in range(0, len(dups), step):
        batch = [p for p in dups[start:start + step]
                 if normalize_prompt(p["text_a"]) != normalize_prompt(p["text_b"])]
        va = embedder.embed([embed_form(p["text_a"]) for p in batch])  # the form the cache embeds
        vb = embedder.embed([embed_form(p["text_b"]) for p in batch])
        keep = np.nonzero(np.sum(va * vb, axis=1) >= threshold + 0.002)[0]  # margin for float noise
        seen = {a for a, _ in chosen}
        for i in keep:
            if batch[i]["text_a"] not in seen and len(chosen) < n:
                seen.add(batch[i]["text_a"])
                chosen.append((batch[i]["text_a"], batch[i]["text_b"]))
                va_all.append(va[i])
                vb_all.append(vb[i])
        if len(chosen) >= n:
            break
    va_m = np.stack(va_all)
    cand = [p["text_a"] for p in others[: 3 * n]]
    vc = embedder.embed([embed_form(t) for t in cand])
    far = np.nonzero((vc @ va_m.T).max(axis=1) < threshold - 0.05)[0][:n]
    return {"cached": [a for a, _ in chosen], "paraphrases": [b for _, b in chosen], "cached_vecs": va_m,
            "misses": [cand[i] for i in far]}


def bench_ours(size: int, probes: dict[str, Any], embedder, args, store_kind: str, tmp: Path) -> dict[str, Any]:
    from langchain_core.load import dumps
    from langchain_core.outputs import Generation

    from cachemux.cache import SemanticCache
    from cachemux.stores import DiskStore, MemoryStore
    from langchain_cachemux import CacheMuxCache

    capacity = 2 * size + 10 * len(probes["cached"])  # room for the misses: no eviction while measuring
    store = (MemoryStore(capacity, "gdsf") if store_kind == "memory"
             else DiskStore(tmp / f"disk-{size}", capacity=capacity, policy="gdsf"))
    cache = SemanticCache(store, embedder=embedder)
    rng = np.random.default_rng(args.seed + size)
    n_fill = size - len(probes["cached"])
    t0 = time.perf_counter()
    fill_value = dumps([Generation(text="a synthetic answer")])
    for start in range(0, n_fill, 4096):
        m = min(4096, n_fill - start)
        vecs = rng.standard_normal((m, embedder.dim)).astype(np.float32)
        for i in range(m):
            j = start + i
            cache.update(f"synthetic prompt {j}: tell me about item {j * 7919 % 100003}", LLM, fill_value,
                         cost=float(rng.random()) + 0.1, embedding=vecs[i])
    for q, v in zip(probes["cached"], probes["cached_vecs"]):
        cache.update(q, LLM, dumps([Generation(text=f"answer to: {q}")]), cost=1.0, embedding=v)
    fill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cache.warmup()  # builds the index from the store (bulk; usearch past 20k entries)
    index_s = time.perf_counter() - t0
    assert len(store) == size, (len(store), size)

    out: dict[str, Any] = {"store": store_kind, "size": size, "fill_s": round(fill_s, 2),
                           "index_build_s": round(index_s, 2),
                           "index_backend": "usearch HNSW" if cache.stats()["ann_partitions"] else "exact numpy"}
    adapter = CacheMuxCache(cache)
    want = {cache.key_for(q, LLM) for q in probes["cached"]}
    for _ in range(2):  # warm the code paths (and the model's first calls)
        cache.lookup(probes["cached"][0], LLM)
        cache.lookup(probes["paraphrases"][0], LLM)
    # CacheMuxCache revives a value once per process (langchain_cachemux.revive): the long-lived
    # adapter has read every cached probe once (what a process that wrote or served them holds);
    # "adapter_exact_hit_cold" reads through a new adapter each time (a value another process wrote)
    for q in probes["cached"]:
        adapter.lookup(q, LLM)
    fresh = iter(lambda: CacheMuxCache(cache), None)
    # Interleaved: probe i runs every kind back to back (in a rotating order), so a burst of load
    # from other processes hits all kinds alike instead of one block of measurements.
    kinds = {
        "exact_hit": lambda i: cache.lookup(probes["cached"][i], LLM),
        "semantic_hit": lambda i: cache.match(probes["paraphrases"][i], LLM),
        "miss": lambda i: cache.lookup(probes["misses"][i % len(probes["misses"])], LLM),
        "embedding_alone": lambda i: embedder.embed([probes["paraphrases"][i]]),
        "adapter_exact_hit": lambda i: adapter.lookup(probes["cached"][i], LLM),
        "adapter_exact_hit_cold": lambda i, a=None: a.lookup(probes["cached"][i], LLM),
        "adapter_semantic_hit": lambda i: adapter.lookup(probes["paraphrases"][i], LLM),
    }
    names = list(kinds)
    times: dict[str, list[float]] = {k: [] for k in names}
    found = misses_hit = 0
    for rnd in range(args.rounds):
        for i in range(len(probes["cached"])):
            shift = (i + rnd) % len(names)
            for name in names[shift:] + names[:shift]:
                fn = kinds[name]
                if name == "adapter_exact_hit_cold":
                    fn = functools.partial(fn, a=next(fresh))  # built before the clock starts
                t = time.perf_counter()
                r = fn(i)
                times[name].append(time.perf_counter() - t)
                if name == "semantic_hit":
                    found += r is not None and r.kind == "semantic" and r.key in want
                elif name == "miss":
                    misses_hit += r is not None
                elif name in ("adapter_exact_hit", "adapter_exact_hit_cold"):
                    assert r is not None
    for name in names:
        out[name] = percentiles(times[name])
    out["semantic_recall"] = round(found / len(times["semantic_hit"]), 4)
    out["false_hits_on_misses"] = misses_hit
    out["search_and_store_overhead_p50_ms"] = round(out["semantic_hit"]["p50_ms"] - out["embedding_alone"]["p50_ms"], 3)
    out["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    cache.close()
    return out


def bench_inmemory(size: int, probes: dict[str, Any]) -> dict[str, Any]:
    from langchain_core.caches import InMemoryCache
    from langchain_core.outputs import Generation

    c = InMemoryCache()
    for j in range(size - len(probes["cached"])):
        c.update(f"synthetic prompt {j}: tell me about item {j * 7919 % 100003}", LLM, [Generation(text="a")])
    for q in probes["cached"]:
        c.update(q, LLM, [Generation(text=f"answer to: {q}")])
    t, res = timed(c.lookup, [(q, LLM) for q in probes["cached"]])
    assert all(r is not None for r in res)
    out = {"cache": "langchain_core InMemoryCache", "size": size, "exact_hit": percentiles(t)}
    t, _ = timed(c.lookup, [(q, LLM) for q in probes["paraphrases"]])
    out["miss"] = percentiles(t)  # a paraphrase is a miss for an exact cache
    return out


def bench_sqlite(size: int, probes: dict[str, Any], tmp: Path) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from langchain_community.cache import SQLiteCache
    except ImportError as exc:
        return {"cache": "langchain_community SQLiteCache", "size": size,
                "skipped": f"langchain-community is not installed ({exc}); pip install langchain-community"}
    from langchain_core.load import dumps
    from langchain_core.outputs import Generation
    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    c = SQLiteCache(str(tmp / f"lc-{size}.db"))
    rows = [{"prompt": f"synthetic prompt {j}: tell me about item {j * 7919 % 100003}", "llm": LLM,
             "idx": 0, "response": dumps(Generation(text="a"))} for j in range(size - len(probes["cached"]))]
    with Session(c.engine) as s, s.begin():  # bulk fill through the cache's own table
        if rows:
            s.execute(insert(c.cache_schema), rows)
    for q in probes["cached"]:
        c.update(q, LLM, [Generation(text=f"answer to: {q}")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # loads() without allowed_objects: a deprecation notice
        t, res = timed(c.lookup, [(q, LLM) for q in probes["cached"]])
        assert all(r is not None for r in res)
        out = {"cache": "langchain_community SQLiteCache", "size": size, "exact_hit": percentiles(t)}
        t, _ = timed(c.lookup, [(q, LLM) for q in probes["paraphrases"]])
    out["miss"] = percentiles(t)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1k and 10k entries, 50 queries per kind")
    ap.add_argument("--sizes", default=None, help="comma-separated cache sizes (default 1000,10000,100000)")
    ap.add_argument("--disk-sizes", default=None,
                    help="sizes also measured on a DiskStore (default 1000,10000; quick: 1000; '' for none)")
    ap.add_argument("--queries", type=int, default=None, help="queries per kind (default 200; quick 50)")
    ap.add_argument("--rounds", type=int, default=2, help="passes over the probes (default 2)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's choice); 1 is faster on a machine shared with other jobs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=paths.results_dir() / "bench_cache.json")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("1000,10000" if args.quick else "1000,10000,100000")).split(",") if s]
    disk_default = "1000" if args.quick else "1000,10000"
    disk_sizes = [int(s) for s in (disk_default if args.disk_sizes is None else args.disk_sizes).split(",") if s]
    queries = args.queries or (50 if args.quick else 200)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from cachemux.semantic import DEFAULT_THRESHOLD, Embedder

    embedder = Embedder().load()
    t0 = time.perf_counter()
    probes = load_probes(queries, DEFAULT_THRESHOLD, embedder, args.seed)
    print(f"probes: {len(probes['cached'])} cached/paraphrase pairs (cosine >= {DEFAULT_THRESHOLD}), "
          f"{len(probes['misses'])} misses, prepared in {time.perf_counter() - t0:.1f} s", flush=True)
    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "loadavg_at_start": [round(x, 2) for x in os.getloadavg()], "platform": platform.platform()},
        "threshold": DEFAULT_THRESHOLD, "queries_per_kind": queries, "seed": args.seed,
        "ours": [], "baselines": []}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for size in sizes:
            for kind in ["memory"] + (["disk"] if size in disk_sizes else []):
                r = bench_ours(size, probes, embedder, args, kind, tmp)
                report["ours"].append(r)
                print(f"[ours/{kind:6s} N={size:>6}] exact p50 {r['exact_hit']['p50_ms']:.3f} ms p99 "
                      f"{r['exact_hit']['p99_ms']:.3f} | semantic p50 {r['semantic_hit']['p50_ms']:.2f} ms p99 "
                      f"{r['semantic_hit']['p99_ms']:.2f} (recall {r['semantic_recall']:.3f}) | miss p50 "
                      f"{r['miss']['p50_ms']:.2f} ms | embedding alone p50 {r['embedding_alone']['p50_ms']:.2f} ms | "
                      f"index {r['index_backend']} built in {r['index_build_s']} s | "
                      f"LangChain adapter: exact p50 {r['adapter_exact_hit']['p50_ms']:.3f} ms, semantic p50 "
                      f"{r['adapter_semantic_hit']['p50_ms']:.2f} ms", flush=True)
            for r in (bench_inmemory(size, probes), bench_sqlite(size, probes, tmp)):
                report["baselines"].append(r)
                if "skipped" in r:
                    print(f"[{r['cache']} N={size}] skipped: {r['skipped']}", flush=True)
                else:
                    print(f"[{r['cache']} N={size:>6}] hit p50 {r['exact_hit']['p50_ms']:.3f} ms p99 "
                          f"{r['exact_hit']['p99_ms']:.3f} | miss p50 {r['miss']['p50_ms']:.3f} ms", flush=True)
    # ratios against the baselines measured in this run, and the goals
    summary = []
    for r in report["ours"]:
        base = {b["cache"].split()[-1]: b for b in report["baselines"] if b["size"] == r["size"] and "skipped" not in b}
        row = {"store": r["store"], "size": r["size"],
               "exact_hit_p50_ms": r["exact_hit"]["p50_ms"], "semantic_hit_p50_ms": r["semantic_hit"]["p50_ms"],
               "miss_p50_ms": r["miss"]["p50_ms"],
               "goal_exact_met": r["exact_hit"]["p50_ms"] <= GOALS_MS["exact_hit"],
               "goal_semantic_met": r["semantic_hit"]["p50_ms"] <= GOALS_MS["semantic_hit"]}
        for name, b in base.items():
            row[f"exact_hit_vs_{name}"] = round(r["exact_hit"]["p50_ms"] / b["exact_hit"]["p50_ms"], 2)
        summary.append(row)
    report["summary"] = summary
    report["goals_ms"] = GOALS_MS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\ntorch threads {torch.get_num_threads()}; p50 over {args.rounds} x {queries} interleaved queries per kind")
    print(f"{'store':<7} {'N':>7} {'exact p50':>10} {'semantic p50':>13} {'(embedding)':>12} {'miss p50':>9}  "
          f"{'vs InMemory':>11} {'vs SQLite':>9}  goals (exact<=1ms, semantic<=15ms)")
    for row, r in zip(summary, report["ours"]):
        ok = ("met" if row["goal_exact_met"] else "MISSED") + " / " + ("met" if row["goal_semantic_met"] else "MISSED")
        print(f"{row['store']:<7} {row['size']:>7} {row['exact_hit_p50_ms']:>8.3f}ms {row['semantic_hit_p50_ms']:>11.2f}ms "
              f"{r['embedding_alone']['p50_ms']:>10.2f}ms {row['miss_p50_ms']:>7.2f}ms  "
              f"{row.get('exact_hit_vs_InMemoryCache', float('nan')):>10.1f}x {row.get('exact_hit_vs_SQLiteCache', float('nan')):>8.2f}x  {ok}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
