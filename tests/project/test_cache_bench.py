"""Smoke test of benchmarks/bench_cache.py on tiny sizes (the real run is not a test)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from shared_data import has_qqp_pairs

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_cache.py"


@pytest.mark.skipif(not has_qqp_pairs(), reason="shared QQP data not found")
def test_bench_cache_runs_and_reports(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_cache", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    assert bench.main(["--sizes", "300", "--disk-sizes", "300", "--queries", "4", "--rounds", "1",
                       "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    ours = {r["store"]: r for r in report["ours"]}
    assert set(ours) == {"memory", "disk"}
    for r in ours.values():
        assert r["size"] == 300 and r["semantic_recall"] == 1.0 and r["false_hits_on_misses"] == 0
        for kind in ("exact_hit", "semantic_hit", "miss", "embedding_alone", "adapter_exact_hit", "adapter_exact_hit_cold"):
            assert r[kind]["n"] == 4 and r[kind]["p50_ms"] > 0
    assert {b["cache"] for b in report["baselines"]} >= {"langchain_core InMemoryCache"}
    assert "goals" in capsys.readouterr().out
