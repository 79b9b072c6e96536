"""Concurrent misses on one prompt: every update finds its own miss's clock (a FIFO of misses per
key), so every answer is priced by its latency, nothing is dropped and nothing is logged. Core
cache under 200 asyncio tasks and 200 threads (identical misses not coalesced: ``flight_timeout=0``),
then LangChain's batch/abatch with duplicates (coalesced: test_flight.py)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from langchain_core.language_models import FakeListChatModel, FakeListLLM

from cachemux.cache import SemanticCache
from cachemux.semantic import Embedder
from cachemux.stores import MemoryStore
from langchain_cachemux import CacheMuxCache

LLM = "fake-llm temperature=0"
PROMPTS = ["What is the capital of France?", "How do I bake sourdough bread at home?", "Who wrote Hamlet?",
           "What is the boiling point of water in kelvin?", "Name three prime numbers greater than 100."]
N = 200
WORK_S = 0.02  # what "generating" an answer takes


@pytest.fixture(scope="module")
def embedder():
    return Embedder().load()


def _accounted(stats: dict, updates: int) -> None:
    """Every update priced by a measured latency and either admitted or rejected."""
    assert stats["updates"] == updates
    assert stats["admitted"] + stats["rejected"] == updates
    assert stats["dropped"] == stats["errors"] == stats["estimated"] == 0


def _no_warnings(caplog) -> None:
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not loud, loud


def _latency_priced(cache: SemanticCache, prompts: list[str]) -> None:
    for p in prompts:
        cost = cache.store.peek(cache.key_for(p, LLM)).cost
        assert WORK_S <= cost < 30, (p, cost)  # seconds from a miss, not the per-token estimate


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS], ids=["one-prompt", "five-prompts"])
def test_asyncio_tasks_all_miss_then_all_update(embedder, caplog, prompts):
    caplog.set_level(logging.WARNING)
    # coalescing off: with it, the first miss would wait at the barrier for lookups waiting on it
    cache = SemanticCache(MemoryStore(), embedder=embedder, flight_timeout=0)

    async def main() -> None:
        barrier = asyncio.Barrier(N)  # every lookup misses before any answer is stored

        async def task(i: int) -> None:
            p = prompts[i % len(prompts)]
            assert await asyncio.to_thread(cache.lookup, p, LLM) is None
            await barrier.wait()
            await asyncio.sleep(WORK_S)
            await asyncio.to_thread(cache.update, p, LLM, f"answer {i}")

        await asyncio.gather(*(task(i) for i in range(N)))

    asyncio.run(main())
    s = cache.stats()
    assert s["misses"] == N and s["hits"] == 0
    _accounted(s, N)
    assert s["entries"] == len(prompts)
    _latency_priced(cache, prompts)
    assert not cache._pending and not cache._pending_of  # every clock was taken
    cache.check_invariants()
    _no_warnings(caplog)


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS], ids=["one-prompt", "five-prompts"])
def test_threads_all_miss_then_all_update(embedder, caplog, prompts):
    caplog.set_level(logging.WARNING)
    # coalescing off: with it, the first miss would wait at the barrier for lookups waiting on it
    cache = SemanticCache(MemoryStore(), embedder=embedder, flight_timeout=0)
    barrier = threading.Barrier(N)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        p = prompts[i % len(prompts)]
        try:
            assert cache.lookup(p, LLM) is None
            barrier.wait()
            time.sleep(WORK_S)
            cache.update(p, LLM, f"answer {i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    s = cache.stats()
    assert s["misses"] == N
    _accounted(s, N)
    _latency_priced(cache, prompts)
    assert not cache._pending and not cache._pending_of
    _no_warnings(caplog)


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS], ids=["one-prompt", "five-prompts"])
def test_langchain_abatch_and_ainvoke_with_duplicates(embedder, caplog, prompts):
    """LangChain's own paths: each miss is followed by its update, hits need none; with misses
    keyed by prompt alone, 23-27% of these updates found no clock and were dropped, warned."""
    caplog.set_level(logging.WARNING)
    lc = CacheMuxCache(store=MemoryStore(), embedder=embedder)
    chat = FakeListChatModel(responses=["an answer"], sleep=WORK_S, cache=lc)
    inputs = [prompts[i % len(prompts)] for i in range(N)]

    async def main() -> None:
        half = N // 2
        await asyncio.gather(chat.abatch(inputs[:half]), *(chat.ainvoke(q) for q in inputs[half:]))

    asyncio.run(main())
    s = lc.stats()
    assert s["lookups"] == N and s["hits"] + s["misses"] == N
    assert s["misses"] >= len(prompts)
    _accounted(s, s["misses"])  # every miss stored, priced by its own latency
    assert s["entries"] == len(prompts) and s["unstorable"] == s["unreadable"] == 0
    _no_warnings(caplog)


def test_langchain_llm_batch_with_duplicates_updates_every_miss(embedder, caplog):
    """An LLM's batch looks every prompt up first, then generates and updates the misses."""
    caplog.set_level(logging.WARNING)
    lc = CacheMuxCache(store=MemoryStore(), embedder=embedder)
    llm = FakeListLLM(responses=["an answer"], cache=lc)
    inputs = [PROMPTS[i % len(PROMPTS)] for i in range(N)]
    llm.batch(inputs)
    asyncio.run(llm.abatch(inputs))  # all cached now: hits
    s = lc.stats()
    assert s["misses"] == N and s["hits"] == N  # the first batch's lookups all ran before its updates
    _accounted(s, N)
    _no_warnings(caplog)
