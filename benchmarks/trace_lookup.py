"""What one request costs through ``CacheMuxCache``: the calls, functions and files of cachemux it
passes (traced with ``sys.setprofile``), and its latency (p50 of ``--n`` repeats).

Three requests on a warm MemoryStore-backed cache with the packaged embedder: an exact hit, a
semantic miss (lookup, then the update that follows it) and a semantic hit. Run it against two
checkouts to compare them (each in its own process: ``PYTHONPATH`` picks the package):

    python benchmarks/trace_lookup.py [--n 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from langchain_core.outputs import Generation  # noqa: E402

import cachemux  # noqa: E402
from cachemux import MemoryStore  # noqa: E402
from langchain_cachemux import CacheMuxCache  # noqa: E402

LLM = "trace-llm"
ROOT = os.path.dirname(os.path.abspath(cachemux.__file__))
ADAPTER = os.path.dirname(os.path.abspath(sys.modules["langchain_cachemux"].__file__))


def traced(fn) -> dict[str, int]:
    calls, funcs, files = 0, set(), set()

    def prof(frame, event, arg):
        nonlocal calls
        if event == "call":
            f = frame.f_code.co_filename
            if f.startswith(ROOT) or f.startswith(ADAPTER):
                calls += 1
                funcs.add((f, frame.f_code.co_name, frame.f_code.co_firstlineno))
                files.add(f)

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return {"calls": calls, "functions": len(funcs), "files": len(files)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    cache = CacheMuxCache(store=MemoryStore(capacity=100_000))
    answer = [Generation(text="Paris is the capital of France.")]
    cache.update("What is the capital of France?", LLM, answer)
    for i in range(200):  # a warm index
        cache.update(f"Unrelated question number {i} about topic {i * 7}?", LLM, answer)
    cache.lookup("warm the embedder", LLM)
    counter = iter(range(10**9))

    def miss() -> None:
        q = f"How many legs does an insect number {next(counter)} have?"
        cache.lookup(q, LLM)
        cache.update(q, LLM, answer)

    requests = {
        "exact hit": lambda: cache.lookup("What is the capital of France?", LLM),
        "semantic miss + update": miss,
        "semantic hit": lambda: cache.lookup("what's the capital city of France", LLM),
    }
    out: dict[str, dict[str, float]] = {}
    for name, fn in requests.items():
        fn()
        row: dict[str, float] = dict(traced(fn))
        times = []
        for _ in range(args.n):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        row["p50_us"] = 1e6 * statistics.median(times)
        out[name] = row
    print(f"load {os.getloadavg()[0]:.2f}; {args.n} repeats; package {ROOT}")
    print("| request | calls | functions | files | p50 us |\n|---|---|---|---|---|")
    for name, r in out.items():
        print(f"| {name} | {r['calls']} | {r['functions']} | {r['files']} | {r['p50_us']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
