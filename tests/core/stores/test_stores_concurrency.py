"""4 processes x 2,000 mixed get/put/delete on one DiskStore and on one RedisStore (spawn).

Checked: no lost or corrupt entry (every stored entry parses, was written for its key by the
process its value names, and every admission is either still there or has a logged removal),
capacity never exceeded (``check_invariants`` sampled from the parent during the run and at the
end), and the counts of all processes add up to the store's counters and to its change log.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cachemux.stores import CHANGES_RESET
from redis_server import RedisServer, redis_server  # noqa: F401 - fixture
from store_workers import burn, busy_writer, init_worker, open_store, run_worker, verify_value

PROCS, OPS, KEYS, CAPACITY = 4, 2000, 200, 64
BUSY_WRITERS, BUSY_OPS, BURNERS, BUSY_NICE = 8, 240, 4, 10


@pytest.mark.slow
@pytest.mark.parametrize("kind,policy", [("disk", "lec"), ("disk", "gdsf"), ("redis", "lec"),
                                         ("redis", "gdsf")])
def test_processes_share_one_store(request: pytest.FixtureRequest, tmp_path: Path, kind: str,
                                   policy: str) -> None:
    if kind == "disk":
        target, kw = str(tmp_path / "store"), {"capacity": CAPACITY, "policy": policy}
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        target = server.url
        kw = {"capacity": CAPACITY, "policy": policy, "namespace": f"conc-{policy}-{time.time_ns()}"}
    store = open_store(kind, target, **kw)
    cursor, first = store.changes(0)
    assert first == [(CHANGES_RESET, "")]

    t0 = time.perf_counter()
    samples = 0
    ctx = mp.get_context("spawn")
    with ctx.Pool(PROCS, initializer=init_worker, initargs=(ctx.Barrier(PROCS),)) as pool:
        pending = pool.map_async(run_worker, [(kind, target, kw, w, OPS, KEYS) for w in range(PROCS)])
        while not pending.ready():  # sample the invariants from the parent while they run
            store.check_invariants()
            st = store.stats()
            assert st["used"] <= CAPACITY and st["entries"] <= CAPACITY / 0.5
            samples += 1
            time.sleep(0.01)
        results = pending.get(timeout=300)
    elapsed = time.perf_counter() - t0

    store.check_invariants()
    st = store.stats()
    total = {k: sum(r[k] for r in results) for k in ("gets", "hits", "puts", "admitted",
                                                     "rejected", "evicted", "deletes", "deleted")}
    # the four processes really ran at the same time
    overlap = min(r["t1"] for r in results) - max(r["t0"] for r in results)
    assert overlap > 0, "the workers did not overlap"
    assert [b for r in results for b in r["bad"]] == []  # no worker ever read a corrupt entry
    assert total["gets"] + total["puts"] + total["deletes"] == PROCS * OPS
    assert sum(r["uncounted"] for r in results) == 0  # no lookup served uncounted: counts are exact
    # the processes' tallies are the store's counters
    assert (st["hits"], st["misses"]) == (total["hits"], total["gets"] - total["hits"])
    assert (st["admissions"], st["rejections"]) == (total["admitted"], total["rejected"])
    assert (st["evictions"], st["deletes"]) == (total["evicted"], total["deleted"])
    assert st["entries"] == st["admissions"] - st["evictions"] - st["deletes"] - st["replaced"]
    # the change log accounts for every admission and removal, and replays to the key set
    _, log = store.changes(cursor)
    ops = Counter(op for op, _ in log)
    assert ops["add"] == st["admissions"]
    assert ops["del"] == st["evictions"] + st["deletes"] + st["replaced"]
    live: set[str] = set()
    for op, key in log:
        (live.add if op == "add" else live.discard)(key)
    assert live == set(store.keys())
    # every stored entry is intact and is one its writer wrote (admitted) for that key
    writes = {(key, r["writer"], n) for r in results for key, n in r["writes"]}
    for key in store.keys():
        writer, n = verify_value(key, store.peek(key))
        assert (key, writer, n) in writes
    store.close()
    busy = max(r["t1"] for r in results) - min(r["t0"] for r in results)
    print(f"\n{kind}/{policy}: {PROCS}x{OPS} ops in {busy:.2f}s ({PROCS * OPS / busy:,.0f} ops/s; "
          f"{elapsed:.2f}s with spawn), all {PROCS} running together for {overlap:.2f}s, "
          f"{samples} invariant samples, hits={st['hits']} admissions={st['admissions']} "
          f"rejections={st['rejections']} evictions={st['evictions']} deletes={st['deletes']} "
          f"replaced={st['replaced']} entries={st['entries']} used={st['used']:g}/{CAPACITY}")


@pytest.mark.slow
def test_busy_writers_lose_no_update_and_no_count(tmp_path: Path) -> None:
    """8 processes x 240 puts and gets on one DiskStore while 4 processes spin on the CPU (12
    runnable on a 2-core machine) and the writers run at nice 10, as an app below other work on
    a loaded host: a writer holding the lock is often descheduled for longer than
    lookup_timeout/update_timeout without any commit. It is running, not frozen, so it is
    waited for: every update is acknowledged and every lookup counted, and the store's counters
    equal what the writers issued, exactly."""
    target = str(tmp_path / "busy")
    open_store("disk", target, capacity=40, policy="gdsf").close()
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    burners = [ctx.Process(target=burn, args=(stop,), daemon=True) for _ in range(BURNERS)]
    for p in burners:
        p.start()
    t0 = time.perf_counter()
    try:
        with ctx.Pool(BUSY_WRITERS, initializer=init_worker, initargs=(ctx.Barrier(BUSY_WRITERS),)) as pool:
            results = pool.map(busy_writer, [(target, w, BUSY_OPS, BUSY_NICE) for w in range(BUSY_WRITERS)],
                               chunksize=1)
        load = os.getloadavg()
    finally:
        stop.set()
        for p in burners:
            p.join(10)
            if p.is_alive():
                p.kill()
    tot = {k: sum(r[k] for r in results) for k in results[0]}
    store = open_store("disk", target)
    st = store.stats()
    print(f"\nbusy writers: {BUSY_WRITERS}x{BUSY_OPS} ops with {BURNERS} burners in "
          f"{time.perf_counter() - t0:.1f}s, load average {load[0]:.1f}: {tot}")
    assert tot["puts"] + tot["gets"] == BUSY_WRITERS * BUSY_OPS
    assert (tot["dropped"], tot["uncounted"]) == (0, 0)  # no update lost, no lookup left uncounted
    assert (st["admissions"], st["rejections"]) == (tot["admitted"], tot["rejected"]) and st["rejections"] == 0
    assert st["evictions"] == tot["evicted"] and st["entries"] == st["admissions"] - st["evictions"] - st["replaced"]
    assert (st["hits"], st["misses"]) == (tot["hits"], tot["gets"] - tot["hits"])
    store.check_invariants()
    store.close()


SLOW_HOLDER = """
import sys, time
from cachemux.stores import DiskStore
s = DiskStore(sys.argv[1])
with s._txn() as sql:  # holds the write lock, running (sleeping), and commits nothing meanwhile
    sql("UPDATE cachemux_state SET hits = hits WHERE id = 1")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.mark.parametrize("hold,busy_timeout,waited", [(1.0, None, True), (3.0, 0.5, False)],
                         ids=["waited-for", "past-busy_timeout"])
