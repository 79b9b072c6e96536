"""Workloads: a query set with known popularity and costs, and a request trace sampled from it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cachemux.errors import ConfigError

__all__ = ["MODELS", "Workload", "power_probs", "sample_requests"]

MODELS = ("small", "large")


def power_probs(n: int, alpha: float) -> np.ndarray:
    """P(i) under the paper's popularity: qid = floor(n * X), X ~ power(alpha) (pdf a*x^(a-1)).

    P(i) = ((i+1)/n)^a - (i/n)^a. This is not Zipf: smaller alpha is more skewed, alpha=1 uniform.
    """
    if n <= 0:
        raise ConfigError(f"number of queries must be > 0, got {n!r}")
    if not (alpha > 0):
        raise ConfigError(f"alpha must be > 0, got {alpha!r}")
    edges = (np.arange(n + 1) / n) ** alpha
    return np.diff(edges)


def sample_requests(rng: np.random.Generator, n: int, alpha: float, num_requests: int) -> np.ndarray:
    """The reference code's sampler: floor(power(alpha) * n), clipped to the last query."""
    u = rng.power(alpha, num_requests)
    return np.minimum((u * n).astype(np.int64), n - 1)


@dataclass(frozen=True)
class Workload:
    """Everything a simulated run needs; every method on the same seed sees the same object.

    * ``probs[q]``: the true P(q).
    * ``mean_cost[m][q]``: model m's true mean cost on query q.
    * ``success[m][q]``: whether m answers q well (None: no quality signal, the synthetic mode).
    * ``requests[t]``: the query of request t; ``cost[m][t]``: what m would cost on request t.
    * ``coins[t]``: a uniform draw per request for the noisy selector (paired across methods).
    """

    name: str
    probs: np.ndarray
    mean_cost: dict[str, np.ndarray]
    success: dict[str, np.ndarray] | None
    requests: np.ndarray
    cost: dict[str, np.ndarray]
    coins: np.ndarray
    seed: int
    meta: dict = field(default_factory=dict)

    @property
    def num_queries(self) -> int:
        return len(self.probs)

    @property
    def num_requests(self) -> int:
        return len(self.requests)

    def small_route(self) -> tuple[str, ...]:
        """The cheap option: small-only when there is no quality signal, else the cascade."""
        return ("small",) if self.success is None else ("small", "large")

