"""A ``DiskStore``'s self-checks, bound as its methods: ``verify`` (SQLite's ``quick_check`` of
the database file) and ``check_invariants`` (entries, values, the eviction order, expiries and
shares agree with each other and with the stored state)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cachemux.errors import InvariantError, StoreError
from cachemux.stores._shares import check_share_state
from cachemux.stores.disk.directory import DBNAME
from cachemux.stores.disk.schema import read_state

if TYPE_CHECKING:
    from cachemux.stores.disk.store import DiskStore


def verify(store: DiskStore) -> None:
    """SQLite ``quick_check`` of the whole file; StoreError naming the path if damaged."""
    with store._read() as sql:
        result = [r[0] for r in sql("PRAGMA quick_check")]
    if result != ["ok"]:
        raise StoreError(f"disk store {store.directory}: {DBNAME} is damaged: {'; '.join(result[:5])}")


def check_invariants(store: DiskStore) -> None:
    """Size <= capacity, entries == values == index, priorities follow from stored
    freq/cost/size/clock, every value parses and agrees with its metadata."""
    spec = store.spec
    # a write lock: a consistent view while other processes run (read-only: nobody writes)
    with (store._read() if store.read_only else store._txn()) as sql:
        st = read_state(sql)
        rows = sql("SELECT key, size, cost, n, base, prio, seq, ins FROM cachemux_entries").fetchall()
        history = dict(sql("SELECT key, count FROM cachemux_history")) if spec.history else {}
        values = {k: store._value(k) for k, *_ in rows}
        n_values = len(store._db.cache)
        order = [k for (k,) in sql("SELECT key FROM cachemux_entries INDEXED BY"
                                    " cachemux_entries_order ORDER BY prio, seq")]
        parts = dict(sql("SELECT key, part FROM cachemux_entries")) if store.shares else {}
        expiry = dict(sql("SELECT key, expires FROM cachemux_entries")) if not store.read_only else {}
        part_rows = sql("SELECT part, used, count, clock FROM cachemux_parts").fetchall() if store.shares else []
    where = f"disk store {store.directory}"
    clock = st.clock
    if store.shares:
        check_share_state(where, store.shares, spec.capacity, spec.family == "greedy-dual", rows, parts,
                          part_rows, lambda k: store._parse(k, values[k]))
        clock = max([clock] + [r[3] for r in part_rows])
    if n_values != len(rows):
        raise InvariantError(f"{where}: {n_values} values but {len(rows)} entries")
    if sorted(order) != sorted(k for k, *_ in rows):
        raise InvariantError(f"{where}: the priority index and the entries disagree")
    spec.check_entries(where, rows, values, history, count=st.count, used=st.used, seq=st.seq,
                       clock=clock, parse=store._parse)
    for key, expires in expiry.items():
        if store._parse(key, values[key]).expires != expires:
            raise InvariantError(f"{where}: {key!r} is ranked by expiry {expires}, its entry says otherwise")
