"""The engine's cache port, and its two implementations: a policy + dict (the simulator) and the
semantic LLM cache (applications).

A cache port answers ``lookup(request) -> Hit | None`` and takes ``admit(request, answer, price,
size, model=, paid=, place=) -> bool`` (True if kept). It prices nothing itself: the engine offers every
entry at the cost of a miss under the selector. A port that learns from feedback (error-bounded
mode) also has ``learns`` (True), ``feedback(request, ok) -> bool`` and ``candidate(request) ->
answer | None`` (the neighbour its last lookup of the request considered, served or not): the
engine compares that neighbour's answer with the one it ran the model for, and reports. A
*placing* port (``Placing``: the semantic cache's) keys a request once: ``locate(request) ->
Lookup`` carries the request's place in the cache, which the engine hands back as ``place=`` to
``admit``, ``feedback``, ``candidate`` and ``release``. The engine checks which of these a port
has once, when it is built.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Hashable, MutableMapping
from typing import Any, Protocol, runtime_checkable

from cachemux.joint.types import Hit, Lookup, Request
from cachemux.policies.base import Policy, admit_value

__all__ = ["CachePort", "Coalescing", "Placing", "PolicyCache", "Reporting", "SemanticHit", "SemanticPort", "Verifiable",
           "as_cache_port", "semantic_port"]

log = logging.getLogger(__name__)


@runtime_checkable
class CachePort(Protocol):
    def lookup(self, request: Request) -> Hit | None: ...

    def admit(self, request: Request, answer: Any, price: float, size: float = 1, *,
              model: str | None = None, paid: float | None = None, place: Any = None) -> bool: ...


@runtime_checkable
class Placing(Protocol):
    """A port that places a request once (``locate``) and takes the place back in ``admit``,
    ``feedback``, ``candidate`` and ``release`` (``place=``), so nothing is keyed twice."""

    def locate(self, request: Request) -> Lookup: ...

    async def alocate(self, request: Request) -> Lookup: ...


@runtime_checkable
class Verifiable(Protocol):
    """A port whose hits the engine may verify by running the model (see the module docstring)."""

    @property
    def learns(self) -> bool: ...

    def feedback(self, request: Request, ok: bool, *, place: Any = None) -> bool: ...

    def candidate(self, request: Request, *, place: Any = None) -> Any: ...

    def unserved(self, hit: Hit, reason: str) -> None: ...


@runtime_checkable
class Coalescing(Protocol):
    """A port that lets identical misses wait for one call (``cachemux.semantic.flight``)."""

    async def alookup(self, request: Request) -> Hit | None: ...

    def release(self, request: Request, owner: object, served: Any, *, place: Any = None) -> None: ...


@runtime_checkable
class Reporting(Protocol):
    def stats(self) -> dict[str, Any]: ...


def _key(request: Any) -> Hashable:
    # the simulator serves bare query ids (no Request object per request: the hot path)
    if type(request) is Request:
        return request.query if request.prompt is None else (request.config, request.prompt)
    key: Hashable = request
    return key


class PolicyCache:
    """A key policy (``make_policy``) plus an optional value store (a dict): the simulator's cache.

    Without a store only hits are known (``Hit.answer`` is None); with one the answers are kept for
    the keys the policy holds and dropped as it evicts them. Thread-safe: policies are pure and
    unlocked, so each lookup and admit holds one lock.
    """

    def __init__(self, policy: Policy, store: MutableMapping[Hashable, Any] | None = None) -> None:
        self.policy = policy
        self.store = store
        self._made: dict[Hashable, tuple[str | None, float | None, float]] = {}  # key -> (model, paid, price)
        self._lock = threading.Lock()

    def lookup(self, request: Any) -> Hit | None:
        with self._lock:
            return self._lookup(_key(request))

    def _lookup(self, key: Hashable) -> Hit | None:
        if not self.policy.lookup(key):
            return None
        if self.store is None:
            return _NO_VALUE
        try:
            answer = self.store[key]
        except KeyError:  # the store lost the value: a miss
            self.policy.remove(key)
            self._made.pop(key, None)
            return None
        model, paid, price = self._made.get(key, (None, None, 0.0))
        return Hit(answer, kind="exact", similarity=1.0, price=price, model=model, paid=paid)

    def admit(self, request: Any, answer: Any, price: float, size: float = 1, *,
              model: str | None = None, paid: float | None = None, place: Any = None) -> bool:
        with self._lock:
            return self._admit(_key(request), answer, price, size, model, paid)

    def _admit(self, key: Hashable, answer: Any, price: float, size: float, model: str | None,
               paid: float | None) -> bool:
        admit_value(self.policy, self.store, key, answer, price, size, drop=self._unmade)
        kept = key in self.policy
        if kept and self.store is not None:
            self._made[key] = (model, paid, price)
        return kept

    def _unmade(self, key: Hashable) -> None:
        self._made.pop(key, None)


_NO_VALUE = Hit(None)


SemanticHit = Hit  # a semantic hit is a ``Hit`` with ``p_wrong`` (the name is kept for imports)


class SemanticPort:
    """``cachemux.cache.SemanticCache`` as the engine's cache: exact key over (request.config,
    request.prompt), then meaning (``embed_text`` within ``scope``).

    Entries hold ``{"answer": encode(answer), "model": ..., "paid": ...}`` as JSON, so a hit knows
    who produced it and at what cost. ``encode``/``decode`` turn the adapter's answers into text
    and back (default: the answer is text); a value that cannot be decoded (a foreign or older
    entry) is served as a miss, logged.
    """

    def __init__(self, cache: Any, encode: Callable[[Any], str] = str,
                 decode: Callable[[str], Any] = str) -> None:
        if not hasattr(cache, "match") or not hasattr(cache, "update"):
            raise TypeError(f"expected a cachemux SemanticCache, got {type(cache).__name__}")
        self.cache = cache
        self.encode = encode
        self.decode = decode

    def lookup(self, request: Request) -> Hit | None:
        return self.locate(request).hit

    async def alookup(self, request: Request) -> Hit | None:
        """``lookup`` for asyncio: an identical miss in flight is waited for in the event loop."""
        return (await self.alocate(request)).hit

    def _place(self, request: Request) -> Any:
        return self.cache.place(request.prompt, request.config, embed_text=request.embed_text, scope=request.scope)

    def locate(self, request: Request) -> Lookup:
        """``lookup`` with the request's place in the cache, keyed once for the whole request."""
        where = self._place(request)
        return Lookup(hit=self._hit(self.cache.match(request.prompt, request.config, where=where)), place=where)

    async def alocate(self, request: Request) -> Lookup:
        where = self._place(request)
        return Lookup(hit=self._hit(await self.cache.amatch(request.prompt, request.config, where=where)), place=where)

    def release(self, request: Request, owner: object, served: Any = None, *, place: Any = None) -> None:
        """The engine's routed request ended without ``admit`` taking its answer: identical
        requests waiting for it get ``served``'s answer (a ``Served`` whose answer may be shared),
        or with None are let go to make their own call (``SemanticCache.release``)."""
        value = None if served is None else json.dumps(
            {"answer": self.encode(served.answer), "model": served.model, "paid": served.cost}, ensure_ascii=False)
        self.cache.release(request.prompt, request.config, value, cost=0.0 if served is None else served.price,
                           owner=owner, where=place)

    def _hit(self, m: Any) -> Hit | None:
        if m is None:
            return None
        try:
            d = json.loads(m.value)
            answer = self.decode(d["answer"])
            model, paid = d.get("model"), d.get("paid")
        except Exception as exc:  # unreadable (another version, a foreign writer): a miss
            log.warning("cachemux: cached value cannot be revived (%s: %s); served as a miss",
                        type(exc).__name__, exc)
            return None
        paid = None if paid is None else float(paid)
        if m.kind == "semantic":
            p_wrong = m.p_wrong if m.p_wrong is not None else (1.0 - float(m.score) if self._calibrated() else None)
            if p_wrong is not None:
                return Hit(answer, kind=m.kind, similarity=m.similarity, price=m.cost, model=model, paid=paid,
                           verify=m.verify, p_wrong=p_wrong)
        return Hit(answer, kind=m.kind, similarity=m.similarity, price=m.cost, model=model, paid=paid,
                   verify=m.kind == "semantic" and m.verify)

    def unserved(self, hit: Hit, reason: str) -> None:
        """The engine ran the model instead of serving ``hit`` (see ``SemanticCache.unserved``)."""
        self.cache.unserved(reason, hit.price)

    def _revive(self, value: str) -> Any:
        return self.decode(json.loads(value)["answer"])

    @property
    def learns(self) -> bool:
        """Whether the cache learns from feedback (error-bounded mode, ``max_error=``)."""
        return getattr(self.cache, "bound", None) is not None

    def feedback(self, request: Request, ok: bool, *, place: Any = None) -> bool:
        """Whether the neighbour the last lookup of ``request`` considered was right for it."""
        return bool(self.cache.feedback(request.prompt, request.config, ok, scope=request.scope, where=place))

    def candidate(self, request: Request, *, place: Any = None) -> Any:
        """The answer of the neighbour the last lookup of ``request`` considered (error-bounded
        mode; served or not), or None."""
        value = self.cache.candidate_value(request.prompt, request.config, scope=request.scope, where=place)
        if value is None:
            return None
        try:
            return self._revive(value)
        except Exception:  # unreadable: nothing to compare with
            return None

    def _calibrated(self) -> bool:
        """Whether the cache's matcher gives a calibrated P(same question) (a verifier)."""
        from cachemux.semantic.matcher import VerifierMatcher

        return isinstance(getattr(self.cache, "matcher", None), VerifierMatcher)

    def admit(self, request: Request, answer: Any, price: float, size: float = 1, *,
              model: str | None = None, paid: float | None = None, place: Any = None) -> bool:
        value = json.dumps({"answer": self.encode(answer), "model": model, "paid": paid}, ensure_ascii=False)
        return bool(self.cache.update(request.prompt, request.config, value, cost=price, size=size,
                                      embed_text=request.embed_text, scope=request.scope, where=place))

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.cache.stats()
        return stats


