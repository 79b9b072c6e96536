"""One ``VectorIndex`` per partition (``cachemux.semantic.index``): a search only ever sees the
entries of its own partition, and each partition grows, builds and drops its ANN on its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from cachemux.errors import ConfigError, InvariantError
from cachemux.semantic.index import VectorIndex

__all__ = ["PartitionedIndex"]


class PartitionedIndex:
    """One ``VectorIndex`` per partition, so a search never sees another partition's entries."""

    def __init__(self, dim: int, **index_options: Any) -> None:
        self.dim = dim
        self.index_options = index_options
        self._parts: dict[str, VectorIndex] = {}
        self._where: dict[str, str] = {}  # key -> partition

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def keys(self) -> Iterator[str]:
        return iter(list(self._where))

    def partitions(self) -> dict[str, int]:
        return {p: len(ix) for p, ix in self._parts.items()}

    def part(self, partition: str) -> VectorIndex | None:
        return self._parts.get(partition)

    def add(self, key: str, partition: str, vec: np.ndarray, *, defer: bool = False) -> None:
        self._index_for([key], partition).add(key, vec, defer=defer)
        self._where[key] = partition

    def drain(self, limit: int | None = None) -> int:
        """Insert up to ``limit`` deferred rows (all partitions) into their ANN graphs; how many remain."""
        left = 0
        for ix in self._parts.values():
            before = len(ix._deferred)
            after = ix.drain(limit)
            if limit is not None:
                limit -= before - after
            left += after
        return left

    def add_many(self, keys: list[str], partition: str, vecs: np.ndarray, *, defer: bool = False) -> None:
        """Bulk ``add`` of many keys into one partition."""
        self._index_for(keys, partition).add_many(list(keys), vecs, defer=defer)
        for key in keys:
            self._where[key] = partition

    def _index_for(self, keys: list[str], partition: str) -> VectorIndex:
        """``partition``'s index (created on first use), after removing any of ``keys`` that
        live in another partition."""
        for key in keys:
            old = self._where.get(key)
            if old is not None and old != partition:
                self.remove(key)
        ix = self._parts.get(partition)
        if ix is None:
            ix = self._parts[partition] = VectorIndex(self.dim, **self.index_options)
        return ix

    def remove(self, key: str) -> bool:
        partition = self._where.pop(key, None)
        if partition is None:
            return False
        ix = self._parts[partition]
        ix.remove(key)
        if not len(ix):
            del self._parts[partition]
        return True

    def take(self, other: PartitionedIndex) -> None:
        """Become ``other`` (a loaded snapshot), leaving it empty: callers holding this object
        see the new contents."""
        if other.dim != self.dim:
            raise ConfigError(f"index dimension {other.dim} is not {self.dim}")
        self._parts, self._where = other._parts, other._where
        other._parts, other._where = {}, {}

    def adopt(self, partition: str, ix: VectorIndex) -> None:
        """Install a restored ``VectorIndex`` as ``partition``'s (snapshots; its keys must be new)."""
        keys = ix._keys
        if ix.dim != self.dim or partition in self._parts or (self._where and not self._where.keys().isdisjoint(keys)):
            raise InvariantError(f"partitioned index: cannot adopt partition {partition!r} (dimension "
                                 "or keys clash)")
        if len(ix):
            self._parts[partition] = ix
            if self._where:
                self._where.update(dict.fromkeys(keys, partition))
            else:  # the first partition of a snapshot: one dict, not two
                self._where = dict.fromkeys(keys, partition)

    def search(self, partition: str, vec: np.ndarray, k: int = 1) -> list[tuple[str, float]]:
        ix = self._parts.get(partition)
        return ix.search(vec, k) if ix is not None else []

    def clear(self) -> None:
        self._parts.clear()
        self._where.clear()

    def check_invariants(self) -> None:
        total = 0
        for p, ix in self._parts.items():
            ix.check_invariants()
            total += len(ix)
            if any(self._where.get(k) != p for k in ix.keys()):
                raise InvariantError(f"partitioned index: partition {p!r} holds keys mapped elsewhere")
        if total != len(self._where):
            raise InvariantError(f"partitioned index: {total} vectors for {len(self._where)} keys")
