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
import json
import logging
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from typing import Any

from cachemux.errors import ConfigError
from cachemux.joint.caches import CachePort, Coalescing, Placing, PolicyCache, Reporting, Verifiable, as_cache_port
from cachemux.joint.costs import CostModel, Costs
from cachemux.joint.types import Attempt, Generation, Hit, Lookup, Request, Served
from cachemux.multiplexer.routes import Route, route_cost
from cachemux.multiplexer.selectors import Selector
from cachemux.semantic.flight import caller

__all__ = ["Chunk", "JointEngine", "empty_answer", "same_text"]

log = logging.getLogger(__name__)

Judge = Callable[[Hashable, str, str], "bool | None"]
Compare = Callable[[str, str], "bool | None"]


def _text(answer: Any, fallback: str | None = None) -> str:
    """An answer as text for ``compare``: a str, else its ``text`` or ``content`` when that is a
    str (a LangChain message, a LlamaIndex response) plus its ``tool_calls`` (names and
    arguments), else ``fallback`` (the generation's ``text``) or ``str(answer)``."""
    if isinstance(answer, str):
        return answer
    for name in ("text", "content"):
        t = getattr(answer, name, None)
        if isinstance(t, str):
            calls = getattr(answer, "tool_calls", None)
            if calls and isinstance(calls, list):
                t += "\n" + json.dumps([{k: c.get(k) for k in ("name", "args")} if isinstance(c, dict) else str(c)
                                         for c in calls], sort_keys=True, default=str)
            return t
    return fallback if fallback is not None else str(answer)


def empty_answer(answer: Any, text: str | None = None) -> bool:
    """Whether an answer says nothing: None, or a text (``text`` if given, else a str answer or
    its ``text``/``content``) that is blank, with no tool calls beside it. Answers with no text
    form (a record, a number) are not judged empty."""
    if answer is None:
        return True
    if getattr(answer, "tool_calls", None) or getattr(answer, "invalid_tool_calls", None):
        return False
    content = getattr(answer, "content", None)
    if isinstance(content, list) and content:  # content blocks (images, audio...): not judged by text
        return False
    if text is None:
        if isinstance(answer, str):
            text = answer
        else:
            for name in ("text", "content"):
                t = getattr(answer, name, None)
                if isinstance(t, str):
                    text = t
                    break
            else:
                return False
    return not text.strip()


def same_text(cached: str, fresh: str) -> bool:
    """The default ``compare``: equal after Unicode NFC, case folding and collapsing whitespace."""

    def norm(t: str) -> str:
        return " ".join(unicodedata.normalize("NFC", t).casefold().split())

    return norm(cached) == norm(fresh)


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
        if find is None or (type(flow.request) is Request and not flow.request.cacheable):
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


