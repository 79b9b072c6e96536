"""A LangChain ``Embeddings`` as the cache's embedder: the real packaged MiniLM behind LangChain's
interface, through ``set_llm_cache`` and a real LangChain LLM class."""

from __future__ import annotations

import pytest
from langchain_core.embeddings import Embeddings
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.language_models import FakeListLLM
from langchain_core.outputs import Generation

from cachemux.errors import ConfigError
from cachemux.semantic import Embedder
from cachemux.semantic.matcher import CosineMatcher
from cachemux.stores import MemoryStore
from langchain_cachemux import CacheMuxCache, LangChainEmbedder

LLM = "llm-string"


class MiniLMEmbeddings(Embeddings):
    """The packaged MiniLM as a LangChain ``Embeddings`` (what a user's HuggingFaceEmbeddings is)."""

    def __init__(self) -> None:
        self.inner = Embedder().load()
        self.model_name = "all-MiniLM-L6-v2 via langchain"
        self.calls = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return [v.tolist() for v in self.inner.embed(texts)]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class Broken(Embeddings):
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise RuntimeError("embedding service down")

    def embed_query(self, text: str) -> list[float]:
        raise RuntimeError("embedding service down")


@pytest.fixture(scope="module")
def minilm():
    return MiniLMEmbeddings()


def test_a_langchain_embeddings_matches_paraphrases_through_set_llm_cache(minilm):
    cache = CacheMuxCache(store=MemoryStore(), embedder=minilm, threshold=0.8)
    assert isinstance(cache.cache.embedder, LangChainEmbedder)
    assert isinstance(cache.cache.matcher, CosineMatcher)  # the shipped verifier is MiniLM's own: plain cosine
    before = get_llm_cache()
    set_llm_cache(cache)
    try:
        llm = FakeListLLM(responses=["Paris", "Berlin"])
        assert llm.invoke("What is the capital of France?") == "Paris"
        calls = minilm.calls
        assert llm.invoke("what's the capital city of France") == "Paris"   # a semantic hit
        assert minilm.calls == calls + 1                                     # one embedding for the lookup
        assert llm.invoke("How do I bake sourdough bread at home?") == "Berlin"  # far: the model
    finally:
        set_llm_cache(before)
    s = cache.stats()
    assert (s["exact_hits"], s["semantic_hits"], s["misses"]) == (0, 1, 2)
    entry = cache.cache.store.peek(next(iter(cache.cache.store.keys())))
    emb = entry.meta["emb"]  # its own id: never compared with another model's vectors
    assert emb.startswith("langchain:") and "MiniLMEmbeddings:all-MiniLM-L6-v2 via langchain|" in emb
    assert abs(float(entry.embedding @ entry.embedding) - 1.0) < 1e-5       # normalised


def test_a_failing_embeddings_is_a_miss_not_a_crash():
    cache = CacheMuxCache(store=MemoryStore(), embedder=Broken(), threshold=0.8)  # constructs while it is down
    cache.update("What is the capital of France?", LLM, [Generation(text="Paris")])
    assert cache.lookup("What is the capital of France?", LLM)[0].text == "Paris"   # exact hits still work
    assert cache.lookup("what's the capital city of France", LLM) is None
    assert cache.stats()["errors"] >= 1


def test_bad_arguments_are_named():
    with pytest.raises(ConfigError, match="Embeddings"):
        LangChainEmbedder("not an embeddings")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="model_name"):
        LangChainEmbedder(Broken(), model_name="")
    assert LangChainEmbedder(Broken()).model_name.startswith("langchain:")
