"""Belady's MIN: the offline optimum for unit costs and sizes (simulator only: it reads the future)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

from cachemux.errors import ConfigError
from cachemux.policies.base import Policy
from cachemux.policies.heap import LazyHeap

__all__ = ["Belady"]


class Belady(Policy):
    """Evict the entry requested farthest in the future; bypass a newcomer needed later than all.

    Built with the whole trace; requests must then follow that trace in order. Maximises hits
    (unit cost, unit size), so it bounds every other policy's hit count on the same trace.
    """

    name = "belady"

    def __init__(self, capacity: float, trace: Sequence[Hashable] | None = None) -> None:
        super().__init__(capacity)
        if trace is None:
            raise ConfigError("belady needs trace=[...]: it is an offline policy that reads the future")
        self._trace = list(trace)
        nxt = [math.inf] * len(self._trace)
        last: dict[Hashable, int] = {}
        for i in range(len(self._trace) - 1, -1, -1):
            k = self._trace[i]
            nxt[i] = last.get(k, math.inf)
            last[k] = i
        self._next = nxt
        self._pos = 0
        self._pending = math.inf
        self._heap = LazyHeap()  # priority = -next use, so the min is the farthest

    def _advance(self, key: Hashable) -> float:
        pos = self._pos
        if pos >= len(self._trace) or self._trace[pos] != key:
            want = self._trace[pos] if pos < len(self._trace) else "<end of trace>"
            raise ConfigError(f"belady: request #{pos} is {key!r} but the trace it was built with has {want!r}")
        self._pos = pos + 1
        return self._next[pos]

    def _on_hit(self, key: Hashable, cost: float | None) -> None:
        # also the pending next use, in case the caller re-offers this cached key with admit()
        self._pending = nxt = self._advance(key)
        self._heap.push(key, -nxt)

    def _on_miss(self, key: Hashable, cost: float | None) -> None:
        self._pending = self._advance(key)

    def _should_admit(self, key: Hashable, cost: float | None, size: float) -> bool:
        if size != 1:
            raise ConfigError(f"belady supports unit sizes only, got size={size!r} for key {key!r}")
        if self._pending == math.inf:
            return False  # never requested again
        if self.used + 1 <= self.capacity:
            return True
        return self._pending < -self._heap.peek()[1]

    def _insert(self, key: Hashable, cost: float | None, size: float) -> None:
        self._heap.push(key, -self._pending)

    def _pop_victim(self) -> Hashable:
        return self._heap.pop()[0]

    def _forget(self, key: Hashable) -> None:
        self._heap.remove(key)

    def _check(self) -> None:
        self._heap.check()
        if set(k for k, _ in self._heap.items()) != set(self._sizes):
            raise AssertionError("next-use heap and entry map disagree")
