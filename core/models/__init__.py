"""Local generative models: loading (GGUF from PyPI packages, or any transformers model by name or
path; an unknown name is refused at construction), greedy or sampled generation, and cost
accounting (measured latency, FLOPs counted from the model config)."""

from __future__ import annotations

from cachemux.models.flops import FlopsProfile
from cachemux.models.local import GenerationResult, GenerationStream, LocalModel, Message, get_model
from cachemux.models.packaged import PACKAGED, PackagedModel, locate_gguf, model_cache_root

__all__ = ["PACKAGED", "FlopsProfile", "GenerationResult", "GenerationStream", "LocalModel",
           "Message", "PackagedModel", "get_model", "locate_gguf", "model_cache_root"]
