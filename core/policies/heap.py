"""A lazy min-heap keyed by item: O(log n) push/update/pop, stale entries skipped and compacted."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from heapq import heapify, heappop, heappush, heapreplace
from typing import Any

__all__ = ["LazyHeap"]

STALE = 0  # a record's seq once it was superseded by a cut or removed (live seqs start at 1)


class LazyHeap:
    """Min-heap of keys by ``(priority, seq)``; ties go to the smaller ``seq`` (the older update).

    Each live key has one record ``[priority, seq, *extra]`` (its true priority, the sequence
    number of its latest update, and any fields the policy keeps per key) and one heap item
    ``(priority, seq, key, record)``: where the record was seated. Items are tuples because the heap compares them on every sift (a tuple keeps its
    fields inline: about 1.6x faster to sift than a list).

    Lowering a key's priority (a cut) marks the old record stale (``seq = STALE``) and pushes a
    fresh one, instead of searching for it (cachetools ``TLRUCache`` style). The heap is rebuilt
    from live items once stale ones outnumber live ones, so memory stays O(live) and every
    operation O(log n) amortised.

    Raising a key's priority (what a cache hit does, as a count goes up or GDSF's clock moves on)
    is only written into the record and applied when its item reaches the top: an item is then
    never seated above its record's true ``(priority, seq)``, so a top item that is up to date
    (``item[1] == record[1]``) is the true minimum, and one that is not is re-seated and the
    search goes on. The order is exactly that of updating eagerly (the new ``seq`` is taken when
    the raise happens): pops depend only on the live ``(priority, seq)`` pairs, which are unique.
    A hit costs a dict look-up and two stores instead of a ``heappush``, and a key hit many times
    between evictions is re-seated at most once.
    """

    __slots__ = ("_heap", "_entry", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[Any, ...]] = []
        self._entry: dict[Hashable, list[Any]] = {}  # key -> its live record [priority, seq]
        self._seq = 0

    def __len__(self) -> int:
        return len(self._entry)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entry

    def priority(self, key: Hashable) -> float:
        p: float = self._entry[key][0]
        return p

    def record(self, key: Hashable) -> list[Any]:
        """The live record of ``key``: ``[priority, seq, *extra]`` (a policy may keep its own
        per-key fields after the first two; they follow the key through cuts)."""
        return self._entry[key]

    def push(self, key: Hashable, priority: float, *extra: object) -> None:
        """Insert ``key`` (with ``extra`` fields in its record) or change its priority (its
        record keeps its extra fields; ``extra`` is ignored then)."""
        self._seq = seq = self._seq + 1
        entries = self._entry
        old = entries.get(key)
        if old is not None:
            if priority >= old[0]:  # a raise: deferred until the item reaches the top
                old[0] = priority
                old[1] = seq
                return
            rec = old.copy()
            old[1] = STALE
            rec[0] = priority
            rec[1] = seq
        else:
            rec = [priority, seq, *extra]
        entries[key] = rec
        heap = self._heap
        heappush(heap, (priority, seq, key, rec))
        if len(heap) > 2 * len(entries) + 64:
            self._compact()

    def remove(self, key: Hashable) -> None:
        entries = self._entry
        entries.pop(key)[1] = STALE
        if len(self._heap) > 2 * len(entries) + 64:
            self._compact()

    def _top(self) -> tuple[Any, ...]:
        """The item with the smallest true ``(priority, seq)``, left at the top of the heap."""
        heap = self._heap
        while True:
            e = heap[0]
            rec = e[3]
            if e[1] == rec[1]:
                return e
            if rec[1] == STALE:
                heappop(heap)
            else:  # a deferred raise: re-seat the item at its true priority
                heapreplace(heap, (rec[0], rec[1], e[2], rec))

    def peek(self) -> tuple[Hashable, float]:
        """The live key with the smallest priority (ties: oldest update), without removing it."""
        e = self._heap[0]
        if e[1] != e[3][1]:
            e = self._top()
        return e[2], e[0]

    def pop(self) -> tuple[Hashable, float]:
        """Remove and return the live key with the smallest priority and that priority."""
        e = self.pop_entry()
        return e[2], e[0]

    def pop_entry(self) -> tuple[Any, ...]:
        """Remove the smallest live item and return it whole (``(priority, seq, key, record)``);
        ``restore`` puts it back (admission previews)."""
        heap = self._heap
        e = heap[0]
        if e[1] != e[3][1]:
            e = self._top()
        heappop(heap)
        entries = self._entry
        del entries[e[2]]
        if len(heap) > 2 * len(entries) + 64:
            self._compact()
        return e

    def restore(self, entry: tuple[Any, ...]) -> None:
        """Put back an item taken by ``pop_entry``, keeping its original tie-break order."""
        self._entry[entry[2]] = entry[3]
        heappush(self._heap, entry)

    def items(self) -> Iterator[tuple[Hashable, float]]:
        return ((k, rec[0]) for k, rec in self._entry.items())

    def _compact(self) -> None:
        # live items re-seated at their records (applies the deferred raises while at it)
        live = [(rec[0], rec[1], e[2], rec) for e in self._heap if (rec := e[3])[1] != STALE]
        heapify(live)
        self._heap = live

    def check(self) -> None:
        """Heap and map agree: each live record is in the heap exactly once and maps back to its key,
        and no item sits above its record's true priority."""
        live = [e for e in self._heap if e[3][1] != STALE]
        if len(live) != len(self._entry):
            raise AssertionError(f"heap has {len(live)} live items, map has {len(self._entry)}")
        for e in live:
            rec: list[Any] = e[3]
            if self._entry.get(e[2]) is not rec:
                raise AssertionError(f"heap item for {e[2]!r} is not the map's current record")
            if (e[0], e[1]) > (rec[0], rec[1]):
                raise AssertionError(f"heap item for {e[2]!r} sits above its true priority")
        for i in range(1, len(self._heap)):
            if self._heap[i][:2] < self._heap[(i - 1) // 2][:2]:
                raise AssertionError("heap order is broken")
        if len(self._heap) > 2 * len(self._entry) + 65:
            raise AssertionError("stale entries were not compacted")
