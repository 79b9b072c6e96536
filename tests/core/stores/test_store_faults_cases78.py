"""Issue 11, cases 7 and 8, against real backends: a DiskStore directory deleted or replaced while
it is open; a store on a read-only filesystem (a tmpfs remounted read-only: the tests run as root,
where chmod does not stop writes); a marker file copied into another app's diskcache directory;
an ``llm_string`` forging a model group's key; value-size, TTL and per-namespace limits.
Each test prints its figures (-s)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import diskcache
import pytest
from tenant_probe import tenant_probe

from cachemux.cache import SemanticCache
from cachemux.errors import ConfigError, StoreError
from cachemux.stores import DiskStore, Entry, MemoryStore

LLM = "fake-llm temperature=0"


def _exact(store, **kw) -> SemanticCache:
    return SemanticCache(store, semantic=False, **kw)


# ---- 8c: llm_string cannot forge a model group's key -----------------------------------------
@pytest.mark.parametrize("forged", ["\x00group:G", "\x00group:G\x00", "\x00llm:\x00group:G"])
def test_llm_string_cannot_read_a_model_groups_answers(forged: str) -> None:
    store = MemoryStore(100)
    grouped = _exact(store, model_groups={"G": ["gpt-a", "gpt-b"]})
    grouped.update("What is 2+2?", "gpt-a", "4 (group G's answer)", cost=1.0)
    assert grouped.lookup("What is 2+2?", "gpt-b") == "4 (group G's answer)"  # the group shares
    plain = _exact(store)  # the same namespace, no groups: an attacker-chosen llm_string
    assert plain.lookup("What is 2+2?", forged) is None
    assert grouped.lookup("What is 2+2?", forged) is None  # not a member either
    plain.update("What is 2+2?", forged, "forged", cost=1.0)
    assert grouped.lookup("What is 2+2?", "gpt-a") == "4 (group G's answer)"  # nor overwrite it
    assert plain.lookup("What is 2+2?", forged) == "forged"  # its own key works as any other


def test_model_id_is_injective() -> None:
    from cachemux.semantic.keys import exact_key, model_id, partition_id

    llms = ["", "gpt", "\x00", "\x00group:G", "\x00llm:", "\x00llm:\x00group:G", "\x00llm:gpt", "G"]
    ids = [model_id(s) for s in llms] + [model_id("anything", g) for g in ("G", "", "\x00llm:gpt")]
    assert len(set(ids)) == len(ids)
    assert model_id("gpt") == "gpt"  # ordinary keys unchanged: existing stores keep their entries
    assert len({exact_key("q", m) for m in ids}) == len(ids)
    assert len({partition_id("", m) for m in ids}) == len(ids)


# ---- 7: the store directory deleted or replaced while open ------------------------------------
Q = "What is the capital of France?"


def test_deleted_directory_is_detected_within_one_operation(tmp_path: Path, caplog) -> None:
    d = tmp_path / "store"
    store = DiskStore(d, capacity=50)
    cache = _exact(store)
    assert cache.update(Q, LLM, "Paris", cost=1.0)
    shutil.rmtree(d)
    with caplog.at_level(logging.WARNING):
        t = time.monotonic()
        got = cache.lookup(Q, LLM)  # the first operation after the deletion
        took = time.monotonic() - t
        kept = cache.update("another question", LLM, "answer", cost=1.0)
    s = cache.stats()
    logged = [r for r in caplog.records if "deleted" in r.getMessage()]
    print(f"\ndeleted directory: lookup -> {got!r} in {took * 1e3:.2f} ms, update admitted={kept}, "
          f"errors={s['errors']}, dropped={s['dropped']}, log lines={len(logged)}, store={s.get('store')}")
    assert got is None and kept is False and took < 0.05
    assert s["errors"] == 2 and s["dropped"] == 1 and logged
    assert any(r.levelno == logging.ERROR for r in logged)
    with pytest.raises(StoreError, match="deleted or moved away"):
        store.put("k", Entry(value="v", cost=1.0))
    assert store.stats()["gone_ops"] >= 3
    store.close()


def test_replaced_directory_is_detected(tmp_path: Path) -> None:
    d = tmp_path / "store"
    first = DiskStore(d, capacity=50)
    first.put("old", Entry(value="old", cost=1.0))
    d.rename(tmp_path / "store.moved")  # moved aside and a new store created at the same path
    second = DiskStore(d, capacity=50)
    second.put("new", Entry(value="new", cost=1.0))
    with pytest.raises(StoreError, match="replaced"):
        first.get("new")
    with pytest.raises(StoreError, match="replaced"):
        first.put("lost", Entry(value="x", cost=1.0))
    assert list(second.keys()) == ["new"] and second.get("new").value == "new"
    first.close()
    second.close()


# ---- 8b: a copied marker never makes cachemux write into another app's directory --------------
def _fingerprint(d: Path) -> dict:
    con = sqlite3.connect(f"file:{d / 'cache.db'}?mode=ro", uri=True)
    try:
        settings = dict(con.execute("SELECT key, value FROM Settings"))
        tables = sorted(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'"))
    finally:
        con.close()
    return {"settings": settings, "tables": tables, "files": sorted(p.name for p in d.iterdir())}


@pytest.mark.parametrize("initialised", [True, False])
def test_copied_marker_leaves_a_foreign_diskcache_untouched(tmp_path: Path, initialised: bool) -> None:
    ours = DiskStore(tmp_path / "ours", capacity=10)
    ours.close()
    foreign = tmp_path / "app-cache"
    app = diskcache.Cache(str(foreign), size_limit=2**30 + 1, eviction_policy="least-frequently-used")
    app.set("session", "the other app's data")
    app.close()
    marker = (tmp_path / "ours" / "cachemux-store.json").read_text()
    if not initialised:
        marker = marker.replace('"initialised": true', '"initialised": false')
    (foreign / "cachemux-store.json").write_text(marker)
    before = _fingerprint(foreign)
    with pytest.raises(StoreError, match="nothing was changed"):
        DiskStore(foreign)
    after = _fingerprint(foreign)
    print(f"\ncopied marker (initialised={initialised}): settings changed: "
          f"{sorted(k for k in after['settings'] if after['settings'][k] != before['settings'].get(k))}")
    assert after == before
    assert diskcache.Cache(str(foreign)).get("session") == "the other app's data"


def test_marker_of_another_store_is_refused(tmp_path: Path) -> None:
    a, b = DiskStore(tmp_path / "a", capacity=10), DiskStore(tmp_path / "b", capacity=20)
    a.put("ka", Entry(value="a", cost=1.0))
    a.close()
    b.close()
    shutil.copy(tmp_path / "a" / "cachemux-store.json", tmp_path / "b" / "cachemux-store.json")
    with pytest.raises(StoreError, match="copied or restored"):
        DiskStore(tmp_path / "b")
    reopened = DiskStore(tmp_path / "a")  # the real pair still opens
    assert reopened.get("ka").value == "a"
    reopened.close()


# ---- 8a: a read-only store directory ----------------------------------------------------------
@contextlib.contextmanager
def _tmpfs(where: Path) -> Iterator[Path]:
    where.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "none", str(where)],
                                           capture_output=True).returncode:
        pytest.skip("needs root and mount (a real read-only filesystem: chmod does not stop root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _remount(where: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True, capture_output=True)


def test_read_only_filesystem_opens_read_only(tmp_path: Path, caplog) -> None:
    with _tmpfs(tmp_path / "fs") as fs:
        d = fs / "store"
        with DiskStore(d, capacity=50) as store:
            cache = _exact(store)
            for i in range(5):
                cache.update(f"question {i}", LLM, f"answer {i}", cost=1.0)
        _remount(fs, "ro")
        try:
            with pytest.raises(StoreError, match="read-only") as refused:
                DiskStore(d, readonly=False)
            with caplog.at_level(logging.WARNING):
                store = DiskStore(d)
            assert store.read_only and "opened read-only" in caplog.text
            cache = _exact(store)
            hits = [cache.lookup(f"question {i}", LLM) for i in range(5)]
            kept = cache.update("new question", LLM, "new answer", cost=1.0)
            with pytest.raises(StoreError, match="open read-only: updates are dropped"):
                store.delete(cache.key_for("question 0", LLM))
            s = cache.stats()
            print(f"\nread-only filesystem: refused with readonly=False: {str(refused.value)[:90]}...; "
                  f"opened read-only: {sum(h is not None for h in hits)}/5 hits, update admitted={kept}, "
                  f"dropped={s['dropped']}, store read_only_drops={s['store']['read_only_drops']}")
            assert hits == [f"answer {i}" for i in range(5)] and kept is False and s["dropped"] == 1
            assert s["store"]["read_only_drops"] == 2 and len(store) == 5
            store.check_invariants()
            assert store.changes(0)[1] == [("reset", "")]
            store.close()
        finally:
            _remount(fs, "rw")
        with DiskStore(d) as store:  # writable again: a normal store, nothing lost
            assert not store.read_only and len(store) == 5
            store.put("k", Entry(value="v", cost=1.0))
            store.check_invariants()


# ---- 8d: limits: value size, ttl -------------------------------------------------------------
def test_values_over_max_value_bytes_are_neither_cached_nor_served() -> None:
    from cachemux.cache import MAX_VALUE_BYTES

    store = MemoryStore(50)
    cache = _exact(store)
    assert cache.max_value_bytes == MAX_VALUE_BYTES == 1_000_000
    big = "x" * (20 * 2**20)  # 20 MB answers: the issue fitted 10 of them in a 50-entry cache
    kept = [cache.update(f"q{i}", LLM, big, cost=1.0) for i in range(10)]
    assert kept == [False] * 10 and len(store) == 0 and cache.stats()["too_large"] == 10
    assert cache.update("small", LLM, "y" * MAX_VALUE_BYTES, cost=1.0)  # the limit itself fits
    # a value planted straight into the store is not served either
    key = cache.key_for("planted", LLM)
    store.put(key, Entry(value="z" * (MAX_VALUE_BYTES + 1), cost=1.0))
    assert cache.lookup("planted", LLM) is None and cache.stats()["too_large_skipped"] == 1
    # counted in UTF-8 bytes, not characters
    tight = _exact(MemoryStore(10), max_value_bytes=10)
    assert tight.update("a", LLM, "é" * 5, cost=1.0) and not tight.update("b", LLM, "é" * 6, cost=1.0)
    assert _exact(MemoryStore(10), max_value_bytes=None).update("c", LLM, big, cost=1.0)
    for bad in (0, -1, 1.5, True, "1MB"):
        with pytest.raises(ConfigError, match="max_value_bytes"):
            _exact(MemoryStore(10), max_value_bytes=bad)


def test_expired_entries_are_misses_and_leave(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "s", capacity=50)
    cache = _exact(store, ttl=0.3)
    other = _exact(store, ttl=0.3, namespace="other")
    cache.update(Q, LLM, "Paris", cost=1.0)
    cache.update("old 2", LLM, "a", cost=1.0)
    other.update("theirs", LLM, "b", cost=1.0)
    assert cache.lookup(Q, LLM) == "Paris"
    time.sleep(0.35)
    cache.update("fresh", LLM, "c", cost=1.0)
    assert cache.lookup(Q, LLM) is None and len(store) == 3  # expired: a miss, and deleted
    assert cache.lookup("fresh", LLM) == "c"
    assert cache.purge_expired() == 1 and len(store) == 2  # "old 2"; the other namespace's stays
    assert cache.stats()["expired"] == 2 and _exact(store).lookup("fresh", LLM) == "c"  # no ttl there
    for bad in (0, -1, True, float("nan"), "1h"):
        with pytest.raises(ConfigError, match="ttl"):
            _exact(MemoryStore(10), ttl=bad)
    store.close()


# ---- 8d: per-namespace capacity shares --------------------------------------------------------
def _tenant_entry(ns: str, i: int, cost: float = 1.0) -> Entry:
    return Entry(value=f"{ns}-{i}", cost=cost, meta={"ns": ns})


def _stores(tmp_path: Path, name: str, capacity: float, policy: str, shares: dict | None) -> list:
    return [MemoryStore(capacity, policy, shares=shares),
            DiskStore(tmp_path / f"{name}-{policy}", capacity, policy, shares=shares)]


@pytest.mark.parametrize("policy", ["gdsf", "lec", "lru"])
def test_one_tenants_writes_cannot_evict_anothers_share(tmp_path: Path, policy: str) -> None:
    """The issue's case: tenant A's 40 popular entries, then tenant B writes 1,000 new ones."""
    figures = []
    for shares in (None, {"A": 0.5}):
        for store in _stores(tmp_path, f"s{bool(shares)}", 100, policy, shares):
            kept, b_kept = tenant_probe(store)
            figures.append((type(store).__name__, shares, kept, b_kept))
            if shares:
                assert kept == 40 and 0 < b_kept <= 60
            store.close()
    print(f"\n{policy}: (store, shares, A's popular kept of 40, B's entries kept) {figures}")


@pytest.mark.parametrize("policy", ["gdsf", "lec", "lfu", "lru", "fifo"])
def test_disk_and_memory_shares_make_the_same_decisions(tmp_path: Path, policy: str) -> None:
    import random

    shares = {"A": 0.3, "B": 0.5}
    mem, disk = _stores(tmp_path, "diff", 20, policy, shares)
    rng = random.Random(7)
    for step in range(1500):
        ns = rng.choice(["A", "B", "C", "A"])
        key = f"{ns}:{rng.randrange(40)}"
        r = rng.random()
        if r < 0.5:
            got = [s.get(key) for s in (mem, disk)]
            assert (got[0] is None) == (got[1] is None), (step, key)
        elif r < 0.95:
            e = Entry(value=key, cost=rng.choice([0.5, 1.0, 3.0]), size=rng.choice([1.0, 1.0, 2.0]),
                      meta={"ns": ns})
            a, b = mem.put(key, e), disk.put(key, e)
            assert (a.admitted, sorted(a.evicted)) == (b.admitted, sorted(b.evicted)), (step, key)
        else:
            assert mem.delete(key) == disk.delete(key)
    assert sorted(mem.keys()) == sorted(disk.keys())
    mem.check_invariants()
    disk.check_invariants()
    used = disk.stats()["share_used"]
    assert used["=A"] <= 6 and used["=B"] <= 10 and used["*"] <= 4
    disk.close()
    with pytest.raises(ConfigError, match="created with shares"):
        DiskStore(tmp_path / f"diff-{policy}", shares={"A": 0.5})
    reopened = DiskStore(tmp_path / f"diff-{policy}")  # shares=None: the stored ones
    assert reopened.shares == shares
    reopened.close()
    for bad in ({"A": 0}, {"A": 0.7, "B": 0.7}, {1: 0.5}, {"A": True}, {}):
        with pytest.raises(ConfigError, match="shares"):
            MemoryStore(10, shares=bad)
