"""Issue 11's "held" list, re-run at the issue's scale (one run, a few minutes; not a default test).

1. 8 processes on one DiskStore and on one RedisStore with constant eviction (400 keys, capacity
   64): every value read or left is intact and written for its key, capacity never exceeded
   (``check_invariants`` sampled from the parent while they run), the processes' tallies equal
   the store's counters and its change log.
2. 40 SIGKILLs of disk writers (10 rounds x 4 writers, killed at a random moment): every
   acknowledged entry (``put`` returned admitted) is there and intact.
3. Redis SIGKILL with AOF ``appendfsync everysec``: every acknowledged entry survives the kill
   and restart; the time from the restarted server answering PING to the store's first
   successful operation.
   ("short": part 1's disk mix with the default short lock waits, operations that give up on
   the lock counted as dropped: what 8 processes on 2 busy cores lose to them.)
4. Planted payloads (a jinja2 template, a class path constructor, a pickle, a depth bomb) written
   straight into the store under a real key: LangChain's lookup is a miss, nothing runs.
5. Cross-tenant lookups: 4 namespaces x 3 model configurations x 48 prompts (real MiniLM):
   every lookup from another tenant or configuration, exact or paraphrased, misses.

    PYTHONPATH=.pkgs:. HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python3 benchmarks/held_faults.py [--ops 20000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

SUPPORT = str(Path(__file__).resolve().parents[1] / "tests" / "support")
sys.path.insert(0, SUPPORT)

from store_workers import init_worker, make_entry, open_store, run_worker, verify_value  # noqa: E402

from cachemux.stores import CHANGES_RESET, DiskStore  # noqa: E402


def _redis_server(workdir: Path, appendfsync: str | None = None) -> Any:
    """A Redis on a free port; ``appendfsync`` ("always" / "everysec"): with an append-only file."""
    import redis_server

    class Server(redis_server.RedisServer):
        def args(self) -> list[str]:
            a = super().args()
            if appendfsync == "everysec":
                a[a.index("always")] = "everysec"
            return a

    return Server(workdir, persistent=appendfsync is not None).start()


# ---- 1 -----------------------------------------------------------------------------------------
def shared_store(kind: str, target: str, procs: int, ops: int, keys: int = 400, capacity: int = 64,
                 long_waits: bool = True) -> dict:
    kw: dict[str, Any] = {"capacity": capacity, "policy": "lec"}
    if kind == "disk" and long_waits:
        # the issue measured these with the 60 s lock waits: with 8 processes on 2 busy cores the
        # short default waits (and the breaker they open) drop operations; see --short-waits
        kw.update(lookup_timeout=60.0, update_timeout=60.0, breaker=False)
    if kind == "redis":
        kw["namespace"] = f"held-{time.time_ns()}"
    store = open_store(kind, target, **kw)
    cursor, first = store.changes(0)
    assert first == [(CHANGES_RESET, "")]
    ctx = mp.get_context("spawn")
    samples = over = 0
    with ctx.Pool(procs, initializer=init_worker, initargs=(ctx.Barrier(procs),)) as pool:
        pending = pool.map_async(run_worker, [(kind, target, kw, w, ops, keys) for w in range(procs)])
        while not pending.ready():
            store.check_invariants()
            over += store.stats()["used"] > capacity
            samples += 1
            time.sleep(0.05)
        results = pending.get(timeout=3600)
    store.check_invariants()
    st = store.stats()
    total = {k: sum(r[k] for r in results) for k in ("gets", "hits", "puts", "admitted", "rejected",
                                                     "evicted", "deletes", "deleted")}
    bad = [b for r in results for b in r["bad"]]
    counters_agree = ((st["hits"], st["misses"], st["admissions"], st["rejections"], st["evictions"],
                       st["deletes"]) == (total["hits"], total["gets"] - total["hits"], total["admitted"],
                                          total["rejected"], total["evicted"], total["deleted"]))
    _, log = store.changes(cursor)
    ops_log = Counter(op for op, _ in log)
    live: set[str] = set()
    for op, key in log:
        (live.add if op == "add" else live.discard)(key)
    writes = {(key, r["writer"], n) for r in results for key, n in r["writes"]}
    wrong = 0
    for key in store.keys():
        try:
            w, n = verify_value(key, store.peek(key))
            wrong += (key, w, n) not in writes
        except AssertionError:
            wrong += 1
    busy = max(r["t1"] for r in results) - min(r["t0"] for r in results)
    overlap = min(r["t1"] for r in results) - max(r["t0"] for r in results)
    store.close()
    return {"ops": total["gets"] + total["puts"] + total["deletes"], "seconds": round(busy, 1),
            "overlap_s": round(overlap, 1), "wrong_or_torn": len(bad) + wrong, "evictions": st["evictions"],
            "capacity_exceeded_samples": over, "invariant_samples": samples,
            "counters_agree": counters_agree,
            "log_agrees": ops_log["add"] == st["admissions"] and live == set(store_keys(kind, target, kw))}


def store_keys(kind: str, target: str, kw: dict) -> list[str]:
    s = open_store(kind, target, **kw)
    try:
        return list(s.keys())
    finally:
        s.close()


def tolerant_worker(args: tuple) -> dict[str, Any]:
    """``run_worker``'s mix with the store's default (short) lock waits: an operation that gives
    up on the lock is counted as dropped, not fatal; every value read is still verified."""
    from cachemux.errors import StoreError

    kind, target, open_kw, writer, n_ops, n_keys = args
    rng = random.Random(1000 + writer)
    store = open_store(kind, target, **open_kw)
    t = {"ops": 0, "dropped": 0, "bad": 0, "t0": time.time()}
    try:
        for n in range(n_ops):
            key = f"key-{rng.randrange(n_keys)}"
            r = rng.random()
            t["ops"] += 1
            try:
                if r < 0.5:
                    e = store.get(key)
                    if e is not None:
                        try:
                            verify_value(key, e)
                        except (AssertionError, ValueError, KeyError):
                            t["bad"] += 1
                elif r < 0.9:
                    store.put(key, make_entry(key, writer, n, rng.choice([0.5, 1.0, 2.0]) * (1 + writer),
                                              rng.choice([0.5, 1.0, 2.0])))
                else:
                    store.delete(key)
            except StoreError:
                t["dropped"] += 1
    finally:
        t["t1"] = time.time()
        store.close()
    return t


def short_waits(target: str, procs: int, ops: int, keys: int = 400, capacity: int = 64) -> dict:
    kw = {"capacity": capacity, "policy": "lec"}
    store = open_store("disk", target, **kw)
    ctx = mp.get_context("spawn")
    with ctx.Pool(procs) as pool:
        results = pool.map(tolerant_worker, [("disk", target, kw, w, ops, keys) for w in range(procs)])
    store.check_invariants()
    wrong = 0
    for key in store.keys():
        try:
            verify_value(key, store.peek(key))
        except AssertionError:
            wrong += 1
    st = store.stats()
    store.close()
    total = sum(r["ops"] for r in results)
    dropped = sum(r["dropped"] for r in results)
    busy = max(r["t1"] for r in results) - min(r["t0"] for r in results)
    return {"ops": total, "seconds": round(busy, 1), "dropped": dropped,
            "dropped_share": round(dropped / total, 4), "wrong_or_torn": wrong + sum(r["bad"] for r in results),
            "within_capacity": st["used"] <= capacity}


# ---- 2 -----------------------------------------------------------------------------------------
_WRITER = textwrap.dedent("""
    import itertools, sys
    sys.path.insert(0, {support!r})
    from cachemux.stores import DiskStore
    from store_workers import make_entry
    s = DiskStore({d!r})
    print("ready", flush=True)
    for n in itertools.count():
        key = "r{r}-w{w}-" + str(n)
        if s.put(key, make_entry(key, {w}, n, 1.0 + n % 3, 1.0)).admitted:
            print(key, flush=True)
