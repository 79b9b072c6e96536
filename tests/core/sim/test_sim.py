"""Simulator: workloads, paired seeds, agreement with the paper's reference loop, suites, CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cachemux import paths
from cachemux.cli import main
from cachemux.errors import ConfigError, UnknownNameError
from cachemux.sim.routing import PRICES_PER_MTOK, load_mmlu, routing_workload
from cachemux.sim.runner import Method, run
from cachemux.sim.suites import cells_for, run_cell
from cachemux.sim.synthetic import synthetic_workload
from cachemux.sim.workload import power_probs


def test_power_probs_match_the_sampler():
    p = power_probs(20, 0.5)
    assert p.sum() == pytest.approx(1.0) and p[0] == pytest.approx(0.2236, abs=1e-4)
    assert np.all(np.diff(p) < 0)  # smaller ids are more popular
    w = synthetic_workload(0, alpha=0.5, cost_ratio=100, num_requests=200_000)
    freq = np.bincount(w.requests, minlength=20) / 200_000
    assert np.abs(freq - p).max() < 0.005
    with pytest.raises(ConfigError):
        power_probs(0, 0.5)
    with pytest.raises(ConfigError):
        power_probs(5, -1)


def test_same_seed_same_workload_and_numbers():
    a = synthetic_workload(3, alpha=0.8, cost_ratio=1.5)
    b = synthetic_workload(3, alpha=0.8, cost_ratio=1.5)
    c = synthetic_workload(4, alpha=0.8, cost_ratio=1.5)
    assert np.array_equal(a.requests, b.requests) and np.array_equal(a.cost["large"], b.cost["large"])
    assert not np.array_equal(a.requests, c.requests)
    m = Method("lec", "selector", "online")
    assert run(a, m, 8).total_cost == run(b, m, 8).total_cost


def test_synthetic_costs_follow_the_generator():
    w = synthetic_workload(1, alpha=0.5, cost_ratio=100)
    for m in ("small", "large"):
        assert set(np.unique(w.mean_cost[m])) <= {1.0, 101.0}
        assert w.cost[m].min() >= 0.1
        base = w.mean_cost[m][w.requests]
        resid = (w.cost[m] - base)[base == 101.0]  # far from the floor: plain N(0, 1) noise
        assert len(resid) > 1000 and abs(resid.mean()) < 0.1 and abs(resid.std() - 1.0) < 0.1


def _reference_online_lec(w, model: str, cache_size: int) -> float:
    """The paper's server.py online loop (list cache, min() scan per miss), for one fixed model."""
    cache: list[int] = []
    count: Counter = Counter()
    sums: dict[int, float] = {}
    n: dict[int, int] = {}
    total, tot = 0.0, 0
    for t, q in enumerate(w.requests.tolist()):
        tot += 1
        count[q] += 1
        if q in cache:
            continue
        c = float(w.cost[model][t])
        total += c
        sums[q] = sums.get(q, 0.0) + c
        n[q] = n.get(q, 0) + 1

        def weight(x):
            return count[x] / tot * sums[x] / n[x]

        if len(cache) < cache_size:
            cache.append(q)
        else:
            i = min(range(len(cache)), key=lambda j: weight(cache[j]))
            if weight(q) > weight(cache[i]):
                cache[i] = q
    return total


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("selector,model", [("large", "large"), ("cascade", "small")])
def test_online_lec_matches_the_reference_loop(seed, selector, model):
    w = synthetic_workload(seed, alpha=0.8, cost_ratio=100)
    ours = run(w, Method("lec", selector, "online"), 8).total_cost
    assert ours == pytest.approx(_reference_online_lec(w, model, 8), rel=1e-9)


def test_offline_lec_with_known_costs_beats_the_baselines():
    w = synthetic_workload(0, alpha=0.8, cost_ratio=100)
    costs = {(c, s): run(w, Method(c, s, "offline"), 8).total_cost
             for c in ("lfu", "lec") for s in ("large", "cascade", "selector")}
    assert costs[("lec", "selector")] == min(costs.values())
    assert costs[("lfu", "large")] / costs[("lec", "selector")] > 10


def test_paired_methods_see_the_same_trace():
    cell = cells_for("synthetic")[0]
    a, b = run_cell(cell, 5), run_cell(cell, 5)
    assert a == b and len(a) == 12


def test_unknown_names_are_errors():
    with pytest.raises(UnknownNameError, match="valid choices: gdsf, lec, lfu, lru"):
        Method("arc", "large", "online")
    with pytest.raises(UnknownNameError, match="scenario"):
        Method("lec", "large", "sometimes")
    with pytest.raises(UnknownNameError, match="suite"):
        cells_for("imagenet")


def test_mmlu_data_and_balanced_workload():
    qs = load_mmlu()
    assert len(qs) == 14042
    train, test = load_mmlu(split="train"), load_mmlu(split="test")
    assert len(train) + len(test) == 14042
    assert not {q.subject for q in train} & {q.subject for q in test}
    assert 0.66 < np.mean([q.small_correct for q in qs]) < 0.70  # Mixtral 68.1% (data README)
    w = routing_workload(qs, 0, alpha=0.5)
    assert w.num_queries == 100 and w.success["small"].sum() == 50
    ratio = w.mean_cost["large"] / w.mean_cost["small"]
    assert np.allclose(ratio, PRICES_PER_MTOK["large"] / PRICES_PER_MTOK["small"])


def test_reproduce_writes_the_json_contract_and_plots(tmp_path, capsys):
    assert main(["reproduce", "--suite", "synthetic", "--seeds", "2", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "synthetic.json").read_text())
    need = {"scenario", "alpha", "cost_ratio", "selector_accuracy", "cache", "selector", "mean_cost",
            "ci95", "paper_cost"}
    assert rows and all(need <= set(r) for r in rows)
    assert len(rows) == 12 * 12  # 12 settings x 4 caches x 3 selectors
    for r in rows:
        assert (r["paper_cost"] is None) == (r["cache"] in ("gdsf", "lru"))
        assert r["mean_cost"] > 0 and r["ci95"] >= 0
    assert (tmp_path / "regret.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "LFU+large / LEC+selector" in out and "[302.81]" in out


def test_reproduce_rejects_bad_seeds(tmp_path):
    with pytest.raises(ConfigError, match="--seeds"):
        main(["reproduce", "--seeds", "0", "--out", str(tmp_path)])


def test_paths_find_the_data_and_honour_the_environment(monkeypatch, tmp_path):
    from cachemux.cache import default_store_dir  # the cache's default store folder is the paths one

    for var in ("CACHEMUX_DATA", "CACHEMUX_CACHE", "CACHEMUX_STORE_DIR"):
        monkeypatch.delenv(var, raising=False)
    found = paths.data_dir("routing")
    assert (found / "routing" / "mmlu").is_dir() and paths.data_file("routing", "SPLITS.json").is_file()
    with pytest.raises(ConfigError, match="holding no-such-folder"):
        paths.data_dir("no-such-folder")
    assert paths.default_store_dir() == default_store_dir() == Path.home() / ".cache" / "cachemux" / "store"
    assert paths.embeddings_dir() == Path.home() / ".cache" / "cachemux" / "embeddings"
    monkeypatch.setenv("CACHEMUX_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("CACHEMUX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CACHEMUX_STORE_DIR", str(tmp_path / "store"))
    assert paths.data_dir("routing") == tmp_path / "data"  # the user's choice wins, even if empty
    assert paths.embeddings_dir() == tmp_path / "cache" / "embeddings"
    assert paths.default_store_dir() == default_store_dir() == tmp_path / "store"
