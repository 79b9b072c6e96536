"""The semantic LLM cache: exact key first, then nearest neighbour within a partition, over any store.

Framework-agnostic (no LangChain here): adapters call ``lookup``/``update`` with the prompt text,
the model configuration string and the answer serialised as text. ``SemanticCache`` orchestrates
parts that each own their state and say more in their own docstrings:

    locator   exact key, partition, text compared by meaning          (cachemux.semantic.locator)
    gate      which texts are embedded, and their vectors             (cachemux.semantic.gate)
    mirror    the vector index in step with the store, its snapshot   (cachemux.semantic.mirror, .persist)
    decider   matcher, error bound and its feedback                   (cachemux.semantic.decider)
    clock     miss clocks and the price of an entry                   (cachemux.semantic.pricing)
    limits    value size and ttl                                      (cachemux.semantic.limits)
    flights   identical misses in flight: one call                    (cachemux.semantic.flight)
    stats     counters; fault          faults, logged, rate-limited   (cachemux.semantic.stats)

Request path (``lookup``)::

    exact key = hash(namespace, model configuration or its group, normalised prompt)
    store.get(exact key)                      -> exact hit (no embedding computed)
    embed(prompt) ; nearest neighbours among the cached prompts of the same partition
    decider accepts (prompt, neighbour, cosine) and store.get(match)
                                              -> semantic hit, counted on the matched entry
    an identical miss in flight               -> wait for its answer (``flight_timeout``)
    otherwise                                 -> miss; the clock starts for the cost

**P(q) per semantic cluster.** A semantic hit calls ``store.get`` on the *matched* entry, so the
store's policy counts the request on the entry that answered it: the frequency GDSF and LEC use
is that of the cluster of paraphrases the entry serves, not of one spelling.

**Faults never reach the application.** Any exception from the store (``StoreError``, a Redis
timeout, a broken disk) in ``lookup`` makes it a miss; in ``update`` the entry is dropped. Both
are logged (a warning at most every 10 s) and counted in ``stats()["errors"]``. Bad *arguments*
(a non-``str`` prompt, a negative cost, ...) raise ``ConfigError``: those are bugs in the caller.

**Documented input behaviour.** An empty or whitespace-only prompt is cached by exact key only,
and so is one whose embedding would lose part of it (``cachemux.semantic.gate``; counted in
``stats()["exact_only_<reason>"]``). There is no size limit on exact keys (keying is linear in
the prompt's length); entries keep only the first 2,000 characters of their prompt for inspection.
"""

from __future__ import annotations

import time

import numpy as np

from cachemux.errors import ConfigError
from cachemux.semantic.flight import DONE, WAIT, Flight, caller
from cachemux.semantic.keys import check_text
from cachemux.semantic.locator import Prepared
from cachemux.semantic.match import Match
from cachemux.semantic.parts import FLIGHT_TIMEOUT_S, CacheParts
from cachemux.semantic.pricing import check_cost

__all__ = ["FLIGHT_TIMEOUT_S", "LEASE_POLL_S", "SemanticCache"]

LEASE_POLL_S = 0.02  # how often a lease waiter reads the store for the other process's answer


