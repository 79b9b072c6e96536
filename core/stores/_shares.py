"""Per-namespace capacity shares of a store: which share an entry belongs to and what it may use."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cachemux.errors import ConfigError, InvariantError
from cachemux.stores.base import Entry

__all__ = ["REST", "check_share_state", "check_shares", "share_capacity", "share_part"]

REST = "*"  # the partition of every namespace without a share


def check_shares(shares: object) -> dict[str, float]:
    """``{namespace: fraction of capacity}``: fractions in (0, 1] summing to at most 1."""
    if shares is None:
        return {}
    if not isinstance(shares, dict) or not shares:
        raise ConfigError(f"shares must be a non-empty dict {{namespace: fraction}}, got {shares!r:.80}")
    out = {}
    for ns, f in shares.items():
        if not isinstance(ns, str):
            raise ConfigError(f"shares: namespace must be str, got {type(ns).__name__}")
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < f <= 1.0:
            raise ConfigError(f"shares: the fraction of namespace {ns!r} must be in (0, 1], got {f!r}")
        out[ns] = float(f)
    if sum(out.values()) > 1.0 + 1e-9:
        raise ConfigError(f"shares: fractions sum to {sum(out.values()):g} > 1")
    return dict(sorted(out.items()))


def share_part(shares: dict[str, float], entry: Entry) -> str:
    """The capacity partition of ``entry``: "=" + its namespace if that has a share, else the rest."""
    ns = entry.meta.get("ns", "") if isinstance(entry.meta, dict) else ""
    return "=" + ns if isinstance(ns, str) and ns in shares else REST


def share_capacity(shares: dict[str, float], capacity: float, part: str) -> float:
    if part == REST:
        return max(0.0, 1.0 - sum(shares.values())) * capacity
    return shares[part[1:]] * capacity


def check_share_state(where: str, shares: dict[str, float], capacity: float, greedy_dual: bool,
                      rows: Sequence[Sequence[Any]], parts: Mapping[str, str],
                      part_rows: Sequence[tuple[str, float, int, float]],
                      entry_of: Callable[[str], Entry]) -> None:
    """The shares of a disk or Redis store: each share's entries' sizes and count agree with
    its ``(part, used, count, clock)`` row and fit its capacity; each entry (``rows``:
    ``(key, size, cost, n, base, ...)``; ``parts``: key -> part) sits in the share of the
    namespace its value names; GDSF bases never exceed their share's clock."""
    state = {p: (used, count, clock) for p, used, count, clock in part_rows}
    sums: dict[str, list[float]] = {}
    for key, size, _cost, _n, base, *_ in rows:
        part = parts.get(key)
        want = share_part(shares, entry_of(key))
        if part != want:
            raise InvariantError(f"{where}: {key!r} is in share {part!r}, its namespace's is {want!r}")
        acc = sums.setdefault(part, [0.0, 0])
        acc[0] += size
        acc[1] += 1
        if greedy_dual and base > state.get(part, (0, 0, 0.0))[2]:
            raise InvariantError(f"{where}: {key!r} ranked at clock {base} above its share's clock")
    for part in set(sums) | set(state):
        used, count = sums.get(part, [0.0, 0])
        s_used, s_count, _ = state.get(part, (0.0, 0, 0.0))
        cap = share_capacity(shares, capacity, part)
        if count != s_count or not math.isclose(used, s_used, rel_tol=1e-9, abs_tol=1e-9):
            raise InvariantError(f"{where}: share {part!r} holds {count} entries / size {used}, "
                                 f"its row says {s_count} / {s_used}")
        if s_used > cap * (1 + 1e-12):
            raise InvariantError(f"{where}: share {part!r} uses {s_used} > its capacity {cap}")
