"""The joint engine: cache lookup, then the multiplexer, with priorities priced under the multiplexer."""

from __future__ import annotations

from cachemux.joint.engine import Generation, JointEngine, Served

__all__ = ["Generation", "JointEngine", "Served"]
