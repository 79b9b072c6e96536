"""What a ``SemanticCache`` counts (``CacheStats``) and how it reports faults (``FaultSink``).

Every part of the cache counts into one ``CacheStats`` and reports store, embedding and index
faults to one ``FaultSink``: a fault never reaches the application, it is counted in
``stats()["errors"]`` and logged, at most one warning every ``WARN_EVERY_S`` seconds with the
number of similar faults suppressed since the last one.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any

from cachemux.errors import StoreError
from cachemux.semantic.fidelity import REASONS

__all__ = ["WARN_EVERY_S", "CacheStats", "FaultSink"]

log = logging.getLogger("cachemux.cache")

WARN_EVERY_S = 10.0


@dataclass
class CacheStats:
    """The counters of one cache object (this process), thread-safe through ``add``. ``cost_saved``:
    the summed cost of the entries that served hits."""

    lookups: int = 0
    exact_hits: int = 0
    semantic_hits: int = 0
    misses: int = 0
    updates: int = 0
    admitted: int = 0
    rejected: int = 0
    feedback: int = 0
    evictions: int = 0
    errors: int = 0
    dropped: int = 0
    exact_only: int = 0
    estimated: int = 0
    bad_embeddings: int = 0
    skipped_entries: int = 0
    too_large: int = 0
    too_large_skipped: int = 0
    expired: int = 0
    expired_evicted: int = 0
    snapshot_errors: int = 0
    semantic_verified: int = 0
    semantic_declined: int = 0
    coalesced: int = 0
    # one per ``cachemux.semantic.fidelity`` reason (exact_only_truncated, ...)
    exact_only_by: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    cost_saved: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        """Add to counters by name (``exact_only_<reason>`` names a reason's counter)."""
        with self._lock:
            for name, n in deltas.items():
                if name.startswith("exact_only_"):
                    self.exact_only_by[name[len("exact_only_"):]] += int(n)
                else:
                    setattr(self, name, getattr(self, name) + n)

    def count(self, name: str) -> None:
        """Add one to a plain counter (the per-request path: no keyword dict)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def hit(self, kind: str, cost: float) -> None:
        """Count a hit of ``kind`` ("exact" or "semantic") that saved ``cost``."""
        with self._lock:
            if kind == "exact":
                self.exact_hits += 1
            else:
                self.semantic_hits += 1
            self.cost_saved += cost

    def get(self, name: str) -> float:
        with self._lock:
            if name.startswith("exact_only_"):
                return self.exact_only_by[name[len("exact_only_"):]]
            return getattr(self, name)  # type: ignore[no-any-return]

    def as_dict(self) -> dict[str, Any]:
        """The counters as ``stats()`` shows them, plus ``hits``, ``hit_ratio`` and ``cost_saved``."""
        with self._lock:
            s: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)
                                 if f.name not in ("exact_only_by", "cost_saved", "_lock")}
            s.update({f"exact_only_{r}": n for r, n in self.exact_only_by.items()})
            s["hits"] = s["exact_hits"] + s["semantic_hits"]
            s["hit_ratio"] = s["hits"] / s["lookups"] if s["lookups"] else 0.0
            s["cost_saved"] = self.cost_saved
        return s


class FaultSink:
    """Count a fault in ``stats.errors`` and log it, rate-limited (see the module docstring)."""

    def __init__(self, stats: CacheStats) -> None:
        self.stats = stats
        self._lock = threading.Lock()
        self._last_warning = -math.inf
        self._suppressed = 0

    def __call__(self, op: str, exc: BaseException) -> None:
        self.stats.add(errors=1)
        now = time.monotonic()
        with self._lock:
            if now - self._last_warning < WARN_EVERY_S:
                self._suppressed += 1
                log.debug("cachemux %s failed: %s: %s", op, type(exc).__name__, exc)
                return
            suppressed, self._suppressed, self._last_warning = self._suppressed, 0, now
        more = f" ({suppressed} similar faults since the last warning)" if suppressed else ""
        kind = type(exc).__name__
        if isinstance(exc, StoreError) and kind != "StoreError":  # e.g. Unavailable: still a store fault
            kind = f"StoreError ({kind})"
        log.warning("cachemux %s failed, served as a miss / dropped: %s: %s%s", op, kind, exc, more)
