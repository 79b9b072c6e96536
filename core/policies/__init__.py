"""Eviction policies: pure data structures, O(log n) per request, one per file, and a registry."""

from __future__ import annotations

from typing import Any

from cachemux.errors import UnknownNameError
from cachemux.policies.base import Policy, admit_value
from cachemux.policies.belady import Belady
from cachemux.policies.fifo import FIFO
from cachemux.policies.gds import GDS
from cachemux.policies.gdsf import GDSF
from cachemux.policies.lec import LEC, LECOffline
from cachemux.policies.lfu import LFU
from cachemux.policies.lru import LRU

__all__ = ["POLICIES", "Belady", "FIFO", "GDS", "GDSF", "LEC", "LECOffline", "LFU", "LRU",
           "Policy", "admit_value", "make_policy"]

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls for cls in (LRU, FIFO, LFU, GDS, GDSF, LEC, LECOffline, Belady)
}


def make_policy(name: str, capacity: float, **options: Any) -> Policy:
    """Build a registered policy by name, e.g. ``make_policy("gdsf", 1000)``."""
    try:
        cls = POLICIES[name.lower() if isinstance(name, str) else name]
    except (KeyError, TypeError):
        raise UnknownNameError("policy", name, POLICIES) from None
    return cls(capacity, **options)
