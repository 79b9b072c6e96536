"""cachemux beside its peers, in one run, interleaved, with the machine's load recorded.

(a) Eviction policies: cachemux's LEC / GDSF / LRU (``Policy.replay``) against libCacheSim's
    (C, through its Python bindings: a ``get(Request)`` per request) and cachetools' (a dict-like
    cache driven per request), on Zipf(0.8) and Zipf(1.0) traces (1M keys, costs lognormal per
    key) and on one real trace: the MMLU routing prompts replayed under Zipf(0.8) popularity with
    each request's token cost of the large model. Reported: requests/s (wall and CPU time) and the
    total miss cost (sum of the costs of the missed requests; libCacheSim's and cachetools'
    policies do not see costs). Rounds are interleaved: round r runs every policy once, in a
    rotating order.
(b) Semantic caches: cachemux ``SemanticCache`` and ``CacheMuxCache`` (through
    ``bench_cache.bench_ours``), GPTCache (SQLite + faiss, the same packaged MiniLM model through
    GPTCache's ``embedding_func`` hook) and LangChain's ``InMemoryCache`` / ``SQLiteCache``: hit
    and miss p50/p99 at 1k/10k(/100k) entries, fill time, RSS growth during the fill (the
    fillers' vectors are random unit vectors, precomputed); quality on a QQP test subsample
    (good hits: duplicates served; wrong hits: non-duplicates served) for the semantic caches.
    The default embedder (int8 ONNX MiniLM) and the fp32 torch one are both run.
(c) Fill and memory, each (cache, round) in a fresh interpreter: the seconds to fill N entries
    (cachemux: ``update(embedding=...)`` per entry, then the index built in one batch, HNSW past
    20k entries, or the exact index only) and the RSS growth over the empty cache.

    python benchmarks/bench_peers.py --quick --json results/bench_peers.json   # ~10 min on 2 busy cores
    python benchmarks/bench_peers.py --json results/bench_peers.json           # 1M requests, 100k entries
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cache  # noqa: E402  (the semantic part reuses its probes and its cachemux/LangChain runs)

LLM = bench_cache.LLM


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------- (a) policies
def zipf_trace(n: int, universe: int, alpha: float, seed: int) -> tuple[list[int], list[float]]:
    rng = np.random.default_rng(seed)
    w = np.arange(1, universe + 1, dtype=float) ** -alpha
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    keys = np.minimum(np.searchsorted(cdf, rng.random(n)), universe - 1)
    per_key = rng.lognormal(0.0, 1.0, universe)
    return keys.tolist(), per_key[keys].tolist()


def routing_trace(n: int, seed: int) -> tuple[list[int], list[float]]:
    from cachemux.sim.routing import load_mmlu, routing_workload

    w = routing_workload(load_mmlu(), seed, alpha=0.8, num_queries=None, num_requests=n, balanced=False)
    return w.requests.tolist(), [float(c) for c in w.cost["large"]]


def run_cachemux(name: str, cap: int, keys: list, costs: list) -> tuple[int, float]:
    from cachemux.policies import make_policy

    p = make_policy(name, cap)
    p.replay(keys, costs)  # hits only; the miss cost needs the per-request outcome:
    return p.hits, -1.0


def miss_cost_cachemux(name: str, cap: int, keys: list, costs: list) -> float:
    from cachemux.policies import make_policy

    p = make_policy(name, cap)
    access = p.access
    return float(sum(c for k, c in zip(keys, costs) if not access(k, c)))


def run_libcachesim(name: str, cap: int, keys: list, costs: list) -> tuple[int, float]:
    import libcachesim as lcs

    cache = getattr(lcs, name)(cache_size=cap, hashpower=20)  # 1M buckets (default 2**24)
    req = lcs.Request()
    req.obj_size = 1
    get = cache.get
    hits = 0
    missed = 0.0
    for k, c in zip(keys, costs):
        req.obj_id = k
        if get(req):
            hits += 1
        else:
            missed += c
    return hits, missed


def run_cachetools(name: str, cap: int, keys: list, costs: list) -> tuple[int, float]:
    import cachetools

    cache = getattr(cachetools, name)(maxsize=cap)
    hits = 0
    missed = 0.0
    for k, c in zip(keys, costs):
        if k in cache:
            cache[k]  # noqa: B018 - a read is what updates recency / frequency
            hits += 1
        else:
            missed += c
            cache[k] = None
    return hits, missed


POLICY_ROWS = [
    ("cachemux LEC", run_cachemux, "lec"), ("cachemux GDSF", run_cachemux, "gdsf"),
    ("cachemux LRU", run_cachemux, "lru"),
    ("libCacheSim GDSF", run_libcachesim, "GDSF"), ("libCacheSim LRU", run_libcachesim, "LRU"),
    ("libCacheSim S3FIFO", run_libcachesim, "S3FIFO"), ("libCacheSim ARC", run_libcachesim, "ARC"),
    ("cachetools LRUCache", run_cachetools, "LRUCache"), ("cachetools LFUCache", run_cachetools, "LFUCache"),
]


def bench_policies(requests: int, cache: int, rounds: int) -> dict[str, Any]:
    traces = {
        "zipf-0.8": zipf_trace(requests, 1_000_000, 0.8, 0),
        "zipf-1.0": zipf_trace(requests, 1_000_000, 1.0, 0),
        "routing-mmlu": routing_trace(requests, 0),
    }
    out: dict[str, Any] = {"requests": requests, "cache": cache, "rounds": rounds, "traces": {}}
    for tname, (keys, costs) in traces.items():
        rows: dict[str, dict[str, Any]] = {label: {"wall_rps": [], "cpu_rps": []} for label, _, _ in POLICY_ROWS}
        for rnd in range(rounds):
            shift = rnd % len(POLICY_ROWS)
            for label, fn, name in POLICY_ROWS[shift:] + POLICY_ROWS[:shift]:
                gc.collect()
                c0, t0 = time.process_time(), time.perf_counter()
                hits, missed = fn(name, cache, keys, costs)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                r = rows[label]
                r["wall_rps"].append(len(keys) / wall)
                r["cpu_rps"].append(len(keys) / cpu)
                r["hit_ratio"] = hits / len(keys)
                if missed >= 0:
                    r["miss_cost"] = missed
                r.setdefault("load", []).append(load()[0])
        for label, fn, name in POLICY_ROWS:  # cachemux: the miss cost from a per-request run (untimed)
            if fn is run_cachemux:
                rows[label]["miss_cost"] = miss_cost_cachemux(name, cache, keys, costs)
        lec = rows["cachemux LEC"]["miss_cost"]
        for r in rows.values():
            r["wall_rps"] = float(np.median(r["wall_rps"]))
            r["cpu_rps"] = float(np.median(r["cpu_rps"]))
            r["miss_cost_vs_lec"] = r["miss_cost"] / lec
        out["traces"][tname] = rows
        print(f"[policies {tname}] done, load {load()}", file=sys.stderr, flush=True)
    return out


# ---------------------------------------------------------------- (b) semantic caches
def rss_mb() -> float:
    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


class GPTCacheRun:
    """GPTCache 0.1.x: SQLite scalar store + faiss vectors, our MiniLM through ``embedding_func``."""

    def __init__(self, tmp: Path, tag: str, size: int, embedder, threshold: float) -> None:
        from gptcache import Cache
        from gptcache.manager import CacheBase, VectorBase, get_data_manager
        from gptcache.processor.pre import get_prompt
        from gptcache.similarity_evaluation.distance import SearchDistanceEvaluation
        from gptcache.config import Config

        self.dm = get_data_manager(CacheBase("sqlite", sql_url=f"sqlite:///{tmp}/gpt-{tag}.db"),
                                   VectorBase("faiss", dimension=embedder.dim, index_path=str(tmp / f"gpt-{tag}.faiss")),
                                   max_size=10 * size + 1000)
        self.cache = Cache()
        # faiss returns squared L2 between unit vectors, d = 2 - 2 cos; SearchDistanceEvaluation scores
        # max_distance - d, so a hit at cos >= threshold is score >= 4 - (2 - 2 threshold)
        self.cache.init(pre_embedding_func=get_prompt,
                        embedding_func=lambda text, **_: embedder.embed([text])[0],
                        data_manager=self.dm,
                        similarity_evaluation=SearchDistanceEvaluation(max_distance=4.0),
                        config=Config(similarity_threshold=(4.0 - (2.0 - 2.0 * threshold)) / 4.0))

    def fill(self, questions: list[str], answers: list[str], vecs: np.ndarray) -> None:
        self.dm.import_data(questions, answers, list(vecs), [None] * len(questions))

    def get(self, prompt: str) -> Any:
        from gptcache.adapter.api import get

        return get(prompt, cache_obj=self.cache)


def semantic_quality(embedder, n_pairs: int, threshold: float, seed: int, tmp: Path, onnx=None) -> dict[str, Any]:
    """Cache text_a of each QQP test pair, look up text_b: duplicates served = good hits,
    non-duplicates served = wrong hits (the same pairs for every cache)."""
    from cachemux.cache import SemanticCache
    from cachemux.lab.calibrate_semantic import _default_data, load_pairs
    from cachemux.semantic.embed_form import embed_form
    from cachemux.stores import MemoryStore

    data = _default_data()
    pairs = load_pairs(data, data.with_name("SPLITS.json"), 0, seed)["test"]
    rng = np.random.default_rng(seed)
    pairs = [pairs[i] for i in rng.permutation(len(pairs))[:n_pairs]]
    a = [p["text_a"] for p in pairs]
    va = embedder.embed(a)
    ours = SemanticCache(MemoryStore(10 * n_pairs, "lru"), embedder=embedder)
    for q, v in zip(a, embedder.embed([embed_form(q) for q in a])):  # the form cachemux embeds
        ours.update(q, LLM, f"answer to: {q}", cost=1.0, embedding=v)
    gpt = GPTCacheRun(tmp, "quality", n_pairs, embedder, threshold)
    gpt.fill(a, [f"answer to: {q}" for q in a], va)
    out = {"pairs": len(pairs), "duplicates": sum(p["label"] for p in pairs)}
    runs = [("cachemux (torch fp32)", lambda p: ours.lookup(p["text_b"], LLM)), ("gptcache", lambda p: gpt.get(p["text_b"]))]
    if onnx is not None:  # the default embedder, with its own vectors for the cached questions
        ours_onnx = SemanticCache(MemoryStore(10 * n_pairs, "lru"), embedder=onnx)
        for q, v in zip(a, onnx.embed([embed_form(q) for q in a])):
            ours_onnx.update(q, LLM, f"answer to: {q}", cost=1.0, embedding=v)
        runs.insert(0, ("cachemux (default, ONNX int8)", lambda p: ours_onnx.lookup(p["text_b"], LLM)))
    for name, fn in runs:
        good = wrong = 0
        for p in pairs:
            r = fn(p)
            if r is None:
                continue
            served = (r.value if hasattr(r, "value") else r)
            right = served == f"answer to: {p['text_a']}"
            if p["label"] == 1 and right:
                good += 1
            else:
                wrong += 1
        out[name] = {"good_hits": good, "wrong_hits": wrong}
    return out


def bench_gptcache(size: int, probes: dict[str, Any], embedder, threshold: float, tmp: Path, rounds: int) -> dict[str, Any]:
    rng = np.random.default_rng(size)
    n_fill = size - len(probes["cached"])
    before = rss_mb()
    t0 = time.perf_counter()
    g = GPTCacheRun(tmp, str(size), size, embedder, threshold)
    vecs = rng.standard_normal((n_fill, embedder.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    qs = [f"synthetic prompt {j}: tell me about item {j * 7919 % 100003}" for j in range(n_fill)]
    g.fill(qs + probes["cached"], ["a synthetic answer"] * n_fill + [f"answer to: {q}" for q in probes["cached"]],
           np.concatenate([vecs, probes["cached_vecs"]]) if n_fill else probes["cached_vecs"])
    fill_s = time.perf_counter() - t0
    out: dict[str, Any] = {"cache": "GPTCache (sqlite + faiss)", "size": size, "fill_s": round(fill_s, 2),
                           "rss_growth_mb": round(rss_mb() - before, 1)}
    kinds = {"exact_hit": lambda i: g.get(probes["cached"][i]),
             "semantic_hit": lambda i: g.get(probes["paraphrases"][i]),
             "miss": lambda i: g.get(probes["misses"][i % len(probes["misses"])])}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    found = false_hits = 0
    names = list(kinds)
    for rnd in range(rounds):
        for i in range(len(probes["cached"])):
            shift = (i + rnd) % len(names)
            for name in names[shift:] + names[:shift]:
                t = time.perf_counter()
                r = kinds[name](i)
                times[name].append(time.perf_counter() - t)
                if name == "semantic_hit":
                    found += r == f"answer to: {probes['cached'][i]}"
                elif name == "miss":
                    false_hits += r is not None
    for name in names:
        out[name] = bench_cache.percentiles(times[name])
    out["semantic_recall"] = round(found / len(times["semantic_hit"]), 4)
    out["false_hits_on_misses"] = false_hits
    return out


def bench_semantic(sizes: list[int], queries: int, rounds: int, quality_pairs: int, seed: int,
                   caches: list[str]) -> dict[str, Any]:
    from cachemux.semantic import DEFAULT_THRESHOLD, Embedder

    embedder = Embedder().load()
    probes = bench_cache.load_probes(queries, DEFAULT_THRESHOLD, embedder, seed)
    onnx = onnx_probes = None
    if "cachemux-onnx" in caches:  # the same probes, the cached questions' vectors from the ONNX model
        from cachemux.semantic.onnx_embedder import OnnxEmbedder

        onnx = OnnxEmbedder().load()
        onnx_probes = dict(probes, cached_vecs=onnx.embed(probes["cached"]))
    args = argparse.Namespace(seed=seed, rounds=rounds)
    out: dict[str, Any] = {"threshold": DEFAULT_THRESHOLD, "queries": len(probes["cached"]), "rounds": rounds,
                           "runs": []}
    tmp = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    # GPTCache saves its faiss index at exit (atexit): remove the folder after that (atexit is LIFO)
    atexit.register(shutil.rmtree, tmp, True)
    if True:
        for size in sizes:
            order = [c for c in ("cachemux", "cachemux-onnx", "gptcache", "inmemory", "sqlite") if c in caches]
            shift = sizes.index(size) % len(order)  # a different first cache per size
            for name in order[shift:] + order[:shift]:
                before = rss_mb()
                if name == "cachemux":
                    r = bench_cache.bench_ours(size, probes, embedder, args, "memory", tmp)
                    r["cache"] = "cachemux SemanticCache + torch fp32 embedder (memory store)"
                elif name == "cachemux-onnx":
                    r = bench_cache.bench_ours(size, onnx_probes, onnx, args, "memory", tmp)
                    r["cache"] = "cachemux SemanticCache, default ONNX int8 embedder (memory store)"
                elif name == "gptcache":
                    r = bench_gptcache(size, probes, embedder, DEFAULT_THRESHOLD, tmp, rounds)
                elif name == "inmemory":
                    t0 = time.perf_counter()
                    r = bench_cache.bench_inmemory(size, probes)
                    r["fill_and_probe_s"] = round(time.perf_counter() - t0, 2)
                else:
                    t0 = time.perf_counter()
                    r = bench_cache.bench_sqlite(size, probes, tmp)
                    r["fill_and_probe_s"] = round(time.perf_counter() - t0, 2)
                r.setdefault("rss_growth_mb", round(rss_mb() - before, 1))
                r["load"] = load()
                out["runs"].append(r)
                gc.collect()
                print(f"[semantic {name} N={size}] done, load {load()}", file=sys.stderr, flush=True)
        if quality_pairs:
            out["quality"] = semantic_quality(embedder, quality_pairs, DEFAULT_THRESHOLD, seed, tmp, onnx)
    return out


# ---------------------------------------------------------------- (c) fill time and RSS, one fresh process each
FILL_KINDS = ("cachemux", "cachemux-exact", "gptcache", "sqlite", "inmemory")
FILL_LABELS = {"cachemux": "cachemux SemanticCache (memory store, index built: HNSW past 20k)",
               "cachemux-exact": "cachemux SemanticCache (memory store, exact index only)",
               "gptcache": "GPTCache (sqlite + faiss)", "sqlite": "langchain_community SQLiteCache (bulk insert)",
               "inmemory": "langchain_core InMemoryCache"}


def _fill_prompt(j: int) -> str:
    return f"synthetic prompt {j}: tell me about item {j * 7919 % 100003}"


def fill_child(kind: str, n: int, seed: int) -> dict[str, Any]:
    """Fill one cache with ``n`` entries in this (fresh) process: the seconds of the fill (and of
    the index build for cachemux, whose bulk path is ``update(embedding=...)`` then one index
    build) and the RSS before (imports done, cache empty, the random unit vectors made) and
    after: the growth is what the cache keeps of its own (copies of the vectors included)."""
    from langchain_core.load import dumps
    from langchain_core.outputs import Generation

    rng = np.random.default_rng(seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench-fill-"))
    out: dict[str, Any] = {"kind": kind, "cache": FILL_LABELS[kind], "entries": n}
    answer = dumps([Generation(text="a synthetic answer")])
    try:
        if kind in ("cachemux", "cachemux-exact"):
            from cachemux.cache import SemanticCache
            from cachemux.semantic.onnx_embedder import OnnxEmbedder
            from cachemux.stores import MemoryStore

            opts = {"ann_threshold": None} if kind == "cachemux-exact" else {}
            # the bulk path: the index is built on first semantic use, so the entries go in first
            # and warmup() below builds the index in one batch
            cache = SemanticCache(MemoryStore(2 * n, "gdsf"), embedder=OnnxEmbedder(), index_options=opts)

            def fill(start: int, vecs: np.ndarray) -> None:
                for i in range(len(vecs)):
                    cache.update(_fill_prompt(start + i), LLM, answer, cost=float(rng.random()) + 0.1, embedding=vecs[i])
        elif kind == "gptcache":
            from cachemux.semantic.onnx_embedder import OnnxEmbedder

            g = GPTCacheRun(tmp, "fill", n, OnnxEmbedder(), 0.9)

            def fill(start: int, vecs: np.ndarray) -> None:
                qs = [_fill_prompt(start + i) for i in range(len(vecs))]
                g.fill(qs, ["a synthetic answer"] * len(qs), vecs)
        elif kind == "sqlite":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from langchain_community.cache import SQLiteCache
            from sqlalchemy import insert
            from sqlalchemy.orm import Session

            c = SQLiteCache(str(tmp / "lc.db"))
            one = dumps(Generation(text="a synthetic answer"))

            def fill(start: int, vecs: np.ndarray) -> None:
                rows = [{"prompt": _fill_prompt(start + i), "llm": LLM, "idx": 0, "response": one} for i in range(len(vecs))]
                with Session(c.engine) as s, s.begin():
                    s.execute(insert(c.cache_schema), rows)
        else:
            from langchain_core.caches import InMemoryCache

            c = InMemoryCache()

            def fill(start: int, vecs: np.ndarray) -> None:
                for i in range(len(vecs)):
                    c.update(_fill_prompt(start + i), LLM, [Generation(text="a synthetic answer")])
        vecs = rng.standard_normal((n, 384)).astype(np.float32)  # made before the baseline: not counted
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        before = rss_mb()
        t0 = time.perf_counter()
        fill(0, vecs)  # one call: GPTCache's import_data and the SQLite insert take all rows at once
        out["fill_s"] = round(time.perf_counter() - t0, 2)
        out["index_s"] = 0.0
        if kind in ("cachemux", "cachemux-exact"):
            t1 = time.perf_counter()
            cache.warmup()
            out["index_s"] = round(time.perf_counter() - t1, 2)
            out["index_backend"] = "usearch HNSW" if cache.stats()["ann_partitions"] else "exact numpy"
            assert cache.stats()["indexed"] == n, cache.stats()["indexed"]
        out["total_s"] = round(out["fill_s"] + out["index_s"], 2)
        out["rss_before_mb"] = round(before, 1)
        out["rss_after_mb"] = round(rss_mb(), 1)
        out["rss_growth_mb"] = round(out["rss_after_mb"] - before, 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def bench_fill(n: int, rounds: int, kinds: list[str], seed: int) -> dict[str, Any]:
    """Each (kind, round) in a fresh interpreter, rounds interleaved (a rotating order)."""
    import subprocess

    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for rnd in range(rounds):
        shift = rnd % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--fill-child", kind, "--fill-entries", str(n),
                   "--seed", str(seed)]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
            if res.returncode != 0:
                runs[kind].append({"error": res.stderr.strip().splitlines()[-1:] or ["failed"]})
            else:
                r = json.loads(res.stdout.strip().splitlines()[-1])
                r["load"] = load()
                runs[kind].append(r)
            print(f"[fill {kind} N={n} round {rnd}] done, load {load()}", file=sys.stderr, flush=True)
    out: dict[str, Any] = {"entries": n, "rounds": rounds, "rows": {}}
    for kind, rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        if not ok:
            out["rows"][kind] = {"cache": FILL_LABELS[kind], "error": rs[0]["error"]}
            continue
        row = {"cache": FILL_LABELS[kind], "runs": ok}
        for f in ("fill_s", "index_s", "total_s", "rss_growth_mb", "rss_before_mb"):
            row[f] = float(np.median([r[f] for r in ok]))
        row["index_backend"] = ok[0].get("index_backend", "-")
        row["load"] = [r["load"][0] for r in ok]
        out["rows"][kind] = row
    base = out["rows"].get("sqlite", {}).get("total_s")
    for row in out["rows"].values():
        if base and "total_s" in row:
            row["total_vs_sqlite"] = round(row["total_s"] / base, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="300k requests, 1 round; 1k and 10k entries, 50 queries; 400 QQP pairs")
    ap.add_argument("--requests", type=int, default=None)
    ap.add_argument("--cache", type=int, default=10_000, help="policy cache size (entries)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--sizes", default=None, help="semantic cache sizes (default 1000,10000,100000)")
    ap.add_argument("--queries", type=int, default=None)
    ap.add_argument("--quality-pairs", type=int, default=None)
    ap.add_argument("--skip", default="", help="any of 'policies', 'semantic', 'fill' (comma-separated)")
    ap.add_argument("--fill-entries", type=int, default=None,
                    help="entries per fill/RSS run, each in a fresh process (default 100000; --quick 10000)")
    ap.add_argument("--fill-kinds", default=",".join(FILL_KINDS))
    ap.add_argument("--fill-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tables-from", type=Path, default=None, help="print the tables of a saved --json report")
    ap.add_argument("--caches", default="cachemux,cachemux-onnx,gptcache,inmemory,sqlite",
                    help="semantic caches to run (cachemux-onnx: the default int8 ONNX embedder; cachemux: torch fp32)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.simplefilter("ignore", DeprecationWarning)
    if args.tables_from:
        print_tables(json.loads(args.tables_from.read_text()))
        return 0
    if args.fill_child:
        print(json.dumps(fill_child(args.fill_child, args.fill_entries, args.seed)))
        return 0
    requests = args.requests or (300_000 if args.quick else 1_000_000)
    rounds = args.rounds or (1 if args.quick else 2)
    sizes = [int(s) for s in (args.sizes or ("1000,10000" if args.quick else "1000,10000,100000")).split(",")]
    report: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                          "platform": platform.platform(), "load_at_start": load()}}
    t0 = time.perf_counter()

    def save() -> None:  # after each part, so a long run interrupted keeps what it measured
        report["machine"]["load_at_end"] = load()
        report["seconds"] = round(time.perf_counter() - t0, 1)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2, default=float) + "\n")

    if "policies" not in args.skip:
        report["policies"] = bench_policies(requests, args.cache, rounds)
        save()
    if "semantic" not in args.skip:
        report["semantic"] = bench_semantic(sizes, args.queries or (50 if args.quick else 200), rounds,
                                            args.quality_pairs if args.quality_pairs is not None else (400 if args.quick else 2000),
                                            args.seed, args.caches.split(","))
        save()
    if "fill" not in args.skip:
        report["fill"] = bench_fill(args.fill_entries or (10_000 if args.quick else 100_000), rounds,
                                    args.fill_kinds.split(","), args.seed)
    save()
    print_tables(report)
    return 0


def print_tables(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"load average at start {m['load_at_start']}, at end {m['load_at_end']}; {m['cpus']} CPUs; "
          f"{report['seconds']} s")
    pol = report.get("policies")
    if pol:
        print(f"\npolicies: {pol['requests']:,} requests per trace, cache {pol['cache']:,}, median of {pol['rounds']} round(s)")
        for tname, rows in pol["traces"].items():
            print(f"\n{tname}\n| policy | req/s (wall) | req/s (CPU) | hit ratio | miss cost vs cachemux LEC |\n|---|---|---|---|---|")
            for label, r in rows.items():
                print(f"| {label} | {r['wall_rps'] / 1e6:.2f}M | {r['cpu_rps'] / 1e6:.2f}M | {r['hit_ratio']:.3f} | "
                      f"{r['miss_cost_vs_lec']:.3f}x |")
    sem = report.get("semantic")
    if sem:
        print(f"\nsemantic caches: {sem['queries']} queries per kind x {sem['rounds']} round(s); cachemux: the default "
              f"matcher (guard + verifier); GPTCache: cosine >= {sem['threshold']}")
        print("| cache | N | exact hit p50 / p99 ms | paraphrase hit p50 / p99 ms | miss p50 / p99 ms | recall | fill s | RSS growth MB |")
        print("|---|---|---|---|---|---|---|---|")
        for r in sem["runs"]:
            def f(k: str) -> str:
                return f"{r[k]['p50_ms']:.3f} / {r[k]['p99_ms']:.3f}" if k in r else "-"
            fill = r.get("fill_s", r.get("fill_and_probe_s", "-"))
            print(f"| {r['cache']} | {r['size']:,} | {f('exact_hit')} | {f('semantic_hit')} | {f('miss')} | "
                  f"{r.get('semantic_recall', '-')} | {fill} | {r.get('rss_growth_mb', '-')} |")
        print("\n| cachemux | N | CacheMuxCache exact hit p50 / p99 ms | the same, first read in a process p50 / p99 ms "
              "| CacheMuxCache paraphrase hit p50 / p99 ms | embedding alone p50 / p99 ms | index |\n|---|---|---|---|---|---|---|")
        for r in sem["runs"]:
            if "adapter_exact_hit" in r:
                cold = r.get("adapter_exact_hit_cold")
                cold_s = f"{cold['p50_ms']:.3f} / {cold['p99_ms']:.3f}" if cold else "-"
                print(f"| {r['cache']} | {r['size']:,} | {r['adapter_exact_hit']['p50_ms']:.3f} / {r['adapter_exact_hit']['p99_ms']:.3f} "
                      f"| {cold_s} "
                      f"| {r['adapter_semantic_hit']['p50_ms']:.2f} / {r['adapter_semantic_hit']['p99_ms']:.2f} "
                      f"| {r['embedding_alone']['p50_ms']:.2f} / {r['embedding_alone']['p99_ms']:.2f} | {r['index_backend']} |")
        q = sem.get("quality")
        if q:
            print(f"\nQQP test, {q['pairs']} pairs ({q['duplicates']} duplicates): "
                  + "; ".join(f"{k}: {v['good_hits']} good hits, {v['wrong_hits']} wrong hits"
                              for k, v in q.items() if isinstance(v, dict)))
    fill = report.get("fill")
    if fill:
        print(f"\nfill of {fill['entries']:,} entries, each run in a fresh process, median of {fill['rounds']} round(s)")
        print("| cache | fill s | index build s | total s | total vs SQLiteCache | RSS growth MB | index |\n|---|---|---|---|---|---|---|")
        for r in fill["rows"].values():
            if "error" in r:
                print(f"| {r['cache']} | failed: {r['error']} | | | | | |")
                continue
            print(f"| {r['cache']} | {r['fill_s']:.2f} | {r['index_s']:.2f} | {r['total_s']:.2f} | "
                  f"{r.get('total_vs_sqlite', float('nan')):.2f}x | {r['rss_growth_mb']:.0f} | {r['index_backend']} |")


if __name__ == "__main__":
    raise SystemExit(main())
