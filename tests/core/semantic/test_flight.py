"""Identical misses at once make one model call (``cachemux.semantic.flight``): the core cache
(threads, asyncio), the joint engine's four drivers, a leader that fails or abandons its stream,
the same caller looking up twice, other keys kept apart; across processes, the store lease on a
real DiskStore and a real redis-server.

Counts asserted == 1 are those coalescing guarantees: every caller is started together (a
Barrier) and the leader's model call sleeps ``WORK_S`` while the others arrive; one that arrives
after the answer is published is served it from the store or the flight's recent answers."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from at_once import at_once as threads

from cachemux.cache import SemanticCache
from cachemux.errors import ConfigError
from cachemux.joint import Generation, JointEngine
from cachemux.joint.types import Request
from cachemux.multiplexer import OnlineSelector, StaticSelector
from cachemux.stores import DiskStore, MemoryStore
from flight_workers import run_process
from redis_server import redis_server  # noqa: F401 - fixture

LLM = "fake-llm temperature=0"
N = 200
WORK_S = 0.4  # the model call: long enough for every caller to arrive while it runs
HANG = 120.0  # a flight_timeout no passing test comes near


class Model:
    """A counting model: ``generate(request, model)`` for the engine, ``call(prompt)`` for the cache."""

    def __init__(self, fail_first: bool = False, sleep: float = WORK_S) -> None:
        self.calls = 0
        self.fail_first = fail_first
        self.sleep = sleep
        self._lock = threading.Lock()

    def call(self, prompt: str) -> str:
        with self._lock:
            self.calls += 1
            first = self.calls == 1
        time.sleep(self.sleep)
        if first and self.fail_first:
            raise RuntimeError("the model failed")
        return f"answer to {prompt}"

    def generate(self, request: Request, model: str) -> Generation:
        return Generation(self.call(request.prompt), cost=1.0)


def cached_call(cache: SemanticCache, model: Model, prompt: str, llm: str = LLM) -> str:
    """What an adapter does: look up, on a miss call the model and update."""
    value = cache.lookup(prompt, llm)
    if value is None:
        value = model.call(prompt)
        cache.update(prompt, llm, value)
    return value


def test_threads_make_one_call_and_share_its_answer():
    cache, model = SemanticCache(MemoryStore(), semantic=False), Model()
    got = threads(N, lambda i: cached_call(cache, model, "What is the capital of France?"))
    assert model.calls == 1
    assert got == ["answer to What is the capital of France?"] * N
    s = cache.stats()
    assert s["misses"] == 1 and s["exact_hits"] == N - 1 and s["coalesced"] >= 1
    assert s["updates"] == 1 and len(cache._flights) == 0


def test_asyncio_tasks_make_one_call():
    cache, model = SemanticCache(MemoryStore(), semantic=False), Model()

    async def one() -> str:
        value = await cache.alookup("Who wrote Hamlet?", LLM)
        if value is None:
            value = await asyncio.to_thread(model.call, "Who wrote Hamlet?")
            await asyncio.to_thread(cache.update, "Who wrote Hamlet?", LLM, value)
        return value

    async def main() -> list[str]:
        return await asyncio.gather(*(one() for _ in range(N)))

    assert asyncio.run(main()) == ["answer to Who wrote Hamlet?"] * N
    assert model.calls == 1 and cache.stats()["coalesced"] >= 1


def test_other_prompts_models_and_namespaces_get_their_own_call():
    store, model = MemoryStore(), Model()
    caches = [SemanticCache(store, semantic=False), SemanticCache(store, semantic=False, namespace="tenant-b")]
    prompts = ["What is 2 + 2?", "What is 3 + 3?"]
    llms = [LLM, "fake-llm temperature=1"]
    combos = [(c, p, m) for c in range(2) for p in prompts for m in llms]  # 8 distinct keys

    def work(i: int) -> tuple[int, str]:
        c, p, m = combos[i % len(combos)]
        return i, cached_call(caches[c], model, p, m)

    got = threads(80, work)
    assert model.calls == len(combos)
    for i, value in got:
        assert value == f"answer to {combos[i % len(combos)][1]}"  # never another key's answer


def test_a_failed_leader_lets_its_waiters_go_at_once():
    """The leader's call raises and it releases its miss: the waiters do not wait for the
    deadline, each makes its own call."""
    cache, model = SemanticCache(MemoryStore(), semantic=False, flight_timeout=HANG), Model(fail_first=True)

    def work(i: int) -> str:
        value = cache.lookup("q", LLM)
        if value is None:
            try:
                value = model.call("q")
            except RuntimeError:
                cache.release("q", LLM)
                raise
            cache.update("q", LLM, value)
        return value

    t0 = time.monotonic()
    got = threads(20, work)
    assert time.monotonic() - t0 < HANG / 2
    assert sum(isinstance(g, RuntimeError) for g in got) == 1
    assert all(g == "answer to q" for g in got if not isinstance(g, Exception))
    assert model.calls >= 2  # the waiters went on to call the model themselves


def test_a_leader_that_never_updates_holds_waiters_only_until_the_deadline():
    cache = SemanticCache(MemoryStore(), semantic=False, flight_timeout=0.5)
    assert cache.lookup("q", LLM) is None  # this thread leads and never updates
    with ThreadPoolExecutor(4) as ex:
        assert list(ex.map(lambda _: cache.lookup("q", LLM), range(4))) == [None] * 4
    assert cache.stats()["misses"] == 5


def test_the_same_caller_never_waits_on_itself():
    cache = SemanticCache(MemoryStore(), semantic=False, flight_timeout=HANG)
    t0 = time.monotonic()
    assert cache.lookup("q", LLM) is None and cache.lookup("q", LLM) is None

    async def twice() -> list:
        return [await cache.alookup("p", LLM), await cache.alookup("p", LLM)]

    assert asyncio.run(twice()) == [None, None]
    assert time.monotonic() - t0 < HANG / 2


def test_off_and_bad_values():
    cache, model = SemanticCache(MemoryStore(), semantic=False, flight_timeout=0), Model(sleep=0.05)
    threads(8, lambda i: cached_call(cache, model, "q"))
    assert model.calls >= 1 and cache._flights is None
    for bad in (-1, float("nan"), "30", True):
        with pytest.raises(ConfigError, match="flight_timeout"):
            SemanticCache(MemoryStore(), semantic=False, flight_timeout=bad)
        with pytest.raises(ConfigError, match="lease"):
            SemanticCache(MemoryStore(), semantic=False, lease=bad)


# ---- the joint engine -----------------------------------------------------------------------------
def engine(model: Model, selector=None, store=None) -> JointEngine:
    cache = SemanticCache(store or MemoryStore(), semantic=False, flight_timeout=HANG)
    return JointEngine(cache, selector or StaticSelector(("m",)), model.generate)


def req(prompt: str = "What is the capital of France?") -> Request:
    return Request(prompt, prompt, "config-1")


@pytest.mark.parametrize("driver", ["serve", "stream"])
def test_engine_threads_make_one_call(driver):
    model = Model()
    eng = engine(model)
    call = eng.serve if driver == "serve" else (lambda r: list(eng.stream(r))[-1])
    served = threads(N, lambda i: call(req()))
    assert model.calls == 1
    assert [s.answer for s in served] == ["answer to What is the capital of France?"] * N
    assert sum(s.hit for s in served) == N - 1 and eng.stats()["cache"]["coalesced"] >= 1


@pytest.mark.parametrize("driver", ["aserve", "astream"])
def test_engine_async_tasks_make_one_call(driver):
    model = Model()
    eng = engine(model)

    async def one():
        if driver == "aserve":
            return await eng.aserve(req())
        return [item async for item in eng.astream(req())][-1]

    async def main():
        return await asyncio.gather(*(one() for _ in range(N)))

    served = asyncio.run(main())
    assert model.calls == 1 and sum(s.hit for s in served) == N - 1


def test_engine_shares_an_answer_the_cache_was_not_offered():
    """An exploring selector leaves the first answer uncached (not settled): the waiters still
    get it, through ``release``, instead of each calling the model."""
    model = Model()
    eng = JointEngine(SemanticCache(MemoryStore(), semantic=False, flight_timeout=HANG),
                      OnlineSelector([("m",), ("m2",)]), model.generate, costs={"m": 1.0, "m2": 2.0})
    served = threads(50, lambda i: eng.serve(req()))
    assert model.calls == 1 and served[0].answer == "answer to What is the capital of France?"
    assert sum(not s.hit for s in served) == 1 and all(s.admitted is not True for s in served)
    assert len(eng.cache.cache.store) == 0  # nothing cached: served from the flight


def test_engine_leader_that_raises_releases_its_waiters():
    model = Model(fail_first=True)
    eng = engine(model)
    t0 = time.monotonic()
    served = threads(20, lambda i: eng.serve(req()))
    assert time.monotonic() - t0 < HANG / 2
    assert sum(isinstance(s, RuntimeError) for s in served) == 1
    ok = [s for s in served if not isinstance(s, Exception)]
    assert len(ok) == 19 and {s.answer for s in ok} == {"answer to What is the capital of France?"}
    assert model.calls >= 2


def test_engine_stream_abandoned_mid_way_releases_its_waiters():
    class Streaming(Model):
        def stream(self, request: Request, model: str):
            yield "first piece"
            value = self.call(request.prompt)
            yield Generation(value, cost=1.0)

    model = Streaming()
    eng = JointEngine(SemanticCache(MemoryStore(), semantic=False, flight_timeout=HANG),
                      StaticSelector(("m",)), model)
    leader = eng.stream(req())
    assert next(leader).value == "first piece"  # it missed and leads
    with ThreadPoolExecutor(4) as ex:
        waiting = [ex.submit(eng.serve, req()) for _ in range(4)]
        time.sleep(0.2)
        leader.close()  # abandoned before its model answered
        t0 = time.monotonic()
        got = [f.result(timeout=HANG / 2) for f in waiting]
    assert time.monotonic() - t0 < HANG / 2
    assert {s.answer for s in got} == {"answer to What is the capital of France?"}


# ---- across processes: the store lease --------------------------------------------------------------
def test_store_leases():
    with MemoryStore() as m:
        assert m.lease("k", 1.0) and m.lease("k", 1.0)  # one process: every claim granted


def test_disk_store_lease(tmp_path):
    with DiskStore(tmp_path / "s") as a, DiskStore(tmp_path / "s") as b:
        assert a.lease("k", 0.3) and not b.lease("k", 0.3) and not a.lease("k", 0.3)
        assert b.lease("other", 0.3)
        time.sleep(0.4)
        assert b.lease("k", 5.0) and not a.lease("k", 5.0)


def test_redis_store_lease(redis_server):  # noqa: F811
    from cachemux.stores import RedisStore

    with RedisStore(redis_server.url) as a, RedisStore(redis_server.url) as b:
        assert a.lease("k", 0.3) and not b.lease("k", 0.3)
        time.sleep(0.4)
        assert b.lease("k", 5.0) and not a.lease("k", 5.0)


@pytest.mark.parametrize("backend", ["disk", "redis"])
def test_processes_sharing_a_store_make_one_call_with_a_lease(backend, tmp_path, request):
    """4 processes x 25 threads, one prompt: with ``lease`` one process generates, the others
    read its answer from the store."""
    where = str(tmp_path / "store") if backend == "disk" else request.getfixturevalue("redis_server").url
    if backend == "disk":
        DiskStore(where).close()  # created once, before the processes open it
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(4)
        with ctx.Pool(4) as pool:
            calls = pool.starmap(run_process, [(backend, where, 25, 10.0, barrier, WORK_S)] * 4)
    assert sum(c for c, _ in calls) == 1
    assert all(answers == 25 for _, answers in calls)
