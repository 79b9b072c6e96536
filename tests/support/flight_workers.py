"""A worker process for the cross-process single-flight tests (importable by ``multiprocessing`` spawn)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["ANSWER", "run_process"]

PROMPT, LLM, ANSWER = "What is the capital of France?", "fake-llm temperature=0", "Paris."


def run_process(backend: str, where: str, n: int, lease: float | None, barrier: Any, work_s: float) -> tuple[int, int]:
    """``n`` threads of this process ask ``PROMPT`` at once through one cache on the shared store
    (``backend`` "disk": a DiskStore directory, "redis": a URL); return (model calls made here,
    threads that got ``ANSWER``)."""
    from cachemux.cache import SemanticCache
    from cachemux.stores import DiskStore, RedisStore

    store = DiskStore(where) if backend == "disk" else RedisStore(where)
    cache = SemanticCache(store, semantic=False, lease=lease)
    calls, lock, start = [0], threading.Lock(), threading.Barrier(n)

    def work(_: int) -> str:
        start.wait()
        value = cache.lookup(PROMPT, LLM)
        if value is None:
            with lock:
                calls[0] += 1
            time.sleep(work_s)  # the model call
            value = ANSWER
            cache.update(PROMPT, LLM, value)
        return value

    barrier.wait()  # every process ready before any thread looks up
    with ThreadPoolExecutor(n) as ex:
        got = list(ex.map(work, range(n)))
    cache.close()
    return calls[0], sum(v == ANSWER for v in got)
