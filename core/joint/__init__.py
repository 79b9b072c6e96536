"""The joint engine: cache lookup, then the multiplexer, with entries priced under the multiplexer."""

from __future__ import annotations

from cachemux.joint.caches import CachePort, PolicyCache, SemanticPort, as_cache_port
from cachemux.joint.costs import CostModel
from cachemux.joint.engine import Chunk, JointEngine
from cachemux.joint.types import Attempt, Generation, Hit, Request, Served

__all__ = ["Attempt", "CachePort", "Chunk", "CostModel", "Generation", "Hit", "JointEngine", "PolicyCache",
           "Request", "SemanticPort", "Served", "as_cache_port"]
