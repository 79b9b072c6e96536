"""The semantic LLM cache: exact key first, then nearest neighbour within a partition, over any store.

Framework-agnostic (no LangChain here): adapters call ``lookup``/``update`` with the prompt text,
the model configuration string and the answer serialised as text.

Request path (``lookup``)::

    exact key = hash(namespace, model configuration or its group, normalised prompt)
    store.get(exact key)                      -> exact hit (no embedding computed)
    embed(prompt) ; nearest neighbours among the cached prompts of the same partition
    matcher accepts (prompt, neighbour, cosine) and store.get(match)
                                              -> semantic hit, counted on the matched entry
    otherwise                                 -> miss; the clock starts for the cost

A partition is (namespace, llm_string), or (namespace, group) when ``model_groups`` lets several
model configurations share answers: nothing is ever served across partitions, so tenants and
model settings (model, temperature, ...) stay apart.

**P(q) per semantic cluster.** A semantic hit calls ``store.get`` on the *matched* entry, so the
store's policy counts the request on the entry that answered it: the frequency GDSF and LEC use
is that of the cluster of paraphrases the entry serves, not of one spelling.

**Cost of an entry** (what a miss would cost again), first that applies:

1. ``update(..., cost=x)``;
2. ``cost_fn(CostInfo)`` if configured (for example a per-model price table; it sees the measured
   latency and whatever the adapter passed as ``info``, e.g. LangChain generations);
3. the wall-clock latency in seconds from a miss (``lookup`` returned None) to the ``update`` of
   the same key: the time the application spent producing the answer. Misses queue per key, and
   each update takes the oldest outstanding one, so concurrent callers missing the same prompt
   each get their own clock (at most ``max_pending`` outstanding misses in all, oldest dropped;
   a miss older than ``PENDING_MAX_AGE_S`` (1 h) is forgotten: its call most likely failed);
4. ``fallback_cost`` if configured;
5. otherwise (an ``update`` with no miss before it: a warm-up, a bulk load, LangChain's
   ``update`` called directly) the estimated price: ``tokens`` (``update(tokens=...)``, default
   ``estimate_tokens(prompt, value)``, characters / 4) times the seconds per estimated token
   observed in this cache (total latency / total estimated tokens of its latency-priced updates),
   or ``FALLBACK_SECONDS_PER_TOKEN`` (0.01 s) before any observation. ``MissingCostError`` is no
   longer raised here (kept in ``cachemux.errors`` for the policies and for compatibility).

**Index in step with the store.** Our own admissions and evictions update the index directly,
in one step with the store operation (an index lock held across both, and across the change-log
sync and the search), so threads of one cache never leave the index behind the store.
Stores shared by several processes (disk, Redis) expose a change log: before each semantic
search the cache reads ``store.changes(cursor)`` and applies it (idempotently: an "add" re-reads
the entry, a "del" drops it); a ``reset`` rebuilds from ``keys()``. A candidate the store no
longer holds is dropped from the index and the next candidate is tried; a semantic hit is
decided on the matched entry's own stored embedding.

**Saved index.** With a ``DiskStore`` (or ``index_path=`` for a ``RedisStore``) the index is
saved beside the store (``cachemux.semantic.snapshot``: JSON + safetensors + usearch files,
checksummed) after a full rebuild of at least 1,000 entries, every ``save_every`` index changes
(optional), at ``close()`` and by ``save_index()``; a save holds the index lock only while it
copies the index, the files are written after (``cachemux.semantic.persist``). A new cache loads
it and replays the change log from its position (one batch per partition) instead of re-reading
every entry (at 100k entries: see benchmarks/bench_cold_start.py). A damaged, foreign or too-old
snapshot is logged (``stats()["snapshot_errors"]``) and rebuilt.

**Faults never reach the application.** Any exception from the store (``StoreError``, a Redis
timeout, a broken disk) in ``lookup`` makes it a miss; in ``update`` the entry is dropped. Both
are logged (a warning at most every 10 s, with the number suppressed) and counted in
``stats()["errors"]``. Bad *arguments* (a non-``str`` prompt, a negative cost, ...) raise
``ConfigError``: those are bugs in the caller, not faults.

**Identical misses in flight** (``cachemux.semantic.flight``). A lookup that misses while an
identical one (same exact key) is already a miss in this process waits for that leader's answer,
at most ``flight_timeout`` seconds after the leader's miss, and is served it when the leader's
``update`` (or ``release``) publishes it, admitted by the store or not: one model call, not one per
caller. It counts as an exact hit and in ``stats()["coalesced"]``. A leader whose call fails and
that never updates holds its waiters until that deadline, then they get a miss (``release`` with
no value lets them go at once; ``JointEngine`` does it on every path). A caller never waits on
its own miss (the same asyncio task, else thread, looking up twice before updating). Async
callers (``amatch``/``alookup``) wait in the event loop, not in a worker thread.
With ``lease=s`` the leader also claims the key in a shared store for ``s`` seconds
(``Store.lease``: Redis ``SET NX PX``, a DiskStore table); while another process holds the claim
it polls the store for that process's answer, and makes its own call once ``s`` seconds pass.

**Documented input behaviour.** An empty or whitespace-only prompt is cached by exact key only.
So is a prompt whose embedding would lose part of it, measured with the embedder's own tokenizer
(``cachemux.semantic.fidelity``): one the model would cut (more word pieces than its window, 256
for the default MiniLM: ~1,000 English characters, ~130 Korean ones), since two long prompts
sharing their first 256 word pieces would look identical to the model; one with any unknown
token (MiniLM has no emoji and no pieces for words over 100 characters: "Explain 😀" and
"Explain 💀" embed identically); one that is not valid Unicode (a lone surrogate). Each is
counted in ``stats()["exact_only_<reason>"]`` (reasons: truncated, unknown_tokens, unencodable)
and in ``stats()["exact_only"]``, and logged once per reason. An embedding with NaN/inf (a
broken model) is never searched nor stored (the answer is cached exact-only;
``stats()["bad_embeddings"]``); a stored row that cannot be read or has the wrong dimension is
left out of the index alone (``stats()["skipped_entries"]``), never failing the index sync. There is no size limit on exact keys (a 1 MB prompt hashes in ~1 ms);
entries keep only the first 2,000 characters of their prompt for inspection.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cachemux.paths import default_store_dir
from cachemux.errors import ConfigError, CorruptEntryError, InvariantError, StoreError, check_nonnegative, check_positive
from cachemux.semantic.embedder import Embedder, TextEmbedder, default_embedder, is_text_embedder
from cachemux.semantic.fidelity import REASONS as _LOSSES
from cachemux.semantic.fidelity import embedding_loss, tokenizer_of
from cachemux.semantic.bounded import ErrorBound
from cachemux.semantic.index import PartitionedIndex
from cachemux.semantic.persist import SNAPSHOT_FOLDER, IndexPersistence  # noqa: F401 - SNAPSHOT_FOLDER re-exported
from cachemux.semantic.embed_form import EMBED_FORM, embed_form
from cachemux.semantic.flight import DONE, WAIT, Flight, SingleFlight, caller
from cachemux.semantic.keys import check_text, exact_key, model_id, normalize_prompt, partition_id
from cachemux.semantic.identity import callable_identity
from cachemux.semantic.matcher import CosineMatcher, Matcher, VerifierMatcher, default_matcher, load_matcher
from cachemux.semantic.threshold import DEFAULT_THRESHOLD
from cachemux.stores.base import CHANGES_RESET, Entry, Store
from cachemux.stores.disk import DiskStore
from cachemux.units import estimate_tokens

__all__ = ["FALLBACK_SECONDS_PER_TOKEN", "FLIGHT_TIMEOUT_S", "MAX_VALUE_BYTES", "PENDING_MAX_AGE_S", "CostInfo", "Match", "SemanticCache"]

log = logging.getLogger(__name__)

PROMPT_KEEP_CHARS = 2_000   # of each prompt kept in its entry, for inspection only
# The price of an answer with no measured latency, per estimated token, until this cache has
# measured its own: ~10 ms/token is the order of a hosted model's decode time per output token.
FALLBACK_SECONDS_PER_TOKEN = 0.01
PENDING_MAX_AGE_S = 3600.0  # a miss with no update for this long belongs to a call that failed
MAX_VALUE_BYTES = 1_000_000  # default max_value_bytes: UTF-8 bytes of one stored (serialised) answer
FLIGHT_TIMEOUT_S = 30.0  # default flight_timeout: the longest an identical miss waits for its leader
LEASE_POLL_S = 0.02  # how often a lease waiter reads the store for the other process's answer

_WARN_EVERY_S = 10.0
SNAPSHOT_MIN_ENTRIES = 1_000  # smaller indexes rebuild in well under a second: not worth a file
DRAIN_PER_SYNC = 4  # replayed entries moved into the ANN graph per sync (searched exactly until then)
_UNSET: Any = object()


@dataclass(frozen=True)
class CostInfo:
    """What ``cost_fn`` sees for one ``update``."""

    prompt: str
    llm_string: str
    value: str
    latency: float | None  # seconds from the miss to this update; None without a seen miss
    info: Any = None       # passed through from ``update(info=...)`` (adapters: generations)


@dataclass(frozen=True)
class Match:
    """A cache hit: ``kind`` is "exact" or "semantic"; ``similarity`` is the cosine (1.0 exact);
    ``score`` the matcher's score (a verifier's P(same question); the cosine for plain cosine);
    ``verify``: error-bounded mode asks the caller to run the model too and report with
    ``SemanticCache.feedback`` (drawn with a small probability that decays per entry);
    ``p_wrong``: error-bounded mode's learned probability that this semantic hit is wrong (the
    mean of ``ErrorBound.estimate``; None outside that mode)."""

    value: str
    kind: str
    key: str
    similarity: float
    cost: float
    score: float = 1.0
    verify: bool = False
    p_wrong: float | None = None


class SemanticCache(IndexPersistence):
    """A GDSF/LEC-evicted LLM answer cache with exact and semantic (embedding) matching.

    ``store``: where entries live (default: the embedded persistent ``DiskStore`` at
    ``default_store_dir()``, process-safe; ``MemoryStore()`` for an in-process cache,
    ``RedisStore(url)`` to share across hosts). ``policy``/``capacity`` configure the
    default store only (a given store has its own). ``embedder``: an ``Embedder``, a
    sentence-transformers name/path, or None for the packaged all-MiniLM-L6-v2 (``default_embedder()``:
    its int8 ONNX export through onnxruntime, else the fp32 torch model); ``semantic=False``
    makes an exact-only cache that never loads a model.
    ``matcher``: what decides a semantic hit (``cachemux.semantic.matcher``): default the shipped
    verifier (cosine + lexical features, fitted on QQP dev, precision >= 0.90 on QQP test) when the
    embedder is the packaged MiniLM it was fitted for, else plain cosine >= ``DEFAULT_THRESHOLD``;
    a ``Matcher``, or the path of a fitted matcher JSON. ``threshold=t`` means plain cosine >= t
    (not with ``matcher=``). ``max_error``: error-bounded mode (``cachemux.semantic.bounded``):
    each entry learns from ``feedback`` whether it may serve a neighbour, so that the served error
    stays under ``max_error``; ``judge(prompt, answer) -> bool | None`` grades a hit drawn for
    verification (probability ``verify_rate`` / (1 + the entry's feedback)).
    ``model_groups``: ``{group: [llm_string, ...]}`` or a
    function ``llm_string -> group | None`` naming configurations that may share answers.
    ``cost_fn`` / ``fallback_cost``: how entries are priced (module docstring); ``max_pending``:
    how many outstanding misses keep a cost clock. ``stats()["estimated"]`` counts the updates
    priced by the token estimate (no cost, no miss before them).

    Limits: ``max_value_bytes`` (default ``MAX_VALUE_BYTES``, 1,000,000 UTF-8 bytes of the stored
    value, i.e. the serialised answer; None: no limit): a larger answer is not cached
    (``stats()["too_large"]``) and a larger stored one (planted, or written under a higher limit)
    is never served (``stats()["too_large_skipped"]``). ``ttl``: seconds an entry may be served
    after it was written (None: forever); an expired entry is a miss and is deleted when a lookup
    meets it (``stats()["expired"]``); ``purge_expired()`` removes all of this namespace's; and a
    full store admitting a newcomer removes expired entries before any policy victim (the entry
    carries ``expires``; ``stats()["expired_evicted"]``, the store's ``stats()["expired"]``).

    ``index_path``: ``index_path``: the folder the
    semantic index is saved in, so a new process loads it and replays the store's change log
    instead of re-reading every entry (``cachemux.semantic.snapshot``); default (None): for a
    ``DiskStore`` its ``semantic-index`` subfolder, for other stores nothing is saved; False: never.
    It is saved after a full rebuild of at least ``SNAPSHOT_MIN_ENTRIES`` entries and, with
    ``save_every=N``, after every N index changes (both written by a background thread), at
    ``close()`` when the index changed, and by ``save_index()``.

    ``flight_timeout`` (default ``FLIGHT_TIMEOUT_S``, 30 s; 0 or None: off): how long an identical
    miss waits for the answer of the miss already in flight (module docstring); ``lease`` (seconds,
    default None: off): claim a missed key in a store shared by several processes so that only
    one of them generates it, the others polling the store for at most that long.
    """

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
        self.namespace = check_text("namespace", namespace)
        if threshold is not None and matcher is not None:
            raise ConfigError("threshold= means plain cosine >= threshold; pass it or matcher=, not both")
        if threshold is not None:
            CosineMatcher(threshold)  # validates
        self.semantic = bool(semantic)
        if not self.semantic:
            self.embedder: TextEmbedder | None = None
        elif embedder is None:
            self.embedder = default_embedder()
        elif isinstance(embedder, (str, os.PathLike)):
            self.embedder = Embedder(embedder)
        elif is_text_embedder(embedder):
            self.embedder = embedder
        else:
            raise ConfigError(f"embedder must be an Embedder, a model name/path or None, got {type(embedder).__name__}")
        self._embedder_id = "" if self.embedder is None else str(
            getattr(self.embedder, "model_name", type(self.embedder).__name__))
        # the id stored with each vector: the model and the form of the text it embedded
        self._vector_id = f"{self._embedder_id}|{EMBED_FORM}" if self._embedder_id else ""
        self.matcher = self._make_matcher(matcher, threshold)
        # plain-cosine threshold in use, or None when a verifier decides
        self.threshold = self.matcher.threshold if isinstance(self.matcher, CosineMatcher) else None
        if judge is not None and not callable(judge):
            raise ConfigError(f"judge must be a function (prompt, answer) -> bool | None, got {judge!r}")
        self.judge = judge
        self.bound = None if max_error is None else ErrorBound(max_error, verify_rate=verify_rate)
        self._decided: OrderedDict[str, tuple[str, float, float]] = OrderedDict()  # prompt key -> (entry, score, P)
        self._group_of = _model_groups(model_groups)
        if cost_fn is not None and not callable(cost_fn):
            raise ConfigError(f"cost_fn must be callable, got {cost_fn!r}")
        if size_fn is not None and not callable(size_fn):
            raise ConfigError(f"size_fn must be callable, got {size_fn!r}")
        self.cost_fn = cost_fn
        self.size_fn = size_fn
        self.fallback_cost = None if fallback_cost is None else _check_cost("fallback_cost", fallback_cost)
        self.casefold = bool(casefold)
        if not isinstance(candidates, int) or candidates < 1:
            raise ConfigError(f"candidates must be an int >= 1, got {candidates!r}")
        self.candidates = candidates
        self._index_options = dict(index_options or {})
        if not isinstance(max_pending, int) or max_pending < 1:
            raise ConfigError(f"max_pending must be an int >= 1, got {max_pending!r}")
        self.max_pending = max_pending
        if max_value_bytes is not None and (isinstance(max_value_bytes, bool) or not isinstance(max_value_bytes, int)
                                            or max_value_bytes < 1):
            raise ConfigError(f"max_value_bytes must be an int >= 1 or None, got {max_value_bytes!r}")
        self.max_value_bytes = max_value_bytes
        if isinstance(ttl, bool):
            raise ConfigError(f"ttl must be a number of seconds > 0 or None, got {ttl!r}")
        self.ttl = None if ttl is None else check_positive("ttl", ttl)
        for name, v in (("flight_timeout", flight_timeout), ("lease", lease)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1e6):
                raise ConfigError(f"{name} must be a number of seconds >= 0 or None (off), got {v!r}")
        self._flights = SingleFlight(flight_timeout) if flight_timeout else None
        self.lease = float(lease) if lease else None

        self._init_persistence(index_path, save_every)
        self._snapshot_changes = 0  # index mutations since the last snapshot was saved or loaded
        self._lock = threading.RLock()  # counters, pending misses (short; taken after _index_lock)
        # the index and the store change together under this lock: a store mutation and the index
        # update it implies (put -> add/evictions, delete, a vanished candidate), the change-log
        # sync and the search, so no thread's index update can land after a later one's or after a
        # sync that already applied the store's newer state (the drift of issue 11, case 5)
        self._index_lock = threading.RLock()
        self._index: PartitionedIndex | None = None  # built on first semantic use
        self._cursor = 0
        self._synced = False
        # the cost clocks: miss id -> (exact key, monotonic time of the miss, embedding or None),
        # oldest first, and per key the ids of its outstanding misses, oldest first
        self._pending: OrderedDict[int, tuple[str, float, np.ndarray | None]] = OrderedDict()
        self._pending_of: dict[str, deque[int]] = {}
        self._miss_ids = itertools.count()
        # seconds and estimated tokens of the latency-priced updates: the fallback price per token
        self._latency_seconds = 0.0
        self._latency_tokens = 0.0
        self._counts = dict.fromkeys(
            ("lookups", "exact_hits", "semantic_hits", "misses", "updates", "admitted", "rejected", "feedback",
             "evictions", "errors", "dropped", "exact_only", "estimated", "bad_embeddings", "skipped_entries",
             "too_large", "too_large_skipped", "expired", "expired_evicted", "snapshot_errors",
             "semantic_verified", "semantic_declined", "coalesced")
            + tuple(f"exact_only_{r}" for r in _LOSSES), 0)
        self._tokenizer: Any = _UNSET  # the embedder's tokenizer, looked up on first use
        self._loss_logged: set[str] = set()
        self._cost_saved = 0.0
        self._last_warning = -math.inf
        self._suppressed = 0

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
            return default_matcher(fitted if isinstance(fitted, str) else self._embedder_id, DEFAULT_THRESHOLD)
        if isinstance(matcher, (str, os.PathLike)):
            return load_matcher(matcher)
        if isinstance(matcher, (int, float)) or not isinstance(matcher, Matcher):
            raise ConfigError(f"matcher must be a cachemux Matcher or the path of a matcher JSON, got {matcher!r}")
        return matcher

    # ---- keys -----------------------------------------------------------------------------------
    def _model(self, llm_string: str) -> str:
        group = self._group_of(llm_string) if self._group_of is not None else None
        if group is not None and not isinstance(group, str):
            raise ConfigError(f"model_groups function must return a group name (str) or None, got {group!r}")
        return model_id(llm_string, group)  # injective: an llm_string cannot forge a group's key

    def key_for(self, prompt: str, llm_string: str) -> str:
        """The exact key ``prompt`` is stored under for ``llm_string`` in this namespace."""
        return exact_key(prompt, self._model(check_text("llm_string", llm_string)), self.namespace,
                         casefold=self.casefold)

    def _prepare(self, prompt: object, llm_string: object, embed_text: object, scope: object
                 ) -> tuple[str, str, str | None]:
        """Validate; return (exact key, partition, text to embed or None for exact-only)."""
        check_text("prompt", prompt)
        check_text("llm_string", llm_string)
        model = self._model(llm_string)  # type: ignore[arg-type]
        normalized = normalize_prompt(prompt, casefold=self.casefold)  # type: ignore[arg-type]
        key = exact_key(normalized, model, self.namespace, normalized=True, casefold=self.casefold)
        part = partition_id(self.namespace, model, check_text("scope", scope))
        if embed_text is None:
            text: str | None = normalized
        elif embed_text is False:
            text = None
        else:
            text = check_text("embed_text", embed_text).strip()
        if not self.semantic or not text:
            text = None
        return key, part, text

    def _loss(self, text: str | None) -> str | None:
        """Why ``text`` is matched exactly only ("off": no text to embed; else a
        ``cachemux.semantic.fidelity`` reason), or None if its embedding keeps all of it."""
        if text is None:
            return "off"
        emb = self.embedder
        assert emb is not None
        try:
            if self._tokenizer is _UNSET:
                self._tokenizer = tokenizer_of(emb)
            if self._tokenizer is not None:
                return embedding_loss(self._tokenizer, text, int(getattr(emb, "max_tokens", 0) or 0))
            text.encode("utf-8")  # a lone surrogate: no embedder can take it
            return None if emb.fits(text) else "truncated"
        except ConfigError:
            raise  # the model cannot be loaded: a configuration problem the user must see
        except UnicodeEncodeError:
            return "unencodable"
        except Exception as exc:
            self._fault("embedding check", exc)
            return "unencodable"

    def _embeddable(self, text: str | None) -> bool:
        return self._loss(text) is None

    def _embed(self, text: str) -> np.ndarray | None:
        assert self.embedder is not None
        try:
            return np.asarray(self.embedder.embed([embed_form(text)])[0], dtype=np.float32)
        except ConfigError:
            raise  # the model cannot be loaded: a configuration problem the user must see
        except Exception as exc:
            self._fault("embedding", exc)
            return None

    # ---- lookup ---------------------------------------------------------------------------------
    def lookup(self, prompt: str, llm_string: str, *, embed_text: str | bool | None = None,
               scope: str = "") -> str | None:
        """The cached answer for ``prompt`` under ``llm_string``, or None (a miss starts the cost
        clock). ``embed_text``: the text to compare by meaning instead of the whole prompt
        (adapters pass a chat's last question without serialisation boilerplate), or False for
        exact-only; ``scope``: the rest of the prompt, which a semantic match must share exactly
        (a chat's system prompt and earlier turns). The exact key always covers the whole prompt."""
        m = self.match(prompt, llm_string, embed_text=embed_text, scope=scope)
        return None if m is None else m.value

    async def alookup(self, prompt: str, llm_string: str, *, embed_text: str | bool | None = None,
                      scope: str = "") -> str | None:
        """``lookup`` for asyncio (see ``amatch``)."""
        m = await self.amatch(prompt, llm_string, embed_text=embed_text, scope=scope)
        return None if m is None else m.value

    def match(self, prompt: str, llm_string: str, *, embed_text: str | bool | None = None,
              scope: str = "") -> Match | None:
        """``lookup`` with the details of the hit (kind, matched key, similarity, its cost). A miss
        while an identical one is in flight waits for its answer (``flight_timeout``)."""
        got = self._begin(prompt, llm_string, embed_text, scope, caller())
        if isinstance(got, tuple):
            return self._end(got[0].wait(), got[1], got[2])
        return got

    async def amatch(self, prompt: str, llm_string: str, *, embed_text: str | bool | None = None,
                     scope: str = "") -> Match | None:
        """``match`` for asyncio: the lookup runs in a worker thread (store I/O, the embedding), the
        wait for an identical miss in flight in the event loop, so waiting tasks hold no thread."""
        import asyncio

        got = await asyncio.to_thread(self._begin, prompt, llm_string, embed_text, scope, caller())
        if isinstance(got, tuple):
            return self._end(await got[0].wait_async(), got[1], got[2])
        return got

    def _begin(self, prompt: str, llm_string: str, embed_text: str | bool | None, scope: str, owner: object
               ) -> Match | None | tuple[Flight, str, np.ndarray | None]:
        """The lookup up to the wait: a hit, a miss (None: the caller makes the call), or the
        flight to wait for with the miss's key and embedding (``_end`` after the wait)."""
        since = self._flights.mark() if self._flights is not None else 0
        key, part, text = self._prepare(prompt, llm_string, embed_text, scope)
        with self._lock:
            self._counts["lookups"] += 1
        try:
            entry = self.store.get(key)
        except Exception as exc:  # a store fault is a miss
            self._fault("lookup", exc)
            entry = None
        if entry is not None and self._servable(key, entry):
            return self._hit(Match(entry.value, "exact", key, 1.0, entry.cost))
        vec = None
        loss = self._loss(text) if self.semantic else "off"
        if loss is None:
            vec = self._embed(text)  # type: ignore[arg-type]
            if vec is not None and not np.all(np.isfinite(vec)):  # a broken model: no search, no index
                with self._lock:
                    self._counts["bad_embeddings"] += 1
                vec = None
            if vec is not None:
                found = self._nearest(part, vec, text, key)  # type: ignore[arg-type]
                if found is not None:
                    return self._hit(found)
        elif self.semantic:  # empty, embed_text=False, or an embedding that would lose part of it
            with self._lock:
                self._counts["exact_only"] += 1
                first = loss != "off" and loss not in self._loss_logged
                if loss != "off":
                    self._counts[f"exact_only_{loss}"] += 1
                    self._loss_logged.add(loss)
            if first:
                log.info("cachemux: a prompt is matched exactly only (%s: its embedding would lose part "
                         "of it); counted in stats()['exact_only_%s'], logged once", loss, loss)
        if self._flights is not None:
            state, got = self._flights.join(key, owner, since)
            if state == DONE:  # published while this lookup read the store
                return self._coalesced(got)
            if state == WAIT:
                return got, key, vec
            found = self._leased(key) if self.lease is not None else None
            if found is not None:
                self._flights.publish(key, found)
                return self._coalesced(found)
        self._missed(key, vec)
        return None

    def _end(self, answer: Match | None, key: str, vec: np.ndarray | None) -> Match | None:
        """After waiting for a flight: its answer, or a miss of the caller's own."""
        if answer is not None:
            return self._coalesced(answer)
        self._missed(key, vec)
        return None

    def _coalesced(self, m: Match) -> Match:
        with self._lock:
            self._counts["coalesced"] += 1
        return self._hit(m)

    def _leased(self, key: str) -> Match | None:
        """With ``lease``: claim ``key`` in the store; while another process holds the claim, poll
        the store for its answer, for at most ``lease`` seconds. None: make the call (claimed, no
        answer in time, or a store fault: logged, counted)."""
        try:
            if self.store.lease(key, self.lease):  # type: ignore[arg-type]
                return None
            deadline = time.monotonic() + self.lease  # type: ignore[operator]
            while time.monotonic() < deadline:
                time.sleep(LEASE_POLL_S)
                if self.store.peek(key) is not None:
                    entry = self.store.get(key)  # counts the request on the entry that serves it
                    if entry is not None and self._servable(key, entry):
                        return Match(entry.value, "exact", key, 1.0, entry.cost)
        except Exception as exc:
            self._fault("lease", exc)
        return None

    def release(self, prompt: str, llm_string: str, value: str | None = None, *, cost: float = 0.0,
                owner: object = None) -> None:
        """End a miss of ``prompt`` that will not be ``update``d: identical lookups waiting for it
        (``flight_timeout``) are served ``value`` (an answer not stored: not offered, or refused),
        or with None let go at once to make their own call. None ends only the flight that
        ``owner`` (default: the calling asyncio task, else thread) leads."""
        if self._flights is None:
            return
        key = self._prepare(prompt, llm_string, False, "")[0]
        if value is None:
            self._flights.abandon(key, caller() if owner is None else owner)
        else:
            self._flights.publish(key, Match(check_text("value", value), "exact", key, 1.0, _check_cost("cost", cost)))

    def _missed(self, key: str, vec: np.ndarray | None) -> None:
        """Count a miss and start its cost clock."""
        with self._lock:
            self._counts["misses"] += 1
            now = time.monotonic()
            miss = next(self._miss_ids)
            self._pending[miss] = (key, now, vec)
            self._pending_of.setdefault(key, deque()).append(miss)
            self._expire_pending(now)
        return None

    def _expire_pending(self, now: float) -> None:
        """Forget the oldest misses beyond ``max_pending`` or ``PENDING_MAX_AGE_S`` (caller holds the lock)."""
        pending = self._pending
        while pending:
            miss, (key, t, _) = next(iter(pending.items()))
            if len(pending) <= self.max_pending and now - t <= PENDING_MAX_AGE_S:
                return
            del pending[miss]
            self._take_miss(key)  # the globally oldest miss is also the oldest of its key

    def _take_miss(self, key: str) -> tuple[str, float, np.ndarray | None] | None:
        """Remove and return the oldest outstanding miss of ``key`` (caller holds the lock)."""
        queue = self._pending_of.get(key)
        if not queue:
            return None
        miss = queue.popleft()
        if not queue:
            del self._pending_of[key]
        return self._pending.pop(miss, None)

    def _too_large(self, value: str) -> bool:
        limit = self.max_value_bytes
        if limit is None or len(value) * 4 <= limit:  # at most 4 UTF-8 bytes per character
            return False
        return len(value) > limit or len(value.encode("utf-8", "surrogatepass")) > limit

    def _servable(self, key: str, entry: Entry) -> bool:
        """False (counted) for an entry over ``max_value_bytes`` or past its ``ttl`` or the
        ``expires`` its writer gave it (then deleted)."""
        if self._too_large(entry.value):
            with self._lock:
                self._counts["too_large_skipped"] += 1
            return False
        now = time.time()  # stale by this cache's ttl, or by the writer's (``expires``)
        if (self.ttl is None or now - entry.created <= self.ttl) and not (entry.expires is not None
                                                                         and now > entry.expires):
            return True
        with self._lock:
            self._counts["expired"] += 1
        try:
            self.store.delete(key)
        except Exception as exc:
            self._fault("delete", exc)
        with self._lock:
            if self._index is not None:
                self._index.remove(key)
        return False

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
                    with self._lock:
                        self._counts["expired"] += 1
                        if self._index is not None:
                            self._index.remove(key)
        except Exception as exc:
            self._fault("purge_expired", exc)
        return removed

    def unserved(self, reason: str, cost: float = 0.0) -> None:
        """A semantic hit this cache returned that the caller did not serve: it ran the model
        instead (``reason`` "verified": error-bounded mode drew the hit for a check; "declined":
        the route pricing found a model cheaper than the risk). Counted as a miss and in
        ``stats()["semantic_<reason>"]``, not as a hit or as cost saved."""
        if reason not in ("verified", "declined"):
            raise ConfigError(f"unserved reason must be 'verified' or 'declined', got {reason!r}")
        with self._lock:
            self._counts["semantic_hits"] -= 1
            self._counts["misses"] += 1
            self._counts[f"semantic_{reason}"] += 1
            self._cost_saved -= float(cost)

    def _hit(self, m: Match) -> Match:
        with self._lock:
            self._counts["exact_hits" if m.kind == "exact" else "semantic_hits"] += 1
            self._cost_saved += m.cost
        return m

    def _nearest(self, part: str, vec: np.ndarray, text: str, qkey: str) -> Match | None:
        """The nearest candidate the matcher (and, in error-bounded mode, the entry's learned rule)
        accepts. A plain-cosine matcher reads only the store entry it serves; the others peek
        at each candidate's prompt first and count the request only on the one served."""
        with self._index_lock:
            index = self._ensure_index(len(vec))
            self._sync(index)
            cands = index.search(part, vec, self.candidates)
        plain = type(self.matcher) is CosineMatcher and self.bound is None
        first = True
        for mkey, sim in cands:
            if sim < self.matcher.min_cosine:
                break
            try:
                entry = self.store.get(mkey) if plain else self.store.peek(mkey)
            except Exception as exc:
                self._fault("lookup", exc)
                return None
            if entry is None or entry.partition != part:  # evicted elsewhere, not yet synced
                self._recheck(index, mkey)
                continue
            # decided on the entry's own stored embedding, not only the index's copy (a loaded
            # snapshot, a replaced entry): the index proposes, the store's row decides
            sim = self._similarity(entry, vec)
            if sim is None or sim < self.matcher.min_cosine:
                self._recheck(index, mkey)
                continue
            if not self._servable(mkey, entry):  # too large, or expired
                continue
            if plain:
                return Match(entry.value, "semantic", mkey, sim, entry.cost, sim)
            cached = entry.meta.get("q", entry.prompt)
            score = self.matcher.score(text, cached, sim)
            if self.bound is None:
                if not self.matcher.accepts(text, cached, sim):
                    continue
                state, p_wrong = None, None
            else:
                # P(same) for the prior: the verifier's own; a cosine matcher's acceptance as a weak prior
                p_same = score if isinstance(self.matcher, VerifierMatcher) else (
                    0.9 if self.matcher.accepts(text, cached, sim) else 0.5)
                if first:  # feedback on the nearest candidate teaches even when it is not served
                    self._remember(qkey, mkey, score, p_same)
                    first = False
                state = entry.meta.get("vc")
                p_wrong, upper = self.bound.estimate(score, p_same, state)
                if upper > self.bound.max_error:
                    continue
                self._remember(qkey, mkey, score, p_same)
            try:
                served = self.store.get(mkey)  # counts the request on the entry that serves it
            except Exception as exc:
                self._fault("lookup", exc)
                return None
            if served is None:
                continue
            verify = self.bound is not None and self.bound.wants_check(state)
            if verify and self.judge is not None:
                verdict = self._judge(text, served.value)
                if verdict is not None:
                    self._learn(mkey, score, p_same, verdict)
                    with self._lock:
                        self._decided.pop(qkey, None)
                    if not verdict:
                        return None
                verify = False
            return Match(served.value, "semantic", mkey, sim, served.cost, score, verify, p_wrong)
        return None

    def _judge(self, prompt: str, answer: str) -> bool | None:
        try:
            verdict = self.judge(prompt, answer)  # type: ignore[misc]
        except Exception as exc:  # a failing judge gives no verdict
            self._fault("judge", exc)
            return None
        return None if verdict is None else bool(verdict)

    def _remember(self, qkey: str, mkey: str, score: float, p_same: float) -> None:
        with self._lock:
            self._decided[qkey] = (mkey, score, p_same)
            self._decided.move_to_end(qkey)
            while len(self._decided) > self.max_pending:
                self._decided.popitem(last=False)

    def feedback(self, prompt: str, llm_string: str, ok: bool, *, scope: str = "") -> bool:
        """Error-bounded mode: whether the answer of the neighbour last considered for
        ``prompt`` (served or not) is right for it. Teaches that entry (its metadata) and the
        cache's shared calibration. False when there is nothing to attribute it to (no semantic
        candidate for this prompt in this process, or not in error-bounded mode)."""
        if not isinstance(ok, bool):
            raise ConfigError(f"feedback ok must be True or False, got {ok!r}")
        key = self._prepare(prompt, llm_string, None, scope)[0]
        if self.bound is None:
            return False
        with self._lock:
            got = self._decided.pop(key, None)
        if got is None:
            return False
        mkey, score, p_same = got
        self._learn(mkey, score, p_same, ok)
        return True

    def candidate_of(self, prompt: str, llm_string: str, *, scope: str = "") -> str | None:
        """Error-bounded mode: the key of the entry the last lookup of ``prompt`` considered and
        that ``feedback`` would teach (None if none is waiting for feedback)."""
        key = self._prepare(prompt, llm_string, None, scope)[0]
        with self._lock:
            got = self._decided.get(key)
        return None if got is None else got[0]

    def candidate_value(self, prompt: str, llm_string: str, *, scope: str = "") -> str | None:
        """Error-bounded mode: the stored answer of ``candidate_of``'s entry (served or not), so a
        caller that ran the model anyway can compare the two and report ``feedback``; None if no
        candidate waits for feedback, or its entry is gone or too large."""
        mkey = self.candidate_of(prompt, llm_string, scope=scope)
        if mkey is None:
            return None
        try:
            entry = self.store.peek(mkey)
        except Exception as exc:
            self._fault("lookup", exc)
            return None
        if entry is None or self._too_large(entry.value):
            return None
        return entry.value

    def _learn(self, mkey: str, score: float, p_same: float, ok: bool) -> None:
        assert self.bound is not None
        with self._lock:
            self._counts["feedback"] += 1
        try:
            entry = self.store.peek(mkey)
            new = self.bound.observe(score, ok, None if entry is None else entry.meta.get("vc"))
            if entry is not None:  # written back: the learned rule is the entry's, in any process
                result = self.store.put(mkey, Entry(
                    value=entry.value, cost=entry.cost, size=entry.size, partition=entry.partition, prompt=entry.prompt,
                    embedding=entry.embedding, created=entry.created, meta={**entry.meta, "vc": new},
                    expires=entry.expires))
                if not result.admitted:
                    with self._lock:
                        if self._index is not None:
                            self._index.remove(mkey)
        except Exception as exc:
            self._fault("feedback", exc)

    # ---- update ---------------------------------------------------------------------------------
    def update(self, prompt: str, llm_string: str, value: str, cost: float | None = None,
               size: float | None = None, *, embed_text: str | bool | None = None, scope: str = "",
               info: Any = None, embedding: np.ndarray | None = None, tokens: float | None = None) -> bool:
        """Offer the answer to the store; True if admitted. A store fault drops it (logged).
        ``cost``: see the module docstring for what prices the entry without it. ``embed_text``
        and ``scope`` as in ``lookup`` (pass the same). ``embedding``: a vector already computed
        for this prompt by the same model (bulk loads), used instead of running the model: the
        vector of ``cachemux.semantic.embed_form.embed_form(text)``, the form lookups embed.
        ``tokens``: the estimated tokens of question and answer (default: characters / 4 of
        ``prompt`` and ``value``; adapters storing serialised answers pass the plain texts').
        Identical lookups waiting for this key's miss (``flight_timeout``) are served ``value``
        once it returns, admitted or not."""
        key, part, text = self._prepare(prompt, llm_string, embed_text, scope)
        priced: list[float] = []  # the entry's cost once known: what the waiters' hits saved
        try:
            return self._update(key, part, text, prompt, llm_string, value, cost, size, info, embedding,
                                tokens, priced)
        finally:
            if self._flights is not None and isinstance(value, str):
                self._flights.publish(key, Match(value, "exact", key, 1.0, priced[-1] if priced else 0.0))

    def _update(self, key: str, part: str, text: str | None, prompt: str, llm_string: str, value: str,
                cost: float | None, size: float | None, info: Any, embedding: np.ndarray | None,
                tokens: float | None, priced: list[float]) -> bool:
        if embedding is not None:
            embedding = _check_vector(embedding)
            if self.semantic and len(embedding) != self.embedder.dim:  # type: ignore[union-attr]
                raise ConfigError(f"embedding has dimension {len(embedding)}, the embedder gives "
                                  f"{self.embedder.dim}")  # type: ignore[union-attr]
        check_text("value", value)
        if cost is not None:
            cost = _check_cost("cost", cost)
        if self._too_large(value):  # not cached: the miss's clock goes with it
            with self._lock:
                self._counts["updates"] += 1
                self._counts["too_large"] += 1
                self._take_miss(key)
                first = not self._counts["too_large"] > 1
            if first:
                log.warning("cachemux: an answer of %d characters exceeds max_value_bytes=%d and is not "
                            "cached; counted in stats()['too_large'], logged once", len(value), self.max_value_bytes)
            return False
        if size is None and self.size_fn is not None:
            size = self.size_fn(value)
        size = 1.0 if size is None else check_positive("size", size)
        tokens = estimate_tokens(prompt, value) if tokens is None else _check_cost("tokens", tokens)
        with self._lock:
            self._counts["updates"] += 1
            now = time.monotonic()
            self._expire_pending(now)
            pending = self._take_miss(key)
        latency = None if pending is None else max(0.0, now - pending[1])
        if cost is None and self.cost_fn is not None:
            cost = _check_cost("cost_fn result", self.cost_fn(CostInfo(prompt, llm_string, value, latency, info)))
        if cost is None:
            with self._lock:
                if latency is not None:  # the entry is priced in seconds: learn seconds per token
                    cost = latency
                    self._latency_seconds += latency
                    self._latency_tokens += tokens
                elif self.fallback_cost is not None:
                    cost = self.fallback_cost
                else:
                    cost = tokens * self.seconds_per_token()
                    self._counts["estimated"] += 1
        priced.append(cost)
        vec = pending[2] if pending is not None else None
        if embedding is not None and self.semantic:
            vec = embedding
        elif vec is None and self._embeddable(text):
            vec = self._embed(text)  # type: ignore[arg-type]
        if vec is not None and (vec.ndim != 1 or not vec.size or not np.all(np.isfinite(vec))):
            with self._lock:  # a model that gave NaN/inf: keep the answer, exact-only
                self._counts["bad_embeddings"] += 1
            vec = None
        created = time.time()
        entry = Entry(value=value, cost=cost, size=size, partition=part, prompt=prompt[:PROMPT_KEEP_CHARS],
                      embedding=vec, created=created, expires=None if self.ttl is None else created + self.ttl,
                      meta={"ns": self.namespace, "llm": llm_string[:PROMPT_KEEP_CHARS], "llm_id": _llm_id(llm_string),
                            "emb": self._vector_id,
                            **({"q": text[:PROMPT_KEEP_CHARS]} if vec is not None and text and text != prompt else {})})
        with self._index_lock:  # the put and its index update as one step (see __init__)
            try:
                result = self.store.put(key, entry)
            except Exception as exc:  # a store fault drops the entry; the app goes on
                self._fault("update", exc)
                with self._lock:
                    self._counts["dropped"] += 1
                return False
            with self._lock:
                self._counts["admitted" if result.admitted else "rejected"] += 1
                self._counts["evictions"] += len(result.evicted)
                self._counts["expired_evicted"] += result.expired
            if self._index is not None:
                for k in result.evicted:
                    self._index.remove(k)
                if result.admitted and vec is not None:
                    self._index.add(key, part, vec)
                else:
                    self._index.remove(key)
        return result.admitted

    def seconds_per_token(self) -> float:
        """The fallback price per estimated token: seconds per token over this cache's
        latency-priced updates, or ``FALLBACK_SECONDS_PER_TOKEN`` before any."""
        with self._lock:
            if self._latency_tokens > 0:
                return self._latency_seconds / self._latency_tokens
        return FALLBACK_SECONDS_PER_TOKEN

    # ---- maintenance ----------------------------------------------------------------------------
    def delete(self, prompt: str, llm_string: str) -> bool:
        """Forget the exact entry for ``prompt`` (True if it was cached)."""
        key = self.key_for(prompt, llm_string)
        with self._index_lock:
            try:
                found = self.store.delete(key)
            except Exception as exc:
                self._fault("delete", exc)
                return False
            if self._index is not None:
                self._index.remove(key)
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
        with self._index_lock:
            self._clear(everything, llm_id, llm_string, removed)

    def _clear(self, everything: bool, llm_id: str | None, llm_string: str | None, removed: list[str]) -> None:
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
            self._fault("clear", exc)
        if self._index is None:  # the caller holds _index_lock
            return
        if everything:
            self._index.clear()
            self._synced = False  # re-read the store on the next semantic lookup
        else:
            for key in removed:
                self._index.remove(key)

    def warmup(self) -> SemanticCache:
        """Load the embedding model and build the index now instead of on first use."""
        if self.embedder is not None:
            with self._index_lock:
                self._sync(self._ensure_index(self.embedder.dim))
        return self

    def stats(self) -> dict[str, Any]:
        """Counters since this object was created (this process): hits by kind, misses, cost
        saved (sum of the hit entries' costs), evictions caused by our updates, faults; plus
        ``store``, the store's own counters across all its users, when it keeps them."""
        with self._lock:
            s: dict[str, Any] = dict(self._counts)
            s["hits"] = s["exact_hits"] + s["semantic_hits"]
            s["hit_ratio"] = s["hits"] / s["lookups"] if s["lookups"] else 0.0
            s["cost_saved"] = self._cost_saved
            if self.bound is not None:
                s["bounded"] = self.bound.stats()
        with self._index_lock:
            s["indexed"] = 0 if self._index is None else len(self._index)
            s["ann_partitions"] = 0 if self._index is None else sum(
                1 for p in self._index.partitions() if self._index.part(p).backend != "exact")  # type: ignore[union-attr]
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
        with self._index_lock:
            if self._index is None:
                return
            self._sync(self._index)
            self._index.check_invariants()
            keys = set(self.store.keys())
            stray = [k for k in self._index.keys() if k not in keys]
            missing = [k for k in keys if k not in self._index
                       and self._indexable(self._peek(k), self._index.dim, count=False)]
        if stray:
            raise InvariantError(f"semantic index holds {len(stray)} keys the store does not, e.g. {stray[0]!r}")
        if missing:
            raise InvariantError(f"semantic index lacks {len(missing)} searchable entries of the store, "
                                 f"e.g. {missing[0]!r}")

    def close(self) -> None:
        """Save the semantic index if it changed since it was last saved or loaded (see
        ``index_path``), then close the store."""
        self._close_index()
        self.store.close()

    def __enter__(self) -> SemanticCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- index <-> store --------------------------------------------------------------------------
    def _ensure_index(self, dim: int) -> PartitionedIndex:
        if self._index is None:
            self._index = PartitionedIndex(dim, **self._index_options)
        return self._index

    def _sync(self, index: PartitionedIndex) -> None:
        """Apply the store's change log (caller holds the index lock). The first sync starts from
        a saved snapshot when there is a usable one (then replays the log from its position),
        else rebuilds from the store. Faults skip the sync; an entry that cannot be read or
        indexed is skipped alone (counted), never the whole sync."""
        try:
            rebuilt = False
            if not self._synced:
                self._load_snapshot(index)
            cursor, ops = self.store.changes(self._cursor)
            if not self._synced or any(op == CHANGES_RESET for op, _ in ops):
                if self._synced:  # a snapshot older than the retained log, or another store's
                    log.info("semantic index: change log reset at cursor %d: rebuilding", self._cursor)
                self._rebuild(index)
                ops = [(op, k) for op, k in ops if op != CHANGES_RESET]
                self._synced = rebuilt = True
                self._snapshot_changes += max(1, len(index))  # any saved snapshot is now behind
            last = {key: op for op, key in ops}  # what each key's changes amount to: its last op
            for key, op in last.items():
                if op == "del":
                    index.remove(key)
            self._index_entries(index, [key for key, op in last.items() if op == "add"])
            self._cursor = cursor
            self._snapshot_changes += len(ops)
            index.drain(DRAIN_PER_SYNC)
        except Exception as exc:
            self._fault("index sync", exc)
            return
        if (rebuilt and len(index) >= SNAPSHOT_MIN_ENTRIES) or (
                self.save_every is not None and self._snapshot_changes >= self.save_every):
            self._save_later(index)  # copied now, written by a background thread

    def _peek(self, key: str) -> Entry | None:
        """The entry for the index, or None when it is unreadable (a corrupt row: counted, skipped).
        Backend faults (``Unavailable``, a closed store) propagate: the sync is retried later."""
        try:
            return self.store.peek(key)
        except CorruptEntryError as exc:
            with self._lock:
                self._counts["skipped_entries"] += 1
            log.debug("cachemux: entry %r skipped by the index: %s", key, exc)
            return None

    def _rebuild(self, index: PartitionedIndex) -> None:
        index.clear()
        parts: dict[str, tuple[list[str], list[np.ndarray]]] = {}
        for key in self.store.keys():
            entry = self._peek(key)
            if self._indexable(entry, index.dim):
                keys, vecs = parts.setdefault(entry.partition, ([], []))  # type: ignore[union-attr]
                keys.append(key)
                vecs.append(entry.embedding)  # type: ignore[union-attr,arg-type]
        for part, (keys, vecs) in parts.items():  # one bulk load per partition (ANN built once)
            index.add_many(keys, part, np.stack(vecs))
        if parts:
            log.info("semantic index: %d entries loaded from %s", len(index), type(self.store).__name__)

    def _indexable(self, entry: Entry | None, dim: int, *, count: bool = True) -> bool:
        # gone, exact-only, or embedded by another model: served exactly only
        if entry is None or entry.embedding is None or entry.meta.get("emb") != self._vector_id:
            return False
        if len(entry.embedding) != dim:  # our model's id but another shape: a damaged row
            if count:
                with self._lock:
                    self._counts["skipped_entries"] += 1
            return False
        return True

    def _similarity(self, entry: Entry, vec: np.ndarray) -> float | None:
        """The cosine between ``vec`` and ``entry``'s stored embedding, None if it has none we can use."""
        e = entry.embedding
        if e is None or entry.meta.get("emb") != self._vector_id or e.shape != vec.shape:
            return None
        ne, nv = float(np.linalg.norm(e)), float(np.linalg.norm(vec))
        if not (ne > 0 and nv > 0):
            return None
        return float(np.dot(e, vec)) / (ne * nv)

    def _recheck(self, index: PartitionedIndex, key: str) -> None:
        """A candidate the store no longer served (or under another partition): re-read it under
        the index lock, so a thread that re-admitted it meanwhile is not undone, and index what
        the store holds now (nothing, or the entry in its partition). Faults keep the index as
        it is: the next sync or candidate check corrects it."""
        with self._index_lock:
            try:
                self._index_entry(index, key, self._peek(key))
            except Exception as exc:
                self._fault("index check", exc)

    def _index_entries(self, index: PartitionedIndex, keys: list[str]) -> None:
        """Index what the store holds now for ``keys`` (a change-log replay): one batch per
        partition, deferred from the ANN graph (see ``_index_entry``)."""
        parts: dict[str, tuple[list[str], list[np.ndarray]]] = {}
        try:
            entries = self.store.peek_many(keys)
        except CorruptEntryError:  # one damaged row: read them one by one, skipping (counting) it
            entries = {k: self._peek(k) for k in keys}
        for key in keys:
            index.remove(key)
            entry = entries.get(key)
            if self._indexable(entry, index.dim):
                got = parts.setdefault(entry.partition, ([], []))  # type: ignore[union-attr]
                got[0].append(key)
                got[1].append(entry.embedding)  # type: ignore[union-attr,arg-type]
        for part, (ks, vecs) in parts.items():
            index.add_many(ks, part, np.stack(vecs), defer=True)

    def _index_entry(self, index: PartitionedIndex, key: str, entry: Entry | None) -> bool:
        index.remove(key)
        if not self._indexable(entry, index.dim):
            return False
        # deferred: a replay of thousands of changes must not insert into the HNSW graph one by one
        # (~5 ms each) before the lookup that triggered it; each sync then drains a few
        index.add(key, entry.partition, entry.embedding, defer=True)  # type: ignore[union-attr,arg-type]
        return True

    def _fault(self, op: str, exc: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            self._counts["errors"] += 1
            if now - self._last_warning < _WARN_EVERY_S:
                self._suppressed += 1
                log.debug("cachemux %s failed: %s: %s", op, type(exc).__name__, exc)
                return
            suppressed, self._suppressed, self._last_warning = self._suppressed, 0, now
        more = f" ({suppressed} similar faults since the last warning)" if suppressed else ""
        kind = type(exc).__name__
        if isinstance(exc, StoreError) and kind != "StoreError":  # e.g. Unavailable: still a store fault
            kind = f"StoreError ({kind})"
        log.warning("cachemux %s failed, served as a miss / dropped: %s: %s%s", op, kind, exc, more)


def _llm_id(llm_string: str) -> str:
    # entries keep only the head of a long llm_string for inspection: clear(llm_string=) matches this
    return hashlib.blake2b(llm_string.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _written_by(meta: Mapping[str, Any], llm_string: str, llm_id: str) -> bool:
    if "llm_id" in meta:
        return meta["llm_id"] == llm_id
    # an entry from before llm_id: its "llm" is exact only when it was not cut
    return len(llm_string) < PROMPT_KEEP_CHARS and meta.get("llm") == llm_string


def _check_cost(name: str, cost: object) -> float:
    if isinstance(cost, bool):  # a flag passed by mistake, not a cost
        raise ConfigError(f"{name} must be a finite number >= 0, got {cost!r}")
    return check_nonnegative(name, cost)


def _check_vector(vec: object) -> np.ndarray:
    try:
        v = np.asarray(vec, dtype=np.float32)
    except (TypeError, ValueError):
        raise ConfigError(f"embedding must be a vector of numbers, got {type(vec).__name__}") from None
    if v.ndim != 1 or not v.size or not np.all(np.isfinite(v)):
        raise ConfigError(f"embedding must be a finite 1-D vector, got shape {v.shape}")
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def _model_groups(groups: Mapping[str, Iterable[str]] | Callable[[str], str | None] | None
                  ) -> Callable[[str], str | None] | None:
    if groups is None:
        return None
    if callable(groups) and not isinstance(groups, Mapping):
        # a group is keyed by what decides its members: the function's behaviour, not its name
        ident = callable_identity(groups)
        if ident is None:
            raise ConfigError(f"model_groups function {groups!r:.80} cannot be keyed by what it does (it reads "
                              "objects that are not plain data); pass {group: [llm_string, ...]} instead")

        def group_of(llm_string: str) -> str | None:
            group = groups(llm_string)
            if group is not None and not isinstance(group, str):
                raise ConfigError(f"model_groups function must return a group name (str) or None, got {group!r}")
            return None if group is None else f"{group}\x00{ident}"

        return group_of
    if not isinstance(groups, Mapping):
        raise ConfigError(f"model_groups must be {{group: [llm_string, ...]}} or a function, got {groups!r}")
    member: dict[str, str] = {}
    for group, llms in groups.items():
        check_text("model group name", group)
        if isinstance(llms, str):
            raise ConfigError(f"model group {group!r} must list llm_strings, got the single string {llms!r:.80}")
        for llm in llms:
            check_text(f"member of model group {group!r}", llm)
            if llm in member and member[llm] != group:
                raise ConfigError(f"llm_string {llm!r:.80} is in two model groups: {member[llm]!r} and {group!r}")
            member[llm] = group
    # a group is keyed by its members: two apps that each call a group "G" share answers only if
    # their "G" holds the same configurations
    tag = {g: hashlib.blake2b("\x00".join(sorted(m for m, h in member.items() if h == g)).encode(
        "utf-8", "surrogatepass"), digest_size=12).hexdigest() for g in set(member.values())}
    keyed = {llm: f"{g}\x00{tag[g]}" for llm, g in member.items()}
    return keyed.get
