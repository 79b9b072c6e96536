"""LangChain plugin for cachemux: ``set_llm_cache(CacheMuxCache())``."""

from __future__ import annotations

from langchain_cachemux.cache import CacheMuxCache, prompt_parts, token_usage

__all__ = ["CacheMuxCache", "prompt_parts", "token_usage"]

from langchain_cachemux.router import CacheMuxRouter, LocalChatModel, LocalLLM, RoutedText  # noqa: E402

__all__ += ["CacheMuxRouter", "LocalChatModel", "LocalLLM", "RoutedText"]
