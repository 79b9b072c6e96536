"""Issue 11, limits: entries past their ``ttl`` leave first when a full store needs room (memory,
disk and Redis), and ``RedisStore(shares=...)`` keeps one tenant's writes from evicting another's
entries. Real backends: diskcache on a temp dir, a real ``redis-server``. Each test prints its
figures (-s)."""

from __future__ import annotations

import itertools
import random
import sqlite3
import time
from pathlib import Path

import pytest
from redis_server import RedisServer, redis_server  # noqa: F401 - fixture
from tenant_probe import tenant_probe

from cachemux.cache import SemanticCache
from cachemux.errors import ConfigError
from cachemux.stores import DiskStore, Entry, MemoryStore

LLM = "fake-llm temperature=0"
_ns = itertools.count()


def _redis(server: RedisServer, **kw):
    from cachemux.stores.redis import RedisStore

    return RedisStore(server.url, namespace=f"expiry{next(_ns)}", **kw)


def _store(kind: str, tmp_path: Path, server: RedisServer | None, capacity: float, policy: str, **kw):
    if kind == "memory":
        return MemoryStore(capacity, policy, **kw)
    if kind == "disk":
        return DiskStore(tmp_path / f"disk-{next(_ns)}", capacity, policy, **kw)
    return _redis(server, capacity=capacity, policy=policy, **kw)  # type: ignore[arg-type]


def _exact(store, **kw) -> SemanticCache:
    return SemanticCache(store, semantic=False, **kw)


