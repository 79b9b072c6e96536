"""GDSF (Greedy-Dual-Size-Frequency, Cherkasova 1998): priority = clock + freq * cost / size."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from heapq import heappop, heappush
from typing import ClassVar

from cachemux.errors import check_cost
from cachemux.policies.base import Policy
from cachemux.policies.heap import STALE, LazyHeap

__all__ = ["GDSF"]

_INF = math.inf
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
        return self._heap.record(key)[_F]

    def replay(self, keys: Iterable[Hashable], costs: Iterable[float] | None = None,
               sizes: Iterable[float] | None = None) -> int:
        """``Policy.replay`` with the hooks and the heap's push/pop written into one loop.

        The same operations in the same order as ``access`` per request (so the same hits,
        evictions, clock and tie-break sequence numbers); only the method calls and attribute
        look-ups are gone. Sized traces and cost-less traces take the generic loop.
        """
        if sizes is not None or costs is None:
            return super().replay(keys, costs, sizes)
        cached = self._sizes
        lh = self._heap
        heap, entries = lh._heap, lh._entry
        seq = lh._seq
        use_freq = self.use_freq
        capacity = self.capacity
        fits = capacity >= 1
        used, clock = self.used, self.clock
        hits = misses = evicted = 0
        try:
            for key, cost in zip(keys, costs):
                rec = entries.get(key)  # every cached key has a record, and only they
                if rec is not None:
                    if cost is None:  # a hit may leave the cost out: the stored one stands
                        cost = rec[3]
                    elif not (cost.__class__ is float and 0.0 <= cost < _INF):
                        cost = rec[3] = check_cost(key, cost)
                    else:
                        rec[3] = cost
                    hits += 1
                    f = rec[2] = rec[2] + 1
                    prio = clock + (f if use_freq else 1) * cost / rec[4]
                    seq += 1  # LazyHeap.push(key, prio)
                    if prio >= rec[0]:
                        rec[0] = prio
                        rec[1] = seq
                        continue
                    rec = rec.copy()
                    entries[key][1] = STALE
                    rec[0] = prio
                    rec[1] = seq
                else:
                    if not (cost.__class__ is float and 0.0 <= cost < _INF):
                        cost = check_cost(key, cost)
                    misses += 1
                    if not fits:
                        continue
                    if used + 1 > capacity:  # evict until it fits (Policy._place)
                        while used + 1 > capacity:
                            e = heap[0]  # LazyHeap.pop_entry
                            if e[1] != e[3][1]:
                                e = lh._top()
                            heappop(heap)
                            victim = e[2]
                            del entries[victim]
                            if len(heap) > 2 * len(entries) + 64:
                                lh._compact()
                                heap = lh._heap
                            clock = e[0]  # GDSF's inflation step
                            used -= cached.pop(victim)
                            if not cached:
                                used = 0.0
                            evicted += 1
                    cached[key] = 1
                    used = used + 1
                    prio = clock + cost / 1
                    seq += 1  # LazyHeap.push(key, prio, 1, cost, 1)
                    rec = [prio, seq, 1, cost, 1]
                entries[key] = rec
                heappush(heap, (prio, seq, key, rec))
                if len(heap) > 2 * len(entries) + 64:
                    lh._compact()
                    heap = lh._heap
        finally:
            lh._seq = seq
            self.used, self.clock = used, clock
            self.hits += hits
            self.misses += misses
            self.evictions += evicted
        return hits

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
        return entry[2]

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
