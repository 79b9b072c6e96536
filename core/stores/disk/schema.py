"""The disk store's own tables in diskcache's database: creating them, checking a reopened store's
configuration against the one asked for, upgrading older stores in place, and the one-row state
every operation reads at its start and writes at its end.

A store's policy, capacity, options, shares and change-log size are fixed at creation (one row,
first writer wins); reopening with a different explicit value is a ``ConfigError``.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from typing import Any

from cachemux.errors import ConfigError, StoreError
from cachemux.stores._policy import StorePolicy, resolve_policy
from cachemux.stores.disk.directory import DBNAME, FORMAT, FORMAT_VERSION

_DEFAULT_CAPACITY = 10_000.0
_DEFAULT_POLICY = "gdsf"
_DEFAULT_LOG_SIZE = 100_000

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


def read_state(sql: Any) -> _State:
    try:
        row = sql(_STATE_SELECT).fetchone()
    except sqlite3.OperationalError as exc:  # opened read-only, made before the expiry columns
        if "expired" not in str(exc):
            raise
        row = sql(_STATE_SELECT.replace(", expired FROM", ", 0 FROM")).fetchone()
    if row is None:
        raise StoreError("cachemux_state row is missing: the database is damaged")
    return _State(row)


def save_state(sql: Any, st: _State) -> None:
    sql(f"UPDATE cachemux_state SET {', '.join(f + ' = ?' for f in _STATE_FIELDS)} WHERE id = 1",
        st.values())


def init_schema(sql: Any, where: str, requested: StorePolicy, given: dict[str, bool], log_size: int | None,
                initialised: bool, store_id: str | None,
                shares: dict[str, float]) -> tuple[StorePolicy, int, dict[str, float]]:
    """Create the tables of a new store (inside the caller's write transaction ``sql``), or
    upgrade an existing one; then ``check_config``. ``where`` names the store in errors."""
    have = {r[0] for r in sql("SELECT name FROM sqlite_master WHERE type='table'")}
    if "cachemux_config" not in have:
        if initialised:
            raise StoreError(f"{where}: {DBNAME} has no cachemux tables "
                             "although the marker says the store was created")
        if "Cache" in have and sql("SELECT 1 FROM Cache LIMIT 1").fetchone():
            raise StoreError(f"{where}: {DBNAME} holds diskcache data "
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
        if shares:  # fixed at creation, like the capacity
            for stmt in _SHARES_SCHEMA:
                sql(stmt)
            for row in shares.items():
                sql("INSERT INTO cachemux_shares VALUES (?, ?)", row)
    else:
        add_expiry_columns(sql, have)
    return check_config(sql, where, requested, given, log_size, shares)


def add_expiry_columns(sql: Any, have: set) -> None:
    """A store created before entries had an expiry: add its columns and index (an upgrade
    in place; older cachemux versions ignore them)."""
    if not any(r[1] == "expired" for r in sql("PRAGMA table_info(cachemux_state)")):
        sql("ALTER TABLE cachemux_state ADD COLUMN expired INTEGER NOT NULL DEFAULT 0")
    if not any(r[1] == "expires" for r in sql("PRAGMA table_info(cachemux_entries)")):
        sql("ALTER TABLE cachemux_entries ADD COLUMN expires REAL")
        sql(_EXPIRY_INDEX)
        if "cachemux_shares" in have:
            sql(_SHARES_SCHEMA[2])


def check_config(sql: Any, where: str, requested: StorePolicy, given: dict[str, bool], log_size: int | None,
                 shares: dict[str, float]) -> tuple[StorePolicy, int, dict[str, float]]:
    """The stored (policy, log size, shares), after checking that what was explicitly ``given``
    agrees with them and that the entry rows agree with the state's count."""
    row = sql("SELECT format, version, policy, capacity, options, log_size"
              " FROM cachemux_config WHERE id = 1").fetchone()
    if row is None or row[0] != FORMAT:
        raise StoreError(f"{where}: missing or foreign cachemux_config")
    if row[1] != FORMAT_VERSION:
        raise StoreError(f"{where}: database format version {row[1]!r} "
                         f"is not supported (supports {FORMAT_VERSION})")
    stored = resolve_policy(row[2], row[3], json.loads(row[4]))
    n_rows = sql("SELECT count(*) FROM cachemux_entries").fetchone()[0]
    st = read_state(sql)
    if n_rows != st.count:
        raise StoreError(f"{where}: {n_rows} entry rows but the state "
                         f"counts {st.count}: the database is damaged")
    have = {r[0] for r in sql("SELECT name FROM sqlite_master WHERE type='table'")}
    stored_shares = dict(sql("SELECT ns, fraction FROM cachemux_shares ORDER BY ns")) \
        if "cachemux_shares" in have else {}
    if given["shares"] and stored_shares != shares:
        raise ConfigError(f"{where} was created with shares={stored_shares or None}; "
                          f"got shares={shares}. Reopen with shares=None (the stored ones) or "
                          "clear the directory")
    if ((given["policy"] and requested.name != stored.name)
            or (given["capacity"] and requested.capacity != stored.capacity)
            or (given["options"] and requested.options != stored.options)):
        raise ConfigError(
            f"{where} was created with policy={stored.name!r}, "
            f"capacity={stored.capacity:g}, options={stored.options}; got policy="
            f"{requested.name!r}, capacity={requested.capacity:g}, options={requested.options}. "
            "Reopen with capacity=None, policy=None (the stored ones) or clear the directory")
    return stored, int(log_size or row[5]), stored_shares