@pytest.fixture(params=["memory", "disk", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def server(kind: str, request: pytest.FixtureRequest) -> RedisServer | None:
    return request.getfixturevalue("redis_server") if kind == "redis" else None


# ---- ttl entries leave first under space pressure ---------------------------------------------
@pytest.mark.parametrize("policy", ["gdsf", "lru", "lec"])
def test_expired_entries_leave_before_policy_victims(tmp_path: Path, kind: str, server, policy: str) -> None:
    """A full store: 10 live entries looked up once, 10 ttl entries looked up 3 times (the
    policy's favourites), then the ttl passes and 10 new entries arrive. With the ttl the 10
    expired entries leave and the live ones stay; without it the policy keeps the ttl entries."""
    figures = {}
    for ttl in (0.25, None):
        store = _store(kind, tmp_path, server, 20, policy)
        live, temp, new = _exact(store, namespace="live"), _exact(store, namespace="T", ttl=ttl), _exact(store, namespace="N")
        for i in range(10):
            live.update(f"live {i}", LLM, f"L{i}", cost=1.0)
        for i in range(10):
            temp.update(f"temp {i}", LLM, f"T{i}", cost=1.0)
        for i in range(10):
            assert live.lookup(f"live {i}", LLM) == f"L{i}"
        for _ in range(3):
            for i in range(10):
                assert temp.lookup(f"temp {i}", LLM) == f"T{i}"
        time.sleep(0.3)
        for i in range(10):
            new.lookup(f"new {i}", LLM)
            new.update(f"new {i}", LLM, f"N{i}", cost=1.0)
        held = lambda cache, name: sum(store.peek(cache.key_for(f"{name} {i}", LLM)) is not None  # noqa: E731
                                       for i in range(10))
        kept = (held(live, "live"), held(temp, "temp"), held(new, "new"))
        expired = store.stats()["expired"]
        figures[ttl] = (*kept, expired, new.stats()["expired_evicted"])
        store.check_invariants()
        if ttl is not None:
            assert kept == (10, 0, 10) and expired == 10 and new.stats()["expired_evicted"] == 10
            assert temp.lookup("temp 0", LLM) is None  # gone, not merely unservable
        else:
            # the policy keeps its favourites, the ttl entries; it evicts live ones (GDSF, LRU) or,
            # with LEC's admission control, turns the newcomers away
            assert kept[1] == 10 and kept[0] + kept[2] == 10 and expired == 0
        if kind == "redis":
            store.destroy()
        store.close()
    print(f"\n{kind}/{policy}: (live kept, ttl entries kept, new kept, store expired, cache expired_evicted) "
          f"ttl=0.25: {figures[0.25]}, ttl=None: {figures[None]}")


def test_unexpired_ttl_entries_are_ranked_by_the_policy(tmp_path: Path, kind: str, server) -> None:
    """Entries with a ttl not yet reached are ordinary policy candidates: nothing leaves early."""
    store = _store(kind, tmp_path, server, 5, "lru")
    cache = _exact(store, ttl=60)
    for i in range(7):
        cache.update(f"q {i}", LLM, f"a{i}", cost=1.0)
    assert [cache.lookup(f"q {i}", LLM) for i in range(7)] == [None, None, "a2", "a3", "a4", "a5", "a6"]
    assert store.stats()["expired"] == 0
    store.check_invariants()
    store.close()


@pytest.mark.parametrize("policy", ["gdsf", "lec", "lfu", "lru", "fifo"])
@pytest.mark.parametrize("shares", [None, {"A": 0.3, "B": 0.5}])
def test_memory_disk_and_redis_make_the_same_decisions(tmp_path: Path, redis_server: RedisServer,  # noqa: F811
                                                       policy: str, shares: dict | None) -> None:
    """1,500 random gets/puts/deletes over three namespaces, a third of the entries long expired
    (distinct times, so the order among them is defined): identical admissions, evictions and
    expired removals on the three stores."""
    stores = [MemoryStore(20, policy, shares=shares),
              DiskStore(tmp_path / f"same-{policy}", 20, policy, shares=shares),
              _redis(redis_server, capacity=20, policy=policy, shares=shares)]
    rng = random.Random(11)
    expired = 0
    for step in range(1500):
        ns = rng.choice(["A", "B", "C", "A"])
        key = f"{ns}:{rng.randrange(40)}"
        r = rng.random()
        if r < 0.5:
            got = [s.get(key) is None for s in stores]
            assert len(set(got)) == 1, (step, key, got)
        elif r < 0.95:
            e = Entry(value=key, cost=rng.choice([0.5, 1.0, 3.0]), size=rng.choice([1.0, 1.0, 2.0]), meta={"ns": ns},
                      expires=rng.choice([None, None, 1e12, 1000.0 + step]))
            out = [s.put(key, e) for s in stores]
            assert len({(o.admitted, o.evicted[:o.expired], tuple(sorted(o.evicted)), o.expired) for o in out}) == 1, (
                step, key, out)
            expired += out[0].expired
        else:
            assert len({s.delete(key) for s in stores}) == 1
    assert len({tuple(sorted(s.keys())) for s in stores}) == 1
    for s in stores:
        s.check_invariants()
    assert expired > 0 and {s.stats()["expired"] for s in stores} == {expired}
    print(f"\n{policy} shares={shares}: {len(stores[0])} entries, {expired} expired removals, same on all three")
    stores[2].destroy()
    for s in stores:
        s.close()


def test_disk_store_made_before_expiry_is_upgraded(tmp_path: Path) -> None:
    """A database without the expiry columns (as written by session-4 code) opens, keeps its
    entries and then ranks new entries by expiry."""
    store = DiskStore(tmp_path / "old", 4, "lru")
    for i in range(3):
        store.put(f"k{i}", Entry(value=f"v{i}", cost=1.0))
    store.close()
    con = sqlite3.connect(tmp_path / "old" / "cache.db")
    con.executescript("DROP INDEX cachemux_entries_expiry; ALTER TABLE cachemux_entries DROP COLUMN expires;"
                      " ALTER TABLE cachemux_state DROP COLUMN expired;")
    con.close()
    store = DiskStore(tmp_path / "old")
    assert sorted(store.keys()) == ["k0", "k1", "k2"] and store.stats()["expired"] == 0
    store.put("stale", Entry(value="s", cost=1.0, expires=time.time() - 1))
    result = store.put("k3", Entry(value="v3", cost=1.0))
    assert result.evicted == ("stale",) and result.expired == 1 and store.stats()["expired"] == 1
    store.check_invariants()
    store.close()


# ---- RedisStore shares= -----------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["gdsf", "lec", "lru"])
def test_redis_one_tenants_writes_cannot_evict_anothers_share(redis_server: RedisServer,  # noqa: F811
                                                              policy: str) -> None:
    """The issue's probe on a real Redis: tenant A's 40 popular entries, then tenant B's 1,000 writes."""
    figures = []
    for shares in (None, {"A": 0.5}):
        store = _redis(redis_server, capacity=100, policy=policy, shares=shares)
        kept, b_kept = tenant_probe(store)
        figures.append((shares, kept, b_kept))
        if shares:
            assert kept == 40 and 0 < b_kept <= 60 and store.stats()["share_used"]["=A"] <= 50
        elif policy != "lec":  # (LEC's admission control already turns B's one-off writes away)
            assert kept < 40
        store.destroy()
        store.close()
    print(f"\nredis {policy}: (shares, A's popular kept of 40, B's entries kept) {figures}")


def test_redis_shares_are_fixed_at_creation(redis_server: RedisServer) -> None:  # noqa: F811
    store = _redis(redis_server, capacity=10, shares={"A": 0.5})
    ns = store.namespace
    store.put("a", Entry(value="a", cost=1.0, meta={"ns": "A"}))
    from cachemux.stores.redis import RedisStore

    with pytest.raises(ConfigError, match="created with shares"):
        RedisStore(redis_server.url, namespace=ns, shares={"A": 0.4}).get("a")
    plain = _redis(redis_server, capacity=10)
    plain.put("x", Entry(value="x", cost=1.0))
    with pytest.raises(ConfigError, match="created with shares=None"):
        RedisStore(redis_server.url, namespace=plain.namespace, shares={"A": 0.5}).get("x")
    again = RedisStore(redis_server.url, namespace=ns)  # shares=None: the stored ones
    assert again.get("a") is not None and again.shares == {"A": 0.5}
    for bad in ({"A": 0}, {"A": 0.7, "B": 0.7}, {1: 0.5}, {}):
        with pytest.raises(ConfigError, match="shares"):
            _redis(redis_server, shares=bad)
    store.destroy()
    plain.destroy()