def test_running_holder_without_commits_is_waited_for_up_to_busy_timeout(
        tmp_path: Path, hold: float, busy_timeout: float | None, waited: bool) -> None:
    """A process in a long transaction (here: sleeping in it, no commit for 1 s, five times
    update_timeout) is busy, not frozen: put and get wait for it, and the get is counted. One
    that commits nothing for longer than ``busy_timeout`` is given up on, as a stopped one is."""
    import subprocess
    import sys

    from cachemux.errors import StoreError
    from cachemux.stores import DiskStore, Entry

    d = tmp_path / "slow"
    store = DiskStore(d, capacity=10, **({} if busy_timeout is None else {"busy_timeout": busy_timeout}))
    store.put("a", Entry(value="x", cost=1.0))
    child = subprocess.Popen([sys.executable, "-c", SLOW_HOLDER, str(d), str(hold)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        if waited:
            assert store.put("b", Entry(value="y", cost=1.0)).admitted
            assert store.get("a").value == "x"
            assert (store.stats()["hits"], store.stats()["uncounted"]) == (1, 0)
        else:
            with pytest.raises(StoreError, match="without any commit"):
                store.put("b", Entry(value="y", cost=1.0))
    finally:
        child.kill()
        child.wait(10)
        child.stdout.close()
    store.close()


@pytest.mark.parametrize("kind", ["disk", "redis"])
def test_threads_share_one_store_object(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    """One store object used by 4 threads at once (each thread its own connection)."""
    import threading

    from store_workers import make_entry

    if kind == "disk":
        store = open_store("disk", str(tmp_path / "t"), capacity=16, policy="lec")
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        store = open_store("redis", server.url, capacity=16, policy="lec", namespace=f"thr-{time.time_ns()}")
    errors: list[BaseException] = []

    def work(w: int) -> None:
        import random

        rng = random.Random(w)
        try:
            for n in range(300):
                key = f"k{rng.randrange(40)}"
                if rng.random() < 0.5:
                    e = store.get(key)
                    if e is not None:
                        verify_value(key, e)
                else:
                    store.put(key, make_entry(key, w, n, rng.choice([1.0, 2.0]), 1.0))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    store.check_invariants()
    st = store.stats()
    assert st["hits"] + st["misses"] + st["admissions"] + st["rejections"] == 1200
    store.close()


def test_processes_create_one_disk_store_together(tmp_path: Path) -> None:
    """Four processes open the same new directory at once: one store, nobody sees it as foreign."""
    from store_workers import create_and_put

    target = str(tmp_path / "new")
    ctx = mp.get_context("spawn")
    with ctx.Pool(PROCS, initializer=init_worker, initargs=(ctx.Barrier(PROCS),)) as pool:
        pool.map(create_and_put, [(target, w) for w in range(PROCS)], chunksize=1)
    store = open_store("disk", target)
    assert len(store) == 20 * PROCS
    store.check_invariants()
    for key in store.keys():
        verify_value(key, store.peek(key))
    store.close()
