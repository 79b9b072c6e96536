"""One request through the joint stack, for the framework adapters (LangChain, LlamaIndex).

The flow is ``JointEngine.serve`` (paper Algorithm 2) over a ``SemanticCache`` and real model
calls instead of a key policy and a simulated ``generate``::

    cache.match(prompt)                 -> hit: served, cost 0 (the entry's cost is what it saved)
    route = selector.choose(query)      -> the models to try, in order
    run each until one succeeds         -> answer, measured latency, cost, judge's verdict
    selector.observe(query, ran, ok)    -> it learns what this query costs on each route
    cache.update(prompt, answer, cost=selector.expected_cost(query) or the route's cost)

The last step is the paper's joint design: the cache prices an entry at the cost of a miss
*under the multiplexer* (the cheapest adequate route), not at the large model's cost.

Costs per model (``costs=``): a table ``{"small": 1.0, "large": 2.2}`` (e.g. FLOPs per token),
``"latency"`` (the measured seconds of the call), or a function ``(model, output, seconds) ->
cost``. ``judge(query, model, text) -> bool | None`` says whether an answer is good enough; without
one every answer is accepted, so a cascade stops at its first model.
"""

from __future__ import annotations

import inspect
import json
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cachemux.errors import ConfigError
from cachemux.multiplexer.routes import Route, route_cost
from cachemux.multiplexer.selectors import Selector

__all__ = ["Attempt", "ModelMux", "MuxOutcome"]

Costs = Mapping[str, float] | str | Callable[[str, Any, float], float]
Judge = Callable[[Any, str, str], "bool | None"]


@dataclass(frozen=True)
class Attempt:
    """One model run: its output (framework object), answer text, seconds, cost and verdict."""

    model: str
    output: Any
    text: str
    latency: float
    cost: float
    success: bool | None


