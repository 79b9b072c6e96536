"""The parts of a ``SemanticCache`` and what it does with its store beside lookups: offering
answers (``update``), removing them, stats, invariants, closing.

``CacheParts`` builds and owns the parts (``cachemux.semantic.cache`` lists them); each part owns
its state, and this class only passes requests between them. Writes keep the index in step with
the store: a put and the index update it implies happen under the mirror's lock, as one step.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from cachemux.errors import ConfigError, check_positive
from cachemux.paths import default_store_dir
from cachemux.semantic.bounded import ErrorBound
from cachemux.semantic.decider import Decider
from cachemux.semantic.embedder import TextEmbedder
from cachemux.semantic.flight import SingleFlight
from cachemux.semantic.gate import EmbeddingGate, make_embedder, usable
from cachemux.semantic.keys import check_text
from cachemux.semantic.limits import MAX_VALUE_BYTES, Limits
from cachemux.semantic.locator import KEEP_CHARS, Locator, Prepared
from cachemux.semantic.locator import llm_id as _llm_id
from cachemux.semantic.locator import written_by as _written_by
from cachemux.semantic.match import Match
from cachemux.semantic.matcher import CosineMatcher, Matcher, default_matcher, load_matcher
from cachemux.semantic.mirror import IndexMirror
from cachemux.semantic.pricing import CostInfo, MissClock, check_cost
from cachemux.semantic.stats import CacheStats, FaultSink
from cachemux.semantic.threshold import DEFAULT_THRESHOLD
from cachemux.stores.base import Entry, Store
from cachemux.stores.disk import DiskStore
from cachemux.units import estimate_tokens

log = logging.getLogger("cachemux.cache")

__all__ = ["FLIGHT_TIMEOUT_S", "PROMPT_KEEP_CHARS", "CacheParts"]

PROMPT_KEEP_CHARS = KEEP_CHARS  # of each prompt kept in its entry, for inspection only
FLIGHT_TIMEOUT_S = 30.0  # default flight_timeout: the longest an identical miss waits for its leader


class CacheParts:
    """The parts of a ``SemanticCache`` (its constructor's arguments are documented there)."""

    def __init__(self, store: Store | None = None, *, embedder: TextEmbedder | str | os.PathLike[str] | None = None,
                 semantic: bool = True, threshold: float | None = None, policy: str | None = None,
                 capacity: float | None = None, namespace: str = "",
                 model_groups: Mapping[str, Iterable[str]] | Callable[[str], str | None] | None = None,
                 cost_fn: Callable[[CostInfo], float] | None = None, fallback_cost: float | None = None,
                 size_fn: Callable[[str], float] | None = None, casefold: bool = False,
                 candidates: int = 4, index_options: Mapping[str, Any] | None = None,
                 max_pending: int = 10_000, max_value_bytes: int | None = MAX_VALUE_BYTES,
                 ttl: float | None = None,
                 matcher: Matcher | str | os.PathLike[str] | None = None, max_error: float | None = None,
                 judge: Callable[[str, str], bool | None] | None = None, verify_rate: float = 0.1,
                 index_path: str | os.PathLike[str] | bool | None = None, save_every: int | None = None,
                 flight_timeout: float | None = FLIGHT_TIMEOUT_S, lease: float | None = None) -> None:
        if store is None:
            # an existing default store keeps its own capacity and policy unless they are given
            store = DiskStore(default_store_dir(), capacity, policy)
        elif not isinstance(store, Store):
            raise ConfigError(f"store must be a cachemux Store (MemoryStore, DiskStore, RedisStore), "
                              f"got {type(store).__name__}")
        elif policy is not None or capacity is not None:
            raise ConfigError("policy= and capacity= configure the default store; a given store has its "
                              "own (pass them to the store instead)")
        self.store = store
        if threshold is not None and matcher is not None:
            raise ConfigError("threshold= means plain cosine >= threshold; pass it or matcher=, not both")
        if threshold is not None:
            CosineMatcher(threshold)  # validates
        self.semantic = bool(semantic)
        self.locator = Locator(namespace, casefold=casefold, groups=model_groups, semantic=self.semantic)
        self.counters = CacheStats()
        self.fault = FaultSink(self.counters)
        self.gate = EmbeddingGate(make_embedder(embedder, self.semantic), self.counters, self.fault)
        if size_fn is not None and not callable(size_fn):
            raise ConfigError(f"size_fn must be callable, got {size_fn!r}")
        self.size_fn = size_fn
        if not isinstance(candidates, int) or candidates < 1:
            raise ConfigError(f"candidates must be an int >= 1, got {candidates!r}")
        self.candidates = candidates
        self.clock = MissClock(self.counters, max_pending=max_pending, cost_fn=cost_fn, fallback_cost=fallback_cost)
        self.limits = Limits(max_value_bytes, ttl)
        for name, v in (("flight_timeout", flight_timeout), ("lease", lease)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1e6):
                raise ConfigError(f"{name} must be a number of seconds >= 0 or None (off), got {v!r}")
        self.flights = SingleFlight(flight_timeout) if flight_timeout else None
        self.lease = float(lease) if lease else None
        self.mirror = IndexMirror(store, self.gate.vector_id, self.counters, self.fault,
                                  index_options=index_options, index_path=index_path, save_every=save_every)
        self.decider = Decider(self._make_matcher(matcher, threshold),
                               None if max_error is None else ErrorBound(max_error, verify_rate=verify_rate),
                               self.mirror, self.counters, self.fault, judge=judge, remember=max_pending)

    def __repr__(self) -> str:
        return (f"SemanticCache(store={type(self.store).__name__}, namespace={self.namespace!r}, "
                f"matcher={self.matcher!r}, semantic={self.semantic})")

    def _make_matcher(self, matcher: object, threshold: float | None) -> Matcher:
        if threshold is not None:
            return CosineMatcher(threshold)
        if matcher is None:
            # an embedder may declare the model the shipped verifier knows its vectors as
            # (OnnxEmbedder: the int8 MiniLM, measured on the verifier's QQP test pairs)
            fitted = getattr(self.embedder, "matcher_model", None)
            return default_matcher(fitted if isinstance(fitted, str) else self.gate.embedder_id, DEFAULT_THRESHOLD)
        if isinstance(matcher, (str, os.PathLike)):
            return load_matcher(os.fspath(matcher))
        if isinstance(matcher, (int, float)) or not isinstance(matcher, Matcher):
            raise ConfigError(f"matcher must be a cachemux Matcher or the path of a matcher JSON, got {matcher!r}")
        return matcher

    # ---- configuration, read through the parts ----------------------------------------------------
    namespace = property(lambda self: self.locator.namespace)
    casefold = property(lambda self: self.locator.casefold)
    embedder = property(lambda self: self.gate.embedder)
    matcher = property(lambda self: self.decider.matcher)
    bound = property(lambda self: self.decider.bound,
                     lambda self, b: setattr(self.decider, "bound", b))  # a seeded one, for experiments
    judge = property(lambda self: self.decider.judge)
    cost_fn = property(lambda self: self.clock.cost_fn)
    fallback_cost = property(lambda self: self.clock.fallback_cost)
    max_pending = property(lambda self: self.clock.max_pending)
    max_value_bytes = property(lambda self: self.limits.max_value_bytes)
    ttl = property(lambda self: self.limits.ttl)
    save_every = property(lambda self: self.mirror.saver.save_every)
    last_save = property(lambda self: self.mirror.saver.last_save)

    @property
    def threshold(self) -> float | None:
        """The plain-cosine threshold in use, or None when a verifier decides."""
        return self.matcher.threshold if isinstance(self.matcher, CosineMatcher) else None

    def key_for(self, prompt: str, llm_string: str) -> str:
        """The exact key ``prompt`` is stored under for ``llm_string`` in this namespace."""
        return self.locator.key_for(prompt, llm_string)

    def _prepare(self, prompt: object, llm_string: object, embed_text: object, scope: object) -> Prepared:
        return self.locator.prepare(prompt, llm_string, embed_text, scope)

    def place(self, prompt: str, llm_string: str, *, embed_text: str | bool | None = None, scope: str = "") -> Prepared:
        """Where a request lives in this cache (exact key, partition, compared text), computed once:
        pass it as ``where=`` to ``match``, ``update``, ``feedback``, ``candidate_*`` and
        ``release`` so the request is not keyed again (``cachemux.joint`` does)."""
        return self.locator.prepare(prompt, llm_string, embed_text, scope)

    # ---- what tests and benchmarks inspect --------------------------------------------------------
    _index = property(lambda self: self.mirror.index)
    _synced = property(lambda self: self.mirror.synced)
    _vector_id = property(lambda self: self.gate.vector_id)
    _pending = property(lambda self: self.clock.pending)
    _pending_of = property(lambda self: self.clock.pending_of)
    _flights = property(lambda self: self.flights)

    def _wait_for_writer(self) -> None:
        self.mirror.saver.wait()


    # ---- update ---------------------------------------------------------------------------------
    def update(self, prompt: str, llm_string: str, value: str, cost: float | None = None,
               size: float | None = None, *, embed_text: str | bool | None = None, scope: str = "",
               info: Any = None, embedding: np.ndarray | None = None, tokens: float | None = None,
               where: Prepared | None = None) -> bool:
        """Offer the answer to the store; True if admitted. A store fault drops it (logged).
        ``cost``: see ``cachemux.semantic.pricing`` for what prices the entry without it.
        ``embed_text`` and ``scope`` as in ``lookup`` (pass the same). ``embedding``: a vector
        already computed for this prompt by the same model (bulk loads), used instead of running
        the model: the vector of ``cachemux.semantic.embed_form.embed_form(text)``, the form
        lookups embed. ``tokens``: the estimated tokens of question and answer (default:
        characters / 4 of ``prompt`` and ``value``; adapters storing serialised answers pass the
        plain texts'). Identical lookups waiting for this key's miss (``flight_timeout``) are
        served ``value`` once it returns, admitted or not. ``where``: the request's ``place``."""
        if where is None:
            where = self._prepare(prompt, llm_string, embed_text, scope)
        else:
            check_text("prompt", prompt)
            check_text("llm_string", llm_string)
        priced: list[float] = []  # the entry's cost once known: what the waiters' hits saved
        try:
            return self._update(where, prompt, llm_string, value, cost, size, info, embedding, tokens, priced)
        finally:
            if self.flights is not None and isinstance(value, str):
                self.flights.publish(where.key, Match(value, kind="exact", key=where.key, similarity=1.0,
                                                         cost=priced[-1] if priced else 0.0))

    def seconds_per_token(self) -> float:
        """The fallback price per estimated token: seconds per token over this cache's
        latency-priced updates, or ``FALLBACK_SECONDS_PER_TOKEN`` before any."""
        return self.clock.seconds_per_token()


    def _update(self, where: Prepared, prompt: str, llm_string: str, value: str, cost: float | None,
                size: float | None, info: Any, embedding: np.ndarray | None, tokens: float | None,
                priced: list[float]) -> bool:
        key, part, text = where.key, where.part, where.text
        if embedding is not None:
            embedding = _check_vector(embedding)
            if self.semantic and len(embedding) != self.embedder.dim:  # type: ignore[union-attr]
                raise ConfigError(f"embedding has dimension {len(embedding)}, the embedder gives "
                                  f"{self.embedder.dim}")  # type: ignore[union-attr]
        check_text("value", value)
        if cost is not None:
            cost = check_cost("cost", cost)
        if self.limits.too_large(value):  # not cached: the miss's clock goes with it
            self.counters.add(updates=1, too_large=1)
            self.clock.drop(key)
            if self.counters.get("too_large") == 1:
                log.warning("cachemux: an answer of %d characters exceeds max_value_bytes=%d and is not "
                            "cached; counted in stats()['too_large'], logged once", len(value), self.max_value_bytes)
            return False
        if size is None and self.size_fn is not None:
            size = self.size_fn(value)
        size = 1.0 if size is None else check_positive("size", size)
        tokens = estimate_tokens(prompt, value) if tokens is None else check_cost("tokens", tokens)
        self.counters.add(updates=1)
        pending, now = self.clock.take(key)
        latency = None if pending is None else max(0.0, now - pending[1])
        cost = self.clock.price(cost, latency, tokens, CostInfo(prompt=prompt, llm_string=llm_string, value=value, latency=latency, info=info))
        priced.append(cost)
        vec = pending[2] if pending is not None else None
        if embedding is not None and self.semantic:
            vec = embedding
        elif vec is None and self.gate.embeddable(text):
            vec = self.gate.embed(text)  # type: ignore[arg-type]
        if vec is not None and not usable(vec):  # a model that gave NaN/inf: keep the answer, exact-only
            self.counters.add(bad_embeddings=1)
            vec = None
        created = time.time()
        entry = Entry(value=value, cost=cost, size=size, partition=part, prompt=prompt[:PROMPT_KEEP_CHARS],
                      embedding=vec, created=created, expires=self.limits.expires(created),
                      meta={"ns": self.namespace, "llm": llm_string[:PROMPT_KEEP_CHARS], "llm_id": _llm_id(llm_string),
                            "emb": self.gate.vector_id,
                            **({"q": text[:PROMPT_KEEP_CHARS]} if vec is not None and text and text != prompt else {})})
        with self.mirror.lock:  # the put and its index update as one step
            try:
                result = self.store.put(key, entry)
            except Exception as exc:  # a store fault drops the entry; the app goes on
                self.fault("update", exc)
                self.counters.add(dropped=1)
                return False
            self.counters.add(**{"admitted" if result.admitted else "rejected": 1, "evictions": len(result.evicted),
                                 "expired_evicted": result.expired})
            self.mirror.put(key, part, vec, result)
        return result.admitted

    # ---- reading entries --------------------------------------------------------------------------
    def _servable(self, key: str, entry: Entry) -> bool:
        """False (counted) for an entry over ``max_value_bytes`` or past its ``ttl`` or the
        ``expires`` its writer gave it (then deleted)."""
        why = self.limits.refuses(entry)
        if why is None:
            return True
        if why == "too_large":
            self.counters.count("too_large_skipped")
            return False
        self.counters.count("expired")
        try:
            self.store.delete(key)
        except Exception as exc:
            self.fault("delete", exc)
        self.mirror.remove(key)
        return False

    # ---- maintenance ----------------------------------------------------------------------------
    def purge_expired(self) -> int:
        """Delete this namespace's entries older than ``ttl`` (O(entries)); return how many."""
        if self.ttl is None:
            return 0
        removed = 0
        try:
            for key in self.store.keys():
                entry = self.store.peek(key)
                if (entry is not None and entry.meta.get("ns", "") == self.namespace
                        and time.time() - entry.created > self.ttl and self.store.delete(key)):
                    removed += 1
                    self.counters.add(expired=1)
                    self.mirror.remove(key)
        except Exception as exc:
            self.fault("purge_expired", exc)
        return removed

    def delete(self, prompt: str, llm_string: str) -> bool:
        """Forget the exact entry for ``prompt`` (True if it was cached)."""
        key = self.key_for(prompt, llm_string)
        with self.mirror.lock:
            try:
                found = self.store.delete(key)
            except Exception as exc:
                self.fault("delete", exc)
                return False
            self.mirror.remove(key)
        return found

    def clear(self, *, llm_string: str | None = None, everything: bool = False) -> None:
        """Remove this namespace's entries; with ``llm_string``, only those written under that
        model configuration (matched on a hash of the whole string, however long);
        ``everything=True``: every entry in the store, all namespaces. Store faults are logged,
        as in ``update``. Outstanding misses keep their clocks: those calls are still running."""
        if everything and llm_string is not None:
            raise ConfigError("clear(everything=True) removes every entry; it takes no llm_string")
        llm_id = None if llm_string is None else _llm_id(check_text("llm_string", llm_string))
        removed: list[str] = []
        with self.mirror.lock:
            try:
                if everything:
                    self.store.clear()
                else:
                    for key in self.store.keys():
                        entry = self.store.peek(key)
                        if (entry is not None and entry.meta.get("ns", "") == self.namespace
                                and (llm_id is None or _written_by(entry.meta, llm_string, llm_id))  # type: ignore[arg-type]
                                and self.store.delete(key)):
                            removed.append(key)
            except Exception as exc:
                self.fault("clear", exc)
            self.mirror.cleared(everything, removed)

    def warmup(self) -> CacheParts:
        """Load the embedding model and build the index now instead of on first use."""
        if self.embedder is not None:
            self.mirror.warm(self.embedder.dim)
        return self

    def save_index(self) -> bool:
        """Build or sync the semantic index and save it now (True if saved; False for an
        exact-only cache, without a folder for it, or on a fault, which is logged). Other threads
        wait only while the copy is taken, not while the files are written."""
        if self.embedder is None:
            return False
        return self.mirror.saver.save(self.embedder.dim)

    def stats(self) -> dict[str, Any]:
        """Counters since this object was created (this process): hits by kind, misses, cost
        saved (sum of the hit entries' costs), evictions caused by our updates, faults; plus
        ``store``, the store's own counters across all its users, when it keeps them."""
        s = self.counters.as_dict()
        if self.bound is not None:
            s["bounded"] = self.bound.stats()
        s.update(self.mirror.counts())
        breaker = getattr(self.store, "breaker", None)
        if breaker is not None:  # readable while the backend is down
            s["breaker"] = breaker.stats()
        try:
            s["entries"] = len(self.store)
            # the store's own counters cover every process sharing it (disk, Redis)
            store_stats = getattr(self.store, "stats", None)
            if callable(store_stats):
                s["store"] = store_stats()
        except Exception:
            s["entries"] = None
        return s

    def check_invariants(self) -> None:
        """The store's invariants, the index's, and, after a sync, the index holding exactly the
        store's entries this cache can search: no key the store lost, none of its embedded
        entries missing (with several processes, call it when they are quiet)."""
        self.store.check_invariants()
        self.mirror.check()

    def close(self) -> None:
        """Save the semantic index if it changed since it was last saved or loaded (see
        ``index_path``), then close the store."""
        self.mirror.saver.close()
        self.store.close()

    def __enter__(self) -> CacheParts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_vector(vec: object) -> np.ndarray:
    try:
        v = np.asarray(vec, dtype=np.float32)
    except (TypeError, ValueError):
        raise ConfigError(f"embedding must be a vector of numbers, got {type(vec).__name__}") from None
    if v.ndim != 1 or not v.size or not np.all(np.isfinite(v)):
        raise ConfigError(f"embedding must be a finite 1-D vector, got shape {v.shape}")
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v
