"""The eviction policy of a disk store as SQL on its tables, step by step as ``cachemux.policies``
decides in memory (the same arithmetic in the same order, so ``DiskStore`` and ``MemoryStore``
make the same decisions): counting requests, rescaling counts, a hit, admission, placing a
newcomer (expired entries leave first, then the lowest priorities), removing an entry, and the
change log every addition and removal is written to.

Every method runs inside the caller's transaction ``sql`` and updates the state row ``st`` it
read there; the caller saves it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cachemux.errors import StoreError
from cachemux.stores._policy import FORGET_BELOW, RESCALE_AT, StorePolicy
from cachemux.stores._shares import REST as _REST
from cachemux.stores._shares import share_capacity
from cachemux.stores.disk.schema import _Part, _State

_TRIM_EVERY = 1_000  # trim the change log in batches, not on every append


class PolicySQL:
    """``spec``'s policy over the store's tables; ``shares``: the store's capacity shares (empty:
    none); ``cache``: the diskcache holding the values (an evicted entry's value goes too)."""

    def __init__(self, spec: StorePolicy, shares: dict[str, float], log_size: int, cache: Any,
                 directory: Path) -> None:
        self.spec, self.shares, self.log_size, self.cache, self.directory = spec, shares, log_size, cache, directory

    def log(self, sql: Any, st: _State, op: str, key: str) -> None:
        st.logseq += 1
        sql("INSERT INTO cachemux_changes (id, op, key) VALUES (?, ?, ?)", (st.logseq, op, key))
        if st.logseq - st.trimmed >= self.log_size + _TRIM_EVERY:
            st.trimmed = st.logseq - self.log_size
            sql("DELETE FROM cachemux_changes WHERE id <= ?", (st.trimmed,))

    def observe(self, sql: Any, st: _State, key: str) -> float:
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
                self.rescale(sql, st, f)
                c = c * f
                nxt = growth
            st.inc = nxt
        return c

    def rescale(self, sql: Any, st: _State, f: float) -> None:
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

    def part_state(self, sql: Any, st: _State, part: str) -> _State | _Part:
        """The used size, count and clock eviction works within: the whole store's without
        shares, else those of ``part``'s share."""
        if not self.shares:
            return st
        row = sql("SELECT used, count, clock FROM cachemux_parts WHERE part = ?", (part,)).fetchone()
        return _Part(part, *(row or (0.0, 0, 0.0)))

    def save_part(self, sql: Any, ps: _State | _Part) -> None:
        if isinstance(ps, _Part):
            sql("INSERT OR REPLACE INTO cachemux_parts (part, used, count, clock) VALUES (?, ?, ?, ?)",
                (ps.part, ps.used, ps.count, ps.clock))

    def on_hit(self, sql: Any, st: _State, key: str, n: float, cost: float, size: float,
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
            clock = self.part_state(sql, st, part).clock  # with shares: the share's own clock
            prio = clock + f * cost / size
            base = clock
        else:
            n = self.observe(sql, st, key) if spec.history else n + 1.0
            prio = spec.score(n, cost, size)
            base = 0.0
        st.seq += 1
        sql("UPDATE cachemux_entries SET n = ?, base = ?, prio = ?, seq = ? WHERE key = ?",
            (n, base, prio, st.seq, key))

    def new_count(self, sql: Any, st: _State, key: str) -> float:
        if not self.spec.history:
            return 1.0
        row = sql("SELECT count FROM cachemux_history WHERE key = ?", (key,)).fetchone()
        return (row[0] if row else 0.0) or st.inc

    def should_admit(self, sql: Any, st: _State, ps: _State | _Part, key: str, cost: float, size: float,
                     capacity: float, where: str, params: tuple) -> bool:
        """``ps``: the store's or (with shares) the share's used size and count."""
        spec = self.spec
        if not spec.admission or ps.used + size <= capacity:
            return True
        # online LEC's admission step: the newcomer must be strictly more valuable than every
        # entry it would evict (ties keep the incumbents); walk the eviction index lazily
        mine = spec.score(self.new_count(sql, st, key), cost, size)
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

    def place(self, sql: Any, st: _State, key: str, cost: float, size: float, part: str = _REST,
              expires: float | None = None) -> tuple[bool, list[str], int]:
        """Policy._place: admit if wanted, evicting the lowest priorities until the entry fits
        (with shares: within ``part``'s share, among its entries); entries past their expiry
        leave first. Returns (admitted, evicted keys, how many of them had expired)."""
        spec = self.spec
        ps = self.part_state(sql, st, part)
        if self.shares:
            capacity, where, params = share_capacity(self.shares, spec.capacity, part), " WHERE part = ?", (part,)
        else:
            capacity, where, params = spec.capacity, "", ()
        if size > capacity:
            return False, [], 0
        evicted: list[str] = []
        if ps.used + size > capacity:
            self.drop_expired(sql, st, ps, size, capacity, evicted)
        expired = len(evicted)
        if not self.should_admit(sql, st, ps, key, cost, size, capacity, where, params):
            self.save_part(sql, ps)
            return False, evicted, expired
        while ps.used + size > capacity:
            row = sql(f"SELECT key, size, prio FROM cachemux_entries{where} ORDER BY prio, seq LIMIT 1",
                      params).fetchone()
            if row is None:
                raise StoreError(f"disk store {self.directory}: used={st.used} with no entries: "
                                 "the database is damaged")
            vkey, vsize, vprio = row
            sql("DELETE FROM cachemux_entries WHERE key = ?", (vkey,))
            self.cache.delete(vkey)
            for acc in {id(st): st, id(ps): ps}.values():
                acc.used -= vsize
                acc.count -= 1
                if acc.count == 0:
                    acc.used = 0.0  # no float residue in an empty cache (Policy._place)
            if spec.family == "greedy-dual":
                ps.clock = vprio  # GDSF's inflation step: L := H(victim)
            st.evictions += 1
            evicted.append(vkey)
            self.log(sql, st, "del", vkey)
        st.seq += 1
        if spec.family == "recency":
            n, base, prio = 1.0, 0.0, float(st.seq)
        elif spec.family == "greedy-dual":
            n, base = 1.0, ps.clock
            prio = ps.clock + 1 * cost / size
        else:
            n, base = self.new_count(sql, st, key), 0.0
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
        self.save_part(sql, ps)
        return True, evicted, expired

    def drop_expired(self, sql: Any, st: _State, ps: _State | _Part, size: float, capacity: float,
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
            self.cache.delete(vkey)
            for acc in {id(st): st, id(ps): ps}.values():
                acc.count -= 1
                acc.used = acc.used - vsize if acc.count else 0.0
            st.expired += 1
            out.append(vkey)
            self.log(sql, st, "del", vkey)

    def remove(self, sql: Any, st: _State, key: str) -> bool:
        """Policy.remove: drop a cached key (its value too)."""
        row = sql(f"SELECT size{', part' if self.shares else ''} FROM cachemux_entries WHERE key = ?",
                  (key,)).fetchone()
        if row is None:
            return False
        sql("DELETE FROM cachemux_entries WHERE key = ?", (key,))
        self.cache.delete(key)
        ps = self.part_state(sql, st, row[1]) if self.shares else st
        for acc in {id(st): st, id(ps): ps}.values():
            acc.count -= 1
            acc.used = acc.used - row[0] if acc.count else 0.0
        self.save_part(sql, ps)
        self.log(sql, st, "del", key)
        return True
