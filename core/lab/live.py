"""The paper's real-model experiment on local models: a cloze task, per-query measurements, and the
joint stack served live (real generation on every miss) or replayed from recorded costs.

* Task (``build_cloze_items``): LAMBADA-style last-word prediction on natural prose shipped in
  ``shared/data/routing`` (MMLU history and law passages, GSM8K word problems): the context is the
  passage up to a sentence's last word (at least 25, at most 70 words), the gold answer is that
  word; a model answers right when the first word it generates is the gold word (case-insensitive),
  the paper's Lambada criterion (top-1 == gold) at the word level.
* ``measure`` runs every model on every item (interleaved, alternating which goes first, so load
  from other processes hits both alike) and records answer, correctness, wall-clock latency of the
  generate call, tokens and FLOPs counted from the model config; a JSON file keeps them.
* ``serve_trace`` pushes a request trace through ``JointEngine`` (lookup -> route -> generate ->
  account -> admit) with a ``call(query, model)`` that either runs the model (live) or returns the
  recorded answer and costs (replay: the paper's "real-data" tables are such a replay).
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import random
import re
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cachemux import paths
from cachemux.lab.records import JsonRecords
from cachemux.errors import ConfigError, UnknownNameError
from cachemux.joint.engine import Generation, JointEngine
from cachemux.multiplexer.registry import make_selector
from cachemux.multiplexer.routes import FAIL_PENALTY, Route, route_cost
from cachemux.multiplexer.selectors import Selector
from cachemux.policies import Policy, make_policy
from cachemux.sim.runner import ONLINE_POLICIES

__all__ = [
    "CACHES", "SELECTORS", "SELECTOR_TABLE", "Answer", "ClozeItem", "Measurements", "Tally", "balanced_set",
    "build_cloze_items", "first_word", "judge", "measure", "policy_for", "selector_for", "serve_trace",
    "true_route_costs",
]

TASK_VERSION = "cloze-v1"
CACHES = ("lfu", "lec", "gdsf")
SMALL_ROUTE: Route = ("small", "large")  # the paper's cascade
LARGE_ROUTE: Route = ("large",)
ROUTES = (SMALL_ROUTE, LARGE_ROUTE)

_MMLU_PROSE = ("high_school_european_history", "high_school_us_history", "high_school_world_history",
               "professional_law")
_STOP = frozenset(
    "the a an and or but of to in on at for with by from as is are was were be been being it its this that "
    "these those he she they we you i his her their our your my me him them us not no so than then there here "
    "which who whom what when where why how all any some such can could would should will shall may might must "
    "do does did have has had".split())
_SENT = re.compile(r"(?<=[.!?])[\"\u201d')\]]*\s+")
_LAST = re.compile(r"^(.*\S)\s+([A-Za-z]+)[.!?]?[\"\u201d')\]]*$", re.S)
_WORD = re.compile(r"[A-Za-z]+")


# --------------------------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClozeItem:
    """One query: ``context`` (the prompt) and the ``target`` word that ends its sentence."""

    qid: str
    source: str
    context: str
    target: str


def _mmlu_prose(prompt: str) -> str:
    # drop the answer options and the boiler-plate header: keep the passage and the question
    lines = [ln for ln in prompt.split("\n") if ln.strip() and not re.match(r"^\s*[A-D][.)]\s", ln)
             and not ln.startswith("This question refers")]
    return " ".join(lines)


def _texts(data_dir: Path) -> list[tuple[str, str]]:
    root = data_dir / "routing"
    out = []
    for subject in _MMLU_PROSE:
        with open(root / "mmlu" / f"mmlu_{subject}.csv", newline="") as f:
            for row in csv.DictReader(f):
                if len(row["prompt"]) > 800:  # a real passage, not a one-line question
                    out.append((f"mmlu:{subject}", _mmlu_prose(row["prompt"])))
    with open(root / "gsm8k.csv", newline="") as f:
        for row in csv.DictReader(f):
            out.append(("gsm8k", row["prompt"]))
    return out


def build_cloze_items(data_dir: str | os.PathLike[str] | None = None, *, seed: int = 0,
                      min_context_words: int = 25, max_context_words: int = 70) -> list[ClozeItem]:
    """One cloze item per text (a random qualifying sentence), shuffled with ``seed``.

    A sentence qualifies when its last word is alphabetic, at least 3 letters, not a stop word,
    and at least 6 words precede it in the sentence; the context is the text before that word,
    cut to its last ``max_context_words`` words and at least ``min_context_words`` long.
    """
    root = Path(data_dir) if data_dir is not None else paths.data_dir("routing")
    rng = random.Random(seed)
    items = []
    for source, text in _texts(root):
        sents = _SENT.split(text)
        cands = []
        for i, s in enumerate(sents):
            m = _LAST.match(s.strip())
            if not m:
                continue
            prefix, target = m.group(1), m.group(2)
            if len(target) < 3 or target.lower() in _STOP or len(prefix.split()) < 6:
                continue
            words = " ".join([*sents[:i], prefix]).split()
            if len(words) < min_context_words:
                continue
            cands.append((" ".join(words[-max_context_words:]), target))
        if cands:
            ctx, target = rng.choice(cands)
            qid = hashlib.sha256(f"{ctx}\x1e{target}".encode()).hexdigest()[:12]
            items.append(ClozeItem(qid, source, ctx, target))
    rng.shuffle(items)
    seen: set[str] = set()
    return [it for it in items if not (it.qid in seen or seen.add(it.qid))]  # type: ignore[func-returns-value]


def first_word(text: str) -> str:
    m = _WORD.search(text)
    return m.group(0) if m else ""


def judge(target: str, text: str) -> bool:
    """The label judge: the first generated word is the gold word (case-insensitive)."""
    return first_word(text).lower() == target.lower()


# --------------------------------------------------------------------------------------------
# Measurements (JSON on disk, never pickle)
# --------------------------------------------------------------------------------------------

class Measurements(JsonRecords):
    """Per query and per model role: answer, correct, latencies (seconds, every measurement),
    flops, tokens_in, tokens_out. ``key`` names the task and models; a file with another key is
    ignored (not overwritten until the first save)."""

    def has(self, qid: str, roles: Iterable[str]) -> bool:
        r = self.records.get(qid)
        return r is not None and all(m in r["models"] for m in roles)

    def add(self, item: ClozeItem, role: str, result: Any) -> None:
        r = self.records.setdefault(item.qid, {"source": item.source, "context": item.context,
                                               "target": item.target, "models": {}})
        r["models"][role] = {"model": result.model, "answer": result.text,
                             "correct": judge(item.target, result.text), "latency": [result.latency],
                             "flops": result.flops, "tokens_in": result.tokens_in,
                             "tokens_out": result.tokens_out}

    def add_latency(self, qid: str, role: str, seconds: float) -> None:
        self.records[qid]["models"][role]["latency"].append(seconds)

    def get(self, qid: str, role: str) -> dict[str, Any]:
        return self.records[qid]["models"][role]

    def latency(self, qid: str, role: str) -> float:
        """The query's latency on ``role``: the mean of its measurements."""
        return float(statistics.fmean(self.get(qid, role)["latency"]))


