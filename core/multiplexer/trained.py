"""The trained selector: routes by a ``QualityPredictor``'s P(model answers well) and prices each
route by its expected cost (paper §3.4)."""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np

from cachemux.errors import ConfigError, UnknownNameError, check_nonnegative, check_positive
from cachemux.multiplexer.predictor import QualityPredictor
from cachemux.multiplexer.routes import FAIL_PENALTY, Route
from cachemux.multiplexer.selectors import Selector
from cachemux.units import estimate_tokens

__all__ = ["TrainedSelector", "route_expected_cost"]

Costs = Mapping[str, float] | Callable[[Hashable], Mapping[str, float]]


def route_expected_cost(route: Route, p: Mapping[str, float] | Sequence[float], cost: Mapping[str, float] | Sequence[float],
                        penalty: float = FAIL_PENALTY, failure_price: float = 0.0) -> float:
    """E[cost of ``route``] when model i answers well with probability p_i (independently).

    The expectation of ``route_cost`` (paper's cascade, §3.4): model i runs only if every earlier
    one failed and is charged ``penalty * c_i`` (i > 0), so E[small, large] = c_s + (1 - p_s) *
    penalty * c_l. ``failure_price`` is added when the route's last model fails too (0: its answer
    is accepted as is, the paper's convention). ``p``/``cost`` are mappings by model name, or
    sequences aligned with ``route``.
    """
    total, reach = 0.0, 1.0  # reach: probability that this model runs
    for i, m in enumerate(route):
        pi = p[m] if isinstance(p, Mapping) else p[i]
        ci = cost[m] if isinstance(cost, Mapping) else cost[i]
        total += reach * (ci if i == 0 else penalty * ci)
        reach *= 1.0 - pi
    return total + reach * failure_price


