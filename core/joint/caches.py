"""The engine's cache port, and its two implementations: a policy + dict (the simulator) and the
semantic LLM cache (applications).

A cache port answers ``lookup(request) -> Hit | None`` and takes ``admit(request, answer, price,
size, model=, paid=) -> bool`` (True if kept). It prices nothing itself: the engine offers every
entry at the cost of a miss under the selector. A port that learns from feedback (error-bounded
mode) also has ``learns`` (True), ``feedback(request, ok) -> bool`` and ``candidate(request) ->
answer | None`` (the neighbour its last lookup of the request considered, served or not): the
engine compares that neighbour's answer with the one it ran the model for, and reports.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Hashable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from cachemux.joint.types import Hit, Request
from cachemux.policies.base import Policy, admit_value

__all__ = ["CachePort", "PolicyCache", "SemanticHit", "SemanticPort", "as_cache_port"]

log = logging.getLogger(__name__)


@runtime_checkable
class CachePort(Protocol):
    def lookup(self, request: Request) -> Hit | None: ...

    def admit(self, request: Request, answer: Any, price: float, size: float = 1, *,
              model: str | None = None, paid: float | None = None) -> bool: ...


def _key(request: Any) -> Hashable:
    # the simulator serves bare query ids (no Request object per request: the hot path)
    if type(request) is Request:
        return request.query if request.prompt is None else (request.config, request.prompt)
    return request


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
        return Hit(answer, "exact", 1.0, price, model, paid)

    def admit(self, request: Any, answer: Any, price: float, size: float = 1, *,
              model: str | None = None, paid: float | None = None) -> bool:
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


@dataclass(frozen=True, slots=True)
class SemanticHit(Hit):
    """A semantic hit with the probability that it answers another question: error-bounded mode's
    learned estimate for that entry at that score (``ErrorBound.estimate``), else the verifier
    matcher's calibrated 1 - P(same). The engine prices serving it at ``p_wrong x
    semantic_penalty`` (``JointEngine``)."""

    p_wrong: float = 0.0


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
        m = self.cache.match(request.prompt, request.config, embed_text=request.embed_text, scope=request.scope)
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
                return SemanticHit(answer, m.kind, m.similarity, m.cost, model, paid, m.verify, p_wrong=p_wrong)
        return Hit(answer, m.kind, m.similarity, m.cost, model, paid, m.kind == "semantic" and m.verify)

    def unserved(self, hit: Hit, reason: str) -> None:
        """The engine ran the model instead of serving ``hit`` (see ``SemanticCache.unserved``)."""
        self.cache.unserved(reason, hit.price)

    def _revive(self, value: str) -> Any:
        return self.decode(json.loads(value)["answer"])

    @property
    def learns(self) -> bool:
        """Whether the cache learns from feedback (error-bounded mode, ``max_error=``)."""
        return getattr(self.cache, "bound", None) is not None

    def feedback(self, request: Request, ok: bool) -> bool:
        """Whether the neighbour the last lookup of ``request`` considered was right for it."""
        return bool(self.cache.feedback(request.prompt, request.config, ok, scope=request.scope))

    def candidate(self, request: Request) -> Any:
        """The answer of the neighbour the last lookup of ``request`` considered (error-bounded
        mode; served or not), or None."""
        value = self.cache.candidate_value(request.prompt, request.config, scope=request.scope)
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
              model: str | None = None, paid: float | None = None) -> bool:
        value = json.dumps({"answer": self.encode(answer), "model": model, "paid": paid}, ensure_ascii=False)
        return bool(self.cache.update(request.prompt, request.config, value, cost=price, size=size,
                                      embed_text=request.embed_text, scope=request.scope))

    def stats(self) -> dict[str, Any]:
        return self.cache.stats()


def as_cache_port(cache: Any) -> CachePort | None:
    """None, a cache port, a ``Policy`` (wrapped with no store), a ``SemanticCache`` or anything
    holding one as ``.cache`` (LangChain's ``CacheMuxCache``)."""
    if cache is None or isinstance(cache, (PolicyCache, SemanticPort)):
        return cache
    if isinstance(cache, Policy):
        return PolicyCache(cache)
    inner = getattr(cache, "cache", None)
    if not hasattr(cache, "match") and inner is not None and hasattr(inner, "match"):
        cache = inner
    if hasattr(cache, "match") and hasattr(cache, "update"):
        return SemanticPort(cache)
    if isinstance(cache, CachePort):
        return cache
    from cachemux.errors import ConfigError

    raise ConfigError(f"cache must be a SemanticCache, a CacheMuxCache, a Policy or a cache port "
                      f"(lookup/admit), got {type(cache).__name__}")
