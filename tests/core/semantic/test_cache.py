"""SemanticCache with the real packaged embedding model: exact and semantic hits, partitions,
frequency per cluster, cost accounting, index/store agreement, bad input."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

import cachemux.cache
import cachemux.semantic.pricing
from cachemux.cache import FALLBACK_SECONDS_PER_TOKEN, CostInfo, SemanticCache
from cachemux.errors import ConfigError
from cachemux.units import estimate_tokens
from cachemux.semantic import Embedder
from cachemux.stores import DiskStore, MemoryStore

LLM = "fake-llm temperature=0"
Q1 = "What is the capital of France?"
Q1_PARA = "what's the capital city of France"
Q2 = "How do I bake sourdough bread at home?"


class CountingEmbedder:
    """The real embedder, counting how often it is asked to embed (a spy, not a fake)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.calls = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    def fits(self, text: str) -> bool:
        return self.inner.fits(text)

    def embed(self, texts):
        self.calls += 1
        return self.inner.embed(texts)


@pytest.fixture(scope="module")
def embedder():
    return Embedder().load()  # once per process (models are shared between Embedders)


@pytest.fixture
def spy(embedder):
    return CountingEmbedder(embedder)


def make(spy, **kw) -> SemanticCache:
    """An in-memory cache (these tests look at policy internals); the default store has its own test."""
    kw.setdefault("threshold", 0.8)
    if "store" not in kw:
        kw["store"] = MemoryStore(kw.pop("capacity", 10_000), kw.pop("policy", "gdsf"))
    return SemanticCache(embedder=spy, **kw)


def test_default_store_is_the_persistent_disk_store(tmp_path, monkeypatch):
    monkeypatch.setenv("CACHEMUX_STORE_DIR", str(tmp_path / "store"))
    a = SemanticCache(semantic=False)
    assert isinstance(a.store, DiskStore) and a.store.directory == tmp_path / "store"
    assert a.lookup("q?", LLM) is None and a.update("q?", LLM, "A", cost=1.0)
    a.store.close()
    b = SemanticCache(semantic=False)  # another process or a restart sees the committed entry
    assert b.lookup("q?", LLM) == "A"
    b.check_invariants()


def test_exact_hit_needs_no_embedding_and_semantic_hit_counts_on_the_match(spy):
    cache = make(spy, capacity=10)
    assert cache.lookup(Q1, LLM) is None and spy.calls == 1
    assert cache.update(Q1, LLM, "Paris", cost=2.0)
    spy.calls = 0
    assert cache.lookup(Q1, LLM) == "Paris"
    assert cache.lookup("  What is the capital of France?\r\n", LLM) == "Paris"  # normalised
    assert spy.calls == 0
    m = cache.match(Q1_PARA, LLM)
    assert m is not None and m.kind == "semantic" and m.value == "Paris" and 0.8 <= m.similarity < 1
    assert m.key == cache.key_for(Q1, LLM) and spy.calls == 1
    assert cache.lookup(Q2, LLM) is None
    # P(q) per cluster: the matched entry's frequency counts the paraphrase (1 + 2 exact + 1 semantic)
    assert cache.store.policy.frequency(m.key) == 4
    s = cache.stats()
    assert (s["exact_hits"], s["semantic_hits"], s["misses"], s["hits"]) == (2, 1, 2, 3)
    assert s["cost_saved"] == pytest.approx(6.0) and s["entries"] == 1 and s["indexed"] == 1
    cache.check_invariants()


def test_semantic_hits_keep_a_paraphrased_entry_over_a_colder_one(spy):
    cache = make(spy, capacity=2)
    for q, a in ((Q1, "Paris"), (Q2, "Knead...")):
        cache.lookup(q, LLM)
        cache.update(q, LLM, a, cost=1.0)
    for _ in range(3):  # the France cluster is asked again, in other words
        assert cache.lookup(Q1_PARA, LLM) == "Paris"
    cache.lookup("Who wrote Hamlet?", LLM)
    cache.update("Who wrote Hamlet?", LLM, "Shakespeare", cost=1.0)  # evicts the bread entry
    assert cache.lookup(Q1, LLM) == "Paris" and cache.lookup(Q2, LLM) is None
    assert cache.stats()["evictions"] == 1 and cache.stats()["indexed"] == 2
    cache.check_invariants()


