"""The trained multiplexer's evaluation: metrics against hand-computed values, the data readers,
and the whole ``train-multiplexer`` pipeline on tiny subsets (a hashing stand-in for the encoder,
so this stays fast; tests/core/multiplexer/test_trained.py uses the real one)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from cachemux.errors import ConfigError
from cachemux.lab.multiplexer_eval import (
    EvalConfig,
    load_dcrouter,
    load_gsm8k,
    load_mtbench,
    multi_curve,
    oracle_curve,
    random_curve,
    roc_auc,
    run_evaluation,
)
from cachemux.multiplexer import PredictorConfig, QualityPredictor, TrainedSelector
from cachemux.multiplexer.fitting import (
    Curve,
    FitConfig,
    calibrate_failure_price,
    calibrate_share,
    cost_at_quality,
    routing_curve,
)
from cachemux.sim.routing import PRICES_PER_MTOK


def test_roc_auc_matches_hand_counts():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)  # ties count half
    assert roc_auc(np.array([1, 1, 0]), np.array([3.0, 2.0, 1.0])) == 1.0
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_routing_curves():
    # small right on 0 and 2, large right on 0, 1, 3; costs (1, 10) except query 3 (2, 20)
    q = np.array([[1, 1], [0, 1], [1, 0], [0, 1]], dtype=float)
    c = np.array([[1, 10], [1, 10], [1, 10], [2, 20]], dtype=float)
    cv = routing_curve(np.array([0.9, 0.8, 0.1, 0.2]), q, c)  # large order: 0, 1, 3, 2
    np.testing.assert_allclose(cv.share, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(cv.quality, [0.5, 0.5, 0.75, 1.0, 0.75])
    np.testing.assert_allclose(cv.cost, [5, 14, 23, 41, 50])
    assert cost_at_quality(cv, 0.75) == (23.0, 0.5)
    assert cost_at_quality(cv, 1.01) is None
    orc = oracle_curve(q, c)  # gains first (cheap one first), then the no-gain one, then the loss
    np.testing.assert_allclose(orc.quality[:3], [0.5, 0.75, 1.0])
    np.testing.assert_allclose(orc.cost[:3], [5, 14, 32])
    rnd = random_curve(q, c, 3)
    np.testing.assert_allclose(rnd.quality, [0.5, 0.625, 0.75])
    np.testing.assert_allclose(rnd.cost, [5, 27.5, 50])
    assert isinstance(rnd, Curve)


def test_calibrate_share_edges():
    p = np.linspace(0.05, 1, 11)  # sigmoid outputs: never exactly 0 (tau is clipped to [0, 1])
    assert calibrate_share(p, 0.0) == 1.0
    assert (p > calibrate_share(p, 1.0)).all()
    assert (p > calibrate_share(p, 0.3)).sum() == 3
    with pytest.raises(ConfigError, match="target share"):
        calibrate_share(p, 1.5)


def test_failure_price_calibration_reaches_the_target_with_the_selector_rule():
    rng = np.random.default_rng(3)
    n = 400
    p = np.stack([rng.uniform(0.2, 0.9, n), rng.uniform(0.7, 1.0, n)], axis=1)
    q = (rng.random((n, 2)) < p).astype(float)
    tokens = rng.integers(20, 400, n)
    c = tokens[:, None] * np.array([PRICES_PER_MTOK["small"], PRICES_PER_MTOK["large"]]) / 1e6
    cal = calibrate_failure_price(p, q, c, 0.95)
    assert cal["failure_price"] is not None and cal["failure_price"] > 0
    large = cal["failure_price"] * (p[:, 1] - p[:, 0]) > c[:, 1] - c[:, 0]
    assert large.mean() == pytest.approx(cal["share_large"])
    routed = np.where(large, q[:, 1], q[:, 0]).mean()
    assert routed >= 0.95 * q[:, 1].mean() - 1e-12
    # the selector with that price makes the same choices (single-model routes, per-query costs)
    cfg = PredictorConfig(("small", "large"), embedding_dim=0, text_features=("log_chars",),
                          calibration={"cost_aware_quality=0.95": cal})
    pr = QualityPredictor(cfg, {"feature_mean": np.zeros(1), "feature_std": np.ones(1),
                                "out.weight": np.zeros((2, 1)), "out.bias": np.zeros(2)})
    sel = TrainedSelector(pr, costs=lambda i: {"small": c[i, 0], "large": c[i, 1]},
                          failure_price="cost_aware_quality=0.95", text_of=str)
    for i in range(n):
        sel._pred[i] = p[i]
    assert [sel.choose(i) == ("large",) for i in range(n)] == large.tolist()
    with pytest.raises(ConfigError, match="unknown calibrated failure price 'nope'"):
        TrainedSelector(pr, costs={"small": 1, "large": 2}, failure_price="nope")


def test_multi_curve_is_the_selectors_rule():
    rng = np.random.default_rng(1)
    p = rng.random((30, 3))
    q = (rng.random((30, 3)) < p).astype(float)
    c = np.tile([1.0, 3.0, 9.0], (30, 1))
    curve = multi_curve(p, q, c, points=20)
    assert curve["cost"][0] == 1.0  # lam = 0: always the cheapest
    assert np.all(np.diff(curve["cost"]) >= -1e-12)  # a higher quality price never saves
    lam = curve["lam"][10]
    pr = QualityPredictor.__new__(QualityPredictor)  # a stand-in that returns p by query index
    pr.config = type("C", (), {"models": ("a", "b", "c"), "costs": {}, "calibration": {}})()
    pr.predict_proba = lambda texts: p[[int(t) for t in texts]]
    sel = TrainedSelector(pr, costs={"a": 1.0, "b": 3.0, "c": 9.0}, failure_price=lam)
    picks = [sel.choose(str(i))[0] for i in range(30)]
    want = np.argmin(c + lam * (1 - p), axis=1)
    assert picks == [("a", "b", "c")[j] for j in want]


def test_data_readers():
    mt = load_mtbench()
    assert len(mt) == 80 and mt.models == ("small", "large")
    assert mt.labels[:, 0].mean() == pytest.approx(0.5) and (mt.labels[:, 1] == 1).all()
    assert mt.quality.mean(0) == pytest.approx([8.340625, 9.228125])
    assert (mt.costs[:, 1] > mt.costs[:, 0]).all()
    g = load_gsm8k()
    assert len(g) == 1319 and g.labels.mean(0) == pytest.approx([0.6384, 0.8567], abs=1e-3)
    d = load_dcrouter("test")
    assert len(d.models) == 9 and len(d) == 500 and load_dcrouter("train").models == d.models
    with pytest.raises(ConfigError, match="split"):
        load_dcrouter("dev")


class HashEmbedder:
    """Deterministic pseudo-embeddings (a stand-in for MiniLM that keeps this test fast)."""

    model_id = "test/hash-embedder"

    def __call__(self, texts):
        out = np.zeros((len(texts), 32), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).normal(size=32)
            v[0] += len(t) / 500.0  # some signal a head can use
            out[i] = v / np.linalg.norm(v)
        return out


def test_pipeline_writes_report_plot_and_predictors(tmp_path):
    sizes = {"mmlu-train": 160, "mmlu-test": 80, "gsm8k": 60, "mtbench": None,
             "dcrouter-train": 120, "dcrouter-test": 60}
    cfg = EvalConfig(out=tmp_path / "out", cache_dir=tmp_path / "cache", quick=True, folds=3, sizes=sizes,
                     embedder=HashEmbedder(), progress=False,
                     grid=(FitConfig(l2=1e-2), FitConfig(hidden=8, dropout=0.1, l2=1e-4, epochs=5)))
    lines: list[str] = []
    report = run_evaluation(cfg, log=lines.append)
    out = tmp_path / "out"
    assert (out / "trained_multiplexer.png").stat().st_size > 0
    saved = json.loads((out / "trained_multiplexer.json").read_text())
    assert saved["sizes"]["mmlu-train"] == 160 and saved["embedding_model"] == "test/hash-embedder"
    for key in ("mmlu-test", "gsm8k", "mtbench"):
        rep = saved["sets"][key]["chosen"]
        assert 0.0 <= rep["auc_small_success"] <= 1.0
        assert rep["oracle"]["saved"] >= rep["random"]["saved"] - 1e-9
        assert set(saved["sets"][key]["deployed"]) == {"large_share=0.2", "large_share=0.3", "large_share=0.5",
                                                       "quality=0.95", "cost_aware_quality=0.95"}
        assert rep["gain"]["calls_saved"] is not None and rep["oracle"]["calls_saved"] >= rep["random"]["calls_saved"]
    assert report["dcrouter"]["always_best_model"] in report["dcrouter"]["models"]
    assert any("dcrouter" in line for line in lines)
    # the saved predictors load back and drive a selector with their own calibration
    mm = QualityPredictor.load(out / "trained_multiplexer" / "mmlu")
    assert mm.config.embedding_model == "test/hash-embedder" and "quality=0.95" in mm.config.calibration
    sel = TrainedSelector(QualityPredictor.load(out / "trained_multiplexer" / "mmlu", embedder=HashEmbedder()),
                          [("small", "large"), ("large",)], threshold="large_share=0.3")
    assert sel.choose("What is 2 + 2?") in sel.routes
    dc = QualityPredictor.load(out / "trained_multiplexer" / "dcrouter", embedder=HashEmbedder())
    assert len(dc.models) == 9 and set(dc.config.costs) == set(dc.models)
    assert TrainedSelector(dc).choose("Which planet is largest?")[0] in dc.models
    # a second run reuses the cached embeddings
    files = sorted((tmp_path / "cache" / "embeddings").glob("*.npy"))
    assert len(files) == 6
