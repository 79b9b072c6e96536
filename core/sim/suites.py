"""The paper's experiment grids, run on paired seeds (every method sees the same trace per seed)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from cachemux.errors import UnknownNameError
from cachemux.sim.paper import paper_synthetic
from cachemux.sim.routing import PRICES_PER_MTOK, load_mmlu, routing_workload
from cachemux.sim.runner import Method, run
from cachemux.sim.stats import mean_ci95, paired_ratios
from cachemux.sim.synthetic import synthetic_workload
from cachemux.sim.workload import Workload

__all__ = ["CACHES", "Cell", "SUITES", "aggregate", "cells_for", "run_cells"]

CACHES = ("lfu", "lec", "gdsf", "lru")
SELECTORS = ("large", "cascade", "selector")
BASELINE, OURS = ("lfu", "large"), ("lec", "selector")


@dataclass(frozen=True)
class Cell:
    """One workload setting; every cache x selector method runs on it for every seed."""

    suite: str  # "synthetic" | "routing"
    setting: str  # "paper" | "cache-sweep" | "full-set"
    scenario: str
    alpha: float
    cost_ratio: float
    selector_accuracy: float
    cache_size: int
    num_queries: int | None
    num_requests: int
    max_seeds: int | None = None  # the large settings run on the first few seeds only (time budget)

    def workload(self, seed: int) -> Workload:
        if self.suite == "synthetic":
            return synthetic_workload(seed, alpha=self.alpha, cost_ratio=self.cost_ratio,
                                      num_queries=self.num_queries or 20, num_requests=self.num_requests)
        return routing_workload(_mmlu(), seed, alpha=self.alpha, num_queries=self.num_queries,
                                num_requests=self.num_requests, balanced=self.num_queries is not None)

    def selector_label(self, selector: str) -> str:
        # without a quality signal the cheap option is small-only: the paper's "model 2"
        return "small" if self.suite == "synthetic" and selector == "cascade" else selector


@functools.lru_cache(maxsize=1)
def _mmlu():
    return load_mmlu()


ROUTING_RATIO = PRICES_PER_MTOK["large"] / PRICES_PER_MTOK["small"]


def _synthetic_cells() -> list[Cell]:
    out = []
    for scenario in ("offline", "online"):
        for ratio in (1.5, 100.0):
            for acc in ((0.8, 1.0) if scenario == "offline" else (1.0,)):
                for alpha in (0.5, 0.8):
                    out.append(Cell("synthetic", "paper", scenario, alpha, ratio, acc, 8, 20, 10_000))
    return out


def _routing_cells() -> list[Cell]:
    out = []
    for scenario, accs in (("offline", (0.8, 1.0)), ("online", (1.0,))):
        for acc in accs:
            for alpha in (0.2, 0.5, 0.8):
                out.append(Cell("routing", "paper", scenario, alpha, ROUTING_RATIO, acc, 40, 100, 10_000))
    for cache in (10, 25, 50, 100, 200, 400):  # larger query set, cache sizes around the paper's 40
        out.append(Cell("routing", "cache-sweep", "online", 0.5, ROUTING_RATIO, 1.0, cache, 1000, 30_000, 3))
    for cache in (140, 1404):  # all 14,042 MMLU prompts, cache = 1% and 10% of them
        out.append(Cell("routing", "full-set", "online", 0.5, ROUTING_RATIO, 1.0, cache, None, 100_000, 3))
    return out


SUITES: dict[str, Callable[[], list[Cell]]] = {"synthetic": _synthetic_cells, "routing": _routing_cells}


def cells_for(suite: str) -> list[Cell]:
    if suite not in SUITES:
        raise UnknownNameError("suite", suite, SUITES)
    return SUITES[suite]()


def run_cell(cell: Cell, seed: int) -> dict[tuple[str, str], float]:
    """Total cost / 1000 of every method on this cell's workload for one seed."""
    w = cell.workload(seed)
    out = {}
    for cache in CACHES:
        for selector in SELECTORS:
            m = Method(cache, selector, cell.scenario, cell.selector_accuracy)
            out[(cache, selector)] = run(w, m, cell.cache_size).total_cost / 1000.0
    return out


def _task(args: tuple[Cell, int]) -> tuple[Cell, int, dict[tuple[str, str], float]]:
    cell, seed = args
    return cell, seed, run_cell(cell, seed)


def run_cells(cells: Iterable[Cell], seeds: Iterable[int], jobs: int | None = None,
              progress: Callable[[int], None] | None = None) -> dict[Cell, dict[int, dict]]:
    """Run every (cell, seed); results[cell][seed][(cache, selector)] = cost/1000."""
    seeds = list(seeds)
    tasks = [(c, s) for c in cells for s in (seeds[:c.max_seeds] if c.max_seeds else seeds)]
    jobs = jobs or min(len(tasks), os.cpu_count() or 1)
    results: dict[Cell, dict[int, dict]] = {}
    if jobs <= 1:
        it = map(_task, tasks)
        for cell, seed, res in it:
            results.setdefault(cell, {})[seed] = res
            if progress:
                progress(1)
        return results
    with ProcessPoolExecutor(max_workers=jobs) as ex:
        for cell, seed, res in ex.map(_task, tasks, chunksize=1):
            results.setdefault(cell, {})[seed] = res
            if progress:
                progress(1)
    return results


def aggregate(results: dict[Cell, dict[int, dict]]) -> tuple[list[dict], list[dict]]:
    """Rows (one per cell x method: mean over seeds, 95% CI, median, the paper's number) and one
    summary per cell (LFU+large vs LEC+selector on paired seeds)."""
    rows, summaries = [], []
    for cell, by_seed in results.items():
        seeds = sorted(by_seed)
        base = asdict(cell)
        base.pop("suite")
        base.pop("max_seeds")
        for cache in CACHES:
            for selector in SELECTORS:
                vals = [by_seed[s][(cache, selector)] for s in seeds]
                mean, ci = mean_ci95(vals)
                label = cell.selector_label(selector)
                paper = paper_rerun = None
                if cell.suite == "synthetic":
                    paper = paper_synthetic(cell.scenario, cell.alpha, cell.cost_ratio,
                                            cell.selector_accuracy, cache, label)
                    paper_rerun = paper_synthetic(cell.scenario, cell.alpha, cell.cost_ratio,
                                                  cell.selector_accuracy, cache, label, rerun=True)
                rows.append({**base, "cache": cache, "selector": label, "mean_cost": mean, "ci95": ci,
                             "median_cost": float(np.median(vals)), "seeds": len(seeds),
                             "paper_cost": paper, "paper_rerun_cost": paper_rerun})
        ratios = paired_ratios([by_seed[s][BASELINE] for s in seeds], [by_seed[s][OURS] for s in seeds])
        others = {f"{c}+{cell.selector_label(s)}": float(np.mean([by_seed[x][(c, s)] for x in seeds]))
                  for c in CACHES for s in SELECTORS if (c, s) != OURS}
        best_other = min(others, key=others.__getitem__)
        summaries.append({**base, "seeds": len(seeds), "baseline": "lfu+large", "ours": "lec+selector",
                          **ratios, "best_other": best_other,
                          "best_other_ratio": others[best_other] / max(1e-12, float(np.mean(
                              [by_seed[s][OURS] for s in seeds])))})
    return rows, summaries
