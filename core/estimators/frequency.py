"""Online frequency counts with optional exponential decay (the P(q) half of LEC's priority)."""

from __future__ import annotations

from collections.abc import Hashable

from cachemux.errors import check_positive

__all__ = ["FrequencyEstimator"]

_RESCALE_AT = 1e150


class FrequencyEstimator:
    """Counts requests per key; ``prob(key)`` = count / total is the online estimate of P(q).

    With ``half_life`` (in requests) old requests weigh less: instead of multiplying every count
    by a decay factor per request (O(n)), each new request adds a weight that grows by
    2**(1/half_life), which ranks keys identically. When weights get large all counts are
    rescaled at once and ``epoch`` increments, so anyone holding derived priorities can refresh.
    """

    __slots__ = ("_counts", "total", "_inc", "_growth", "half_life", "epoch")

    def __init__(self, half_life: float | None = None) -> None:
        self.half_life = None if half_life is None else check_positive("half_life", half_life)
        self._growth = 1.0 if half_life is None else 2.0 ** (1.0 / self.half_life)
        self._counts: dict[Hashable, float] = {}
        self.total = 0.0
        self._inc = 1.0
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._counts)

    def observe(self, key: Hashable) -> float:
        """Count one request for ``key``; return its (weighted) count."""
        inc = self._inc
        c = self._counts.get(key, 0.0) + inc
        self._counts[key] = c
        self.total += inc
        if self._growth != 1.0:
            self._inc = inc * self._growth
            if self._inc > _RESCALE_AT:
                self._rescale()
                c = self._counts[key]
        return c

    def count(self, key: Hashable) -> float:
        return self._counts.get(key, 0.0)

    def prob(self, key: Hashable) -> float:
        return self._counts.get(key, 0.0) / self.total if self.total else 0.0

    def effective_count(self, key: Hashable) -> float:
        """The count in units of the current request's weight (1.0 = seen once just now)."""
        return self._counts.get(key, 0.0) / self._inc

    def _rescale(self) -> None:
        f = 1.0 / self._inc
        self._counts = {k: v * f for k, v in self._counts.items() if v * f > 1e-12}
        self.total *= f
        self._inc = 1.0
        self.epoch += 1

    def __repr__(self) -> str:
        return f"FrequencyEstimator(keys={len(self)}, total={self.total:g}, half_life={self.half_life})"

