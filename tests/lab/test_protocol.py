"""cachemux.lab.protocol: the paper's protocol through CacheMuxRouter over RecordedChatModel, on a
tiny hand-checkable trace (synthetic records, no real model); cachemux.lab.mmlu_task's judge,
items and measurement store."""

from __future__ import annotations

import json

import pytest

from cachemux.errors import ConfigError, UnknownNameError
from cachemux.lab.mmlu_task import GOLD, MMLUMeasurements, first_letter, is_correct, load_items, measure_mmlu
from cachemux.lab.protocol import FLOPS_SCALE, Protocol, RecordedChatModel, cost_of, routes_for
from cachemux.models.local import GenerationResult
from langchain_core.messages import HumanMessage

# q0: the small model is right; q1: it is wrong. large: 10x the cost, always right.
TEXTS = ["What is 1+1?\nA. 2\nB. 3\nAnswer:", "What is 2+2?\nA. 3\nB. 4\nAnswer:"]
GOLD_LETTERS = ["A", "B"]


def _records() -> dict[str, list[dict]]:
    return {"small": [{"answer": "A", "latency": 0.1, "cpu": 0.05, "flops": 1e9},
                      {"answer": "A.", "latency": 0.2, "cpu": 0.1, "flops": 2e9}],
            "large": [{"answer": "A", "latency": 1.0, "cpu": 0.5, "flops": 10e9},
                      {"answer": "B", "latency": 2.0, "cpu": 1.0, "flops": 20e9}]}


def _protocol() -> Protocol:
    return Protocol(TEXTS, GOLD_LETTERS, _records())


def test_judge_is_the_first_letter() -> None:
    assert first_letter(" B.") == "B" and first_letter("(c) maybe") == "C" and first_letter("") == ""
    assert is_correct("b", "B") and not is_correct("B", "The answer is B")


def test_recorded_chat_model_answers_with_its_record() -> None:
    m = RecordedChatModel("rec", {TEXTS[0]: _records()["small"][0]})
    out = m.invoke([HumanMessage(TEXTS[0])])
    assert out.content == "A"
    assert out.response_metadata["latency"] == 0.1 and out.response_metadata["flops"] == 1e9
    assert m.calls == 1
    with pytest.raises(KeyError, match="no recorded answer"):
        m.invoke("never measured")


def test_cost_of_reads_the_metadata() -> None:
    msg = RecordedChatModel("rec", {"p": {"answer": "A", "latency": 0.5, "flops": 3e9}}).invoke("p")
    assert cost_of("latency")("x", msg, 99.0) == 0.5
    assert cost_of("flops")("x", msg, 99.0) == 3e9 / FLOPS_SCALE
    with pytest.raises(ConfigError):
        cost_of("dollars")


def test_routes_and_bad_input() -> None:
    assert routes_for(["small", "large"]) == {"large": ("large",), "cascade": ("small", "large")}
    assert routes_for(["small", "medium", "large"])["medium-large"] == ("medium", "large")
    with pytest.raises(ConfigError):
        routes_for(["large", "small"])
    with pytest.raises(ConfigError):
        Protocol(TEXTS, ["A"], _records())
    with pytest.raises(UnknownNameError):
        _protocol().selector("psychic", "latency")
    with pytest.raises(ConfigError, match="predictor"):
        _protocol().selector("trained", "latency")


def test_always_large_on_a_hand_checked_trace() -> None:
    # trace q0 q1 q0 q1 q0: 2 misses (large on q0 = 1.0 s, on q1 = 2.0 s), then 3 hits
    t = _protocol().serve([0, 1, 0, 1, 0], "lfu", _protocol().selector("large", "latency"), 40, "latency")
    assert (t.requests, t.hits, t.correct) == (5, 3, 5)
    assert t.latency == pytest.approx(3.0) and t.cpu == pytest.approx(1.5) and t.flops == pytest.approx(30e9)
    assert t.cost == pytest.approx(3.0)
    assert t.calls == {"small": 0, "large": 2} and t.answered == {"small": 0, "large": 2}


def test_cascade_pays_the_penalty_in_cost_not_in_latency() -> None:
    # q0: small right (0.1 s). q1: small wrong (0.2 s), judge rejects "A.", large runs (2.0 s);
    # the engine prices the failed cascade 0.2 + 2 * 2.0 (the paper's penalty), the calls took 2.2 s
    p = _protocol()
    t = p.serve([0, 1, 1], "lec", p.selector("cascade", "latency"), 40, "latency")
    assert (t.hits, t.correct) == (1, 3)
    assert t.latency == pytest.approx(0.1 + 0.2 + 2.0)
    assert t.cost == pytest.approx(0.1 + 0.2 + 2 * 2.0)
    assert t.calls == {"small": 2, "large": 1} and t.answered == {"small": 1, "large": 1}


