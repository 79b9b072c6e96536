"""The semantic LLM cache (``SemanticCache``), importable from here as from ``cachemux.semantic.cache``.

The cache is built from parts in ``cachemux.semantic`` (``cachemux.semantic.cache`` lists them);
this module keeps the names applications and adapters import from ``cachemux.cache``.
"""

from __future__ import annotations

from cachemux.paths import default_store_dir  # noqa: F401 - where the default store lives
from cachemux.semantic.cache import FLIGHT_TIMEOUT_S, LEASE_POLL_S, SemanticCache
from cachemux.semantic.limits import MAX_VALUE_BYTES
from cachemux.semantic.match import Match
from cachemux.semantic.mirror import DRAIN_PER_SYNC, SNAPSHOT_MIN_ENTRIES
from cachemux.semantic.parts import PROMPT_KEEP_CHARS
from cachemux.semantic.persist import SNAPSHOT_FOLDER
from cachemux.semantic.pricing import FALLBACK_SECONDS_PER_TOKEN, PENDING_MAX_AGE_S, CostInfo

__all__ = ["DRAIN_PER_SYNC", "FALLBACK_SECONDS_PER_TOKEN", "FLIGHT_TIMEOUT_S", "LEASE_POLL_S", "MAX_VALUE_BYTES",
           "PENDING_MAX_AGE_S", "PROMPT_KEEP_CHARS", "SNAPSHOT_FOLDER", "SNAPSHOT_MIN_ENTRIES", "CostInfo", "Match",
           "SemanticCache"]
