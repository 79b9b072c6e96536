"""Persistent store on diskcache: entries and eviction state in one SQLite file, safe across processes.

Layout of ``directory``:

* ``cachemux-store.json``: the format marker (``{"format": "cachemux-diskstore", "version": 1,
  "store_id": ...}``). A directory without it is never written to: a foreign directory is an
  error, not a cache. The random ``store_id`` is also recorded in the database
  (``cachemux_ident``), and an existing database is inspected through a read-only SQLite
  connection before anything opens it for writing: a marker copied next to another app's
  diskcache (or another store's database) is refused with nothing changed.
* ``cache.db`` (+ ``-wal``/``-shm``): diskcache's SQLite database. diskcache's own ``Cache`` table
  holds the values (``Entry.to_json()`` text, always inline, never pickled). cachemux adds:

  - ``cachemux_config``: policy name, capacity, options, change-log size (one row, first writer wins);
  - ``cachemux_state``: GDSF clock, used size, entry count, sequence counter, the frequency
    estimator's weight/total/epoch, change-log head, counters (one row);
  - ``cachemux_entries``: per cached key its size, cost, frequency n, GDSF base clock, priority,
    tie-break sequence and admission sequence, with a unique index on ``(prio, seq)``: the
    eviction order. The victim is the first row of that index: O(log n), no scan; entries with
    an ``Entry.expires`` also sit in a partial index on ``expires``: a put that needs room
    first removes those whose time passed, oldest first (``stats()["expired"]``). Stores made
    before that column existed get it (and the ``expired`` counter) added when opened writable;
  - ``cachemux_history``: LEC/LFU-history request counts of every key seen, cached or not;
  - ``cachemux_changes``: the append-only change log read by ``changes()``;
  - ``cachemux_ident``: the store id its marker must name;
  - with ``shares=`` only: ``cachemux_shares`` (namespace -> fraction), ``cachemux_parts`` (per
    share its used size, count and GDSF clock) and a ``part`` column on ``cachemux_entries``
    indexed by ``(part, prio, seq)``: a newcomer evicts only within its namespace's share.

Why our own tables: diskcache orders entries only by its built-in eviction policies (store time,
access time, access count) and its queues by insertion, never by an arbitrary float priority
that changes on every hit, so GDSF/LEC need a secondary index. Keeping it in diskcache's own
database (through the connection of ``Cache.transact()``) rather than in a second SQLite file
makes a value and its policy state commit or roll back together in one transaction.

Atomicity: every ``get``/``put``/``delete``/``clear`` runs inside ``Cache.transact()``, i.e. one
SQLite ``BEGIN IMMEDIATE`` transaction, so processes sharing the directory serialise their
writes and a crash leaves either all of an operation or none of it. Each operation touches
O(1 + evicted) rows through B-tree indexes: O(log n). Only a decay rescale of LEC's history
(every ~500 half-lives of requests, with ``half_life``) rewrites all rows.

Lock waits: a process stopped or frozen inside a transaction (SIGSTOP, a debugger) holds
SQLite's write lock. ``get`` waits at most ``lookup_timeout`` (``LOOKUP_TIMEOUT`` = 100 ms) for
it, then serves the committed value without counting the request (WAL readers are never blocked
by a writer; counted in ``stats()["uncounted"]``, logged); ``put``/``delete`` wait at most
``update_timeout`` (``UPDATE_TIMEOUT`` = 200 ms), then raise ``StoreError`` (the cache drops the
update and logs it). Other processes that are merely busy are waited for: while commits go on
(``PRAGMA data_version``) up to ``timeout``, and a holder that commits nothing for longer than
those bounds but is running (descheduled on a loaded machine, in I/O; on Linux its state is read
through ``/proc/locks``) up to ``busy_timeout`` (``BUSY_TIMEOUT`` = 10 s): contention alone never
drops an update nor leaves a lookup uncounted. Where the holder cannot be identified (not Linux,
another PID namespace) the short bounds apply to any holder without a commit. A lock timeout
opens the store's ``CircuitBreaker`` (``cachemux.stores.breaker``): until an operation gets the
lock again, each makes a single attempt (~20 ms) instead of waiting, so a frozen process costs
one wait, not one per operation, and a released lock is used at once. Opening, ``clear`` and
``check_invariants`` wait ``timeout``.

Deleted or replaced: every operation compares the device and inode of the directory and of
``cache.db`` with those seen at open (two ``stat`` calls, microseconds). If the directory was
deleted, moved away or replaced, the operation raises ``StoreGoneError`` (logged once as an
error; the cache turns it into a miss or a dropped update, counted in its ``stats()``) instead
of reading and writing a file no other process can see.

Read-only: a directory on a read-only filesystem, or one this user cannot write, opens
read-only (``readonly=None``, the default; ``readonly=True`` forces it): lookups read the
committed entries without counting requests, and ``put``/``delete``/``clear`` raise
``ReadOnlyStoreError`` (counted in ``stats()["read_only_drops"]``). ``readonly=False`` refuses
such a directory, naming the reason. On a read-only filesystem a database without its ``-shm``
file is opened ``immutable`` (nobody can write it there). A full disk (SQLITE_FULL, ENOSPC) that
stops the writable open opens the store read-only the same way, with the reason in
``read_only_reason`` and ``stats()``: a restart on a full disk keeps serving the committed
entries. Only a file that fails SQLite's ``quick_check`` through a read-only connection is
called damaged (with the advice to move the directory aside).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import secrets
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cachemux.errors import ConfigError, CorruptEntryError, ForgedEntryError, InvariantError, StoreError
from cachemux.stores._policy import FORGET_BELOW, RESCALE_AT, StorePolicy, resolve_policy
from cachemux.stores._shares import REST as _REST
from cachemux.stores._shares import check_share_state, check_shares, share_capacity, share_part
from cachemux.stores.base import CHANGES_RESET, Entry, PutResult, Signer, Store, check_key
from cachemux.stores.breaker import CircuitBreaker, Unavailable

try:  # diskcache is a core dependency; keep the import error readable anyway
    import diskcache
    from diskcache.core import MODE_RAW, UNKNOWN
except ImportError as _exc:  # pragma: no cover
    raise ImportError("cachemux.stores.disk needs diskcache: pip install 'diskcache>=5.6'") from _exc

__all__ = ["DiskStore", "FORMAT", "FORMAT_VERSION", "MARKER", "ReadOnlyStoreError", "StoreGoneError"]

log = logging.getLogger(__name__)

FORMAT = "cachemux-diskstore"
FORMAT_VERSION = 1
MARKER = "cachemux-store.json"
DBNAME = diskcache.core.DBNAME  # "cache.db"

_DEFAULT_CAPACITY = 10_000.0
_DEFAULT_POLICY = "gdsf"
_DEFAULT_LOG_SIZE = 100_000
_TRIM_EVERY = 1_000  # trim the change log in batches, not on every append
_PRESENT_EVERY = 0.1  # seconds between presence checks of plain reads (transactions: every one)
_BUSY_SLICE_MS = 20  # SQLite's lock wait per attempt; between attempts _txn looks for progress
_WAL_WRITE_LOCK = 120  # the byte of the -shm file SQLite's unix VFS locks for a WAL writer

_STATE_FIELDS = ("clock", "used", "count", "seq", "inc", "total", "epoch", "logseq", "trimmed",
                 "hits", "misses", "admissions", "rejections", "evictions", "deletes", "replaced", "expired")

# stale entries leave first: the entries with an expiry, soonest first (O(log n) to find one)
_EXPIRY_INDEX = ("CREATE INDEX IF NOT EXISTS cachemux_entries_expiry ON cachemux_entries (expires)"
                 " WHERE expires IS NOT NULL")
_STATE_SELECT = f"SELECT {', '.join(_STATE_FIELDS)} FROM cachemux_state WHERE id = 1"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cachemux_config ("
    " id INTEGER PRIMARY KEY CHECK (id = 1), format TEXT NOT NULL, version INTEGER NOT NULL,"
    " policy TEXT NOT NULL, capacity REAL NOT NULL, options TEXT NOT NULL,"
    " log_size INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cachemux_state ("
    " id INTEGER PRIMARY KEY CHECK (id = 1), clock REAL NOT NULL, used REAL NOT NULL,"
    " count INTEGER NOT NULL, seq INTEGER NOT NULL, inc REAL NOT NULL, total REAL NOT NULL,"
    " epoch INTEGER NOT NULL, logseq INTEGER NOT NULL, trimmed INTEGER NOT NULL,"
    " hits INTEGER NOT NULL, misses INTEGER NOT NULL, admissions INTEGER NOT NULL,"
    " rejections INTEGER NOT NULL, evictions INTEGER NOT NULL, deletes INTEGER NOT NULL,"
    " replaced INTEGER NOT NULL, expired INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS cachemux_entries ("
    " key TEXT PRIMARY KEY, size REAL NOT NULL, cost REAL NOT NULL, n REAL NOT NULL,"
    " base REAL NOT NULL, prio REAL NOT NULL, seq INTEGER NOT NULL, ins INTEGER NOT NULL,"
    " expires REAL) WITHOUT ROWID",
    "CREATE UNIQUE INDEX IF NOT EXISTS cachemux_entries_order ON cachemux_entries (prio, seq)",
    _EXPIRY_INDEX,
    "CREATE TABLE IF NOT EXISTS cachemux_history (key TEXT PRIMARY KEY, count REAL NOT NULL)"
    " WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS cachemux_changes (id INTEGER PRIMARY KEY, op TEXT NOT NULL,"
    " key TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cachemux_ident (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " store_id TEXT NOT NULL)",
)
_SHARES_SCHEMA = (  # only in stores created with shares=
    "ALTER TABLE cachemux_entries ADD COLUMN part TEXT NOT NULL DEFAULT '*'",
    "CREATE INDEX cachemux_entries_part ON cachemux_entries (part, prio, seq)",
    "CREATE INDEX cachemux_entries_part_expiry ON cachemux_entries (part, expires) WHERE expires IS NOT NULL",
    "CREATE TABLE cachemux_shares (ns TEXT PRIMARY KEY, fraction REAL NOT NULL)",
    "CREATE TABLE cachemux_parts (part TEXT PRIMARY KEY, used REAL NOT NULL, count INTEGER NOT NULL,"
    " clock REAL NOT NULL)",
)
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


def _wal_writer(shm: Path) -> tuple[int, str] | None:
    """(pid, state) of the process holding SQLite's WAL write lock on ``shm``, from /proc/locks
    and /proc/<pid>/stat (state "T"/"t": stopped, e.g. SIGSTOP or a debugger); None when it
    cannot be told (not Linux, a holder in another PID namespace); (0, "free") when none holds it."""
    try:
        st = os.stat(shm)
        dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        with open("/proc/locks", encoding="ascii") as f:
            for line in f:  # "1: POSIX  ADVISORY  WRITE 9206 fe:00:2155402 120 120" ("->": a waiter)
                p = line.split()
                if (len(p) == 8 and p[1] == "POSIX" and p[3] == "WRITE" and p[5] == dev
                        and int(p[6]) <= _WAL_WRITE_LOCK and (p[7] == "EOF" or int(p[7]) >= _WAL_WRITE_LOCK)):
                    pid = int(p[4])
                    break
            else:
                return 0, "free"  # released meanwhile
        if pid <= 0:
            return None
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return pid, f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None


def _ro_uri(db: Path, immutable: bool = False) -> str:
    return f"file:{urllib.parse.quote(str(db))}?{'immutable=1' if immutable else 'mode=ro'}"


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


class _LockTimeout(Unavailable):
    """Another connection held the write lock longer than this operation may wait."""


class _Part:
    """One ``cachemux_parts`` row: a namespace share's used size, entry count and GDSF clock."""

    __slots__ = ("part", "used", "count", "clock")

    def __init__(self, part: str, used: float, count: int, clock: float) -> None:
        self.part, self.used, self.count, self.clock = part, used, count, clock


