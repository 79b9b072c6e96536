"""One request's decisions in the joint engine (``JointEngine``'s drivers run the models it names):
lookup, the route, each model's record, and the finish that accounts, teaches the selector and
offers the answer to the cache (see ``cachemux.joint.engine``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cachemux.errors import ConfigError
from cachemux.joint.answers import answer_text, empty_answer
from cachemux.joint.types import Attempt, Generation, Hit, Lookup, Request, Served
from cachemux.multiplexer.routes import Route, route_cost
from cachemux.semantic.flight import caller

if TYPE_CHECKING:
    from cachemux.joint.engine import JointEngine

__all__ = ["Flow"]

log = logging.getLogger("cachemux.joint.engine")


class Flow:
    """One request's decisions, free of I/O: the drivers above only run the models it names."""

    __slots__ = ("engine", "request", "query", "route", "attempts", "expected", "_i", "_done", "_streamed",
                 "_gen", "_check", "cache", "_refused", "_place", "owner")

    _NONE: Any = object()  # no neighbour to compare with

    def __init__(self, engine: JointEngine, request: Any) -> None:
        self.engine = engine
        self.request = request
        self.query = request.query if type(request) is Request else request
        # the cache this request reads and fills: none for a request whose configuration cannot be keyed
        self.cache = engine.cache if type(request) is not Request or request.cacheable else None
        self.attempts: list[Attempt] = []
        self._i = 0
        self._done = False
        self._streamed = False
        self._check: Any = Flow._NONE
        self._refused: str | None = None  # why ``finish`` did not offer the answer to the cache
        self._place: Any = None  # where a placing port put the request (``Lookup.place``)
        self.owner: object = None  # who missed, for ``release`` (``cachemux.semantic.flight.caller``)

    def lookup(self, found: Any = _NONE) -> Served | None:
        """A ``Served`` for a cache hit, else None and the route is chosen (a hit drawn for
        verification, or declined by the route pricing, is routed and compared in ``finish``).
        ``found``: the port's answer when the driver looked up already (``alookup``)."""
        eng = self.engine
        if found is Flow._NONE:
            self.owner = caller() if self.cache is not None else None
            if self.cache is None:
                found = None
            elif eng._placing is not None:  # keyed once: the place goes back with admit/feedback
                found = eng._placing.locate(self.request)
            else:
                found = self.cache.lookup(self.request)
        if type(found) is Lookup:
            self._place = found.place
            found = found.hit
        hit: Hit | None = found
        if hit is not None:
            self.owner = None  # served from the cache: no miss of its own to release
        check: Any = Flow._NONE
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
            if check is Flow._NONE and eng._learns and self.cache is not None:  # the neighbour the learned rule refused
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
        checked = None if self._check is Flow._NONE else self._verify(final)
        admitted = None
        if self.cache is not None:
            admitted = offer and self.cache.admit(self.request, final.answer, price, self._gen.size,
                                                   model=final.model, paid=paid, place=self._place)
        return Served(final.answer, hit=False, cost=paid, route=route, models=tuple(ran), attempts=tuple(attempts),
                      model=final.model, price=price, admitted=admitted, expected_cost=self.expected,
                      route_costs=estimates, streamed=self._streamed, checked=checked)

    def _verify(self, final: Attempt) -> bool | None:
        """Compare the cached neighbour's answer with this run's and report it to the cache."""
        eng = self.engine
        fresh = answer_text(final.answer, self._gen.text)
        try:
            verdict = eng.compare(answer_text(self._check), fresh)
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
