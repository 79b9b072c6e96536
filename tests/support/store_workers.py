"""Worker processes for the store concurrency tests (importable by ``multiprocessing`` spawn)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from typing import Any

__all__ = ["burn", "busy_writer", "checksum", "init_worker", "make_entry", "open_store", "run_worker",
           "verify_value"]

_start: Any = None  # a multiprocessing Barrier: all workers begin their operations together


def init_worker(barrier: Any) -> None:
    global _start
    _start = barrier


def checksum(key: str, writer: int, n: int, cost: float, size: float) -> str:
    return hashlib.sha256(f"{key}|{writer}|{n}|{cost!r}|{size!r}".encode()).hexdigest()[:20]


def make_entry(key: str, writer: int, n: int, cost: float, size: float) -> Any:
    from cachemux.stores import Entry

    value = json.dumps({"key": key, "writer": writer, "n": n,
                        "check": checksum(key, writer, n, cost, size)})
    return Entry(value=value, cost=cost, size=size, prompt=f"prompt {key}", meta={"writer": writer})


def verify_value(key: str, entry: Any) -> tuple[int, int]:
    """Raise AssertionError unless ``entry`` is intact and was written for ``key``; return
    ``(writer, n)``."""
    d = json.loads(entry.value)
    assert d["key"] == key, f"entry for {key!r} holds a value written for {d['key']!r}"
    assert d["check"] == checksum(key, d["writer"], d["n"], entry.cost, entry.size), f"corrupt entry {key!r}"
    assert entry.meta == {"writer": d["writer"]} and entry.prompt == f"prompt {key}"
    return d["writer"], d["n"]


def open_store(kind: str, target: str, **kw: Any) -> Any:
    if kind == "disk":
        from cachemux.stores import DiskStore

        return DiskStore(target, **kw)
    from cachemux.stores import RedisStore

    return RedisStore(target, socket_timeout=10.0, socket_connect_timeout=5.0, **kw)


def run_worker(args: tuple[str, str, dict[str, Any], int, int, int]) -> dict[str, Any]:
    """``n_ops`` mixed get/put/delete on a shared store; tallies of what this process saw."""
    kind, target, open_kw, writer, n_ops, n_keys = args
    rng = random.Random(1000 + writer)
    store = open_store(kind, target, **open_kw)
    t = {"gets": 0, "hits": 0, "puts": 0, "admitted": 0, "rejected": 0, "evicted": 0,
         "deletes": 0, "deleted": 0, "bad": []}
    writes: list[tuple[str, int]] = []  # (key, n) of every admitted put
    if _start is not None:
        _start.wait(120)
    t["t0"] = time.time()
    try:
        for n in range(n_ops):
            key = f"key-{rng.randrange(n_keys)}"
            r = rng.random()
            if r < 0.5:
                t["gets"] += 1
                e = store.get(key)
                if e is not None:
                    t["hits"] += 1
                    try:
                        verify_value(key, e)
                    except (AssertionError, ValueError, KeyError) as exc:
                        t["bad"].append(f"get {key}: {exc}")
            elif r < 0.9:
                cost = rng.choice([0.25, 0.5, 1.0, 2.0, 4.0]) * (1 + writer)
                size = rng.choice([0.5, 1.0, 1.0, 2.0])
                t["puts"] += 1
                res = store.put(key, make_entry(key, writer, n, cost, size))
                t["evicted"] += len(res.evicted)
                if res.admitted:
                    t["admitted"] += 1
                    writes.append((key, n))
                else:
                    t["rejected"] += 1
            else:
                t["deletes"] += 1
                t["deleted"] += bool(store.delete(key))
        t["uncounted"] = store.stats().get("uncounted", 0)
    finally:
        t["t1"] = time.time()
        store.close()
    t["writes"] = writes
    t["writer"] = writer
    return t


def create_and_put(args: tuple[str, int]) -> int:
    """Open (and maybe create) a DiskStore in a new directory at the same moment as the others."""
    target, writer = args
    if _start is not None:
        _start.wait(120)
    store = open_store("disk", target, capacity=100, policy="gdsf")
    try:
        for n in range(20):
            key = f"w{writer}-{n}"
            assert store.put(key, make_entry(key, writer, n, 1.0, 1.0)).admitted
        return len(store)
    finally:
        store.close()


def burn(stop: Any) -> None:
    """Spin on the CPU until ``stop`` is set: load for the contention tests."""
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def busy_writer(args: tuple[str, int, int, int]) -> dict[str, int]:
    """``n_ops`` puts and gets (2:1) on a shared DiskStore at niceness ``nice``: what was
    acknowledged, dropped (StoreError) and served uncounted."""
    from cachemux.errors import StoreError
    from cachemux.stores import DiskStore, Entry

    target, writer, n_ops, nice = args
    os.nice(nice)
    store = DiskStore(target)
    t = {"puts": 0, "dropped": 0, "admitted": 0, "rejected": 0, "evicted": 0, "gets": 0, "hits": 0}
    if _start is not None:
        _start.wait(120)
    for n in range(n_ops):
        key = f"k{(writer * 7919 + n * 31) % 120}"
        if n % 3 == 2:
            t["gets"] += 1
            t["hits"] += store.get(key) is not None
            continue
        t["puts"] += 1
        try:
            res = store.put(key, make_entry(key, writer, n, 1.0 + n % 5, 1.0))
        except StoreError:
            t["dropped"] += 1
            continue
        t["admitted" if res.admitted else "rejected"] += 1
        t["evicted"] += len(res.evicted)
    t["uncounted"] = store.stats()["uncounted"]
    store.close()
    return t