def measure(items: Sequence[ClozeItem], models: Mapping[str, Any], store: Measurements, *,
            max_new_tokens: int = 3, repeats: int = 0, progress: Callable[[int], None] | None = None,
            save_every: int = 25) -> None:
    """Run every model (``{role: LocalModel}``) on every item not yet in ``store``; with
    ``repeats`` > 0, measure the latency of every given item that many more times (the answer
    of a greedy generation does not change, only the time). Models alternate which goes first."""
    roles = list(models)
    done = 0
    for n, it in enumerate(items):
        order = roles if n % 2 == 0 else roles[::-1]
        fresh = not store.has(it.qid, roles)
        if fresh:
            for role in order:
                store.add(it, role, models[role].generate(it.context, max_new_tokens=max_new_tokens))
        for rep in range(repeats):
            for role in (order if rep % 2 else order[::-1]):
                res = models[role].generate(it.context, max_new_tokens=max_new_tokens)
                store.add_latency(it.qid, role, res.latency)
        done += fresh or repeats > 0
        if progress is not None:
            progress(1)
        if done and done % save_every == 0:
            store.save()
    store.save()


# --------------------------------------------------------------------------------------------
# Serving a trace through the joint engine
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Answer:
    """What the stack serves: the text, whether the judge accepts it, which model wrote it."""

    text: str
    correct: bool
    model: str


