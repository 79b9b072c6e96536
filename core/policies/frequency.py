"""The shared machinery of LFU and online LEC: priority = frequency * cost / size on a lazy heap."""

from __future__ import annotations

from collections.abc import Hashable
from typing import ClassVar

from cachemux.errors import check_cost
from cachemux.estimators.frequency import FrequencyEstimator
from cachemux.policies.base import Policy
from cachemux.policies.heap import LazyHeap

__all__ = ["FrequencyPolicy"]


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

    use_cost: ClassVar[bool] = False

    def __init__(self, capacity: float, *, history: bool, admission: bool,
                 half_life: float | None = None) -> None:
        super().__init__(capacity)
        self.history = history
        self.admission = admission
        self._freq = FrequencyEstimator(half_life) if history else None
        self._epoch = 0
        self._local: dict[Hashable, float] = {}  # in-cache counts (history=False)
        self._cost: dict[Hashable, float] = {}  # latest cost per cached key
        self._heap = LazyHeap()

    def frequency(self, key: Hashable) -> float:
        """The frequency this policy ranks ``key`` by (0 if never seen)."""
        if self._freq is not None:
            return self._freq.count(key)
        return self._local.get(key, 0.0)

    def priority(self, key: Hashable) -> float:
        """Current priority of a cached key."""
        return self._heap.priority(key)

    def _score(self, freq: float, cost: float | None, size: float) -> float:
        return freq * cost / size if self.use_cost else freq / size  # type: ignore[operator]

    def _observe(self, key: Hashable) -> float:
        freq = self._freq
        n = freq.observe(key)  # type: ignore[union-attr]
        if freq.epoch != self._epoch:  # type: ignore[union-attr]
            self._epoch = freq.epoch  # type: ignore[union-attr]
            for k in self._sizes:  # counts were rescaled: re-rank every cached key (rare)
                self._heap.push(k, self._score(freq.count(k), self._cost.get(k), self._sizes[k]))  # type: ignore[union-attr]
            n = freq.count(key)  # type: ignore[union-attr]
        return n

    def _on_hit(self, key: Hashable, cost: float | None) -> None:
        if self._freq is not None:
            n = self._observe(key)
        else:
            n = self._local[key] = self._local[key] + 1.0
        if cost is not None and self.use_cost:
            self._cost[key] = check_cost(key, cost)
        self._heap.push(key, self._score(n, self._cost.get(key), self._sizes[key]))

    def _on_miss(self, key: Hashable, cost: float | None) -> None:
        if self._freq is not None:
            self._observe(key)

    def _should_admit(self, key: Hashable, cost: float | None, size: float) -> bool:
        if not self.admission or self.used + size <= self.capacity:
            return True
        n = self._freq.count(key) if self._freq is not None else 1.0
        mine = self._score(n or 1.0, cost, size)
        need = self.used + size - self.capacity
        victim, prio = self._heap.peek()
        if prio >= mine:
            return False
        if self._sizes[victim] >= need - 1e-12:  # one victim frees enough (always, at unit size)
            return True
        # preview the several victims it would take, without evicting them
        taken: list[list] = []
        ok = True
        while need > 1e-12:
            entry = self._heap.pop_entry()
            taken.append(entry)
            if entry[0] >= mine:
                ok = False
                break
            need -= self._sizes[entry[2]]
        for entry in taken:
            self._heap.restore(entry)
        return ok

    def _insert(self, key: Hashable, cost: float | None, size: float) -> None:
        if self._freq is not None:
            n = self._freq.count(key) or 1.0
        else:
            n = self._local[key] = 1.0
        if self.use_cost:
            self._cost[key] = cost  # type: ignore[assignment]
        self._heap.push(key, self._score(n, cost, size))

    def _pop_victim(self) -> Hashable:
        key, _ = self._heap.pop()
        self._local.pop(key, None)
        self._cost.pop(key, None)
        return key

    def _forget(self, key: Hashable) -> None:
        self._heap.remove(key)
        self._local.pop(key, None)
        self._cost.pop(key, None)

    def _check(self) -> None:
        self._heap.check()
        if len(self._heap) != len(self._sizes) or any(k not in self._heap for k in self._sizes):
            raise AssertionError("priority heap and entry map disagree")
        for k in self._sizes:
            want = self._score(self.frequency(k), self._cost.get(k), self._sizes[k])
            got = self._heap.priority(k)
            if abs(want - got) > 1e-9 * max(1.0, abs(want)):
                raise AssertionError(f"stale priority for {k!r}: heap has {got}, should be {want}")

