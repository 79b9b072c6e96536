"""cachemux.lab.semantic_figures: the held-out probe is what its header says, the per-pair scores
are the matcher's own, and the probe runs through a real default cache (real MiniLM)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cachemux.lab.semantic_figures import PROBE, points, probe
from cachemux.paths import data_file
from cachemux.semantic.matcher import load_matcher


@pytest.mark.parametrize("name", ["semantic_probe_heldout", "semantic_probe_v3", "semantic_probe_v4"])
def test_the_later_probes_are_real_prompts_with_written_partners(name):
    d = json.loads(PROBE.with_name(f"{name}.json").read_text())
    assert len(d["paraphrase"]) >= 30 and len(d["near_miss"]) >= 30
    try:
        questions = {q["question"] for q in json.loads(data_file("routing", "dcrouter", "test.json").read_text())}
    except Exception:
        pytest.skip("shared routing data not beside this checkout")
    for kind in ("paraphrase", "near_miss"):
        for a, b in d[kind]:
            assert a in questions and a != b  # the first text verbatim from the routing data
    assert not set(map(tuple, d["paraphrase"])) & set(map(tuple, d["near_miss"]))


def test_points_count_what_each_rule_serves():
    v = load_matcher()
    s = {"verifier": np.array([0.99, 0.9, 0.1, 0.95]), "cosine": np.array([0.995, 0.97, 0.5, 0.99]),
         "gptcache": np.array([True, True, True, False]), "exact": np.array([False, False, False, False]),
         "label": np.array([1, 0, 1, 1])}
    p = points(s, v)
    default = next(x for n, x in p.items() if n.startswith("default"))
    assert default == {"precision": round(2 / 3, 4), "recall": round(2 / 3, 4), "served": 3}
    assert p["old default: cosine >= 0.99"] == {"precision": 1.0, "recall": round(2 / 3, 4), "served": 2}
    assert p["LangChain exact cache (same string)"] == {"precision": None, "recall": 0.0, "served": 0}


def test_probe_runs_the_default_cache(tmp_path):
    f = tmp_path / "probe.json"
    f.write_text(json.dumps({"paraphrase": [["How do I reverse a string in Python?",
                                             "How can I reverse a string in Python?"]],
                             "near_miss": [["Convert 10 miles to kilometers", "Convert 10 kilometers to miles"]]}))
    r = probe(f)
    assert r["paraphrase"] == {"served": 1, "of": 1, "missed": []}
    assert r["near_miss"] == {"served": 0, "of": 1, "served_pairs": []}
