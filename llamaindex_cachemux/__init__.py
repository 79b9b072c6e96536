"""LlamaIndex plugin for cachemux: ``Settings.llm = CacheMuxLLM({...}, selector, cache=...)``."""

from __future__ import annotations

from llamaindex_cachemux.llm import CacheMuxLLM
from llamaindex_cachemux.local import LocalEmbedding, LocalLLM

__all__ = ["CacheMuxLLM", "LocalEmbedding", "LocalLLM"]
