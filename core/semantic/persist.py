"""Where a ``SemanticCache`` keeps its saved semantic index, and how its ``IndexMirror`` loads and saves it.

The file format is ``cachemux.semantic.snapshot``'s; this is the cache's side: the folder
(``index_path``), the manifest name (embedder, dimension, index options), loading at the first
sync, and saving without stalling other threads: under the index lock only a consistent copy is
taken (``snapshot.capture``, one memory copy), the files are written after the lock is released
(``snapshot.write``), one writer at a time. A save after a full rebuild, and with
``save_every=N`` one after every N index changes, is written by a background thread; ``close()``
waits for it and writes what changed since. A snapshot records the store's change at its
change-log position, and is loaded only if the store still has that change there (see
``snapshot.load``): a store restored from an older copy gets a rebuild, not a replay that would
skip the changes its log went on with.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cachemux.errors import ConfigError
from cachemux.semantic import snapshot
from cachemux.semantic.index import PartitionedIndex
from cachemux.stores.base import CHANGES_RESET, Store
from cachemux.stores.disk import DiskStore

if TYPE_CHECKING:
    from cachemux.semantic.mirror import IndexMirror

__all__ = ["SNAPSHOT_FOLDER", "IndexSaver"]

log = logging.getLogger("cachemux.cache")

SNAPSHOT_FOLDER = "semantic-index"  # inside a DiskStore's directory


class IndexSaver:
    """Loads and saves the index of an ``IndexMirror`` (see the module docstring)."""

    def __init__(self, mirror: IndexMirror, index_path: object, save_every: object) -> None:
        if save_every is not None and (isinstance(save_every, bool) or not isinstance(save_every, int)
                                       or save_every < 1):
            raise ConfigError(f"save_every must be an int >= 1 (index changes between saves) or None, "
                              f"got {save_every!r}")
        self.mirror = mirror
        self.store = mirror.store
        self.save_every: int | None = save_every
        self.folder = self._folder(index_path)
        self._writing = threading.Lock()
        self._writer: threading.Thread | None = None
        self.last_save: dict[str, Any] = {}  # lock_s / write_s / entries of the last save (benchmarks)

    def _folder(self, index_path: object) -> Path | None:
        if index_path is False:
            return None
        if type(self.store).changes is Store.changes:  # no change log: a snapshot could never be brought up to date
            if index_path is None:
                return None
            raise ConfigError(f"index_path: a {type(self.store).__name__} keeps no change log, so a saved "
                              "semantic index could not be brought up to date (use index_path=None)")
        if index_path is None or index_path is True:
            directory = getattr(self.store, "directory", None) if isinstance(self.store, DiskStore) else None
            if directory is None:
                if index_path is True:
                    raise ConfigError(f"index_path=True needs a DiskStore; for a {type(self.store).__name__} "
                                      "pass the folder to save the semantic index in")
                return None
            return Path(directory) / SNAPSHOT_FOLDER
        if isinstance(index_path, (str, os.PathLike)) and str(index_path):
            return Path(index_path).expanduser()
        raise ConfigError(f"index_path must be a folder path, True, False or None, got {index_path!r}")

    def manifest(self, dim: int) -> Path | None:
        if self.folder is None:
            return None
        ident = json.dumps([self.mirror.vector_id, dim, self.mirror.index_options], sort_keys=True, default=str)
        return self.folder / f"index-{hashlib.blake2b(ident.encode(), digest_size=8).hexdigest()}.json"

    def _source(self) -> str:
        directory = getattr(self.store, "directory", None)
        if directory is not None:
            return f"{type(self.store).__name__}:{Path(directory).resolve()}"
        return f"{type(self.store).__name__}:{getattr(self.store, '_where', '')}"

    def load(self, index: PartitionedIndex) -> bool:
        """Start ``index`` from the saved snapshot (caller holds the mirror's lock); a damaged or
        foreign one is logged and ignored (the caller rebuilds)."""
        manifest = self.manifest(index.dim)
        if manifest is None:
            return False
        m = self.mirror
        kw: dict[str, Any] = {"dim": index.dim, "source": self._source(), "embedder": m.vector_id,
              "index_options": m.index_options, "change_at": self._change_at}
        try:
            try:
                seen = _stamp(manifest)
                found = snapshot.load(manifest, **kw)
            except snapshot.SnapshotError:
                if _stamp(manifest) == seen:
                    raise
                # another process saved a new snapshot while we read (and removed the old files): once more
                found = snapshot.load(manifest, **kw)
        except Exception as exc:  # SnapshotError, or anything a damaged file provokes
            log.warning("cachemux: the saved semantic index is not usable (%s: %s); rebuilding it "
                        "from the store", type(exc).__name__, exc)
            m.stats.add(snapshot_errors=1)
            return False
        if found is None:
            return False
        loaded, cursor = found
        index.take(loaded)
        m.cursor, m.synced, m.changes = cursor, True, 0
        log.info("semantic index: %d entries loaded from %s (change-log position %d)", len(index), manifest, cursor)
        return True

    def _change_at(self, cursor: int) -> list[str] | None:
        """The store's change at log position ``cursor``: ``[op, key]``; None when its log does not
        hold it (trimmed, or the position of an empty log); ``["end", ""]`` when the log ends
        just before it (the store is behind). Reads the log from ``cursor`` on."""
        _, ops = self.store.changes(cursor - 1)
        if not ops:
            return ["end", ""]
        op, key = ops[0]
        return None if op == CHANGES_RESET else [op, key]

    # ---- saving ----------------------------------------------------------------------------------
    def _capture(self, index: PartitionedIndex) -> tuple[Path, snapshot.Captured] | None:
        """A copy of ``index`` at the current change-log position (caller holds the mirror's
        lock); None when there is nothing to save or the store's log cannot be read (logged)."""
        m = self.mirror
        manifest = self.manifest(index.dim)
        if manifest is None or not m.synced:
            return None
        try:
            change = self._change_at(m.cursor)
        except Exception as exc:
            m.fault("saving the semantic index", exc)
            return None
        t = time.perf_counter()
        snap = snapshot.capture(index, m.cursor, change)
        m.changes = 0
        self.last_save = {"lock_s": time.perf_counter() - t, "entries": snap.entries}
        return manifest, snap

    def _write(self, manifest: Path, snap: snapshot.Captured) -> bool:
        """Write a captured snapshot (without the mirror's lock; one writer at a time). A failure
        (read-only or full disk) is logged and counted, never raised; the index stays marked as
        changed so the next trigger saves it again."""
        t = time.perf_counter()
        with self._writing:
            try:
                snapshot.write(manifest, snap, source=self._source(), embedder=self.mirror.vector_id)
            except Exception as exc:
                self.mirror.fault("saving the semantic index", exc)
                with self.mirror.lock:
                    self.mirror.changes += 1
                return False
        self.last_save["write_s"] = time.perf_counter() - t
        return True

    def save_later(self, index: PartitionedIndex) -> None:
        """Capture now (caller holds the mirror's lock) and write in a background thread; skipped
        while one is still writing (the changes stay counted for the next trigger)."""
        if self._writer is not None and self._writer.is_alive():
            return
        got = self._capture(index)
        if got is not None:
            self._writer = threading.Thread(target=self._write, args=got, daemon=True, name="cachemux-index-save")
            self._writer.start()

    def wait(self) -> None:
        """Wait for a background save to finish."""
        writer = self._writer
        if writer is not None:
            writer.join()

    def save(self, dim: int) -> bool:
        """Build or sync the index and save it now (True if saved; False without a folder or on a
        fault, which is logged). Other threads wait only while the copy is taken."""
        if self.folder is None:
            return False
        self.wait()
        m = self.mirror
        with m.lock:
            index = m.ensure(dim)
            m.sync(index)
            got = self._capture(index)
        return got is not None and self._write(*got)

    def close(self) -> None:
        """At ``close()``: wait for a background save, then save what changed since."""
        self.wait()
        got = None
        m = self.mirror
        with m.lock:
            index = m.index
            if index is not None and self.folder is not None and m.synced:
                m.sync(index)
                manifest = self.manifest(index.dim)
                if m.changes or (manifest is not None and not manifest.exists()):
                    got = self._capture(index)
        if got is not None:
            self._write(*got)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ino
