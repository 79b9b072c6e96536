"""``cachemux reproduce``: run the paper's suites, print them beside the paper, write JSON and PNGs."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from cachemux import paths

__all__ = ["add_arguments", "run"]

DEFAULT_SEEDS = {"synthetic": 20, "routing": 10}  # routing cache-sweep/full-set: first 3
UNITS = {"synthetic": "cost units/1000", "routing": "$ (milli-dollars/1000)"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", choices=("all", "synthetic", "routing"), default="all",
                   help="which suite to run (default: all)")
    p.add_argument("--seeds", type=int, default=None,
                   help=f"paired seeds 0..N-1 per suite (default: {DEFAULT_SEEDS})")
    p.add_argument("--out", type=Path, default=paths.results_dir(), help="output folder (default: results)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no tables")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cachemux.errors import ConfigError
    from cachemux.sim import plots
    from cachemux.sim.regret import regret_curves
    from cachemux.sim.report import format_tables, paper_real_context
    from cachemux.sim.suites import aggregate, cells_for, run_cells

    if args.seeds is not None and args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    suites = ("synthetic", "routing") if args.suite == "all" else (args.suite,)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    plan = {s: (cells_for(s), range(args.seeds or DEFAULT_SEEDS[s])) for s in suites}
    total = sum(min(len(seeds), c.max_seeds or len(seeds)) for cells, seeds in plan.values() for c in cells)
    rows_by_suite = {}
    with tqdm(total=total, desc="cachemux reproduce", unit="run", disable=args.quiet,
              file=sys.stderr) as bar:
        for suite, (cells, seeds) in plan.items():
            bar.set_postfix_str(suite)
            rows, summaries = aggregate(run_cells(cells, seeds, args.jobs, bar.update))
            rows_by_suite[suite] = rows
            (out / f"{suite}.json").write_text(json.dumps(rows, indent=1))
            (out / f"{suite}_summary.json").write_text(json.dumps(summaries, indent=1))
            if not args.quiet:
                tqdm.write(format_tables(suite, rows, summaries, UNITS[suite]), file=sys.stdout)
                if suite == "routing":
                    tqdm.write(paper_real_context(), file=sys.stdout)
    written = [str(out / f"{s}.json") for s in suites]
    if not args.no_plots:
        if "synthetic" in suites:
            curves = regret_curves(range(min(args.seeds or 10, 10)))
            (out / "regret.json").write_text(json.dumps(
                {k: [float(v[i]) for i in (99, 999, 4999, len(v) - 1)] for k, v in curves.items()}))
            written.append(str(plots.plot_regret(curves, out / "regret.png",
                                                 "online, synthetic alpha=0.8, cost ratio 100, cache 8")))
        if "routing" in suites:
            written.append(str(plots.plot_cost_vs_cache(rows_by_suite["routing"], out / "cost_vs_cache_size.png",
                                                        "$")))
        if len(suites) == 2:
            written.append(str(plots.plot_cost_vs_alpha(rows_by_suite["synthetic"], rows_by_suite["routing"],
                                                        out / "cost_vs_alpha.png")))
    elapsed = time.perf_counter() - t0
    meta = {"suites": list(suites), "seeds": {s: len(plan[s][1]) for s in suites},
            "seeds_large_settings": 3, "elapsed_s": elapsed,
            "cpus": os.cpu_count(), "python": platform.python_version()}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    if not args.quiet:
        print(f"\nwrote {', '.join(written)} in {elapsed:.0f} s")
    return 0
