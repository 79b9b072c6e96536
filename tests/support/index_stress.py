"""Stress for the semantic index against its store: many threads (or asyncio tasks) doing
lookups, updates, deletes and evictions (a small capacity) on one ``SemanticCache``; afterwards
the index must hold exactly the store's indexable keys ("drift" counts the difference).

Used by tests/core/semantic/test_index_races.py (short runs) and benchmarks/stress_index_sync.py
(longer runs with figures). Embeddings are the real MiniLM's, memoised per text so that the
threads spend their time in the cache and the store rather than in the model."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["LLM", "MemoEmbedder", "PROMPTS", "drift", "process_worker", "run_processes", "run_tasks", "run_threads"]

LLM = "stress-llm temperature=0"
_TOPICS = ["the capital of France", "sourdough bread", "Hamlet's author", "the boiling point of water",
           "prime numbers over 100", "the speed of light", "photosynthesis", "the French revolution",
           "black holes", "the tallest mountain", "how vaccines work", "the Pythagorean theorem",
           "the largest ocean", "DNA replication", "the Roman empire's fall", "quantum entanglement",
           "making espresso", "the moon landing", "plate tectonics", "the stock market"]
# two spellings per topic (cosine >= 0.99 with MiniLM, distinct exact keys): either is served
# semantically from the other when that one is cached
PROMPTS = [f"Tell me about {t}." for t in _TOPICS] + [f"tell me about {t}" for t in _TOPICS]


class MemoEmbedder:
    """The real embedder, each distinct text embedded once (thread-safe). ``inner=None`` with a
    filled ``memo`` (vectors the real model made in the parent process, ``vectors()``) serves
    only those texts: the stress worker processes then need no model of their own."""

    def __init__(self, inner: Any, memo: dict[str, Any] | None = None, model_name: str | None = None) -> None:
        self.inner = inner
        self._memo = {t: np.asarray(v, dtype=np.float32) for t, v in (memo or {}).items()}
        self._lock = threading.Lock()
        self.model_name = model_name or getattr(inner, "model_name", "memo")

    def vectors(self) -> dict[str, list[float]]:
        with self._lock:
            return {t: v.tolist() for t, v in self._memo.items()}

    @property
    def dim(self) -> int:
        if self.inner is None:
            return len(next(iter(self._memo.values())))
        return self.inner.dim

    @property
    def tokenizer(self) -> Any:
        return getattr(self.inner, "tokenizer", None)

    @property
    def max_tokens(self) -> int:
        return int(getattr(self.inner, "max_tokens", 0) or 0)

    def fits(self, text: str) -> bool:
        return text in self._memo if self.inner is None else self.inner.fits(text)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for t in texts:
            with self._lock:
                v = self._memo.get(t)
            if v is None:
                v = np.asarray(self.inner.embed([t])[0], dtype=np.float32)
                with self._lock:
                    self._memo[t] = v
            out.append(v)
        return np.stack(out)


def _op(cache: Any, rng: random.Random, counts: dict[str, int]) -> None:
    p = rng.choice(PROMPTS)
    r = rng.random()
    if r < 0.12:
        cache.delete(p, LLM)
        counts["deletes"] += 1
    elif cache.lookup(p, LLM) is None:
        cache.update(p, LLM, f"answer to {p}", cost=rng.uniform(0.1, 2.0))
        counts["updates"] += 1
    else:
        counts["hits"] += 1
    counts["ops"] += 1


def run_threads(cache: Any, *, threads: int = 8, ops: int = 200, seed: int = 0) -> dict[str, int]:
    """``threads`` threads, ``ops`` operations each, started together; returns the op counts."""
    barrier = threading.Barrier(threads)
    totals = {"ops": 0, "updates": 0, "deletes": 0, "hits": 0}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        counts = dict.fromkeys(totals, 0)
        try:
            barrier.wait()
            for _ in range(ops):
                _op(cache, rng, counts)
        except BaseException as exc:  # surfaced by the caller
            errors.append(exc)
        with lock:
            for k, v in counts.items():
                totals[k] += v

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return totals


def run_tasks(cache: Any, *, tasks: int = 8, ops: int = 100, seed: int = 0) -> dict[str, int]:
    """The same through asyncio tasks (each operation in ``asyncio.to_thread``, as async adapters do)."""
    totals = {"ops": 0, "updates": 0, "deletes": 0, "hits": 0}

    async def one(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        for _ in range(ops):
            await asyncio.to_thread(_op, cache, rng, totals)

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(tasks)))

    asyncio.run(main())
    return totals


def drift(cache: Any) -> tuple[int, int]:
    """``(stray, missing)``: keys the index holds that the store does not, and embedded keys of
    the store the index lacks (read without syncing: what the next lookup would search)."""
    index = cache._index
    indexed = set() if index is None else set(index._where)
    store_keys = set(cache.store.keys())
    embedded = set()
    for k in store_keys:
        e = cache.store.peek(k)
        if e is not None and e.embedding is not None:
            embedded.add(k)
    return len(indexed - store_keys), len(embedded - indexed)


def process_worker(kind: str, target: str, seed: int, ops: int, threads: int, start: Any, done: Any,
                   out: Any, vectors: dict[str, list[float]], model_name: str) -> None:
    """One process of the multi-process stress: its own ``SemanticCache`` (the real MiniLM's
    vectors of ``PROMPTS``, computed by the parent) on the shared store, ``threads`` threads of ``ops`` operations; after every process is done, one
    sync and the index compared with the store. Returns the op counts and the drift after the sync."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from cachemux.cache import SemanticCache
    from cachemux.errors import InvariantError

    from store_workers import open_store

    emb = MemoEmbedder(None, vectors, model_name)
    store = open_store(kind, target, capacity=12)
    cache = SemanticCache(store, embedder=emb).warmup()
    start.wait()
    counts = run_threads(cache, threads=threads, ops=ops, seed=seed)
    done.wait()  # every process has finished writing: the store is quiet
    problem = ""
    try:
        cache.check_invariants()  # syncs the change log, then compares
    except InvariantError as exc:
        problem = str(exc)
    stray, missing = drift(cache)
    counts.update(stray=stray, missing=missing, problem=problem, indexed=len(cache._index),
                  errors=cache.stats()["errors"])
    cache.close()
    out.put(counts)


def run_processes(kind: str, target: str, embedder: MemoEmbedder, *, procs: int = 3, threads: int = 2,
                  ops: int = 100, seed: int = 0) -> list[dict[str, Any]]:
    """``procs`` spawned processes of ``process_worker`` on one store; their reports."""
    import multiprocessing as mp

    embedder.embed(PROMPTS)
    vectors = embedder.vectors()
    ctx = mp.get_context("spawn")
    start, done, out = ctx.Barrier(procs), ctx.Barrier(procs), ctx.Queue()
    ps = [ctx.Process(target=process_worker, args=(kind, target, seed * 100 + i, ops, threads, start, done, out,
                                                   vectors, embedder.model_name))
          for i in range(procs)]
    for p in ps:
        p.start()
    reports = [out.get(timeout=600) for _ in ps]
    for p in ps:
        p.join(30)
        assert p.exitcode == 0, f"stress worker exited with {p.exitcode}"
    return reports
