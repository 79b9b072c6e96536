"""What DiskStore's presence check (issue 11, case 7: one stat of cache.db per transaction)
costs: interleaved rounds of get+put on one store with the check on and off (``_identity=None``
disables it), medians and the ratio, with the load average.

    PYTHONPATH=.pkgs:. python3 benchmarks/bench_store_checks.py [--rounds 7 --ops 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from cachemux.stores import DiskStore, Entry


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--ops", type=int, default=2000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = DiskStore(f"{tmp}/s", capacity=500, policy="gdsf")
        identity = store._identity
        entry = Entry(value="an answer " * 20, cost=1.0)
        times: dict[str, list[float]] = {"check": [], "no check": []}
        load = [round(x, 2) for x in os.getloadavg()]
        for r in range(a.rounds):
            for mode in (("check", "no check") if r % 2 else ("no check", "check")):
                store._identity = identity if mode == "check" else None
                t = time.perf_counter()
                for i in range(a.ops):
                    key = f"k{i % 1000}"
                    if store.get(key) is None:
                        store.put(key, entry)
                times[mode].append((time.perf_counter() - t) / a.ops * 1e6)
        store._identity = identity
        store.close()
    med = {m: statistics.median(v) for m, v in times.items()}
    print(f"loadavg {load} -> {[round(x, 2) for x in os.getloadavg()]}")
    for m, v in med.items():
        print(f"{m:>9}: {v:8.1f} us per get(+put on a miss), median of {a.rounds}")
    print(f"ratio check / no check: {med['check'] / med['no check']:.3f}")


if __name__ == "__main__":
    main()