def test_never_served_across_model_configurations_or_namespaces(spy):
    store = MemoryStore(100)
    a = make(spy, store=store, namespace="tenant-a")
    b = make(spy, store=store, namespace="tenant-b")
    a.lookup(Q1, LLM)
    a.update(Q1, LLM, "Paris", cost=1.0)
    assert a.lookup(Q1, "fake-llm temperature=0.7") is None  # other config: neither exact ...
    assert a.lookup(Q1_PARA, "fake-llm temperature=0.7") is None  # ... nor semantic
    assert b.lookup(Q1, LLM) is None and b.lookup(Q1_PARA, LLM) is None  # other tenant
    assert a.lookup(Q1_PARA, LLM) == "Paris"


def test_scope_must_match_exactly_for_a_semantic_hit(spy):
    cache = make(spy)
    cache.update("[sys: French] " + Q1, LLM, "Paris (fr)", cost=1.0, embed_text=Q1, scope="French")
    assert cache.lookup("[sys: French] " + Q1_PARA, LLM, embed_text=Q1_PARA, scope="French") == "Paris (fr)"
    assert cache.lookup("[sys: terse] " + Q1_PARA, LLM, embed_text=Q1_PARA, scope="terse") is None
    assert cache.lookup(Q1_PARA, LLM) is None  # no scope is a scope too
    with pytest.raises(ConfigError, match="scope must be str"):
        cache.lookup(Q1, LLM, scope=None)


def test_model_groups_share_answers_only_inside_the_group(spy):
    groups = {"small-models": ["model-a t=0", "model-b t=0"]}
    cache = make(spy, model_groups=groups)
    cache.lookup(Q1, "model-a t=0")
    cache.update(Q1, "model-a t=0", "Paris", cost=1.0)
    assert cache.lookup(Q1, "model-b t=0") == "Paris"
    assert cache.lookup(Q1_PARA, "model-b t=0") == "Paris"
    assert cache.lookup(Q1, "model-c t=0") is None
    fn = make(spy, model_groups=lambda llm: "g" if llm.startswith("model-") else None)
    fn.lookup(Q1, "model-a")
    fn.update(Q1, "model-a", "Paris", cost=1.0)
    assert fn.lookup(Q1, "model-z") == "Paris" and fn.lookup(Q1, "other") is None
    with pytest.raises(ConfigError, match="two model groups"):
        make(spy, model_groups={"g1": ["m"], "g2": ["m"]})
    with pytest.raises(ConfigError, match="must list llm_strings"):
        make(spy, model_groups={"g1": "m"})


def test_cost_is_latency_from_miss_to_update_unless_given(spy):
    cache = make(spy)
    assert cache.lookup(Q1, LLM) is None
    time.sleep(0.05)
    cache.update(Q1, LLM, "Paris")
    entry = cache.store.peek(cache.key_for(Q1, LLM))
    assert 0.045 <= entry.cost < 1.0
    assert entry.meta["llm"] == LLM and entry.embedding is not None
    # no miss seen and no cost: the token estimate of question and answer at the seconds per
    # token this cache measured (never a silent cost of 1)
    per_token = cache.seconds_per_token()
    assert per_token == pytest.approx(entry.cost / estimate_tokens(Q1, "Paris"))
    assert cache.update(Q2, LLM, "Knead")
    assert cache.store.peek(cache.key_for(Q2, LLM)).cost == pytest.approx(estimate_tokens(Q2, "Knead") * per_token)
    assert cache.stats()["estimated"] == 1
    seen: list[CostInfo] = []
    priced = make(spy, cost_fn=lambda info: seen.append(info) or 0.002 * len(info.value), fallback_cost=0.5)
    priced.lookup(Q2, LLM)
    priced.update(Q2, LLM, "Knead it", info={"tokens": 7})
    assert priced.store.peek(priced.key_for(Q2, LLM)).cost == pytest.approx(0.016)
    assert seen[0].latency is not None and seen[0].info == {"tokens": 7}
    fb = make(spy, fallback_cost=0.5)
    fb.update(Q2, LLM, "Knead")  # no miss seen: the fallback
    assert fb.store.peek(fb.key_for(Q2, LLM)).cost == 0.5
    assert fb.lookup(Q2, LLM) == "Knead"