Call = Callable[[int, str], tuple[Answer, float, float]]
"""(query index, model role) -> (answer, latency seconds, FLOPs)."""


@dataclass
class Tally:
    """What one method spent and served on one trace.

    ``latency``/``cpu``/``flops``: what the model calls really took (a failed cascade pays both
    models once); ``cost``: the engine's cost in its decision unit under the paper's pricing (a failed
    cascade's large call counted ``penalty`` times); ``correct``: served answers the judge accepts.
    """

    requests: int = 0
    hits: int = 0
    latency: float = 0.0
    cpu: float = 0.0
    flops: float = 0.0
    cost: float = 0.0
    correct: int = 0
    calls: dict[str, int] = field(default_factory=lambda: {"small": 0, "large": 0})
    answered: dict[str, int] = field(default_factory=lambda: {"small": 0, "large": 0})
    wall: float = 0.0
    mismatches: int = 0  # live: answers that differ from the records
    recorded_latency: float = 0.0  # live: what the records say the same calls took (wall)
    recorded_cpu: float = 0.0  # live: ... and in CPU seconds

    @property
    def accuracy(self) -> float:
        return self.correct / self.requests if self.requests else math.nan

    def charge(self, run: Mapping[str, Any]) -> None:
        """Add one model call: ``run`` holds its ``latency`` and ``flops`` (and ``cpu``, default 0)."""
        self.latency += float(run["latency"])
        self.cpu += float(run.get("cpu", 0.0))
        self.flops += float(run["flops"])

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "hits": self.hits, "hit_rate": self.hits / max(1, self.requests),
                "latency_s": self.latency, "cpu_s": self.cpu, "flops": self.flops, "paper_cost": self.cost,
                "correct": self.correct, "accuracy": self.accuracy, "calls": dict(self.calls),
                "answered": dict(self.answered), "wall_s": self.wall, "mismatches": self.mismatches,
                "recorded_latency_s": self.recorded_latency, "recorded_cpu_s": self.recorded_cpu}


def policy_for(cache: str, capacity: int) -> Policy:
    """The online policies of the paper's grid: LFU with full history (its baseline), LEC, GDSF."""
    if cache not in CACHES:
        raise UnknownNameError("cache", cache, CACHES)
    name, options = ONLINE_POLICIES[cache]
    return make_policy(name, capacity, **options)


def _need(what: str, value: Any) -> Any:
    if value is None:
        raise ConfigError(f"the {what} selector needs {what}=...")
    return value


# the experiment's selector names -> (``make_selector`` name, its arguments from selector_for's
# keywords ``o``): "trained" trusts the predictor (explore=0), "trained-explore" gives an untried
# model ``explore`` imagined successes
SELECTOR_TABLE: dict[str, tuple[str, Callable[[dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]]]] = {
    "large": ("static", lambda o: ((LARGE_ROUTE,), {})),
    "cascade": ("static", lambda o: ((SMALL_ROUTE,), {})),
    "trained": ("trained", lambda o: ((), {**_need("trained", o["trained"]), "explore": 0.0})),
    "trained-explore": ("trained", lambda o: ((), {**_need("trained", o["trained"]), "explore": o["explore"]})),
    "oracle": ("oracle", lambda o: ((ROUTES, _need("truth", o["truth"])), {})),
}
SELECTORS = tuple(SELECTOR_TABLE)


