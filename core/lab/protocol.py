"""The paper's real-model caching protocol served through the LangChain adapter
(``langchain_cachemux.CacheMuxRouter`` on ``JointEngine``), replayed from recorded answers or live.

* ``RecordedChatModel``: a LangChain chat model that answers a prompt with what a real model
  answered it when measured (``response_metadata``: ``latency``, ``cpu``, ``flops``): the
  router's models in a replay. Live, the router's models are ``LocalChatModel``s instead; both put
  ``latency`` and ``flops`` in ``response_metadata``, so one cost function prices both.
* ``Protocol``: the query set (prompt texts, gold letters), its per-(query, role) records and the
  selectors' factories; ``serve`` pushes a request trace through a fresh router with a
  ``CacheMuxCache(store=MemoryStore(capacity, policy), semantic=False)`` (the protocol repeats
  prompts exactly) and a judge that knows the gold letter (the paper's cascade judge is the
  label), and tallies what the calls really took (wall and CPU seconds, FLOPs) and served.

Roles: "small", "medium", "large"; routes are tuples of roles (``("small", "large")`` = the
paper's cascade: the large model runs when the judge rejects the small model's answer).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from cachemux.errors import ConfigError, UnknownNameError
from cachemux.multiplexer.registry import make_selector
from cachemux.multiplexer.routes import FAIL_PENALTY, Route, route_cost
from cachemux.multiplexer.selectors import Selector
from cachemux.sim.runner import ONLINE_POLICIES

from cachemux.lab.live import CACHES, Tally, policy_for
from cachemux.lab.mmlu_task import is_correct

__all__ = ["CACHES", "Protocol", "RecordedChatModel", "Tally", "cost_of", "routes_for"]

UNITS = ("latency", "flops")
FLOPS_SCALE = 1e9  # the engine's FLOPs unit: GFLOPs (keeps prices near 1)


class RecordedChatModel(BaseChatModel):
    """Answers each prompt (the last message's text) with its record: ``records[text]`` is
    ``{"answer": str, "latency": s, "cpu": s, "flops": n}``; the numbers go to
    ``response_metadata``. A prompt with no record is a ``KeyError`` naming the model."""

    model_name: str
    _records: dict[str, Mapping[str, Any]] = PrivateAttr(default_factory=dict)
    _calls: int = PrivateAttr(default=0)

    def __init__(self, model_name: str, records: Mapping[str, Mapping[str, Any]], **kw: Any) -> None:
        super().__init__(model_name=model_name, **kw)
        self._records = dict(records)

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def _llm_type(self) -> str:
        return "recorded"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}  # never the records: this keys every call

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        text = messages[-1].text if hasattr(messages[-1], "text") else str(messages[-1].content)
        try:
            rec = self._records[text]
        except KeyError:
            raise KeyError(f"{self.model_name}: no recorded answer for the prompt {text[:60]!r}") from None
        self._calls += 1
        meta = {"model_name": self.model_name, "latency": float(rec["latency"]), "cpu": float(rec.get("cpu", 0.0)),
                "flops": float(rec["flops"])}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=rec["answer"], response_metadata=meta))])


def cost_of(unit: str) -> Callable[[str, Any, float], float]:
    """The router's ``costs=``: the run's ``response_metadata`` latency (s) or FLOPs (GFLOPs)."""
    if unit not in UNITS:
        raise ConfigError(f"unit must be one of {UNITS}, got {unit!r}")
    if unit == "latency":
        return lambda model, answer, seconds: float(answer.response_metadata["latency"])
    return lambda model, answer, seconds: float(answer.response_metadata["flops"]) / FLOPS_SCALE


def routes_for(roles: Sequence[str]) -> dict[str, Route]:
    """The named routes over ``roles`` (cheapest first, "large" last): "large", "cascade" (all
    roles in order), and for 3 roles "medium-large"."""
    roles = tuple(roles)
    if roles[-1] != "large":
        raise ConfigError(f"roles must end with 'large', got {roles}")
    out: dict[str, Route] = {"large": ("large",), "cascade": roles}
    if len(roles) == 3:
        out["medium-large"] = roles[1:]
    return out


class Protocol:
    """The query set and its records.

    ``texts[i]``: query i's prompt (what the models are asked); ``gold[i]``: its letter;
    ``records[role][i]``: ``{"answer", "latency", "cpu", "flops"}`` measured on that role's model.
    ``prior``: ``{unit: {role: cost}}`` a trained selector's a-priori cost of one call (e.g. the
    medians on the training part); ``predictor``: a ``QualityPredictor`` over the roles;
    ``system``: the system message sent before each query (what the records were measured with).
    """

    def __init__(self, texts: Sequence[str], gold: Sequence[str], records: Mapping[str, Sequence[Mapping[str, Any]]],
                 *, prior: Mapping[str, Mapping[str, float]] | None = None, predictor: Any = None,
                 system: str | None = None, penalty: float = FAIL_PENALTY) -> None:
        self.texts, self.gold = list(texts), list(gold)
        if len(self.texts) != len(self.gold) or len(set(self.texts)) != len(self.texts):
            raise ConfigError("texts must be distinct and as many as gold letters")
        self.roles = tuple(records)
        for role, recs in records.items():
            if len(recs) != len(self.texts):
                raise ConfigError(f"records[{role!r}] has {len(recs)} entries for {len(self.texts)} queries")
        self.records = {r: list(v) for r, v in records.items()}
        self.index = {t: i for i, t in enumerate(self.texts)}
        self.correct = {r: [is_correct(g, rec["answer"]) for g, rec in zip(self.gold, v)] for r, v in self.records.items()}
        self.prior = {u: dict(p) for u, p in (prior or {}).items()}
        self.predictor = predictor
        self.penalty = penalty
        self.system = system
        self.routes = routes_for(self.roles)
        self._truth: dict[str, list[dict[Route, float]]] = {}

    # ---- costs and selectors ----------------------------------------------------------------
    def unit_cost(self, unit: str, role: str, i: int) -> float:
        rec = self.records[role][i]
        return float(rec["latency"]) if unit == "latency" else float(rec["flops"]) / FLOPS_SCALE

    def truth(self, unit: str) -> Callable[[str], dict[Route, float]]:
        """Per query text, what each route costs under the penalty (the oracle's knowledge)."""
        if unit not in self._truth:
            table = []
            for i in range(len(self.texts)):
                c = {r: self.unit_cost(unit, r, i) for r in self.roles}
                ok = {r: self.correct[r][i] for r in self.roles}
                table.append({rt: route_cost(rt, c, ok, self.penalty)[0] for rt in self.routes.values()})
            self._truth[unit] = table
        table = self._truth[unit]
        return lambda q: table[self.index[q]]

    def selector(self, name: str, unit: str, *, seed: int = 0) -> Selector:
        """A fresh selector: "large", "cascade", "medium-large" (static routes), "trained" (the
        predictor, no exploration), "trained-explore" (the same predictor, one imagined success
        for a route not yet tried on a query: a returning query tries the cascade once and the
        judge's verdict is learned), "oracle", "noisy-<accuracy>" (the paper's knob, e.g.
        "noisy-0.8", seeded by ``seed``)."""
        routes = list(self.routes.values())
        if name in self.routes:
            return make_selector("static", self.routes[name], penalty=self.penalty)
        if name == "oracle":
            return make_selector("oracle", routes, self.truth(unit), penalty=self.penalty)
        if name.startswith("noisy-"):
            acc = float(name.split("-", 1)[1])
            return make_selector("noisy-oracle", routes, self.truth(unit), acc, rng=random.Random(seed),
                                 penalty=self.penalty)
        if name in ("trained", "trained-explore"):
            if self.predictor is None or unit not in self.prior:
                raise ConfigError(f"the trained selector needs predictor= and prior[{unit!r}]")
            sel = make_selector("trained", self.predictor, routes, dict(self.prior[unit]), penalty=self.penalty,
                                explore=1.0 if name == "trained-explore" else 0.0)
            if hasattr(sel, "prime"):
                sel.prime(list(self.texts))
            return sel
        raise UnknownNameError("selector", name, (*self.routes, "trained", "trained-explore", "oracle",
                                                 "noisy-<accuracy>"))

    # ---- serving ----------------------------------------------------------------------------
    def recorded_models(self) -> dict[str, RecordedChatModel]:
        return {r: RecordedChatModel(f"recorded:{r}", {t: rec for t, rec in zip(self.texts, self.records[r])})
                for r in self.roles}

    def judge(self, query: Any, model: str, text: str) -> bool:
        return is_correct(self.gold[self.index[query]], text)

    def router(self, models: Mapping[str, BaseChatModel], cache: str, selector: Selector, capacity: int,
               unit: str) -> Any:
        """A ``CacheMuxRouter`` over ``models`` with an exact-match ``CacheMuxCache`` of
        ``capacity`` entries under the ``cache`` policy (LFU with full history, LEC, GDSF)."""
        from cachemux.stores.memory import MemoryStore
        from langchain_cachemux import CacheMuxCache, CacheMuxRouter

        if cache not in CACHES:
            raise UnknownNameError("cache", cache, CACHES)
        name, options = ONLINE_POLICIES[cache]
        store = MemoryStore(capacity=capacity, policy=name, **options)
        # admit_failed: the paper's setting, where the last model's answer is cached as it is; the
        # gold judge grades the cascade here, it does not decide what a replicated cache keeps
        return CacheMuxRouter(dict(models), selector, costs=cost_of(unit), judge=self.judge,
                              cache=CacheMuxCache(store=store, semantic=False, admit_empty=True), admit_failed=True,
                              admit_empty=True)

    def serve(self, trace: Sequence[int], cache: str, selector: Selector, capacity: int, unit: str, *,
              models: Mapping[str, BaseChatModel] | None = None,
              progress: Callable[[int], None] | None = None) -> Tally:
        """Serve ``trace`` (query indices) through a fresh router; ``models`` default to the
        recorded ones (a replay). Latency/CPU/FLOPs are summed from each run's metadata."""
        live = models is not None
        models = dict(models) if live else self.recorded_models()
        router = self.router(models, cache, selector, capacity, unit)
        tally = Tally(calls=dict.fromkeys(self.roles, 0), answered=dict.fromkeys(self.roles, 0))
        head = [SystemMessage(self.system)] if self.system else []
        msgs = [[*head, HumanMessage(t)] for t in self.texts]
        runs: list[tuple[str, Any]] = []
        if live:  # the live models' own metadata; replay reads the records (same numbers)
            runs = _Recorder.attach(router)
        t0 = time.perf_counter()
        for i in trace:
            out = router.invoke(msgs[i])
            rec = out.response_metadata["cachemux"]
            tally.requests += 1
            if rec["cache_hit"]:
                tally.hits += 1
            else:
                for role in rec["models_run"]:
                    tally.calls[role] += 1
                    if live:
                        _, meta = runs.pop(0)
                        recorded = self.records[role][i]
                        tally.mismatches += meta["text"] != recorded["answer"]
                        tally.recorded_latency += float(recorded["latency"])
                        tally.recorded_cpu += float(recorded.get("cpu", 0.0))
                        tally.charge(meta)
                    else:
                        tally.charge(self.records[role][i])
                tally.answered[rec["model"]] += 1
            tally.correct += is_correct(self.gold[i], out.text if hasattr(out, "text") else str(out.content))
            if progress is not None:
                progress(1)
        tally.wall = time.perf_counter() - t0
        tally.cost = router.engine.total_cost
        return tally


    def serve_engine(self, trace: Sequence[int], cache: str, selector: Selector, capacity: int, unit: str) -> Tally:
        """The same replay on ``JointEngine`` directly (a policy + dict cache, the recorded answer
        as text): the adapter's decisions without LangChain's per-call overhead, to check the
        router's runs against and to fill the grid where the router path is too slow."""
        from cachemux.joint.engine import Generation, JointEngine

        tally = Tally(calls=dict.fromkeys(self.roles, 0), answered=dict.fromkeys(self.roles, 0))

        def generate(q: str, role: str) -> Generation:
            i = self.index[q]
            r = self.records[role][i]
            tally.calls[role] += 1
            tally.charge(r)
            return Generation((role, r["answer"]), cost=self.unit_cost(unit, role, i), success=self.correct[role][i],
                              size=1)

        engine = JointEngine(policy_for(cache, capacity), selector, generate, store={}, detail=False,
                             admit_failed=True, admit_empty=True)
        t0 = time.perf_counter()
        for i in trace:
            served = engine.serve(self.texts[i])
            tally.requests += 1
            role, text = served.answer
            if served.hit:
                tally.hits += 1
            else:
                tally.answered[role] += 1
            tally.correct += is_correct(self.gold[i], text)
        tally.wall = time.perf_counter() - t0
        tally.cost = engine.total_cost
        return tally


class _Recorder:
    """Wraps the router's generate port to keep each live run's text, latency, CPU seconds and
    FLOPs (the engine's port is the adapter's; this only observes it)."""

    @staticmethod
    def attach(router: Any) -> list[tuple[str, dict[str, Any]]]:
        runs: list[tuple[str, dict[str, Any]]] = []
        port = router.engine._port
        inner = port.generate

        def generate(request: Any, name: str) -> Any:
            c0 = time.process_time()
            gen = inner(request, name)
            meta = dict(gen.answer.response_metadata)
            runs.append((name, {"text": gen.text, "latency": float(meta.get("latency", 0.0)),
                                "cpu": time.process_time() - c0, "flops": float(meta.get("flops", 0.0))}))
            return gen

        router.engine._generate = generate
        return runs
