"""Per-namespace capacity shares of a store: which share an entry belongs to and what it may use."""

from __future__ import annotations

from cachemux.errors import ConfigError
from cachemux.stores.base import Entry

__all__ = ["REST", "check_shares", "share_capacity", "share_part"]

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
