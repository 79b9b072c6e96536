"""Error-bounded caches in tests: teach the shared half of the bound a verdict in every score bin."""

from __future__ import annotations

from typing import Any


def warm(cache: Any, ok: bool = True, n: int = 5) -> None:
    """``cache.bound`` (an ``ErrorBound``) has seen ``n`` verdicts ``ok`` at every score."""
    for k in range(200):
        for _ in range(n):
            cache.bound.observe((k + 0.5) / 200, ok, None)
