"""Online frequency counts with optional exponential decay (the P(q) half of LEC's priority)."""

from __future__ import annotations

from collections.abc import Callable, Hashable

from cachemux.errors import ConfigError, check_positive

__all__ = ["FORGET_BELOW", "FrequencyEstimator", "RESCALE_AT"]

# Defined here only: the disk and Redis stores run the same decay and must rescale at the same
# weight and forget the same counts, or they would drift from the pure policy.
RESCALE_AT = 1e150  # a request's weight past this rescales every count so that it weighs 1
FORGET_BELOW = 1e-12  # counts at or below this (in requests of the current weight) are dropped
_MIN_HALF_LIFE = 1e-3  # 2**(1/half_life) must stay a finite float


class FrequencyEstimator:
    """Counts requests per key; ``prob(key)`` = count / total is the online estimate of P(q).

    With ``half_life`` (in requests) old requests weigh less: instead of multiplying every count
    by a decay factor per request (O(n)), each new request adds a weight that grows by
    2**(1/half_life), which ranks keys identically. When weights get large all counts are
    rescaled at once, ``epoch`` increments and ``on_rescale(factor)`` is called, so anyone holding
    derived priorities can refresh.
    """

    __slots__ = ("_counts", "total", "_inc", "_growth", "half_life", "epoch", "scale", "_on_rescale")

    def __init__(self, half_life: float | None = None,
                 on_rescale: Callable[[float], object] | None = None) -> None:
        self.half_life = None if half_life is None else check_positive("half_life", half_life)
        if self.half_life is not None and self.half_life < _MIN_HALF_LIFE:
            # 2**(1/half_life) would overflow a float
            raise ConfigError(f"half_life must be >= {_MIN_HALF_LIFE} requests, got {half_life!r}")
        self._growth = 1.0 if self.half_life is None else 2.0 ** (1.0 / self.half_life)
        self._counts: dict[Hashable, float] = {}
        self.total = 0.0
        self._inc = 1.0
        self.epoch = 0
        self.scale = 1.0  # the factor the latest rescale multiplied every count by
        self._on_rescale = on_rescale  # called with that factor, for holders of derived priorities

    def __len__(self) -> int:
        return len(self._counts)

    @property
    def weight(self) -> float:
        """The weight the next request will add (1.0 without decay): one request "now"."""
        return self._inc

    def observe(self, key: Hashable) -> float:
        """Count one request for ``key``; return its (weighted) count."""
        inc = self._inc
        counts = self._counts
        c = counts[key] = counts.get(key, 0.0) + inc
        self.total += inc
        if self._growth != 1.0:
            nxt = inc * self._growth
            if nxt > RESCALE_AT:
                # rescale so that this request weighs 1: its own count stays >= 1 and is kept
                self._rescale(1.0 / inc)
                c = self._counts[key]
                nxt = self._growth
            self._inc = nxt
        return c

    def count(self, key: Hashable) -> float:
        return self._counts.get(key, 0.0)

    def prob(self, key: Hashable) -> float:
        return self._counts.get(key, 0.0) / self.total if self.total else 0.0

    def effective_count(self, key: Hashable) -> float:
        """The count in units of the next request's weight (1.0 = as much as one request now)."""
        return self._counts.get(key, 0.0) / self._inc

    def _rescale(self, f: float) -> None:
        # counts at or below FORGET_BELOW of one current request are forgotten (memory stays bounded)
        self._counts = {k: v * f for k, v in self._counts.items() if v * f > FORGET_BELOW}
        self.total *= f
        self.scale = f
        self.epoch += 1
        if self._on_rescale is not None:
            self._on_rescale(f)

    def __repr__(self) -> str:
        return f"FrequencyEstimator(keys={len(self)}, total={self.total:g}, half_life={self.half_life})"
