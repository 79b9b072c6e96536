"""Routes: which models a selector runs for a query, in order, and what that costs (paper §3.6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cachemux.errors import ConfigError

__all__ = ["FAIL_PENALTY", "Route", "make_route", "route_cost"]

Route = tuple[str, ...]
"""Models tried in order until one answers well; the last one's answer is accepted as is.

``("large",)`` always runs the large model; ``("small", "large")`` is the paper's cascade.
"""

FAIL_PENALTY = 2.0
"""The reference code's quality penalty: a failed cascade pays c_s + 2*c_l (trace.py)."""


def make_route(models: str | Sequence[str]) -> Route:
    try:
        route = (models,) if isinstance(models, str) else tuple(models)
    except TypeError:
        raise ConfigError(f"a route is a non-empty sequence of model names, got {models!r}") from None
    if not route or not all(isinstance(m, str) and m for m in route):
        raise ConfigError(f"a route is a non-empty sequence of model names, got {models!r}")
    if len(set(route)) != len(route):
        raise ConfigError(f"a route runs each model at most once, got {route!r}")
    return route


def route_cost(route: Route, cost: Mapping[str, float], success: Mapping[str, bool | None],
               penalty: float = FAIL_PENALTY) -> tuple[float | None, int]:
    """What running ``route`` costs, and how many of its models run.

    Model i runs only if every earlier model failed; each model after the first is charged
    ``penalty`` times its cost (the paper's cascade: c_s + 1[small fails] * 2 * c_l). A model
    whose success is unknown (None) counts as a success: nothing after it runs.

    ``cost`` may hold only the models that actually ran: the cost is then None when the route
    would have needed another one. That is the feedback the paper's online selector gets: a
    failed cascade reveals the large model's cost, so the route ("large",) learns from it too.
    """
    total = 0.0
    for i, m in enumerate(route):
        c = cost.get(m)
        if c is None:
            return None, i
        total += c if i == 0 else penalty * c
        if i == len(route) - 1 or success.get(m) is not False:
            return total, i + 1
    raise AssertionError("unreachable")  # pragma: no cover
