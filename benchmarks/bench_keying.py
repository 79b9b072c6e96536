"""Keying cost per KB: the exact key plus the embedded form of a prompt, for ordinary text and for
the shapes that break backtracking patterns (long blank runs with no newline after them, long runs
of closing marks followed by more text), as microseconds per KB and as a ratio to ordinary text of
the same size measured in the same round. Rounds interleave the shapes; figures are medians;
``os.getloadavg()`` is recorded.

    python benchmarks/bench_keying.py [--rounds 5] [--sizes 1024 16384 1048576]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from cachemux.semantic.embed_form import embed_form
from cachemux.semantic.keys import exact_key

SHAPES = {
    "ordinary": lambda n: ("The quick brown fox jumps over the lazy dog. " * (n // 45 + 1))[:n],
    "spaces, no newline": lambda n: "a" + " " * (n - 2) + "b",
    "tabs, no newline": lambda n: "a" + "\t" * (n - 2) + "b",
    "question marks, then text": lambda n: "?" * (n - 1) + "x",
    "full stops, then text": lambda n: "." * (n - 1) + "x",
    "blank lines of spaces": lambda n: (" " * 99 + "\n") * (n // 100),
}


def key_once(text: str) -> float:
    t0 = time.perf_counter()
    exact_key(text, "llm", "ns")
    embed_form(text)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 16384, 1048576])
    args = ap.parse_args()
    load0 = os.getloadavg()
    texts = {(s, n): f(n) for n in args.sizes for s, f in SHAPES.items()}
    times: dict[tuple[str, int], list[float]] = {k: [] for k in texts}
    for _ in range(args.rounds):
        for k, text in texts.items():  # interleaved: every shape in every round
            times[k].append(key_once(text))
    print(f"load average before {load0[0]:.2f}, after {os.getloadavg()[0]:.2f}; {args.rounds} rounds, medians")
    print(f"| size | shape | us per KB | / ordinary |\n|---|---|---|---|")
    for n in args.sizes:
        base = statistics.median(times["ordinary", n])
        for s in SHAPES:
            t = statistics.median(times[s, n])
            print(f"| {n:,} | {s} | {1e6 * t / (n / 1024):.2f} | {t / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
