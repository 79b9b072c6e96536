"""Stores: conformance (memory, disk, Redis), eviction order, differential against MemoryStore,
the change log, persistence and corrupt or foreign directories."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import random
import sqlite3
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachemux.errors import ConfigError, StoreError, UnknownNameError
from cachemux.stores import CHANGES_RESET, DiskStore, Entry, MemoryStore, PutResult
from redis_server import RedisServer, redis_server  # noqa: F401 - fixture

_ns = itertools.count()

KINDS = ["memory", "disk", "redis"]
SHARED = ["disk", "redis"]
# (policy, options): every policy the shared stores run, with LEC/LFU variants
POLICIES = [("gdsf", {}), ("gds", {}), ("lec", {}), ("lec", {"half_life": 0.5}),
            ("lec", {"admission": False}), ("lfu", {}), ("lfu", {"history": True}),
            ("lru", {}), ("fifo", {})]


@pytest.fixture
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """``make_store(kind, capacity, policy, **options)`` -> a fresh store of that kind."""
    opened: list[Any] = []

    def make(kind: str, capacity: float = 10, policy: str = "gdsf", **options: Any) -> Any:
        if kind == "memory":
            store = MemoryStore(capacity, policy, **options)
        elif kind == "disk":
            store = DiskStore(tmp_path / f"disk{len(opened)}", capacity, policy, **options)
        else:
            server = request.getfixturevalue("redis_server")
            from cachemux.stores import RedisStore

            store = RedisStore(server.url, namespace=f"test{os.getpid()}-{next(_ns)}",
                               capacity=capacity, policy=policy, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def E(value: str = "v", cost: float = 1.0, size: float = 1.0, **kw: Any) -> Entry:
    return Entry(value=value, cost=cost, size=size, **kw)


# ---- conformance ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_and_basic_ops(make_store: Any, kind: str) -> None:
    s = make_store(kind, 10, "gdsf")
    emb = np.arange(4, dtype=np.float32) / 3
    entry = Entry(value='{"text": "héllo ✓"}', cost=2.5, size=1.5, partition="m1|t0", prompt="hi",
                  embedding=emb, created=123.25, meta={"tokens": 7, "model": "x"})
    assert s.get("k") is None
    assert s.put("k", entry) == PutResult(True, ())
    got = s.get("k")
    assert got is not None and got.to_json() == entry.to_json()
    np.testing.assert_array_equal(got.embedding, emb)
    assert s.peek("k").to_json() == entry.to_json()
    assert s.peek("nope") is None
    assert len(s) == 1 and list(s.keys()) == ["k"]
    assert s.put("k", E("new", 1.0)).admitted  # replacing updates the value
    assert s.get("k").value == "new" and len(s) == 1
    assert s.delete("k") is True and s.delete("k") is False
    assert s.get("k") is None and len(s) == 0
    for i in range(5):
        s.put(f"k{i}", E(str(i)))
    s.clear()
    assert len(s) == 0 and list(s.keys()) == []
    s.check_invariants()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("policy,options", POLICIES, ids=lambda p: json.dumps(p) if isinstance(p, dict) else p)
def test_capacity_holds_with_sizes(make_store: Any, kind: str, policy: str, options: dict) -> None:
    s = make_store(kind, 5, policy, **options)
    rng = random.Random(7)
    for i in range(120):
        key = f"k{rng.randrange(15)}"
        if rng.random() < 0.5:
            s.get(key)
        else:
            res = s.put(key, E(f"v{i}", cost=rng.choice([0.5, 1, 3]), size=rng.choice([0.5, 1, 2.5])))
            assert key not in res.evicted
            assert (s.peek(key) is not None) == res.admitted
        s.check_invariants()
    assert not s.put("huge", E(size=6)).admitted  # larger than the whole cache
    assert s.peek("huge") is None


@pytest.mark.parametrize("kind", KINDS)
def test_huge_and_unusual_values(make_store: Any, kind: str) -> None:
    s = make_store(kind, 10, "lec")
    big = "x" * 1_000_000 + "é"  # a 1 MB answer: stored inline, read back whole
    assert s.put("big", E(big, cost=3.0, prompt="p" * 100_000)).admitted
    assert s.get("big").value == big
    odd = "\x00 nul, \ud7ff, emoji 🙂, quotes \" ' and a {json: 1}"
    for key in ("", " ", "k\x00ey", "ключ", "a" * 10_000):
        assert s.put(key, E(odd)).admitted, key
        assert s.get(key).value == odd
    s.check_invariants()


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_types_are_clear_errors(make_store: Any, kind: str) -> None:
    s = make_store(kind, 3, "lru")
    if kind != "memory":  # MemoryStore keys are whatever the policy hashes
        with pytest.raises(ConfigError, match="keys must be str"):
            s.put(1, E())  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="keys must be str"):
            s.get(b"k")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="needs an Entry"):
            s.put("k", "text")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="int cursor"):
            s.changes("0")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="value must be str"):
        Entry(value=b"bytes", cost=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", SHARED)
def test_unknown_or_unsupported_policy(make_store: Any, kind: str) -> None:
    for bad in ("belady", "lec-offline", "nope"):
        with pytest.raises(UnknownNameError, match="valid choices: fifo, gds, gdsf, lec, lfu, lru"):
            make_store(kind, 3, bad)
    with pytest.raises(ConfigError, match="half_life"):
        make_store(kind, 3, "lec", half_lif=3)
    with pytest.raises(ConfigError, match="capacity"):
        make_store(kind, 0, "lru")


# ---- eviction order, by hand ------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_lru_order(make_store: Any, kind: str) -> None:
    s = make_store(kind, 3, "lru")
    for k in "abc":
        s.put(k, E(k))
    s.get("a")
    assert s.put("d", E("d")).evicted == ("b",)
    s.get("c")
    assert s.put("e", E("e")).evicted == ("a",)
    assert sorted(s.keys()) == ["c", "d", "e"]


@pytest.mark.parametrize("kind", KINDS)
def test_gdsf_order_and_clock(make_store: Any, kind: str) -> None:
    s = make_store(kind, 3, "gdsf")
    s.put("a", E(cost=1.0))   # H = 0 + 1*1/1 = 1
    s.put("b", E(cost=5.0))   # H = 5
    s.put("c", E(cost=2.0, size=1.0))   # H = 2
    s.get("a"), s.get("a")    # H(a) = 0 + 3*1 = 3
    assert s.put("d", E(cost=1.0)).evicted == ("c",)   # least H = 2; clock := 2, H(d) = 3
    # a and d tie at H=3: the one whose priority was set first (a) goes first
    assert s.put("e", E(cost=4.0)).evicted == ("a",)   # clock := 3, H(e) = 7
    assert s.put("f", E(cost=0.5)).evicted == ("d",)   # H(f) = 3.5
    assert sorted(s.keys()) == ["b", "e", "f"]
    if kind != "memory":
        assert s.stats()["clock"] == 3.0


@pytest.mark.parametrize("kind", KINDS)
def test_lec_admission_control(make_store: Any, kind: str) -> None:
    s = make_store(kind, 2, "lec")
    s.get("a"), s.get("b")            # history: a=1, b=1 (misses count)
    s.put("a", E(cost=2.0)), s.put("b", E(cost=3.0))   # prio a=2, b=3
    s.get("x")                        # x seen once
    r = s.put("x", E(cost=2.0))       # 1*2 = 2, not > 2: rejected (ties keep the incumbent)
    assert r == PutResult(False, ())
    assert s.peek("x") is None
    s.get("x")                        # x seen twice: 2*2 = 4 > 2
    assert s.put("x", E(cost=2.0)) == PutResult(True, ("a",))
    # a two-unit newcomer must beat both entries it would evict: b (3) and x (4)
    s.get("big"), s.get("big")
    assert s.put("big", E(cost=3.5, size=2.0)) == PutResult(False, ())  # 2*3.5/2 = 3.5 < 4
    assert sorted(s.keys()) == ["b", "x"]
    assert s.put("big", E(cost=7.0, size=2.0)) == PutResult(True, ("b", "x"))  # 7 beats both


@pytest.mark.parametrize("kind", KINDS)
def test_lfu_order_and_ties(make_store: Any, kind: str) -> None:
    s = make_store(kind, 3, "lfu")
    for k in "abc":
        s.put(k, E(k))
    s.get("a"), s.get("c")
    assert s.put("d", E()).evicted == ("b",)      # b: 1 use
    assert s.put("e", E()).evicted == ("d",)      # d: 1 use, the only one
    s.get("e")                                    # a, c, e all at 2: a was touched first
    assert s.put("f", E()).evicted == ("a",)


# ---- differential: the same operations through MemoryStore and a shared store -----------------
def _trace(seed: int, n: int, n_keys: int, sizes: tuple[float, ...]) -> list[tuple]:
    rng = random.Random(seed)
    ops: list[tuple] = []
    for i in range(n):
        key = f"q{rng.randrange(n_keys)}"
        r = rng.random()
        if r < 0.5:
            ops.append(("get", key))
        elif r < 0.92:
            # few distinct costs and sizes: many priority ties, so the tie-break is exercised
            ops.append(("put", key, E(f"v{i}", cost=rng.choice([0.0, 0.5, 1.0, 2.0, 3.3]),
                                      size=rng.choice(sizes))))
        else:
            ops.append(("delete", key))
    return ops


def _replay(ops: list[tuple], ref: MemoryStore, other: Any, where: str) -> None:
    for i, op in enumerate(ops):
        if op[0] == "get":
            a, b = ref.get(op[1]), other.get(op[1])
            assert (a is None) == (b is None), f"{where} op {i} {op[:2]}: hit {a is not None} vs {b is not None}"
            assert a is None or a.to_json() == b.to_json()
        elif op[0] == "put":
            a, b = ref.put(op[1], op[2]), other.put(op[1], op[2])
            assert a == b, f"{where} op {i} put {op[1]}: {a} vs {b}"
        else:
            assert ref.delete(op[1]) == other.delete(op[1]), f"{where} op {i} {op[:2]}"
    assert sorted(ref.keys()) == sorted(other.keys())
    assert len(ref) == len(other)


@pytest.mark.parametrize("kind", SHARED)
@pytest.mark.parametrize("policy,options", POLICIES, ids=lambda p: json.dumps(p) if isinstance(p, dict) else p)
@pytest.mark.parametrize("sizes", [(1.0,), (0.5, 1.0, 1.5, 2.0, 3.0)], ids=["unit", "sized"])
def test_differential_against_memory_store(make_store: Any, kind: str, policy: str, options: dict,
                                           sizes: tuple[float, ...]) -> None:
    """Same hits, admissions and evictions (in order) as the pure policy, op by op."""
    capacity = 7 if sizes == (1.0,) else 6.5
    ref = MemoryStore(capacity, policy, **options)
    other = make_store(kind, capacity, policy, **options)
    ops = _trace(zlib.crc32(f"{policy}{options}{sizes}".encode()), 700, 24, sizes)
    _replay(ops, ref, other, f"{kind}/{policy}{options}")
    ref.check_invariants()
    other.check_invariants()
    st = other.stats()
    assert (st["hits"], st["misses"], st["evictions"]) == (ref.policy.hits, ref.policy.misses,
                                                           ref.policy.evictions)
    if policy in ("gdsf", "gds"):
        assert st["clock"] == ref.policy.clock
    if options.get("half_life"):  # the decay rescale ran at least once and stayed in step
        assert ref.policy._freq.epoch >= 1


@pytest.mark.parametrize("policy,options", [("lec", {"half_life": 0.5}), ("gdsf", {}), ("lru", {})],
                         ids=["lec-decay", "gdsf", "lru"])
def test_differential_survives_reopen(tmp_path: Path, policy: str, options: dict) -> None:
    """Close and reopen the DiskStore mid-trace: the persisted state continues exactly."""
    ref = MemoryStore(6.5, policy, **options)
    ops = _trace(5, 900, 24, (0.5, 1.0, 2.0))
    for part in range(3):
        with DiskStore(tmp_path / "s", 6.5 if part == 0 else None, policy if part == 0 else None,
                       **(options if part == 0 else {})) as s:
            _replay(ops[part * 300:(part + 1) * 300], ref, s, f"disk part {part}")
            s.check_invariants()


# ---- the change log ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", SHARED)
def test_changes_log(make_store: Any, kind: str) -> None:
    s = make_store(kind, 2, "lru")
    cursor, ops = s.changes(0)
    assert ops == [(CHANGES_RESET, "")]  # a fresh reader always rebuilds first
    assert s.changes(cursor) == (cursor, [])
    s.put("a", E()), s.put("b", E())
    s.put("c", E())            # evicts a
    s.put("b", E("b2"))        # replace: del + add
    s.delete("c")
    s.delete("zzz")            # nothing cached: nothing logged
    c2, ops = s.changes(cursor)
    assert ops == [("add", "a"), ("add", "b"), ("del", "a"), ("add", "c"), ("del", "b"),
                   ("add", "b"), ("del", "c")]
    assert c2 == cursor + len(ops)
    assert s.changes(c2) == (c2, [])
    assert s.changes(c2 - 2) == (c2, ops[-2:])
    assert s.changes(c2 + 1)[1] == [(CHANGES_RESET, "")]  # a cursor from the future
    # replaying the log reproduces the key set
    live: set[str] = set()
    for op, key in ops:
        (live.add if op == "add" else live.discard)(key)
    assert live == set(s.keys())


@pytest.mark.parametrize("kind", SHARED)
def test_changes_log_is_trimmed_and_reports_reset(make_store: Any, kind: str) -> None:
    s = make_store(kind, 3, "lru", log_size=10)
    cursor, _ = s.changes(0)
    for i in range(1100):  # 1,100 adds + 1,097 evictions: past log_size + the trim batch
        s.put(f"k{i}", E())
    head, ops = s.changes(cursor)
    assert ops == [(CHANGES_RESET, "")]
    recent = s.changes(head - 10)[1]
    assert len(recent) == 10
    assert recent[-1] == ("add", "k1099")


# ---- DiskStore: persistence, configuration, foreign and corrupt directories --------------------
def test_disk_persists_across_reopen_and_processes(tmp_path: Path) -> None:
    d = tmp_path / "store"
    with DiskStore(d, 5, "lec") as s:
        for k in "abc":
            s.get(k)
            s.put(k, E(k, cost=2.0))
        s.get("a")
        before = s.stats()
    code = textwrap.dedent(f"""
        from cachemux.stores import DiskStore
        s = DiskStore({str(d)!r})
        assert s.spec.name == "lec" and s.spec.capacity == 5
        assert sorted(s.keys()) == ["a", "b", "c"]
        assert s.get("b").value == "b"
        s.check_invariants()
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
    with DiskStore(d) as s:
        after = s.stats()
        assert after["hits"] == before["hits"] + 1 and after["entries"] == 3
        assert json.loads((d / "cachemux-store.json").read_text())["format"] == "cachemux-diskstore"


