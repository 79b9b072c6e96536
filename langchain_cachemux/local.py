"""LangChain models over ``cachemux.models.LocalModel`` (local transformers models, offline).

::

    from langchain_cachemux import LocalChatModel, LocalLLM
    chat = LocalChatModel("smollm2-135m", max_tokens=32)           # or model="gemma3-270m", ...
    chat.invoke("What is the capital of France?").response_metadata["flops"]

Every parameter is honoured or refused (``ConfigError``): ``model`` (a packaged name, a hub name
or a path; a mistyped one fails at construction with the known names), ``max_tokens`` (alias
``max_new_tokens``), ``temperature`` (0: greedy; > 0: sampled, ``seed`` makes it reproducible),
``stop``, ``streaming``, ``model_options`` (``LocalModel`` arguments: ``device``, ``chat``,
``system_prompt``...). A call may override ``max_tokens``, ``temperature``, ``seed``, ``stop`` and
``model``; any other call option is refused. Loaded models are shared per process
(``cachemux.models.get_model``). ``response_metadata`` holds ``model_name``, ``latency``
(seconds), ``flops``, ``finish_reason``; ``usage_metadata`` the token counts. Tool calling,
structured output and non-text input are not supported (``NotImplementedError``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.language_models.llms import LLM
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import (ChatGeneration, ChatGenerationChunk, ChatResult, Generation, GenerationChunk,
                                    LLMResult)
from pydantic import BaseModel, ConfigDict, PrivateAttr

from cachemux import ConfigError
from cachemux.models import LocalModel, get_model
from cachemux.models.local import check_seed, check_temperature

__all__ = ["LocalChatModel", "LocalLLM"]

_CALL_OPTIONS = ("max_tokens", "max_new_tokens", "temperature", "seed", "model")
_ROLES = {"human": "user", "ai": "assistant", "system": "system"}


class _Local(BaseModel):
    """The parameters both wrappers share, their checks and one generation call."""

    model: str = "smollm2-135m"
    max_tokens: int = 64
    temperature: float = 0.0
    seed: int | None = None
    stop: list[str] | None = None  # default stop strings (a call's own stop= replaces them)
    streaming: bool = False  # LangChain runs invoke through the stream when True
    model_options: dict[str, Any] = {}

    _local: LocalModel = PrivateAttr()

    def __init__(self, model: str | None = None, /, **data: Any) -> None:
        if model is not None:
            if "model" in data:
                raise ConfigError("model given twice (positionally and as model=)")
            data["model"] = model
        if "max_new_tokens" in data:
            if "max_tokens" in data:
                raise ConfigError("give max_tokens or its alias max_new_tokens, not both")
            data["max_tokens"] = data.pop("max_new_tokens")
        local = data.pop("local", None)
        if local is not None:
            if not isinstance(local, LocalModel):
                raise ConfigError(f"local must be a cachemux LocalModel, got {type(local).__name__}")
            if data.setdefault("model", local.name) != local.name or data.get("model_options"):
                raise ConfigError(f"local= is the loaded {local.name!r}: give no other model or model_options")
        unknown = sorted(set(data) - set(type(self).model_fields))
        if unknown:  # a parameter silently ignored would look honoured
            raise ConfigError(f"{type(self).__name__} does not take {unknown}; it takes "
                              f"{sorted(_Local.model_fields)} and LangChain's "
                              f"{sorted(set(type(self).model_fields) - set(_Local.model_fields))}")
        if data.get("stop") == []:
            data["stop"] = None
        _check(data.get("max_tokens", 64), data.get("temperature", 0.0), data.get("seed"), data.get("stop"))
        super().__init__(**data)
        self._local = local if local is not None else get_model(self.model, **self.model_options)

    @classmethod
    def from_name(cls, name: str, max_new_tokens: int = 64, stop: Sequence[str] | None = None,
                  **kwargs: Any) -> Any:
        """``cls(name, max_tokens=max_new_tokens, stop=stop, ...)``: kept for older callers."""
        return cls(name, max_tokens=max_new_tokens, stop=list(stop) if stop else None, **kwargs)

    @property
    def local(self) -> LocalModel:
        """The shared ``LocalModel`` this wrapper runs."""
        return self._local

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "local": self._local.identity, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "seed": self.seed,
                "default_stop": self.stop}  # "stop" is the call's in LangChain's key

    def _ls(self, kind: str, stop: list[str] | None, kwargs: dict[str, Any]) -> LangSmithParams:
        return LangSmithParams(ls_provider="cachemux", ls_model_name=str(kwargs.get("model") or self.model),
                               ls_model_type=kind,  # type: ignore[typeddict-item]
                               ls_temperature=kwargs.get("temperature", self.temperature),
                               ls_max_tokens=kwargs.get("max_tokens", kwargs.get("max_new_tokens", self.max_tokens)),
                               ls_stop=stop or self.stop)

    def _options(self, stop: list[str] | None, kwargs: dict[str, Any]) -> tuple[LocalModel, dict[str, Any]]:
        """The model to run and ``LocalModel.generate`` keyword arguments for one call."""
        extra = sorted(set(kwargs) - set(_CALL_OPTIONS))
        if extra:
            raise ConfigError(f"{type(self).__name__} does not take {extra}; call options: "
                              f"{', '.join(_CALL_OPTIONS)}, stop")
        if "max_tokens" in kwargs and "max_new_tokens" in kwargs:
            raise ConfigError("give max_tokens or its alias max_new_tokens, not both")
        n = kwargs.get("max_tokens", kwargs.get("max_new_tokens", self.max_tokens))
        t, seed = kwargs.get("temperature", self.temperature), kwargs.get("seed", self.seed)
        stop = stop or self.stop
        _check(n, t, seed, stop)
        name = kwargs.get("model")
        lm = self._local if name is None or name == self.model else get_model(name, **self.model_options)
        return lm, {"max_new_tokens": n, "stop": stop, "temperature": t, "seed": seed}


def _check(max_tokens: Any, temperature: Any, seed: Any, stop: Any) -> None:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
    check_temperature(temperature)
    check_seed(seed)
    if stop is not None and (isinstance(stop, str) or not all(isinstance(s, str) and s for s in stop)):
        raise ConfigError(f"stop must be a list of non-empty strings, got {stop!r}")


def _meta(r: Any) -> tuple[dict[str, Any], dict[str, int]]:
    return ({"model_name": r.model, "model_provider": "cachemux", "latency": r.latency, "flops": r.flops,
             "finish_reason": r.finish_reason},
            {"input_tokens": r.tokens_in, "output_tokens": r.tokens_out, "total_tokens": r.tokens_in + r.tokens_out})


class LocalChatModel(_Local, BaseChatModel):
    """A LangChain chat model over a local ``LocalModel`` (the tokenizer's chat template when it
    has one, else a plain transcript). See the module docstring for the parameters."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    @property
    def _llm_type(self) -> str:
        return "cachemux-local-chat"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return self._ls("chat", stop, kwargs)

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"LocalChatModel ({self.model}) does not support tool calling")

    def _messages(self, messages: list[BaseMessage]) -> list[dict[str, str]]:
        out = []
        for m in messages:
            role = _ROLES.get(m.type) or (getattr(m, "role", None) if m.type == "chat" else None)
            if role not in ("user", "assistant", "system"):
                raise NotImplementedError(f"LocalChatModel ({self.model}) takes system, human and ai messages, "
                                          f"not {m.type!r} messages (no tool calling)")
            if getattr(m, "tool_calls", None):
                raise NotImplementedError(f"LocalChatModel ({self.model}) cannot take tool calls")
            if isinstance(m.content, str):
                text = m.content
            else:
                parts = []
                for p in m.content:
                    if isinstance(p, str):
                        parts.append(p)
                    elif isinstance(p, dict) and p.get("type") == "text":
                        parts.append(str(p.get("text", "")))
                    else:
                        kind = p.get("type") if isinstance(p, dict) else type(p).__name__
                        raise NotImplementedError(f"LocalChatModel ({self.model}) takes text only, got a {kind!r} part")
                text = "".join(parts)
            out.append({"role": role, "content": text})
        return out

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        lm, opts = self._options(stop, kwargs)
        r = lm.generate(self._messages(messages), **opts)
        meta, usage = _meta(r)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=r.text, response_metadata=meta,
                                                                        usage_metadata=usage))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        lm, opts = self._options(stop, kwargs)
        with lm.stream(self._messages(messages), **opts) as s:
            for piece in s:
                yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
            meta, usage = _meta(s.result)
        yield ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata=meta, usage_metadata=usage,
                                                         chunk_position="last"))


