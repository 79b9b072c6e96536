"""The limits of a ``SemanticCache``: how large a stored answer may be and how long it may serve.

``max_value_bytes`` (default ``MAX_VALUE_BYTES``, UTF-8 bytes of the stored, serialised answer;
None: no limit): a larger answer is not cached, a larger stored one is never served. ``ttl``
(seconds after it was written; None: forever): an older entry is stale, and so is one past the
``expires`` its writer gave it.
"""

from __future__ import annotations

import time

from cachemux.errors import ConfigError, check_positive
from cachemux.stores.base import Entry

__all__ = ["MAX_VALUE_BYTES", "Limits"]

MAX_VALUE_BYTES = 1_000_000  # default max_value_bytes: UTF-8 bytes of one stored (serialised) answer


class Limits:
    """``max_value_bytes`` and ``ttl``, checked (see the module docstring)."""

    def __init__(self, max_value_bytes: int | None = MAX_VALUE_BYTES, ttl: float | None = None) -> None:
        if max_value_bytes is not None and (isinstance(max_value_bytes, bool) or not isinstance(max_value_bytes, int)
                                            or max_value_bytes < 1):
            raise ConfigError(f"max_value_bytes must be an int >= 1 or None, got {max_value_bytes!r}")
        if isinstance(ttl, bool):
            raise ConfigError(f"ttl must be a number of seconds > 0 or None, got {ttl!r}")
        self.max_value_bytes = max_value_bytes
        self.ttl = None if ttl is None else check_positive("ttl", ttl)

    def too_large(self, value: str) -> bool:
        limit = self.max_value_bytes
        if limit is None or len(value) * 4 <= limit:  # at most 4 UTF-8 bytes per character
            return False
        return len(value) > limit or len(value.encode("utf-8", "surrogatepass")) > limit

    def refuses(self, entry: Entry) -> str | None:
        """Why ``entry`` may not be served ("too_large", "expired"), or None."""
        if self.max_value_bytes is not None and self.too_large(entry.value):
            return "too_large"
        if (self.ttl is not None or entry.expires is not None) and self.stale(entry):
            return "expired"
        return None

    def stale(self, entry: Entry, now: float | None = None) -> bool:
        """Past this cache's ``ttl`` or the ``expires`` its writer gave it."""
        now = time.time() if now is None else now
        return (self.ttl is not None and now - entry.created > self.ttl) or (
            entry.expires is not None and now > entry.expires)

    def expires(self, created: float) -> float | None:
        """The ``expires`` of an entry written at ``created``."""
        return None if self.ttl is None else created + self.ttl
