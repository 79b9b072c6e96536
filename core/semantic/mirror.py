"""The semantic index of a ``SemanticCache`` kept in step with its store.

Our own admissions and evictions update the index directly, in one step with the store operation
(``lock`` held across both, and across the change-log sync and the search), so threads of one
cache never leave the index behind the store. Stores shared by several processes (disk, Redis)
expose a change log: before each semantic search the mirror reads ``store.changes(cursor)`` and
applies it (idempotently: an "add" re-reads the entry, a "del" drops it); a ``reset`` rebuilds
from ``keys()``. The first sync starts from a saved snapshot when there is a usable one
(``cachemux.semantic.persist``). A candidate the store no longer holds is dropped from the index;
a row that cannot be read or has the wrong dimension is left out alone (``skipped_entries``),
never failing the sync.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from cachemux.errors import CorruptEntryError, InvariantError
from cachemux.semantic.index import PartitionedIndex
from cachemux.semantic.persist import IndexSaver
from cachemux.semantic.stats import CacheStats, FaultSink
from cachemux.stores.base import CHANGES_RESET, Entry, PutResult, Store

__all__ = ["DRAIN_PER_SYNC", "SNAPSHOT_MIN_ENTRIES", "IndexMirror"]

log = logging.getLogger("cachemux.cache")

SNAPSHOT_MIN_ENTRIES = 1_000  # smaller indexes rebuild in well under a second: not worth a file
DRAIN_PER_SYNC = 4  # replayed entries moved into the ANN graph per sync (searched exactly until then)


class IndexMirror:
    """The index over ``store``'s entries embedded with ``vector_id`` (see the module docstring)."""

    def __init__(self, store: Store, vector_id: str, stats: CacheStats, fault: FaultSink, *,
                 index_options: Mapping[str, Any] | None = None, index_path: object = None,
                 save_every: object = None) -> None:
        self.store = store
        self.vector_id = vector_id
        self.stats = stats
        self.fault = fault
        self.index_options = dict(index_options or {})
        # the index and the store change together under this lock: a store mutation and the index
        # update it implies (put -> add/evictions, delete, a vanished candidate), the change-log
        # sync and the search, so no thread's index update can land after a later one's or after a
        # sync that already applied the store's newer state
        self.lock = threading.RLock()
        self.index: PartitionedIndex | None = None  # built on first semantic use
        self.cursor = 0
        self.synced = False
        self.changes = 0  # index mutations since the last snapshot was saved or loaded
        self.saver = IndexSaver(self, index_path, save_every)

    def ensure(self, dim: int) -> PartitionedIndex:
        if self.index is None:
            self.index = PartitionedIndex(dim, **self.index_options)
        return self.index

    def search(self, part: str, vec: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The ``k`` nearest keys of ``part`` after bringing the index up to date."""
        with self.lock:
            index = self.ensure(len(vec))
            self.sync(index)
            return index.search(part, vec, k)

    def sync(self, index: PartitionedIndex) -> None:
        """Apply the store's change log (caller holds the lock). Faults skip the sync; an entry
        that cannot be read or indexed is skipped alone (counted), never the whole sync."""
        try:
            rebuilt = False
            if not self.synced:
                self.saver.load(index)
            cursor, ops = self.store.changes(self.cursor)
            if not self.synced or any(op == CHANGES_RESET for op, _ in ops):
                if self.synced:  # a snapshot older than the retained log, or another store's
                    log.info("semantic index: change log reset at cursor %d: rebuilding", self.cursor)
                self.rebuild(index)
                ops = [(op, k) for op, k in ops if op != CHANGES_RESET]
                self.synced = rebuilt = True
                self.changes += max(1, len(index))  # any saved snapshot is now behind
            last = {key: op for op, key in ops}  # what each key's changes amount to: its last op
            for key, op in last.items():
                if op == "del":
                    index.remove(key)
            self._index_entries(index, [key for key, op in last.items() if op == "add"])
            self.cursor = cursor
            self.changes += len(ops)
            index.drain(DRAIN_PER_SYNC)
        except Exception as exc:
            self.fault("index sync", exc)
            return
        save_every = self.saver.save_every
        if (rebuilt and len(index) >= SNAPSHOT_MIN_ENTRIES) or (save_every is not None and self.changes >= save_every):
            self.saver.save_later(index)  # copied now, written by a background thread

    def peek(self, key: str) -> Entry | None:
        """The entry for the index, or None when it is unreadable (a corrupt row: counted, skipped).
        Backend faults (``Unavailable``, a closed store) propagate: the sync is retried later."""
        try:
            return self.store.peek(key)
        except CorruptEntryError as exc:
            self.stats.add(skipped_entries=1)
            log.debug("cachemux: entry %r skipped by the index: %s", key, exc)
            return None

    def rebuild(self, index: PartitionedIndex) -> None:
        index.clear()
        parts: dict[str, tuple[list[str], list[np.ndarray]]] = {}
        for key in self.store.keys():
            entry = self.peek(key)
            if entry is not None and self.indexable(entry, index.dim):
                keys, vecs = parts.setdefault(entry.partition, ([], []))
                keys.append(key)
                vecs.append(entry.embedding)  # type: ignore[arg-type]
        for part, (keys, vecs) in parts.items():  # one bulk load per partition (ANN built once)
            index.add_many(keys, part, np.stack(vecs))
        if parts:
            log.info("semantic index: %d entries loaded from %s", len(index), type(self.store).__name__)

    def indexable(self, entry: Entry | None, dim: int, *, count: bool = True) -> bool:
        # gone, exact-only, or embedded by another model: served exactly only
        if entry is None or entry.embedding is None or entry.meta.get("emb") != self.vector_id:
            return False
        if len(entry.embedding) != dim:  # our model's id but another shape: a damaged row
            if count:
                self.stats.add(skipped_entries=1)
            return False
        return True

    def similarity(self, entry: Entry, vec: np.ndarray) -> float | None:
        """The cosine between ``vec`` and ``entry``'s stored embedding, None if it has none we can use."""
        e = entry.embedding
        if e is None or entry.meta.get("emb") != self.vector_id or e.shape != vec.shape:
            return None
        ne, nv = float(np.linalg.norm(e)), float(np.linalg.norm(vec))
        if not (ne > 0 and nv > 0):
            return None
        return float(np.dot(e, vec)) / (ne * nv)

    def recheck(self, key: str) -> None:
        """A candidate the store no longer served (or under another partition): re-read it under
        the lock, so a thread that re-admitted it meanwhile is not undone, and index what the
        store holds now. Faults keep the index as it is: the next sync or check corrects it."""
        with self.lock:
            if self.index is None:
                return
            try:
                self._index_entry(self.index, key, self.peek(key))
            except Exception as exc:
                self.fault("index check", exc)

    def _index_entries(self, index: PartitionedIndex, keys: list[str]) -> None:
        """Index what the store holds now for ``keys`` (a change-log replay): one batch per
        partition, deferred from the ANN graph (see ``_index_entry``)."""
        parts: dict[str, tuple[list[str], list[np.ndarray]]] = {}
        try:
            entries = self.store.peek_many(keys)
        except CorruptEntryError:  # one damaged row: read them one by one, skipping (counting) it
            entries = {k: self.peek(k) for k in keys}
        for key in keys:
            index.remove(key)
            entry = entries.get(key)
            if entry is not None and self.indexable(entry, index.dim):
                got = parts.setdefault(entry.partition, ([], []))
                got[0].append(key)
                got[1].append(entry.embedding)  # type: ignore[arg-type]
        for part, (ks, vecs) in parts.items():
            index.add_many(ks, part, np.stack(vecs), defer=True)

    def _index_entry(self, index: PartitionedIndex, key: str, entry: Entry | None) -> bool:
        index.remove(key)
        if entry is None or not self.indexable(entry, index.dim):
            return False
        # deferred: a replay of thousands of changes must not insert into the HNSW graph one by one
        # (~5 ms each) before the lookup that triggered it; each sync then drains a few
        index.add(key, entry.partition, entry.embedding, defer=True)  # type: ignore[arg-type]
        return True

    # ---- our own store operations (the caller holds ``lock`` across the store call and these) ----
    def put(self, key: str, part: str, vec: np.ndarray | None, result: PutResult) -> None:
        """Follow a ``store.put``: its evictions leave the index, the entry joins it if admitted."""
        if self.index is None:
            return
        for k in result.evicted:
            self.index.remove(k)
        if result.admitted and vec is not None:
            self.index.add(key, part, vec)
        else:
            self.index.remove(key)

    def remove(self, key: str) -> None:
        with self.lock:
            if self.index is not None:
                self.index.remove(key)

    def cleared(self, everything: bool, removed: list[str]) -> None:
        """Follow a clear (caller holds ``lock``): everything, or the ``removed`` keys."""
        if self.index is None:
            return
        if everything:
            self.index.clear()
            self.synced = False  # re-read the store on the next semantic lookup
        else:
            for key in removed:
                self.index.remove(key)

    def warm(self, dim: int) -> None:
        with self.lock:
            self.sync(self.ensure(dim))

    def counts(self) -> dict[str, int]:
        with self.lock:
            index = self.index
            if index is None:
                return {"indexed": 0, "ann_partitions": 0}
            return {"indexed": len(index),
                    "ann_partitions": len([p for p in index.partitions()
                                           if getattr(index.part(p), "backend", "exact") != "exact"])}

    def check(self) -> None:
        """After a sync, the index holds exactly the store's entries this cache can search."""
        with self.lock:
            if self.index is None:
                return
            self.sync(self.index)
            self.index.check_invariants()
            keys = set(self.store.keys())
            stray = [k for k in self.index.keys() if k not in keys]
            missing = [k for k in keys if k not in self.index
                       and self.indexable(self.peek(k), self.index.dim, count=False)]
        if stray:
            raise InvariantError(f"semantic index holds {len(stray)} keys the store does not, e.g. {stray[0]!r}")
        if missing:
            raise InvariantError(f"semantic index lacks {len(missing)} searchable entries of the store, "
                                 f"e.g. {missing[0]!r}")