def test_capacity_one_and_the_oracle_in_flops() -> None:
    # cache of 1 entry: LEC keeps the dearer q1 (oracle price 20 GFLOPs vs 1), so q0 misses each time
    p = _protocol()
    t = p.serve([1, 0, 1, 0, 1], "lec", p.selector("oracle", "flops"), 1, "flops")
    assert t.hits == 2 and t.correct == 5
    assert t.calls == {"small": 2, "large": 1}  # oracle: small on q0 (both times), large alone on q1
    assert t.flops == pytest.approx(20e9 + 2 * 1e9)


def test_router_and_engine_paths_agree() -> None:
    p = _protocol()
    trace = [0, 1, 1, 0, 0, 1, 0, 1, 1, 1]
    for cache, sel in (("lfu", "large"), ("lec", "cascade"), ("gdsf", "noisy-0.8")):
        a = p.serve(trace, cache, p.selector(sel, "latency", seed=3), 1, "latency").as_dict()
        b = p.serve_engine(trace, cache, p.selector(sel, "latency", seed=3), 1, "latency").as_dict()
        for k in ("hits", "correct", "calls", "answered"):
            assert a[k] == b[k], (cache, sel, k)
        for k in ("latency_s", "flops", "paper_cost"):
            assert a[k] == pytest.approx(b[k]), (cache, sel, k)


def test_llamaindex_path_agrees_with_the_router_and_the_engine() -> None:
    """CacheMuxLLM over RecordedLLM serves the same trace to the same tally (hits, calls,
    answers, cost) as CacheMuxRouter and the bare engine, for a static, a cascade and a noisy
    selector; a prompt with no record is a KeyError naming the model."""
    from cachemux.lab.protocol_llamaindex import RecordedLLM, serve_llamaindex

    p = _protocol()
    trace = [0, 1, 1, 0, 0, 1, 0, 1, 1, 1]
    for cache, sel in (("lfu", "large"), ("lec", "cascade"), ("gdsf", "noisy-0.8")):
        for unit in ("latency", "flops"):
            a = serve_llamaindex(p, trace, cache, p.selector(sel, unit, seed=3), 1, unit).as_dict()
            b = p.serve_engine(trace, cache, p.selector(sel, unit, seed=3), 1, unit).as_dict()
            c = p.serve(trace, cache, p.selector(sel, unit, seed=3), 1, unit).as_dict()
            for k in ("hits", "correct", "calls", "answered"):
                assert a[k] == b[k] == c[k], (cache, sel, unit, k)
            for k in ("latency_s", "flops", "paper_cost"):
                assert a[k] == pytest.approx(b[k]) and c[k] == pytest.approx(b[k]), (cache, sel, unit, k)
    with pytest.raises(KeyError, match="m1"):
        RecordedLLM("m1", {}).complete("unknown prompt")


def test_mmlu_items_carry_checked_gold_letters() -> None:
    try:
        items = load_items(["nutrition"])
    except (ConfigError, FileNotFoundError):
        pytest.skip("shared data not found")
    assert len(items) == len(GOLD["nutrition"]) == 306
    assert items[0].gold == "C" and items[0].split == "test" and items[0].prompt.endswith("Answer:")
    assert load_items(["miscellaneous"])[0].split == "train"
    with pytest.raises(ConfigError, match="no gold letters"):
        load_items(["anatomy"])


class _Fake:
    def __init__(self, name: str, text: str) -> None:
        self.name, self.text, self.calls = name, text, 0

    def generate(self, prompt, max_new_tokens: int = 1) -> GenerationResult:
        self.calls += 1
        return GenerationResult(self.text, self.name, 0.01, 5e9, 90, 1, "length")


def test_measurements_resume_and_only(tmp_path) -> None:
    try:
        items = load_items(["nutrition"])[:4] + load_items(["miscellaneous"])[:2]
    except (ConfigError, FileNotFoundError):
        pytest.skip("shared data not found")
    path = tmp_path / "m.json"
    a, b = _Fake("a", "C"), _Fake("b", "B")
    store = MMLUMeasurements(path, {"k": 1})
    measure_mmlu(items[:3], {"a": a, "b": b}, store, only={"b": ["nutrition"]})
    again = MMLUMeasurements(path, {"k": 1})  # reloaded from disk
    assert len(again.records) == 3 and again.get(items[0].qid, "a")["letter"] == "C"
    measure_mmlu(items, {"a": a, "b": b}, again, only={"b": ["nutrition"]})
    assert a.calls == 6 and b.calls == 4  # nothing measured twice; b never on miscellaneous
    assert not again.has(items[-1].qid, "b")
    assert MMLUMeasurements(path, {"k": 2}).records == {}  # another key: ignored
    assert json.loads(path.read_text())["key"] == {"k": 1}


