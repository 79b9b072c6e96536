"""The shared machinery of LFU and online LEC: priority = frequency * cost / size on a lazy heap."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from typing import ClassVar

from cachemux.estimators.frequency import FrequencyEstimator
from cachemux.policies.base import Policy
from cachemux.policies.heap import LazyHeap
from cachemux.policies.replay import replay_heap

__all__ = ["FrequencyPolicy"]

# a cached key's heap record: [priority, seq, N, C, S] (LazyHeap's two fields, then the
# frequency it is ranked by, its latest cost (None unless use_cost) and its size)
_N, _C, _S = 2, 3, 4


class FrequencyPolicy(Policy):
    """Evict the entry with the least ``freq * cost / size``.

    * ``history=False``: freq counts requests since admission (classic in-cache LFU).
    * ``history=True``: freq counts every request ever seen for the key, cached or not
      (the paper's P(q) estimate; "perfect LFU"), optionally decayed by ``half_life``.
    * ``admission=True``: when full, a missed key is admitted only if its priority is strictly
      higher than that of every entry it would evict (the paper's online LEC step; ties keep
      the incumbent). ``admission=False`` admits every miss, as classic policies do.

    A key's priority changes only when it is requested (counts and costs move then), so a lazy
    heap keeps eviction at O(log n).
    """

    family = "frequency"
    family_options = ("use_cost",)
    use_cost: ClassVar[bool] = False

    def __init__(self, capacity: float, *, history: bool, admission: bool,
                 half_life: float | None = None) -> None:
        super().__init__(capacity)
        self.history = history
        self.admission = admission
        # counts rescaled by decay re-rank the cached keys through the callback (rare)
        self._freq = FrequencyEstimator(half_life, on_rescale=self._rescaled) if history else None
        # per cached key, in its heap record: the frequency it is ranked by (its in-cache count
        # with history=False, or its history count as of its last request, floored at one
        # request for a key admitted without ever being looked up, with history=True), its
        # latest cost (use_cost) and its size
        self._use_cost = self.use_cost  # faster on the instance, read on every request
        self._heap = LazyHeap()

    def frequency(self, key: Hashable) -> float:
        """The frequency this policy ranks ``key`` by (0 if never seen)."""
        rec = self._heap._entry.get(key)
        if rec is not None:
            n: float = rec[_N]
            return n
        return self._freq.count(key) if self._freq is not None else 0.0

    def priority(self, key: Hashable) -> float:
        """Current priority of a cached key."""
        return self._heap.priority(key)

    def _score(self, freq: float, cost: float | None, size: float) -> float:
        return freq * cost / size if self.use_cost else freq / size  # type: ignore[operator]

    def _new_count(self, key: Hashable) -> float:
        """The frequency a newcomer enters with: its history count, or one request's weight."""
        freq = self._freq
        if freq is None:
            return 1.0
        return freq.count(key) or freq.weight

    def _rescaled(self, f: float) -> None:
        """The estimator multiplied every count by ``f`` (decay): scale the cached keys' and re-rank."""
        heap = self._heap
        for k, s in self._sizes.items():
            rec = heap.record(k)
            rec[_N] *= f
            heap.push(k, self._score(rec[_N], rec[_C], s))

    def replay(self, keys: Iterable[Hashable], costs: Iterable[float] | None = None,
               sizes: Iterable[float] | None = None) -> int:
        """``Policy.replay`` as one loop over the heap (``cachemux.policies.replay``)."""
        return replay_heap(self, keys, costs, sizes)

    def _on_hit(self, key: Hashable, cost: float | None) -> None:
        freq = self._freq
        heap = self._heap
        if freq is None:
            rec = heap.record(key)
            n = rec[_N] = rec[_N] + 1.0
        else:
            n = freq.observe(key)  # may rescale (decay), which re-ranks: read the record after
            rec = heap.record(key)
            rec[_N] = n
        if self._use_cost:
            if cost is None:
                cost = rec[_C]
            else:
                rec[_C] = cost  # validated by Policy
            heap.push(key, n * cost / rec[_S])
        else:
            heap.push(key, n / rec[_S])

    def _on_miss(self, key: Hashable, cost: float | None) -> None:
        if self._freq is not None:
            self._freq.observe(key)

    def _should_admit(self, key: Hashable, cost: float | None, size: float) -> bool:
        if not self.admission or self.used + size <= self.capacity:
            return True
        # LEC's admission step: replace the lowest-priority entries only if the newcomer's
        # priority is strictly higher than each of theirs (ties keep the incumbents)
        freq = self._freq
        n = (freq.count(key) or freq.weight) if freq is not None else 1.0  # as _new_count
        mine = n * cost / size if self._use_cost else n / size  # type: ignore[operator]  # _score
        heap = self._heap
        victim, prio = heap.peek()
        if prio >= mine:
            return False
        sizes, capacity = self._sizes, self.capacity
        used = self.used - sizes[victim]
        if used + size <= capacity:  # one victim frees enough (always, at unit size)
            return True
        # preview the several victims it would take, with the eviction loop's own arithmetic
        taken = [heap.pop_entry()]
        ok = True
        while used + size > capacity and len(taken) < len(sizes):
            entry = heap.pop_entry()
            taken.append(entry)
            if entry[0] >= mine:
                ok = False
                break
            used -= sizes[entry[2]]
        for entry in taken:
            heap.restore(entry)
        return ok

    def _insert(self, key: Hashable, cost: float | None, size: float) -> None:
        n = self._new_count(key)
        self._heap.push(key, self._score(n, cost, size), n, cost if self._use_cost else None, size)

    def _pop_victim(self) -> Hashable:
        victim: Hashable = self._heap.pop_entry()[2]
        return victim

    def _forget(self, key: Hashable) -> None:
        self._heap.remove(key)

    def _check(self) -> None:
        self._heap.check()
        if len(self._heap) != len(self._sizes) or any(k not in self._heap for k in self._sizes):
            raise AssertionError("priority heap and entry map disagree")
        freq = self._freq
        for k, s in self._sizes.items():
            rec = self._heap.record(k)
            n = rec[_N]
            if rec[_S] != s:
                raise AssertionError(f"record of {k!r} has size {rec[_S]}, entry map {s}")
            if freq is not None and freq.count(k) and not math.isclose(n, freq.count(k), rel_tol=1e-9):
                raise AssertionError(f"{k!r} is ranked by frequency {n}, its count is {freq.count(k)}")
            want = self._score(n, rec[_C], s)
            got = self._heap.priority(k)
            if abs(want - got) > 1e-9 * max(1.0, abs(want)):
                raise AssertionError(f"stale priority for {k!r}: heap has {got}, should be {want}")