def semantic_port(cache: Any, *, encode: Callable[[Any], str] = str,
                  decode: Callable[[str], Any] = str) -> SemanticPort | None:
    """The port over a ``SemanticCache``, or over the one a wrapper holds as ``.cache`` (LangChain's
    ``CacheMuxCache``); None for None or False. The one place a ``cache=`` argument is unwrapped."""
    from cachemux.semantic.cache import SemanticCache

    if cache is None or cache is False:
        return None
    semantic = cache if isinstance(cache, SemanticCache) else getattr(cache, "cache", None)
    if not isinstance(semantic, SemanticCache):
        from cachemux.errors import ConfigError

        raise ConfigError(f"cache must be a cachemux SemanticCache or a CacheMuxCache, got {type(cache).__name__}")
    return SemanticPort(semantic, encode=encode, decode=decode)


def as_cache_port(cache: Any) -> CachePort | None:
    """None, a cache port, a ``Policy`` (wrapped with no store), or a ``SemanticCache`` or anything
    holding one as ``.cache`` (``semantic_port``)."""
    if cache is None or isinstance(cache, (PolicyCache, SemanticPort)):
        return cache
    if isinstance(cache, Policy):
        return PolicyCache(cache)
    if isinstance(cache, CachePort):
        return cache
    from cachemux.errors import ConfigError

    try:
        return semantic_port(cache)
    except ConfigError:
        raise ConfigError(f"cache must be a SemanticCache, a CacheMuxCache, a Policy or a cache port "
                          f"(lookup/admit), got {type(cache).__name__}") from None
