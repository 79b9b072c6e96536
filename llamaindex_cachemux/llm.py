"""``CacheMuxLLM``: a LlamaIndex LLM that serves each call through cachemux's joint engine -- the
semantic cache, then a ``Selector`` choosing which of several LlamaIndex LLMs answers.

::

    from llama_index.core import Settings
    from cachemux import OnlineSelector, SemanticCache
    from llamaindex_cachemux import CacheMuxLLM, LocalLLM
    Settings.llm = CacheMuxLLM({"small": LocalLLM("smollm2-135m"), "large": LocalLLM("gemma3-270m")},
                               OnlineSelector([("small", "large"), ("large",)]),
                               costs={"small": 1.0, "large": 10.0}, cache=SemanticCache())

Every response (``CompletionResponse``/``ChatResponse``, and the last chunk of a stream) carries
the routing record ``Served.metadata()`` in ``additional_kwargs["cachemux"]`` (``model``,
``route``, ``models_run``, ``cost``, ``expected_cost``, ``route_costs``, ``model_costs``,
``latency``, ``success``, ``cache_hit``, ``cached``, ``entry_cost``; ``similarity``/``saved`` on
hits). On a miss the response is the answering model's own, so its fields are kept.

The cache key holds the models' configurations (their pydantic fields, less credentials) and
the call's options (``max_tokens``, ``temperature``, ``stop``, ...) and whether it is a completion
or a chat: an answer is never served to a call made with other options. A chat's last user message is compared by meaning,
its earlier messages being the exact scope; so is a completion's question when ``query_fn``
finds it in the prompt (the rest of the prompt, e.g. retrieved context, being the scope).
``query_fn`` maps the prompt text (a completion prompt, or a chat's last message) to what the
selector routes on: a RAG prompt holds retrieved context too, so pass one that extracts the question.
"""

from __future__ import annotations

import enum
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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
    TextBlock,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.llm import LLM
from pydantic import BaseModel, ConfigDict, PrivateAttr, SecretStr

from cachemux import Chunk, ConfigError, Generation, JointEngine, Request, Selector, Served
from cachemux.joint.caches import semantic_port
from cachemux.semantic.identity import callable_identity

__all__ = ["CacheMuxLLM"]

log = logging.getLogger(__name__)

# model fields never written into a cache key (the key is stored with each entry)
_SECRET = re.compile(r"api_?key|secret|password|token$|^key$|_key$|auth|credential", re.I)
# LLM fields LlamaIndex leaves out of to_dict() that still shape the prompt a model sees
_PROMPT_FIELDS = ("messages_to_prompt", "completion_to_prompt", "query_wrapper_prompt")


@dataclass(slots=True)
class _Call:
    """A call as the generate port runs it; ``responses`` keeps each model's own response."""

    chat: bool
    input: Any  # the prompt, or the messages
    kwargs: dict[str, Any]
    responses: dict[str, Any] = field(default_factory=dict)


