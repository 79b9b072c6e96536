"""LRU: evict the least recently used entry (cost-oblivious baseline)."""

from __future__ import annotations

from collections.abc import Hashable

from cachemux.policies.fifo import FIFO

__all__ = ["LRU"]


class LRU(FIFO):
    """FIFO's queue, except that a hit moves the key to the back."""

    name = "lru"
    hit_moves = True

    def _on_hit(self, key: Hashable, cost: float | None) -> None:
        self._order.move_to_end(key)

    def _check(self) -> None:
        if set(self._order) != set(self._sizes):
            raise AssertionError("recency list and entry map disagree")