def test_disk_reopen_with_other_configuration(tmp_path: Path) -> None:
    DiskStore(tmp_path / "s", 5, "lec").close()
    with pytest.raises(ConfigError, match="was created with policy='lec', capacity=5"):
        DiskStore(tmp_path / "s", 6, "lec")
    with pytest.raises(ConfigError, match="was created with policy='lec'"):
        DiskStore(tmp_path / "s", policy="gdsf")
    with DiskStore(tmp_path / "s", 5) as s:  # same capacity, stored policy
        assert s.spec.name == "lec"


def test_disk_refuses_foreign_directories(tmp_path: Path) -> None:
    f = tmp_path / "file.txt"
    f.write_text("not a store")
    with pytest.raises(StoreError, match=f"{f}: exists and is not a directory"):
        DiskStore(f, 5)
    d = tmp_path / "photos"
    d.mkdir()
    (d / "cat.jpg").write_bytes(b"\xff\xd8jpeg")
    with pytest.raises(StoreError, match=f"{d}: not a cachemux store .*cat.jpg"):
        DiskStore(d, 5)
    assert sorted(p.name for p in d.iterdir()) == ["cat.jpg"]  # untouched
    # a plain diskcache directory with someone else's data
    import diskcache

    dc = tmp_path / "dc"
    with diskcache.Cache(str(dc)) as c:
        c["theirs"] = {"pickled": True}
    with pytest.raises(StoreError, match=f"{dc}: not a cachemux store"):
        DiskStore(dc, 5)
    with diskcache.Cache(str(dc)) as c:
        assert c["theirs"] == {"pickled": True}


