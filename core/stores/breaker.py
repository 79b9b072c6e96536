"""A circuit breaker for a store's backend: after a fault that cost time, fail fast until a probe succeeds.

States: **closed** (every operation goes to the backend); **open** after an operation failed on
the network and took at least ``min_cost`` seconds (a socket timeout against a hung server, a
slow connect): operations raise ``Unavailable`` at once, with no network round trip; after
``reset_after`` seconds the next operation is let through as the one **probe** (one at a time;
the others keep failing fast while it runs). A probe that gets an answer closes the breaker; one
that fails reopens it for another ``reset_after``. An ``urgent`` operation (a write, whose failure
drops data) is let through as the probe whenever none is running, not only once per
``reset_after``: the first write after the backend answers again is not lost. That is cheap only
if the store bounds its probes with a short timeout (``RedisStore(probe_timeout=...)``).

A fault that cost less than ``min_cost`` (a refused connection: the server process is gone but
the host answers in microseconds) does not open it: failing fast would save nothing, and the
next operation reaches a restarted server at once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from cachemux.errors import ConfigError, StoreError

__all__ = ["CircuitBreaker", "Unavailable"]

log = logging.getLogger(__name__)


class Unavailable(StoreError):
    """The backend cannot be reached: a network fault, or the breaker failing fast after one."""


class CircuitBreaker:
    """One per store (shared by every thread using it). ``reset_after``: seconds an open breaker
    waits before letting one probe through; ``min_cost``: seconds a failed operation must have
    taken to open it. ``stats()``: state, times opened, operations failed fast, probes."""

    def __init__(self, reset_after: float = 1.0, *, min_cost: float = 0.05, name: str = "") -> None:
        for arg, v in (("reset_after", reset_after), ("min_cost", min_cost)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0) or math.isinf(v):
                raise ConfigError(f"{arg} must be a finite number of seconds >= 0, got {v!r}")
        self.reset_after = float(reset_after)
        self.min_cost = float(min_cost)
        self.name = name
        self._lock = threading.Lock()
        self._open = False
        self._opened_at = 0.0
        self._probing = False
        self._last_error = ""
        self._counts = {"opened": 0, "fast_failures": 0, "probes": 0, "recovered": 0}

    @property
    def state(self) -> str:
        """"closed", "open" (failing fast) or "half-open" (a probe may run or is running)."""
        with self._lock:
            if not self._open:
                return "closed"
            if self._probing or time.monotonic() >= self._opened_at + self.reset_after:
                return "half-open"
            return "open"

    def before(self, urgent: bool = False) -> bool:
        """Call before an operation: True if it is the probe; raises ``Unavailable`` (fast) while
        open. ``urgent``: probe now if no probe is running, even before ``reset_after`` passed."""
        with self._lock:
            if not self._open:
                return False
            now = time.monotonic()
            if not self._probing and (urgent or now >= self._opened_at + self.reset_after):
                self._probing = True
                self._counts["probes"] += 1
                return True
            self._counts["fast_failures"] += 1
            wait = max(0.0, self._opened_at + self.reset_after - now)
            error = self._last_error
        where = f"{self.name}: " if self.name else ""
        raise Unavailable(f"{where}unavailable, failing fast (circuit open after {error}; "
                          f"next probe in {wait:.2f}s)")

    def after(self, probe: bool, fault: BaseException | None, elapsed: float) -> None:
        """Call after the operation: ``fault`` the network error it raised (None if the backend
        answered, even with an error of its own), ``elapsed`` the seconds it took."""
        opened = recovered = False
        with self._lock:
            if probe:
                self._probing = False
            if fault is None:
                if self._open:
                    self._open = False
                    recovered = True
                    self._counts["recovered"] += 1
                    down = time.monotonic() - self._opened_at
            elif probe or self._open or elapsed >= self.min_cost:
                opened = not self._open
                self._open = True
                self._opened_at = time.monotonic()
                self._last_error = f"{type(fault).__name__}: {fault}"
                if opened:
                    self._counts["opened"] += 1
        where = self.name or "store"
        if opened:
            log.warning("%s: %s after %.2fs; failing fast, probing every %.1fs", where,
                        self._last_error, elapsed, self.reset_after)
        elif recovered:
            log.warning("%s: reachable again (probe succeeded %.2fs after the last fault)", where, down)

    def reset(self) -> None:
        """Close the breaker now (the next operation goes to the backend)."""
        with self._lock:
            self._open = self._probing = False

    def stats(self) -> dict[str, Any]:
        s: dict[str, Any] = {"state": self.state}
        with self._lock:
            s.update(self._counts)
        return s

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name or 'unnamed'!r}, state={self.state!r}, reset_after={self.reset_after:g})"
