"""``DiskStore``: the store API over the pieces of this package (``directory``, ``schema``,
``transactions``, ``policy_sql``, ``values``); what it guarantees is told in the package's
docstring (``cachemux.stores.disk``)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cachemux.errors import ConfigError, CorruptEntryError, StoreError
from cachemux.stores._policy import StorePolicy, resolve_policy
from cachemux.stores._shares import REST as _REST
from cachemux.stores._shares import check_shares, share_part
from cachemux.stores.base import CHANGES_RESET, Entry, PutResult, Signer, Store, check_key, parse_entry, read_entry
from cachemux.stores.breaker import CircuitBreaker
from cachemux.stores.disk import checks
from cachemux.stores.disk.directory import StoreDirectory, StoreGoneError, _disk_full
from cachemux.stores.disk.leases import claim as claim_lease
from cachemux.stores.disk.policy_sql import PolicySQL
from cachemux.stores.disk.schema import (_DEFAULT_CAPACITY, _DEFAULT_POLICY, check_config, init_schema,
                                         read_state, save_state)
from cachemux.stores.disk.transactions import Transactions
from cachemux.stores.disk.values import _TextDisk

log = logging.getLogger(__package__)  # "cachemux.stores.disk": one logger for the whole store


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
        self._where = f"disk store {self.directory}"  # how errors name this store
        self.read_only_reason: str | None = None  # why it opened read-only
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
        self._uncounted = 0
        self._last_warning = -1e9
        self._signer = None if signing_key is None else Signer(signing_key)
        if breaker is True:
            breaker = CircuitBreaker(1.0, min_cost=0.0, name=f"disk store {self.directory}")
        elif breaker is not False and not isinstance(breaker, CircuitBreaker):
            raise ConfigError(f"breaker must be a CircuitBreaker, True or False, got {breaker!r}")
        self.breaker: CircuitBreaker | None = breaker or None  # lock timeouts open it; getting the lock closes it
        self._dir = StoreDirectory(self.directory, self.timeout)
        self._db = Transactions(self.directory, self.timeout, self.busy_timeout, self.breaker)
        self._txn, self._read = self._db.txn, self._db.read  # bound once: no extra call per operation
        if log_size is not None and (not isinstance(log_size, int) or log_size < 1):
            raise ConfigError(f"log_size must be an int >= 1, got {log_size!r}")
        # validate the arguments before touching the disk; None = "the stored one"
        requested = resolve_policy(_DEFAULT_POLICY if policy is None else policy,
                                   _DEFAULT_CAPACITY if capacity is None else capacity,
                                   policy_options)
        given = {"policy": policy is not None, "capacity": capacity is not None,
                 "options": bool(policy_options), "shares": shares is not None}
        self.shares = check_shares(shares)
        why_ro = self._dir.why_read_only()
        if why_ro is not None and readonly is False:
            raise StoreError(f"disk store {self.directory}: {why_ro}, and readonly=False was given "
                             "(pass readonly=None to open it read-only: lookups work, updates drop)")
        if why_ro is not None or readonly:
            self._open_read_only(requested, given, log_size, why_ro or "opened with readonly=True")
            return
        try:
            self._open_writable(requested, given, log_size, durable, verify)
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
                       durable: bool, verify: bool) -> None:
        self._db.cache, initialised, store_id = self._dir.open_writable(durable)
        try:
            with self._txn() as sql:
                self.spec, self.log_size, self.shares = init_schema(
                    sql, f"disk store {self.directory}", requested, given, log_size, initialised, store_id,
                    self.shares)
            self._policy = PolicySQL(self.spec, self.shares, self.log_size, self._db.cache, self.directory)
            if verify:
                self.verify()
            if not initialised:
                self._dir.write_marker(initialised=True, store_id=store_id)
            self._db.identity = self._db.stat_identity()
        except BaseException:
            self.close()
            raise

    def _open_read_only(self, requested: StorePolicy, given: dict[str, bool], log_size: int | None,
                        why: str) -> None:
        self._db.cache = self._dir.open_read_only(why)
        self._db.read_only, self.read_only_reason = True, why
        try:
            with self._read() as sql:
                self.spec, self.log_size, self.shares = check_config(
                    sql, f"disk store {self.directory}", requested, given, log_size, self.shares)
            self._policy = PolicySQL(self.spec, self.shares, self.log_size, self._db.cache, self.directory)
            self._db.identity = self._db.stat_identity()
        except BaseException:
            self.close()
            raise
        log.warning("disk store %s opened read-only (%s): lookups work, updates are dropped", self.directory, why)

    @property
    def read_only(self) -> bool:
        """Whether the store opened read-only (``read_only_reason`` says why)."""
        return self._db.read_only

    @property
    def _cache(self) -> Any:
        """The open ``diskcache.Cache`` (``_ReadOnlyCache`` when read-only; None once closed)."""
        return self._db.cache

    @property
    def _identity(self) -> tuple[int, ...] | None:
        """(device, inode) of ``cache.db`` at open, checked by every operation (None: not checked)."""
        return self._db.identity

    @_identity.setter
    def _identity(self, value: tuple[int, ...] | None) -> None:
        self._db.identity = value

    def _value(self, key: str) -> str | None:
        return self._db.cache.get(key)

    def _parse(self, key: str, text: str) -> Entry:
        return parse_entry(self._signer, self._where, key, text)

    def _entry(self, key: str, text: str) -> Entry | None:
        return read_entry(self._signer, self._where, key, text)

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
            if isinstance(exc, (CorruptEntryError, StoreGoneError)) or self._db.cache is None:
                raise  # a damaged entry, or a directory deleted/replaced under us: not servable
            self._uncounted += 1
            now = time.monotonic()
            if now - self._last_warning >= 10.0:
                self._last_warning = now
                log.warning("%s; served without counting the request (%d so far)", exc, self._uncounted)
            return self.peek(key)

    def _get(self, key: str) -> Entry | None:
        with self._txn(self.lookup_timeout) as sql:
            st = read_state(sql)
            row = sql(f"SELECT n, cost, size{', part' if self.shares else ''} FROM cachemux_entries"
                      " WHERE key = ?", (key,)).fetchone()
            if row is None:
                st.misses += 1
                if self.spec.history:  # LEC counts misses of uncached keys too
                    self._policy.observe(sql, st, key)
                save_state(sql, st)
                return None
            text = self._value(key)
            if text is None:
                raise StoreError(f"disk store {self.directory}: entry {key!r} has policy state "
                                 "but no value: the database is damaged")
            st.hits += 1
            self._policy.on_hit(sql, st, key, *row)
            save_state(sql, st)
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
            st = read_state(sql)
            if self._policy.remove(sql, st, key):  # Policy.admit: re-offering a cached key replaces it
                st.replaced += 1
            admitted, evicted, expired = self._policy.place(sql, st, key, cost, size,
                                                     share_part(self.shares, entry) if self.shares else _REST,
                                                     entry.expires)
            if admitted:
                self._db.cache.set(key, text)
                st.admissions += 1
                self._policy.log(sql, st, "add", key)
            else:
                st.rejections += 1
            save_state(sql, st)
        return PutResult(admitted, tuple(evicted), expired)

    def delete(self, key: str) -> bool:
        check_key(key)
        with self._txn(self.update_timeout) as sql:
            st = read_state(sql)
            found = self._policy.remove(sql, st, key)
            if found:
                st.deletes += 1
                save_state(sql, st)
        return found

    def clear(self) -> None:
        """Remove every entry (logged as deletions). The GDSF clock and LEC's request history
        are kept, as ``MemoryStore.clear`` keeps its policy's."""
        with self._txn() as sql:
            st = read_state(sql)
            for (key,) in sql("SELECT key FROM cachemux_entries ORDER BY ins").fetchall():
                self._policy.remove(sql, st, key)
                st.deletes += 1
            save_state(sql, st)

    def lease(self, key: str, seconds: float) -> bool:
        """Claim ``key`` for ``seconds`` (``Store.lease``; ``leases.claim``), judged by the wall
        clock of this host. A read-only store grants every claim (it cannot record one)."""
        check_key(key)
        if self.read_only:
            return True
        now = time.time()
        with self._txn(self.update_timeout) as sql:
            return claim_lease(sql, key, now, seconds)

    def __len__(self) -> int:
        with self._read() as sql:
            return int(read_state(sql).count)

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
                st = read_state(sql)
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
                "read_only_drops": self._db.read_only_drops, "gone_ops": self._db.gone_ops,
                **({"forged": self._signer.forged} if self._signer is not None else {})}
        shares: dict[str, Any] = {}
        try:
            with self._read() as sql:
                st = read_state(sql)
                if self.shares:
                    used = dict(sql("SELECT part, used FROM cachemux_parts"))
                    shares = {"shares": dict(self.shares), "share_used": {
                        p: used.get(p, 0.0) for p in ["=" + ns for ns in self.shares] + [_REST]}}
        except StoreGoneError:
            return {**base, "gone": self._db.gone, "uncounted": self._uncounted}
        total = st.hits + st.misses
        return {**base, "policy": self.spec.name,
                "capacity": self.spec.capacity, "entries": st.count, "used": st.used,
                "hits": st.hits, "misses": st.misses, "hit_ratio": st.hits / total if total else 0.0,
                "admissions": st.admissions, "rejections": st.rejections,
                "evictions": st.evictions, "deletes": st.deletes, "replaced": st.replaced,
                "expired": st.expired,
                "clock": st.clock, "uncounted": self._uncounted, **shares}

    verify = checks.verify  # the store's self-checks, in checks.py
    check_invariants = checks.check_invariants

    def close(self) -> None:
        cache, self._db.cache = self._db.cache, None
        if cache is not None:
            cache.close()

    def __repr__(self) -> str:
        return f"DiskStore({str(self.directory)!r}, policy={self.spec.name!r}, capacity={self.spec.capacity:g})"
