"""cachemux.lab.live: the cloze task, the measurement cache, and serving a trace live or replayed
through JointEngine (fake models: no weights, a few seconds)."""

from __future__ import annotations

import numpy as np
import pytest

from cachemux.errors import ConfigError, UnknownNameError
from cachemux.lab.live import (
    Answer,
    ClozeItem,
    Measurements,
    balanced_set,
    build_cloze_items,
    first_word,
    judge,
    measure,
    policy_for,
    selector_for,
    serve_trace,
    true_route_costs,
)
from cachemux.models.local import GenerationResult
from cachemux.multiplexer import OracleSelector, StaticSelector, TrainedSelector
from cachemux.multiplexer.predictor import PredictorConfig, QualityPredictor


class _FakeModel:
    """Answers the gold word for items whose qid is in ``knows``, else "the"."""

    def __init__(self, name: str, knows: set[str], items: list[ClozeItem], latency: float) -> None:
        self.name, self.knows, self.latency, self.calls = name, knows, latency, 0
        self.by_ctx = {it.context: it for it in items}

    def generate(self, prompt: str, max_new_tokens: int = 3) -> GenerationResult:
        self.calls += 1
        it = self.by_ctx[prompt]
        text = f" {it.target} and" if it.qid in self.knows else " the end"
        return GenerationResult(text, self.name, self.latency, 1e9 * len(prompt.split()), len(prompt.split()),
                                max_new_tokens, "length")


def _items(n: int = 6) -> list[ClozeItem]:
    return [ClozeItem(f"q{i}", "test", f"context number {i} words", f"word{chr(97 + i)}") for i in range(n)]


def test_judge_first_word() -> None:
    assert first_word("  \n\"Paris, France") == "Paris"
    assert judge("paris", " Paris.")
    assert not judge("paris", " the Paris")
    assert not judge("x", "")


def test_build_cloze_items_from_shared_data() -> None:
    try:
        items = build_cloze_items()
    except ConfigError:
        pytest.skip("shared data not found")
    assert len(items) > 1000
    assert len({it.qid for it in items}) == len(items)
    for it in items[:200]:
        assert 25 <= len(it.context.split()) <= 70
        assert it.target.isalpha() and len(it.target) >= 3
    assert items[:50] == build_cloze_items()[:50]  # deterministic


def test_measure_caches_and_repeats(tmp_path) -> None:
    items = _items(4)
    models = {"small": _FakeModel("s", {"q0", "q1"}, items, 0.1), "large": _FakeModel("l", {"q0", "q2"}, items, 0.2)}
    path = tmp_path / "m.json"
    store = Measurements(path, {"task": "t"})
    measure(items, models, store)
    assert [store.get(q, "small")["correct"] for q in ("q0", "q1", "q2", "q3")] == [True, True, False, False]
    assert store.get("q2", "large")["correct"] and store.get("q2", "large")["answer"].startswith(" wordc")
    again = Measurements(path, {"task": "t"})
    assert again.has("q3", ("small", "large"))
    measure(items, models, again)  # nothing new to run
    assert models["small"].calls == 4
    measure(items[:1], models, again, repeats=2)
    assert len(again.get("q0", "small")["latency"]) == 3 and again.latency("q0", "large") == pytest.approx(0.2)
    assert Measurements(path, {"task": "other"}).records == {}  # another key: ignored


def _replay(correct_small, correct_large, cs=1.0, cl=3.0):
    def call(q, role):
        ok = (correct_small if role == "small" else correct_large)[q]
        return Answer(role, ok, role), (cs if role == "small" else cl), 10 * (cs if role == "small" else cl)
    return call


