"""How a disk store's operations get to its database: one ``BEGIN IMMEDIATE`` transaction per
update or counted lookup, plain reads for the rest, the waits for another process's write lock
(telling a busy holder from a stopped one through ``/proc/locks``), and the check that the
directory is still the one opened (module docstring of ``cachemux.stores.disk``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskcache

from cachemux.errors import StoreError
from cachemux.stores.breaker import CircuitBreaker, Unavailable
from cachemux.stores.disk.directory import DBNAME, ReadOnlyStoreError, StoreGoneError

log = logging.getLogger(__package__)  # "cachemux.stores.disk": one logger for the whole store

_PRESENT_EVERY = 0.1  # seconds between presence checks of plain reads (transactions: every one)
_BUSY_SLICE_MS = 20  # SQLite's lock wait per attempt; between attempts txn looks for progress
_WAL_WRITE_LOCK = 120  # the byte of the -shm file SQLite's unix VFS locks for a WAL writer


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


class _LockTimeout(Unavailable):
    """Another connection held the write lock longer than this operation may wait."""


class Transactions:
    """A store's open database (``cache``: a ``diskcache.Cache``, or ``_ReadOnlyCache`` when
    ``read_only``; None once closed) and the way to it: ``txn``, ``read``, ``check_present``.

    ``timeout`` bounds all waiting, ``busy_timeout`` the wait for a running holder of the write
    lock that commits nothing; a lock timeout opens ``breaker``. ``identity``: the (device,
    inode) of ``cache.db`` seen at open (None while opening: not checked)."""

    def __init__(self, directory: Path, timeout: float, busy_timeout: float,
                 breaker: CircuitBreaker | None) -> None:
        self.directory, self.timeout, self.busy_timeout, self.breaker = directory, timeout, busy_timeout, breaker
        self.cache: Any = None
        self.read_only = False
        self.identity: tuple[int, ...] | None = None
        self.gone: str | None = None
        self.gone_ops = self.read_only_drops = 0
        self.checked = -math.inf  # monotonic time of the last presence check
        self._local = threading.local()  # per thread: the busy timeout set on its connection

    def stat_identity(self) -> tuple[int, ...]:
        # cache.db alone: deleting, moving or replacing the directory removes or replaces it, and
        # its inode cannot be reused while this process holds the file open
        b = os.stat(self.directory / DBNAME)
        return b.st_dev, b.st_ino

    def check_present(self, always: bool = True) -> None:
        """Raise ``StoreGoneError`` if ``cache.db`` is no longer the file opened. Transactions
        (every write and counted lookup) always check; plain reads (peek, keys, len) at most
        every ``_PRESENT_EVERY`` s, so an index rebuild's 100k peeks do not pay a stat each."""
        if self.identity is None:  # still opening
            return
        if self.gone is None:
            now_t = time.monotonic()
            if not always and now_t - self.checked < _PRESENT_EVERY:
                return
            self.checked = now_t
            try:
                now: tuple[int, ...] | None = self.stat_identity()
            except FileNotFoundError:
                now = None
            except OSError:
                return  # cannot tell (permissions): SQLite reports what is wrong, if anything
            if now == self.identity:
                return
            what = "deleted or moved away" if now is None else "replaced (another directory or database at its path)"
            self.gone = (f"disk store {self.directory}: its directory or {DBNAME} was {what} while open; "
                          "its entries are no longer reachable there. Lookups miss and updates are dropped "
                          "until the store is reopened (DiskStore(directory) starts a new store)")
            log.error("%s", self.gone)
        self.gone_ops += 1
        raise StoreGoneError(self.gone)

    @contextlib.contextmanager
    def txn(self, wait: float | None = None) -> Iterator[Any]:
        """One ``BEGIN IMMEDIATE`` transaction through diskcache; backend faults -> StoreError.

        While another connection holds the write lock, wait as long as it makes progress (any
        commit, seen through ``PRAGMA data_version``) up to ``timeout``. With no commit at all for
        ``wait`` seconds (default ``timeout``), ask whose lock it is (``_wal_writer``): a holder
        that is running (descheduled on a busy machine, in I/O, in a long transaction) is waited
        for up to ``busy_timeout`` without a commit; a stopped one (SIGSTOP, a debugger), or one
        that cannot be identified, is stuck: give up. While the breaker is open (a holder was
        stuck), one attempt and no wait."""
        cache = self.cache
        if cache is None:
            raise StoreError(f"disk store {self.directory}: closed")
        self.check_present()
        if self.read_only:
            self.read_only_drops += 1
            raise ReadOnlyStoreError(f"disk store {self.directory} is open read-only: updates are dropped "
                                     f"({self.read_only_drops} so far)")
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
    def read(self) -> Iterator[Any]:
        cache = self.cache
        if cache is None:
            raise StoreError(f"disk store {self.directory}: closed")
        self.check_present(always=False)
        try:
            if self.read_only:
                with cache.lock:
                    yield cache._con.execute
            else:
                yield cache._con.execute
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"disk store {self.directory}: {type(exc).__name__}: {exc}") from exc
