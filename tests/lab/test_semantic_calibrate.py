"""cachemux calibrate-semantic: the precision/recall arithmetic, GPTCache's rule, and a small real run."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from cachemux.cli import main
from cachemux.lab.calibrate_semantic import EmbeddingCache, choose_threshold, gptcache_hits, pr_curve
from shared_data import has_qqp_pairs


def test_pr_curve_matches_brute_force():
    rng = np.random.default_rng(0)
    sims = np.round(rng.random(500), 2)  # ties on purpose
    labels = (rng.random(500) < sims).astype(int)
    grid = np.round(np.arange(0, 1.0005, 0.01), 3)
    curve = pr_curve(sims, labels, grid)
    for i, t in enumerate(grid):
        served = sims >= t
        tp = int(np.sum(served & (labels == 1)))
        assert curve["served"][i] == served.sum() and curve["tp"][i] == tp
        want_p = tp / served.sum() if served.sum() else 1.0
        assert curve["precision"][i] == pytest.approx(want_p)
        assert curve["recall"][i] == pytest.approx(tp / labels.sum())


def test_choose_threshold_falls_back_when_the_target_is_unreachable():
    grid = np.array([0.5, 0.6, 0.7, 0.8, 0.9])
    curve = {"threshold": grid, "precision": np.array([0.6, 0.8, 0.93, 0.94, 1.0]),
             "served": np.array([1000, 800, 500, 300, 5])}
    assert choose_threshold(curve, 0.8, 10) == (0.6, True, 0.94)
    # 0.95 is met only where 5 pairs are served: noise, so unreachable -> within 1 point of 0.94
    assert choose_threshold(curve, 0.95, 10) == (0.7, False, 0.94)
    with pytest.raises(Exception, match="too few pairs"):
        choose_threshold(curve, 0.9, 5000)


def test_gptcache_default_rule_is_cosine_060_on_unit_vectors():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2000, 16)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = a + rng.uniform(0.0, 1.5) * rng.standard_normal((2000, 16)).astype(np.float32)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    cos = np.sum(a * b, axis=1)
    hits = gptcache_hits(a, b)
    clear = np.abs(cos - 0.6) > 1e-4  # away from float rounding at the boundary
    assert np.array_equal(hits[clear], (cos >= 0.6)[clear])
    assert hits.any() and not hits.all()


def test_embedding_cache_roundtrip_without_pickle(tmp_path):
    c = EmbeddingCache(tmp_path, "some/model")
    assert c.missing(["a", "b", "a"]) == ["a", "b"]
    c.add(["a", "b"], np.eye(2, dtype=np.float32))
    again = EmbeddingCache(tmp_path, "some/model")
    assert again.missing(["a", "b", "c"]) == ["c"]
    np.testing.assert_array_equal(again.get(["b", "a"]), [[0, 1], [1, 0]])
    assert {p.suffix for p in c.dir.iterdir()} == {".npy", ".json"}
    assert EmbeddingCache(tmp_path, "other/model").missing(["a"]) == ["a"]


@pytest.mark.skipif(not has_qqp_pairs(), reason="shared QQP data not found")
def test_calibrate_command_end_to_end(tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "emb"
    argv = ["calibrate-semantic", "--limit", "60", "--cache-dir", str(cache), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    report = json.loads((out / "calibration.json").read_text())
    assert report["pairs"] == {"dev": 60, "test": 60}
    assert 0 < report["threshold"] <= 1
    if report["target_reached"]:
        assert report["ours"]["dev"]["precision"] >= 0.95
    else:
        assert report["ours"]["dev"]["precision"] >= report["best_dev_precision"] - 0.01
    g = report["gptcache_default"]
    assert g["cosine_equivalent_on_unit_vectors"] == pytest.approx(0.6)
    assert set(g["test"]) >= {"precision", "recall", "tp", "fp", "fn"}
    assert (out / "calibration.png").stat().st_size > 10_000
    assert report["timing"]["embedded_texts"] > 200
    printed = capsys.readouterr().out
    assert "GPTCache default" in printed and "test P" in printed
    # embeddings come from the on-disk cache the second time
    assert main(argv) == 0
    assert json.loads((out / "calibration.json").read_text())["timing"]["embedded_texts"] == 0


def test_calibrate_module_imports_nothing_heavy():
    import subprocess

    code = ("import sys, cachemux.lab.calibrate_semantic as c, argparse; c.add_arguments(argparse.ArgumentParser()); "
            "print(sorted(m for m in ('torch', 'sentence_transformers', 'matplotlib', 'tqdm') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        main(["calibrate-semantic", "--limit", "x"])
    from cachemux.errors import ConfigError

    with pytest.raises(ConfigError, match="--limit"):
        main(["calibrate-semantic", "--limit", "-1", "--out", str(tmp_path)])
    with pytest.raises(ConfigError, match="no such file"):
        main(["calibrate-semantic", "--data", str(tmp_path / "nope.json.gz"), "--out", str(tmp_path)])
