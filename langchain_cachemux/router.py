"""``CacheMuxRouter``: a LangChain chat model that routes each call to one of several LangChain
models with a cachemux ``Selector``, through an optional cachemux cache.

::

    from langchain_cachemux import CacheMuxCache, CacheMuxRouter, LocalChatModel
    router = CacheMuxRouter({"small": LocalChatModel("smollm2-135m"), "large": LocalChatModel("gemma3-270m")},
                            OnlineSelector([("small", "large"), ("large",)]), costs="flops",
                            cache=CacheMuxCache())
    chain = prompt | router | StrOutputParser()

Every call becomes one ``cachemux.JointEngine`` request: the engine looks the prompt up, routes a
miss, runs the route's models (a cascade with a ``judge``), prices each run (``costs``: a table,
``"latency"``, ``"flops"`` from ``response_metadata["flops"]``, ``"tokens"`` from
``usage_metadata``, or ``f(model, message, seconds)``) and offers the answer to the cache at the
cost of a miss under the selector. The router only translates LangChain calls to requests.

**Output.** An ``AIMessage`` (an LLM's text becomes its content) whose
``response_metadata["cachemux"]`` is the routing record (``cachemux.Served.metadata``): ``model``,
``route``, ``models_run``, ``cost`` (0 on a hit), ``expected_cost``, ``route_costs``,
``model_costs``, ``latency``, ``success``, ``cache_hit``, ``cached``, ``entry_cost``, and
``similarity``/``saved`` on hits. ``stream``/``astream`` stream the answering model's chunks and
put the record in the last one (a hit, or a cascade step accepted by the judge, is one chunk).
The underlying model's run is nested under the router's in ``invoke``/``batch`` traces; LangChain
hands ``_stream`` no run manager, so in ``stream``/``astream`` it runs without the call's callbacks.

**Cache.** ``cache=`` a ``CacheMuxCache`` or a ``SemanticCache``. It lives in a private attribute:
the router's LangChain ``cache`` field is always ``False`` so LangChain never caches the same
answer a second time. The exact key and the partition are the router's models' configurations
plus the call's options (stop, max tokens, temperature, bound kwargs, tools: LangChain's
``_get_llm_string``), so an answer is never served to a call with other options. Answers are
stored with LangChain's ``dumps`` and read back with ``loads`` allowing ``AIMessage`` only.
The engine prices the entries (a ``CacheMuxCache``'s own ``cost=`` applies where it is
LangChain's cache, not here).

**Options.** ``max_tokens``, ``temperature`` and ``stop`` given to the router, and any call or
bound kwargs, go to the underlying models. ``bind_tools`` and ``with_structured_output``
(``method="function_calling"``) work when every model supports tools; otherwise they raise
``NotImplementedError`` naming the models that do not.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, BaseLanguageModel, LangSmithParams
from langchain_core.load import dumps, loads
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, get_buffer_string, message_chunk_to_message
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompt_values import ChatPromptValue
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, PrivateAttr

import cachemux
from cachemux import ConfigError, Request, Selector
from cachemux.joint.caches import semantic_port
from langchain_cachemux.cache import prompt_parts
from langchain_cachemux.local import LocalChatModel, LocalLLM  # noqa: F401  (their old home)

__all__ = ["CacheMuxRouter", "LocalChatModel", "LocalLLM"]

_TOOL_BINDING = ("tools", "tool_choice", "strict", "parallel_tool_calls")


class CacheMuxRouter(BaseChatModel):
    """Route each call to one of ``models`` (``{"small": chat_a, "large": chat_b}``, chat models
    or LLMs) with a cachemux ``selector``, through an optional ``cache`` (see the module docstring).

    ``judge(query, model, text) -> bool | None`` grades answers for cascades; ``query_fn(messages)
    -> hashable`` is what the selector sees (default: the last human message's text). An answer is
    cached once the selector knows its price (``Selector.settled``), or at once with
    ``admit_unsettled=True``; never an answer the judge rejected, nor a blank one unless
    ``admit_empty=True``.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    models: dict[str, Any]
    selector: Any
    costs: Any = "latency"
    judge: Any = None
    query_fn: Any = None
    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | None = None
    streaming: bool = False  # LangChain runs invoke through the stream when True
    admit_unsettled: bool = False  # cache answers before the selector knows their price (JointEngine)
    admit_empty: bool = False  # cache blank answers too (JointEngine)
    admit_failed: bool = False  # cache answers the judge rejected too: experiments only (JointEngine)

    _cachemux_cache: Any = PrivateAttr(default=None)
    _engine: Any = PrivateAttr()

    def __init__(self, models: Mapping[str, Any] | None = None, selector: Selector | None = None, /, *,
                 cache: Any = None, **data: Any) -> None:
        for name, given in (("models", models), ("selector", selector)):
            if given is not None:
                if name in data:
                    raise ConfigError(f"{name} given twice (positionally and as {name}=)")
                data[name] = given
        models, selector = data.get("models"), data.get("selector")
        if not isinstance(models, Mapping) or not models:
            raise ConfigError("models must be a non-empty mapping {name: LangChain chat model or LLM}")
        for n, m in models.items():
            if not isinstance(m, BaseLanguageModel):
                raise ConfigError(f"model {n!r} must be a LangChain chat model or LLM (BaseLanguageModel), "
                                  f"got {type(m).__name__}")
        if not isinstance(selector, Selector):
            raise ConfigError(f"selector must be a cachemux Selector, got {type(selector).__name__}")
        missing = [m for m in selector.models if m not in models]
        if missing:
            raise ConfigError(f"the selector's models {missing} are not among the models {sorted(models)}")
        unknown = sorted(set(data) - set(type(self).model_fields))
        if unknown:
            raise ConfigError(f"CacheMuxRouter does not take {unknown}")
        if data.get("stop") == []:
            data["stop"] = None
        data["models"] = dict(models)
        super().__init__(cache=False, **data)  # the cachemux cache below is the only one
        self._cachemux_cache = cache
        self._engine = cachemux.JointEngine(_cache_port(cache), selector, _Models(self.models),
                                            costs=self.costs, judge=self.judge, admit_unsettled=self.admit_unsettled,
                                            admit_empty=self.admit_empty, admit_failed=self.admit_failed)

    @property
    def _llm_type(self) -> str:
        return "cachemux-router"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"models": {n: _model_string(m) for n, m in self.models.items()},
                "max_tokens": self.max_tokens, "temperature": self.temperature,
                "default_stop": self.stop}  # "stop" is the call's in LangChain's key

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return LangSmithParams(ls_provider="cachemux", ls_model_type="chat",
                               ls_model_name=str(kwargs.get("model") or "router:" + ",".join(self.models)),
                               ls_temperature=kwargs.get("temperature", self.temperature),
                               ls_max_tokens=kwargs.get("max_tokens", self.max_tokens), ls_stop=stop or self.stop)

    @property
    def engine(self) -> cachemux.JointEngine:
        return self._engine

    @property
    def cachemux_cache(self) -> Any:
        """The cache given as ``cache=`` (LangChain's own ``cache`` field stays False)."""
        return self._cachemux_cache

    def stats(self) -> dict[str, Any]:
        """Requests, cache hits, calls/answers per model, total cost, cost saved (``JointEngine.stats``)."""
        return self._engine.stats()

    # ---- LangChain calls -> engine requests --------------------------------------------------------
    def _request(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any],
                 run_manager: Any) -> Request:
        stop = self.stop if stop is None else (stop or None)
        opts = {k: v for k, v in (("max_tokens", self.max_tokens), ("temperature", self.temperature))
                if v is not None}
        opts.update(kwargs)
        # as LangChain's own cache keys chat prompts: the messages without their run ids
        prompt = dumps([m.model_copy(update={"id": None}) if m.id is not None else m for m in messages])
        text, scope = prompt_parts(prompt)
        if self.query_fn is not None:
            query = self.query_fn(messages)
        else:
            query = text if isinstance(text, str) else get_buffer_string(messages)
        return Request(query, prompt=prompt, config=self._get_llm_string(stop=stop, **opts), embed_text=text,
                       scope=scope, payload=(messages, stop, opts, run_manager))

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        served = self._engine.serve(self._request(messages, stop, kwargs, run_manager))
        return ChatResult(generations=[ChatGeneration(message=_with_record(served.answer, served))])

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        served = await self._engine.aserve(self._request(messages, stop, kwargs, run_manager))
        return ChatResult(generations=[ChatGeneration(message=_with_record(served.answer, served))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        blank: str | list = ""
        for item in self._engine.stream(self._request(messages, stop, kwargs, run_manager)):
            if isinstance(item, cachemux.Chunk):
                blank = "" if isinstance(item.value.content, str) else []
                yield ChatGenerationChunk(message=item.value)
            else:
                yield ChatGenerationChunk(message=_last_chunk(item, blank))

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: Any = None, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        blank: str | list = ""
        async for item in self._engine.astream(self._request(messages, stop, kwargs, run_manager)):
            if isinstance(item, cachemux.Chunk):
                blank = "" if isinstance(item.value.content, str) else []
                yield ChatGenerationChunk(message=item.value)
            else:
                yield ChatGenerationChunk(message=_last_chunk(item, blank))

    # ---- what the underlying models must support ----------------------------------------------------
    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        """Bind tools (as OpenAI tool dicts, so the cache key is stable); each call binds them to
        the model that runs. ``NotImplementedError`` if a model cannot call tools."""
        lacking = []
        for n, m in self.models.items():  # each model binds them at call time: try it now
            try:
                if not hasattr(m, "bind_tools"):  # an LLM
                    raise NotImplementedError
                m.bind_tools(tools, **({} if tool_choice is None else {"tool_choice": tool_choice}))
            except NotImplementedError:
                lacking.append(f"{n!r} ({type(m).__name__})")
        if lacking:
            raise NotImplementedError(f"bind_tools: the router's model(s) {', '.join(lacking)} do not support "
                                      "tool calling")
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def with_structured_output(self, schema: Any, *, include_raw: bool = False, method: str = "function_calling",
                               strict: bool | None = None, **kwargs: Any) -> Any:
        """Structured output through tool calling (``method="function_calling"``) when every model
        supports tools; other methods depend on each provider and are not routed."""
        if method != "function_calling":
            raise NotImplementedError(f"with_structured_output(method={method!r}): the router supports "
                                      "method='function_calling' only")
        if strict is not None:
            kwargs["strict"] = strict
        return super().with_structured_output(schema, include_raw=include_raw, **kwargs)


# ---- the engine's generate port: run one LangChain model on a request -------------------------------
class _Models:
    """``router.models[name]`` on the request's messages, with its stop and options."""

    def __init__(self, models: Mapping[str, BaseLanguageModel]) -> None:
        self.models = models

    def _call(self, request: Request, name: str) -> tuple[Any, list[BaseMessage], Any, Any, dict[str, Any]]:
        messages, stop, opts, run_manager = request.payload
        model: Any = self.models[name]
        if "tools" in opts:  # bound per model: each provider formats tools its own way
            binding = {k: opts[k] for k in _TOOL_BINDING if k in opts}
            opts = {k: v for k, v in opts.items() if k not in _TOOL_BINDING}
            model = model.bind_tools(binding.pop("tools"), **binding)
        config = {"callbacks": _child(run_manager), "run_name": f"cachemux:{name}"} if run_manager else None
        return model, messages, config, stop, opts

    def generate(self, request: Request, name: str) -> cachemux.Generation:
        model, messages, config, stop, opts = self._call(request, name)
        if isinstance(model, BaseChatModel) or not isinstance(model, BaseLanguageModel):
            return _generation(model.invoke(messages, config, stop=stop, **opts))
        # an LLM: generate_prompt keeps its generation_info (FLOPs, tokens), which invoke drops
        cb = (config or {}).get("callbacks")
        result = model.generate_prompt([ChatPromptValue(messages=messages)], stop=stop, callbacks=cb, **opts)
        return _generation(result.generations[0][0])

    async def agenerate(self, request: Request, name: str) -> cachemux.Generation:
        model, messages, config, stop, opts = self._call(request, name)
        if isinstance(model, BaseChatModel) or not isinstance(model, BaseLanguageModel):
            return _generation(await model.ainvoke(messages, config, stop=stop, **opts))
        cb = (config or {}).get("callbacks")
        result = await model.agenerate_prompt([ChatPromptValue(messages=messages)], stop=stop, callbacks=cb, **opts)
        return _generation(result.generations[0][0])

    def stream(self, request: Request, name: str) -> Iterator[Any]:
        model, messages, config, stop, opts = self._call(request, name)
        acc = None
        for piece in model.stream(messages, config, stop=stop, **opts):
            chunk = _as_chunk(piece)
            acc = chunk if acc is None else acc + chunk
            yield chunk
        yield _generation(message_chunk_to_message(acc) if acc is not None else AIMessage(content=""))

    async def astream(self, request: Request, name: str) -> AsyncIterator[Any]:
        model, messages, config, stop, opts = self._call(request, name)
        acc = None
        async for piece in model.astream(messages, config, stop=stop, **opts):
            chunk = _as_chunk(piece)
            acc = chunk if acc is None else acc + chunk
            yield chunk
        yield _generation(message_chunk_to_message(acc) if acc is not None else AIMessage(content=""))


def _child(run_manager: Any) -> Any:
    """Callbacks for a model run nested under the router's run (what ``get_child`` does for
    chains; an LLM run manager has none)."""
    from langchain_core.callbacks import AsyncCallbackManager, AsyncCallbackManagerForLLMRun, CallbackManager

    cls = AsyncCallbackManager if isinstance(run_manager, AsyncCallbackManagerForLLMRun) else CallbackManager
    child = cls(handlers=[], parent_run_id=run_manager.run_id)
    child.set_handlers(run_manager.inheritable_handlers)
    child.add_tags(run_manager.inheritable_tags)
    child.add_metadata(run_manager.inheritable_metadata)
    return child


def _as_chunk(piece: Any) -> AIMessageChunk:
    # the router's own run gives the chunks their id and marks the last one
    if isinstance(piece, AIMessageChunk):
        return piece.model_copy(update={"id": None, "chunk_position": None})
    return AIMessageChunk(content=piece if isinstance(piece, str) else str(getattr(piece, "content", piece)))


def _generation(out: Any) -> cachemux.Generation:
    """A model's output as the engine's Generation: the answer is an AIMessage (an LLM's text
    as its content, its generation_info as response_metadata); usage as the model reported it."""
    if isinstance(out, ChatGeneration):
        out = out.message
    elif hasattr(out, "text") and hasattr(out, "generation_info"):  # an LLM's Generation
        out = AIMessage(content=out.text, response_metadata=dict(out.generation_info or {}))
    if not isinstance(out, BaseMessage):
        out = AIMessage(content=str(out))
    elif not isinstance(out, AIMessage):
        out = AIMessage(content=out.content, additional_kwargs=out.additional_kwargs,
                        response_metadata=out.response_metadata)
    msg = out.model_copy(update={"id": None})
    usage: dict[str, float] = {}
    meta = msg.response_metadata
    if isinstance(meta.get("flops"), (int, float)):
        usage["flops"] = float(meta["flops"])
    tokens = (msg.usage_metadata or {}).get("total_tokens")
    if tokens is None and isinstance(meta.get("tokens_in"), int):  # LocalLLM's generation_info
        tokens = meta["tokens_in"] + meta.get("tokens_out", 0)
    if isinstance(tokens, (int, float)):
        usage["tokens"] = float(tokens)
    return cachemux.Generation(msg, text=msg.text, usage=usage)


def _with_record(answer: AIMessage, served: Any) -> AIMessage:
    return answer.model_copy(update={"response_metadata": {**answer.response_metadata, "cachemux": served.metadata()}})


def _last_chunk(served: Any, blank: str | list) -> AIMessageChunk:
    """The stream's last chunk: the routing record, with the whole answer if it was not streamed
    (a cache hit, a cascade step the judge accepted)."""
    record = {"cachemux": served.metadata()}
    if served.streamed:
        return AIMessageChunk(content=blank, response_metadata=record, chunk_position="last")
    a: AIMessage = served.answer
    calls = [tool_call_chunk(name=tc["name"], args=json.dumps(tc["args"], ensure_ascii=False), id=tc["id"], index=i)
             for i, tc in enumerate(a.tool_calls)]
    return AIMessageChunk(content=a.content, additional_kwargs=a.additional_kwargs,
                          response_metadata={**a.response_metadata, **record}, usage_metadata=a.usage_metadata,
                          tool_call_chunks=calls, chunk_position="last")


# ---- the cache port -----------------------------------------------------------------------------------
def _encode(msg: AIMessage) -> str:
    meta = {k: v for k, v in msg.response_metadata.items() if k != "cachemux"}
    return dumps(msg.model_copy(update={"response_metadata": meta, "id": None}))


def _decode(text: str) -> AIMessage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # loads() is marked beta
        msg = loads(text, allowed_objects=[AIMessage])
    if not isinstance(msg, AIMessage):
        raise TypeError(f"expected an AIMessage, got {type(msg).__name__}")
    return msg


def _cache_port(cache: Any) -> Any:
    return semantic_port(cache, encode=_encode, decode=_decode)


def _model_string(m: Any) -> str:
    """A model's configuration as LangChain keys its cache (chat models), else its parameters."""
    get = getattr(m, "_get_llm_string", None)
    if callable(get):
        return get()
    return str(sorted({**m._identifying_params, "_type": getattr(m, "_llm_type", type(m).__name__)}.items()))
