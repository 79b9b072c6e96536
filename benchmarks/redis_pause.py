"""A hung Redis (SIGSTOP) under a single-threaded app: what the pause costs, and what is lost after it.

A real ``redis-server`` on a free port; an exact-only ``SemanticCache`` over a ``RedisStore``
(default timeouts: ``socket_timeout`` 1 s, breaker probing every 1 s). Then:

1. pause: the server is stopped for ``--pause`` seconds while the app loops lookup, then
   ``--work`` seconds of its own work. Reported: lookups completed, seconds spent inside lookups
   (waiting on the store), the slowest lookup, the breaker's probes.
2. resume: SIGCONT, then the app loops: PING on a separate client (does the server answer?),
   ``update`` of a new prompt, ``--work`` of work. Reported: updates dropped although the server
   already answered that PING, and the window from its first answer to the last such drop.

Runs with whichever cachemux is importable (``probe_timeout`` is passed only if the store has it):

    PYTHONPATH=/path/to/checkout-shim python3 benchmarks/redis_pause.py [--pause 5] [--work 0.03]
"""

from __future__ import annotations

import argparse
import inspect
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

import redis  # noqa: E402
from redis_server import RedisServer  # noqa: E402

import cachemux  # noqa: E402
from cachemux.cache import SemanticCache  # noqa: E402
from cachemux.stores import RedisStore  # noqa: E402

LLM = "fake-llm temperature=0"


def run(url: str, server: RedisServer, pause: float, work: float, probe_timeout: float) -> dict:
    kw = {"probe_timeout": probe_timeout} if "probe_timeout" in inspect.signature(RedisStore).parameters else {}
    cache = SemanticCache(RedisStore(url, namespace=f"pause{time.monotonic_ns()}", **kw), semantic=False)
    for i in range(20):
        cache.update(f"question {i}", LLM, f"answer {i}", cost=1.0)
    pinger = redis.Redis.from_url(url, socket_timeout=0.05, socket_connect_timeout=0.05)
    out: dict = {"probe_timeout": kw.get("probe_timeout")}
    server.pause()
    try:
        took = []
        end = time.monotonic() + pause
        while time.monotonic() < end:
            t = time.monotonic()
            cache.lookup(f"question {len(took) % 20}", LLM)
            took.append(time.monotonic() - t)
            time.sleep(work)
        out.update(lookups=len(took), waiting=sum(took), slowest=max(took),
                   probes=cache.store.breaker.stats()["probes"])
    finally:
        server.resume()
    answered_at = None
    rows = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5:
        try:
            answers = bool(pinger.ping())
        except redis.RedisError:
            answers = False
        if answers and answered_at is None:
            answered_at = time.monotonic()
        ok = cache.update(f"after resume {len(rows)}", LLM, "fresh", cost=1.0)
        rows.append((time.monotonic(), answers, ok))
        time.sleep(work)
    dropped = [t for t, answers, ok in rows if answers and not ok]
    out.update(updates=sum(1 for _, a, _ in rows if a), dropped=len(dropped),
               window=(max(dropped) - answered_at) if dropped else 0.0)
    pinger.close()
    cache.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pause", type=float, default=5.0, help="seconds the server stays stopped")
    ap.add_argument("--work", type=float, default=0.03, help="seconds of app work between calls")
    ap.add_argument("--probe-timeout", type=float, default=0.1)
    ap.add_argument("--runs", type=int, default=1)
    a = ap.parse_args()
    print(f"cachemux from {Path(cachemux.__file__).parent}")
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            print(f"{'run':>3} {'probe_timeout':>13} {'lookups':>7} {'waiting s':>9} {'slowest s':>9} "
                  f"{'probes':>6} | {'updates':>7} {'dropped':>7} {'window s':>8}")
            for i in range(a.runs):
                r = run(server.url, server, a.pause, a.work, a.probe_timeout)
                pt = "-" if r["probe_timeout"] is None else f"{r['probe_timeout']:g}"
                print(f"{i:>3} {pt:>13} {r['lookups']:>7} {r['waiting']:>9.3f} {r['slowest']:>9.3f} "
                      f"{r['probes']:>6} | {r['updates']:>7} {r['dropped']:>7} {r['window']:>8.3f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