class _Flow:
    """One request's decisions, free of I/O: the drivers above only run the models it names."""

    __slots__ = ("engine", "request", "query", "route", "attempts", "expected", "_i", "_done", "_streamed",
                 "_gen", "_check", "_cache", "_refused", "_place", "owner")

    _NONE: Any = object()  # no neighbour to compare with

    def __init__(self, engine: JointEngine, request: Any) -> None:
        self.engine = engine
        self.request = request
        self.query = request.query if type(request) is Request else request
        self.attempts: list[Attempt] = []
        self._i = 0
        self._done = False
        self._streamed = False
        self._check: Any = _Flow._NONE
        self._refused: str | None = None  # why ``finish`` did not offer the answer to the cache
        self._place: Any = None  # where a placing port put the request (``Lookup.place``)
        self.owner: object = None  # who missed, for ``release`` (``cachemux.semantic.flight.caller``)

    def lookup(self, found: Any = _NONE) -> Served | None:
        """A ``Served`` for a cache hit, else None and the route is chosen (a hit drawn for
        verification, or declined by the route pricing, is routed and compared in ``finish``).
        ``found``: the port's answer when the driver looked up already (``alookup``)."""
        eng = self.engine
        self._cache = eng.cache if type(self.request) is not Request or self.request.cacheable else None
        if found is _Flow._NONE:
            self.owner = caller() if self._cache is not None else None
            if self._cache is None:
                found = None
            elif eng._placing is not None:  # keyed once: the place goes back with admit/feedback
                found = eng._placing.locate(self.request)
            else:
                found = self._cache.lookup(self.request)
        if type(found) is Lookup:
            self._place = found.place
            found = found.hit
        hit: Hit | None = found
        if hit is not None:
            self.owner = None  # served from the cache: no miss of its own to release
        check: Any = _Flow._NONE
        unserved: tuple[Hit, str] | None = None
        with eng._lock:
            eng.requests += 1
            if hit is not None and hit.verify:
                eng.verify_runs += 1
                unserved = (hit, "verified")
                check, hit = hit.answer, None  # run the model anyway, compare, report
            p_wrong = None if hit is None else hit.p_wrong
            if hit is not None and p_wrong is not None and eng.semantic_penalty is not None:
                routed = eng.selector.expected_cost(self.query)
                if routed is None:
                    routed = hit.paid if hit.paid is not None else hit.price
                if p_wrong * eng.semantic_penalty > routed:
                    eng.semantic_declined += 1
                    unserved = (hit, "declined")
                    if eng._learns:
                        check = hit.answer
                    hit = None  # the model routes are the cheaper bet
            if hit is None:
                self.route: Route = eng.selector.choose(self.query)
                # the estimate before routing is for the record only: the simulator skips it
                self.expected = eng.selector.expected_cost(self.query) if eng.detail else None
            else:
                eng.hits += 1
                saved = hit.price if hit.paid is None else hit.paid
                eng.saved += saved
        if unserved is not None and eng._verifiable is not None:  # the cache counted it as a hit
            eng._verifiable.unserved(*unserved)
        if hit is None:
            if check is _Flow._NONE and eng._learns and self._cache is not None:  # the neighbour the learned rule refused
                got = eng._verifiable.candidate(self.request, place=self._place)  # type: ignore[union-attr]
                if got is not None:
                    check = got
            self._check = check
            return None
        return Served(hit.answer, hit=True, cost=0.0, kind=hit.kind, similarity=hit.similarity, model=hit.model,
                      price=hit.price, saved=saved)

    def release(self, served: Served | None) -> None:
        """End this request's miss for identical requests waiting on it (a port with ``release``):
        with ``served``'s answer when the cache did not admit it and the final model did not fail,
        else with none (they make their own call). A no-op after a hit."""
        port = self.engine._coalescing
        if port is None or self.owner is None:
            return
        if served is not None and served.admitted:  # admit -> update served them already
            return
        # shared only what could have been cached: never a failed or (unless admitted) empty answer
        shared = served if served is not None and served.attempts and self._refused is None else None
        try:
            port.release(self.request, self.owner, shared, place=self._place)
        except Exception as exc:  # never fails the request that was served
            log.warning("cachemux: releasing identical requests failed (%s: %s)", type(exc).__name__, exc)

    def next_model(self) -> str | None:
        """The next model of the route to run, or None: the cascade loop (paper §3.6) — model i
        runs only if every earlier one failed; the last one's answer is accepted as it is."""
        if self._done or self._i >= len(self.route):
            return None
        return self.route[self._i]

    def streams(self, model: str) -> bool:
        """Whether ``model``'s answer can go out as it is generated: no later model can replace it."""
        return self._i == len(self.route) - 1 or self.engine.judge is None

    def record(self, model: str, gen: Any, seconds: float, streamed: bool = False) -> None:
        if not isinstance(gen, Generation):
            raise ConfigError(f"generate must return a cachemux Generation, got {type(gen).__name__} from {model!r}")
        eng = self.engine
        latency = seconds if gen.latency is None else gen.latency
        cost = gen.cost
        if cost is None:
            if eng.costs is None:
                raise ConfigError(f"model {model!r} returned no cost and the engine has no cost model (costs=)")
            cost = eng.costs(model, gen.answer, latency, gen.usage)
        ok = gen.success
        if ok is None and eng.judge is not None:
            ok = eng.judge(self.query, model, gen.text if gen.text is not None else str(gen.answer))
        self.attempts.append(Attempt(model=model, answer=gen.answer, cost=cost, success=ok, latency=latency))
        self._gen = gen
        self._streamed = streamed
        self._i += 1
        if ok is not False:
            self._done = True

    def finish(self) -> Served:
        """Account the run, let the selector learn, offer the answer to the cache."""
        eng, q, route, attempts = self.engine, self.query, self.route, self.attempts
        if not attempts:
            raise ConfigError(f"route {route!r} ran no model")
        ran = {a.model: a.cost for a in attempts}
        success = {a.model: a.success for a in attempts}
        paid, _ = route_cost(route, ran, success, eng.selector.penalty)
        if paid is None:  # pragma: no cover - the loop runs the route until it is decided
            paid = sum(ran.values())
        final = attempts[-1]
        # a failed or empty answer is served (the route ends with it) but never cached
        refused = ("failed" if final.success is False and not eng.admit_failed else
                   "empty" if not eng.admit_empty and empty_answer(final.answer, self._gen.text) else None)
        self._refused = refused
        with eng._lock:
            sel = eng.selector
            sel.observe(q, ran, success)
            price = sel.entry_price(q, paid)
            offer = refused is None and (sel.settled(q) or eng.admit_unsettled)
            if refused is not None:
                eng.refused[refused] += 1
            estimates = ({">".join(r): c for r, c in sel.route_estimates(q).items()}
                         if eng.detail and _hashable(q) else {})
            eng.total_cost += paid
            for a in attempts:
                eng.calls[a.model] = eng.calls.get(a.model, 0) + 1
            eng.answered[final.model] = eng.answered.get(final.model, 0) + 1
        checked = None if self._check is _Flow._NONE else self._verify(final)
        admitted = None
        if self._cache is not None:
            admitted = offer and self._cache.admit(self.request, final.answer, price, self._gen.size,
                                                   model=final.model, paid=paid, place=self._place)
        return Served(final.answer, hit=False, cost=paid, route=route, models=tuple(ran), attempts=tuple(attempts),
                      model=final.model, price=price, admitted=admitted, expected_cost=self.expected,
                      route_costs=estimates, streamed=self._streamed, checked=checked)

    def _verify(self, final: Attempt) -> bool | None:
        """Compare the cached neighbour's answer with this run's and report it to the cache."""
        eng = self.engine
        fresh = _text(final.answer, self._gen.text)
        try:
            verdict = eng.compare(_text(self._check), fresh)
        except Exception as exc:  # a failing compare gives no verdict, never fails the request
            log.warning("cachemux: compare failed (%s: %s); no feedback", type(exc).__name__, exc)
            verdict = None
        verdict = None if verdict is None else bool(verdict)
        with eng._lock:
            eng.checks["no_verdict" if verdict is None else "agreed" if verdict else "disagreed"] += 1
        if verdict is not None:
            feedback = None if eng._verifiable is None else eng._verifiable.feedback
            if feedback is not None:
                try:
                    feedback(self.request, verdict, place=self._place)
                except Exception as exc:
                    log.warning("cachemux: cache feedback failed (%s: %s)", type(exc).__name__, exc)
        return verdict


def _hashable(q: Any) -> bool:
    try:
        hash(q)
    except TypeError:
        return False
    return True