class LocalLLM(_Local, LLM):
    """A LangChain (text-completion) LLM over a local ``LocalModel``; ``generation_info`` of each
    generation holds latency, FLOPs and token counts. Parameters as ``LocalChatModel``."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    @property
    def _llm_type(self) -> str:
        return "cachemux-local"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return self._ls("llm", stop, kwargs)

    def _call(self, prompt: str, stop: list[str] | None = None,
              run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> str:
        lm, opts = self._options(stop, kwargs)
        return lm.generate(prompt, **opts).text

    def _generate(self, prompts: list[str], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> LLMResult:
        gens: list[list[Generation]] = []
        if self.streaming:  # the tokens reach the callbacks as they come
            for p in prompts:
                acc: GenerationChunk | None = None
                for chunk in self._stream(p, stop, run_manager, **kwargs):
                    acc = chunk if acc is None else acc + chunk
                gens.append([Generation(text=acc.text, generation_info=acc.generation_info)] if acc else [])
            return LLMResult(generations=gens)
        lm, opts = self._options(stop, kwargs)
        for p in prompts:
            info = lm.generate(p, **opts).as_dict()
            gens.append([Generation(text=info.pop("text"), generation_info=info)])
        return LLMResult(generations=gens)

    def _stream(self, prompt: str, stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[GenerationChunk]:
        lm, opts = self._options(stop, kwargs)
        with lm.stream(prompt, **opts) as s:
            for piece in s:
                if run_manager is not None:
                    run_manager.on_llm_new_token(piece)
                yield GenerationChunk(text=piece)
            info = s.collect().as_dict()
        info.pop("text")
        yield GenerationChunk(text="", generation_info=info)
