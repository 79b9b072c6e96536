"""GDSF (Greedy-Dual-Size-Frequency, Cherkasova 1998): priority = clock + freq * cost / size."""

from __future__ import annotations

from collections.abc import Hashable
from typing import ClassVar

from cachemux.policies.base import Policy
from cachemux.policies.heap import LazyHeap

__all__ = ["GDSF"]


class GDSF(Policy):
    """The practical online form of LEC.

    H(q) = clock + F(q) * C(q) / S(q), where F counts requests since admission, C is the latest
    supplied cost (in the joint design: the cost under the multiplexer) and S the entry's size.
    Every miss is admitted; the entry with the least H is evicted and the clock becomes its H,
    so entries not touched for a long time age out relative to newcomers (the "inflation" that
    stands in for P(q) decaying). Untouched entries keep their H, so a lazy heap is exact.
    """

    name = "gdsf"
    cost_aware = True
    use_freq: ClassVar[bool] = True

    def __init__(self, capacity: float) -> None:
        super().__init__(capacity)
        self.clock = 0.0
        self._heap = LazyHeap()
        self._freq: dict[Hashable, int] = {}
        self._cost: dict[Hashable, float] = {}

    def priority(self, key: Hashable) -> float:
        return self._heap.priority(key)

    def _on_hit(self, key: Hashable, cost: float | None) -> None:
        f = self._freq[key] = self._freq[key] + 1
        if cost is None:
            cost = self._cost[key]
        else:
            self._cost[key] = cost  # validated by Policy
        # H(q) = clock + F(q) * C(q) / S(q), refreshed to the current clock on every hit
        self._heap.push(key, self.clock + (f if self.use_freq else 1) * cost / self._sizes[key])

    def _insert(self, key: Hashable, cost: float | None, size: float) -> None:
        self._freq[key] = 1
        self._cost[key] = cost  # type: ignore[assignment]  # checked by Policy
        self._heap.push(key, self.clock + cost / size)  # type: ignore[operator]  # H with F = 1

    def _pop_victim(self) -> Hashable:
        entry = self._heap.pop_entry()
        key = entry[2]
        self.clock = entry[0]  # GDSF's inflation step: L := H(victim)
        del self._freq[key], self._cost[key]
        return key

    def _forget(self, key: Hashable) -> None:
        self._heap.remove(key)
        del self._freq[key], self._cost[key]

    def _check(self) -> None:
        self._heap.check()
        if len(self._heap) != len(self._sizes) or set(self._freq) != set(self._sizes):
            raise AssertionError("priority heap, counts and entry map disagree")
        for key, h in self._heap.items():
            if h < self.clock - 1e-9:
                raise AssertionError(f"H({key!r})={h} is below the clock {self.clock}")