def test_serve_trace_accounts_hits_cascade_and_accuracy() -> None:
    small_ok, large_ok = [True, False, True], [True, True, False]
    trace = [0, 1, 0, 2, 1, 0]
    t = serve_trace(trace, "lfu", selector_for("cascade"), 10, _replay(small_ok, large_ok), "latency")
    # misses: q0 (small ok), q1 (small fails -> large), q2 (small ok); the rest are hits
    assert (t.requests, t.hits) == (6, 3)
    assert t.latency == pytest.approx(1 + (1 + 3) + 1)  # really spent: both models once on q1
    assert t.cost == pytest.approx(1 + (1 + 2 * 3) + 1)  # the paper's price: penalty 2 on q1's large call
    assert t.flops == pytest.approx(10 * t.latency)
    assert t.correct == 6 and t.calls == {"small": 3, "large": 1} and t.answered == {"small": 2, "large": 1}
    big = serve_trace(trace, "gdsf", selector_for("large"), 1, _replay(small_ok, large_ok), "flops", unit_scale=10)
    assert big.cost == pytest.approx(big.flops / 10) and big.correct == 6 - (trace.count(2))
    assert big.hits == 0  # capacity 1 and no repeat in a row: every request misses


def test_oracle_and_trained_selectors_route() -> None:
    small_ok, large_ok = [True, False], [True, True]
    truth = true_route_costs({"small": [1.0, 1.0], "large": [3.0, 3.0]}, {"small": small_ok, "large": large_ok})
    assert truth[0][("small", "large")] == 1.0 and truth[1][("small", "large")] == 7.0
    oracle = selector_for("oracle", truth=lambda q: truth[q])
    t = serve_trace([0, 1], "lec", oracle, 5, _replay(small_ok, large_ok), "latency")
    assert t.calls == {"small": 1, "large": 1} and t.answered == {"small": 1, "large": 1}

    cfg = PredictorConfig(("small", "large"), embedding_dim=0, text_features=("log_chars",))
    pred = QualityPredictor(cfg, {"feature_mean": np.zeros(1), "feature_std": np.ones(1),
                                  "out.weight": np.zeros((2, 1)), "out.bias": np.array([3.0, 3.0])})  # p ~ 0.95
    trained = {"predictor": pred, "routes": [("small", "large"), ("large",)], "costs": {"small": 1.0, "large": 3.0},
               "text_of": str}

    assert selector_for("trained", trained=trained).explore == 0.0
    assert selector_for("trained-explore", trained=trained, explore=2.0).explore == 2.0
    sel = selector_for("trained", trained=trained, prime=[0, 1])
    assert isinstance(sel, TrainedSelector) and set(sel._pred) == {0, 1}  # predicted up front, in one batch
    assert sel.choose(0) == ("small", "large")
    t = serve_trace([0, 1, 1, 1], "lfu", sel, 0.5, _replay(small_ok, large_ok), "latency")
    # q1's cascade failed: the online update lowers P(small right) and the large route wins after
    assert sel.choose(1) == ("large",) and t.calls["small"] <= 3


def test_the_tables_build_the_papers_methods_from_the_registries() -> None:
    large, cascade = selector_for("large"), selector_for("cascade", penalty=3.0)
    assert type(large) is StaticSelector and large.routes == (("large",),) and large.penalty == 2.0
    assert type(cascade) is StaticSelector and cascade.routes == (("small", "large"),) and cascade.penalty == 3.0
    oracle = selector_for("oracle", truth=lambda q: {("small", "large"): 1.0, ("large",): 2.0})
    assert type(oracle) is OracleSelector and oracle.choose(0) == ("small", "large")
    lfu, lec, gdsf = policy_for("lfu", 4), policy_for("lec", 4), policy_for("gdsf", 4)
    assert (lfu.name, lfu.history, lfu.admission) == ("lfu", True, True)  # the paper's "perfect LFU"
    assert (lec.name, gdsf.name, lec.capacity) == ("lec", "gdsf", 4)


def test_errors_and_balanced_set() -> None:
    with pytest.raises(UnknownNameError):
        selector_for("nope")
    with pytest.raises(ConfigError):
        selector_for("trained")
    with pytest.raises(ConfigError):
        serve_trace([0], "lfu", selector_for("large"), 1, _replay([True], [True]), "dollars")
    with pytest.raises(UnknownNameError):
        serve_trace([0], "lru", selector_for("large"), 1, _replay([True], [True]), "latency")
    qs = [f"q{i}" for i in range(10)]
    ok = [i % 3 == 0 for i in range(10)]
    chosen = balanced_set(qs, ok, 6)
    assert len(chosen) == 6 and sum(ok[qs.index(q)] for q in chosen) == 3
    with pytest.raises(ConfigError):
        balanced_set(qs, ok, 10)