class SemanticCache(CacheParts):
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
    (not with ``matcher=``). ``max_error``: error-bounded mode (``cachemux.semantic.decider``);
    ``judge(prompt, answer) -> bool | None`` grades a hit drawn for verification (probability
    ``verify_rate`` / (1 + the entry's feedback)).
    ``model_groups``: ``{group: [llm_string, ...]}`` or a function ``llm_string -> group | None``
    naming configurations that may share answers (``cachemux.semantic.locator``).
    ``cost_fn`` / ``fallback_cost`` / ``max_pending``: how entries are priced
    (``cachemux.semantic.pricing``); ``stats()["estimated"]`` counts the updates priced by the
    token estimate. ``max_value_bytes`` / ``ttl``: ``cachemux.semantic.limits``; a larger answer is
    not cached (``stats()["too_large"]``), a larger stored one never served
    (``too_large_skipped``), a stale one is a miss and deleted (``expired``); ``purge_expired()``
    removes this namespace's; a full store removes expired entries before any policy victim.
    ``index_path`` / ``save_every``: where and how often the semantic index is saved
    (``cachemux.semantic.persist``: default the ``semantic-index`` folder of a ``DiskStore``; False:
    never). ``flight_timeout`` (default 30 s; 0 or None: off): how long an identical miss waits
    for the answer of the miss already in flight; ``lease`` (seconds, default off): claim a
    missed key in a store shared by several processes so that only one of them generates it
    (``cachemux.semantic.flight``).
    """

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
              scope: str = "", where: Prepared | None = None) -> Match | None:
        """``lookup`` with the details of the hit (kind, matched key, similarity, its cost). A miss
        while an identical one is in flight waits for its answer (``flight_timeout``). ``where``:
        the request's ``place``, when the caller placed it already (then ``embed_text`` and
        ``scope`` are not read again)."""
        got = self._begin(prompt, llm_string, embed_text, scope, None, where)  # owner: this thread, if it misses
        if isinstance(got, tuple):
            return self._end(got[0].wait(), got[1], got[2])
        return got

    async def amatch(self, prompt: str, llm_string: str, *, embed_text: str | bool | None = None,
                     scope: str = "", where: Prepared | None = None) -> Match | None:
        """``match`` for asyncio: the lookup runs in a worker thread (store I/O, the embedding), the
        wait for an identical miss in flight in the event loop, so waiting tasks hold no thread."""
        import asyncio

        got = await asyncio.to_thread(self._begin, prompt, llm_string, embed_text, scope, caller(), where)
        if isinstance(got, tuple):
            return self._end(await got[0].wait_async(), got[1], got[2])
        return got

    def _begin(self, prompt: str, llm_string: str, embed_text: str | bool | None, scope: str, owner: object,
               where: Prepared | None = None) -> Match | None | tuple[Flight, str, np.ndarray | None]:
        """The lookup up to the wait: a hit, a miss (None: the caller makes the call), or the
        flight to wait for with the miss's key and embedding (``_end`` after the wait).
        ``owner``: who looks up (None: the calling task or thread, worked out only on a miss)."""
        since = self.flights.mark() if self.flights is not None else 0
        if where is None:
            where = self._prepare(prompt, llm_string, embed_text, scope)
        key, text = where.key, where.text
        self.counters.count("lookups")
        try:
            entry = self.store.get(key)
        except Exception as exc:  # a store fault is a miss
            self.fault("lookup", exc)
            entry = None
        if entry is not None and self._servable(key, entry):
            return self._hit(Match(entry.value, kind="exact", key=key, similarity=1.0, cost=entry.cost))
        vec = None
        loss = self.gate.loss(text) if self.semantic else "off"
        if loss is None:
            vec = self.gate.vector(text)  # type: ignore[arg-type]
            if vec is not None:
                found = self._nearest(where.part, vec, text, key)  # type: ignore[arg-type]
                if found is not None:
                    return self._hit(found)
        elif self.semantic:  # empty, embed_text=False, or an embedding that would lose part of it
            self.gate.exact_only(loss)
        if self.flights is not None:
            state, got = self.flights.join(key, caller() if owner is None else owner, since)
            if state == DONE:  # published while this lookup read the store
                return self._coalesced(got)
            if state == WAIT:
                return got, key, vec
            found = self._leased(key) if self.lease is not None else None
            if found is not None:
                self.flights.publish(key, found)
                return self._coalesced(found)
        self.clock.start(key, vec)
        return None

    def _end(self, answer: Match | None, key: str, vec: np.ndarray | None) -> Match | None:
        """After waiting for a flight: its answer, or a miss of the caller's own."""
        if answer is not None:
            return self._coalesced(answer)
        self.clock.start(key, vec)
        return None

    def _coalesced(self, m: Match) -> Match:
        self.counters.add(coalesced=1)
        return self._hit(m)

    def _leased(self, key: str) -> Match | None:
        """With ``lease``: claim ``key`` in the store; while another process holds the claim, poll
        the store for its answer, for at most ``lease`` seconds. None: make the call (claimed, no
        answer in time, or a store fault: logged, counted)."""
        lease = self.lease
        assert lease is not None
        try:
            if self.store.lease(key, lease):
                return None
            deadline = time.monotonic() + lease
            while time.monotonic() < deadline:
                time.sleep(LEASE_POLL_S)
                if self.store.peek(key) is not None:
                    entry = self.store.get(key)  # counts the request on the entry that serves it
                    if entry is not None and self._servable(key, entry):
                        return Match(entry.value, kind="exact", key=key, similarity=1.0, cost=entry.cost)
        except Exception as exc:
            self.fault("lease", exc)
        return None

    def release(self, prompt: str, llm_string: str, value: str | None = None, *, cost: float = 0.0,
                owner: object = None, where: Prepared | None = None) -> None:
        """End a miss of ``prompt`` that will not be ``update``d: identical lookups waiting for it
        (``flight_timeout``) are served ``value`` (an answer not stored: not offered, or refused),
        or with None let go at once to make their own call. None ends only the flight that
        ``owner`` (default: the calling asyncio task, else thread; ``flight.ANY``: whoever) leads."""
        if self.flights is None:
            return
        key = (where or self._prepare(prompt, llm_string, False, "")).key
        if value is None:
            self.flights.abandon(key, caller() if owner is None else owner)
        else:
            self.flights.publish(key, Match(check_text("value", value), kind="exact", key=key, similarity=1.0,
                                               cost=check_cost("cost", cost)))

    def unserved(self, reason: str, cost: float = 0.0) -> None:
        """A semantic hit this cache returned that the caller did not serve: it ran the model
        instead (``reason`` "verified": error-bounded mode drew the hit for a check; "declined":
        the route pricing found a model cheaper than the risk). Counted as a miss and in
        ``stats()["semantic_<reason>"]``, not as a hit or as cost saved."""
        if reason not in ("verified", "declined"):
            raise ConfigError(f"unserved reason must be 'verified' or 'declined', got {reason!r}")
        self.counters.add(**{"semantic_hits": -1, "misses": 1, f"semantic_{reason}": 1, "cost_saved": -float(cost)})

    def _hit(self, m: Match) -> Match:
        self.counters.hit(m.kind, m.cost)
        return m

    def _nearest(self, part: str, vec: np.ndarray, text: str, qkey: str) -> Match | None:
        """The nearest candidate the decider accepts. A plain-cosine matcher reads only the store
        entry it serves; the others peek at each candidate's prompt first and count the request
        only on the one served."""
        cands = self.mirror.search(part, vec, self.candidates)
        decider, plain, first = self.decider, self.decider.plain, True
        for mkey, sim in cands:
            if sim < decider.matcher.min_cosine:
                break
            try:
                entry = self.store.get(mkey) if plain else self.store.peek(mkey)
            except Exception as exc:
                self.fault("lookup", exc)
                return None
            if entry is None or entry.partition != part:  # evicted elsewhere, not yet synced
                self.mirror.recheck(mkey)
                continue
            # decided on the entry's own stored embedding, not only the index's copy (a loaded
            # snapshot, a replaced entry): the index proposes, the store's row decides
            sim = self.mirror.similarity(entry, vec)  # type: ignore[assignment]
            if sim is None or sim < decider.matcher.min_cosine:
                self.mirror.recheck(mkey)
                continue
            if not self._servable(mkey, entry):  # too large, or expired
                continue
            if plain:
                return Match(entry.value, kind="semantic", key=mkey, similarity=sim, cost=entry.cost, score=sim)
            verdict = decider.consider(text, entry.meta.get("q", entry.prompt), sim, entry, qkey, mkey, first)
            first = False
            if verdict is None:
                continue
            try:
                served = self.store.get(mkey)  # counts the request on the entry that serves it
            except Exception as exc:
                self.fault("lookup", exc)
                return None
            if served is None:
                continue
            verify = decider.check(text, served.value, qkey, mkey, verdict)
            if verify is None:
                return None
            return Match(served.value, kind="semantic", key=mkey, similarity=sim, cost=served.cost, score=verdict.score,
                         verify=verify, p_wrong=verdict.p_wrong)
        return None

    # ---- error-bounded mode -------------------------------------------------------------------------
    def feedback(self, prompt: str, llm_string: str, ok: bool, *, scope: str = "",
                 where: Prepared | None = None) -> bool:
        """Error-bounded mode: whether the answer of the neighbour last considered for
        ``prompt`` (served or not) is right for it. Teaches that entry (its metadata) and the
        cache's shared calibration. False when there is nothing to attribute it to (no semantic
        candidate for this prompt in this process, or not in error-bounded mode)."""
        if not isinstance(ok, bool):
            raise ConfigError(f"feedback ok must be True or False, got {ok!r}")
        return self.decider.feedback((where or self._prepare(prompt, llm_string, None, scope)).key, ok)

    def candidate_of(self, prompt: str, llm_string: str, *, scope: str = "",
                     where: Prepared | None = None) -> str | None:
        """Error-bounded mode: the key of the entry the last lookup of ``prompt`` considered and
        that ``feedback`` would teach (None if none is waiting for feedback)."""
        return self.decider.candidate((where or self._prepare(prompt, llm_string, None, scope)).key)

    def candidate_value(self, prompt: str, llm_string: str, *, scope: str = "",
                        where: Prepared | None = None) -> str | None:
        """Error-bounded mode: the stored answer of ``candidate_of``'s entry (served or not), so a
        caller that ran the model anyway can compare the two and report ``feedback``; None if no
        candidate waits for feedback, or its entry is gone or too large."""
        mkey = self.candidate_of(prompt, llm_string, scope=scope, where=where)
        if mkey is None:
            return None
        try:
            entry = self.store.peek(mkey)
        except Exception as exc:
            self.fault("lookup", exc)
            return None
        if entry is None or self.limits.too_large(entry.value):
            return None
        return entry.value

