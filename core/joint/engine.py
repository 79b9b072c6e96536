"""THE joint step: lookup -> route -> generate -> account -> admit (paper Algorithm 2), written once.

``JointEngine`` serves a request through a *cache port* (``cachemux.joint.caches``: a policy + dict
in the simulator, the semantic LLM cache in applications) and a *generate port* (run one model on
the request). ``serve``, ``aserve``, ``stream`` and ``astream`` are thin drivers of one ``_Flow``,
which holds the whole decision logic:

    hit = cache.lookup(request)            -> served, cost 0; the entry saved what it cost to make
                                              (a semantic hit with semantic_penalty: a route priced
                                              P(wrong) x penalty, served only if no dearer than
                                              the multiplexer's expected cost of the model routes)
                                              (a hit the cache asks to verify: routed as a miss,
                                              its answer compared with the fresh one: below)
    route = selector.choose(query)         -> the models to try, in order (paper §3.6)
    run each until one succeeds            -> priced by the cost model, graded by the judge
    selector.observe(query, ran, success)  -> it learns this query's cost on each route
    cache.admit(request, answer, price)    -> price = selector.entry_price(query, paid)
    cache.feedback(request, ok)            -> error-bounded mode: ok = compare(neighbour, fresh)

The last step is the paper's joint design: an entry is priced at what a miss would cost *under the
multiplexer*: the least observed mean cost of the query's routes (before any alternative was
tried, the cost of the route that produced it). Optimism about untried routes is for routing only:
it never makes an entry look free. An answer is offered to the cache once its price is known
(``Selector.settled``: an online selector has tried the query's routes; static, oracle and trained
selectors always know); until then the next miss may find a cheaper route, and caching the
answer at the dearer price would hold a slot it is not worth.

Verification by running the model: when a semantic hit comes with ``verify`` (error-bounded mode
drew it for a check and no cache judge settled it), the engine routes the request as a miss, serves
and accounts the fresh answer (it was paid for), compares it with the cached one (``compare``) and
reports the verdict to the cache (``feedback``). With an error-bounded cache it does the same for
every run whose lookup considered a neighbour (a miss the cache's learned rule refused, or a hit
the route pricing declined): the model ran anyway, so the comparison costs nothing, and it is what
lets a cold error-bounded cache learn at all. ``Served.checked`` says what the comparison found.

The generate port is a function ``generate(request, model) -> Generation`` or an object with
``generate`` and optionally ``agenerate`` (awaitable), ``stream`` / ``astream`` (an iterator of
chunks whose last item is the run's ``Generation``).

Identical requests at once (``SemanticCache`` keyed: same prompt, configuration, namespace) make
one model call: the cache makes the later lookups wait for the first one's answer
(``cachemux.semantic.flight``) and serves it to them as exact hits. Every driver ends a routed
request with ``_Flow.release`` however it ends (admitted or not, a model that raised, a stream
abandoned mid-way), so waiters get the answer when it succeeded and the cache did not take it,
else are let go at once to make their own call; never a failed answer. ``aserve``/``astream``
wait in the event loop (the port's ``alookup``), never holding a worker thread.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from cachemux.errors import ConfigError
from cachemux.joint.answers import Compare, Judge, empty_answer, same_text
from cachemux.joint.caches import CachePort, Coalescing, Placing, PolicyCache, Reporting, Verifiable, as_cache_port
from cachemux.joint.costs import CostModel, Costs
from cachemux.joint.flow import Flow as _Flow
from cachemux.joint.types import Generation, Served
from cachemux.multiplexer.selectors import Selector
from cachemux.semantic.flight import caller

__all__ = ["Chunk", "JointEngine", "empty_answer", "same_text"]

log = logging.getLogger(__name__)


class Chunk:
    """A piece of a streamed answer (``JointEngine.stream`` yields these, then the ``Served``)."""

    __slots__ = ("model", "value")

    def __init__(self, model: str, value: Any) -> None:
        self.model = model
        self.value = value

    def __repr__(self) -> str:
        return f"Chunk({self.model!r}, {self.value!r})"


class JointEngine:
    """Serve requests through a cache and a multiplexer (see the module docstring).

    ``cache``: a cache port, a ``Policy`` (a key-only policy cache), a ``SemanticCache`` /
    ``CacheMuxCache``, or None. ``selector``: any ``Selector``. ``generate``: the generate port.
    ``costs``: how a run is priced when its ``Generation.cost`` is None (``CostModel``).
    ``judge(query, model, text) -> bool | None`` grades answers whose generation gave no verdict.
    ``store``: with a ``Policy`` as cache, a dict that keeps the answers (the simulator's form).
    ``admit_unsettled``: also cache answers whose price the selector does not know yet (by
    default they wait until the selector has tried the query's routes: ``Selector.settled``).
    ``semantic_penalty``: what serving a wrong answer costs, in the cost model's unit. With it, a
    semantic hit whose cache gives a calibrated P(same question) (``SemanticCache`` with the
    verifier matcher: ``Hit.p_wrong``) is a route like a cascade's small model: cost ~0
    plus ``p_wrong x semantic_penalty``; it is served only if that is no more than the expected
    cost of routing the query (``selector.expected_cost``, or, for a query the selector has not
    seen, the matched entry's price: what the multiplexer paid for its neighbour), else the query
    is routed (``stats()["semantic_declined"]``). Give the cache a permissive matcher point (e.g.
    ``load_matcher().at("p0.85")``) so the engine, not the threshold, decides. The cache has
    already counted the request on the matched entry (so its value counts the hits it could serve).
    ``compare(cached_text, fresh_text) -> bool | None``: whether a cached neighbour's answer agrees
    with a fresh run's (verification, above; default ``same_text``: equal after case folding and
    collapsing whitespace, which suits deterministic models; pass a looser one, e.g. an answer
    embedding's cosine, for sampled ones). None: no verdict, nothing is reported.
    Only answers that succeeded are offered to the cache: never one the judge (or the
    generation's ``success``) rejected, which the last model of a route still serves as it is, and
    never an empty one (``empty_answer``: None, blank text, no tool calls) unless
    ``admit_empty=True``. ``admit_failed=True`` caches the last model's answer whatever its verdict:
    the paper's setting (its cascade accepts the last model as it is), for experiments that
    replicate it with a grading judge; never for serving. A model call that raises, or a stream that raises or is abandoned before
    its end, is never offered either (``finish`` does not run).
    ``stats()``: ``verify_runs`` (hits the cache asked to verify, served fresh), ``checks``
    (comparisons that agreed / disagreed / gave no verdict) and ``refused`` (answers not offered
    to the cache: ``failed``, ``empty``).
    Thread-safe: selector decisions and the counters are serialised, model calls are not.
    """

    def __init__(self, cache: Any, selector: Selector, generate: Any, store: Any = None, *,
                 costs: Costs | CostModel | None = None, judge: Judge | None = None,
                 detail: bool = True, admit_unsettled: bool = False, semantic_penalty: float | None = None,
                 compare: Compare | None = None, admit_empty: bool = False, admit_failed: bool = False) -> None:
        if not isinstance(selector, Selector):
            raise ConfigError(f"selector must be a cachemux Selector, got {type(selector).__name__}")
        if store is not None:
            from cachemux.joint.caches import PolicyCache

            cache = PolicyCache(cache, store)
        self.cache: CachePort | None = as_cache_port(cache)
        self.selector = selector
        if callable(generate) and not hasattr(generate, "generate"):
            self._generate, self._port = generate, None
        elif hasattr(generate, "generate"):
            self._generate, self._port = generate.generate, generate
        else:
            raise ConfigError(f"generate must be a function (request, model) -> Generation or an object "
                              f"with .generate, got {type(generate).__name__}")
        self.costs = costs if isinstance(costs, CostModel) or costs is None else CostModel(costs, selector.models)
        if judge is not None and not callable(judge):
            raise ConfigError(f"judge must be a function (query, model, text) -> bool | None, got {judge!r}")
        self.judge = judge
        if compare is not None and not callable(compare):
            raise ConfigError(f"compare must be a function (cached_text, fresh_text) -> bool | None, got {compare!r}")
        self.compare: Compare = same_text if compare is None else compare
        # what the port can do beyond lookup/admit, checked once here (never per request)
        self._verifiable: Verifiable | None = self.cache if isinstance(self.cache, Verifiable) else None
        self._coalescing: Coalescing | None = self.cache if isinstance(self.cache, Coalescing) else None
        self._reporting: Reporting | None = self.cache if isinstance(self.cache, Reporting) else None
        self._placing: Placing | None = self.cache if isinstance(self.cache, Placing) else None
        self._learns = self._verifiable is not None and bool(self._verifiable.learns)
        self.verify_runs = 0
        self.checks = {"agreed": 0, "disagreed": 0, "no_verdict": 0}
        self.admit_unsettled = bool(admit_unsettled)
        self.admit_empty = bool(admit_empty)
        self.admit_failed = bool(admit_failed)
        self.refused = {"failed": 0, "empty": 0}
        if semantic_penalty is not None:
            from cachemux.errors import check_nonnegative

            semantic_penalty = check_nonnegative("semantic_penalty", semantic_penalty)
        self.semantic_penalty = semantic_penalty
        self.semantic_declined = 0
        self.detail = bool(detail)  # estimates in each Served's record (the simulator skips them)
        self._lock = threading.Lock()
        self.requests = 0
        self.hits = 0
        self.total_cost = 0.0
        self.saved = 0.0
        self.calls: dict[str, int] = dict.fromkeys(selector.models, 0)
        self.answered: dict[str, int] = dict.fromkeys(selector.models, 0)

    @property
    def policy(self) -> Any:
        """The eviction policy when the cache is a ``PolicyCache`` (the simulator's), else None."""
        return self.cache.policy if isinstance(self.cache, PolicyCache) else None

    # ---- drivers --------------------------------------------------------------------------------
    def serve(self, request: Any) -> Served:
        """Serve one request (a ``Request``, or a bare query the cache keys on)."""
        flow = _Flow(self, request)
        served = None
        try:
            hit = flow.lookup()
            if hit is not None:
                return hit
            while (model := flow.next_model()) is not None:
                t0 = time.perf_counter()
                flow.record(model, self._generate(request, model), time.perf_counter() - t0)
            served = flow.finish()
            return served
        finally:
            flow.release(served)

    async def aserve(self, request: Any) -> Served:
        """``serve`` with the models awaited (``agenerate`` if the port has it); the cache and the
        selector run in a worker thread (store I/O and embeddings would block the loop)."""
        import asyncio

        flow = _Flow(self, request)
        served = None
        try:
            hit = await self._alookup(flow)
            if hit is not None:
                return hit
            call = getattr(self._port, "agenerate", None) or self._generate
            while (model := await asyncio.to_thread(flow.next_model)) is not None:
                t0 = time.perf_counter()
                gen = call(request, model)
                if inspect.isawaitable(gen):
                    gen = await gen
                flow.record(model, gen, time.perf_counter() - t0)
            served = await asyncio.to_thread(flow.finish)
            return served
        finally:
            flow.release(served)

    async def _alookup(self, flow: _Flow) -> Served | None:
        """``flow.lookup`` with the port's ``alookup`` when it has one (an identical miss in flight
        is waited for in the event loop), the flow's decisions in a worker thread."""
        import asyncio

        find = None if self._coalescing is None else (
            self._placing.alocate if self._placing is not None else self._coalescing.alookup)
        if find is None or flow.cache is None:
            return await asyncio.to_thread(flow.lookup)
        flow.owner = caller()
        return await asyncio.to_thread(flow.lookup, await find(flow.request))

    def stream(self, request: Any) -> Iterator[Chunk | Served]:
        """Yield the answering model's chunks, then the ``Served``. A model that may be followed
        by another (a cascade with a judge) runs whole first, since the judge needs its full
        answer; if it is accepted its answer is not streamed (``Served.streamed`` is False)."""
        flow = _Flow(self, request)
        served = None
        try:
            hit = flow.lookup()
            if hit is not None:
                yield hit
                return
            port_stream = getattr(self._port, "stream", None)
            while (model := flow.next_model()) is not None:
                t0 = time.perf_counter()
                if port_stream is None or not flow.streams(model):
                    flow.record(model, self._generate(request, model), time.perf_counter() - t0)
                    continue
                gen = None
                for item in port_stream(request, model):
                    if isinstance(item, Generation):
                        gen = item
                    else:
                        yield Chunk(model=model, value=item)
                flow.record(model, _settled(gen, model), time.perf_counter() - t0, streamed=True)
            served = flow.finish()
        finally:  # also when the consumer abandons the stream
            flow.release(served)
        yield served

    async def astream(self, request: Any) -> AsyncIterator[Chunk | Served]:
        """``stream`` for asyncio (``astream``/``agenerate`` of the port when it has them)."""
        import asyncio

        flow = _Flow(self, request)
        served = None
        try:
            hit = await self._alookup(flow)
            if hit is not None:
                yield hit
                return
            port_stream = getattr(self._port, "astream", None)
            call = getattr(self._port, "agenerate", None) or self._generate
            while (model := await asyncio.to_thread(flow.next_model)) is not None:
                t0 = time.perf_counter()
                if port_stream is None or not flow.streams(model):
                    gen = call(request, model)
                    if inspect.isawaitable(gen):
                        gen = await gen
                    flow.record(model, gen, time.perf_counter() - t0)
                    continue
                last = None
                async for item in port_stream(request, model):
                    if isinstance(item, Generation):
                        last = item
                    else:
                        yield Chunk(model=model, value=item)
                flow.record(model, _settled(last, model), time.perf_counter() - t0, streamed=True)
            served = await asyncio.to_thread(flow.finish)
        finally:  # also when the consumer abandons the stream
            flow.release(served)
        yield served

    # ---- reporting ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Requests, cache hits, model calls and answers per model, total cost paid, cost saved by
        hits (what their answers cost to produce), and the cache's own stats when it has them."""
        with self._lock:
            s: dict[str, Any] = {"requests": self.requests, "hits": self.hits, "calls": dict(self.calls),
                                 "answered": dict(self.answered), "total_cost": self.total_cost,
                                 "saved": self.saved, "semantic_declined": self.semantic_declined,
                                 "verify_runs": self.verify_runs, "checks": dict(self.checks),
                                 "refused": dict(self.refused)}
        if self._reporting is not None:
            s["cache"] = self._reporting.stats()
        return s


def _settled(gen: Generation | None, model: str) -> Generation:
    if gen is None:
        raise ConfigError(f"the stream of model {model!r} must end with its Generation")
    return gen
