"""lookup -> route -> generate -> account -> admit/evict, in one readable place (paper Algorithm 2)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, MutableMapping
from dataclasses import dataclass
from typing import Any

from cachemux.multiplexer.routes import Route, route_cost
from cachemux.multiplexer.selectors import Selector
from cachemux.policies.base import Policy

__all__ = ["Generation", "JointEngine", "Served"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Generation:
    """One model's answer to one query: what it cost and whether it was good enough.

    ``success=None`` means unknown (no judge): the answer is accepted and a cascade stops there.
    ``size`` is what the answer occupies in the cache (1 per entry, or tokens/bytes).
    """

    answer: Any
    cost: float
    success: bool | None = None
    size: float = 1


@dataclass(frozen=True, slots=True)
class Served:
    """The outcome of one request."""

    answer: Any
    hit: bool
    cost: float
    route: Route | None = None
    models: tuple[str, ...] = ()


Generate = Callable[[Hashable, str], Generation]


class JointEngine:
    """Serve queries through a cache (``policy`` + optional value ``store``) and a multiplexer.

    On a miss the selector picks a route, the models run in order until one succeeds, the
    selector learns what that cost, and the answer is offered to the cache with the cost
    *under the selector* (``selector.expected_cost``: min over routes of the estimated cost),
    which is what makes caching and multiplexing gains multiply (the paper's joint design).
    """

    def __init__(self, policy: Policy, selector: Selector, generate: Generate,
                 store: MutableMapping[Hashable, Any] | None = None) -> None:
        self.policy = policy
        self.selector = selector
        self.generate = generate
        self.store = store
        self.total_cost = 0.0
        self.requests = 0

    def serve(self, query: Hashable) -> Served:
        self.requests += 1
        policy, store = self.policy, self.store
        if policy.lookup(query):
            if store is None:
                return Served(None, True, 0.0)
            try:
                return Served(store[query], True, 0.0)
            except KeyError:  # the store lost the value (evicted elsewhere, expired): a miss
                policy.remove(query)
        selector = self.selector
        route = selector.choose(query)
        ran: dict[str, float] = {}
        success: dict[str, bool | None] = {}
        gen = None
        for model in route:
            gen = self.generate(query, model)
            ran[model] = gen.cost
            success[model] = gen.success
            if gen.success is not False:
                break
        assert gen is not None
        cost, _ = route_cost(route, ran, success, selector.penalty)
        assert cost is not None
        selector.observe(query, ran, success)
        expected = selector.expected_cost(query)
        evicted = policy.admit(query, cost if expected is None else expected, gen.size)
        if store is not None:
            for key in evicted:
                store.pop(key, None)
            if query in policy:
                store[query] = gen.answer
        self.total_cost += cost
        return Served(gen.answer, False, cost, route, tuple(ran))
