"""The paper's synthetic generator (reference trace.py ``generate_requests``, binomial mode)."""

from __future__ import annotations

import numpy as np

from cachemux.errors import check_positive
from cachemux.sim.workload import Workload, power_probs, sample_requests

__all__ = ["synthetic_workload"]


def synthetic_workload(seed: int, *, alpha: float, cost_ratio: float, num_queries: int = 20,
                       num_requests: int = 10_000, noise: float = 1.0, floor: float = 0.1) -> Workload:
    """Per query, c_s and c_l are independently 1 or 1 + cost_ratio (Bernoulli(0.5)); each request
    pays max(floor, c + N(0, noise^2)) on whichever model runs; popularity is power(alpha).
    There is no quality signal, so the "small" option is small-only (the paper's "model 2")."""
    check_positive("cost_ratio", cost_ratio)
    rng = np.random.default_rng(seed)
    mean = {m: rng.binomial(1, 0.5, num_queries) * cost_ratio + 1.0 for m in ("small", "large")}
    requests = sample_requests(rng, num_queries, alpha, num_requests)
    cost = {m: np.maximum(floor, mean[m][requests] + rng.normal(0.0, noise, num_requests))
            for m in ("small", "large")}
    coins = rng.random(num_requests)
    return Workload(name="synthetic", probs=power_probs(num_queries, alpha), mean_cost=mean,
                    success=None, requests=requests, cost=cost, coins=coins, seed=seed,
                    meta={"alpha": alpha, "cost_ratio": cost_ratio, "num_queries": num_queries})
