"""Entries by expiry time, so a full in-process store removes stale entries before policy victims.

``DiskStore`` keeps the same order in an SQLite index on ``cachemux_entries.expires`` and
``RedisStore`` in a sorted set; this is the in-process equivalent: a lazy min-heap of
``(expires, seq, key)`` with the current expiry of each key beside it. Replacing or removing a
key leaves its old heap item behind; ``pop_expired`` skips items that no longer match, and the
heap is rebuilt once stale items outnumber live ones, so each operation is O(log n) amortised.
"""

from __future__ import annotations

import heapq
import itertools

__all__ = ["ExpiryQueue"]


class ExpiryQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._at: dict[str, float] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._at)

    def set(self, key: str, expires: float | None) -> None:
        """``key`` (re)cached with this expiry (None: never expires)."""
        if expires is None:
            self._at.pop(key, None)
            return
        self._at[key] = expires
        heapq.heappush(self._heap, (expires, next(self._seq), key))
        if len(self._heap) > 2 * len(self._at) + 64:  # mostly stale items: rebuild, O(n) per n pushes
            self._heap = [(x, next(self._seq), k) for k, x in self._at.items()]
            heapq.heapify(self._heap)

    def discard(self, key: str) -> None:
        self._at.pop(key, None)

    def pop_expired(self, now: float) -> str | None:
        """Forget and return the key that expired first if it expired before ``now``, else None."""
        heap, at = self._heap, self._at
        while heap and heap[0][0] < now:
            expires, _, key = heapq.heappop(heap)
            if at.get(key) == expires:
                del at[key]
                return key
        return None

    def expiry(self, key: str) -> float | None:
        return self._at.get(key)