@pytest.mark.models
def test_live_router_answers_equal_the_measured_records(tmp_path) -> None:
    """SmolLM2 measured by measure_mmlu, then served live through CacheMuxRouter over
    LocalChatModel: the same prompt (system + question, chat template), the same greedy letter."""
    from cachemux.lab.mmlu_task import SYSTEM, store_key
    from cachemux.models import get_model
    from langchain_cachemux import LocalChatModel

    items = load_items(["nutrition"])[:3]
    store = MMLUMeasurements(tmp_path / "m.json", store_key())
    measure_mmlu(items, {"smollm2-135m": get_model("smollm2-135m")}, store)
    recs = [{**store.get(it.qid, "smollm2-135m"), "latency": store.get(it.qid, "smollm2-135m")["latency"][0],
             "cpu": store.get(it.qid, "smollm2-135m")["cpu"][0]} for it in items]
    p = Protocol([it.prompt for it in items], [it.gold for it in items], {"small": recs, "large": recs},
                 system=SYSTEM)
    chat = LocalChatModel("smollm2-135m", max_tokens=1, temperature=0.0)
    t = p.serve([0, 1, 0, 2], "lfu", p.selector("large", "latency"), 40, "latency",
                models={"small": chat, "large": chat})
    assert t.hits == 1 and t.calls["large"] == 3 and t.mismatches == 0
    assert t.correct == sum(is_correct(it.gold, r["answer"]) for it, r in zip([items[i] for i in (0, 1, 0, 2)],
                                                                            [recs[i] for i in (0, 1, 0, 2)]))
    assert t.latency > 0 and t.flops == pytest.approx(sum(recs[i]["flops"] for i in (0, 1, 2)))
    # the records of the calls made live, for a live / recorded comparison of the same calls
    assert t.recorded_latency == pytest.approx(sum(recs[i]["latency"] for i in (0, 1, 2)))
    assert t.recorded_cpu == pytest.approx(sum(recs[i]["cpu"] for i in (0, 1, 2)))


def test_trained_explore_tries_the_cascade_once_and_learns() -> None:
    # a predictor unsure of the small model (p = 0.5): the cascade's expected latency
    # 0.15 + 0.5 x 2 x 1.5 = 1.65 s is above the large model's 1.5 s, so "trained" sends q0 to the
    # large model every time; "trained-explore" prices the untried small model at (0.5 + 1) / 2 =
    # 0.75 (0.9 s), tries the cascade, the judge accepts the small answer, and the observed success
    # keeps q0 on the cascade (capacity 0.5: every request misses)
    import numpy as np

    from cachemux.multiplexer.predictor import PredictorConfig, QualityPredictor

    cfg = PredictorConfig(("small", "large"), embedding_dim=0, text_features=("log_chars",))
    pred = QualityPredictor(cfg, {"feature_mean": np.zeros(1), "feature_std": np.ones(1),
                                  "out.weight": np.zeros((2, 1)), "out.bias": np.array([0.0, 3.0])})
    prior = {"latency": {"small": 0.15, "large": 1.5}}
    p = Protocol(TEXTS, GOLD_LETTERS, _records(), prior=prior, predictor=pred)
    trace = [0] * 6
    plain = p.serve_engine(trace, "lfu", p.selector("trained", "latency"), 0.5, "latency")
    assert plain.calls == {"small": 0, "large": 6}
    explore = p.serve_engine(trace, "lfu", p.selector("trained-explore", "latency"), 0.5, "latency")
    assert explore.calls == {"small": 6, "large": 0} and explore.correct == 6
    assert explore.latency < plain.latency
    for sel in ("trained", "trained-explore"):  # the router path learns the same way
        a = p.serve(trace + [1, 0, 1], "lec", p.selector(sel, "latency"), 1, "latency").as_dict()
        b = p.serve_engine(trace + [1, 0, 1], "lec", p.selector(sel, "latency"), 1, "latency").as_dict()
        assert {k: a[k] for k in ("hits", "correct", "calls", "answered")} == \
            {k: b[k] for k in ("hits", "correct", "calls", "answered")}, sel
        assert a["paper_cost"] == pytest.approx(b["paper_cost"]), sel
