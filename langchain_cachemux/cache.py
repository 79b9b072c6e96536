"""``CacheMuxCache``: cachemux's semantic GDSF/LEC cache as a LangChain ``BaseCache``.

::

    from langchain_core.globals import set_llm_cache
    from langchain_cachemux import CacheMuxCache
    set_llm_cache(CacheMuxCache())          # every LLM and chat model call is cached
    ChatX(..., cache=CacheMuxCache(...))    # or one model only

Values are the generations serialised with LangChain's own ``dumps`` and revived with ``loads``
restricted to LangChain's generation and message classes (never pickle, never arbitrary
classes); values read or written lately are revived once and handed out as deep copies
(``langchain_cachemux.revive``: an exact repeat costs ~0.1 ms, not ~0.6 ms). Chat prompts reach a cache as ``dumps(messages)``: the exact key hashes that string;
the semantic path compares only the last human message by meaning, within the scope of the
messages before it (system prompt, earlier turns), which must match exactly. Conversations with
tool calls, tool results or non-text content are matched exactly only: their answers depend on
more than the words.

Cost of an entry (``cost=``): ``"latency"`` (default) the seconds from the miss to the update;
``"tokens"`` the total tokens the model reported in the generations' metadata
(``usage_metadata``, ``response_metadata["token_usage"]``, ``generation_info``); or a function
``CostInfo -> float`` (``info.info`` is ``{"generations", "usage"}``), for example tokens times
a per-model price. An answer nothing measured (an ``update`` with no ``lookup`` miss before it,
as LangChain's standard cache tests and warm-ups make; under ``"tokens"``, a model that reported
no usage) is priced at ``fallback_cost`` if given, else from the token estimate
E = ``cachemux.estimate_tokens(prompt text, answer texts)`` (characters / 4): under ``"tokens"``
E itself, under ``"latency"`` E times this cache's measured seconds per estimated token
(``SemanticCache.seconds_per_token()``; 0.01 s before any latency was measured). Units never
mix in one cache.

Error-bounded mode (``CacheMuxCache(SemanticCache(..., max_error=d))``): LangChain asks a
``BaseCache`` only for a value, so this cache cannot run the model to verify a hit. Here the bound
learns only from the cache's ``judge=`` (graded hits drawn for verification) and from
``cache.cache.feedback(prompt, llm_string, ok)``; a cold error-bounded cache with neither serves
nothing semantic. ``CacheMuxRouter`` (and ``JointEngine``) verify by running the model.

Identical calls at once (``SemanticCache`` docstring): LangChain looks up, runs the model, then
updates; a lookup that misses while an identical miss is in flight waits for that call's update
(at most ``flight_timeout`` seconds, default 30; 0 or None: off) and returns its generations, so
200 identical concurrent calls make one model call. LangChain does not tell a cache that the
model raised: the waiters of a failed call get a miss at the deadline and call the model
themselves (``cache.cache.release(prompt, llm_string)`` lets them go at once). ``lease=s``
coalesces across the processes sharing a DiskStore or RedisStore too.

``clear()`` removes this namespace's entries, ``clear(llm_string=s)`` only those of one model
configuration (call options included), ``clear(everything=True)`` the whole store.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import dumps
from langchain_core.outputs import Generation
from langchain_core.runnables.config import run_in_executor

from cachemux import ConfigError, CostInfo, SemanticCache, Store, estimate_tokens
from cachemux.cache import FLIGHT_TIMEOUT_S, MAX_VALUE_BYTES
from cachemux.joint.answers import empty_answer
from cachemux.semantic.flight import ANY

from langchain_cachemux.embeddings import as_embedder
from langchain_cachemux.revive import Revived, read_generations

__all__ = ["CacheMuxCache", "prompt_parts", "token_usage"]

log = logging.getLogger(__name__)

_COSTS = ("latency", "tokens")
_CLEAR_ARGS = ("everything", "llm_string")
_MAX_TOKENS = 1e15  # a reported token count above this is a bug, not a price


class CacheMuxCache(BaseCache):
    """A LangChain cache backed by ``cachemux.cache.SemanticCache``.

    Pass a ready ``cache`` or the ``SemanticCache`` arguments (``store``, ``embedder`` (an
    ``Embedder``, a model name/path, a LangChain ``Embeddings`` (``langchain_cachemux.embeddings``),
    or None for the packaged one), ``semantic``, ``threshold``
    (None: the calibrated default), ``policy``, ``capacity``, ``namespace``, ``model_groups``,
    ``fallback_cost``, ``max_value_bytes``, ``ttl``: the limits of ``SemanticCache``;
    ``flight_timeout``, ``lease``: identical calls at once, module docstring). ``cost``: see
    the module docstring. An update whose generations are all empty (blank text, no tool calls)
    is not cached (``stats()["empty"]``) unless ``admit_empty=True``. ``stats()`` returns hits
    (exact/semantic), misses, cost saved, evictions and faults. Store faults never reach the
    chain: a lookup becomes a miss, an update is dropped, both logged. Bad arguments (a prompt or
    llm_string that is not ``str``, unknown ``clear`` keywords) raise ``ConfigError``.
    """

    def __init__(self, cache: SemanticCache | None = None, *, store: Store | None = None,
                 embedder: Any = None, semantic: bool = True,
                 threshold: float | None = None, policy: str | None = None,
                 capacity: float | None = None, namespace: str = "",
                 model_groups: Mapping[str, Iterable[str]] | Callable[[str], str | None] | None = None,
                 cost: str | Callable[[CostInfo], float] = "latency",
                 fallback_cost: float | None = None, max_value_bytes: int | None = MAX_VALUE_BYTES,
                 ttl: float | None = None, flight_timeout: float | None = FLIGHT_TIMEOUT_S,
                 lease: float | None = None, admit_empty: bool = False) -> None:
        if not (callable(cost) or cost in _COSTS):
            raise ConfigError(f"cost must be one of {', '.join(_COSTS)} or a function CostInfo -> float, got {cost!r}")
        self.cost = cost
        if cache is not None:
            if not isinstance(cache, SemanticCache):
                raise ConfigError(f"cache must be a cachemux SemanticCache, got {type(cache).__name__}")
            given = {k for k, v in (("store", store), ("embedder", embedder), ("policy", policy),
                                    ("capacity", capacity), ("model_groups", model_groups),
                                    ("fallback_cost", fallback_cost), ("threshold", threshold),
                                    ("ttl", ttl), ("lease", lease)) if v is not None}
            for name, v, default in (("max_value_bytes", max_value_bytes, MAX_VALUE_BYTES),
                                     ("flight_timeout", flight_timeout, FLIGHT_TIMEOUT_S)):
                if v != default:
                    given.add(name)
            if given or namespace or not semantic:
                raise ConfigError("pass either a ready SemanticCache or its arguments, not both "
                                  f"(also given: {', '.join(sorted(given)) or 'namespace/semantic'})")
            if callable(cost):
                raise ConfigError("a cost function goes to SemanticCache(cost_fn=...) when passing a ready cache")
            self.cache = cache
        else:
            given_threshold: dict[str, Any] = {} if threshold is None else {"threshold": threshold}
            self.cache = SemanticCache(
                store, embedder=as_embedder(embedder), semantic=semantic, policy=policy,
                capacity=capacity, namespace=namespace, model_groups=model_groups,
                cost_fn=cost if callable(cost) else None, fallback_cost=fallback_cost,
                max_value_bytes=max_value_bytes, ttl=ttl, flight_timeout=flight_timeout, lease=lease,
                **given_threshold)
        self.admit_empty = bool(admit_empty)
        self._unreadable = 0
        self._unstorable = 0
        self._empty = 0
        self._revived = Revived()  # values read or written lately, revived once (langchain_cachemux.revive)

    def __repr__(self) -> str:
        return f"CacheMuxCache({self.cache!r}, cost={self.cost!r})"

    # ---- BaseCache ------------------------------------------------------------------------------
    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        _check_args(prompt, llm_string)
        text, scope = _parts(prompt)
        return self._revive(self.cache.lookup(prompt, llm_string, embed_text=text, scope=scope))

    def _revive(self, value: str | None) -> RETURN_VAL_TYPE | None:
        if value is None:
            return None
        try:
            generations = self._revived.get(value)
        except Exception as exc:  # unreadable (another LangChain version?): a miss, not a crash
            self._unreadable += 1
            log.warning("cachemux: cached value for this prompt cannot be revived (%s: %s); served as a miss",
                        type(exc).__name__, exc)
            return None
        return generations

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        _check_args(prompt, llm_string)
        if isinstance(return_val, (str, bytes, Mapping)) or not isinstance(return_val, Sequence) or not all(
                isinstance(g, Generation) for g in return_val):
            raise ConfigError(f"return_val must be a list of langchain_core Generation objects, got "
                              f"{type(return_val).__name__}: {return_val!r:.80}")
        if not self.admit_empty and all(empty_answer(getattr(g, "message", None) or g.text) for g in return_val):
            self._empty += 1  # a blank answer is a failed call, not an answer to serve again
            self.cache.release(prompt, llm_string, owner=ANY)  # identical calls waiting: their own call
            return
        try:
            value = dumps(list(return_val))
            revived = read_generations(value)  # never store what could not be read back
        except Exception as exc:
            self._unstorable += 1
            log.warning("cachemux: generations cannot be serialised with langchain_core.load (%s: %s); "
                        "not cached", type(exc).__name__, exc)
            return
        self._revived.remember(value, revived)  # its first hit here needs no loads
        text, scope = _parts(prompt)
        # the fallback price's token estimate: the words asked and answered, not the JSON around them
        tokens = estimate_tokens(prompt if text is False else f"{scope}{text}",
                                 *(g.text or "" for g in return_val))
        usage = token_usage(return_val)
        cost = None
        if self.cost == "tokens":
            fallback = self.cache.fallback_cost
            cost = usage if usage is not None else (tokens if fallback is None else fallback)
        self.cache.update(prompt, llm_string, value, cost=cost, embed_text=text, scope=scope, tokens=tokens,
                          info={"generations": return_val, "usage": usage})

    def clear(self, **kwargs: Any) -> None:
        """Remove this namespace's entries. ``llm_string=s``: only the entries cached under that
        model configuration (LangChain's llm_string: model, parameters and call options);
        ``everything=True``: every entry in the store, all namespaces. Other keywords are a
        ``ConfigError``."""
        unknown = sorted(set(kwargs) - set(_CLEAR_ARGS))
        if unknown:
            raise ConfigError(f"clear() got unknown arguments {', '.join(unknown)}; it takes "
                              f"{' and '.join(_CLEAR_ARGS)}")
        everything = kwargs.get("everything", False)
        if not isinstance(everything, bool):
            raise ConfigError(f"everything must be a bool, got {everything!r}")
        llm_string = kwargs.get("llm_string")
        if llm_string is not None and not isinstance(llm_string, str):
            raise ConfigError(f"llm_string must be str, got {type(llm_string).__name__}")
        self.cache.clear(llm_string=llm_string, everything=everything)

    # The core is synchronous (store I/O and the embedding model): run it off the event loop.
    # A miss waiting for an identical one in flight waits in the event loop (SemanticCache.alookup).
    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        _check_args(prompt, llm_string)
        text, scope = _parts(prompt)
        value = await self.cache.alookup(prompt, llm_string, embed_text=text, scope=scope)
        return None if value is None else await run_in_executor(None, self._revive, value)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        await run_in_executor(None, self.update, prompt, llm_string, return_val)

    async def aclear(self, **kwargs: Any) -> None:
        await run_in_executor(None, self.clear, **kwargs)

    # ---- extras ---------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        s = self.cache.stats()
        s["unreadable"] = self._unreadable
        s["unstorable"] = self._unstorable
        s["empty"] = self._empty
        return s


def prompt_parts(prompt: str) -> tuple[str | bool, str]:
    """``(text compared by meaning, scope that must match exactly)`` for a LangChain cache prompt.

    An LLM prompt is compared whole: ``(prompt, "")``. A chat prompt is ``dumps(messages)``: the
    last message, if it is a human message of plain text, is compared by meaning, and every
    message before it (system prompt, earlier turns) is the scope, so "Answer in French" and
    "Answer in one word" never share answers. Tool calls, tool/function results, non-text parts
    (images...) or a last message that is not the user's give ``(False, "")``: exact match only.
    """
    if not prompt.startswith("[{"):
        return prompt, ""
    try:
        items = json.loads(prompt)
    except ValueError:
        return prompt, ""
    if not isinstance(items, list) or not items or not all(_is_message(m) for m in items):
        return prompt, ""
    turns: list[tuple[str, str]] = []
    for m in items:
        kw = m.get("kwargs") or {}
        extra = (kw.get("additional_kwargs") or {}) if isinstance(kw, dict) else None
        if not isinstance(kw, dict) or not isinstance(extra, dict):
            return prompt, ""  # shaped like a chat but not one dumps() wrote: a plain prompt
        role = str(kw.get("type") or m["id"][-1])
        if (role in ("tool", "function") or kw.get("tool_calls") or kw.get("tool_call_chunks")
                or extra.get("function_call") or extra.get("tool_calls")):
            return False, ""
        content = kw.get("content", "")
        if isinstance(content, list):
            parts = []
            for part in content:
                if isinstance(part, str):
                    parts.append(part)
                elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                    parts.append(part["text"])
                else:
                    return False, ""
            content = "\n".join(parts)
        if not isinstance(content, str):
            return False, ""
        turns.append((role, content))
    role, question = turns[-1]
    if role != "human":
        return False, ""
    scope = json.dumps(turns[:-1], ensure_ascii=False, separators=(",", ":")) if len(turns) > 1 else ""
    return question, scope


_PARSE_FAILED: list[bool] = []


def _parts(prompt: str) -> tuple[str | bool, str]:
    """``prompt_parts``, never raising: a prompt it cannot read is matched exactly (logged once)."""
    try:
        return prompt_parts(prompt)
    except Exception as exc:  # a prompt shape nobody foresaw must not fail the model call
        if not _PARSE_FAILED:
            _PARSE_FAILED.append(True)
            log.warning("cachemux: cannot split a prompt into question and context (%s: %s); "
                        "matched exactly only (logged once)", type(exc).__name__, exc)
        return False, ""


def _is_message(m: object) -> bool:
    return (isinstance(m, dict) and m.get("lc") == 1 and m.get("type") == "constructor"
            and isinstance(m.get("id"), list) and bool(m["id"]) and str(m["id"][-1]).endswith(("Message", "MessageChunk")))


def token_usage(generations: Sequence[Generation]) -> float | None:
    """Total tokens the model reported across ``generations``, or None if it reported none."""
    total = 0.0
    found = False
    for g in generations:
        n = None
        msg = getattr(g, "message", None)
        if msg is not None:
            n = _total((getattr(msg, "usage_metadata", None) or {}))
            if n is None:
                meta = getattr(msg, "response_metadata", None) or {}
                n = _total(meta.get("token_usage") or meta.get("usage") or {})
        if n is None:
            info = g.generation_info or {}
            n = _total(info.get("token_usage") or info.get("usage") or info.get("usage_metadata") or {})
        if n is not None:
            total += n
            found = True
    return total if found and total <= _MAX_TOKENS else None


def _total(usage: Any) -> float | None:
    if not isinstance(usage, Mapping):
        return None
    total = _count(usage.get("total_tokens"))
    if total is not None:
        return total
    parts = [_count(usage.get(k)) for k in ("input_tokens", "output_tokens", "prompt_tokens", "completion_tokens")]
    nums = [v for v in parts if v is not None]
    total = sum(nums)
    return total if nums else None


def _count(v: Any) -> float | None:
    """A reported token count as a float in [0, 1e15], or None (missing, bool, NaN, inf, 10**400:
    no model reports more; a price near the float range would overflow the policy's priorities)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if 0 <= f <= _MAX_TOKENS else None


def _check_args(prompt: object, llm_string: object) -> None:
    for name, v in (("prompt", prompt), ("llm_string", llm_string)):
        if not isinstance(v, str):
            raise ConfigError(f"{name} must be str, got {type(v).__name__}: {v!r:.80}")
