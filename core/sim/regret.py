"""Online cumulative regret against the offline optimum (the paper's notebook figure)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from cachemux.sim.runner import Method, run
from cachemux.sim.synthetic import synthetic_workload

__all__ = ["REGRET_METHODS", "regret_curves"]

REGRET_METHODS = {
    "LFU+large": Method("lfu", "large", "online"),
    "LFU+small": Method("lfu", "cascade", "online"),
    "LEC+large": Method("lec", "large", "online"),
    "GDSF+selector": Method("gdsf", "selector", "online"),
    "LEC+selector": Method("lec", "selector", "online"),
}
OPTIMUM = Method("lec", "oracle", "offline")  # known P and costs, per-request cheapest model


def regret_curves(seeds: Iterable[int], *, alpha: float = 0.8, cost_ratio: float = 100.0,
                  cache_size: int = 8) -> dict[str, np.ndarray]:
    """Mean over seeds of cumulative (method cost - optimum cost) after each request."""
    sums: dict[str, np.ndarray] = {}
    n = 0
    for seed in seeds:
        w = synthetic_workload(seed, alpha=alpha, cost_ratio=cost_ratio)
        opt = np.cumsum(run(w, OPTIMUM, cache_size, record=True).cost_per_request)  # type: ignore[arg-type]
        for label, m in REGRET_METHODS.items():
            c = np.cumsum(run(w, m, cache_size, record=True).cost_per_request)  # type: ignore[arg-type]
            sums[label] = sums.get(label, 0) + (c - opt)
        n += 1
    return {k: v / n for k, v in sums.items()}