def test_fallback_price_per_token_is_learnt_from_measured_latencies(spy):
    cache = make(spy)
    # before any measurement: the documented constant
    assert cache.seconds_per_token() == FALLBACK_SECONDS_PER_TOKEN == 0.01
    cache.update(Q1, LLM, '{"json": "around the answer"}', tokens=50)
    assert cache.store.peek(cache.key_for(Q1, LLM)).cost == pytest.approx(0.5)
    for q, tokens, wait in ((Q2, 10, 0.04), ("Who wrote Hamlet?", 30, 0.08)):
        cache.lookup(q, LLM)
        time.sleep(wait)
        cache.update(q, LLM, "an answer", tokens=tokens)
    measured = [cache.store.peek(cache.key_for(q, LLM)).cost for q in (Q2, "Who wrote Hamlet?")]
    assert cache.seconds_per_token() == pytest.approx(sum(measured) / 40)  # total seconds / total tokens
    assert 0.0025 <= cache.seconds_per_token() < 0.01
    cache.update("Name a prime.", LLM, "7", tokens=100)
    assert cache.store.peek(cache.key_for("Name a prime.", LLM)).cost == pytest.approx(100 * cache.seconds_per_token())
    # explicit costs, a cost function or fallback_cost never feed or use the estimate
    fb = make(spy, fallback_cost=0.25)
    fb.lookup(Q1, LLM)
    fb.update(Q1, LLM, "Paris", cost=9.0)
    fb.update(Q2, LLM, "Knead", tokens=1000)
    assert fb.seconds_per_token() == FALLBACK_SECONDS_PER_TOKEN
    assert fb.store.peek(fb.key_for(Q2, LLM)).cost == 0.25 and fb.stats()["estimated"] == 0
    with pytest.raises(ConfigError, match="tokens"):
        cache.update(Q1, LLM, "Paris", tokens=-1)


def test_misses_queue_per_key_oldest_first_bounded(spy):
    cache = make(spy, max_pending=3)
    for _ in range(2):
        cache.lookup(Q1, LLM)
        time.sleep(0.03)
    cache.lookup(Q2, LLM)
    cache.update(Q1, LLM, "Paris")  # the oldest miss of Q1: two waits ago
    first = cache.store.peek(cache.key_for(Q1, LLM)).cost
    cache.update(Q1, LLM, "Paris")  # the second miss of Q1: one wait ago
    second = cache.store.peek(cache.key_for(Q1, LLM)).cost
    assert first >= 0.06 and 0.03 <= second < first
    assert cache.stats()["estimated"] == 0
    # max_pending outstanding misses in all: Q2's and then Q3's oldest are dropped
    q3, q4 = "Who wrote Hamlet?", "Name a prime number."
    for q in (q3, q3, q3, q4):
        assert cache.lookup(q, LLM) is None
    assert len(cache._pending) == 3 and sorted(map(len, cache._pending_of.values())) == [1, 2]
    cache.update(Q2, LLM, "Knead")  # its miss was dropped: the estimate
    assert cache.stats()["estimated"] == 1
    for _ in range(3):
        cache.update(q3, LLM, "Shakespeare")
    assert cache.stats()["estimated"] == 2  # two q3 clocks left, the third update has none
    assert list(cache._pending_of) == [cache.key_for(q4, LLM)]


def test_a_miss_never_updated_does_not_price_a_later_answer(spy, monkeypatch):
    monkeypatch.setattr(cachemux.semantic.pricing, "PENDING_MAX_AGE_S", 0.05)
    cache = make(spy)
    cache.lookup(Q1, LLM)  # this call failed: no update follows
    time.sleep(0.1)
    cache.update(Q1, LLM, "Paris", tokens=10)  # not priced by the stale clock
    assert cache.store.peek(cache.key_for(Q1, LLM)).cost == pytest.approx(10 * FALLBACK_SECONDS_PER_TOKEN)
    assert not cache._pending and not cache._pending_of
    cache.lookup(Q2, LLM)
    time.sleep(0.1)
    cache.lookup("Who wrote Hamlet?", LLM)  # a new miss forgets the stale one
    assert len(cache._pending) == 1


def test_update_without_lookup_is_still_found_semantically(spy):
    cache = make(spy)
    cache.update(Q1, LLM, "Paris", cost=1.0)
    assert cache.lookup(Q1_PARA, LLM) == "Paris"


def test_precomputed_embeddings_skip_the_model(spy):
    cache = make(spy)
    vec = spy.inner.embed([Q1])[0] * 2.0  # any scale: normalised
    spy.calls = 0
    cache.update(Q1, LLM, "Paris", cost=1.0, embedding=vec)
    assert spy.calls == 0
    assert cache.lookup(Q1_PARA, LLM) == "Paris"
    with pytest.raises(ConfigError, match="finite 1-D"):
        cache.update(Q2, LLM, "x", cost=1.0, embedding=np.array([np.nan, 1.0]))


