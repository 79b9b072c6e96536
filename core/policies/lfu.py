"""LFU: evict the least frequently used entry (in-cache counts, or the paper's history counts)."""

from __future__ import annotations

from cachemux.policies.frequency import FrequencyPolicy

__all__ = ["LFU"]


class LFU(FrequencyPolicy):
    """Least Frequently Used; ties go to the least recently touched entry.

    ``LFU(L)`` is the classic in-cache LFU that admits every miss. ``LFU(L, history=True)`` is
    the paper's baseline (its reference code's "LFU"): counts every request ever seen and admits
    a newcomer only if its count beats the least-counted cached entry. It is online LEC with
    every cost equal.
    """

    name = "lfu"
    use_cost = False

    def __init__(self, capacity: float, *, history: bool = False, admission: bool | None = None,
                 half_life: float | None = None) -> None:
        super().__init__(capacity, history=history,
                         admission=history if admission is None else admission,
                         half_life=half_life)
