"""LlamaIndex plugin for cachemux: ``Settings.llm = CacheMuxLLM({"small": ..., "large": ...}, selector,
costs=..., cache=SemanticCache())`` serves each call through the joint engine (cache, then the
selector's route); ``LocalLLM("smollm2-135m")`` and ``LocalEmbedding()`` run the packaged models."""

from __future__ import annotations

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without the extra
    raise ImportError("llamaindex_cachemux needs llama-index-core: pip install 'cachemux[llamaindex]'") from exc

from llamaindex_cachemux.llm import CacheMuxLLM
from llamaindex_cachemux.local import LocalEmbedding, LocalLLM

__all__ = ["CacheMuxLLM", "LocalEmbedding", "LocalLLM"]