""")


def disk_sigkills(root: Path, rounds: int = 10, writers: int = 4, seed: int = 11) -> dict:
    rng = random.Random(seed)
    d = root / "killed"
    DiskStore(d, capacity=10**7, policy="lru").close()
    acked: list[str] = []
    kills = 0
    for r in range(rounds):
        procs = [subprocess.Popen([sys.executable, "-c", _WRITER.format(support=SUPPORT, d=str(d), r=r, w=w)],
                                  stdout=subprocess.PIPE, text=True) for w in range(writers)]
        lines: list[list[str]] = [[] for _ in procs]

        def read(i: int, p: subprocess.Popen) -> None:
            for line in p.stdout:  # type: ignore[union-attr]
                lines[i].append(line.strip())

        threads = [threading.Thread(target=read, args=(i, p)) for i, p in enumerate(procs)]
        for t in threads:
            t.start()
        while not all(ls and ls[0] == "ready" for ls in lines):
            time.sleep(0.01)
        time.sleep(rng.uniform(0.3, 1.2))
        for p in procs:
            p.send_signal(signal.SIGKILL)
            kills += 1
        for p, t in zip(procs, threads):
            p.wait(10)
            t.join(10)
            p.stdout.close()  # type: ignore[union-attr]
        acked += [k for ls in lines for k in ls[1:] if k]
    lost = torn = 0
    with DiskStore(d, verify=True) as s:
        s.check_invariants()
        for key in acked:
            e = s.peek(key)
            if e is None:
                lost += 1
                continue
            try:
                verify_value(key, e)
            except AssertionError:
                torn += 1
    return {"sigkills": kills, "acknowledged": len(acked), "lost": lost, "torn": torn}


# ---- 3 -----------------------------------------------------------------------------------------
def redis_sigkill(root: Path, rounds: int = 3, appendfsync: str = "everysec") -> dict:
    from cachemux.stores import RedisStore

    server = _redis_server(root / "aof", appendfsync)
    store = RedisStore(server.url, namespace="held-aof", capacity=10**7, policy="lru",
                       socket_timeout=0.5, socket_connect_timeout=0.5)
    acked: list[str] = []
    recovered: list[float] = []
    delayed: list[int] = []  # Redis's aof_delayed_fsync just before each kill: AOF writes it postponed
    lost_per_round: list[int] = []
    try:
        for r in range(rounds):
            first = len(acked)
            stop = threading.Event()

            def write() -> None:
                n = 0
                while not stop.is_set():
                    key = f"a{r}-{n}"
                    try:
                        if store.put(key, make_entry(key, r, n, 1.0, 1.0)).admitted:
                            acked.append(key)
                    except Exception:
                        return  # the server is gone: the unacknowledged put is not counted
                    n += 1

            t = threading.Thread(target=write)
            t.start()
            time.sleep(1.5)
            delayed.append(_aof_delayed_fsync(server.url))
            server.kill()
            stop.set()
            t.join(10)
            server.start()
            t0 = time.monotonic()
            while True:
                try:
                    store.get(acked[-1])
                    break
                except Exception:
                    time.sleep(0.001)
            recovered.append(round((time.monotonic() - t0) * 1e3, 1))
            lost_per_round.append(sum(store.peek(k) is None for k in acked[first:]))
        lost = sum(store.peek(k) is None for k in acked)
        store.check_invariants()
    finally:
        store.close()
        server.stop()
    return {"appendfsync": appendfsync, "acknowledged": len(acked), "lost": lost, "lost_per_round": lost_per_round,
            "aof_delayed_fsync_before_kill": delayed, "recovered_ms": recovered}


def _aof_delayed_fsync(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=0.5)
    try:
        return int(client.info("persistence").get("aof_delayed_fsync", -1))
    except Exception:
        return -1
    finally:
        client.close()


# ---- 4 -----------------------------------------------------------------------------------------
def planted(root: Path) -> dict:
    from langchain_core.outputs import Generation

    from cachemux.stores import Entry
    from langchain_cachemux import CacheMuxCache

    marker = root / "pwned"
    payloads = {
        "jinja2": json.dumps([{"lc": 1, "type": "constructor", "id": ["langchain", "prompts", "prompt",
                               "PromptTemplate"], "kwargs": {"template": "{{ cycler.__init__.__globals__"
                               ".os.system('touch " + str(marker) + "') }}", "input_variables": [],
                                                              "template_format": "jinja2"}}]),
        "class_path": json.dumps({"lc": 1, "type": "constructor", "id": ["os", "system"],
                                  "kwargs": {"command": f"touch {marker}"}}),
        "pickle": "gASVIAAAAAAAAACMBXBvc2l4lIwGc3lzdGVtlJOUjAV0b3VjaJSFlFKULg==",
        "depth_bomb": "[" * 100_000 + "]" * 100_000,
    }
    cache = CacheMuxCache(store=DiskStore(root / "planted", capacity=100), semantic=False)
    served = 0
    for name, value in payloads.items():
        prompt = f"planted {name}"
        cache.update(prompt, "llm", [Generation(text="real")])
        key = cache.cache.key_for(prompt, "llm")
        cache.cache.store.put(key, Entry(value=value, cost=1.0))
        served += cache.lookup(prompt, "llm") is not None
    cache.cache.close()
    return {"payloads": len(payloads), "served": served, "code_ran": marker.exists()}


# ---- 5 -----------------------------------------------------------------------------------------
def tenants(root: Path) -> dict:
    from cachemux.cache import SemanticCache
    from cachemux.semantic import Embedder

    embedder = Embedder()
    store = DiskStore(root / "tenants", capacity=10_000)
    spaces = [f"tenant-{i}" for i in range(4)]
    llms = ["gpt-a temperature=0", "gpt-a temperature=1", "gpt-b temperature=0"]
    topics = ["the capital of France", "how to boil an egg", "the speed of light", "who wrote Hamlet",
              "the boiling point of water", "how tall Everest is", "what DNA stands for", "the largest ocean"]
    # pairs of near-identical forms: the cached one and a paraphrase its own tenant matches by meaning
    # (the default threshold is 0.99: a space before the punctuation keeps the word pieces, so the
    # paraphrase matches its own tenant's entry at cosine ~1 and must still miss for every other)
    forms = ["What is {}?", "What is {} ?", "Tell me {}.", "Tell me {} .", "Explain {}.", "Explain {} ."]
    prompts = [f.format(t) for t in topics for f in forms]  # 48
    caches = {ns: SemanticCache(store, embedder=embedder, namespace=ns) for ns in spaces}
    ns0, llm0 = spaces[0], llms[0]
    for p in prompts[::2]:  # one tenant and one configuration cache half the prompts
        caches[ns0].update(p, llm0, f"{ns0}|{llm0}|{p}", cost=1.0)
    lookups = leaks = own_hits = 0
    for ns in spaces:
        for llm in llms:
            for p in prompts:
                got = caches[ns].lookup(p, llm)
                if (ns, llm) == (ns0, llm0):
                    own_hits += got is not None
                    continue
                lookups += 1
                leaks += got is not None
    store.close()
    return {"cross_lookups": lookups, "leaks": leaks, "own_hits": f"{own_hits}/{len(prompts)}",
            "own_semantic_hits": caches[ns0].stats()["semantic_hits"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=20_000, help="operations per process in part 1")
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--appendfsync", choices=("everysec", "always"), default="everysec",
                    help="the Redis SIGKILL part's AOF fsync policy")
    ap.add_argument("--only", default="", help="comma-separated parts: disk8,redis8,short,kill,aof,planted,tenants")
    a = ap.parse_args()
    only = set(filter(None, a.only.split(",")))
    out: dict[str, Any] = {"loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        parts = {
            "disk8": lambda: shared_store("disk", str(root / "shared"), a.procs, a.ops),
            "redis8": lambda: _with_redis(root, lambda url: shared_store("redis", url, a.procs, a.ops)),
            "short": lambda: short_waits(str(root / "short"), a.procs, a.ops),
            "kill": lambda: disk_sigkills(root),
            "aof": lambda: redis_sigkill(root, appendfsync=a.appendfsync),
            "planted": lambda: planted(root),
            "tenants": lambda: tenants(root),
        }
        for name, fn in parts.items():
            if only and name not in only:
                continue
            t = time.monotonic()
            out[name] = fn()
            out[name]["wall_s"] = round(time.monotonic() - t, 1)
            out[name]["loadavg"] = [round(x, 2) for x in os.getloadavg()]
            print(name, json.dumps(out[name]), flush=True)
    print(json.dumps(out, indent=1))


def _with_redis(root: Path, fn: Any) -> dict:
    server = _redis_server(root / "redis8")
    try:
        return fn(server.url)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