def test_bad_input_is_a_clear_config_error(spy):
    cache = make(spy)
    for bad in (None, 42, b"bytes", ["a"]):
        with pytest.raises(ConfigError, match="prompt must be str"):
            cache.lookup(bad, LLM)
        with pytest.raises(ConfigError, match="llm_string must be str"):
            cache.lookup(Q1, bad)
    with pytest.raises(ConfigError, match="value must be str"):
        cache.update(Q1, LLM, {"text": "Paris"}, cost=1.0)
    for cost in (-1, float("nan"), float("inf"), "cheap", True):
        with pytest.raises(ConfigError, match="cost"):
            cache.update(Q1, LLM, "Paris", cost=cost)
    with pytest.raises(ConfigError, match="size"):
        cache.update(Q1, LLM, "Paris", cost=1.0, size=0)
    for kw in ({"threshold": 0}, {"threshold": 1.5}, {"threshold": "high"}, {"candidates": 0},
               {"namespace": 3}, {"embedder": 3.5}):
        with pytest.raises(ConfigError):
            SemanticCache(**kw)
    with pytest.raises(ConfigError, match="given store has its own"):
        SemanticCache(MemoryStore(10), capacity=5)
    with pytest.raises(ConfigError, match="cachemux Store"):
        SemanticCache(store={})


def test_empty_and_huge_prompts_are_exact_only(spy):
    cache = make(spy)
    spy.calls = 0
    assert cache.lookup("", LLM) is None and cache.lookup("   ", LLM) is None
    cache.update("", LLM, "empty answer", cost=1.0)
    assert cache.lookup(" \n", LLM) == "empty answer" and spy.calls == 0
    huge = "Summarise the following document.\n" + "lorem ipsum dolor sit amet " * 40_000  # ~1 MB
    assert len(huge) > 1_000_000
    t = time.perf_counter()
    assert cache.lookup(huge, LLM) is None
    cache.update(huge, LLM, "a summary", cost=1.0)
    assert cache.lookup(huge, LLM) == "a summary"
    assert time.perf_counter() - t < 2.0 and spy.calls == 0
    # the same head with another tail is a different question: no semantic match on truncation
    assert cache.lookup(huge + " And translate it to French.", LLM) is None
    assert len(cache.store.peek(cache.key_for(huge, LLM)).prompt) == 2_000
    assert cache.stats()["exact_only"] == 4


def test_exact_only_cache_never_loads_a_model():
    cache = SemanticCache(semantic=False, embedder="no/such-model")
    cache.lookup(Q1, LLM)
    cache.update(Q1, LLM, "Paris", cost=1.0)
    assert cache.lookup(Q1, LLM) == "Paris" and cache.lookup(Q1_PARA, LLM) is None


def test_unloadable_model_is_a_clear_error():
    cache = SemanticCache(embedder="/no/such/model/dir")
    with pytest.raises(ConfigError, match="cannot load embedding model '/no/such/model/dir'"):
        cache.lookup(Q1, LLM)


def test_clear_removes_only_this_namespace(spy):
    store = MemoryStore(100)
    a, b = make(spy, store=store, namespace="a"), make(spy, store=store, namespace="b")
    for c in (a, b):
        c.update(Q1, LLM, "Paris", cost=1.0)
    a.clear()
    assert a.lookup(Q1, LLM) is None and b.lookup(Q1, LLM) == "Paris"
    a.clear(everything=True)
    assert len(store) == 0 and b.lookup(Q1_PARA, LLM) is None
    b.check_invariants()


def test_clear_one_model_configuration_matches_the_whole_llm_string(spy):
    store = MemoryStore(100)
    a, other_ns = make(spy, store=store, namespace="a"), make(spy, store=store, namespace="b")
    # two configurations sharing their first 2,000 characters (entries keep only those of "llm")
    head = "model=x " + "tool-schema " * 200
    long_1, long_2 = head + "temperature=0", head + "temperature=1"
    for llm in (LLM, long_1, long_2):
        a.update(Q1, llm, f"Paris under {llm[-13:]}", cost=1.0)
    other_ns.update(Q1, long_1, "Paris in b", cost=1.0)
    assert a.lookup(Q1_PARA, long_1) is not None  # the index is built
    a.clear(llm_string=long_1)
    assert a.lookup(Q1, long_1) is None and a.lookup(Q1_PARA, long_1) is None
    assert a.lookup(Q1, long_2) == "Paris under temperature=1" and a.lookup(Q1, LLM) is not None
    assert other_ns.lookup(Q1, long_1) == "Paris in b"  # another namespace is untouched
    assert a.stats()["indexed"] == 3
    a.check_invariants()
    # entries written before llm_id: matched on "llm" when it was not cut
    key = a.key_for(Q2, LLM)
    a.update(Q2, LLM, "Knead", cost=1.0)
    entry = store.peek(key)
    store.put(key, dataclasses.replace(entry, meta={"ns": "a", "llm": LLM, "emb": entry.meta["emb"]}))
    a.clear(llm_string=LLM)
    assert a.lookup(Q2, LLM) is None and a.lookup(Q1, LLM) is None
    with pytest.raises(ConfigError, match="no llm_string"):
        a.clear(llm_string=LLM, everything=True)
    with pytest.raises(ConfigError, match="llm_string must be str"):
        a.clear(llm_string=3)


