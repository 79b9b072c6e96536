"""Leases of a disk store (``Store.lease``): one row of ``cachemux_leases`` per claimed key, in a
table of its own made on first use (stores that never lease do not have it), so a claim commits
or rolls back with nothing else."""

from __future__ import annotations

from typing import Any


def claim(sql: Any, key: str, now: float, seconds: float) -> bool:
    """Claim ``key`` from ``now`` (this host's wall clock) for ``seconds`` inside the caller's
    write transaction ``sql``: True unless an unexpired claim holds it. Expired rows are deleted
    by the claim that finds them."""
    sql("CREATE TABLE IF NOT EXISTS cachemux_leases (key TEXT PRIMARY KEY, until REAL NOT NULL)")
    sql("DELETE FROM cachemux_leases WHERE until <= ?", (now,))
    return sql("INSERT OR IGNORE INTO cachemux_leases (key, until) VALUES (?, ?)",
               (key, now + seconds)).rowcount == 1
