"""How a disk store holds its values: ``Entry.to_json()`` text inline in diskcache's SQLite table,
never pickled, never in side files; and the read-only view of that table a read-only store uses."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import diskcache
from diskcache.core import MODE_RAW, UNKNOWN

from cachemux.errors import ConfigError, StoreError


class _TextDisk(diskcache.Disk):
    """diskcache serialisation restricted to str keys and str values stored inline in SQLite.

    diskcache pickles anything that is not str/bytes/int/float, and unpickles whatever a row
    says is pickled. This subclass refuses both directions, so a cachemux store never writes
    nor loads a pickle even if a foreign process wrote one into the database; and it never
    spills values into side files (those are not covered by the SQLite transaction).
    """

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is not str:
            raise ConfigError(f"store keys must be str, got {type(key).__name__}")
        return key, True

    def get(self, key: Any, raw: bool) -> Any:
        if not raw or type(key) is not str:
            raise StoreError("refusing to load a non-text (pickled?) key that cachemux did not write")
        return key

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[int, int, None, str]:
        if read or type(value) is not str:
            raise ConfigError(f"store values must be str (Entry.to_json()), got {type(value).__name__}")
        return 0, MODE_RAW, None, value

    def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> str:
        if mode != MODE_RAW or filename is not None or type(value) is not str:
            raise StoreError(f"refusing to load a non-text value (diskcache mode {mode}); "
                             "cachemux stores only JSON text and never unpickles")
        return value


class _ReadOnlyCache:
    """The part of ``diskcache.Cache`` a read-only store uses, over one ``mode=ro`` connection."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self._con = con
        self.lock = threading.Lock()

    def get(self, key: str) -> str | None:
        row = self._con.execute("SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = 1"
                                " AND (expire_time IS NULL OR expire_time > ?)", (key, time.time())).fetchone()
        return None if row is None else _TextDisk.fetch(None, row[0], row[1], row[2], False)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return int(self._con.execute("SELECT count(*) FROM Cache").fetchone()[0])

    def close(self) -> None:
        self._con.close()
