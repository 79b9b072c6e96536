"""LangChain plugin for cachemux: ``set_llm_cache(CacheMuxCache())``; ``CacheMuxRouter``, a chat
model routing among several models through the cache; ``LocalChatModel``/``LocalLLM`` over local
transformers models."""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without the extra
    raise ImportError("langchain_cachemux needs langchain-core: pip install 'cachemux[langchain]'") from exc

from langchain_cachemux.cache import CacheMuxCache, prompt_parts, token_usage
from langchain_cachemux.embeddings import LangChainEmbedder
from langchain_cachemux.local import LocalChatModel, LocalLLM
from langchain_cachemux.router import CacheMuxRouter

__all__ = ["CacheMuxCache", "CacheMuxRouter", "LangChainEmbedder", "LocalChatModel", "LocalLLM", "prompt_parts",
           "token_usage"]
