"""GDSF (Greedy-Dual-Size-Frequency, Cherkasova 1998): priority = clock + freq * cost / size."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import ClassVar

from cachemux.policies.base import Policy
from cachemux.policies.heap import LazyHeap
from cachemux.policies.replay import replay_heap

__all__ = ["GDSF"]

# a cached key's heap record: [H, seq, F, C, S] (LazyHeap's two fields, then GDSF's own three)
_F, _C, _S = 2, 3, 4


class GDSF(Policy):
    """The practical online form of LEC.

    H(q) = clock + F(q) * C(q) / S(q), where F counts requests since admission, C is the latest
    supplied cost (in the joint design: the cost under the multiplexer) and S the entry's size.
    Every miss is admitted; the entry with the least H is evicted and the clock becomes its H,
    so entries not touched for a long time age out relative to newcomers (the "inflation" that
    stands in for P(q) decaying). Untouched entries keep their H, so a lazy heap is exact.
    F, C and S live in the key's heap record, so a hit reads and writes one list.
    """

    name = "gdsf"
    cost_aware = True
    family = "greedy-dual"
    family_options = ("use_freq",)
    use_freq: ClassVar[bool] = True

    def __init__(self, capacity: float) -> None:
        super().__init__(capacity)
        self.clock = 0.0
        self._heap = LazyHeap()

    def priority(self, key: Hashable) -> float:
        return self._heap.priority(key)

    def frequency(self, key: Hashable) -> int:
        """F(q): requests for a cached key since its admission."""
        f: int = self._heap.record(key)[_F]
        return f

    def replay(self, keys: Iterable[Hashable], costs: Iterable[float] | None = None,
               sizes: Iterable[float] | None = None) -> int:
        """``Policy.replay`` as one loop over the heap (``cachemux.policies.replay``)."""
        return replay_heap(self, keys, costs, sizes)

    def _on_hit(self, key: Hashable, cost: float | None) -> None:
        rec = self._heap.record(key)
        f = rec[_F] = rec[_F] + 1
        if cost is None:
            cost = rec[_C]
        else:
            rec[_C] = cost  # validated by Policy
        # H(q) = clock + F(q) * C(q) / S(q), refreshed to the current clock on every hit
        self._heap.push(key, self.clock + (f if self.use_freq else 1) * cost / rec[_S])

    def _insert(self, key: Hashable, cost: float | None, size: float) -> None:
        # H with F = 1; the record carries F, C and S
        self._heap.push(key, self.clock + cost / size, 1, cost, size)  # type: ignore[operator]

    def _pop_victim(self) -> Hashable:
        entry = self._heap.pop_entry()
        self.clock = entry[0]  # GDSF's inflation step: L := H(victim)
        victim: Hashable = entry[2]
        return victim

    def _forget(self, key: Hashable) -> None:
        self._heap.remove(key)

    def _check(self) -> None:
        self._heap.check()
        if len(self._heap) != len(self._sizes) or any(k not in self._heap for k in self._sizes):
            raise AssertionError("priority heap and entry map disagree")
        for key, h in self._heap.items():
            rec = self._heap.record(key)
            if rec[_S] != self._sizes[key]:
                raise AssertionError(f"record of {key!r} has size {rec[_S]}, entry map {self._sizes[key]}")
            if h < self.clock - 1e-9:
                raise AssertionError(f"H({key!r})={h} is below the clock {self.clock}")
