"""What one model run costs, in the engine's unit: a table, the measured latency, a usage figure
the run reported, or a function."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cachemux.errors import ConfigError

__all__ = ["CostModel", "Costs"]

Costs = Mapping[str, float] | str | Callable[[str, Any, float], float]
USAGE_UNITS = ("flops", "tokens")


def _finite(what: str, c: object) -> float:
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not (0 <= c < math.inf):
        raise ConfigError(f"{what} must be a finite number >= 0, got {c!r}")
    return float(c)


class CostModel:
    """``costs``: ``{model: cost}`` (e.g. $ per call, FLOPs per call), ``"latency"`` (measured
    seconds), ``"flops"`` / ``"tokens"`` (``Generation.usage[...]``, as the adapters fill it from
    what the model reported), or ``f(model, answer, seconds) -> cost``."""

    def __init__(self, costs: Costs, models: Iterable[str] | None = None) -> None:
        models = None if models is None else tuple(models)
        if isinstance(costs, str):
            if costs != "latency" and costs not in USAGE_UNITS:
                raise ConfigError(f"costs must be a table {{model: cost}}, 'latency', 'flops', 'tokens' or a "
                                  f"function (model, answer, seconds) -> cost, got {costs!r}")
        elif isinstance(costs, Mapping):
            if models is not None:
                missing = [m for m in models if m not in costs]
                if missing:
                    raise ConfigError(f"the cost table lacks {missing}; it has {sorted(costs)}")
            costs = {m: _finite(f"cost of {m!r}", c) for m, c in costs.items()}
        elif not callable(costs):
            raise ConfigError(f"costs must be a table {{model: cost}}, 'latency', 'flops', 'tokens' or a "
                              f"function (model, answer, seconds) -> cost, got {costs!r}")
        self.costs = costs

    def __call__(self, model: str, answer: Any, seconds: float, usage: Mapping[str, float]) -> float:
        costs = self.costs
        if isinstance(costs, Mapping):
            try:
                return costs[model]
            except KeyError:
                raise ConfigError(f"the cost table has no entry for model {model!r}; it has {sorted(costs)}") from None
        if costs == "latency":
            return seconds
        if isinstance(costs, str):
            if costs not in usage:
                raise ConfigError(f"costs={costs!r} needs models that report it; {model!r} reported "
                                  f"{sorted(usage) or 'nothing'}")
            return _finite(f"{costs} reported by {model!r}", usage[costs])
        return _finite(f"the cost function's result for {model!r}", costs(model, answer, seconds))
