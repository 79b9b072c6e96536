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

Where it lives: ``store`` (the ``DiskStore`` API), ``directory`` (the marker, store identity,
read-only and full-disk opening, the damaged-file check), ``schema`` (tables, configuration
checks, upgrades in place, the state row), ``transactions`` (transactions, lock waits, the
presence check), ``policy_sql`` (the eviction policy in SQL, the change log), ``values`` (text
values, never pickled), ``checks`` (``verify`` and ``check_invariants``).
"""

from __future__ import annotations

try:  # diskcache is a core dependency; keep the import error readable anyway
    import diskcache  # noqa: F401
except ImportError as _exc:  # pragma: no cover
    raise ImportError("cachemux.stores.disk needs diskcache: pip install 'diskcache>=5.6'") from _exc

from cachemux.stores.disk.directory import (DBNAME, FORMAT, FORMAT_VERSION, MARKER, ReadOnlyStoreError,
                                            StoreDirectory, StoreGoneError, _disk_full, _read_only_fs, _ro_uri)
from cachemux.stores.disk.policy_sql import _TRIM_EVERY, PolicySQL
from cachemux.stores.disk.schema import (_DEFAULT_CAPACITY, _DEFAULT_LOG_SIZE, _DEFAULT_POLICY, _EXPIRY_INDEX,
                                         _SCHEMA, _SHARES_SCHEMA, _STATE_FIELDS, _STATE_SELECT, _Part, _State)
from cachemux.stores.disk.store import DiskStore, log
from cachemux.stores.disk.transactions import (_BUSY_SLICE_MS, _PRESENT_EVERY, _WAL_WRITE_LOCK, _LockTimeout,
                                               _wal_writer)
from cachemux.stores.disk.values import _ReadOnlyCache, _TextDisk

__all__ = ["DiskStore", "FORMAT", "FORMAT_VERSION", "MARKER", "ReadOnlyStoreError", "StoreGoneError"]
