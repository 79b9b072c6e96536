"""SemanticCache over failing real backends: a killed or hung redis-server, a closed disk store.
Lookups become misses, updates are dropped and logged, the application never sees an exception."""

from __future__ import annotations

import logging
import time

import pytest
from redis_server import redis_server_factory  # noqa: F401 - fixture

from cachemux.cache import SemanticCache
from cachemux.semantic import Embedder
from cachemux.stores import DiskStore, RedisStore

LLM = "fake-llm temperature=0"
Q1 = "What is the capital of France?"
Q1_PARA = "what's the capital city of France"


@pytest.fixture(scope="module")
def embedder():
    return Embedder().load()


def test_redis_killed_lookups_miss_and_updates_drop(redis_server_factory, embedder, caplog):  # noqa: F811
    server = redis_server_factory()
    cache = SemanticCache(RedisStore(server.url, namespace="faults", capacity=10, socket_timeout=0.5),
                          embedder=embedder, threshold=0.8)
    assert cache.lookup(Q1, LLM) is None
    assert cache.update(Q1, LLM, "Paris", cost=1.0)
    assert cache.lookup(Q1_PARA, LLM) == "Paris"
    server.kill()
    caplog.set_level(logging.DEBUG, logger="cachemux.cache")
    t = time.perf_counter()
    for _ in range(5):
        assert cache.lookup(Q1, LLM) is None  # exact path fails: a miss
        assert cache.lookup(Q1_PARA, LLM) is None  # semantic candidate cannot be read: a miss
        assert cache.update(Q1, LLM, "Paris", cost=1.0) is False  # dropped
    assert time.perf_counter() - t < 10
    s = cache.stats()
    assert s["errors"] >= 15 and s["dropped"] == 5 and s["entries"] is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "served as a miss / dropped" in warnings[0].getMessage()
    assert "StoreError" in warnings[0].getMessage()


def test_redis_hung_costs_one_timeout_per_operation(redis_server_factory, embedder):  # noqa: F811
    server = redis_server_factory()
    cache = SemanticCache(RedisStore(server.url, namespace="hung", capacity=10, socket_timeout=0.3),
                          embedder=embedder, threshold=0.8)
    cache.update(Q1, LLM, "Paris", cost=1.0)
    server.pause()
    try:
        t = time.perf_counter()
        assert cache.lookup("Who wrote Hamlet?", LLM) is None
        assert cache.update("Who wrote Hamlet?", LLM, "Shakespeare", cost=1.0) is False
        assert time.perf_counter() - t < 3.0
    finally:
        server.resume()
    time.sleep(1.05)  # the store's breaker lets its next probe through after 1 s
    # back: the cache works again without being rebuilt
    assert cache.lookup(Q1, LLM) == "Paris"
    assert cache.update("Who wrote Hamlet?", LLM, "Shakespeare", cost=1.0)
    assert cache.lookup("who is the author of Hamlet", LLM) == "Shakespeare"


def test_redis_shared_by_two_caches(redis_server_factory, embedder):  # noqa: F811
    server = redis_server_factory()
    a = SemanticCache(RedisStore(server.url, namespace="shared", capacity=10), embedder=embedder, threshold=0.8)
    b = SemanticCache(RedisStore(server.url, namespace="shared"), embedder=embedder, threshold=0.8)
    assert b.lookup(Q1_PARA, LLM) is None
    a.lookup(Q1, LLM)
    a.update(Q1, LLM, "Paris")  # latency cost
    assert b.match(Q1_PARA, LLM).kind == "semantic"
    a.delete(Q1, LLM)
    assert b.lookup(Q1_PARA, LLM) is None
    a.check_invariants()
    b.check_invariants()


def test_closed_disk_store_is_a_miss_not_a_crash(tmp_path, embedder):
    store = DiskStore(tmp_path / "c")
    cache = SemanticCache(store, embedder=embedder, threshold=0.8)
    cache.update(Q1, LLM, "Paris", cost=1.0)
    assert cache.lookup(Q1_PARA, LLM) == "Paris"
    store.close()
    assert cache.lookup(Q1, LLM) is None
    assert cache.lookup(Q1_PARA, LLM) is None
    assert cache.update(Q1, LLM, "Paris", cost=1.0) is False
    cache.clear()
    assert cache.stats()["errors"] >= 4
