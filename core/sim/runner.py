"""Run one (cache, selector, scenario) method on a workload through the joint engine."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from cachemux.errors import ConfigError, UnknownNameError
from cachemux.joint.engine import Generation, JointEngine
from cachemux.multiplexer.routes import Route, route_cost
from cachemux.multiplexer.selectors import (
    NoisyOracleSelector,
    OnlineSelector,
    OracleSelector,
    Selector,
    StaticSelector,
)
from cachemux.policies import GDSF, LEC, LFU, LRU, LECOffline, Policy
from cachemux.sim.workload import Workload

__all__ = ["CACHES", "SCENARIOS", "SELECTORS", "Method", "RunResult", "run"]

CACHES = ("lfu", "lec", "gdsf", "lru")
SELECTORS = ("large", "cascade", "selector", "oracle")
SCENARIOS = ("offline", "online")
LARGE: Route = ("large",)


@dataclass(frozen=True)
class Method:
    """One cell of the paper's grid: a cache policy, a selector and a scenario."""

    cache: str
    selector: str
    scenario: str
    accuracy: float = 1.0
    penalty: float = 2.0

    def __post_init__(self) -> None:
        if self.cache not in CACHES:
            raise UnknownNameError("cache", self.cache, CACHES)
        if self.selector not in SELECTORS:
            raise UnknownNameError("selector", self.selector, SELECTORS)
        if self.scenario not in SCENARIOS:
            raise UnknownNameError("scenario", self.scenario, SCENARIOS)
        if not (0.0 <= self.accuracy <= 1.0):
            raise ConfigError(f"accuracy must be in [0, 1], got {self.accuracy!r}")


@dataclass(frozen=True)
class RunResult:
    method: Method
    total_cost: float
    hits: int
    requests: int
    cost_per_request: np.ndarray | None = None


class _Clock:
    """Which request is being served: the generator and the oracles read per-request values."""

    __slots__ = ("t", "coins")

    def __init__(self, coins: list[float]) -> None:
        self.t = 0
        self.coins = coins

    def random(self) -> float:  # the noisy selector's coin for the current request (paired)
        return self.coins[self.t]


def _true_route_costs(w: Workload, routes: tuple[Route, ...]) -> list[dict[Route, float]]:
    out = []
    for q in range(w.num_queries):
        cost = {m: float(c[q]) for m, c in w.mean_cost.items()}
        ok = {m: bool(s[q]) for m, s in w.success.items()} if w.success else {}
        out.append({r: route_cost(r, cost, ok)[0] for r in routes})
    return out


def _selector(method: Method, w: Workload, clock: _Clock, realised) -> Selector:
    small = w.small_route()
    routes = (small, LARGE)
    p = method.penalty
    if method.selector == "large":
        return StaticSelector(LARGE, p)
    if method.selector == "cascade":
        return StaticSelector(small, p)
    if method.selector == "oracle" or (method.scenario == "offline" and method.accuracy >= 1.0):
        return OracleSelector(routes, realised, p)
    if method.scenario == "offline":
        return NoisyOracleSelector(routes, realised, method.accuracy, rng=clock, penalty=p)  # type: ignore[arg-type]
    return OnlineSelector(routes, penalty=p)


def _policy(method: Method, w: Workload, capacity: int, selector: Selector) -> Policy:
    if method.cache == "gdsf":
        return GDSF(capacity)
    if method.cache == "lru":
        return LRU(capacity)
    if method.scenario == "online":
        return LEC(capacity) if method.cache == "lec" else LFU(capacity, history=True)
    # offline: P and c are known; the static cache holds the top-L of P(q) * c(q), where c is the
    # cost under this selector (LEC) or 1 (LFU)
    probs = {q: float(p) for q, p in enumerate(w.probs)}
    if method.cache == "lfu":
        cost = dict.fromkeys(probs, 1.0)
    else:
        true = _true_route_costs(w, selector.routes)
        cost = {q: min(true[q][r] for r in selector.routes) for q in probs}
    return LECOffline(capacity, prob=probs, cost=cost)


def run(w: Workload, method: Method, capacity: int, *, record: bool = False) -> RunResult:
    """Serve every request of ``w`` with ``method``; return the total cost (and per request)."""
    clock = _Clock(w.coins.tolist())
    cost = {m: c.tolist() for m, c in w.cost.items()}
    success = {m: s.tolist() for m, s in w.success.items()} if w.success else None
    small = w.small_route()
    routes = (small, LARGE)

    def realised(q: Hashable) -> dict[Route, float]:
        # the per-request oracle of the reference code: min over options of this request's costs
        t = clock.t
        c = {m: cost[m][t] for m in cost}
        ok = {m: success[m][q] for m in success} if success else {}
        return {r: route_cost(r, c, ok)[0] for r in routes}

    def generate(q: Hashable, model: str) -> Generation:
        ok = success[model][q] if success and model in success else None
        return Generation(None, cost[model][clock.t], ok)

    selector = _selector(method, w, clock, realised)
    policy = _policy(method, w, capacity, selector)
    if isinstance(policy, LECOffline):
        for key in policy.warm():
            policy.admit(key)
    engine = JointEngine(policy, selector, generate, detail=False)
    serve = engine.serve
    per = np.empty(w.num_requests) if record else None
    hits = 0
    for t, q in enumerate(w.requests.tolist()):
        clock.t = t
        r = serve(q)
        hits += r.hit
        if per is not None:
            per[t] = r.cost
    return RunResult(method, engine.total_cost, hits, w.num_requests, per)