class TrainedSelector(Selector):
    """Route by predicted quality: the paper's selector with a learned P(model answers well).

    * ``predictor``: a ``QualityPredictor`` (or a folder saved by one) covering every routed model.
    * ``routes``: e.g. ``[("small", "large"), ("large",)]`` (cascade or large) or one single-model
      route per model (default: one per predictor model, in the predictor's order).
    * ``costs``: model -> cost of one query, or a callable ``(query) -> {model: cost}`` (e.g. price
      x tokens); default: the predictor's per-model prices ($/1M tokens) x tokens(text) / 1e6.
    * ``failure_price``: what a final bad answer costs (the route's last model fails too). Default:
      0 when some route is a cascade (the paper's convention: the last model's answer is accepted as
      is, exactly what ``route_cost`` charges, so expected and observed costs agree); when every
      route is a single model, ``penalty`` x the priciest model's cost on that query, i.e. a bad
      answer is priced like the paper's failed cascade, which has to pay the large model twice.
      A number is an absolute price in cost units; a str names one of the predictor's
      calibrations (e.g. ``"cost_aware_quality=0.95"``: the price at which the rule reached 95% of
      the large model's quality on held-out training data).
    * ``threshold``: None picks the least expected cost. A float tau (or the name of one of the
      predictor's calibrations, e.g. ``"large_share=0.3"``) uses the calibrated rule instead: the
      cheapest route whose first model fails with predicted probability <= tau, else the priciest
      route (RouteLLM's threshold router: large iff P(small fails) > tau, for N models).
    * ``text_of``: maps a query key to its text (queries must be str otherwise).
    * ``prior_strength``: online re-estimation. The prediction is a Beta prior worth that many
      observations; each observed success/failure of model m on query q updates it (Beta
      posterior mean), so repeated queries converge to what actually happened, as the paper's
      per-query online selector does. Observed costs of (q, m) replace the priced ones.
    * ``explore``: optimism for what has not been tried. While model m has never been observed
      on query q, *choosing* uses the posterior after ``explore`` imagined successes,
      (k p + e) / (k + e), instead of the prediction p, so a cheaper model that may answer well is
      tried on a query that comes back (a cache miss again), and from then on its real outcome
      decides. The paper's online selector prices unexplored routes optimistically for the same
      reason: without it, a query first sent to the large model never reveals that the small one
      would have done. 0 (default) trusts the predictor and never explores. ``success_prob`` stays
      the plain posterior; ``route_costs``/``expected_cost`` are what the choice used.
    * ``cache_size``: how many queries' predictions (and observations, per model) are kept; the
      oldest are forgotten first, so a long-running app's memory stays bounded.

    ``expected_cost(q)`` is the chosen route's expected cost under the current estimates: what the
    joint engine uses as the cache priority.
    """

    name = "trained"

    def __init__(self, predictor: QualityPredictor | str | os.PathLike[str],
                 routes: Sequence[Route | Sequence[str] | str] | None = None, costs: Costs | None = None,
                 penalty: float = FAIL_PENALTY, *, failure_price: float | str | None = None,
                 threshold: float | str | None = None, text_of: Callable[[Hashable], str] | None = None,
                 prior_strength: float = 1.0, explore: float = 0.0, cache_size: int = 100_000) -> None:
        if not isinstance(predictor, QualityPredictor):
            predictor = QualityPredictor.load(predictor)
        self.predictor = predictor
        known = predictor.models
        super().__init__(routes if routes is not None else [(m,) for m in known], penalty)
        for r in self.routes:
            for m in r:
                if m not in known:
                    raise UnknownNameError("model", m, known)
        self._col = {m: known.index(m) for m in self.models}
        self._costs_fn: Callable[[Hashable], Mapping[str, float]] | None = None
        self._flat_costs: dict[str, float] | None = None
        if costs is None:
            missing = [m for m in self.models if m not in predictor.config.costs]
            if missing:
                raise ConfigError(f"no cost for models {missing}: pass costs=... (the predictor's config "
                                  f"has prices for {sorted(predictor.config.costs)})")
            prices = {m: float(predictor.config.costs[m]) for m in self.models}
            self._costs_fn = lambda q: {m: c * estimate_tokens(self._text(q)) / 1e6 for m, c in prices.items()}
        elif callable(costs):
            self._costs_fn = costs
        elif isinstance(costs, Mapping):
            self._flat_costs = self._check_costs(costs, "costs")
        else:
            raise ConfigError(f"costs must be a mapping model -> cost or a callable, got {type(costs).__name__}")
        if isinstance(failure_price, str):
            cal = predictor.config.calibration
            if failure_price not in cal or cal[failure_price].get("failure_price") is None:
                raise UnknownNameError("calibrated failure price", failure_price,
                                       [k for k, v in cal.items() if v.get("failure_price") is not None])
            failure_price = cal[failure_price]["failure_price"]
        self.failure_price = None if failure_price is None else check_nonnegative("failure_price", failure_price)
        self._cascades = any(len(r) > 1 for r in self.routes)
        self.threshold = self._resolve_threshold(threshold)
        self.prior_strength = check_positive("prior_strength", prior_strength)
        self.explore = check_nonnegative("explore (imagined successes)", explore)
        self.text_of = text_of
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1:
            raise ConfigError(f"cache_size must be an int >= 1, got {cache_size!r}")
        self.cache_size = cache_size
        self._pred: dict[Hashable, np.ndarray] = {}  # query -> predicted P(success) per model (prior)
        self._obs: dict[tuple[Hashable, str], list[float]] = {}  # (q, m) -> [successes, trials]
        self._cost_obs: dict[tuple[Hashable, str], list[float]] = {}  # (q, m) -> [sum, n]

    # ---- inputs ----------------------------------------------------------------------------
    def _resolve_threshold(self, threshold: float | str | None) -> float | None:
        if threshold is None:
            return None
        if isinstance(threshold, str):
            cal = self.predictor.config.calibration
            if threshold not in cal:
                raise UnknownNameError("calibration", threshold, cal)
            threshold = cal[threshold]["threshold"]
        try:
            t = float(threshold)
        except (TypeError, ValueError):
            raise ConfigError(f"threshold must be a probability in [0, 1], got {threshold!r}") from None
        if not (0.0 <= t <= 1.0):
            raise ConfigError(f"threshold must be a probability in [0, 1], got {threshold!r}")
        return t

    def _check_costs(self, costs: Mapping[str, float], what: str) -> dict[str, float]:
        out = {}
        for m in self.models:
            if m not in costs:
                raise ConfigError(f"{what} has no cost for model {m!r} (it has {sorted(costs)}; "
                                  f"the routes use {list(self.models)})")
            out[m] = check_nonnegative(f"{what}: cost of model {m!r}", costs[m])
        return out

    def _text(self, query: Hashable) -> str:
        t: object
        if self.text_of is not None:
            t = self.text_of(query)
        else:
            t = query
        if not isinstance(t, str):
            raise ConfigError(f"query {query!r:.80} is not a str: pass text_of=... to map query keys to text")
        return t

    def costs_for(self, query: Hashable) -> dict[str, float]:
        """Per-model cost of ``query``: observed means where seen, else the priced ones."""
        base = self._flat_costs if self._flat_costs is not None else self._check_costs(
            self._costs_fn(query), f"costs({query!r:.60})")  # type: ignore[misc]
        if not self._cost_obs:
            return dict(base)
        out = dict(base)
        for m in self.models:
            s = self._cost_obs.get((query, m))
            if s is not None:
                out[m] = s[0] / s[1]
        return out

    # ---- predictions -----------------------------------------------------------------------
    def prime(self, queries: Sequence[Hashable]) -> None:
        """Predict for many queries in one embedding batch (fills the per-query cache)."""
        todo = list(dict.fromkeys(q for q in queries if q not in self._pred))
        if not todo:
            return
        probs = self.predictor.predict_proba([self._text(q) for q in todo])
        for q, p in zip(todo, probs):
            self._remember(q, p)

    def _remember(self, query: Hashable, p: np.ndarray) -> None:
        if len(self._pred) >= self.cache_size:  # drop the oldest prediction (dicts keep order)
            self._pred.pop(next(iter(self._pred)))
        self._pred[query] = p

    def predicted(self, query: Hashable) -> dict[str, float]:
        """The predictor's P(success) per routed model for ``query`` (before any observation)."""
        p = self._pred.get(query)
        if p is None:
            p = self.predictor.predict_proba([self._text(query)])[0]
            self._remember(query, p)
        return {m: float(p[j]) for m, j in self._col.items()}

    def success_prob(self, query: Hashable) -> dict[str, float]:
        """P(success) per model after the online update: Beta(k p, k (1 - p)) prior, observed
        successes s out of n trials -> (k p + s) / (k + n)."""
        p = self.predicted(query)
        if not self._obs:
            return p
        k = self.prior_strength
        for m in p:
            o = self._obs.get((query, m))
            if o is not None:
                p[m] = (k * p[m] + o[0]) / (k + o[1])
        return p

    def choice_prob(self, query: Hashable) -> dict[str, float]:
        """What choosing uses: ``success_prob``, except that a model never observed on ``query``
        gets ``explore`` imagined successes, (k p + e) / (k + e)."""
        p = self.success_prob(query)
        if self.explore > 0.0:
            k, e = self.prior_strength, self.explore
            for m in p:
                if (query, m) not in self._obs:
                    p[m] = (k * p[m] + e) / (k + e)
        return p

    def predict_batch(self, queries: Sequence[Hashable]) -> np.ndarray:
        """(n, len(self.models)) posterior P(success) for many queries (one embedding batch)."""
        self.prime(queries)
        return np.array([[self.success_prob(q)[m] for m in self.models] for q in queries], dtype=float).reshape(
            len(queries), len(self.models))

    # ---- pricing and choice ----------------------------------------------------------------
    def _failure_price(self, cost: Mapping[str, float]) -> float:
        if self.failure_price is not None:
            return self.failure_price
        return 0.0 if self._cascades else self.penalty * max(cost.values())

    def route_costs(self, query: Hashable) -> dict[Route, float]:
        """Expected cost of every route for ``query`` (``route_expected_cost`` with the estimates;
        optimistic for untried models when ``explore`` > 0)."""
        return self._route_costs(self.choice_prob(query), self.costs_for(query))

    def _route_costs(self, p: Mapping[str, float], c: Mapping[str, float]) -> dict[Route, float]:
        fail = self._failure_price(c)
        return {r: route_expected_cost(r, p, c, self.penalty, fail) for r in self.routes}

    def _choose(self, query: Hashable) -> tuple[Route, float]:
        p, c = self.choice_prob(query), self.costs_for(query)  # once per choice: the hot path
        rc = self._route_costs(p, c)
        if self.threshold is None:
            best = min(self.routes, key=lambda r: rc[r])  # ties: the earlier route
            return best, rc[best]
        by_cost = sorted(self.routes, key=lambda r: c[r[0]])  # stable: ties keep the given order
        for r in by_cost:
            if 1.0 - p[r[0]] <= self.threshold:
                return r, rc[r]
        return by_cost[-1], rc[by_cost[-1]]  # no cheap route is safe enough: the priciest

    def choose(self, query: Hashable) -> Route:
        return self._choose(query)[0]

    def choose_batch(self, queries: Sequence[Hashable]) -> list[Route]:
        self.prime(queries)
        return [self.choose(q) for q in queries]

    def expected_cost(self, query: Hashable) -> float | None:
        """The chosen route's expected cost: what a cache miss on ``query`` is expected to cost."""
        return self._choose(query)[1]

    def entry_price(self, query: Hashable, paid: float) -> float:
        """The chosen route's expected cost under the posterior P(success) *without* the
        exploration bonus (optimism is for routing, never for the cache's price)."""
        route = self._choose(query)[0]
        return self._route_costs(self.success_prob(query), self.costs_for(query))[route]

    def route_estimates(self, query: Hashable) -> dict[Route, float | None]:
        return dict(self._route_costs(self.success_prob(query), self.costs_for(query)))

    def observe(self, query: Hashable, ran: Mapping[str, float], success: Mapping[str, bool | None]) -> None:
        clean = {}
        for m, c in ran.items():  # validate everything before recording anything
            if m not in self._col:
                raise UnknownNameError("model", m, self.models)
            clean[m] = check_nonnegative(f"observed cost of model {m!r}", c)
        # no base-class running means: the predictor and the tables below are all this reads
        for m, c in clean.items():
            s = self._cost_obs.setdefault((query, m), [0.0, 0])
            s[0] += c
            s[1] += 1
            ok = success.get(m)
            if ok is not None:  # None: no judge, nothing learnt about quality
                o = self._obs.setdefault((query, m), [0.0, 0])
                o[0] += 1.0 if ok else 0.0
                o[1] += 1
        limit = self.cache_size * len(self.models)  # bounded memory: forget the oldest queries first
        for table in (self._cost_obs, self._obs):
            while len(table) > limit:
                table.pop(next(iter(table)))

