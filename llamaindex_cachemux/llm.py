"""``CacheMuxLLM``: a LlamaIndex LLM that picks one of several LlamaIndex LLMs per call with a
cachemux ``Selector``, through an optional cachemux ``SemanticCache``.

::

    from llama_index.core import Settings
    from llamaindex_cachemux import CacheMuxLLM, LocalLLM
    Settings.llm = CacheMuxLLM({"small": LocalLLM.from_name("smollm2-135m"),
                                "large": LocalLLM.from_name("gemma3-270m")},
                               selector, costs={"small": 1.0, "large": 2.0}, cache=SemanticCache())

Every response (``CompletionResponse``/``ChatResponse``, and the last chunk of a stream) carries
the routing record in ``additional_kwargs["cachemux"]`` (keys as in ``MuxOutcome.metadata``:
``model``, ``route``, ``models_run``, ``cost``, ``expected_cost``, ``route_costs``,
``model_costs``, ``latency``, ``success``, ``cache_hit``, ``similarity``/``saved`` on hits,
``cached``).

The cache sees completions and chats apart (a chat's earlier messages are its exact scope; its
last user message is compared by meaning; so is a completion's question when ``query_fn``
finds it in the prompt, the rest of the prompt being its exact scope); entries hold ``{"text", "model", "cost"}`` as JSON and are
priced at the selector's expected cost for the query (the paper's joint design). ``query_fn``
maps the prompt text (a completion prompt, or a chat's last user message) to what the selector
sees: a RAG prompt holds retrieved context too, so pass a function that extracts the question.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.llm import LLM
from pydantic import ConfigDict, PrivateAttr

from cachemux.errors import ConfigError
from cachemux.models.mux import Attempt, ModelMux
from cachemux.multiplexer.selectors import Selector

__all__ = ["CacheMuxLLM"]

_CHAT_SCOPE = "\x00chat:"  # chats never share entries with completions


class CacheMuxLLM(LLM):
    """Route each call to one of ``llms`` (``{"small": llm_a, "large": llm_b}``) with ``selector``.

    ``costs``: ``{model: cost}``, ``"latency"`` (measured seconds, the default), ``"flops"``
    (``additional_kwargs["flops"]`` as ``LocalLLM`` reports it) or ``f(model, response, seconds)``.
    ``cache``: a ``cachemux.cache.SemanticCache`` (a LangChain ``CacheMuxCache`` works too).
    ``judge(query, model, text) -> bool | None`` grades answers for cascade routes.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    llms: dict[str, Any]
    _mux: ModelMux = PrivateAttr()
    _query_fn: Callable[[str], Any] | None = PrivateAttr(default=None)

    def __init__(self, llms: Mapping[str, LLM], selector: Selector, *,
                 costs: Mapping[str, float] | str | Callable[[str, Any, float], float] = "latency",
                 cache: Any = None, judge: Callable[[Any, str, str], bool | None] | None = None,
                 query_fn: Callable[[str], Any] | None = None, llm_string: str | None = None,
                 **kwargs: Any) -> None:
        if not isinstance(llms, Mapping) or not llms:
            raise ConfigError("llms must be a non-empty mapping {name: LlamaIndex LLM}")
        for n, m in llms.items():
            if not isinstance(m, LLM):
                raise ConfigError(f"llm {n!r} must be a LlamaIndex LLM, got {type(m).__name__}")
        super().__init__(llms=dict(llms), **kwargs)
        cache = getattr(cache, "cache", cache)  # a LangChain CacheMuxCache wraps a SemanticCache
        if cache is not None and not hasattr(cache, "match"):
            raise ConfigError(f"cache must be a cachemux SemanticCache, got {type(cache).__name__}")
        if llm_string is None:
            llm_string = "cachemux-llamaindex:" + json.dumps(
                {k: [type(m).__name__, m.metadata.model_name, m.metadata.num_output] for k, m in llms.items()},
                sort_keys=True)
        self._mux = ModelMux(list(llms), selector, costs=_costs(costs), cache=cache,
                             llm_string=llm_string, judge=judge)
        self._query_fn = query_fn

    @classmethod
    def class_name(cls) -> str:
        return "cachemux_llm"

    @property
    def mux(self) -> ModelMux:
        return self._mux

    @property
    def selector(self) -> Selector:
        return self._mux.selector

    def stats(self) -> dict[str, Any]:
        return self._mux.stats()

    @property
    def metadata(self) -> LLMMetadata:
        """The tightest context window and the largest output budget of the wrapped models (a
        prompt packed for it fits whichever model answers); a chat model only if all are."""
        metas = [m.metadata for m in self.llms.values()]
        return LLMMetadata(
            context_window=min(m.context_window for m in metas),
            num_output=max(m.num_output for m in metas),
            is_chat_model=all(m.is_chat_model for m in metas),
            is_function_calling_model=False,
            model_name="cachemux[" + ",".join(f"{k}={m.model_name}" for k, m in zip(self.llms, metas)) + "]")

    # ---- request parts -----------------------------------------------------------------------------
    def _query(self, text: str) -> Any:
        return self._query_fn(text) if self._query_fn is not None else text

    def _completion_parts(self, prompt: str) -> tuple[str | None, str, Any]:
        """(text compared by meaning, exact scope, selector query) of a completion prompt. With a
        ``query_fn`` that finds the question inside the prompt, only the question is compared by
        meaning and the rest (the retrieved context, the template) must match exactly: two
        questions about one context must not share an answer because the context dominates their
        embeddings. Otherwise the whole prompt is compared."""
        if self._query_fn is None:
            return None, "", prompt
        q = self._query_fn(prompt)
        if isinstance(q, str) and q.strip() and q in prompt:
            i = prompt.rfind(q)
            return q, prompt[:i] + "\x00" + prompt[i + len(q):], q
        return None, "", q

    @staticmethod
    def _chat_parts(messages: Sequence[ChatMessage]) -> tuple[str, str | bool, str, str]:
        """(cache prompt, text compared by meaning, exact scope, selector text) of a chat."""
        turns = [[m.role.value if isinstance(m.role, MessageRole) else str(m.role), m.content or ""]
                 for m in messages]
        if not turns:
            raise ConfigError("chat() needs at least one message")
        prompt = _CHAT_SCOPE + json.dumps(turns, ensure_ascii=False)
        role, last = turns[-1]
        if role != "user":  # nothing to compare by meaning: exact only
            return prompt, False, "", last
        return prompt, last, _CHAT_SCOPE + json.dumps(turns[:-1], ensure_ascii=False), last

    @staticmethod
    def _value(text: str, model: str, cost: float) -> str:
        return json.dumps({"text": text, "model": model, "cost": cost}, ensure_ascii=False)

    def _hit(self, hit: Any, query: Any) -> tuple[str, dict[str, Any]]:
        try:
            d = json.loads(hit.value)
            text, model, paid = str(d["text"]), d.get("model"), d.get("cost")
        except (ValueError, KeyError, TypeError):
            text, model, paid = hit.value, None, None
        return text, self._mux.hit_outcome(query, hit, model, paid).metadata()

    def _finish(self, query: Any, route: Any, attempts: Sequence[Attempt], expected: float | None,
                prompt: str, embed: str | bool, scope: str) -> dict[str, Any]:
        final = attempts[-1]
        value = self._value(final.text, final.model, self._mux.route_cost(route, attempts))
        return self._mux.finish(query, route, attempts, expected, prompt, value,
                                embed_text=embed, scope=scope).metadata()

    # ---- completion ----------------------------------------------------------------------------------
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        mux = self._mux
        embed, scope, query = self._completion_parts(prompt)
        hit = mux.lookup(prompt, embed_text=embed, scope=scope)
        if hit is not None:
            text, meta = self._hit(hit, query)
            return _completion_response(text, meta)
        route, expected = mux.plan(query)
        attempts = mux.run_route(query, route, lambda m: self.llms[m].complete(prompt, formatted=formatted, **kwargs),
                                 _text)
        meta = self._finish(query, route, attempts, expected, prompt, embed, scope)  # type: ignore[arg-type]
        return _with_meta(attempts[-1].output, meta)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        mux = self._mux
        embed, scope, query = self._completion_parts(prompt)
        hit = await asyncio.to_thread(lambda: mux.lookup(prompt, embed_text=embed, scope=scope))
        if hit is not None:
            text, meta = self._hit(hit, query)
            return _completion_response(text, meta)
        route, expected = await asyncio.to_thread(mux.plan, query)
        attempts = await mux.arun_route(query, route, lambda m: self.llms[m].acomplete(prompt, formatted=formatted,
                                                                                       **kwargs), _text)
        meta = await asyncio.to_thread(self._finish, query, route, attempts, expected, prompt, embed, scope)
        return _with_meta(attempts[-1].output, meta)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        embed, scope, query = self._completion_parts(prompt)

        def gen() -> Iterator[CompletionResponse]:
            for kind, item in self._stream_steps(
                    prompt, embed, scope, query,
                    lambda m: self.llms[m].complete(prompt, formatted=formatted, **kwargs),
                    lambda m: self.llms[m].stream_complete(prompt, formatted=formatted, **kwargs)):
                if kind == "chunk":
                    yield item
                else:
                    text, meta = item
                    yield _completion_response(text, meta, delta="" if kind == "meta" else text)
        return gen()

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False,
                               **kwargs: Any) -> CompletionResponseAsyncGen:
        embed, scope, query = self._completion_parts(prompt)

        async def gen() -> AsyncIterator[CompletionResponse]:
            async for kind, item in self._astream_steps(
                    prompt, embed, scope, query,
                    lambda m: self.llms[m].acomplete(prompt, formatted=formatted, **kwargs),
                    lambda m: self.llms[m].astream_complete(prompt, formatted=formatted, **kwargs)):
                if kind == "chunk":
                    yield item
                else:
                    text, meta = item
                    yield _completion_response(text, meta, delta="" if kind == "meta" else text)
        return gen()

    # ---- chat ------------------------------------------------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        mux = self._mux
        prompt, embed, scope, last = self._chat_parts(messages)
        query = self._query(last)
        hit = mux.lookup(prompt, embed_text=embed, scope=scope)
        if hit is not None:
            text, meta = self._hit(hit, query)
            return _chat_response(text, meta)
        route, expected = mux.plan(query)
        attempts = mux.run_route(query, route, lambda m: self.llms[m].chat(messages, **kwargs), _text)
        meta = self._finish(query, route, attempts, expected, prompt, embed, scope)
        return _with_meta(attempts[-1].output, meta)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        mux = self._mux
        prompt, embed, scope, last = self._chat_parts(messages)
        query = self._query(last)
        hit = await asyncio.to_thread(lambda: mux.lookup(prompt, embed_text=embed, scope=scope))
        if hit is not None:
            text, meta = self._hit(hit, query)
            return _chat_response(text, meta)
        route, expected = await asyncio.to_thread(mux.plan, query)
        attempts = await mux.arun_route(query, route, lambda m: self.llms[m].achat(messages, **kwargs), _text)
        meta = await asyncio.to_thread(self._finish, query, route, attempts, expected, prompt, embed, scope)
        return _with_meta(attempts[-1].output, meta)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        prompt, embed, scope, last = self._chat_parts(messages)

        def gen() -> Iterator[ChatResponse]:
            for kind, item in self._stream_steps(
                    prompt, embed, scope, self._query(last),
                    lambda m: self.llms[m].chat(messages, **kwargs),
                    lambda m: self.llms[m].stream_chat(messages, **kwargs)):
                if kind == "chunk":
                    yield item
                else:
                    text, meta = item
                    yield _chat_response(text, meta, delta="" if kind == "meta" else text)
        return gen()

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        prompt, embed, scope, last = self._chat_parts(messages)

        async def gen() -> AsyncIterator[ChatResponse]:
            async for kind, item in self._astream_steps(
                    prompt, embed, scope, self._query(last),
                    lambda m: self.llms[m].achat(messages, **kwargs),
                    lambda m: self.llms[m].astream_chat(messages, **kwargs)):
                if kind == "chunk":
                    yield item
                else:
                    text, meta = item
                    yield _chat_response(text, meta, delta="" if kind == "meta" else text)
        return gen()

    # ---- streaming, written once for completions and chats ------------------------------------------
    def _stream_steps(self, prompt: str, embed: str | bool | None, scope: str, query: Any,
                      whole: Callable[[str], Any], stream: Callable[[str], Iterator[Any]]
                      ) -> Iterator[tuple[str, Any]]:
        """Yields ("chunk", response) for the model's chunks, ("whole", (text, meta)) for a cache
        hit or a graded cascade step, and ("meta", (text, meta)) once at the end of a stream."""
        mux = self._mux
        hit = mux.lookup(prompt, embed_text=embed, scope=scope)
        if hit is not None:
            yield "whole", self._hit(hit, query)
            return
        route, expected = mux.plan(query)
        attempts: list[Attempt] = []
        for i, name in enumerate(route):
            if i < len(route) - 1 and mux.judge is not None:  # the judge needs the whole answer
                attempts += mux.run_route(query, (name,), whole, _text)
                if attempts[-1].success is not False:
                    break
                continue
            t0 = _now()
            last = None
            for chunk in stream(name):
                last = chunk
                yield "chunk", chunk
            attempts.append(mux.attempt(query, name, last, _text(last), _now() - t0))
            meta = self._finish(query, route, attempts, expected, prompt, embed, scope)  # type: ignore[arg-type]
            yield "meta", (_text(last), meta)
            return
        meta = self._finish(query, route, attempts, expected, prompt, embed, scope)  # type: ignore[arg-type]
        yield "whole", (attempts[-1].text, meta)

    async def _astream_steps(self, prompt: str, embed: str | bool | None, scope: str, query: Any,
                             whole: Callable[[str], Any], stream: Callable[[str], Any]
                             ) -> AsyncIterator[tuple[str, Any]]:
        mux = self._mux
        hit = await asyncio.to_thread(lambda: mux.lookup(prompt, embed_text=embed, scope=scope))
        if hit is not None:
            yield "whole", self._hit(hit, query)
            return
        route, expected = await asyncio.to_thread(mux.plan, query)
        attempts: list[Attempt] = []
        for i, name in enumerate(route):
            if i < len(route) - 1 and mux.judge is not None:
                attempts += await mux.arun_route(query, (name,), whole, _text)
                if attempts[-1].success is not False:
                    break
                continue
            t0 = _now()
            last = None
            async for chunk in await stream(name):
                last = chunk
                yield "chunk", chunk
            attempts.append(mux.attempt(query, name, last, _text(last), _now() - t0))
            meta = await asyncio.to_thread(self._finish, query, route, attempts, expected, prompt, embed, scope)
            yield "meta", (_text(last), meta)
            return
        meta = await asyncio.to_thread(self._finish, query, route, attempts, expected, prompt, embed, scope)
        yield "whole", (attempts[-1].text, meta)


def _now() -> float:
    import time

    return time.perf_counter()


def _text(r: Any) -> str:
    if r is None:
        return ""
    if isinstance(r, ChatResponse):
        return r.message.content or ""
    return r.text or ""


def _with_meta(r: Any, meta: dict[str, Any]) -> Any:
    r.additional_kwargs = {**(r.additional_kwargs or {}), "cachemux": meta}
    return r


def _completion_response(text: str, meta: dict[str, Any], delta: str | None = None) -> CompletionResponse:
    return CompletionResponse(text=text, delta=delta, additional_kwargs={"cachemux": meta})


def _chat_response(text: str, meta: dict[str, Any], delta: str | None = None) -> ChatResponse:
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta,
                        additional_kwargs={"cachemux": meta})


def _costs(costs: Any) -> Any:
    if costs == "flops":
        def flops(model: str, r: Any, seconds: float) -> float:
            kw = getattr(r, "additional_kwargs", None) or {}
            if "flops" not in kw:
                raise ConfigError(f"costs='flops' needs LLMs that report additional_kwargs['flops'] "
                                  f"(LocalLLM); {model!r} did not")
            return float(kw["flops"])
        return flops
    return costs
