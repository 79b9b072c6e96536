"""Faults that used to cost seconds (issue 11, cases 3 and 4), against real backends: a redis-server
paused with SIGSTOP, killed and restarted, down when the store is built; a child process frozen
with SIGSTOP inside a DiskStore transaction. Each test prints its before/after figures (-s)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import numpy as np
import pytest
from redis_server import RedisServer, redis_server_factory  # noqa: F401 - fixture

from cachemux.cache import SemanticCache
from cachemux.errors import ConfigError, StoreError
from cachemux.semantic import Embedder
from cachemux.stores import DiskStore, Entry
from cachemux.stores.breaker import CircuitBreaker, Unavailable

TIMEOUT = 0.5  # socket timeouts of the Redis stores under test
PROBE = 0.1  # their probe_timeout (the default)
LLM = "fake-llm temperature=0"
Q1 = "What is the capital of France?"
Q1_PARA = "what's the capital city of France"


def _redis(url: str, **kw: Any) -> Any:
    from cachemux.stores import RedisStore

    kw.setdefault("namespace", "i11")
    return RedisStore(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, **kw)


def _timed(fn: Any) -> tuple[float, Any]:
    t = time.monotonic()
    try:
        out = fn()
    except StoreError as exc:
        out = exc
    return time.monotonic() - t, out


# ---- the breaker alone ------------------------------------------------------------------------
def test_breaker_opens_on_costly_faults_and_lets_one_probe_through():
    b = CircuitBreaker(0.2, min_cost=0.05, name="unit")
    assert b.state == "closed" and b.before() is False
    b.after(False, ConnectionRefusedError("refused"), 0.001)  # cheap: stays closed
    assert b.state == "closed"
    b.after(False, TimeoutError("timed out"), 0.5)
    assert b.state == "open"
    with pytest.raises(Unavailable, match="unit: unavailable, failing fast .*TimeoutError"):
        b.before()
    time.sleep(0.25)
    assert b.state == "half-open"
    results: list[Any] = []

    def call() -> None:
        try:
            results.append(b.before())
        except Unavailable:
            results.append("fast")

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, results)) == ["True"] + ["fast"] * 7  # one probe at a time
    b.after(True, TimeoutError("still hung"), 0.5)  # a failed probe reopens
    assert b.state == "open"
    time.sleep(0.25)
    assert b.before() is True
    b.after(True, None, 0.001)
    assert b.state == "closed" and b.before() is False
    s = b.stats()
    assert (s["opened"], s["probes"], s["recovered"], s["fast_failures"]) == (1, 2, 1, 8)
    with pytest.raises(ConfigError, match="reset_after"):
        CircuitBreaker(-1)


# ---- Redis paused (SIGSTOP) -----------------------------------------------------------------
def test_paused_redis_costs_one_timeout_then_fails_fast_and_recovers(redis_server_factory):  # noqa: F811
    server = redis_server_factory()
    store = _redis(server.url, capacity=50)
    for i in range(20):
        store.put(f"k{i}", Entry(value=f"v{i}", cost=1.0))
    # before: without the breaker every operation waits a full timeout
    plain = _redis(server.url, breaker=False)
    server.pause()
    try:
        before = [round(_timed(lambda: plain.get("k1"))[0], 3) for _ in range(3)]
        first, err = _timed(lambda: store.get("k1"))
        assert isinstance(err, Unavailable) and first >= TIMEOUT * 0.8
        fast = [_timed(lambda op=op: op())[0] for op in
                (lambda: store.get("k2"), lambda: store.changes(0), lambda: store.peek("k3"),
                 lambda: len(store)) for _ in range(20)]
        writes = [_timed(lambda: store.put("n", Entry(value="x", cost=1.0)))[0] for _ in range(3)]
        time.sleep(1.05)  # half-open: one probe, still hung, costs one probe_timeout
        probe, _ = _timed(lambda: store.get("k1"))
        after_probe, _ = _timed(lambda: store.get("k1"))
    finally:
        server.resume()
    print(f"\npaused redis: before {before} s per op; after: first {first:.3f} s, then "
          f"max {max(fast) * 1e3:.2f} ms over {len(fast)} reads, writes (probing) {[round(w, 3) for w in writes]} s; "
          f"probe {probe:.3f} s, next {after_probe * 1e3:.2f} ms")
    assert min(before) >= TIMEOUT * 0.8
    assert max(fast) < 0.01 and after_probe < 0.01
    assert max(writes) < PROBE + 0.15 and probe < PROBE + 0.15  # a PING of probe_timeout, not a socket timeout
    # recovery: the next probe (<= 1 s after the last fault) reaches the resumed server
    t = time.monotonic()
    while True:
        took, got = _timed(lambda: store.get("k1"))
        if isinstance(got, Entry):
            break
        assert time.monotonic() - t < 2.0, got
        time.sleep(0.01)
    recovered = time.monotonic() - t
    print(f"recovered {recovered:.3f} s after SIGCONT; the probe took {took * 1e3:.2f} ms")
    assert got.value == "v1" and recovered < 1.0 + 0.2
    assert {k: store.peek(k).value for k in store.keys()} == {f"k{i}": f"v{i}" for i in range(20)}
    assert store.breaker.stats()["state"] == "closed"
    store.check_invariants()
    store.close()
    plain.close()


def test_killed_redis_restarted_is_used_at_once(redis_server_factory):  # noqa: F811
    """A refused connection costs microseconds: the breaker stays closed, so a restarted server
    serves the very next operation."""
    server = redis_server_factory(persistent=True)
    store = _redis(server.url, capacity=50)
    store.put("k", Entry(value="v", cost=1.0))
    server.kill()
    took = [_timed(lambda: store.get("k")) for _ in range(5)]
    assert all(isinstance(e, Unavailable) and t < 0.05 for t, e in took)
    server.start()
    first, got = _timed(lambda: store.get("k"))
    print(f"\nkilled redis: ops failed in <= {max(t for t, _ in took) * 1e3:.2f} ms; restarted: "
          f"the first get answered in {first * 1e3:.2f} ms")
    assert isinstance(got, Entry) and got.value == "v"
    store.check_invariants()
    store.close()


def test_redis_down_at_start_builds_and_connects_when_it_comes_back(tmp_path, caplog):
    server = RedisServer(tmp_path / "r")  # port chosen, server not started yet
    t = time.monotonic()
    store = _redis(server.url, capacity=7, policy="lru")  # before: ConnectionError raised here
    built = time.monotonic() - t
    conflicting = _redis(server.url, capacity=9, policy="lru")
    assert built < 0.2 and "connects when the server answers" in caplog.text
    with pytest.raises(Unavailable, match="redis store 127.0.0.1"):
        store.get("k")
    cache = SemanticCache(store, semantic=False)  # the app can build its cache
    assert cache.lookup("q", LLM) is None and cache.update("q", LLM, "a", cost=1.0) is False
    server.start()
    try:
        assert store.put("k", Entry(value="v", cost=1.0)).admitted  # namespace created now
        assert store.get("k").value == "v" and store.spec.name == "lru" and store.spec.capacity == 7
        assert cache.update("q", LLM, "a", cost=1.0) and cache.lookup("q", LLM) == "a"
        store.check_invariants()
        # built while down with another capacity: told on its first operation that gets through
        with pytest.raises(ConfigError, match="was created with policy='lru', capacity=7"):
            conflicting.get("k")
        with pytest.raises(ConfigError, match="capacity=7"):
            _redis(server.url, capacity=9)  # up: told at once, as before
    finally:
        store.close()
        conflicting.close()
        server.stop()


# ---- the semantic cache over a paused Redis ---------------------------------------------------
@pytest.fixture(scope="module")
def embedder():
    return Embedder().load()


def test_cache_lookup_costs_at_most_one_timeout(redis_server_factory, embedder):  # noqa: F811
    server = redis_server_factory()

    def lookups(cache: SemanticCache, n: int) -> list[float]:
        out = []
        for _ in range(n):
            t = time.monotonic()
            assert cache.lookup(Q1_PARA, LLM) is None  # exact get, change-log sync, candidate get
            out.append(time.monotonic() - t)
        return out

    figures = {}
    for name, breaker, n in (("before", False, 2), ("after", True, 4)):
        cache = SemanticCache(_redis(server.url, namespace=f"c{name}", breaker=breaker), embedder=embedder,
                              threshold=0.8)
        cache.update(Q1, LLM, "Paris", cost=1.0)
        assert cache.lookup(Q1_PARA, LLM) == "Paris"
        server.pause()
        try:
            took = lookups(cache, n)
            t = time.monotonic()
            assert cache.update("Who wrote Hamlet?", LLM, "Shakespeare", cost=1.0) is False
            took_update = time.monotonic() - t
            if breaker:
                b = cache.stats()["breaker"]
                assert b["state"] == "open" and b["opened"] == 1 and b["fast_failures"] >= 2 * n
        finally:
            server.resume()
        figures[name] = (took, took_update)
        if breaker:
            time.sleep(1.05)  # the next probe
        assert cache.lookup(Q1_PARA, LLM) == "Paris"  # back, without a rebuild
        cache.close()
    print("\ncache over paused redis, lookup seconds (before/after):",
          {k: ([round(x, 3) for x in v[0]], round(v[1], 3)) for k, v in figures.items()})
    before, before_update = figures["before"]
    after, after_update = figures["after"]
    assert min(before) >= 2 * TIMEOUT * 0.8  # the old cost: exact get + sync + candidate get
    assert after[0] < TIMEOUT * 1.5  # at most one timeout in the first lookup
    assert max(after[1:]) < 0.2 and after_update < 0.2  # none while open (embedding only)


# ---- DiskStore: a process frozen inside a transaction -------------------------------------------
FREEZER = textwrap.dedent("""
    import os, signal, sys
    from cachemux.stores import DiskStore, Entry
    s = DiskStore(sys.argv[1])
    with s._txn() as sql:  # holds SQLite's write lock, as a process stopped mid-put would
        sql("UPDATE cachemux_state SET hits = hits WHERE id = 1")
        print("locked", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
""")


def test_disk_store_frozen_writer_costs_a_short_wait(tmp_path, embedder):
    d = tmp_path / "s"
    store = DiskStore(d, 100)
    cache = SemanticCache(store, embedder=embedder, threshold=0.8)
    cache.update(Q1, LLM, "Paris", cost=1.0)
    # before: a store with the old 60 s lock wait (2 s here) waits it out on every operation
    old = DiskStore(d, lookup_timeout=2.0, update_timeout=2.0)
    child = subprocess.Popen([sys.executable, "-c", FREEZER, str(d)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        before, err = _timed(lambda: old.put("k", Entry(value="v", cost=1.0)))
        assert isinstance(err, StoreError) and "without any commit" in str(err)
        old.close()
        got, took_lookup = [], []
        for q in (Q1, Q1_PARA, "Who wrote Hamlet?"):
            t = time.monotonic()
            got.append(cache.lookup(q, LLM))
            took_lookup.append(time.monotonic() - t)
        t = time.monotonic()
        admitted = cache.update("Who wrote Hamlet?", LLM, "Shakespeare", cost=1.0)
        took_update = time.monotonic() - t
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        child.stdout.close()  # else an unclosed pipe warns (ResourceWarning) whenever it is collected
    print(f"\nfrozen disk writer: before {before:.3f} s per operation (60 s with the old default); after: "
          f"lookups {[round(x, 3) for x in took_lookup]} s, update {took_update:.3f} s")
    assert before >= 1.9
    # the exact entry is still read (a reader is never blocked by SQLite's writer), uncounted;
    # the semantic match too; a new prompt misses; each waits at most the lookup timeout
    assert got == ["Paris", "Paris", None]
    # one lock wait (the first get), then the store's breaker: one ~20 ms attempt per operation
    assert DiskStore.LOOKUP_TIMEOUT * 0.9 <= took_lookup[0] < DiskStore.LOOKUP_TIMEOUT + 0.3
    # (bounds with room for a loaded 2-core machine: still a quarter of one old 2 s wait)
    assert max(took_lookup[1:]) < 0.5 and took_update < 0.3
    assert admitted is False and cache.stats()["dropped"] == 1
    assert cache.stats()["breaker"]["opened"] == 1 and cache.stats()["breaker"]["state"] != "closed"
    assert cache.store.stats()["uncounted"] == 4  # every get while locked: 3 exact keys, 1 candidate
    # the frozen writer is gone (killed): its transaction rolled back; the store works at once
    assert cache.update("Who wrote Hamlet?", LLM, "Shakespeare", cost=1.0)
    assert cache.lookup("who is the author of Hamlet", LLM) == "Shakespeare"
    assert cache.stats()["breaker"]["state"] == "closed"
    cache.check_invariants()
    cache.close()


# ---- NaN / wrong-dimension embeddings (case 6) ------------------------------------------------
PAIRS = [(Q1, Q1_PARA), ("Who wrote Hamlet?", "who is the author of Hamlet"),
         ("How do I bake sourdough bread at home?", "how to bake sourdough bread at home")]


def _plant(store: DiskStore, key: str, vec: Any) -> None:
    """Rewrite a stored row's embedding behind cachemux's back (a foreign or damaged writer)."""
    import base64
    import json

    d = json.loads(store._cache.get(key))
    d["embedding"] = base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
    with store._cache.transact():
        store._cache.set(key, json.dumps(d))


def test_nan_and_wrong_dimension_rows_are_skipped_not_poisoning(tmp_path, embedder):
    d = tmp_path / "s"
    a = SemanticCache(DiskStore(d, 100), embedder=embedder, threshold=0.8)
    for q, _ in PAIRS:
        a.update(q, LLM, f"answer to {q}", cost=1.0)
    for name, vec in (("nan", np.full(embedder.dim, np.nan)), ("short", np.ones(10))):
        a.update(f"planted {name}", LLM, "planted", cost=1.0)
        _plant(a.store, a.key_for(f"planted {name}", LLM), vec)
    # issue 11 before: one NaN row failed every rebuild: 0 of 20 semantic hits, a rebuild per lookup
    b = SemanticCache(DiskStore(d), embedder=embedder, threshold=0.8)
    t = time.monotonic()
    hits = [b.match(p, LLM) for _, p in PAIRS]
    took = time.monotonic() - t
    assert [m.kind for m in hits] == ["semantic"] * len(PAIRS)
    s = b.stats()
    assert s["skipped_entries"] == 2 and s["indexed"] == len(PAIRS) and s["errors"] == 0
    assert b._synced
    # a running cache keeps seeing other processes' entries after a planted row arrives
    a.update("What is the boiling point of water?", LLM, "100 C", cost=1.0)
    a.update("planted later", LLM, "planted", cost=1.0)
    _plant(a.store, a.key_for("planted later", LLM), np.full(embedder.dim, np.inf))
    assert b.match("what is the boiling point of water", LLM).value == "100 C"
    assert b.stats()["skipped_entries"] == 3
    assert b.lookup("planted nan", LLM) is None  # its exact read is a corrupt entry: a miss, logged
    print(f"\nplanted NaN/short rows: {len(PAIRS)}/{len(PAIRS)} semantic hits in a new cache "
          f"({took * 1e3:.0f} ms for {len(PAIRS)} lookups), skipped {b.stats()['skipped_entries']}")
    # writes: a NaN vector never reaches a store
    with pytest.raises(ConfigError, match="finite 1-D"):
        Entry(value="v", cost=1.0, embedding=np.array([1.0, np.nan], dtype=np.float32))
    with pytest.raises(ConfigError, match="dimension 10"):
        a.update("q", LLM, "v", cost=1.0, embedding=np.ones(10))
    a.close()
    b.close()


class _BrokenEmbedder:
    """The real model, but its vectors come back as NaN (a broken checkpoint or device)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.model_name = inner, "broken"

    @property
    def dim(self) -> int:
        return self.inner.dim

    def fits(self, text: str) -> bool:
        return True

    def embed(self, texts):
        return self.inner.embed(texts) * np.float32("nan")


def test_a_model_giving_nan_is_served_exactly(tmp_path, embedder):
    cache = SemanticCache(DiskStore(tmp_path / "s"), embedder=_BrokenEmbedder(embedder), threshold=0.8)
    assert cache.lookup(Q1, LLM) is None
    assert cache.update(Q1, LLM, "Paris", cost=1.0)
    assert cache.lookup(Q1, LLM) == "Paris" and cache.lookup(Q1_PARA, LLM) is None
    s = cache.stats()
    assert s["bad_embeddings"] == 3 and s["errors"] == 0  # 2 lookups embedded, 1 update and s["indexed"] == 0
    assert cache.store.peek(cache.key_for(Q1, LLM)).embedding is None
    cache.check_invariants()
    cache.close()
