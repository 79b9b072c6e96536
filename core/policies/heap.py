"""A lazy min-heap keyed by item: O(log n) push/update/pop, stale entries skipped and compacted."""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator

__all__ = ["LazyHeap"]

_STALE = object()  # marks an entry superseded by a newer push or removed


class LazyHeap:
    """Min-heap of ``(priority, seq, key)``; ties go to the smaller ``seq`` (the older update).

    Updating a key pushes a fresh entry and marks the old one stale instead of searching for
    it (cachetools ``TLRUCache`` style). The heap is rebuilt from live entries once stale
    entries outnumber live ones, so memory stays O(live) and every operation O(log n) amortised.
    """

    __slots__ = ("_heap", "_entry", "_seq")

    def __init__(self) -> None:
        self._heap: list[list] = []
        self._entry: dict[Hashable, list] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._entry)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entry

    def priority(self, key: Hashable) -> float:
        return self._entry[key][0]

    def push(self, key: Hashable, priority: float) -> None:
        """Insert ``key`` or change its priority."""
        old = self._entry.get(key)
        if old is not None:
            old[2] = _STALE
        self._seq += 1
        entry = [priority, self._seq, key]
        self._entry[key] = entry
        heap = self._heap
        heapq.heappush(heap, entry)
        if len(heap) > 2 * len(self._entry) + 64:
            self._compact()

    def remove(self, key: Hashable) -> None:
        self._entry.pop(key)[2] = _STALE

    def peek(self) -> tuple[Hashable, float]:
        """The live key with the smallest priority (ties: oldest update), without removing it."""
        heap = self._heap
        while heap[0][2] is _STALE:
            heapq.heappop(heap)
        e = heap[0]
        return e[2], e[0]

    def pop(self) -> tuple[Hashable, float]:
        """Remove and return the live key with the smallest priority and that priority."""
        heap = self._heap
        while True:
            prio, _, key = heapq.heappop(heap)
            if key is not _STALE:
                del self._entry[key]
                return key, prio

    def pop_entry(self) -> list:
        """Remove the smallest live entry and return it whole, for ``restore`` (admission previews)."""
        heap = self._heap
        while True:
            entry = heapq.heappop(heap)
            if entry[2] is not _STALE:
                del self._entry[entry[2]]
                return entry

    def restore(self, entry: list) -> None:
        """Put back an entry taken by ``pop_entry``, keeping its original tie-break order."""
        self._entry[entry[2]] = entry
        heapq.heappush(self._heap, entry)

    def items(self) -> Iterator[tuple[Hashable, float]]:
        return ((k, e[0]) for k, e in self._entry.items())

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if e[2] is not _STALE]
        heapq.heapify(self._heap)

    def check(self) -> None:
        """Heap and map agree: each live entry is in the heap exactly once and maps back to its key."""
        live = [e for e in self._heap if e[2] is not _STALE]
        if len(live) != len(self._entry):
            raise AssertionError(f"heap has {len(live)} live entries, map has {len(self._entry)}")
        for e in live:
            if self._entry.get(e[2]) is not e:
                raise AssertionError(f"heap entry for {e[2]!r} is not the map's current entry")
        if len(self._heap) > 2 * len(self._entry) + 65:
            raise AssertionError("stale entries were not compacted")
