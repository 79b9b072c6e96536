"""cachemux: cost-aware caching (LEC/GDSF) and model multiplexing for LLM inference.

The public surface, importable from ``cachemux`` directly (adapters use only this). Policies and
errors load eagerly (pure Python); the rest on first use, so ``import cachemux`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cachemux.errors import (
    CacheMuxError,
    ConfigError,
    InvariantError,
    MissingCostError,
    StoreError,
    UnknownNameError,
)
from cachemux.policies import POLICIES, Policy, make_policy

if TYPE_CHECKING:
    from cachemux.cache import CostInfo, Match, SemanticCache
    from cachemux.joint import (Attempt, CachePort, Chunk, CostModel, Generation, Hit, JointEngine, PolicyCache,
                                Request, SemanticPort, Served)
    from cachemux.multiplexer import (NoisyOracleSelector, OnlineSelector, OracleSelector, Route, Selector,
                                      StaticSelector, TrainedSelector)
    from cachemux.multiplexer.registry import SELECTORS, make_selector
    from cachemux.stores import DiskStore, Entry, MemoryStore, RedisStore, Store
    from cachemux.units import estimate_tokens

_LAZY = {
    "cachemux.cache": ("CostInfo", "Match", "SemanticCache"),
    "cachemux.joint": ("Attempt", "CachePort", "Chunk", "CostModel", "Generation", "Hit", "JointEngine",
                       "PolicyCache", "Request", "SemanticPort", "Served"),
    "cachemux.multiplexer.selectors": ("NoisyOracleSelector", "OnlineSelector", "OracleSelector", "Selector",
                                       "StaticSelector"),
    "cachemux.multiplexer.routes": ("Route",),
    "cachemux.multiplexer.trained": ("TrainedSelector",),
    "cachemux.multiplexer.registry": ("SELECTORS", "make_selector"),
    "cachemux.stores": ("DiskStore", "Entry", "MemoryStore", "RedisStore", "Store"),
    "cachemux.units": ("estimate_tokens",),
}
_WHERE = {name: mod for mod, names in _LAZY.items() for name in names}

# as a literal (not computed) so type checkers see the re-exports; tests/project/test_surface.py
# checks it against _LAZY and the eager imports
__all__ = [
    "Attempt", "CacheMuxError", "CachePort", "Chunk", "ConfigError", "CostInfo", "CostModel", "DiskStore", "Entry",
    "Generation", "Hit", "InvariantError", "JointEngine", "Match", "MemoryStore", "MissingCostError",
    "NoisyOracleSelector", "OnlineSelector", "OracleSelector", "POLICIES", "Policy", "PolicyCache", "RedisStore",
    "Request", "Route", "SELECTORS", "Selector", "SemanticCache", "SemanticPort", "Served", "StaticSelector", "Store",
    "StoreError", "TrainedSelector", "UnknownNameError", "estimate_tokens", "make_policy", "make_selector",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'cachemux' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
