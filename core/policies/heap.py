"""A lazy min-heap keyed by item: O(log n) push/update/pop, stale entries skipped and compacted."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from heapq import heapify, heappop, heappush, heapreplace

__all__ = ["LazyHeap"]

_STALE = object()  # marks an entry superseded by a lower priority or removed


class LazyHeap:
    """Min-heap of ``(priority, seq, key)``; ties go to the smaller ``seq`` (the older update).

    Lowering a key's priority pushes a fresh entry and marks the old one stale instead of
    searching for it (cachetools ``TLRUCache`` style). The heap is rebuilt from live entries once
    stale entries outnumber live ones, so memory stays O(live) and every operation O(log n)
    amortised.

    Raising a key's priority (to at least where its entry sits: what a cache hit does, as a count
    goes up or GDSF's clock moves on) is only written down in the entry, ``[priority, seq, key, new_priority, new_seq]``, and applied
    when that entry reaches the top: an entry's place in the heap is then never above its true
    ``(priority, seq)``, so a top entry that is up to date is the true minimum, and one that is
    not is re-seated and the search goes on. The order is exactly that of updating eagerly
    (``new_seq`` is taken when the raise happens), but a hit costs a dict look-up and two stores
    instead of a ``heappush``, and a key hit many times between evictions is re-seated at most once.
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
        return self._entry[key][3]

    def push(self, key: Hashable, priority: float) -> None:
        """Insert ``key`` or change its priority."""
        self._seq = seq = self._seq + 1
        entries = self._entry
        old = entries.get(key)
        if old is not None:
            if priority >= old[0]:  # a raise: deferred until the entry reaches the top
                old[3] = priority
                old[4] = seq
                return
            old[2] = _STALE
        entry = [priority, seq, key, priority, seq]
        entries[key] = entry
        heap = self._heap
        heappush(heap, entry)
        if len(heap) > 2 * len(entries) + 64:
            self._compact()

    def remove(self, key: Hashable) -> None:
        entries = self._entry
        entries.pop(key)[2] = _STALE
        if len(self._heap) > 2 * len(entries) + 64:
            self._compact()

    def _top(self) -> list:
        """The entry with the smallest true ``(priority, seq)``, left at the top of the heap."""
        heap = self._heap
        while True:
            e = heap[0]
            if e[2] is _STALE:
                heappop(heap)
            elif e[1] != e[4]:  # a deferred raise: re-seat the entry at its true priority
                e[0] = e[3]
                e[1] = e[4]
                heapreplace(heap, e)
            else:
                return e

    def peek(self) -> tuple[Hashable, float]:
        """The live key with the smallest priority (ties: oldest update), without removing it."""
        e = self._heap[0]
        if e[2] is _STALE or e[1] != e[4]:
            e = self._top()
        return e[2], e[0]

    def pop(self) -> tuple[Hashable, float]:
        """Remove and return the live key with the smallest priority and that priority."""
        e = self.pop_entry()
        return e[2], e[0]

    def pop_entry(self) -> list:
        """Remove the smallest live entry and return it whole (``[priority, seq, key, ...]``);
        ``restore`` puts it back (admission previews)."""
        heap = self._heap
        e = heap[0]
        if e[2] is _STALE or e[1] != e[4]:
            e = self._top()
        heappop(heap)
        entries = self._entry
        del entries[e[2]]
        if len(heap) > 2 * len(entries) + 64:
            self._compact()
        return e

    def restore(self, entry: list) -> None:
        """Put back an entry taken by ``pop_entry``, keeping its original tie-break order."""
        self._entry[entry[2]] = entry
        heappush(self._heap, entry)

    def items(self) -> Iterator[tuple[Hashable, float]]:
        return ((k, e[3]) for k, e in self._entry.items())

    def _compact(self) -> None:
        live = [e for e in self._heap if e[2] is not _STALE]
        for e in live:  # apply the deferred raises while rebuilding anyway
            e[0] = e[3]
            e[1] = e[4]
        heapify(live)
        self._heap = live

    def check(self) -> None:
        """Heap and map agree: each live entry is in the heap exactly once and maps back to its key,
        and no entry sits above its true priority."""
        live = [e for e in self._heap if e[2] is not _STALE]
        if len(live) != len(self._entry):
            raise AssertionError(f"heap has {len(live)} live entries, map has {len(self._entry)}")
        for e in live:
            if self._entry.get(e[2]) is not e:
                raise AssertionError(f"heap entry for {e[2]!r} is not the map's current entry")
            if (e[0], e[1]) > (e[3], e[4]):
                raise AssertionError(f"heap entry for {e[2]!r} sits above its true priority")
        for i in range(1, len(self._heap)):
            if self._heap[i][:2] < self._heap[(i - 1) // 2][:2]:
                raise AssertionError("heap order is broken")
        if len(self._heap) > 2 * len(self._entry) + 65:
            raise AssertionError("stale entries were not compacted")
