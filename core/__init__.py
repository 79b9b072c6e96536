"""cachemux: cost-aware caching (LEC/GDSF) and model multiplexing for LLM inference."""

from __future__ import annotations

from cachemux.errors import (
    CacheMuxError,
    ConfigError,
    InvariantError,
    MissingCostError,
    StoreError,
    UnknownNameError,
)
from cachemux.policies import POLICIES, Policy, make_policy

__all__ = [
    "CacheMuxError",
    "ConfigError",
    "InvariantError",
    "MissingCostError",
    "POLICIES",
    "Policy",
    "StoreError",
    "UnknownNameError",
    "make_policy",
]
__version__ = "0.1.0"