class CacheMuxLLM(LLM):
    """Serve each call with one of ``models`` (``{"small": llm_a, "large": llm_b}``) chosen by
    ``selector``, through ``cache`` (a ``SemanticCache``, or a LangChain ``CacheMuxCache``).

    ``costs``: ``{model: cost}``, ``"latency"`` (measured seconds, the default), ``"flops"``
    (``additional_kwargs["flops"]``, as ``LocalLLM`` reports it), ``"tokens"`` (its
    ``tokens_in + tokens_out``) or ``f(model, text, seconds)``. ``judge(query, model, text) ->
    bool | None`` grades answers for cascade routes. An answer the judge rejected is served but
    never cached, nor a blank one unless ``admit_empty=True``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    models: dict[str, Any]
    _engine: JointEngine = PrivateAttr()
    _query_fn: Callable[[str], Any] | None = PrivateAttr(default=None)
    _unkeyable: set[str] = PrivateAttr(default_factory=set)

    def __init__(self, models: Mapping[str, LLM], selector: Selector, *,
                 costs: Mapping[str, float] | str | Callable[[str, Any, float], float] = "latency",
                 cache: Any = None, judge: Callable[[Any, str, str], bool | None] | None = None,
                 query_fn: Callable[[str], Any] | None = None, system_prompt: str | None = None,
                 callback_manager: Any = None, admit_empty: bool = False) -> None:
        if not isinstance(models, Mapping) or not models:
            raise ConfigError("models must be a non-empty mapping {name: LlamaIndex LLM}")
        for n, m in models.items():
            if not isinstance(m, LLM):
                raise ConfigError(f"models[{n!r}] must be a LlamaIndex LLM, got {type(m).__name__}")
        missing = [m for m in getattr(selector, "models", ()) if m not in models]
        if missing:
            raise ConfigError(f"selector routes use {missing}, not among the models {list(models)}")
        if query_fn is not None and not callable(query_fn):
            raise ConfigError(f"query_fn must be a function (prompt text) -> query, got {query_fn!r}")
        port = semantic_port(cache)  # a SemanticCache, a CacheMuxCache holding one, or None
        # LlamaIndex applies these two itself (predict() adds the system prompt; the callbacks)
        base = {"system_prompt": system_prompt, "callback_manager": callback_manager}
        super().__init__(models=dict(models), **{k: v for k, v in base.items() if v is not None})
        self._engine = JointEngine(port, selector,
                                   _Port(self.models), costs=costs, judge=judge, admit_empty=admit_empty)
        self._query_fn = query_fn

    @classmethod
    def class_name(cls) -> str:
        return "cachemux_llm"

    @property
    def engine(self) -> JointEngine:
        return self._engine

    @property
    def selector(self) -> Selector:
        return self._engine.selector

    def stats(self) -> dict[str, Any]:
        return self._engine.stats()

    @property
    def metadata(self) -> LLMMetadata:
        """The tightest context window and the largest output budget of the wrapped models (a
        prompt packed for it fits whichever model answers); a chat model only if all are."""
        metas = [m.metadata for m in self.models.values()]
        return LLMMetadata(
            context_window=min(m.context_window for m in metas),
            num_output=max(m.num_output for m in metas),
            is_chat_model=all(m.is_chat_model for m in metas),
            is_function_calling_model=False,
            model_name="cachemux[" + ",".join(f"{k}={m.model_name}" for k, m in zip(self.models, metas)) + "]")

    # ---- framework input -> Request ---------------------------------------------------------------
    def _config(self, kind: str, options: Mapping[str, Any]) -> tuple[str, bool]:
        """The serialised configuration and whether it can be keyed: a callable field or option
        whose behaviour cannot be told (``callable_identity`` None) makes the call uncacheable,
        since a key could then match an answer made under another formatter."""
        config = {"call": kind, "models": {k: _llm_config(m) for k, m in self.models.items()},
                  "options": dict(options)}
        try:
            return json.dumps(config, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_plain), True
        except _Unkeyable as exc:
            if exc.what not in self._unkeyable:
                self._unkeyable.add(exc.what)
                log.warning("cachemux: %s cannot be keyed by what it does; calls with it are not cached", exc.what)
            return "", False

    def _completion(self, prompt: str, formatted: bool, kwargs: dict[str, Any]) -> Request:
        """A completion's request. With a ``query_fn`` that finds the question inside the prompt,
        only the question is compared by meaning and the rest (the retrieved context, the
        template) must match exactly: two questions about one context must not share an answer
        because the context dominates their embeddings. Otherwise the whole prompt is compared."""
        call = _Call(False, prompt, {"formatted": formatted, **kwargs})
        embed, scope, query = None, "", prompt
        if self._query_fn is not None:
            query = self._query_fn(prompt)
            if isinstance(query, str) and query.strip() and query in prompt:
                i = prompt.rfind(query)
                embed, scope = query, prompt[:i] + "\x00" + prompt[i + len(query):]
        config, cacheable = self._config("complete", call.kwargs)
        return Request(query, prompt=prompt, config=config, embed_text=embed, scope=scope, payload=call,
                       cacheable=cacheable)

    def _chat(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> Request:
        """A chat's request: its last user message is compared by meaning, the earlier ones are
        the exact scope (a last message of another role: exact only)."""
        turns = [_turn(m) for m in messages]
        if not turns:
            raise ConfigError("messages: a chat needs at least one message")
        last = messages[-1].content or ""
        user = turns[-1][0] == "user" and len(turns[-1]) == 2
        scope = json.dumps(turns[:-1], ensure_ascii=False) if user else ""
        query = self._query_fn(last) if self._query_fn is not None else last
        config, cacheable = self._config("chat", kwargs)
        return Request(query, prompt=json.dumps(turns, ensure_ascii=False), config=config,
                       embed_text=last if user else False, scope=scope,
                       payload=_Call(True, list(messages), dict(kwargs)), cacheable=cacheable)

    # ---- Served -> framework output ---------------------------------------------------------------
    @staticmethod
    def _respond(served: Served, call: _Call) -> Any:
        meta = served.metadata()
        own = None if served.hit or served.model is None else call.responses.get(served.model)
        if own is None:
            return _response(call.chat, served.answer, meta)
        own.additional_kwargs = {**(own.additional_kwargs or {}), "cachemux": meta}
        return own

    @staticmethod
    def _chunk(item: Chunk | Served, call: _Call) -> Any:
        """A model's chunk as it is, or the last one, carrying the routing record (and the whole
        answer as its delta when that was not streamed: a hit, an accepted judged cascade step)."""
        if isinstance(item, Chunk):
            return item.value
        return _response(call.chat, item.answer, item.metadata(), "" if item.streamed else item.answer)

    def _stream(self, req: Request) -> Iterator[Any]:
        return (self._chunk(item, req.payload) for item in self._engine.stream(req))

    async def _astream(self, req: Request) -> AsyncIterator[Any]:
        async for item in self._engine.astream(req):
            yield self._chunk(item, req.payload)

    # ---- the eight call forms ---------------------------------------------------------------------
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        req = self._completion(prompt, formatted, kwargs)
        return self._respond(self._engine.serve(req), req.payload)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        req = self._completion(prompt, formatted, kwargs)
        return self._respond(await self._engine.aserve(req), req.payload)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        return self._stream(self._completion(prompt, formatted, kwargs))

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False,
                               **kwargs: Any) -> CompletionResponseAsyncGen:
        return self._astream(self._completion(prompt, formatted, kwargs))

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        req = self._chat(messages, kwargs)
        return self._respond(self._engine.serve(req), req.payload)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        req = self._chat(messages, kwargs)
        return self._respond(await self._engine.aserve(req), req.payload)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return self._stream(self._chat(messages, kwargs))

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        return self._astream(self._chat(messages, kwargs))


class _Port:
    """The engine's generate port: run one wrapped LLM on the call, with the call's options."""

    def __init__(self, models: Mapping[str, LLM]) -> None:
        self.models = models

    def generate(self, req: Request, model: str) -> Generation:
        c, llm = req.payload, self.models[model]
        r = llm.chat(c.input, **c.kwargs) if c.chat else llm.complete(c.input, **c.kwargs)
        return _generation(r, c, model)

    async def agenerate(self, req: Request, model: str) -> Generation:
        c, llm = req.payload, self.models[model]
        r = await (llm.achat(c.input, **c.kwargs) if c.chat else llm.acomplete(c.input, **c.kwargs))
        return _generation(r, c, model)

    def stream(self, req: Request, model: str) -> Iterator[Any]:
        c, llm = req.payload, self.models[model]
        last = None
        for last in llm.stream_chat(c.input, **c.kwargs) if c.chat else llm.stream_complete(c.input, **c.kwargs):
            yield last
        yield _generation(last, c, model)

    async def astream(self, req: Request, model: str) -> AsyncIterator[Any]:
        c, llm = req.payload, self.models[model]
        last = None
        async for last in await (llm.astream_chat(c.input, **c.kwargs) if c.chat
                                 else llm.astream_complete(c.input, **c.kwargs)):
            yield last
        yield _generation(last, c, model)


def _generation(r: Any, call: _Call, model: str) -> Generation:
    call.responses[model] = r
    text = "" if r is None else (r.message.content or "") if isinstance(r, ChatResponse) else (r.text or "")
    kw = (getattr(r, "additional_kwargs", None) or {})
    usage = {"flops": float(kw["flops"])} if "flops" in kw else {}
    if "tokens_in" in kw and "tokens_out" in kw:
        usage["tokens"] = float(kw["tokens_in"] + kw["tokens_out"])
    return Generation(text, text=text, usage=usage)


def _response(chat: bool, text: str, meta: dict[str, Any], delta: str | None = None) -> Any:
    if chat:
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta,
                            additional_kwargs={"cachemux": meta})
    return CompletionResponse(text=text, delta=delta, additional_kwargs={"cachemux": meta})


def _turn(m: ChatMessage) -> list[Any]:
    role = m.role.value if isinstance(m.role, MessageRole) else str(m.role)
    if not m.additional_kwargs and all(isinstance(b, TextBlock) for b in m.blocks):
        return [role, m.content or ""]
    return [role, m.content or "", m.model_dump(mode="json", exclude={"role"})]  # images, tool calls


def _llm_config(llm: LLM) -> dict[str, Any]:
    """What of a model decides its answers: its fields (LlamaIndex's ``to_dict``), less secrets,
    plus the prompt formatters ``to_dict`` leaves out."""
    d = {k: v for k, v in llm.to_dict().items() if not _SECRET.search(k) and not isinstance(v, SecretStr)}
    d.update({f: getattr(llm, f) for f in _PROMPT_FIELDS if getattr(llm, f, None) is not None})
    return d


def _plain(o: Any) -> Any:
    """JSON for an option or field that is not JSON already: a function by what it does
    (``callable_identity``: its code, defaults, closure and the globals it reads, so two closures
    of one factory differ and keys are stable across processes; ``_Unkeyable`` when that cannot
    be told), a pydantic model by its fields; anything else by its ``repr`` (one with an address
    makes a key that never matches again, never one that matches wrongly)."""
    if isinstance(o, enum.Enum):
        return o.value
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=repr)
    if isinstance(o, BaseModel):
        try:
            return {"type": type(o).__qualname__, **o.model_dump(mode="json")}
        except Exception:
            return repr(o)
    if callable(o):
        ident = callable_identity(o)
        if ident is None:
            raise _Unkeyable(f"{getattr(o, '__module__', '')}.{getattr(o, '__qualname__', type(o).__name__)}")
        return {"callable": getattr(o, "__qualname__", type(o).__name__), "does": ident}
    return repr(o)


class _Unkeyable(TypeError):
    """A callable whose behaviour cannot be keyed (see ``callable_identity``)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what