def test_disk_store_shared_by_two_caches_keeps_both_indexes_in_step(spy, tmp_path):
    """Two caches on one diskcache directory (as two processes would be): each sees the other's
    admissions and evictions through the store's change log."""
    s1, s2 = DiskStore(tmp_path / "c", capacity=2), DiskStore(tmp_path / "c")
    a, b = make(spy, store=s1), make(spy, store=s2)
    assert b.lookup(Q1_PARA, LLM) is None  # b's index is built (empty) now
    a.lookup(Q1, LLM)
    a.update(Q1, LLM, "Paris", cost=5.0)
    assert b.match(Q1_PARA, LLM).kind == "semantic"  # learnt from the change log
    b.update(Q2, LLM, "Knead", cost=1.0)
    b.update("Who wrote Hamlet?", LLM, "Shakespeare", cost=1.0)  # evicts the bread (lowest H)
    assert a.lookup("how to bake sourdough bread at home", LLM) is None
    assert a.lookup("who is the author of Hamlet?", LLM) == "Shakespeare"
    assert b.lookup(Q1_PARA, LLM) == "Paris"
    a.check_invariants()
    b.check_invariants()
    assert a.stats()["indexed"] == b.stats()["indexed"] == 2
    assert b.stats()["evictions"] == 1 and a.stats()["evictions"] == 0  # this process's updates
    assert a.stats()["store"]["evictions"] == 1  # the shared store's count, all users
    for c in (a, b):
        c.close()
    # persistence: a new cache on the directory rebuilds its index from the stored embeddings
    with make(spy, store=DiskStore(tmp_path / "c")) as c:
        spy.calls = 0
        assert c.lookup(Q1_PARA, LLM) == "Paris" and spy.calls == 1
        assert c.stats()["indexed"] == 2


def test_entries_embedded_by_another_model_are_served_exactly_only(spy, tmp_path):
    class OtherModel(CountingEmbedder):
        pass

    other = OtherModel(spy.inner)
    other.model_name = "some-other-model"
    store = DiskStore(tmp_path / "c")
    make(other, store=store).update(Q1, LLM, "Paris", cost=1.0)
    c = make(spy, store=DiskStore(tmp_path / "c"))
    assert c.lookup(Q1_PARA, LLM) is None and c.lookup(Q1, LLM) == "Paris"


def test_threads_share_one_cache(spy):
    cache = make(spy, capacity=20)
    questions = [f"What is {i} plus {i}?" for i in range(30)]
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(40):
                q = questions[int(rng.integers(0, len(questions)))]
                if cache.lookup(q, LLM) is None:
                    cache.update(q, LLM, f"answer to {q}", cost=float(rng.random()))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    cache.check_invariants()
    s = cache.stats()
    assert s["lookups"] == 160 and s["hits"] + s["misses"] == 160 and s["entries"] <= 20


def test_plain_cosine_default_threshold_serves_only_near_identical_rewordings(spy):
    """``DEFAULT_THRESHOLD`` is plain cosine: the fallback for an embedder the shipped verifier was
    not fitted for, and what ``threshold=`` sets (the MiniLM default matcher: test_matcher_cache)."""
    from cachemux.semantic import DEFAULT_THRESHOLD

    cache = SemanticCache(embedder=spy, threshold=DEFAULT_THRESHOLD)
    assert cache.threshold == DEFAULT_THRESHOLD == 0.99
    cache.update(Q1, LLM, "Paris", cost=1.0)
    m = cache.match("what is the capital of france?", LLM)  # another exact key; the uncased model: cos 1
    assert m is not None and m.kind == "semantic" and m.similarity >= 0.99
    assert cache.match("What's the capital of France?", LLM).similarity >= 0.99  # cos 0.9935
    # no "?": the cache embeds prompts with one final "?" (embed_form), so cos 1.0 (as written 0.9065)
    assert cache.match("What is the capital of France", LLM).similarity >= 0.999
    assert cache.lookup(Q1_PARA, LLM) is None  # cos 0.87