def test_disk_marker_problems(tmp_path: Path) -> None:
    d = tmp_path / "s"
    DiskStore(d, 5).close()
    marker = d / "cachemux-store.json"
    good = marker.read_text()
    marker.write_text('{"format": "cachemux-diskstore", "version": 99}')
    with pytest.raises(StoreError, match="format version 99 is not supported"):
        DiskStore(d)
    marker.write_text("{truncated")
    with pytest.raises(StoreError, match="unreadable marker"):
        DiskStore(d)
    marker.write_text(good)
    os.remove(d / "cache.db")
    with pytest.raises(StoreError, match="cache.db is missing"):
        DiskStore(d)


def _filled(d: Path, n: int = 300) -> None:
    with DiskStore(d, 1000, "gdsf") as s:
        for i in range(n):
            s.put(f"key-{i}", E("x" * 2000 + str(i), cost=1.0 + i % 7))


def test_disk_truncated_database_is_a_clear_error(tmp_path: Path) -> None:
    d = tmp_path / "s"
    _filled(d)
    db = d / "cache.db"
    assert not (d / "cache.db-wal").exists() or (d / "cache.db-wal").stat().st_size == 0
    size = db.stat().st_size
    with open(db, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(StoreError, match=str(d)):
        s = DiskStore(d, verify=True)
        s.close()
    # without verify the damage surfaces at the latest on the first operation that reads it
    try:
        s = DiskStore(d)
    except StoreError as exc:
        assert str(d) in str(exc)
    else:
        with pytest.raises(StoreError, match=str(d)):
            for i in range(300):
                s.get(f"key-{i}")
            s.check_invariants()
        s.close()
    assert db.stat().st_size == size // 2  # nothing was rewritten or deleted


def test_disk_garbage_database_is_a_clear_error(tmp_path: Path) -> None:
    d = tmp_path / "s"
    DiskStore(d, 5).close()
    (d / "cache.db").write_bytes(os.urandom(8192))
    with pytest.raises(StoreError, match=f"{d}: cannot open .*not a valid SQLite database"):
        DiskStore(d)


class _Boom:
    """Unpickling this would create a file: proof that nothing was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


def test_disk_never_unpickles_or_pickles(tmp_path: Path) -> None:
    d = tmp_path / "s"
    with DiskStore(d, 5, "lru") as s:
        s.put("k", E("safe"))
        s.put("evil", E("x"))
    con = sqlite3.connect(d / "cache.db")
    modes = con.execute("SELECT mode, typeof(value), typeof(key) FROM Cache").fetchall()
    assert modes == [(1, "text", "text")] * 2  # MODE_RAW: JSON text inline, never a pickle
    canary = tmp_path / "canary"
    con.execute("UPDATE Cache SET mode = 4, value = ? WHERE key = 'evil'",
                (pickle.dumps(_Boom(str(canary))),))
    con.commit()
    con.close()
    with DiskStore(d) as s:
        with pytest.raises(StoreError, match="refusing to load a non-text"):
            s.get("evil")
        with pytest.raises(StoreError, match="refusing"):
            s.peek("evil")
        assert s.get("k").value == "safe"
    assert not canary.exists()


def test_disk_lock_timeout_is_a_store_error(tmp_path: Path) -> None:
    import time

    with DiskStore(tmp_path / "s", 5, "lru", timeout=0.3) as s:
        s.put("k", E())
        other = sqlite3.connect(tmp_path / "s" / "cache.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        t = time.monotonic()
        with pytest.raises(StoreError, match="timed out"):
            s.put("j", E())
        assert time.monotonic() - t < 3
        other.execute("ROLLBACK")
        other.close()
        assert s.put("j", E()).admitted


# ---- RedisStore specifics ----------------------------------------------------------------------
def test_redis_reloads_flushed_scripts(make_store: Any, redis_server: RedisServer) -> None:  # noqa: F811
    import redis

    s = make_store("redis", 3, "gdsf")
    s.put("a", E())
    redis.Redis.from_url(redis_server.url).script_flush()  # EVALSHA now answers NOSCRIPT
    assert s.get("a") is not None
    assert s.put("b", E()).admitted


def test_redis_configuration_and_foreign_keys(redis_server: RedisServer) -> None:  # noqa: F811
    import redis

    from cachemux.stores import RedisStore

    ns = f"cfg{next(_ns)}"
    s = RedisStore(redis_server.url, namespace=ns, capacity=4, policy="lec")
    with pytest.raises(ConfigError, match="was created with policy='lec', capacity=4"):
        RedisStore(redis_server.url, namespace=ns, capacity=5, policy="lec")
    same = RedisStore(redis_server.url, namespace=ns)
    assert same.spec.name == "lec" and same.spec.capacity == 4
    client = redis.Redis.from_url(redis_server.url)
    client.hset(f"cachemux:{{{ns}-x}}:v", "k", "v")  # keys of a namespace without a config
    with pytest.raises(StoreError, match="without a cachemux configuration"):
        RedisStore(redis_server.url, namespace=f"{ns}-x", capacity=4)
    client.hset(f"cachemux:{{{ns}-y}}:cfg", "format", "somebody-else")
    with pytest.raises(StoreError, match="not a cachemux store"):
        RedisStore(redis_server.url, namespace=f"{ns}-y", capacity=4)
    # the namespace vanishes (FLUSHALL, restart without persistence): re-created empty
    s.put("a", E())
    client.delete(*[f"cachemux:{{{ns}}}:{n}" for n in ("cfg", "st", "v", "m", "z", "h", "log")])
    assert s.get("a") is None
    assert s.put("a", E()).admitted and len(s) == 1
    s.check_invariants()
    for name in (ns, f"{ns}-x", f"{ns}-y"):
        client.delete(*client.keys(f"cachemux:{{{name}}}:*"))
    client.close()


def test_redis_is_imported_lazily(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["redis"] = None  # as if redis-py were not installed
        import cachemux.stores as stores
        from cachemux.stores import DiskStore, MemoryStore
        try:
            stores.RedisStore("redis://127.0.0.1:1/0")
        except ImportError as exc:
            assert "cachemux[redis]" in str(exc), exc
            print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


# ---- Hypothesis: short random operation sequences, differential ------------------------------
_op = st.one_of(
    st.tuples(st.just("get"), st.sampled_from("abcdefg")),
    st.tuples(st.just("put"), st.sampled_from("abcdefg"),
              st.builds(E, st.just("v"), cost=st.sampled_from([0.0, 1.0, 2.0, 2.5]),
                        size=st.sampled_from([0.5, 1.0, 2.0]))),
    st.tuples(st.just("delete"), st.sampled_from("abcdefg")))


@pytest.mark.parametrize("kind", SHARED)
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policy=st.sampled_from(POLICIES), ops=st.lists(_op, max_size=40))
def test_differential_hypothesis(make_store: Any, kind: str, policy: tuple, ops: list) -> None:
    name, options = policy
    ref = MemoryStore(3, name, **options)
    other = make_store(kind, 3, name, **options)
    _replay(ops, ref, other, f"{kind}/{name}{options}")
    other.check_invariants()


def test_shared_invariant_check_catches_each_corruption() -> None:
    from cachemux.errors import InvariantError
    from cachemux.stores._policy import resolve_policy

    spec = resolve_policy("gdsf", 10, {})
    # a consistent GDSF state: H = clock + n * cost / size
    rows = [("a", 1.0, 2.0, 1.0, 0.0, 2.0, 1, 1), ("b", 2.0, 4.0, 3.0, 0.5, 6.5, 2, 2)]
    values = {"a": Entry("A", 2.0).to_json(), "b": Entry("B", 4.0, size=2.0).to_json()}
    ok = {"count": 2, "used": 3.0, "seq": 2, "clock": 0.5}

    def check(rows=rows, values=values, **state: float) -> None:
        spec.check_entries("test store", rows, values, {}, **{**ok, **state},
                           parse=lambda k, t: Entry.from_json(t))

    check()
    bad = [({"count": 3}, "entries but count"), ({"used": 4.0}, "sizes sum"),
           ({"rows": [rows[0], ("b", 9.0, 4.0, 3.0, 0.5, 0.5 + 12 / 9, 2, 2)], "used": 10.0}, "value has size/cost"),
           ({"seq": 1}, "beyond the counter"), ({"clock": 0.0}, "ranked at clock"),
           ({"rows": [rows[0], ("b", 2.0, 4.0, 3.0, 0.5, 7.0, 2, 2)]}, "implies"),
           ({"rows": [rows[0], ("b", 2.0, 4.0, 3.0, 0.5, 6.5, 1, 1)]}, "duplicate tie-break"),
           ({"values": {"a": values["a"]}}, "has no value"),
           ({"rows": [("a", 20.0, 2.0, 1.0, 0.0, 0.1, 1, 1)], "count": 1, "used": 20.0}, "exceeds capacity")]
    for change, message in bad:
        with pytest.raises(InvariantError, match=message):
            check(**change)


@pytest.mark.parametrize("kind", SHARED)
def test_check_invariants_sees_a_tampered_priority(make_store: Any, kind: str) -> None:
    from cachemux.errors import InvariantError

    store = make_store(kind, 10, "gdsf")
    store.put("a", Entry("A", 2.0))
    store.put("b", Entry("B", 3.0))
    store.check_invariants()
    if kind == "disk":
        with store._txn() as sql:
            sql("UPDATE cachemux_entries SET prio = prio + 1 WHERE key = 'a'")
    else:
        meta_key = store._keys[3]  # "m": key -> "size cost n base prio seq ins"
        fields = store.client.hget(meta_key, "a").decode().split()
        fields[4] = repr(float(fields[4]) + 1)
        store.client.hset(meta_key, "a", " ".join(fields))
    with pytest.raises(InvariantError):
        store.check_invariants()
