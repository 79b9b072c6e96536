"""Running means per key (e.g. per (query, model) cost or success), with an optional prior."""

from __future__ import annotations

import math
from collections.abc import Hashable

from cachemux.errors import ConfigError

__all__ = ["RunningMeans"]


class RunningMeans:
    """Incremental mean and count per key; ``lcb`` gives the optimistic estimate the paper's
    online notebook uses (mean - beta*sqrt(1/n), clipped at a known floor)."""

    __slots__ = ("_n", "_mean")

    def __init__(self) -> None:
        self._n: dict[Hashable, int] = {}
        self._mean: dict[Hashable, float] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._n

    def __len__(self) -> int:
        return len(self._n)

    def observe(self, key: Hashable, value: float) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"observation for {key!r} must be a number, got {value!r}") from None
        if math.isnan(v) or math.isinf(v):
            raise ConfigError(f"observation for {key!r} must be a finite number, got {value!r}")
        n = self._n.get(key, 0) + 1
        m = self._mean.get(key, 0.0)
        m += (v - m) / n
        self._n[key] = n
        self._mean[key] = m
        return m

    def count(self, key: Hashable) -> int:
        return self._n.get(key, 0)

    def mean(self, key: Hashable, default: float | None = None) -> float | None:
        return self._mean.get(key, default)

    def lcb(self, key: Hashable, beta: float, floor: float, default: float) -> float:
        """Lower confidence bound: ``max(mean - beta/sqrt(n), floor)``; ``default`` if unseen."""
        n = self._n.get(key, 0)
        if n == 0:
            return default
        return max(self._mean[key] - beta / math.sqrt(n), floor)