class _State:
    """The single ``cachemux_state`` row, read at the start of a transaction, written at its end."""

    __slots__ = _STATE_FIELDS

    def __init__(self, row: tuple) -> None:
        for name, value in zip(_STATE_FIELDS, row):
            setattr(self, name, value)

    def values(self) -> tuple:
        return tuple(getattr(self, f) for f in _STATE_FIELDS)


class DiskStore(Store):
    """A persistent store in ``directory`` under a GDSF, GDS, LEC, LFU, LRU or FIFO policy.

    ``capacity``, ``policy`` and policy options are fixed when the store is created; reopening
    with ``None`` (the default) uses the stored ones, and a different explicit value is a
    ``ConfigError`` (clear the directory to change them). Policies and options are those of
    ``cachemux.policies`` (``lec``: ``half_life``, ``admission``; ``lfu``: ``history``,
    ``admission``, ``half_life``), and the store makes the same decisions as
    ``MemoryStore(capacity, policy, **options)`` on the same sequence of operations.

    ``lookup_timeout`` / ``update_timeout`` bound the wait for a stopped process's transaction in
    ``get`` (then an uncounted read) and ``put``/``delete`` (then ``StoreError``);
    ``busy_timeout`` that for a running one that commits nothing; ``timeout`` all waiting, and
    that of opening, ``clear`` and ``check_invariants``;
    ``durable=True`` syncs every commit (SQLite ``synchronous=FULL``) so that committed entries
    survive power loss too, not only process crashes. ``verify=True`` runs SQLite's
    ``quick_check`` on open (O(size of the database)). ``readonly``: None opens a directory this
    process cannot write (or on a full disk) read-only, True forces it, False refuses it
    (module docstring).
    ``shares={namespace: fraction}`` (fixed at creation, None on reopen = the stored ones): each
    listed namespace (``Entry.meta["ns"]``) holds at most its fraction of ``capacity`` and is
    evicted only by its own newcomers, the others share the rest; within a share the policy
    decides as ``MemoryStore(capacity, policy, shares=...)`` does. ``signing_key`` (bytes or
    str): values are HMAC-signed and checked on read (``base.Signer``); a forged, altered or
    moved value is a miss, counted in ``stats()["forged"]`` and logged.
    """

    LOOKUP_TIMEOUT = 0.1  # seconds get() waits for a stopped (or unidentified) holder of the write lock
    UPDATE_TIMEOUT = 0.2  # seconds put()/delete() wait for it
    BUSY_TIMEOUT = 10.0  # seconds any of them waits for a running holder that commits nothing

    def __init__(self, directory: str | os.PathLike[str], capacity: float | None = None,
                 policy: str | None = None, *, timeout: float = 60.0, lookup_timeout: float | None = None,
                 update_timeout: float | None = None, busy_timeout: float | None = None,
                 log_size: int | None = None,
                 durable: bool = False, verify: bool = False, breaker: CircuitBreaker | bool = True,
                 readonly: bool | None = None, shares: dict[str, float] | None = None,
                 signing_key: bytes | str | None = None,
                 **policy_options: Any) -> None:
        self.directory = Path(directory).expanduser()
        self._cache: Any = None  # diskcache.Cache, or _ReadOnlyCache when read-only
        self.read_only = False
        self.read_only_reason: str | None = None  # why it opened read-only
        self._identity: tuple[int, ...] | None = None  # (dev, inode) of the directory and cache.db
        self._gone: str | None = None
        self._gone_ops = self._read_only_drops = 0
        self._checked = -math.inf  # monotonic time of the last presence check
        if readonly not in (None, True, False):
            raise ConfigError(f"readonly must be None (detect), True or False, got {readonly!r}")
        lookup_timeout = self.LOOKUP_TIMEOUT if lookup_timeout is None else lookup_timeout
        update_timeout = self.UPDATE_TIMEOUT if update_timeout is None else update_timeout
        busy_timeout = self.BUSY_TIMEOUT if busy_timeout is None else busy_timeout
        for name, v in (("timeout", timeout), ("lookup_timeout", lookup_timeout),
                        ("update_timeout", update_timeout), ("busy_timeout", busy_timeout)):
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and 0 < v < 1e6):
                raise ConfigError(f"{name} must be a number of seconds > 0, got {v!r}")
        self.timeout, self.lookup_timeout, self.update_timeout = float(timeout), float(lookup_timeout), float(update_timeout)
        self.busy_timeout = float(busy_timeout)
        self._local = threading.local()  # per thread: the busy timeout set on its connection
        self._uncounted = 0
        self._last_warning = -1e9
        self._signer = None if signing_key is None else Signer(signing_key)
        if breaker is True:
            breaker = CircuitBreaker(1.0, min_cost=0.0, name=f"disk store {self.directory}")
        elif breaker is not False and not isinstance(breaker, CircuitBreaker):
            raise ConfigError(f"breaker must be a CircuitBreaker, True or False, got {breaker!r}")
        self.breaker: CircuitBreaker | None = breaker or None  # lock timeouts open it; getting the lock closes it
        if log_size is not None and (not isinstance(log_size, int) or log_size < 1):
            raise ConfigError(f"log_size must be an int >= 1, got {log_size!r}")
        # validate the arguments before touching the disk; None = "the stored one"
        requested = resolve_policy(_DEFAULT_POLICY if policy is None else policy,
                                   _DEFAULT_CAPACITY if capacity is None else capacity,
                                   policy_options)
        given = {"policy": policy is not None, "capacity": capacity is not None,
                 "options": bool(policy_options), "shares": shares is not None}
        self.shares = check_shares(shares)
        why_ro = self._why_read_only()
        if why_ro is not None and readonly is False:
            raise StoreError(f"disk store {self.directory}: {why_ro}, and readonly=False was given "
                             "(pass readonly=None to open it read-only: lookups work, updates drop)")
        if why_ro is not None or readonly:
            self._open_read_only(requested, given, log_size, why_ro or "opened with readonly=True")
            return
        try:
            self._open_writable(requested, given, log_size, timeout, durable, verify)
        except StoreError as exc:
            full = _disk_full(exc, self.directory)
            if full is None or isinstance(exc, ConfigError):
                raise
            self.close()
            if readonly is False:
                raise StoreError(f"disk store {self.directory}: {full}, and readonly=False was given (pass "
                                 "readonly=None to open it read-only: lookups work, updates drop)") from exc
            self._open_read_only(requested, given, log_size, full)

    def _open_writable(self, requested: StorePolicy, given: dict[str, bool], log_size: int | None,
                       timeout: float, durable: bool, verify: bool) -> None:
        initialised, store_id = self._claim_directory()
        db = self.directory / DBNAME
        if initialised and not db.exists():
            raise StoreError(f"disk store {self.directory}: {DBNAME} is missing although the marker "
                             "says the store was created; its entries are lost or were moved")
        if not initialised and store_id is None:  # a marker claimed by an older cachemux
            store_id = secrets.token_hex(16)
        self._check_database(db, initialised, store_id)  # read-only: nothing written before it passes
        try:
            self._cache = diskcache.Cache(
                str(self.directory), timeout=timeout, disk=_TextDisk,
                eviction_policy="none", cull_limit=0, statistics=0, size_limit=2**62,
                disk_min_file_size=2**62, sqlite_synchronous=2 if durable else 1)
        except (sqlite3.OperationalError, diskcache.Timeout) as exc:
            if isinstance(exc, diskcache.Timeout) or "locked" in str(exc):
                raise StoreError(f"disk store {self.directory}: cannot open {db}: another process held its "
                                 f"write lock for over timeout={self.timeout:g}s (frozen or stopped inside "
                                 "a transaction?)") from exc
            raise self._damaged(db, exc) from exc
        except (sqlite3.Error, OSError) as exc:
            raise self._damaged(db, exc) from exc
        try:
            self.spec, self.log_size = self._init_schema(requested, given, log_size, initialised, store_id)
            if verify:
                self.verify()
            if not initialised:
                self._write_marker(initialised=True, store_id=store_id)
            self._identity = self._stat_identity()
        except BaseException:
            self.close()
            raise

    # ---- read-only, deleted, replaced --------------------------------------------------------
    def _why_read_only(self) -> str | None:
        """Why this process cannot write the existing directory (None: it can, or it is new)."""
        d = self.directory
        if not d.is_dir():
            return None
        if _read_only_fs(d):
            return "its filesystem is mounted read-only"
        db = d / DBNAME
        if not os.access(d, os.W_OK | os.X_OK) or (db.exists() and not os.access(db, os.W_OK)):
            return f"the directory or {DBNAME} is not writable by this user (uid {os.getuid()})"
        return None

    def _connect_ro(self, db: Path, why: str) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(_ro_uri(db), uri=True, timeout=self.timeout, check_same_thread=False,
                                  isolation_level=None)
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return con
        except sqlite3.DatabaseError as exc:
            if not self._immutable_ok(db, exc):
                raise StoreError(f"disk store {self.directory}: {why}, and SQLite cannot read {db} "
                                 f"read-only ({type(exc).__name__}: {exc}); a WAL database needs "
                                 f"its {DBNAME}-shm file or a writable directory") from exc
        try:
            con = sqlite3.connect(_ro_uri(db, immutable=True), uri=True, check_same_thread=False,
                                  isolation_level=None)
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return con
        except sqlite3.DatabaseError as exc:
            raise self._damaged(db, exc) from exc

    def _immutable_ok(self, db: Path, exc: BaseException) -> bool:
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
        return no_wal and _disk_full(exc, self.directory) is not None

    def _open_read_only(self, requested: StorePolicy, given: dict[str, bool], log_size: int | None,
                        why: str) -> None:
        d, marker, db = self.directory, self.directory / MARKER, self.directory / DBNAME
        if not d.is_dir():
            raise StoreError(f"disk store {d}: {why}, and the directory does not exist")
        if not marker.exists():
            raise StoreError(f"disk store {d}: {why}, and it is not a cachemux store (no {MARKER}): "
                             "nothing to read, and a new store cannot be created there")
        initialised, store_id = self._read_marker(marker)
        if not initialised or not db.exists():
            raise StoreError(f"disk store {d}: {why}, and the store was never completely created "
                             f"(no {DBNAME} or no entries yet): a new store cannot be created there")
        self._check_database(db, True, store_id, why=why)
        self._cache = _ReadOnlyCache(self._connect_ro(db, why))
        self.read_only, self.read_only_reason = True, why
        try:
            with self._read() as sql:
                self.spec, self.log_size = self._check_config(sql, requested, given, log_size)
            self._identity = self._stat_identity()
        except BaseException:
            self.close()
            raise
        log.warning("disk store %s opened read-only (%s): lookups work, updates are dropped", d, why)

    def _check_database(self, db: Path, initialised: bool, store_id: str | None, why: str = "") -> None:
        """Look at an existing ``cache.db`` through a read-only connection before anything opens
        it for writing (diskcache rewrites its Settings on open): it must be this marker's store."""
        if not db.exists():
            return
        d = self.directory
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
            if why and self._immutable_ok(db, exc):
                return  # no -shm file and none can be made: checked after the immutable open
            raise self._damaged(db, exc) from exc
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

    def _stat_identity(self) -> tuple[int, ...]:
        # cache.db alone: deleting, moving or replacing the directory removes or replaces it, and
        # its inode cannot be reused while this process holds the file open
        b = os.stat(self.directory / DBNAME)
        return b.st_dev, b.st_ino

    def _check_present(self, always: bool = True) -> None:
        """Raise ``StoreGoneError`` if ``cache.db`` is no longer the file opened. Transactions
        (every write and counted lookup) always check; plain reads (peek, keys, len) at most
        every ``_PRESENT_EVERY`` s, so an index rebuild's 100k peeks do not pay a stat each."""
        if self._identity is None:  # still opening
            return
        if self._gone is None:
            now_t = time.monotonic()
            if not always and now_t - self._checked < _PRESENT_EVERY:
                return
            self._checked = now_t
            try:
                now: tuple[int, ...] | None = self._stat_identity()
            except FileNotFoundError:
                now = None
            except OSError:
                return  # cannot tell (permissions): SQLite reports what is wrong, if anything
            if now == self._identity:
                return
            what = "deleted or moved away" if now is None else "replaced (another directory or database at its path)"
            self._gone = (f"disk store {self.directory}: its directory or {DBNAME} was {what} while open; "
                          "its entries are no longer reachable there. Lookups miss and updates are dropped "
                          "until the store is reopened (DiskStore(directory) starts a new store)")
            log.error("%s", self._gone)
        self._gone_ops += 1
        raise StoreGoneError(self._gone)

    def _damaged(self, db: Path, exc: BaseException) -> StoreError:
        """The error for a database SQLite could not open. Advises moving the directory aside only
        when the file is really damaged: a full disk, or a file that passes ``quick_check`` read
        through an immutable (lock-free, read-only) connection, is named as such instead."""
        where = f"disk store {self.directory}: cannot open {db} ({type(exc).__name__}: {exc})"
        full = _disk_full(exc, self.directory)
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

    # ---- directory marker -----------------------------------------------------------------
    def _claim_directory(self) -> tuple[bool, str | None]:
        """Make sure ``directory`` is ours (claiming it if new/empty): (initialised, store id)."""
        d, marker = self.directory, self.directory / MARKER
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
                    self._write_marker(initialised=False, store_id=secrets.token_hex(16), exclusive=True)
                except FileExistsError:
                    pass  # another process claimed it first: read its marker below
        return self._read_marker(marker)

    def _read_marker(self, marker: Path) -> tuple[bool, str | None]:
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(f"disk store {self.directory}: unreadable marker {marker}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise StoreError(f"disk store {self.directory}: {marker} is not a cachemux marker "
                             f"(expected format {FORMAT!r}, got {data!r:.200})")
        if data.get("version") != FORMAT_VERSION:
            raise StoreError(f"disk store {self.directory}: format version {data.get('version')!r} "
                             f"is not supported by this cachemux (supports {FORMAT_VERSION})")
        store_id = data.get("store_id")
        if store_id is not None and not isinstance(store_id, str):
            raise StoreError(f"disk store {self.directory}: {marker} has a bad store_id {store_id!r:.80}")
        return bool(data.get("initialised")), store_id

    def _write_marker(self, *, initialised: bool, store_id: str, exclusive: bool = False) -> None:
        marker = self.directory / MARKER
        tmp = self.directory / f".{MARKER}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
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
            raise StoreError(f"disk store {self.directory}: cannot write {marker}: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    # ---- schema and configuration ---------------------------------------------------------
    def _init_schema(self, requested: StorePolicy, given: dict[str, bool], log_size: int | None,
                     initialised: bool, store_id: str | None) -> tuple[StorePolicy, int]:
        with self._txn() as sql:
            have = {r[0] for r in sql("SELECT name FROM sqlite_master WHERE type='table'")}
            if "cachemux_config" not in have:
                if initialised:
                    raise StoreError(f"disk store {self.directory}: {DBNAME} has no cachemux tables "
                                     "although the marker says the store was created")
                if "Cache" in have and sql("SELECT 1 FROM Cache LIMIT 1").fetchone():
                    raise StoreError(f"disk store {self.directory}: {DBNAME} holds diskcache data "
                                     "that cachemux did not write; refusing to adopt it")
                spec = requested
                for stmt in _SCHEMA:
                    sql(stmt)
                sql("INSERT INTO cachemux_config VALUES (1, ?, ?, ?, ?, ?, ?)",
                    (FORMAT, FORMAT_VERSION, spec.name, spec.capacity, spec.options_json(),
                     log_size or _DEFAULT_LOG_SIZE))
                # change ids start at a random offset, so a cursor taken on another (or a
                # recreated) store falls outside this one's window and gets a reset
                start = secrets.randbelow(2**40) + 1
                sql("INSERT INTO cachemux_state VALUES (1, 0.0, 0.0, 0, 0, 1.0, 0.0, 0, ?, ?,"
                    " 0, 0, 0, 0, 0, 0, 0, 0)", (start, start))
                sql("INSERT INTO cachemux_ident VALUES (1, ?)", (store_id,))
                if self.shares:  # fixed at creation, like the capacity
                    for stmt in _SHARES_SCHEMA:
                        sql(stmt)
                    for row in self.shares.items():
                        sql("INSERT INTO cachemux_shares VALUES (?, ?)", row)
            else:
                self._add_expiry_columns(sql, have)
            return self._check_config(sql, requested, given, log_size)

    @staticmethod
    def _add_expiry_columns(sql: Any, have: set) -> None:
        """A store created before entries had an expiry: add its columns and index (an upgrade
        in place; older cachemux versions ignore them)."""
        if not any(r[1] == "expired" for r in sql("PRAGMA table_info(cachemux_state)")):
            sql("ALTER TABLE cachemux_state ADD COLUMN expired INTEGER NOT NULL DEFAULT 0")
        if not any(r[1] == "expires" for r in sql("PRAGMA table_info(cachemux_entries)")):
            sql("ALTER TABLE cachemux_entries ADD COLUMN expires REAL")
            sql(_EXPIRY_INDEX)
            if "cachemux_shares" in have:
                sql(_SHARES_SCHEMA[2])

    def _check_config(self, sql: Any, requested: StorePolicy, given: dict[str, bool],
                      log_size: int | None) -> tuple[StorePolicy, int]:
        row = sql("SELECT format, version, policy, capacity, options, log_size"
                  " FROM cachemux_config WHERE id = 1").fetchone()
        if row is None or row[0] != FORMAT:
            raise StoreError(f"disk store {self.directory}: missing or foreign cachemux_config")
        if row[1] != FORMAT_VERSION:
            raise StoreError(f"disk store {self.directory}: database format version {row[1]!r} "
                             f"is not supported (supports {FORMAT_VERSION})")
        stored = resolve_policy(row[2], row[3], json.loads(row[4]))
        n_rows = sql("SELECT count(*) FROM cachemux_entries").fetchone()[0]
        st = self._state(sql)
        if n_rows != st.count:
            raise StoreError(f"disk store {self.directory}: {n_rows} entry rows but the state "
                             f"counts {st.count}: the database is damaged")
        have = {r[0] for r in sql("SELECT name FROM sqlite_master WHERE type='table'")}
        stored_shares = dict(sql("SELECT ns, fraction FROM cachemux_shares ORDER BY ns")) \
            if "cachemux_shares" in have else {}
        if given["shares"] and stored_shares != self.shares:
            raise ConfigError(f"disk store {self.directory} was created with shares={stored_shares or None}; "
                              f"got shares={self.shares}. Reopen with shares=None (the stored ones) or "
                              "clear the directory")
        self.shares = stored_shares
        if ((given["policy"] and requested.name != stored.name)
                or (given["capacity"] and requested.capacity != stored.capacity)
                or (given["options"] and requested.options != stored.options)):
            raise ConfigError(
                f"disk store {self.directory} was created with policy={stored.name!r}, "
                f"capacity={stored.capacity:g}, options={stored.options}; got policy="
                f"{requested.name!r}, capacity={requested.capacity:g}, options={requested.options}. "
                "Reopen with capacity=None, policy=None (the stored ones) or clear the directory")
        return stored, int(log_size or row[5])

    # ---- plumbing -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _txn(self, wait: float | None = None) -> Iterator[Any]:
        """One ``BEGIN IMMEDIATE`` transaction through diskcache; backend faults -> StoreError.

        While another connection holds the write lock, wait as long as it makes progress (any
        commit, seen through ``PRAGMA data_version``) up to ``timeout``. With no commit at all for
        ``wait`` seconds (default ``timeout``), ask whose lock it is (``_wal_writer``): a holder
        that is running (descheduled on a busy machine, in I/O, in a long transaction) is waited
        for up to ``busy_timeout`` without a commit; a stopped one (SIGSTOP, a debugger), or one
        that cannot be identified, is stuck: give up. While the breaker is open (a holder was
        stuck), one attempt and no wait."""
        cache = self._cache
        if cache is None:
            raise StoreError(f"disk store {self.directory}: closed")
        self._check_present()
        if self.read_only:
            self._read_only_drops += 1
            raise ReadOnlyStoreError(f"disk store {self.directory} is open read-only: updates are dropped "
                                     f"({self._read_only_drops} so far)")
        breaker = self.breaker if wait is not None else None  # the short waits only
        patient = breaker is None or breaker.state == "closed"
        if not patient:
            wait = 0.0  # another process seemed stuck: one attempt (~20 ms), no wait, until it moves
        settled = breaker is None
        wait = self.timeout if wait is None else wait
        try:
            con = cache._con  # this thread's connection (diskcache reopens it after a fork)
            local = self._local
            if getattr(local, "con", None) is not con:
                con.execute(f"PRAGMA busy_timeout = {_BUSY_SLICE_MS}")  # SQLite's wait per attempt
                local.con = con
            shm = self.directory / f"{DBNAME}-shm"
            with contextlib.ExitStack() as stack:
                start = stalled = time.monotonic()
                version = None
                while True:
                    try:
                        stack.enter_context(cache.transact())
                        break
                    except diskcache.Timeout:
                        now = time.monotonic()
                        seen = con.execute("PRAGMA data_version").fetchone()[0]
                        if version is None:
                            version = seen
                        elif seen != version:  # someone committed meanwhile: contention, not a stuck holder
                            version, stalled = seen, now
                        if now - start >= self.timeout:
                            holder = None
                        elif now - stalled < wait:
                            continue
                        else:  # a holder still running is busy (descheduled, in I/O), not frozen
                            holder = _wal_writer(shm)
                            if patient and now - stalled < self.busy_timeout and holder is not None \
                                    and holder[1] not in "Tt":
                                continue
                        exc = _LockTimeout(
                            f"disk store {self.directory}: timed out after {now - start:.2g}s waiting "
                            f"for another process's transaction, {now - stalled:.2g}s without any commit "
                            + (f"(the holder, process {holder[0]}, is stopped)" if holder and holder[1] in "Tt"
                               else "(frozen or stopped inside one?)"))
                        if breaker is not None:
                            settled = True
                            breaker.after(False, exc, now - start)
                        raise exc from None
                if not settled:
                    settled = True
                    breaker.after(False, None, 0.0)  # type: ignore[union-attr]
                yield con.execute
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"disk store {self.directory}: {type(exc).__name__}: {exc}") from exc
        finally:
            if not settled:  # failed before the lock for another reason: not a lock fault
                breaker.after(False, None, 0.0)  # type: ignore[union-attr]

    @contextlib.contextmanager
    def _read(self) -> Iterator[Any]:
        cache = self._cache
        if cache is None:
            raise StoreError(f"disk store {self.directory}: closed")
        self._check_present(always=False)
        try:
            if self.read_only:
                with cache.lock:
                    yield cache._con.execute
            else:
                yield cache._con.execute
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"disk store {self.directory}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _state(sql: Any) -> _State:
        try:
            row = sql(_STATE_SELECT).fetchone()
        except sqlite3.OperationalError as exc:  # opened read-only, made before the expiry columns
            if "expired" not in str(exc):
                raise
            row = sql(_STATE_SELECT.replace(", expired FROM", ", 0 FROM")).fetchone()
        if row is None:
            raise StoreError("cachemux_state row is missing: the database is damaged")
        return _State(row)

    @staticmethod
    def _save(sql: Any, st: _State) -> None:
        sql(f"UPDATE cachemux_state SET {', '.join(f + ' = ?' for f in _STATE_FIELDS)} WHERE id = 1",
            st.values())

    def _value(self, key: str) -> str | None:
        return self._cache.get(key)  # type: ignore[union-attr]

    def _parse(self, key: str, text: str) -> Entry:
        try:
            return Entry.from_json(text if self._signer is None else self._signer.open(key, text))
        except CorruptEntryError as exc:
            raise type(exc)(f"disk store {self.directory}: entry {key!r}: {exc}") from None

    def _entry(self, key: str, text: str) -> Entry | None:
        """``_parse`` for reads: a value failing its signature check is a miss (counted, logged)."""
        try:
            return self._parse(key, text)
        except ForgedEntryError as exc:
            self._signer.rejected(exc)  # type: ignore[union-attr]
            return None

    def _log(self, sql: Any, st: _State, op: str, key: str) -> None:
        st.logseq += 1
        sql("INSERT INTO cachemux_changes (id, op, key) VALUES (?, ?, ?)", (st.logseq, op, key))
        if st.logseq - st.trimmed >= self.log_size + _TRIM_EVERY:
            st.trimmed = st.logseq - self.log_size
            sql("DELETE FROM cachemux_changes WHERE id <= ?", (st.trimmed,))

    # ---- the policy, step by step (mirrors cachemux.policies) -----------------------------
    def _observe(self, sql: Any, st: _State, key: str) -> float:
        """FrequencyEstimator.observe: count one request of ``key``, rescaling when weights grow."""
        inc = st.inc
        row = sql("SELECT count FROM cachemux_history WHERE key = ?", (key,)).fetchone()
        c = (row[0] if row else 0.0) + inc
        sql("INSERT OR REPLACE INTO cachemux_history (key, count) VALUES (?, ?)", (key, c))
        st.total += inc
        growth = self.spec.growth
        if growth != 1.0:
            nxt = inc * growth
            if nxt > RESCALE_AT:
                f = 1.0 / inc
                self._rescale(sql, st, f)
                c = c * f
                nxt = growth
            st.inc = nxt
        return c

    def _rescale(self, sql: Any, st: _State, f: float) -> None:
        """Multiply every count by ``f`` (forgetting negligible ones) and re-rank cached keys
        in admission order, as FrequencyEstimator._rescale + FrequencyPolicy._rescaled do."""
        sql("UPDATE cachemux_history SET count = count * ?", (f,))
        sql("DELETE FROM cachemux_history WHERE NOT (count > ?)", (FORGET_BELOW,))
        st.total *= f
        st.epoch += 1
        rows = sql("SELECT key, n, cost, size FROM cachemux_entries ORDER BY ins").fetchall()
        sql("UPDATE cachemux_entries SET seq = -seq")  # free the (prio, seq) slots
        score = self.spec.score
        for key, n, cost, size in rows:
            n *= f
            st.seq += 1
            sql("UPDATE cachemux_entries SET n = ?, prio = ?, seq = ? WHERE key = ?",
                (n, score(n, cost, size), st.seq, key))

    def _part_state(self, sql: Any, st: _State, part: str) -> _State | _Part:
        """The used size, count and clock eviction works within: the whole store's without
        shares, else those of ``part``'s share."""
        if not self.shares:
            return st
        row = sql("SELECT used, count, clock FROM cachemux_parts WHERE part = ?", (part,)).fetchone()
        return _Part(part, *(row or (0.0, 0, 0.0)))

    def _save_part(self, sql: Any, ps: _State | _Part) -> None:
        if isinstance(ps, _Part):
            sql("INSERT OR REPLACE INTO cachemux_parts (part, used, count, clock) VALUES (?, ?, ?, ?)",
                (ps.part, ps.used, ps.count, ps.clock))

    def _on_hit(self, sql: Any, st: _State, key: str, n: float, cost: float, size: float,
                part: str = _REST) -> None:
        spec = self.spec
        if spec.family == "recency":
            if spec.hit_moves:  # LRU: move to the back; FIFO: nothing
                st.seq += 1
                sql("UPDATE cachemux_entries SET prio = ?, seq = ? WHERE key = ?", (st.seq, st.seq, key))
            return
        if spec.family == "greedy-dual":
            n = n + 1  # GDSF._on_hit: F += 1, H = clock + F * C / S
            f = n if spec.use_freq else 1
            clock = self._part_state(sql, st, part).clock  # with shares: the share's own clock
            prio = clock + f * cost / size
            base = clock
        else:
            n = self._observe(sql, st, key) if spec.history else n + 1.0
            prio = spec.score(n, cost, size)
            base = 0.0
        st.seq += 1
        sql("UPDATE cachemux_entries SET n = ?, base = ?, prio = ?, seq = ? WHERE key = ?",
            (n, base, prio, st.seq, key))

    def _new_count(self, sql: Any, st: _State, key: str) -> float:
        if not self.spec.history:
            return 1.0
        row = sql("SELECT count FROM cachemux_history WHERE key = ?", (key,)).fetchone()
        return (row[0] if row else 0.0) or st.inc

    def _should_admit(self, sql: Any, st: _State, ps: _State | _Part, key: str, cost: float, size: float,
                      capacity: float, where: str, params: tuple) -> bool:
        """``ps``: the store's or (with shares) the share's used size and count."""
        spec = self.spec
        if not spec.admission or ps.used + size <= capacity:
            return True
        # online LEC's admission step: the newcomer must be strictly more valuable than every
        # entry it would evict (ties keep the incumbents); walk the eviction index lazily
        mine = spec.score(self._new_count(sql, st, key), cost, size)
        used = ps.used
        taken = 0
        for vsize, prio in sql(f"SELECT size, prio FROM cachemux_entries{where} ORDER BY prio, seq", params):
            if taken and not (used + size > capacity):
                break
            if taken >= ps.count:
                break
            taken += 1
            if prio >= mine:
                return False
            used -= vsize
        return True

    def _place(self, sql: Any, st: _State, key: str, cost: float, size: float, part: str = _REST,
               expires: float | None = None) -> tuple[bool, list[str], int]:
        """Policy._place: admit if wanted, evicting the lowest priorities until the entry fits
        (with shares: within ``part``'s share, among its entries); entries past their expiry
        leave first. Returns (admitted, evicted keys, how many of them had expired)."""
        spec = self.spec
        ps = self._part_state(sql, st, part)
        if self.shares:
            capacity, where, params = share_capacity(self.shares, spec.capacity, part), " WHERE part = ?", (part,)
        else:
            capacity, where, params = spec.capacity, "", ()
        if size > capacity:
            return False, [], 0
        evicted: list[str] = []
        if ps.used + size > capacity:
            self._drop_expired(sql, st, ps, size, capacity, evicted)
        expired = len(evicted)
        if not self._should_admit(sql, st, ps, key, cost, size, capacity, where, params):
            self._save_part(sql, ps)
            return False, evicted, expired
        while ps.used + size > capacity:
            row = sql(f"SELECT key, size, prio FROM cachemux_entries{where} ORDER BY prio, seq LIMIT 1",
                      params).fetchone()
            if row is None:
                raise StoreError(f"disk store {self.directory}: used={st.used} with no entries: "
                                 "the database is damaged")
            vkey, vsize, vprio = row
            sql("DELETE FROM cachemux_entries WHERE key = ?", (vkey,))
            self._cache.delete(vkey)  # type: ignore[union-attr]
            for acc in {id(st): st, id(ps): ps}.values():
                acc.used -= vsize
                acc.count -= 1
                if acc.count == 0:
                    acc.used = 0.0  # no float residue in an empty cache (Policy._place)
            if spec.family == "greedy-dual":
                ps.clock = vprio  # GDSF's inflation step: L := H(victim)
            st.evictions += 1
            evicted.append(vkey)
            self._log(sql, st, "del", vkey)
        st.seq += 1
        if spec.family == "recency":
            n, base, prio = 1.0, 0.0, float(st.seq)
        elif spec.family == "greedy-dual":
            n, base = 1.0, ps.clock
            prio = ps.clock + 1 * cost / size
        else:
            n, base = self._new_count(sql, st, key), 0.0
            prio = spec.score(n, cost, size)
        if self.shares:
            sql("INSERT INTO cachemux_entries (key, size, cost, n, base, prio, seq, ins, expires, part)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, size, cost, n, base, prio, st.seq, st.seq, expires, part))
        else:
            sql("INSERT INTO cachemux_entries (key, size, cost, n, base, prio, seq, ins, expires)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (key, size, cost, n, base, prio, st.seq, st.seq, expires))
        for acc in {id(st): st, id(ps): ps}.values():
            acc.used += size
            acc.count += 1
        self._save_part(sql, ps)
        return True, evicted, expired

    def _drop_expired(self, sql: Any, st: _State, ps: _State | _Part, size: float, capacity: float,
                      out: list[str]) -> None:
        """Remove the entries (of ``ps``'s share) whose expiry passed, soonest first, while the
        newcomer does not fit: one indexed lookup per entry removed, none when nothing expired."""
        now = time.time()
        if self.shares:
            query, params = ("SELECT key, size FROM cachemux_entries WHERE part = ? AND expires < ?"
                             " ORDER BY expires LIMIT 1"), (ps.part, now)  # type: ignore[union-attr]
        else:
            query, params = ("SELECT key, size FROM cachemux_entries WHERE expires < ?"
                             " ORDER BY expires LIMIT 1"), (now,)
        while ps.used + size > capacity:
            row = sql(query, params).fetchone()
            if row is None:
                return
            vkey, vsize = row
            sql("DELETE FROM cachemux_entries WHERE key = ?", (vkey,))
            self._cache.delete(vkey)  # type: ignore[union-attr]
            for acc in {id(st): st, id(ps): ps}.values():
                acc.count -= 1
                acc.used = acc.used - vsize if acc.count else 0.0
            st.expired += 1
            out.append(vkey)
            self._log(sql, st, "del", vkey)

    def _remove(self, sql: Any, st: _State, key: str) -> bool:
        """Policy.remove: drop a cached key (its value too)."""
        row = sql(f"SELECT size{', part' if self.shares else ''} FROM cachemux_entries WHERE key = ?",
                  (key,)).fetchone()
        if row is None:
            return False
        sql("DELETE FROM cachemux_entries WHERE key = ?", (key,))
        self._cache.delete(key)  # type: ignore[union-attr]
        ps = self._part_state(sql, st, row[1]) if self.shares else st
        for acc in {id(st): st, id(ps): ps}.values():
            acc.count -= 1
            acc.used = acc.used - row[0] if acc.count else 0.0
        self._save_part(sql, ps)
        self._log(sql, st, "del", key)
        return True

    # ---- the Store API --------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        check_key(key)
        if self.read_only:  # nothing can be counted: serve the committed value
            self._uncounted += 1
            return self.peek(key)
        try:
            return self._get(key)
        except StoreError as exc:
            # Unavailable: timed out on the lock now, or recently (the breaker is open); any other
            # fault of the hit's accounting write (disk full, read-only file): the committed value
            # is still readable (WAL): serve it, uncounted, rather than wait or miss
            if isinstance(exc, (CorruptEntryError, StoreGoneError)) or self._cache is None:
                raise  # a damaged entry, or a directory deleted/replaced under us: not servable
            self._uncounted += 1
            now = time.monotonic()
            if now - self._last_warning >= 10.0:
                self._last_warning = now
                log.warning("%s; served without counting the request (%d so far)", exc, self._uncounted)
            return self.peek(key)

    def _get(self, key: str) -> Entry | None:
        with self._txn(self.lookup_timeout) as sql:
            st = self._state(sql)
            row = sql(f"SELECT n, cost, size{', part' if self.shares else ''} FROM cachemux_entries"
                      " WHERE key = ?", (key,)).fetchone()
            if row is None:
                st.misses += 1
                if self.spec.history:  # LEC counts misses of uncached keys too
                    self._observe(sql, st, key)
                self._save(sql, st)
                return None
            text = self._value(key)
            if text is None:
                raise StoreError(f"disk store {self.directory}: entry {key!r} has policy state "
                                 "but no value: the database is damaged")
            st.hits += 1
            self._on_hit(sql, st, key, *row)
            self._save(sql, st)
        return self._entry(key, text)

    def peek(self, key: str) -> Entry | None:
        check_key(key)
        with self._read():
            text = self._value(key)
        return None if text is None else self._entry(key, text)

    def peek_many(self, keys: list[str]) -> dict[str, Entry | None]:
        """``peek`` of many keys, 500 per SQL query (a change-log replay reads ~1,000 at once);
        a corrupt entry raises ``CorruptEntryError`` as ``peek`` does."""
        for k in keys:
            check_key(k)
        out: dict[str, Entry | None] = dict.fromkeys(keys)
        texts: dict[str, str] = {}
        with self._read() as sql:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                for key, mode, filename, value in sql(
                        "SELECT key, mode, filename, value FROM Cache WHERE raw = 1 AND key IN"
                        f" ({','.join('?' * len(chunk))}) AND (expire_time IS NULL OR expire_time > ?)",
                        (*chunk, time.time())):
                    texts[key] = _TextDisk.fetch(None, mode, filename, value, False)  # type: ignore[arg-type]
        for key, text in texts.items():
            out[key] = self._entry(key, text)
        return out

    def put(self, key: str, entry: Entry) -> PutResult:
        check_key(key)
        if not isinstance(entry, Entry):
            raise ConfigError(f"put() needs an Entry, got {type(entry).__name__}")
        cost, size = float(entry.cost), float(entry.size)
        text = entry.to_json() if self._signer is None else self._signer.seal(key, entry.to_json())
        with self._txn(self.update_timeout) as sql:
            st = self._state(sql)
            if self._remove(sql, st, key):  # Policy.admit: re-offering a cached key replaces it
                st.replaced += 1
            admitted, evicted, expired = self._place(sql, st, key, cost, size,
                                                     share_part(self.shares, entry) if self.shares else _REST,
                                                     entry.expires)
            if admitted:
                self._cache.set(key, text)  # type: ignore[union-attr]
                st.admissions += 1
                self._log(sql, st, "add", key)
            else:
                st.rejections += 1
            self._save(sql, st)
        return PutResult(admitted, tuple(evicted), expired)

    def delete(self, key: str) -> bool:
        check_key(key)
        with self._txn(self.update_timeout) as sql:
            st = self._state(sql)
            found = self._remove(sql, st, key)
            if found:
                st.deletes += 1
                self._save(sql, st)
        return found

    def clear(self) -> None:
        """Remove every entry (logged as deletions). The GDSF clock and LEC's request history
        are kept, as ``MemoryStore.clear`` keeps its policy's."""
        with self._txn() as sql:
            st = self._state(sql)
            for (key,) in sql("SELECT key FROM cachemux_entries ORDER BY ins").fetchall():
                self._remove(sql, st, key)
                st.deletes += 1
            self._save(sql, st)

    def lease(self, key: str, seconds: float) -> bool:
        """Claim ``key`` for ``seconds`` (``Store.lease``): a row of ``cachemux_leases`` (made on
        first use; expired rows are deleted by the next claim), judged by the wall clock of this
        host. A read-only store grants every claim (it cannot record one)."""
        check_key(key)
        if self.read_only:
            return True
        now = time.time()
        with self._txn(self.update_timeout) as sql:
            sql("CREATE TABLE IF NOT EXISTS cachemux_leases (key TEXT PRIMARY KEY, until REAL NOT NULL)")
            sql("DELETE FROM cachemux_leases WHERE until <= ?", (now,))
            return sql("INSERT OR IGNORE INTO cachemux_leases (key, until) VALUES (?, ?)",
                       (key, now + seconds)).rowcount == 1

    def __len__(self) -> int:
        with self._read() as sql:
            return int(self._state(sql).count)

    def keys(self) -> Iterator[str]:
        with self._read() as sql:
            return iter([k for (k,) in sql("SELECT key FROM cachemux_entries ORDER BY ins")])

    def changes(self, since: int) -> tuple[int, list[tuple[str, str]]]:
        """Changes after cursor ``since``; ``[("reset", "")]`` when ``since`` is outside the
        retained window (trimmed, from another store, or 0 on first use): rebuild from keys()."""
        if isinstance(since, bool) or not isinstance(since, int):
            raise ConfigError(f"changes() needs an int cursor, got {since!r}")
        with self._read() as sql:
            sql("BEGIN")  # one snapshot: head and rows agree
            try:
                st = self._state(sql)
                if since < st.trimmed or since > st.logseq:
                    return st.logseq, [(CHANGES_RESET, "")]
                rows = sql("SELECT op, key FROM cachemux_changes WHERE id > ? ORDER BY id",
                           (since,)).fetchall()
                return st.logseq, [(op, key) for op, key in rows]
            finally:
                sql("COMMIT")

    def stats(self) -> dict[str, Any]:
        base = {"store": "disk", "directory": str(self.directory), "read_only": self.read_only,
                "read_only_reason": self.read_only_reason,
                "read_only_drops": self._read_only_drops, "gone_ops": self._gone_ops,
                **({"forged": self._signer.forged} if self._signer is not None else {})}
        shares: dict[str, Any] = {}
        try:
            with self._read() as sql:
                st = self._state(sql)
                if self.shares:
                    used = dict(sql("SELECT part, used FROM cachemux_parts"))
                    shares = {"shares": dict(self.shares), "share_used": {
                        p: used.get(p, 0.0) for p in ["=" + ns for ns in self.shares] + [_REST]}}
        except StoreGoneError:
            return {**base, "gone": self._gone, "uncounted": self._uncounted}
        total = st.hits + st.misses
        return {**base, "policy": self.spec.name,
                "capacity": self.spec.capacity, "entries": st.count, "used": st.used,
                "hits": st.hits, "misses": st.misses, "hit_ratio": st.hits / total if total else 0.0,
                "admissions": st.admissions, "rejections": st.rejections,
                "evictions": st.evictions, "deletes": st.deletes, "replaced": st.replaced,
                "expired": st.expired,
                "clock": st.clock, "uncounted": self._uncounted, **shares}

    def verify(self) -> None:
        """SQLite ``quick_check`` of the whole file; StoreError naming the path if damaged."""
        with self._read() as sql:
            result = [r[0] for r in sql("PRAGMA quick_check")]
        if result != ["ok"]:
            raise StoreError(f"disk store {self.directory}: {DBNAME} is damaged: {'; '.join(result[:5])}")

    def check_invariants(self) -> None:
        """Size <= capacity, entries == values == index, priorities follow from stored
        freq/cost/size/clock, every value parses and agrees with its metadata."""
        spec = self.spec
        # a write lock: a consistent view while other processes run (read-only: nobody writes)
        with (self._read() if self.read_only else self._txn()) as sql:
            st = self._state(sql)
            rows = sql("SELECT key, size, cost, n, base, prio, seq, ins FROM cachemux_entries").fetchall()
            history = dict(sql("SELECT key, count FROM cachemux_history")) if spec.history else {}
            values = {k: self._value(k) for k, *_ in rows}
            n_values = len(self._cache)  # type: ignore[arg-type]
            order = [k for (k,) in sql("SELECT key FROM cachemux_entries INDEXED BY"
                                        " cachemux_entries_order ORDER BY prio, seq")]
            parts = dict(sql("SELECT key, part FROM cachemux_entries")) if self.shares else {}
            expiry = dict(sql("SELECT key, expires FROM cachemux_entries")) if not self.read_only else {}
            part_rows = sql("SELECT part, used, count, clock FROM cachemux_parts").fetchall() if self.shares else []
        where = f"disk store {self.directory}"
        clock = st.clock
        if self.shares:
            check_share_state(where, self.shares, spec.capacity, spec.family == "greedy-dual", rows, parts,
                              part_rows, lambda k: self._parse(k, values[k]))
            clock = max([clock] + [r[3] for r in part_rows])
        if n_values != len(rows):
            raise InvariantError(f"{where}: {n_values} values but {len(rows)} entries")
        if sorted(order) != sorted(k for k, *_ in rows):
            raise InvariantError(f"{where}: the priority index and the entries disagree")
        spec.check_entries(where, rows, values, history, count=st.count, used=st.used, seq=st.seq,
                           clock=clock, parse=self._parse)
        for key, expires in expiry.items():
            if self._parse(key, values[key]).expires != expires:
                raise InvariantError(f"{where}: {key!r} is ranked by expiry {expires}, its entry says otherwise")

    def close(self) -> None:
        cache, self._cache = self._cache, None
        if cache is not None:
            cache.close()

    def __repr__(self) -> str:
        return f"DiskStore({str(self.directory)!r}, policy={self.spec.name!r}, capacity={self.spec.capacity:g})"
