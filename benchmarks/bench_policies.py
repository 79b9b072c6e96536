"""Throughput of every registered eviction policy on one seeded power-law trace with costs.

Every number is measured in this run, on the same trace: each policy's ``replay`` (the simulator's
path) and a plain ``access`` loop (the per-request API), a naive O(n)-scan reference of the same
policy (``tests/support/naive_policies.py``: a list of cached keys and a ``min()`` over their weights on
every miss that needs room, as in the paper's code), and an ``OrderedDict`` LRU written inline.

The naive reference is O(cache) per miss, so it is timed on a window of ``--naive-requests``
requests taken once its cache is full (the steady state; warming it up is not timed), cut short
after ``--naive-seconds``; its rate is requests done / time taken.

    python benchmarks/bench_policies.py [--json] [--requests N] [--cache N]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from cachemux.policies import POLICIES, make_policy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
from naive_policies import make_naive, offline_knowledge  # noqa: E402  (the tests' reference)

SEED = 0


def make_trace(requests: int, universe: int, alpha: float, seed: int) -> tuple[list[int], list[float]]:
    """Zipf(alpha) keys over ``universe`` keys; the paper's costs: per key 1 or 101 (coin flip),
    per request ``max(0.1, base + N(0, 1))``."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, universe + 1, dtype=float) ** -alpha
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    keys = np.minimum(np.searchsorted(cdf, rng.random(requests)), universe - 1)
    base = 1.0 + 100.0 * rng.integers(0, 2, universe)
    costs = np.maximum(0.1, base[keys] + rng.standard_normal(requests))
    return keys.tolist(), costs.tolist()