@dataclass
class MuxOutcome:
    """What serving one request did. ``metadata()`` is the dict the adapters attach to outputs."""

    query: Any
    hit: Any = None                    # cachemux.cache.Match on a cache hit
    route: Route | None = None
    attempts: tuple[Attempt, ...] = ()
    expected_cost: float | None = None  # the selector's estimate for the query, before routing
    route_costs: dict[str, float | None] = field(default_factory=dict)
    cost: float = 0.0                  # what this request cost (0 on a hit)
    admitted: bool | None = None       # None: no cache, or a hit
    model: str | None = None           # the model whose answer is served
    saved: float | None = None         # on a hit: what producing the cached answer cost

    @property
    def answer(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def metadata(self) -> dict[str, Any]:
        """``model``: who answered (for a hit: who answered when it was cached); ``route``: the
        models the selector chose, in order; ``models_run``; ``cost``: this request's cost in the
        router's unit (0 on a hit); ``expected_cost``: the selector's estimate for this query
        before routing (None before any feedback); ``route_costs``: the selector's per-route
        estimate after this request (``"small>large"`` for a cascade); ``model_costs``: each run's
        measured cost; ``latency``: seconds per model run; ``cache_hit``: None without a cache,
        else False or ``"exact"``/``"semantic"``; ``similarity`` and ``saved`` on hits (what the
        cached answer cost to produce) and ``entry_cost`` (the price the cache ranks it by: the
        selector's expected cost when it was admitted); ``cached``: whether the answer was admitted."""
        m: dict[str, Any] = {
            "model": self.model,
            "route": list(self.route) if self.route else None,
            "models_run": [a.model for a in self.attempts],
            "cost": self.cost,
            "expected_cost": self.expected_cost,
            "route_costs": dict(self.route_costs),
            "model_costs": {a.model: a.cost for a in self.attempts},
            "latency": {a.model: a.latency for a in self.attempts},
            "success": {a.model: a.success for a in self.attempts},
            "cache_hit": False if self.hit is None else self.hit.kind,
            "cached": self.admitted,
        }
        if self.hit is not None:
            m["similarity"] = self.hit.similarity
            m["saved"] = self.hit.cost if self.saved is None else self.saved
            m["entry_cost"] = self.hit.cost
        return m


class ModelMux:
    """Routes requests over named models with a ``Selector``, through an optional cache.

    ``models``: the names the selector may route to (each selector route must use only these).
    ``cache``: a ``cachemux.cache.SemanticCache`` (or None). ``llm_string``: the cache partition
    of this set of models (answers are shared among the models of one mux, never with other
    configurations). Thread-safe: selector updates are serialised; model calls are not.
    """

    def __init__(self, models: Sequence[str], selector: Selector, *, costs: Costs = "latency",
                 cache: Any = None, llm_string: str | None = None, judge: Judge | None = None) -> None:
        models = tuple(models)
        if not models:
            raise ConfigError("a mux needs at least one model")
        if not isinstance(selector, Selector):
            raise ConfigError(f"selector must be a cachemux Selector, got {type(selector).__name__}")
        unknown = [m for m in selector.models if m not in models]
        if unknown:
            raise ConfigError(f"the selector routes to {unknown}, which are not among the models "
                              f"{list(models)}")
        if isinstance(costs, str):
            if costs != "latency":
                raise ConfigError(f"costs must be a table {{model: cost}}, 'latency' or a function, got {costs!r}")
        elif isinstance(costs, Mapping):
            missing = [m for m in models if m not in costs]
            if missing:
                raise ConfigError(f"the cost table lacks {missing}; it has {sorted(costs)}")
            for m in models:
                c = costs[m]
                if isinstance(c, bool) or not isinstance(c, (int, float)) or not (0 <= c < float("inf")):
                    raise ConfigError(f"cost of {m!r} must be a finite number >= 0, got {c!r}")
            costs = {m: float(costs[m]) for m in models}
        elif not callable(costs):
            raise ConfigError(f"costs must be a table {{model: cost}}, 'latency' or a function, got {costs!r}")
        if judge is not None and not callable(judge):
            raise ConfigError(f"judge must be a function (query, model, text) -> bool | None, got {judge!r}")
        self.models = models
        self.selector = selector
        self.costs = costs
        self.cache = cache
        self.llm_string = llm_string or "cachemux-mux:" + json.dumps(list(models))
        self.judge = judge
        self._lock = threading.Lock()
        self.calls = dict.fromkeys(models, 0)
        self.answered = dict.fromkeys(models, 0)
        self.requests = 0
        self.hits = 0
        self.total_cost = 0.0
        self.saved = 0.0

    # ---- the steps ----------------------------------------------------------------------------
    def lookup(self, prompt: str, *, embed_text: str | bool | None = None, scope: str = "") -> Any:
        """The cache's ``Match`` for ``prompt``, or None (no cache, or a miss)."""
        with self._lock:
            self.requests += 1
        if self.cache is None:
            return None
        hit = self.cache.match(prompt, self.llm_string, embed_text=embed_text, scope=scope)
        if hit is not None:
            with self._lock:
                self.hits += 1
        return hit

    def plan(self, query: Any) -> tuple[Route, float | None]:
        """The selector's route for ``query`` and its cost estimate before running anything."""
        with self._lock:
            return self.selector.choose(query), self.selector.expected_cost(query)

    def cost_of(self, model: str, output: Any, seconds: float) -> float:
        costs = self.costs
        if isinstance(costs, Mapping):
            return costs[model]
        if costs == "latency":
            return seconds
        c = costs(model, output, seconds)  # type: ignore[operator]
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not (0 <= c < float("inf")):
            raise ConfigError(f"the cost function returned {c!r} for {model!r}; it must be a finite number >= 0")
        return float(c)

    def attempt(self, query: Any, model: str, output: Any, text: str, seconds: float) -> Attempt:
        """Price and judge one model run."""
        with self._lock:
            self.calls[model] += 1
        ok = self.judge(query, model, text) if self.judge is not None else None
        return Attempt(model, output, text, seconds, self.cost_of(model, output, seconds), ok)

    def finish(self, query: Any, route: Route, attempts: Sequence[Attempt], expected: float | None,
               prompt: str | None = None, value: str | None = None, *,
               embed_text: str | bool | None = None, scope: str = "") -> MuxOutcome:
        """Let the selector learn; offer ``value`` (the served answer, serialised) to the cache."""
        ran = {a.model: a.cost for a in attempts}
        success = {a.model: a.success for a in attempts}
        cost = self.route_cost(route, attempts)
        with self._lock:
            self.selector.observe(query, ran, success)
            after = self.selector.expected_cost(query)
            estimates = self._route_estimates(query)
            self.total_cost += cost
            self.answered[attempts[-1].model] += 1
        admitted = None
        if self.cache is not None and prompt is not None and value is not None:
            admitted = self.cache.update(prompt, self.llm_string, value,
                                         cost=cost if after is None else after,
                                         embed_text=embed_text, scope=scope)
        return MuxOutcome(query=query, route=route, attempts=tuple(attempts), expected_cost=expected,
                          route_costs=estimates, cost=cost, admitted=admitted, model=attempts[-1].model)

    def _route_estimates(self, query: Any) -> dict[str, float | None]:
        """Per-route cost estimates: the selector's own model where it has one (the trained
        selector's predicted costs), else its running means of observed route costs."""
        if not _hashable(query):
            return {}
        sel = self.selector
        own = getattr(sel, "route_costs", None)
        if callable(own):
            return {">".join(r): float(c) for r, c in own(query).items()}
        return {">".join(r): sel.estimates.mean((query, r)) for r in sel.routes}

    def route_cost(self, route: Route, attempts: Sequence[Attempt]) -> float:
        """What the attempts cost under the paper's cascade pricing (``route_cost``)."""
        cost, _ = route_cost(route, {a.model: a.cost for a in attempts},
                             {a.model: a.success for a in attempts}, self.selector.penalty)
        return sum(a.cost for a in attempts) if cost is None else cost

    def hit_outcome(self, query: Any, hit: Any, model: str | None, paid: float | None = None) -> MuxOutcome:
        """The outcome of a cache hit. ``paid``: what producing the cached answer cost (adapters
        store it with the value); the hit saved that much. Without it, the entry's cost."""
        saved = hit.cost if paid is None else float(paid)
        with self._lock:
            self.saved += saved
        return MuxOutcome(query=query, hit=hit, model=model, saved=saved)

    # ---- whole requests -------------------------------------------------------------------------
    def run_route(self, query: Any, route: Route, call: Callable[[str], Any],
                  text_of: Callable[[Any], str]) -> list[Attempt]:
        """Run the models of ``route`` in order until one succeeds (the last one is accepted)."""
        attempts = []
        for model in route:
            t0 = time.perf_counter()
            out = call(model)
            attempts.append(self.attempt(query, model, out, text_of(out), time.perf_counter() - t0))
            if attempts[-1].success is not False:
                break
        return attempts

    async def arun_route(self, query: Any, route: Route, call: Callable[[str], Awaitable[Any]],
                         text_of: Callable[[Any], str]) -> list[Attempt]:
        attempts = []
        for model in route:
            t0 = time.perf_counter()
            out = call(model)
            if inspect.isawaitable(out):
                out = await out
            attempts.append(self.attempt(query, model, out, text_of(out), time.perf_counter() - t0))
            if attempts[-1].success is not False:
                break
        return attempts

    def stats(self) -> dict[str, Any]:
        """Requests, cache hits, model calls and answers per model, total cost paid, cost saved
        by hits (what their answers cost to produce), and the cache's own stats when there is one."""
        with self._lock:
            s: dict[str, Any] = {"requests": self.requests, "hits": self.hits, "calls": dict(self.calls),
                                 "answered": dict(self.answered), "total_cost": self.total_cost,
                                 "saved": self.saved}
        if self.cache is not None:
            s["cache"] = self.cache.stats()
        return s


def _hashable(q: Any) -> bool:
    try:
        hash(q)
    except TypeError:
        return False
    return True
