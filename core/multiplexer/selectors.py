"""Selectors (the model multiplexer): pick a route per query; estimate the cost a miss costs."""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import ClassVar

from cachemux.errors import ConfigError
from cachemux.estimators.means import RunningMeans
from cachemux.multiplexer.routes import FAIL_PENALTY, Route, make_route, route_cost

__all__ = ["NoisyOracleSelector", "OnlineSelector", "OracleSelector", "Selector", "StaticSelector"]

Truth = Callable[[Hashable], Mapping[Route, float]]


class Selector(ABC):
    """Choose a route for each query and learn from what it cost.

    Every selector keeps per-(query, route) running means of observed route costs, including
    counterfactual ones the run reveals (see ``route_cost``). ``expected_cost(q)`` is
    what a cache miss on q is expected to cost *under this selector*: the joint design's cache
    priority uses it instead of the large model's cost.
    """

    name: ClassVar[str] = "selector"

    def __init__(self, routes: Sequence[Route | Sequence[str] | str], penalty: float = FAIL_PENALTY) -> None:
        if not routes:
            raise ConfigError("a selector needs at least one route")
        self.routes: tuple[Route, ...] = tuple(make_route(r) for r in routes)
        if len(set(self.routes)) != len(self.routes):
            raise ConfigError(f"duplicate routes in {self.routes!r}")
        if not (penalty >= 1.0) or math.isinf(penalty):
            raise ConfigError(f"penalty must be a finite number >= 1, got {penalty!r}")
        self.penalty = float(penalty)
        self.estimates = RunningMeans()  # key: (query, route) -> mean observed route cost

    @property
    def models(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for r in self.routes:
            seen.update(dict.fromkeys(r))
        return tuple(seen)

    @abstractmethod
    def choose(self, query: Hashable) -> Route:
        """The route to run for ``query``."""

    def observe(self, query: Hashable, ran: Mapping[str, float],
                success: Mapping[str, bool | None]) -> None:
        """Feedback after serving ``query``: the cost of each model that ran and its success."""
        est = self.estimates
        for r in self.routes:
            c, _ = route_cost(r, ran, success, self.penalty)
            if c is not None:
                est.observe((query, r), c)

    def expected_cost(self, query: Hashable) -> float | None:
        """Estimated cost of serving ``query`` under this selector (None before any feedback)."""
        est = self.estimates
        vals = [v for v in (est.mean((query, r)) for r in self.routes) if v is not None]
        return min(vals) if vals else None

    def entry_price(self, query: Hashable, paid: float) -> float:
        """What a cache entry for ``query`` is worth per request, after a miss that cost ``paid``:
        the least observed mean cost over the candidate routes (the cost of a miss under this
        selector as far as it knows), or ``paid`` if none is observed. Never the optimistic score
        of an untried route: optimism is for routing only."""
        est = self.estimates
        vals = [v for v in (est.mean((query, r)) for r in self.routes) if v is not None]
        return min(vals) if vals else float(paid)

    def settled(self, query: Hashable) -> bool:
        """Whether the price of ``query`` is known well enough to cache its answer. True here: a
        selector that does not explore prices with what it has. A selector that explores
        (``OnlineSelector``) says False while its next miss on the query would try an untried
        route: caching the answer at the dearer observed price would hold a slot it is not worth
        (in the paper's online simulation that cost LEC+selector 2.7x at cost ratio 100)."""
        return True

    def route_estimates(self, query: Hashable) -> dict[Route, float | None]:
        """The per-route cost estimates for ``query`` (running means; None where unobserved)."""
        return {r: self.estimates.mean((query, r)) for r in self.routes}


class StaticSelector(Selector):
    """Always the same route: always-large, always-small, or a fixed cascade."""

    name = "static"

    def __init__(self, route: Route | Sequence[str] | str, penalty: float = FAIL_PENALTY) -> None:
        super().__init__([route], penalty)

    def choose(self, query: Hashable) -> Route:
        return self.routes[0]


class OracleSelector(Selector):
    """Per query, the route with the least true cost (``truth(q)`` maps route -> cost)."""

    name = "oracle"

    def __init__(self, routes: Sequence[Route | Sequence[str] | str], truth: Truth,
                 penalty: float = FAIL_PENALTY) -> None:
        super().__init__(routes, penalty)
        self.truth = truth

    def choose(self, query: Hashable) -> Route:
        t = self.truth(query)
        return min(self.routes, key=lambda r: t[r])

    def expected_cost(self, query: Hashable) -> float | None:
        t = self.truth(query)
        return min(t[r] for r in self.routes)

    def entry_price(self, query: Hashable, paid: float) -> float:
        return self.expected_cost(query)  # type: ignore[return-value]  # the truth is known

    def route_estimates(self, query: Hashable) -> dict[Route, float | None]:
        t = self.truth(query)
        return {r: t[r] for r in self.routes}


class NoisyOracleSelector(OracleSelector):
    """The paper's simulation knob: right (the cheapest route) with probability ``accuracy``,
    else the most expensive route. Its expected cost for the cache stays the oracle's, as in the
    reference code, which ranks cache entries by cost_opt whatever the accuracy."""

    name = "noisy-oracle"

    def __init__(self, routes: Sequence[Route | Sequence[str] | str], truth: Truth, accuracy: float,
                 rng: random.Random | None = None, penalty: float = FAIL_PENALTY) -> None:
        super().__init__(routes, truth, penalty)
        if not (0.0 <= accuracy <= 1.0):
            raise ConfigError(f"accuracy must be in [0, 1], got {accuracy!r}")
        self.accuracy = float(accuracy)
        self.rng = rng if rng is not None else random.Random(0)

    def choose(self, query: Hashable) -> Route:
        t = self.truth(query)
        if self.accuracy >= 1.0 or self.rng.random() < self.accuracy:
            return min(self.routes, key=lambda r: t[r])
        return max(self.routes, key=lambda r: t[r])


class OnlineSelector(Selector):
    """The paper's online per-query selector (server.py ``select``/``update_policy``), generalised.

    Per query it keeps the running mean cost of each route and picks the least; a route never
    observed gets ``prior`` (default 0: optimistic, so each route is tried once; the reference
    code instead got the large model's cost for free on synthetic traces, a bug it does not copy).
    ``beta > 0`` uses the notebook's lower confidence bound mean - beta/sqrt(n), clipped at
    ``floor``. Ties go to the earlier route, so list the cheap route first (cascade before large).
    """

    name = "online"

    def __init__(self, routes: Sequence[Route | Sequence[str] | str], beta: float = 0.0,
                 prior: float = 0.0, floor: float = 0.0, penalty: float = FAIL_PENALTY) -> None:
        super().__init__(routes, penalty)
        if not (beta >= 0.0) or math.isinf(beta):
            raise ConfigError(f"beta must be a finite number >= 0, got {beta!r}")
        self.beta, self.prior, self.floor = float(beta), float(prior), float(floor)

    def score(self, query: Hashable, route: Route) -> float:
        return self.estimates.lcb((query, route), self.beta, self.floor, self.prior)

    def expected_cost(self, query: Hashable) -> float | None:
        """The same optimistic score the choice uses, so a query with an unexplored route looks
        cheap to the cache too: it is not kept, its next miss explores that route, and a cached
        entry cannot hide a cheaper route forever (bandit feedback sees only what runs)."""
        if not any((query, r) in self.estimates for r in self.routes):
            return None
        return min(self.score(query, r) for r in self.routes)

    def settled(self, query: Hashable) -> bool:
        """The next miss on ``query`` runs a route already observed on it (it will not explore)."""
        return (query, self.choose(query)) in self.estimates

    def choose(self, query: Hashable) -> Route:
        best, best_s = self.routes[0], math.inf
        for r in self.routes:
            s = self.score(query, r)
            if s < best_s:
                best, best_s = r, s
        return best
