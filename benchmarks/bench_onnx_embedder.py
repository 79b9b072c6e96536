"""The int8 ONNX MiniLM (``OnnxEmbedder``) against the fp32 torch one (``Embedder``), same run.

Quality: average precision of the cosine on a QQP test subsample (duplicate pairs ranked above
non-duplicates), per runtime; the vectors are cached as .npy under ~/.cache/cachemux/embeddings.
Latency: one query at a time (the lookup path), p50/p99 at 1 and 2 threads, interleaved (query i
runs every runtime back to back, in a rotating order), with the load average recorded.

    python benchmarks/bench_onnx_embedder.py [--pairs 2000] [--queries 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    hits = labels[order].astype(float)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / max(hits.sum(), 1))


def cached_embed(tag: str, texts: list[str], embed) -> np.ndarray:
    d = Path.home() / ".cache" / "cachemux" / "embeddings"
    d.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256(("\x00".join(texts)).encode()).hexdigest()[:16]
    f = d / f"{tag}-{h}.npy"
    if f.is_file():
        return np.load(f)
    v = embed(texts)
    np.save(f, v)
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from cachemux.lab.calibrate_semantic import _default_data, load_pairs
    from cachemux.semantic import Embedder
    from cachemux.semantic.onnx_embedder import OnnxEmbedder

    data = _default_data()
    pairs = load_pairs(data, data.with_name("SPLITS.json"), 0, args.seed)["test"]
    rng = np.random.default_rng(args.seed)
    pairs = [pairs[i] for i in rng.permutation(len(pairs))[:args.pairs]]
    a, b = [p["text_a"] for p in pairs], [p["text_b"] for p in pairs]
    labels = np.array([p["label"] for p in pairs])
    torch_e = Embedder().load()
    onnx_1, onnx_2 = OnnxEmbedder(threads=1).load(), OnnxEmbedder(threads=2).load()
    report: dict = {"pairs": len(pairs), "duplicates": int(labels.sum()), "load_at_start": os.getloadavg()}
    quality = {}
    for tag, e in (("torch-fp32", torch_e), ("onnx-int8", onnx_2)):
        va, vb = cached_embed(tag, a, e.embed), cached_embed(tag, b, e.embed)
        quality[tag] = {"average_precision": average_precision((va * vb).sum(1), labels)}
    quality["ap_difference"] = quality["onnx-int8"]["average_precision"] - quality["torch-fp32"]["average_precision"]
    report["quality"] = quality

    def torch_at(n):
        def f(t):
            torch.set_num_threads(n)
            return torch_e.embed([t])
        return f

    kinds = {"torch-fp32 1 thread": torch_at(1), "torch-fp32 2 threads": torch_at(2),
             "onnx-int8 1 thread": lambda t: onnx_1.embed([t]), "onnx-int8 2 threads": lambda t: onnx_2.embed([t])}
    names = list(kinds)
    times = {k: [] for k in names}
    queries = b[:args.queries]
    for f in kinds.values():  # warm up
        f(queries[0])
    for i, q in enumerate(queries):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            kinds[name](q)
            times[name].append(time.perf_counter() - t0)
    report["latency_ms"] = {k: {"p50": float(np.percentile(v, 50) * 1e3), "p99": float(np.percentile(v, 99) * 1e3)}
                            for k, v in times.items()}
    report["load_at_end"] = os.getloadavg()
    print(f"QQP test, {len(pairs)} pairs: AP torch {quality['torch-fp32']['average_precision']:.4f}, "
          f"onnx {quality['onnx-int8']['average_precision']:.4f} (difference {quality['ap_difference']:+.4f})")
    for k, v in report["latency_ms"].items():
        print(f"{k:<22} p50 {v['p50']:.2f} ms  p99 {v['p99']:.2f} ms")
    print(f"load average {report['load_at_start']} -> {report['load_at_end']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
