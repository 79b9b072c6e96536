"""FIFO: evict the oldest admitted entry; hits do not change the order."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import ClassVar

from cachemux.policies.base import Policy

__all__ = ["FIFO"]


class FIFO(Policy):
    name = "fifo"
    family = "recency"
    family_options = ("hit_moves",)
    hit_moves: ClassVar[bool] = False  # whether a hit moves the key to the back (LRU)

    def __init__(self, capacity: float) -> None:
        super().__init__(capacity)
        self._order: OrderedDict[Hashable, None] = OrderedDict()

    def _insert(self, key: Hashable, cost: float | None, size: float) -> None:
        self._order[key] = None

    def _pop_victim(self) -> Hashable:
        return self._order.popitem(last=False)[0]

    def _forget(self, key: Hashable) -> None:
        del self._order[key]

    def _check(self) -> None:
        if list(self._order) != list(self._sizes):
            raise AssertionError("order list and entry map disagree")