def variants(keys: list[int], costs: list[float]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Row label -> (registry name, options): every registered policy, plus the paper's LFU."""
    rows: dict[str, tuple[str, dict[str, Any]]] = {}
    for name in POLICIES:
        opts: dict[str, Any] = {}
        if name == "belady":
            opts = {"trace": keys}
        elif name == "lec-offline":  # the paper's offline setting: P and mean c of this trace
            opts = offline_knowledge(keys, costs)
        rows[name] = (name, opts)
        if name == "lfu":
            rows["lfu(history)"] = ("lfu", {"history": True})
    return rows


def build(name: str, opts: dict[str, Any], cache: int, naive: bool = False) -> Any:
    p = (make_naive if naive else make_policy)(name, cache, **opts)
    if name == "lec-offline":  # the paper's offline runs start with the chosen keys cached
        for k in p.warm():
            p.admit(k)
    return p


def timed(fn: Any) -> tuple[float, Any]:
    """Wall-clock seconds (``perf_counter``) of ``fn()``, and its result; ``CPU`` keeps the
    process CPU time of the latest call, a cross-check on a machine shared with other jobs."""
    gc.collect()
    c0 = time.process_time()
    t0 = time.perf_counter()
    out = fn()
    secs = time.perf_counter() - t0
    CPU[0] = time.process_time() - c0
    return secs, out


CPU = [0.0]


def bench_fast(name: str, opts: dict[str, Any], cache: int, keys: list[int],
               costs: list[float], repeat: int) -> dict[str, Any]:
    """Best of ``repeat`` runs of ``replay`` and of an ``access`` loop, each on a fresh policy."""
    best = float("inf"), float("inf")
    best_cpu = float("inf")
    setup = hits = 0.0
    for _ in range(repeat):
        setup, p = timed(lambda: build(name, opts, cache))
        secs, hits = timed(lambda: p.replay(keys, costs))
        best_cpu = min(best_cpu, CPU[0])
        p.check_invariants()
        q = build(name, opts, cache)

        def loop() -> int:
            access = q.access
            h = 0
            for k, c in zip(keys, costs):
                h += access(k, c)
            return h

        secs_access, hits_access = timed(loop)
        assert hits_access == hits, (name, hits, hits_access)
        best = min(best[0], secs), min(best[1], secs_access)
    return {"setup_s": setup, "replay_s": best[0], "replay_rps": len(keys) / best[0],
            "replay_cpu_rps": len(keys) / best_cpu,
            "access_s": best[1], "access_rps": len(keys) / best[1],
            "hits": hits, "hit_ratio": hits / len(keys)}


def bench_naive(name: str, opts: dict[str, Any], cache: int, keys: list[int],
                costs: list[float], window: int, budget_s: float) -> dict[str, Any]:
    q = build(name, opts, cache, naive=True)
    access = q.access
    start = 0
    while start < len(keys) - window and q.used + 1 <= cache:  # warm up (untimed) until full
        access(keys[start], costs[start])
        start += 1
    full = q.used + 1 > cache  # else the window is not the steady state (say so in the output)
    ks, cs = keys[start:start + window], costs[start:start + window]
    gc.collect()
    done = hits = 0
    t0 = time.perf_counter()
    secs = 0.0
    while done < len(ks) and secs < budget_s:  # in chunks, stopping once the budget is spent
        for k, c in zip(ks[done:done + 100], cs[done:done + 100]):
            hits += access(k, c)
        done = min(done + 100, len(ks))
        secs = time.perf_counter() - t0
    return {"naive_from": start, "naive_full": full, "naive_requests": done, "naive_s": secs,
            "naive_rps": done / secs if secs else float("nan"),
            "naive_window_hit_ratio": hits / done if done else float("nan")}


def bench_ordered_dict(keys: list[int], cache: int) -> dict[str, Any]:
    def loop() -> int:  # the usual recipe, written inline: no class, no hooks
        od: OrderedDict[int, None] = OrderedDict()
        move, pop = od.move_to_end, od.popitem
        hits = 0
        for k in keys:
            if k in od:
                move(k)
                hits += 1
            else:
                od[k] = None
                if len(od) > cache:
                    pop(last=False)
        return hits

    secs, hits = timed(loop)
    return {"rps": len(keys) / secs, "seconds": secs, "hit_ratio": hits / len(keys)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--cache", type=int, default=10_000)
    ap.add_argument("--universe", type=int, default=1_000_000, help="distinct keys to draw from")
    ap.add_argument("--alpha", type=float, default=1.0, help="Zipf exponent")
    ap.add_argument("--naive-requests", type=int, default=20_000,
                    help="naive window, timed once its cache is full")
    ap.add_argument("--naive-seconds", type=float, default=8.0,
                    help="stop a naive window early after this long (its rate is what is reported)")
    ap.add_argument("--repeat", type=int, default=1, help="best of this many fast runs")
    ap.add_argument("--policies", default="", help="comma-separated row labels (default: all)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    keys, costs = make_trace(args.requests, args.universe, args.alpha, SEED)
    trace_s = time.perf_counter() - t0
    od = bench_ordered_dict(keys, args.cache)
    rows = variants(keys, costs)
    if args.policies:
        wanted = args.policies.split(",")
        rows = {label: rows[label] for label in wanted}
    results: dict[str, dict[str, Any]] = {}
    for label, (name, opts) in rows.items():
        r = bench_fast(name, opts, args.cache, keys, costs, args.repeat)
        r.update(bench_naive(name, opts, args.cache, keys, costs, args.naive_requests,
                             args.naive_seconds))
        r["x_naive"] = r["replay_rps"] / r["naive_rps"]
        r["x_ordereddict"] = r["replay_rps"] / od["rps"]
        results[label] = r
        if not args.json:
            print(f"  {label}: done", file=sys.stderr, flush=True)

    meta = {"requests": args.requests, "cache": args.cache, "universe": args.universe,
            "alpha": args.alpha, "seed": SEED, "naive_requests": args.naive_requests,
            "naive_seconds": args.naive_seconds, "repeat": args.repeat,
            "trace_s": trace_s, "python": platform.python_version(),
            "machine": platform.machine(), "ordereddict_lru": od}
    if args.json:
        print(json.dumps({"meta": meta, "policies": results}, indent=2))
        return 0
    print(f"trace: {args.requests:,} requests, Zipf alpha={args.alpha} over {args.universe:,} keys, "
          f"seed {SEED}; cache {args.cache:,}; Python {meta['python']}")
    print(f"OrderedDict LRU (inline): {od['rps']:,.0f} req/s, hit ratio {od['hit_ratio']:.3f}")
    head = (f"{'policy':<13} {'hit ratio':>9} {'replay req/s':>13} {'(CPU time)':>11} "
            f"{'access req/s':>13} {'naive req/s':>12} {'x naive':>8} {'x OrderedDict':>13}")
    print(head)
    print("-" * len(head))
    for label, r in results.items():
        print(f"{label:<13} {r['hit_ratio']:>9.3f} {r['replay_rps']:>13,.0f} {r['replay_cpu_rps']:>11,.0f} "
              f"{r['access_rps']:>13,.0f} {r['naive_rps']:>12,.0f} {r['x_naive']:>8.0f} "
              f"{r['x_ordereddict']:>13.2f}")
    print("naive: timed after its cache filled, on up to "
          f"{args.naive_requests:,} requests or {args.naive_seconds:g} s; requests timed: "
          + ", ".join(f"{label} {r['naive_requests']:,}" for label, r in results.items()))
    print("x naive, x OrderedDict: replay req/s over that column's req/s (all wall clock); "
          f"best of {args.repeat} run(s); (CPU time): the same replay rated by process CPU time")
    for label, r in results.items():
        if not r["naive_full"]:
            print(f"note: the naive {label} never filled its cache before its window, so its window "
                  "did no eviction scans (not the steady state)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
