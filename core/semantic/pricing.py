"""What an entry of a ``SemanticCache`` is priced at: the miss clock and the cost function.

A miss starts a clock for its exact key; the ``update`` of that key takes the oldest outstanding
one, so concurrent callers missing the same prompt each get their own clock (at most
``max_pending`` outstanding misses in all, oldest dropped; one older than ``PENDING_MAX_AGE_S`` is
forgotten: its call most likely failed). The clock also keeps the miss's embedding, so the update
does not embed the prompt again. An entry's cost, first that applies: the ``update``'s own cost,
``cost_fn(CostInfo)``, the measured latency, ``fallback_cost``, else the token estimate times the
seconds per token this cache measured (``FALLBACK_SECONDS_PER_TOKEN`` before any).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cachemux.errors import ConfigError, check_nonnegative
from cachemux.semantic.stats import CacheStats

__all__ = ["FALLBACK_SECONDS_PER_TOKEN", "PENDING_MAX_AGE_S", "CostInfo", "MissClock", "check_cost"]

# The price of an answer with no measured latency, per estimated token, until this cache has
# measured its own: ~10 ms/token is the order of a hosted model's decode time per output token.
FALLBACK_SECONDS_PER_TOKEN = 0.01
PENDING_MAX_AGE_S = 3600.0  # a miss with no update for this long belongs to a call that failed


@dataclass(frozen=True)
class CostInfo:
    """What ``cost_fn`` sees for one ``update``."""

    prompt: str
    llm_string: str
    value: str
    latency: float | None  # seconds from the miss to this update; None without a seen miss
    info: Any = None       # passed through from ``update(info=...)`` (adapters: generations)


def check_cost(name: str, cost: object) -> float:
    if isinstance(cost, bool):  # a flag passed by mistake, not a cost
        raise ConfigError(f"{name} must be a finite number >= 0, got {cost!r}")
    return check_nonnegative(name, cost)


Pending = tuple[str, float, "np.ndarray | None"]  # (exact key, monotonic time of the miss, embedding)


class MissClock:
    """The outstanding misses of one cache and the prices they give (see the module docstring)."""

    def __init__(self, stats: CacheStats, *, max_pending: int = 10_000,
                 cost_fn: Callable[[CostInfo], float] | None = None, fallback_cost: float | None = None) -> None:
        if not isinstance(max_pending, int) or max_pending < 1:
            raise ConfigError(f"max_pending must be an int >= 1, got {max_pending!r}")
        if cost_fn is not None and not callable(cost_fn):
            raise ConfigError(f"cost_fn must be callable, got {cost_fn!r}")
        self.stats = stats
        self.max_pending = max_pending
        self.cost_fn = cost_fn
        self.fallback_cost = None if fallback_cost is None else check_cost("fallback_cost", fallback_cost)
        self._lock = threading.Lock()
        # miss id -> (exact key, time, embedding), oldest first; per key its miss ids, oldest first
        self.pending: OrderedDict[int, Pending] = OrderedDict()
        self.pending_of: dict[str, deque[int]] = {}
        self._ids = itertools.count()
        # seconds and estimated tokens of the latency-priced updates: the fallback price per token
        self._seconds = 0.0
        self._tokens = 0.0

    def start(self, key: str, vec: np.ndarray | None) -> None:
        """A miss of ``key``: its clock starts (counted in ``misses``)."""
        self.stats.add(misses=1)
        with self._lock:
            now = time.monotonic()
            miss = next(self._ids)
            self.pending[miss] = (key, now, vec)
            self.pending_of.setdefault(key, deque()).append(miss)
            self._expire(now)

    def take(self, key: str) -> tuple[Pending | None, float]:
        """The oldest outstanding miss of ``key`` (removed) and the time now."""
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            return self._take(key), now

    def drop(self, key: str) -> None:
        """Forget the oldest outstanding miss of ``key`` (its answer is not cached)."""
        with self._lock:
            self._take(key)

    def _expire(self, now: float) -> None:
        """Forget the oldest misses beyond ``max_pending`` or the maximum age (caller holds the lock)."""
        pending, max_age = self.pending, PENDING_MAX_AGE_S
        while pending:
            miss, (key, t, _) = next(iter(pending.items()))
            if len(pending) <= self.max_pending and now - t <= max_age:
                return
            del pending[miss]
            self._take(key)  # the globally oldest miss is also the oldest of its key

    def _take(self, key: str) -> Pending | None:
        queue = self.pending_of.get(key)
        if not queue:
            return None
        miss = queue.popleft()
        if not queue:
            del self.pending_of[key]
        return self.pending.pop(miss, None)

    def price(self, cost: float | None, latency: float | None, tokens: float, info: CostInfo) -> float:
        """The entry's cost (see the module docstring); ``info`` is what ``cost_fn`` sees."""
        if cost is None and self.cost_fn is not None:
            cost = check_cost("cost_fn result", self.cost_fn(info))
        if cost is not None:
            return cost
        with self._lock:
            if latency is not None:  # the entry is priced in seconds: learn seconds per token
                self._seconds += latency
                self._tokens += tokens
                return latency
        if self.fallback_cost is not None:
            return self.fallback_cost
        self.stats.add(estimated=1)
        return tokens * self.seconds_per_token()

    def seconds_per_token(self) -> float:
        """Seconds per estimated token over the latency-priced updates, or
        ``FALLBACK_SECONDS_PER_TOKEN`` before any."""
        with self._lock:
            if self._tokens > 0:
                return self._seconds / self._tokens
        return FALLBACK_SECONDS_PER_TOKEN
