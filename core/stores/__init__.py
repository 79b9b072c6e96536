"""Stores: where cache entries and their eviction state live (memory, diskcache, Redis).

``RedisStore`` is imported lazily: this package imports without redis-py, and creating a
``RedisStore`` without it raises an ImportError naming the ``cachemux[redis]`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cachemux.stores.base import CHANGES_RESET, Entry, PutResult, Store
from cachemux.stores.disk import DiskStore, ReadOnlyStoreError, StoreGoneError
from cachemux.stores.memory import MemoryStore

if TYPE_CHECKING:
    from cachemux.stores.redis import RedisStore

__all__ = ["CHANGES_RESET", "DiskStore", "Entry", "MemoryStore", "PutResult", "ReadOnlyStoreError", "RedisStore", "Store",
           "StoreGoneError"]


def __getattr__(name: str) -> Any:
    if name == "RedisStore":
        from cachemux.stores.redis import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
