"""Breaker probes against a hung Redis (real server, SIGSTOP/SIGCONT): a probe costs a short PING,
not a socket timeout, and writes probe, so none is dropped once the server answers again."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from redis_server import redis_server_factory  # noqa: F401 - fixture

from cachemux.errors import StoreError
from cachemux.stores import Entry
from cachemux.stores.breaker import CircuitBreaker, Unavailable

TIMEOUT = 0.5  # socket timeouts of the stores under test
PROBE = 0.1  # the default probe_timeout


def _store(url: str, **kw: Any) -> Any:
    from cachemux.stores import RedisStore

    return RedisStore(url, namespace="probes", capacity=100, socket_timeout=TIMEOUT,
                      socket_connect_timeout=TIMEOUT, **kw)


def test_urgent_operations_probe_whenever_no_probe_runs():
    b = CircuitBreaker(60.0, name="unit")
    b.after(False, TimeoutError("timed out"), 0.5)
    with pytest.raises(Unavailable):
        b.before()  # a read waits for reset_after
    assert b.before(urgent=True) is True  # a write probes at once
    with pytest.raises(Unavailable):
        b.before(urgent=True)  # one probe at a time
    b.after(True, TimeoutError("still hung"), 0.1)
    assert b.state == "open" and b.before(urgent=True) is True
    b.after(True, None, 0.001)
    assert b.state == "closed" and b.stats()["probes"] == 2


def test_probes_of_a_paused_server_cost_probe_timeout(redis_server_factory):  # noqa: F811
    server = redis_server_factory()
    store = _store(server.url, breaker_reset=0.3)
    for i in range(10):
        store.put(f"k{i}", Entry(value=f"v{i}", cost=1.0))
    took: list[float] = []
    server.pause()
    try:
        end = time.monotonic() + 2.0
        while time.monotonic() < end:  # a single-threaded app: lookup, then its own work
            t = time.monotonic()
            try:
                store.get(f"k{len(took) % 10}")
            except StoreError:
                pass
            took.append(time.monotonic() - t)
            time.sleep(0.01)
    finally:
        server.resume()
    probes = store.breaker.stats()["probes"]
    waited = sum(took[1:])  # after the first operation's socket timeout
    print(f"\npaused 2 s: {len(took)} lookups, first {took[0]:.3f} s, then {waited:.3f} s waiting "
          f"in {probes} probes (bound {probes} x {PROBE} s)")
    assert took[0] >= TIMEOUT * 0.8 and probes >= 2
    # each probe waits a PING of probe_timeout, not socket_timeout (0.5 s: 1 s+ for 2 probes)
    assert waited < probes * (PROBE + 0.05) + 0.2
    store.close()


def test_no_write_is_dropped_once_the_server_answers(redis_server_factory):  # noqa: F811
    server = redis_server_factory()
    store = _store(server.url)  # breaker_reset 1 s: reads would wait for the next probe
    other = redis.Redis.from_url(server.url, socket_timeout=0.05, socket_connect_timeout=0.05)
    for round_ in range(3):
        server.pause()
        try:
            with pytest.raises(Unavailable):
                store.get("k")  # one socket timeout: the breaker opens
            with pytest.raises(Unavailable):
                store.get("k")  # failing fast
        finally:
            server.resume()
        while True:  # the server answers again (a separate client's PING)
            try:
                if other.ping():
                    break
            except redis.RedisError:
                time.sleep(0.005)
        # well within reset_after (1 s) of the fault: the write probes and goes through
        assert store.put(f"after {round_}", Entry(value=f"fresh {round_}", cost=1.0)).admitted
        assert store.breaker.state == "closed" and store.get(f"after {round_}").value == f"fresh {round_}"
    store.check_invariants()
    other.close()
    store.close()
