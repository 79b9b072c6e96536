"""The trained multiplexer: real MiniLM embeddings of a few hundred MMLU prompts, a real torch head,
save/load, the selector's pricing and choice, calibration, online re-estimation, bad inputs."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from cachemux.errors import ConfigError, UnknownNameError
from cachemux.lab.multiplexer_eval import group_folds, load_mmlu_set, out_of_fold
from cachemux.multiplexer import FAIL_PENALTY, TrainedSelector, route_cost
from cachemux.multiplexer.fitting import FitConfig, calibrate_quality, calibrate_share, fit_predictor
from cachemux.multiplexer.predictor import PredictorConfig, QualityPredictor, cached_embeddings, packaged_embedder
from cachemux.multiplexer.trained import route_expected_cost
from cachemux.sim.routing import PRICES_PER_MTOK

N_PROMPTS = 240


@pytest.fixture(scope="module")
def mmlu(tmp_path_factory):
    """240 MMLU train-subject prompts with real packaged-MiniLM embeddings (cached in a temp dir)."""
    data = load_mmlu_set("train")
    idx = np.sort(np.random.default_rng(0).choice(len(data), N_PROMPTS, replace=False))
    data = data.subset(idx)
    cache = tmp_path_factory.mktemp("emb")
    emb = cached_embeddings(data.texts, name="test", cache_dir=cache)
    return data, emb, cache


@pytest.fixture(scope="module")
def predictor(mmlu):
    data, emb, _ = mmlu
    return fit_predictor(data.models, emb, data.texts, data.labels, FitConfig(l2=1e-4),
                         costs=PRICES_PER_MTOK)


def toy_predictor(weight: float = 8.0) -> QualityPredictor:
    """No embedding: P(small right) falls with the share of digits; large is right 90%."""
    cfg = PredictorConfig(("small", "large"), embedding_dim=0, text_features=("digit_frac",),
                          costs={"small": 1.0, "large": 100.0})
    params = {"feature_mean": np.zeros(1), "feature_std": np.ones(1),
              "out.weight": np.array([[-weight], [0.0]]), "out.bias": np.array([2.0, math.log(9)])}
    return QualityPredictor(cfg, params)


# ---- embeddings and the head -----------------------------------------------------------------

def test_embeddings_are_cached_as_npy_without_pickle(mmlu):
    data, emb, cache = mmlu
    assert emb.shape == (N_PROMPTS, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    files = list((cache / "embeddings").glob("*.npy"))
    assert len(files) == 1
    np.testing.assert_array_equal(np.load(files[0], allow_pickle=False), emb)

    def boom(texts):
        raise AssertionError("should have come from the cache")

    np.testing.assert_array_equal(cached_embeddings(data.texts, name="test", cache_dir=cache, embedder=boom), emb)
    assert cached_embeddings(data.texts[:5], name="test", cache_dir=cache, only_cached=True) is None


def test_head_learns_the_training_labels(mmlu, predictor):
    data, emb, _ = mmlu
    p = predictor.predict_proba(data.texts, embeddings=emb)
    assert p.shape == (N_PROMPTS, 2) and np.all((p > 0) & (p < 1))
    from cachemux.lab.multiplexer_eval import roc_auc

    assert roc_auc(data.labels[:, 0] > 0.5, p[:, 0]) > 0.9  # 384 dims, 240 rows, weak L2: it fits
    # the numpy forward is the torch module's forward
    import torch

    with torch.no_grad():
        pt = torch.sigmoid(predictor.to_torch()(torch.from_numpy(predictor.features(data.texts, emb)))).numpy()
    np.testing.assert_allclose(pt, p, atol=1e-5)


def test_mlp_with_text_features_trains_and_early_stops(mmlu):
    data, emb, _ = mmlu
    fit = FitConfig(hidden=16, dropout=0.1, l2=1e-4, epochs=15, text_features=("log_chars", "digit_frac"))
    pr = fit_predictor(data.models, emb[:200], data.texts[:200], data.labels[:200], fit,
                       val=(emb[200:], data.texts[200:], data.labels[200:]))
    assert pr.config.hidden == 16 and pr.config.input_dim == 386
    p = pr.predict_proba(data.texts[200:], embeddings=emb[200:])
    assert p.shape == (40, 2) and np.all(np.isfinite(p))


def test_save_load_round_trip(tmp_path, mmlu, predictor):
    data, emb, _ = mmlu
    pr = predictor.with_config(calibration={"large_share=0.3": {"threshold": 0.42}})
    pr.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["models"] == ["small", "large"] and cfg["costs"] == PRICES_PER_MTOK
    assert cfg["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    back = QualityPredictor.load(tmp_path / "m")
    assert back.config == pr.config
    np.testing.assert_array_equal(back.predict_proba(data.texts[:20], embeddings=emb[:20]),
                                  pr.predict_proba(data.texts[:20], embeddings=emb[:20]))
    # a selector can be built straight from the folder, and uses the saved calibration by name
    sel = TrainedSelector(tmp_path / "m", [("small", "large"), ("large",)], threshold="large_share=0.3")
    assert sel.threshold == 0.42


def test_load_rejects_mismatched_weights(tmp_path, predictor):
    predictor.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["hidden"] = 8
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="do not match the config"):
        QualityPredictor.load(tmp_path / "m")
    with pytest.raises(ConfigError, match="not a saved quality predictor"):
        QualityPredictor.load(tmp_path / "nowhere")


def test_selector_embeds_real_text(predictor, mmlu):
    data, emb, _ = mmlu
    sel = TrainedSelector(predictor, [("small", "large"), ("large",)])  # costs: price x tokens
    sel.prime(data.texts[:8])
    want = predictor.predict_proba(data.texts[:8], embeddings=emb[:8])
    got = sel.predict_batch(data.texts[:8])
    np.testing.assert_allclose(got, want, atol=1e-4)  # the selector's own embedding agrees
    q = data.texts[0]
    c = sel.costs_for(q)
    assert c["large"] / c["small"] == pytest.approx(PRICES_PER_MTOK["large"] / PRICES_PER_MTOK["small"])
    assert sel.expected_cost(q) == pytest.approx(min(sel.route_costs(q).values()))


# ---- pricing and choice ------------------------------------------------------------------------

def test_expected_cost_is_the_mean_of_route_cost():
    routes = [("a", "b", "c"), ("b", "c"), ("c",), ("a",)]
    p = {"a": 0.3, "b": 0.6, "c": 0.9}
    cost = {"a": 1.0, "b": 4.0, "c": 20.0}
    for r in routes:
        exact = 0.0
        for outcome in itertools.product([True, False], repeat=len(r)):
            prob = math.prod(p[m] if ok else 1 - p[m] for m, ok in zip(r, outcome))
            exact += prob * route_cost(r, cost, dict(zip(r, outcome)))[0]
        assert route_expected_cost(r, p, cost) == pytest.approx(exact)
    # the paper's cascade: c_s + (1 - p_s) * penalty * c_l
    assert route_expected_cost(("a", "c"), p, cost) == pytest.approx(1.0 + 0.7 * FAIL_PENALTY * 20.0)


def test_selector_takes_the_cascade_when_small_is_likely_right():
    sel = TrainedSelector(toy_predictor(), [("small", "large"), ("large",)])
    easy, hard = "What is the capital of France?", "1234 * 5678 = 9876543 ?"
    assert sel.success_prob(easy)["small"] > 0.85 and sel.success_prob(hard)["small"] < 0.1
    assert sel.choose(easy) == ("small", "large")
    assert sel.choose(hard) == ("large",)
    c = sel.costs_for(easy)
    p = sel.success_prob(easy)["small"]
    assert sel.expected_cost(easy) == pytest.approx(c["small"] + (1 - p) * FAIL_PENALTY * c["large"])
    assert sel.expected_cost(hard) == pytest.approx(sel.costs_for(hard)["large"])


def test_single_model_routes_price_quality_failures():
    # every route is one model: a bad answer costs penalty x the priciest model (documented default)
    sel = TrainedSelector(toy_predictor(), costs={"small": 1.0, "large": 100.0})
    assert sel.routes == (("small",), ("large",))
    easy, hard = "Name a colour.", "12 + 34 = 46 ?"
    p = sel.success_prob(hard)
    assert sel.route_costs(hard)[("small",)] == pytest.approx(1.0 + (1 - p["small"]) * 2 * 100.0)
    assert sel.choose(easy) == ("small",) and sel.choose(hard) == ("large",)
    # a failure price of 0: quality does not matter, the cheapest model always wins
    free = TrainedSelector(toy_predictor(), costs={"small": 1.0, "large": 100.0}, failure_price=0.0)
    assert free.choose(hard) == ("small",)


def test_threshold_rule_and_key_queries():
    texts = {1: "Name a colour.", 2: "12 + 34 = 46 ?"}
    sel = TrainedSelector(toy_predictor(), [("small", "large"), ("large",)], costs={"small": 1.0, "large": 100.0},
                          threshold=0.5, text_of=texts.__getitem__)
    assert sel.choose(1) == ("small", "large") and sel.choose(2) == ("large",)
    assert sel.expected_cost(2) == pytest.approx(100.0)
    strict = TrainedSelector(toy_predictor(), [("small", "large"), ("large",)], costs={"small": 1.0, "large": 100.0},
                             threshold=0.0, text_of=texts.__getitem__)
    assert strict.choose(1) == ("large",)  # nothing is certain enough for the cascade
    assert sel.choose_batch([1, 2, 1]) == [("small", "large"), ("large",), ("small", "large")]


def test_n_model_routes():
    cfg = PredictorConfig(("a", "b", "c"), embedding_dim=0, text_features=("digit_frac",))
    # a: good on words, bad on digits; b: medium; c: almost always right
    params = {"feature_mean": np.zeros(1), "feature_std": np.ones(1),
              "out.weight": np.array([[-12.0], [-3.0], [0.0]]), "out.bias": np.array([3.0, 2.0, 4.0])}
    pr = QualityPredictor(cfg, params)
    costs = {"a": 1.0, "b": 5.0, "c": 30.0}
    sel = TrainedSelector(pr, costs=costs)
    assert sel.routes == (("a",), ("b",), ("c",))
    assert sel.choose("plain words only") == ("a",)
    assert sel.choose("3 5 7 11 13 17 19 23") in {("b",), ("c",)}
    assert sel.predict_batch(["x", "1"]).shape == (2, 3)
    cas = TrainedSelector(pr, [("a", "b", "c"), ("b", "c"), ("c",)], costs=costs)
    for q in ("plain words only", "4 8 15 16 23 42"):
        rc = cas.route_costs(q)
        assert cas.choose(q) == min(rc, key=rc.get)
        assert cas.expected_cost(q) == pytest.approx(min(rc.values()))
    # a callable cost: price x tokens of the query
    per_tok = TrainedSelector(pr, costs=lambda q: {m: c * len(q) for m, c in costs.items()})
    assert per_tok.costs_for("abcd") == {"a": 4.0, "b": 20.0, "c": 120.0}


def test_observe_moves_predictions_towards_outcomes():
    sel = TrainedSelector(toy_predictor(), [("small", "large"), ("large",)], costs={"small": 1.0, "large": 100.0})
    q = "Name a colour."
    p0 = sel.success_prob(q)["small"]
    assert sel.choose(q) == ("small", "large")
    sel.observe(q, {"small": 1.0, "large": 100.0}, {"small": False, "large": None})
    p1 = sel.success_prob(q)["small"]
    assert p1 == pytest.approx(p0 / 2)  # Beta prior worth 1 observation: (p0 + 0) / (1 + 1)
    assert sel.choose(q) == ("large",)  # like the paper's online selector after a failed cascade
    for _ in range(3):
        sel.observe(q, {"small": 1.0}, {"small": True})
    assert sel.success_prob(q)["small"] == pytest.approx((p0 + 3) / 5)
    assert sel.success_prob("Another question")["small"] == pytest.approx(sel.predicted("Another question")["small"])
    # observed costs replace the priced ones for that query
    sel.observe(q, {"small": 3.0}, {"small": True})
    assert sel.costs_for(q)["small"] == pytest.approx((1.0 + 1.0 + 1.0 + 1.0 + 3.0) / 5)
    assert sel.costs_for("Another question") == {"small": 1.0, "large": 100.0}


def test_engine_uses_the_trained_selector():
    from cachemux.joint import Generation, JointEngine
    from cachemux.policies import LEC

    sel = TrainedSelector(toy_predictor(), [("small", "large"), ("large",)], costs={"small": 1.0, "large": 100.0})

    def generate(q, model):
        return Generation(f"{model}:{q}", 1.0 if model == "small" else 100.0,
                          (not any(ch.isdigit() for ch in q)) if model == "small" else None)

    eng = JointEngine(LEC(2), sel, generate)
    r = eng.serve("Name a colour.")
    assert r.models == ("small",) and r.cost == 1.0
    r = eng.serve("2 + 2 = 5 ?")
    assert r.models == ("large",) and r.cost == 100.0


# ---- calibration ---------------------------------------------------------------------------------

def test_share_calibration_hits_the_target_on_the_calibration_set(mmlu):
    data, emb, _ = mmlu
    folds = group_folds(data.groups, 3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(N_PROMPTS))
    for f in folds:  # whole subjects per fold
        others = set(np.setdiff1d(np.arange(N_PROMPTS), f).tolist())
        assert not {data.groups[i] for i in f} & {data.groups[i] for i in others}
    p = out_of_fold(data, emb, FitConfig(l2=1e-2), folds)
    assert np.all(np.isfinite(p))
    p_fail = 1 - p[:, 0]
    for share in (0.2, 0.3, 0.5):
        tau = calibrate_share(p_fail, share)
        assert abs((p_fail > tau).mean() - share) <= 1.0 / N_PROMPTS + 1e-9
        sel = TrainedSelector(QualityPredictor(
            PredictorConfig(("small", "large"), embedding_dim=0, text_features=("log_chars",)),
            {"feature_mean": np.zeros(1), "feature_std": np.ones(1), "out.weight": np.zeros((2, 1)),
             "out.bias": np.zeros(2)}), [("small", "large"), ("large",)], costs={"small": 1, "large": 10},
            threshold=tau)
        for i, q in enumerate(data.texts):  # the selector with tau sends the same share to large
            sel._pred[q] = p[i]
        share_sel = np.mean([sel.choose(q) == ("large",) for q in data.texts])
        assert abs(share_sel - share) <= 1.0 / N_PROMPTS + 1e-9
    qc = calibrate_quality(p_fail, data.quality, data.costs, 0.95)
    large = p_fail > qc["threshold"]
    routed = np.where(large, data.quality[:, 1], data.quality[:, 0]).mean()
    assert routed >= 0.95 * data.quality[:, 1].mean() - 1e-12
    assert large.mean() == pytest.approx(qc["share_large"])


# ---- bad inputs ----------------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors(predictor):
    routes = [("small", "large"), ("large",)]
    with pytest.raises(UnknownNameError, match=r"unknown model 'medium'; valid choices: large, small"):
        TrainedSelector(predictor, [("small", "medium")], costs={"small": 1, "medium": 2})
    with pytest.raises(ConfigError, match="no cost for model 'large'"):
        TrainedSelector(predictor, routes, costs={"small": 1.0})
    with pytest.raises(ConfigError, match="cost of model 'large' must be a finite number >= 0, got nan"):
        TrainedSelector(predictor, routes, costs={"small": 1.0, "large": float("nan")})
    with pytest.raises(ConfigError, match="must be a number"):
        TrainedSelector(predictor, routes, costs={"small": 1.0, "large": "cheap"})
    with pytest.raises(ConfigError, match="threshold must be a probability"):
        TrainedSelector(predictor, routes, costs={"small": 1, "large": 2}, threshold=1.5)
    with pytest.raises(UnknownNameError, match="unknown calibration 'quality=0.9'"):
        TrainedSelector(predictor, routes, costs={"small": 1, "large": 2}, threshold="quality=0.9")
    with pytest.raises(ConfigError, match="failure_price"):
        TrainedSelector(predictor, routes, costs={"small": 1, "large": 2}, failure_price=float("nan"))
    sel = TrainedSelector(toy_predictor(), routes, costs=lambda q: {"small": 1.0, "large": float("nan")})
    with pytest.raises(ConfigError, match="'large' must be a finite number >= 0, got nan"):
        sel.choose("hello")
    with pytest.raises(ConfigError, match="is not a str: pass text_of"):
        TrainedSelector(toy_predictor(), routes).choose(42)
    with pytest.raises(UnknownNameError, match="unknown model 'huge'"):
        TrainedSelector(toy_predictor(), routes).observe("q", {"huge": 1.0}, {})
    with pytest.raises(ConfigError, match="observed cost of model 'small'"):
        TrainedSelector(toy_predictor(), routes).observe("q", {"small": -1.0}, {})
    # shapes
    with pytest.raises(ConfigError, match=r"embeddings must have shape \(n, 384\), got \(3, 10\)"):
        predictor.predict_proba(["a", "b", "c"], embeddings=np.zeros((3, 10)))
    with pytest.raises(ConfigError, match="NaN"):
        predictor.predict_proba(["a"], embeddings=np.full((1, 384), np.nan))
    with pytest.raises(ConfigError, match=r"labels must have shape \(2, 2\)"):
        fit_predictor(("small", "large"), np.zeros((2, 384)), ["a", "b"], np.zeros((2, 3)))
    with pytest.raises(ConfigError, match="labels must lie in"):
        fit_predictor(("small", "large"), np.zeros((2, 384)), ["a", "b"], np.full((2, 2), 2.0))
    with pytest.raises(ConfigError, match="not a single str"):
        predictor.predict_proba("one text")
    with pytest.raises(UnknownNameError, match="unknown text feature 'vibes'"):
        PredictorConfig(("a",), text_features=("vibes",))
    with pytest.raises(ConfigError, match="duplicate model names"):
        PredictorConfig(("a", "a"))


def test_packaged_embedder_is_shared():
    assert packaged_embedder() is packaged_embedder()


def test_cli_registers_train_multiplexer(capsys):
    from cachemux.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train-multiplexer", "--help"])
    assert exc.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_explore_tries_the_cheap_model_once_then_follows_the_outcome():
    # a query the predictor finds hard: without exploration it always goes to the large model and
    # nothing is ever learnt about the small one on it
    costs = {"small": 1.0, "large": 20.0}
    hard = "1234 * 5678 = 9876543 ?"
    plain = TrainedSelector(toy_predictor(), [("small", "large"), ("large",)], costs=costs)
    p = plain.success_prob(hard)["small"]
    assert p < 0.1 and plain.choose(hard) == ("large",)
    sel = TrainedSelector(toy_predictor(), [("small", "large"), ("large",)], costs=costs, explore=4.0,
                          prior_strength=0.5)
    q_opt = (0.5 * p + 4.0) / 4.5
    assert sel.choice_prob(hard)["small"] == pytest.approx(q_opt)
    assert sel.success_prob(hard)["small"] == pytest.approx(p)  # the plain posterior is unchanged
    assert sel.choose(hard) == ("small", "large")  # 1 + (1 - q) * 2 * 20 < 20: try it
    assert sel.expected_cost(hard) == pytest.approx(1.0 + (1 - q_opt) * FAIL_PENALTY * 20.0)
    # the small model turns out right on it: keep the cascade (posterior, no optimism left)
    sel.observe(hard, {"small": 1.0}, {"small": True})
    assert sel.choice_prob(hard)["small"] == pytest.approx((0.5 * p + 1) / 1.5)
    assert sel.choose(hard) == ("small", "large")
    # another hard query on which the small model fails: back to the large model for good
    hard2 = "4321 * 8765 = 1234567 ?"
    assert sel.choose(hard2) == ("small", "large")
    sel.observe(hard2, {"small": 1.0, "large": 20.0}, {"small": False, "large": None})
    assert sel.choose(hard2) == ("large",)
    # exploration is relative to the price: a 1.05x pair never explores a hard query
    flat = TrainedSelector(toy_predictor(), [("small", "large"), ("large",)], costs={"small": 1.0, "large": 1.05},
                           explore=4.0, prior_strength=0.5)
    assert flat.choose(hard) == ("large",)


def test_entry_price_has_no_exploration_bonus():
    """explore= makes untried models look good for *routing*; the cache's price of an entry is
    the expected cost under the posterior without that bonus."""
    costs = {"small": 1.0, "large": 10.0}
    eager = TrainedSelector(toy_predictor(), [("small", "large"), ("large",)], costs=costs, explore=4.0)
    plain = TrainedSelector(toy_predictor(), [("small", "large"), ("large",)], costs=costs)
    q = "4321 * 8765 = 1234567 ?"
    assert eager.settled(q) and eager.entry_price(q, 99.0) > 0
    route = eager.choose(q)
    assert eager.entry_price(q, 99.0) == pytest.approx(plain.route_estimates(q)[route])
    assert eager.entry_price(q, 99.0) >= eager.route_costs(q)[route]


def test_selector_memory_is_bounded():
    sel = TrainedSelector(toy_predictor(), [("small", "large"), ("large",)], costs={"small": 1.0, "large": 10.0},
                          cache_size=3)
    for i in range(10):
        q = f"question {i}"
        sel.choose(q)
        sel.observe(q, {"small": 1.0, "large": 10.0}, {"small": False, "large": True})
    assert len(sel._pred) <= 3 and len(sel._obs) <= 3 * 2 and len(sel._cost_obs) <= 3 * 2
    assert len(sel.estimates) == 0  # no unread base-class running means either (they were unbounded)
    assert sel.success_prob("question 9")["small"] < sel.predicted("question 9")["small"]  # recent: kept
    for bad in ({"explore": -1}, {"explore": float("nan")}, {"explore": "lots"}, {"cache_size": 0},
                {"cache_size": 2.5}):
        with pytest.raises(ConfigError):
            TrainedSelector(toy_predictor(), costs={"small": 1.0, "large": 10.0}, **bad)
