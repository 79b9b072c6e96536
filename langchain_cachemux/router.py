"""``CacheMuxRouter``: a Runnable that routes each call to one of several LangChain models with a
cachemux ``Selector``, through an optional cachemux cache; plus LangChain wrappers around
``cachemux.models.LocalModel`` for real local models.

::

    from langchain_cachemux import CacheMuxCache
    from langchain_cachemux.router import CacheMuxRouter, LocalChatModel
    router = CacheMuxRouter({"small": LocalChatModel.from_name("smollm2-135m"),
                             "large": LocalChatModel.from_name("gemma3-270m")},
                            selector, costs={"small": 1.0, "large": 2.0}, cache=CacheMuxCache())
    chain = prompt | router | StrOutputParser()

**Output.** What the answering model returns: an ``AIMessage`` from chat models, a ``str`` from
LLMs. A message carries the routing record in ``response_metadata["cachemux"]``; a string is
returned as ``RoutedText`` (a ``str`` subclass, so parsers and string code take it as is) whose
``.response_metadata["cachemux"]`` holds the same dict. ``output="dict"`` returns
``{"output": <message or str>, "cachemux": {...}}`` instead. The dict (``MuxOutcome.metadata``):
``model`` (who answered), ``route``, ``models_run``, ``cost`` (this call, 0 on a hit),
``expected_cost`` (the selector's estimate before routing), ``route_costs`` (its per-route
estimates after), ``model_costs``, ``latency``, ``success``, ``cache_hit`` (False, "exact" or
"semantic"), ``similarity`` and ``saved`` on hits, ``cached`` (admitted or not).

**Streaming.** ``stream``/``astream`` stream the chosen model's chunks; the routing record comes
in one last empty chunk (``AIMessageChunk`` with ``response_metadata["cachemux"]``, or an empty
``RoutedText``), so the sum of all chunks carries it. A cascade with a ``judge`` runs the models
before the last one whole (the judge needs their full answer) and streams only the final answer.

**Cache.** ``cache=`` a ``CacheMuxCache`` (or a ``SemanticCache``). The router is one cache
partition (its models' configurations together): the answer of whichever model the selector used
is cached, priced at the selector's expected cost for the query (the paper's joint design), and
values are stored with LangChain's ``dumps`` (read back with an allowlist, never pickle).

**Costs** per model (``costs=``): a table (e.g. FLOPs per token, $ per call), ``"latency"``
(measured seconds, the default), ``"flops"`` (``response_metadata["flops"]`` as reported by
``LocalChatModel``), ``"tokens"`` (``usage_metadata``), or ``f(model, output, seconds)``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.llms import LLM
from langchain_core.load import dumps, loads
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_messages
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, Generation, GenerationChunk
from langchain_core.prompt_values import ChatPromptValue, PromptValue, StringPromptValue
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, run_in_executor
from pydantic import ConfigDict

from cachemux.errors import ConfigError
from cachemux.models import get_model
from cachemux.models.mux import Attempt, ModelMux, MuxOutcome
from cachemux.multiplexer.selectors import Selector

__all__ = ["CacheMuxRouter", "LocalChatModel", "LocalLLM", "RoutedText", "local_models"]

log = logging.getLogger(__name__)

_ALLOWED = [Generation, ChatGeneration, AIMessage, AIMessageChunk]
_OUTPUTS = ("auto", "dict")


class RoutedText(str):
    """A model's text answer with the routing record in ``response_metadata["cachemux"]``."""

    response_metadata: dict[str, Any]

    def __new__(cls, text: str, metadata: Mapping[str, Any] | None = None) -> RoutedText:
        self = super().__new__(cls, text)
        self.response_metadata = {"cachemux": dict(metadata or {})}
        return self

    @property
    def cachemux(self) -> dict[str, Any]:
        return self.response_metadata["cachemux"]


