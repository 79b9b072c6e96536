"""Stores: where cache entries and their eviction state live (memory, diskcache, Redis)."""

from __future__ import annotations

from cachemux.stores.base import Entry, PutResult, Store
from cachemux.stores.memory import MemoryStore

__all__ = ["Entry", "MemoryStore", "PutResult", "Store"]
