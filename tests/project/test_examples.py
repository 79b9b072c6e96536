"""The RAG examples run offline on CPU in their quick form: both local models answer through the
router/LLM wrapper, the cache serves the repeat exactly and the paraphrase by meaning."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # effective only if torch is not loaded yet

import pytest  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module", autouse=True)
def examples_on_path():
    from llama_index.core import Settings

    saved = Settings._llm, Settings._embed_model  # the LlamaIndex example sets both globally
    sys.path.insert(0, str(EXAMPLES))
    yield
    sys.path.remove(str(EXAMPLES))
    Settings._llm, Settings._embed_model = saved


@pytest.mark.slow
@pytest.mark.models
@pytest.mark.parametrize("name", ["langchain_rag", "llamaindex_rag"])
def test_example_quick(name, capsys):
    out = importlib.import_module(name).main(["--quick"])
    printed = capsys.readouterr().out
    assert "loaded smollm2-135m" in printed and "loaded gemma3-270m" in printed
    assert "answered by:" in printed and "cache: 2 hits of 4 (1 exact, 1 semantic)" in printed
    assert out["questions"] == 4 and out["exact_hits"] == 1 and out["semantic_hits"] == 1
    rows = out["rows"]
    assert [r["cache_hit"] for r in rows] == [False, False, "exact", "semantic"]
    assert all(r["answer"].strip() for r in rows)
    assert rows[2]["answer"] == rows[0]["answer"] and rows[3]["answer"] == rows[1]["answer"]
    assert out["flops_paid"] > 0 and out["flops_saved_by_cache"] > 0
    assert sum(out["model_calls"].values()) >= 2
    assert all(r["model"] in ("small", "large") for r in rows)


@pytest.mark.slow
@pytest.mark.models
def test_example_with_a_trained_multiplexer(tmp_path, capsys):
    """--predictor: the trained selector routes (a hand-set head: P(small ok) = 0.5, P(large ok)
    = 0.95 for every question, so the cascade's expected cost, small + 0.5 x 2 x large, loses to
    the large model alone)."""
    import numpy as np

    from cachemux.multiplexer.predictor import PredictorConfig, QualityPredictor

    cfg = PredictorConfig(models=("small", "large"))
    params = {"feature_mean": np.zeros(384, np.float32), "feature_std": np.ones(384, np.float32),
              "out.weight": np.zeros((2, 384), np.float32), "out.bias": np.array([0.0, 2.944], np.float32)}
    QualityPredictor(cfg, params).save(tmp_path / "head")
    out = importlib.import_module("langchain_rag").main(["--quick", "--tokens", "8",
                                                         "--predictor", str(tmp_path / "head")])
    misses = [r for r in out["rows"] if not r["cache_hit"]]
    assert misses and all(r["models_run"] == ["large"] for r in misses)
    assert out["model_calls"]["small"] == 0


def test_docs_are_shipped():
    docs = sorted(p.name for p in (EXAMPLES / "docs").glob("*.txt"))
    assert len(docs) >= 5