class CacheMuxRouter(Runnable[LanguageModelInput, Any]):
    """Route each call to one of ``models`` (``{"small": llm_a, "large": llm_b}``) with a cachemux
    ``Selector`` (any: static, online, oracle, the trained one), through an optional cache.

    ``judge(query, model, text) -> bool | None`` grades answers for cascades; ``query_fn(prompt
    value) -> hashable`` is what the selector sees (default: the prompt text, or the last human
    message of a chat); ``llm_string``: the cache partition (default: built from the models'
    own configurations).
    """

    def __init__(self, models: Mapping[str, Runnable], selector: Selector, *,
                 costs: Mapping[str, float] | str | Callable[[str, Any, float], float] = "latency",
                 cache: Any = None, judge: Callable[[Any, str, str], bool | None] | None = None,
                 query_fn: Callable[[PromptValue], Any] | None = None, llm_string: str | None = None,
                 output: str = "auto", name: str | None = None) -> None:
        if not isinstance(models, Mapping) or not models:
            raise ConfigError("models must be a non-empty mapping {name: LangChain model}")
        for n, m in models.items():
            if not isinstance(m, Runnable):
                raise ConfigError(f"model {n!r} must be a LangChain Runnable (LLM or chat model), got {type(m).__name__}")
        if output not in _OUTPUTS:
            raise ConfigError(f"output must be one of {', '.join(_OUTPUTS)}, got {output!r}")
        self.models = dict(models)
        self.output = output
        self.query_fn = query_fn
        self.name = name or "CacheMuxRouter"
        semantic = getattr(cache, "cache", cache)  # a CacheMuxCache wraps a SemanticCache
        if semantic is not None and not hasattr(semantic, "match"):
            raise ConfigError(f"cache must be a CacheMuxCache or a cachemux SemanticCache, got {type(cache).__name__}")
        self.mux = ModelMux(list(self.models), selector, costs=_costs(costs), cache=semantic,
                            llm_string=llm_string or _router_llm_string(self.models), judge=judge)

    @property
    def selector(self) -> Selector:
        return self.mux.selector

    def stats(self) -> dict[str, Any]:
        """Requests, cache hits, calls/answers per model, total cost, cost saved (see ModelMux)."""
        return self.mux.stats()

    # ---- request parts ---------------------------------------------------------------------------
    def _parts(self, input: LanguageModelInput) -> tuple[PromptValue, str, str | bool, str, Any]:
        """(prompt value, cache prompt, text compared by meaning, exact scope, selector query)."""
        from langchain_cachemux.cache import prompt_parts

        pv = _to_prompt_value(input)
        if isinstance(pv, StringPromptValue):
            prompt = pv.to_string()
        else:  # what LangChain's chat models hand their cache: dumps(messages)
            prompt = dumps(pv.to_messages())
        text, scope = prompt_parts(prompt)
        if self.query_fn is not None:
            query = self.query_fn(pv)
        else:
            query = text if isinstance(text, str) else pv.to_string()
        return pv, prompt, text, scope, query

    def _hit_output(self, hit: Any, query: Any) -> Any:
        """The cached answer with its routing record, or None if the value cannot be revived
        (another LangChain version, a foreign entry): then the request is served as a miss."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # loads() is marked beta
                gens = loads(hit.value, allowed_objects=_ALLOWED)
            if not isinstance(gens, list) or not gens or not isinstance(gens[0], Generation):
                raise TypeError(f"expected a list of generations, got {type(gens).__name__}")
        except Exception as exc:
            log.warning("cachemux router: cached value cannot be revived (%s: %s); served as a miss",
                        type(exc).__name__, exc)
            return None
        g = gens[0]
        if isinstance(g, ChatGeneration):
            prev = dict(g.message.response_metadata.get("cachemux") or {})
            outcome = self.mux.hit_outcome(query, hit, prev.get("model"), prev.get("cost"))
            return self._wrap(g.message, outcome)
        prev = dict((g.generation_info or {}).get("cachemux") or {})
        return self._wrap(g.text, self.mux.hit_outcome(query, hit, prev.get("model"), prev.get("cost")))

    def _wrap(self, out: Any, outcome: MuxOutcome) -> Any:
        meta = outcome.metadata()
        if isinstance(out, BaseMessage):
            out = out.model_copy(update={"response_metadata": {**out.response_metadata, "cachemux": meta}})
        else:
            out = RoutedText(str(out), meta)
        if self.output == "dict":
            return {"output": out, "cachemux": meta}
        return out

    @staticmethod
    def _value(out: Any, model: str, cost: float) -> str:
        """The answer serialised for the cache, with the model that produced it and what it cost."""
        mine = {"model": model, "cost": cost}
        if isinstance(out, BaseMessage):
            msg = AIMessage(content=out.content, response_metadata={**out.response_metadata, "cachemux": mine})
            return dumps([ChatGeneration(message=msg)])
        return dumps([Generation(text=str(out), generation_info={"cachemux": mine})])

    def _finish(self, query: Any, route: Any, attempts: Sequence[Attempt], expected: float | None,
                prompt: str, text: str | bool, scope: str) -> MuxOutcome:
        final = attempts[-1]
        paid = self.mux.route_cost(route, attempts)
        return self.mux.finish(query, route, attempts, expected, prompt, self._value(final.output, final.model, paid),
                               embed_text=text, scope=scope)

    # ---- Runnable ----------------------------------------------------------------------------------
    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._invoke, input, config, run_type="chain", **kwargs)

    def _invoke(self, input: LanguageModelInput, run_manager: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        pv, prompt, text, scope, query = self._parts(input)
        hit = self.mux.lookup(prompt, embed_text=text, scope=scope)
        served = None if hit is None else self._hit_output(hit, query)
        if served is not None:
            return served
        route, expected = self.mux.plan(query)
        child = _child(config, run_manager)
        attempts = self.mux.run_route(query, route, lambda m: self.models[m].invoke(pv, child, **kwargs), _text)
        outcome = self._finish(query, route, attempts, expected, prompt, text, scope)
        return self._wrap(attempts[-1].output, outcome)

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._ainvoke, input, config, run_type="chain", **kwargs)

    async def _ainvoke(self, input: LanguageModelInput, run_manager: Any, config: RunnableConfig,
                       **kwargs: Any) -> Any:
        # the cache and the selector are synchronous (store I/O, embeddings): off the event loop
        pv, prompt, text, scope, query = await run_in_executor(None, self._parts, input)
        hit = await run_in_executor(None, lambda: self.mux.lookup(prompt, embed_text=text, scope=scope))
        served = None if hit is None else self._hit_output(hit, query)
        if served is not None:
            return served
        route, expected = await run_in_executor(None, self.mux.plan, query)
        child = _child(config, run_manager)
        attempts = await self.mux.arun_route(query, route, lambda m: self.models[m].ainvoke(pv, child, **kwargs),
                                             _text)
        outcome = await run_in_executor(None, self._finish, query, route, attempts, expected, prompt, text, scope)
        return self._wrap(attempts[-1].output, outcome)

    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None,
               **kwargs: Any) -> Iterator[Any]:
        config = ensure_config(config)
        pv, prompt, text, scope, query = self._parts(input)
        hit = self.mux.lookup(prompt, embed_text=text, scope=scope)
        served = None if hit is None else self._hit_output(hit, query)
        if served is not None:
            yield self._as_chunk(served)
            return
        route, expected = self.mux.plan(query)
        attempts: list[Attempt] = []
        for i, name in enumerate(route):
            model = self.models[name]
            if i < len(route) - 1 and self.mux.judge is not None:  # graded whole before going on
                attempts += self.mux.run_route(query, (name,), lambda m: model.invoke(pv, config, **kwargs), _text)
                if attempts[-1].success is not False:
                    yield self._as_chunk(attempts[-1].output)
                    break
                continue
            t0 = _now()
            acc = None
            for chunk in model.stream(pv, config, **kwargs):
                acc = chunk if acc is None else acc + chunk
                yield chunk
            attempts.append(self.mux.attempt(query, name, _settle(acc), _text(_settle(acc)), _now() - t0))
            break
        outcome = self._finish(query, route, attempts, expected, prompt, text, scope)
        yield self._meta_chunk(attempts[-1].output, outcome)

    async def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None,
                      **kwargs: Any) -> AsyncIterator[Any]:
        config = ensure_config(config)
        pv, prompt, text, scope, query = await run_in_executor(None, self._parts, input)
        hit = await run_in_executor(None, lambda: self.mux.lookup(prompt, embed_text=text, scope=scope))
        served = None if hit is None else self._hit_output(hit, query)
        if served is not None:
            yield self._as_chunk(served)
            return
        route, expected = await run_in_executor(None, self.mux.plan, query)
        attempts: list[Attempt] = []
        for i, name in enumerate(route):
            model = self.models[name]
            if i < len(route) - 1 and self.mux.judge is not None:
                attempts += await self.mux.arun_route(query, (name,), lambda m: model.ainvoke(pv, config, **kwargs),
                                                      _text)
                if attempts[-1].success is not False:
                    yield self._as_chunk(attempts[-1].output)
                    break
                continue
            t0 = _now()
            acc = None
            async for chunk in model.astream(pv, config, **kwargs):
                acc = chunk if acc is None else acc + chunk
                yield chunk
            attempts.append(self.mux.attempt(query, name, _settle(acc), _text(_settle(acc)), _now() - t0))
            break
        outcome = await run_in_executor(None, self._finish, query, route, attempts, expected, prompt, text, scope)
        yield self._meta_chunk(attempts[-1].output, outcome)

    def _as_chunk(self, out: Any) -> Any:
        """A whole answer as one stream chunk (a cache hit, a graded cascade step)."""
        if isinstance(out, dict):  # output="dict"
            return out
        if isinstance(out, BaseMessage) and not isinstance(out, AIMessageChunk):
            return AIMessageChunk(content=out.content, response_metadata=dict(out.response_metadata),
                                  usage_metadata=getattr(out, "usage_metadata", None))
        return out

    def _meta_chunk(self, out: Any, outcome: MuxOutcome) -> Any:
        meta = outcome.metadata()
        if self.output == "dict":
            return {"output": "", "cachemux": meta}
        if isinstance(out, BaseMessage):
            return AIMessageChunk(content="", response_metadata={"cachemux": meta})
        return RoutedText("", meta)


# ---- helpers ---------------------------------------------------------------------------------------
def _now() -> float:
    import time

    return time.perf_counter()


def _to_prompt_value(input: Any) -> PromptValue:
    if isinstance(input, PromptValue):
        return input
    if isinstance(input, str):
        return StringPromptValue(text=input)
    if isinstance(input, Sequence):
        return ChatPromptValue(messages=convert_to_messages(input))
    raise ConfigError(f"router input must be a string, a PromptValue or a list of messages, got {type(input).__name__}")


def _text(out: Any) -> str:
    if isinstance(out, BaseMessage):
        return out.text if isinstance(out.text, str) else str(out.content)
    return str(out)


def _settle(acc: Any) -> Any:
    """The sum of streamed chunks as a plain output (message chunks become an AIMessage)."""
    if isinstance(acc, AIMessageChunk):
        return AIMessage(content=acc.content, response_metadata=acc.response_metadata,
                         usage_metadata=acc.usage_metadata, additional_kwargs=acc.additional_kwargs)
    return "" if acc is None else acc


def _child(config: RunnableConfig, run_manager: Any) -> RunnableConfig:
    from langchain_core.runnables.config import patch_config

    return patch_config(config, callbacks=run_manager.get_child()) if run_manager is not None else config


def _costs(costs: Any) -> Any:
    if costs == "flops":
        def flops(model: str, out: Any, seconds: float) -> float:
            meta = getattr(out, "response_metadata", None) or {}
            if "flops" not in meta:
                raise ConfigError(f"costs='flops' needs models that report response_metadata['flops'] "
                                  f"(LocalChatModel); {model!r} returned {type(out).__name__} without it")
            return float(meta["flops"])
        return flops
    if costs == "tokens":
        def tokens(model: str, out: Any, seconds: float) -> float:
            usage = getattr(out, "usage_metadata", None) or {}
            if "total_tokens" not in usage:
                raise ConfigError(f"costs='tokens' needs usage_metadata from {model!r}")
            return float(usage["total_tokens"])
        return tokens
    return costs


def _router_llm_string(models: Mapping[str, Any]) -> str:
    parts = {}
    for name, m in models.items():
        try:
            parts[name] = m._get_llm_string() if hasattr(m, "_get_llm_string") else str(sorted(m.dict().items()))
        except Exception:
            parts[name] = type(m).__name__
    return "cachemux-router:" + json.dumps(parts, sort_keys=True, default=str)


# ---- real local models in LangChain ----------------------------------------------------------------
class LocalLLM(LLM):
    """A LangChain LLM over ``cachemux.models.LocalModel`` (greedy). ``generation_info`` of each
    generation holds latency, FLOPs and token counts."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    local: Any
    max_new_tokens: int = 64
    stop: list[str] | None = None  # default stop strings (a call's own stop= replaces them)

    @classmethod
    def from_name(cls, name: str, max_new_tokens: int = 64, stop: Sequence[str] | None = None,
                  **options: Any) -> LocalLLM:
        """Share one loaded model per process (``cachemux.models.get_model``)."""
        return cls(local=get_model(name, **options), max_new_tokens=max_new_tokens,
                   stop=list(stop) if stop else None)

    @property
    def _llm_type(self) -> str:
        return "cachemux-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.local.name, "max_new_tokens": self.max_new_tokens, "stop": self.stop}

    def _call(self, prompt: str, stop: list[str] | None = None,
              run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> str:
        return self.local.generate(prompt, kwargs.get("max_new_tokens", self.max_new_tokens), stop or self.stop).text

    def _generate(self, prompts: list[str], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Any:
        from langchain_core.outputs import LLMResult

        gens = []
        for p in prompts:
            r = self.local.generate(p, kwargs.get("max_new_tokens", self.max_new_tokens), stop or self.stop)
            info = r.as_dict()
            gens.append([Generation(text=info.pop("text"), generation_info=info)])
        return LLMResult(generations=gens)

    def _stream(self, prompt: str, stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[GenerationChunk]:
        s = self.local.stream(prompt, kwargs.get("max_new_tokens", self.max_new_tokens), stop or self.stop)
        for piece in s:
            if run_manager is not None:
                run_manager.on_llm_new_token(piece)
            yield GenerationChunk(text=piece)
        info = s.result.as_dict()
        info.pop("text")
        yield GenerationChunk(text="", generation_info=info)


class LocalChatModel(BaseChatModel):
    """A LangChain chat model over ``cachemux.models.LocalModel`` (greedy; the tokenizer's chat
    template when it has one). ``response_metadata`` carries ``model_name``, ``latency``
    (seconds), ``flops``, ``finish_reason``; ``usage_metadata`` the token counts."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    local: Any
    max_new_tokens: int = 64
    stop: list[str] | None = None  # default stop strings (a call's own stop= replaces them)

    @classmethod
    def from_name(cls, name: str, max_new_tokens: int = 64, stop: Sequence[str] | None = None,
                  **options: Any) -> LocalChatModel:
        """Share one loaded model per process (``cachemux.models.get_model``)."""
        return cls(local=get_model(name, **options), max_new_tokens=max_new_tokens,
                   stop=list(stop) if stop else None)

    @property
    def _llm_type(self) -> str:
        return "cachemux-local-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.local.name, "max_new_tokens": self.max_new_tokens, "stop": self.stop}

    @staticmethod
    def _messages(messages: list[BaseMessage]) -> list[dict[str, str]]:
        roles = {"human": "user", "ai": "assistant", "system": "system"}
        out = []
        for m in messages:
            if m.type not in roles:
                raise ConfigError(f"LocalChatModel takes system, human and ai messages, got {m.type!r}")
            out.append({"role": roles[m.type], "content": m.text if isinstance(m.text, str) else str(m.content)})
        return out

    @staticmethod
    def _meta(r: Any) -> tuple[dict[str, Any], dict[str, int]]:
        return ({"model_name": r.model, "latency": r.latency, "flops": r.flops, "finish_reason": r.finish_reason},
                {"input_tokens": r.tokens_in, "output_tokens": r.tokens_out,
                 "total_tokens": r.tokens_in + r.tokens_out})

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        r = self.local.generate(self._messages(messages), kwargs.get("max_new_tokens", self.max_new_tokens),
                                stop or self.stop)
        meta, usage = self._meta(r)
        msg = AIMessage(content=r.text, response_metadata=meta, usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        s = self.local.stream(self._messages(messages), kwargs.get("max_new_tokens", self.max_new_tokens),
                              stop or self.stop)
        for piece in s:
            if run_manager is not None:
                run_manager.on_llm_new_token(piece)
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        meta, usage = self._meta(s.result)
        yield ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata=meta, usage_metadata=usage))

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return await asyncio.to_thread(self._generate, messages, stop, None, **kwargs)


def local_models(names: Mapping[str, str], max_new_tokens: int = 64, chat: bool = True,
                 **options: Any) -> dict[str, Runnable]:
    """``{"small": "smollm2-135m", ...}`` -> LangChain models over shared ``LocalModel``s."""
    cls = LocalChatModel if chat else LocalLLM
    return {k: cls.from_name(v, max_new_tokens=max_new_tokens, **options) for k, v in names.items()}
