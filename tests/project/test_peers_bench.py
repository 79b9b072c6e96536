"""Smoke test of benchmarks/bench_peers.py's fill/RSS part on tiny sizes (each run in a fresh
process; the peers of the bench extra are left out, the real run is not a test)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_peers.py"


def test_fill_runs_each_cache_in_a_fresh_process_and_reports(tmp_path, capsys):
    pytest.importorskip("psutil")
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("bench_peers", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "peers.json"
    assert bench.main(["--skip", "policies,semantic", "--fill-entries", "300", "--rounds", "1",
                       "--fill-kinds", "cachemux-exact,inmemory", "--json", str(out)]) == 0
    fill = json.loads(out.read_text())["fill"]
    assert fill["entries"] == 300 and set(fill["rows"]) == {"cachemux-exact", "inmemory"}
    ours = fill["rows"]["cachemux-exact"]
    assert "error" not in ours, ours
    assert ours["fill_s"] > 0 and ours["index_backend"] == "exact numpy" and ours["rss_before_mb"] > 0
    assert [r["entries"] for r in ours["runs"]] == [300]
    assert "fill of 300 entries" in capsys.readouterr().out
