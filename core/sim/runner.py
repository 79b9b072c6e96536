"""Run one (cache, selector, scenario) method on a workload through the joint engine.

The paper's method names map to the registries' (``cachemux.policies.make_policy``,
``cachemux.multiplexer.registry.make_selector``) through ``POLICY_TABLE`` and ``SELECTOR_TABLE``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cachemux.errors import ConfigError, UnknownNameError
from cachemux.joint.engine import Generation, JointEngine
from cachemux.multiplexer.registry import make_selector
from cachemux.multiplexer.routes import Route, route_cost
from cachemux.multiplexer.selectors import Selector
from cachemux.policies import LECOffline, Policy, make_policy
from cachemux.sim.workload import Workload

__all__ = ["CACHES", "ONLINE_POLICIES", "POLICY_TABLE", "SCENARIOS", "SELECTORS", "SELECTOR_TABLE", "Method",
           "RunResult", "run"]

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


class _Setup:
    """What the tables below build a run's selector and policy from."""

    def __init__(self, method: Method, w: Workload, truth: Callable[[Hashable], dict[Route, float]],
                 clock: _Clock) -> None:
        self.method, self.w, self.truth, self.clock = method, w, truth, clock
        self.small = w.small_route()
        self.routes = (self.small, LARGE)
        self.selector: Selector | None = None

    def probs(self) -> dict[Hashable, float]:
        return {q: float(p) for q, p in enumerate(self.w.probs)}

    def selector_costs(self) -> dict[Hashable, float]:
        """c(q) of the offline LEC: the true mean cost of q under this run's selector."""
        routes = self.selector.routes  # type: ignore[union-attr]
        true = _true_route_costs(self.w, routes)
        return {q: min(true[q][r] for r in routes) for q in range(self.w.num_queries)}


Args = Callable[[_Setup], tuple[tuple[Any, ...], dict[str, Any]]]

ONLINE_POLICIES: dict[str, tuple[str, dict[str, Any]]] = {
    "lfu": ("lfu", {"history": True}),  # the reference's "perfect LFU": counts every request ever
    "lec": ("lec", {}),
    "gdsf": ("gdsf", {}),
    "lru": ("lru", {}),
}
"""The paper's online cache names -> (``make_policy`` name, options)."""

# offline, P and c are known: the static cache holds the top-L of P(q) * c(q), where c is the cost
# under the run's selector (LEC) or 1 (LFU); GDSF and LRU have no offline form
POLICY_TABLE: dict[tuple[str, str], tuple[str, Callable[[_Setup], dict[str, Any]]]] = {
    **{(c, "online"): (name, lambda s, o=opts: dict(o)) for c, (name, opts) in ONLINE_POLICIES.items()},
    ("gdsf", "offline"): ("gdsf", lambda s: {}),
    ("lru", "offline"): ("lru", lambda s: {}),
    ("lfu", "offline"): (LECOffline.name, lambda s: {"prob": (p := s.probs()), "cost": dict.fromkeys(p, 1.0)}),
    ("lec", "offline"): (LECOffline.name, lambda s: {"prob": s.probs(), "cost": s.selector_costs()}),
}
"""(cache, scenario) -> (``make_policy`` name, options built for the run)."""

SELECTOR_TABLE: dict[tuple[str, str], tuple[str, Args]] = {
    **{("large", sc): ("static", lambda s: ((LARGE,), {})) for sc in SCENARIOS},
    **{("cascade", sc): ("static", lambda s: ((s.small,), {})) for sc in SCENARIOS},
    **{("oracle", sc): ("oracle", lambda s: ((s.routes, s.truth), {})) for sc in SCENARIOS},
    # offline = the paper's noisy oracle (right with probability accuracy; at 1 the oracle itself),
    # its coin the request's paired coin
    ("selector", "offline"): ("noisy-oracle", lambda s: ((s.routes, s.truth, s.method.accuracy), {"rng": s.clock})),
    ("selector", "online"): ("online", lambda s: ((s.routes,), {})),
}
"""(selector, scenario) -> (``make_selector`` name, its arguments for the run); every selector also
gets the method's ``penalty``."""


def run(w: Workload, method: Method, capacity: int, *, record: bool = False) -> RunResult:
    """Serve every request of ``w`` with ``method``; return the total cost (and per request)."""
    clock = _Clock(w.coins.tolist())
    cost = {m: c.tolist() for m, c in w.cost.items()}
    success = {m: s.tolist() for m, s in w.success.items()} if w.success else None
    routes = (w.small_route(), LARGE)

    def realised(q: Hashable) -> dict[Route, float]:
        # the per-request oracle of the reference code: min over options of this request's costs
        t = clock.t
        c = {m: cost[m][t] for m in cost}
        ok = {m: success[m][q] for m in success} if success else {}
        return {r: route_cost(r, c, ok)[0] for r in routes}

    def generate(q: Hashable, model: str) -> Generation:
        ok = success[model][q] if success and model in success else None
        return Generation(model, cost=cost[model][clock.t], success=ok)  # the answer: who gave it (never empty)

    setup = _Setup(method, w, realised, clock)
    name, build = SELECTOR_TABLE[(method.selector, method.scenario)]
    args, options = build(setup)
    selector = setup.selector = make_selector(name, *args, penalty=method.penalty, **options)
    name, options_of = POLICY_TABLE[(method.cache, method.scenario)]
    policy: Policy = make_policy(name, capacity, **options_of(setup))
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
