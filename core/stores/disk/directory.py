"""The store's directory: claiming it (the marker file naming the store id), telling why it cannot
be written (a read-only filesystem, permissions, a full disk), opening its database read-only,
and telling a damaged database from one that is locked, full or foreign.

Nothing here writes to a database: an existing ``cache.db`` is inspected through a read-only
connection before anything opens it for writing, so a refused directory is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

import diskcache

from cachemux.errors import StoreError
from cachemux.stores.disk.values import _ReadOnlyCache, _TextDisk

FORMAT = "cachemux-diskstore"
FORMAT_VERSION = 1
MARKER = "cachemux-store.json"
DBNAME = diskcache.core.DBNAME  # "cache.db"

_DISKCACHE_TABLES = {"Settings", "Cache"}


class StoreGoneError(StoreError):
    """The store's directory or database was deleted, moved or replaced while it was open."""


class ReadOnlyStoreError(StoreError):
    """An update of a store opened read-only (a read-only filesystem or directory)."""


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _disk_full(exc: BaseException, directory: Path) -> str | None:
    """Why ``exc`` (or an error it was raised from) means the disk is full, else None: SQLite's
    SQLITE_FULL, an OSError ENOSPC/EDQUOT, or an I/O error while the filesystem has no free block
    or inode for this user (SQLite reports a -shm file it cannot grow as a plain I/O error)."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        if isinstance(exc, sqlite3.Error) and (getattr(exc, "sqlite_errorcode", 0) & 0xFF == 13
                                               or "database or disk is full" in str(exc)):
            return f"its disk is full (SQLite: {exc})"
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"its disk is full ({exc.strerror})"
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    if any(isinstance(e, OSError) or (isinstance(e, sqlite3.Error) and (
            getattr(e, "sqlite_errorcode", 0) & 0xFF == 10 or "disk I/O error" in str(e))) for e in seen):
        try:
            fs = os.statvfs(directory if directory.exists() else directory.parent)
        except OSError:
            return None
        if fs.f_bavail == 0 or fs.f_favail == 0:
            cause = next(e for e in seen if isinstance(e, (OSError, sqlite3.Error)))
            return f"its disk is full (no space left on device; {type(cause).__name__}: {cause})"
    return None


def _ro_uri(db: Path, immutable: bool = False) -> str:
    return f"file:{urllib.parse.quote(str(db))}?{'immutable=1' if immutable else 'mode=ro'}"


class StoreDirectory:
    """The directory ``path`` of one store; ``timeout``: seconds a read-only connection waits for
    a lock. Errors name the directory as the store's own errors do."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path, self.timeout = path, timeout

    def why_read_only(self) -> str | None:
        """Why this process cannot write the existing directory (None: it can, or it is new)."""
        d = self.path
        if not d.is_dir():
            return None
        if _read_only_fs(d):
            return "its filesystem is mounted read-only"
        db = d / DBNAME
        if not os.access(d, os.W_OK | os.X_OK) or (db.exists() and not os.access(db, os.W_OK)):
            return f"the directory or {DBNAME} is not writable by this user (uid {os.getuid()})"
        return None

    def connect_ro(self, db: Path, why: str) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(_ro_uri(db), uri=True, timeout=self.timeout, check_same_thread=False,
                                  isolation_level=None)
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return con
        except sqlite3.DatabaseError as exc:
            if not self.immutable_ok(db, exc):
                raise StoreError(f"disk store {self.path}: {why}, and SQLite cannot read {db} "
                                 f"read-only ({type(exc).__name__}: {exc}); a WAL database needs "
                                 f"its {DBNAME}-shm file or a writable directory") from exc
        try:
            con = sqlite3.connect(_ro_uri(db, immutable=True), uri=True, check_same_thread=False,
                                  isolation_level=None)
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return con
        except sqlite3.DatabaseError as exc:
            raise self.damaged(db, exc) from exc

    def immutable_ok(self, db: Path, exc: BaseException) -> bool:
        """Whether a database SQLite cannot read ``mode=ro`` may be read ``immutable`` (no locks,
        no -shm): on a read-only filesystem without its -shm file nobody can write it; on a full
        disk with no room for a -shm file and an empty or no WAL file, the main file holds every
        commit and nobody can add one (writes after space is freed are seen once reopened)."""
        if _read_only_fs(db.parent) and "unable to open" in str(exc):
            return True
        wal = db.with_name(f"{DBNAME}-wal")
        try:
            no_wal = not wal.exists() or wal.stat().st_size == 0
        except OSError:
            return False
        return no_wal and _disk_full(exc, self.path) is not None

    def check_database(self, db: Path, initialised: bool, store_id: str | None, why: str = "") -> None:
        """Look at an existing ``cache.db`` through a read-only connection before anything opens
        it for writing (diskcache rewrites its Settings on open): it must be this marker's store."""
        if not db.exists():
            return
        d = self.path
        try:
            con = sqlite3.connect(_ro_uri(db), uri=True, timeout=self.timeout)
            try:
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                ident = (con.execute("SELECT store_id FROM cachemux_ident WHERE id = 1").fetchone()
                         if "cachemux_ident" in tables else None)
                data = "Cache" in tables and con.execute("SELECT 1 FROM Cache LIMIT 1").fetchone()
                policy = (con.execute("SELECT value FROM Settings WHERE key = 'eviction_policy'").fetchone()
                          if "Settings" in tables else None)
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            if why and self.immutable_ok(db, exc):
                return  # no -shm file and none can be made: checked after the immutable open
            raise self.damaged(db, exc) from exc
        if "cachemux_config" in tables:
            found = ident[0] if ident else None
            if found != store_id:
                raise StoreError(
                    f"disk store {d}: {MARKER} names store {store_id or '(none: an old marker)'} but "
                    f"{DBNAME} belongs to store {found or '(none: an older cachemux)'}: the marker was "
                    "copied or restored from elsewhere. Refusing to use it; nothing was changed")
            return
        if initialised:
            raise StoreError(f"disk store {d}: {DBNAME} has no cachemux tables although {MARKER} says the "
                             "store was created: the marker was copied here or the database replaced. "
                             "Refusing to open it; nothing was changed")
        if data or tables - _DISKCACHE_TABLES or (policy is not None and policy[0] != "none"):
            raise StoreError(f"disk store {d}: {DBNAME} holds data or diskcache settings that cachemux "
                             f"did not write (a {MARKER} copied next to another app's cache?). "
                             "Refusing to adopt it; nothing was changed")

    def damaged(self, db: Path, exc: BaseException) -> StoreError:
        """The error for a database SQLite could not open. Advises moving the directory aside only
        when the file is really damaged: a full disk, or a file that passes ``quick_check`` read
        through an immutable (lock-free, read-only) connection, is named as such instead."""
        where = f"disk store {self.path}: cannot open {db} ({type(exc).__name__}: {exc})"
        full = _disk_full(exc, self.path)
        if full is not None:
            return StoreError(f"{where}: {full}; the store itself is not damaged and nothing was changed")
        try:
            con = sqlite3.connect(_ro_uri(db, immutable=True), uri=True)
            try:
                check = [r[0] for r in con.execute("PRAGMA quick_check")]
            finally:
                con.close()
        except sqlite3.Error as err:
            check = [f"{type(err).__name__}: {err}"]
        if check == ["ok"]:
            return StoreError(f"{where}; the file reads as a valid SQLite database (quick_check ok), so it "
                              "is not damaged: look at the disk, permissions and other processes using it. "
                              "Nothing was changed")
        return StoreError(f"{where}: damaged (truncated?) or not a valid SQLite database "
                          f"({'; '.join(check[:3])}). Nothing was changed: move the directory aside to "
                          "start an empty cache (sqlite3's .recover may salvage entries)")

    # ---- opening ---------------------------------------------------------------------------
    def open_writable(self, durable: bool) -> tuple[Any, bool, str | None]:
        """Claim the directory and open its database for writing: (the ``diskcache.Cache``,
        whether the store was completely created before, its id: None in the marker of a store
        an older cachemux created). Nothing is written to an existing database before
        ``check_database`` passes."""
        initialised, store_id = self.claim()
        db = self.path / DBNAME
        if initialised and not db.exists():
            raise StoreError(f"disk store {self.path}: {DBNAME} is missing although the marker "
                             "says the store was created; its entries are lost or were moved")
        if not initialised and store_id is None:  # a marker claimed by an older cachemux
            store_id = secrets.token_hex(16)
        self.check_database(db, initialised, store_id)  # read-only: nothing written before it passes
        try:
            cache = diskcache.Cache(
                str(self.path), timeout=self.timeout, disk=_TextDisk,
                eviction_policy="none", cull_limit=0, statistics=0, size_limit=2**62,
                disk_min_file_size=2**62, sqlite_synchronous=2 if durable else 1)
        except (sqlite3.OperationalError, diskcache.Timeout) as exc:
            if isinstance(exc, diskcache.Timeout) or "locked" in str(exc):
                raise StoreError(f"disk store {self.path}: cannot open {db}: another process held its "
                                 f"write lock for over timeout={self.timeout:g}s (frozen or stopped inside "
                                 "a transaction?)") from exc
            raise self.damaged(db, exc) from exc
        except (sqlite3.Error, OSError) as exc:
            raise self.damaged(db, exc) from exc
        return cache, initialised, store_id

    def open_read_only(self, why: str) -> _ReadOnlyCache:
        """Open the database of a store this process cannot (or must not) write; ``why`` names
        the reason in errors. Only a completely created store can be opened so."""
        d, marker, db = self.path, self.path / MARKER, self.path / DBNAME
        if not d.is_dir():
            raise StoreError(f"disk store {d}: {why}, and the directory does not exist")
        if not marker.exists():
            raise StoreError(f"disk store {d}: {why}, and it is not a cachemux store (no {MARKER}): "
                             "nothing to read, and a new store cannot be created there")
        initialised, store_id = self.read_marker(marker)
        if not initialised or not db.exists():
            raise StoreError(f"disk store {d}: {why}, and the store was never completely created "
                             f"(no {DBNAME} or no entries yet): a new store cannot be created there")
        self.check_database(db, True, store_id, why=why)
        return _ReadOnlyCache(self.connect_ro(db, why))

    # ---- the marker -----------------------------------------------------------------------
    def claim(self) -> tuple[bool, str | None]:
        """Make sure the directory is ours (claiming it if new/empty): (initialised, store id)."""
        d, marker = self.path, self.path / MARKER
        if d.exists() and not d.is_dir():
            raise StoreError(f"disk store {d}: exists and is not a directory")
        if not d.exists():
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"disk store {d}: cannot create the directory: {exc}") from exc
        if not marker.exists():
            try:
                others = sorted(p.name for p in d.iterdir())
            except OSError as exc:
                raise StoreError(f"disk store {d}: cannot list the directory: {exc}") from exc
            others = [n for n in others if not n.startswith(f".{MARKER}.")]
            # re-check: a process creating the store concurrently links the marker before
            # anything else appears in the directory
            if others and not marker.exists():
                shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
                raise StoreError(
                    f"disk store {d}: not a cachemux store (no {MARKER}; it holds {shown}). "
                    "Refusing to write into a foreign directory: pass a new or empty directory")
            if not marker.exists():
                try:
                    self.write_marker(initialised=False, store_id=secrets.token_hex(16), exclusive=True)
                except FileExistsError:
                    pass  # another process claimed it first: read its marker below
        return self.read_marker(marker)

    def read_marker(self, marker: Path) -> tuple[bool, str | None]:
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(f"disk store {self.path}: unreadable marker {marker}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise StoreError(f"disk store {self.path}: {marker} is not a cachemux marker "
                             f"(expected format {FORMAT!r}, got {data!r:.200})")
        if data.get("version") != FORMAT_VERSION:
            raise StoreError(f"disk store {self.path}: format version {data.get('version')!r} "
                             f"is not supported by this cachemux (supports {FORMAT_VERSION})")
        store_id = data.get("store_id")
        if store_id is not None and not isinstance(store_id, str):
            raise StoreError(f"disk store {self.path}: {marker} has a bad store_id {store_id!r:.80}")
        return bool(data.get("initialised")), store_id

    def write_marker(self, *, initialised: bool, store_id: str, exclusive: bool = False) -> None:
        marker = self.path / MARKER
        tmp = self.path / f".{MARKER}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            tmp.write_text(json.dumps({"format": FORMAT, "version": FORMAT_VERSION,
                                       "initialised": initialised, "store_id": store_id}) + "\n",
                           encoding="utf-8")
            if exclusive:
                os.link(tmp, marker)  # atomic create-if-absent, complete content or nothing
            else:
                os.replace(tmp, marker)
        except FileExistsError:
            raise
        except OSError as exc:
            raise StoreError(f"disk store {self.path}: cannot write {marker}: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