def selector_for(selector: str, *, trained: Mapping[str, Any] | None = None,
                 truth: Callable[[Any], Mapping[Route, float]] | None = None, penalty: float = FAIL_PENALTY,
                 explore: float = 1.0, prime: Iterable[Any] | None = None) -> Selector:
    """A fresh selector by name. ``trained``: the ``TrainedSelector`` arguments (predictor, routes,
    costs, text_of, ...); ``truth``: the oracle's true route costs; ``prime``: queries whose
    predictions a trained selector makes in one batch up front."""
    if selector not in SELECTOR_TABLE:
        raise UnknownNameError("selector", selector, SELECTORS)
    name, build = SELECTOR_TABLE[selector]
    args, options = build({"trained": trained, "truth": truth, "explore": explore})
    sel = make_selector(name, *args, penalty=penalty, **options)
    if prime is not None and hasattr(sel, "prime"):
        sel.prime(list(prime))
    return sel


def serve_trace(requests: Iterable[int], cache: str, selector: Selector, capacity: int, call: Call,
                unit: str, *, unit_scale: float = 1.0, progress: Callable[[int], None] | None = None) -> Tally:
    """Serve ``requests`` through ``JointEngine`` and tally what it cost and served.

    ``unit``: the cost the cache and selector optimise, "latency" (seconds of the call) or
    "flops" (divided by ``unit_scale``, e.g. 1e9 for GFLOPs). Hits cost 0 and serve the stored
    answer (the engine keeps answers in a dict store).
    """
    if unit not in ("latency", "flops"):
        raise ConfigError(f"unit must be 'latency' or 'flops', got {unit!r}")
    tally = Tally()

    def generate(q: Any, model: str) -> Generation:
        ans, lat, fl = call(q, model)
        tally.latency += lat
        tally.flops += fl
        tally.calls[model] = tally.calls.get(model, 0) + 1
        return Generation(ans, cost=lat if unit == "latency" else fl / unit_scale, success=ans.correct, size=1)

    # the paper's setting: the route's last answer is cached as it is (the label judge grades, it
    # does not decide what a replicated cache keeps)
    engine = JointEngine(policy_for(cache, capacity), selector, generate, store={}, detail=False,
                         admit_failed=True, admit_empty=True)
    t0 = time.perf_counter()
    for q in requests:
        served = engine.serve(q)
        tally.requests += 1
        tally.hits += served.hit
        ans: Answer = served.answer
        tally.correct += ans.correct
        if not served.hit:
            tally.answered[ans.model] = tally.answered.get(ans.model, 0) + 1
        if progress is not None:
            progress(1)
    tally.cost = engine.total_cost
    tally.wall = time.perf_counter() - t0
    return tally


def true_route_costs(cost: Mapping[str, Sequence[float]], success: Mapping[str, Sequence[bool]],
                     penalty: float = FAIL_PENALTY) -> list[dict[Route, float]]:
    """Per query, what each route costs (the oracle's knowledge), by ``route_cost``."""
    n = len(next(iter(cost.values())))
    out = []
    for q in range(n):
        c = {m: float(v[q]) for m, v in cost.items()}
        ok = {m: bool(v[q]) for m, v in success.items()}
        out.append({r: route_cost(r, c, ok, penalty)[0] for r in (SMALL_ROUTE, LARGE_ROUTE)})
    return out


def balanced_set(qids: Sequence[str], small_correct: Sequence[bool], n: int, seed: int = 0) -> list[str]:
    """The paper's query set: n/2 queries the small model gets right, n/2 it gets wrong, shuffled."""
    good = [q for q, ok in zip(qids, small_correct) if ok]
    bad = [q for q, ok in zip(qids, small_correct) if not ok]
    half = n // 2
    if len(good) < half or len(bad) < n - half:
        raise ConfigError(f"not enough held-out queries for a balanced set of {n}: "
                          f"{len(good)} small-correct, {len(bad)} small-wrong")
    rng = np.random.default_rng(seed)
    chosen = list(rng.choice(good, half, replace=False)) + list(rng.choice(bad, n - half, replace=False))
    rng.shuffle(chosen)
    return [str(q) for q in chosen]
