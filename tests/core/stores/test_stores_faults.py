"""Redis faults with a real server: killed, hung (SIGSTOP), restarted with and without persistence."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cachemux.errors import StoreError
from cachemux.stores import Entry
from redis_server import redis_server_factory  # noqa: F401 - fixture

TIMEOUT = 0.5  # socket_timeout and socket_connect_timeout of the stores under test


def _store(url: str, policy: str = "lec", **kw: Any) -> Any:
    from cachemux.stores import RedisStore

    return RedisStore(url, namespace="faults", capacity=50, policy=policy,
                      socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, **kw)


def _fill(store: Any, n: int = 30) -> dict[str, str]:
    written = {}
    for i in range(n):
        key = f"k{i}"
        store.get(key)  # a miss first, as the cache layer does
        assert store.put(key, Entry(value=f"answer {i}", cost=1.0 + i % 5)).admitted
        written[key] = f"answer {i}"
    return written


def _every_op_fails_fast(store: Any, limit: float) -> list[float]:
    took = []
    for op in (lambda: store.get("k1"), lambda: store.put("new", Entry(value="x", cost=1.0)),
               lambda: store.delete("k2"), lambda: store.changes(0), lambda: len(store),
               lambda: store.peek("k1"), store.check_invariants):
        t = time.monotonic()
        with pytest.raises(StoreError, match="redis store 127.0.0.1"):
            op()
        took.append(time.monotonic() - t)
    assert max(took) < limit, f"an operation hung for {max(took):.2f}s (limit {limit}s)"
    return took


def test_killed_server_fails_fast_then_recovers_empty(redis_server_factory: Any) -> None:  # noqa: F811
    """No persistence (the tests' default server): after a kill -9 and a restart the namespace
    is gone; the store re-creates it empty instead of failing forever."""
    server = redis_server_factory()
    store = _store(server.url)
    _fill(store)
    server.kill()
    _every_op_fails_fast(store, limit=TIMEOUT + 1.0)  # connection refused: immediate
    server.start()
    assert store.get("k1") is None  # re-created empty (a cache, not a database)
    assert store.put("k1", Entry(value="again", cost=1.0)).admitted
    store.check_invariants()
    store.close()


def test_hung_server_times_out_then_data_intact(redis_server_factory: Any) -> None:  # noqa: F811
    server = redis_server_factory()
    store = _store(server.url)
    written = _fill(store)
    server.pause()  # accepts connections, never answers
    try:
        took = _every_op_fails_fast(store, limit=TIMEOUT * 2 + 1.0)
        assert took[0] >= TIMEOUT * 0.8  # the first really waited for the timeout, no retries
        assert max(took[3:]) < 0.05  # then the store's breaker fails fast, no round trip
        assert max(took[1:3]) < 0.1 + 0.1  # but put and delete probe: a PING of probe_timeout=0.1
    finally:
        server.resume()
    time.sleep(1.05)  # the breaker lets its next probe through after 1 s
    assert {k: store.peek(k).value for k in written} == written
    assert store.get("k3").value == "answer 3"
    store.check_invariants()
    store.close()


def test_killed_persistent_server_keeps_committed_data(redis_server_factory: Any) -> None:  # noqa: F811
    """With an fsync-always AOF, every acknowledged operation survives kill -9 and restart,
    and the eviction state is consistent (each op was one atomic script)."""
    server = redis_server_factory(persistent=True)
    store = _store(server.url, policy="gdsf")
    written = _fill(store, 80)  # capacity 50: 30 evictions
    kept = set(store.keys())
    before = store.stats()
    server.kill()
    _every_op_fails_fast(store, limit=TIMEOUT + 1.0)
    server.start()
    assert set(store.keys()) == kept and len(kept) == 50
    for key in kept:
        assert store.peek(key).value == written[key]
    after = store.stats()
    assert {k: after[k] for k in ("hits", "misses", "admissions", "evictions", "entries", "used")} == \
        {k: before[k] for k in ("hits", "misses", "admissions", "evictions", "entries", "used")}
    store.check_invariants()
    store.close()


def test_restart_while_idle_is_invisible(redis_server_factory: Any) -> None:  # noqa: F811
    """The pooled connection goes stale while idle; the next operation reconnects at once."""
    server = redis_server_factory(persistent=True)
    store = _store(server.url)
    written = _fill(store, 10)
    server.stop()  # graceful: the AOF is complete
    server.start()
    t = time.monotonic()
    assert store.get("k1").value == written["k1"]
    assert time.monotonic() - t < TIMEOUT
    store.check_invariants()
    store.close()


def test_disk_writer_killed_mid_run_leaves_a_consistent_store(tmp_path: Any) -> None:
    """kill -9 a process in the middle of its writes: every committed operation is there, the
    interrupted one is rolled back, and the store opens and passes its invariants."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    from cachemux.stores import DiskStore

    d = tmp_path / "s"
    DiskStore(d, 40, "lec").close()
    from store_workers import __file__ as workers_file

    SUPPORT = os.path.dirname(os.path.abspath(workers_file))
    code = textwrap.dedent(f"""
        import itertools, sys
        sys.path.insert(0, {SUPPORT!r})
        from cachemux.stores import DiskStore
        from store_workers import make_entry
        s = DiskStore({str(d)!r})
        for n in itertools.count():
            key = f"k{{n % 100}}"
            s.get(key)
            s.put(key, make_entry(key, 0, n, 1.0 + n % 3, 1.0))
            if n == 200:
                print("running", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "running"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()  # else an unclosed pipe warns (ResourceWarning) whenever it is collected
    from store_workers import verify_value

    with DiskStore(d, verify=True) as s:
        s.check_invariants()
        assert 0 < len(s) <= 40
        for key in s.keys():
            verify_value(key, s.peek(key))
        st = s.stats()
        assert st["admissions"] - st["evictions"] - st["replaced"] - st["deletes"] == len(s)
