"""CacheMuxCache with issue 11's limits (case 8c/8d): an oversized generation is not cached (the
call still returns it), ``ttl`` expires answers, and a forged ``llm_string`` never reads a model
group's answers. A real LangChain fake model over a real MemoryStore; exact-only (no model)."""

from __future__ import annotations

import time

import pytest
from langchain_core.language_models import FakeListLLM
from langchain_core.outputs import Generation

from cachemux.errors import ConfigError
from cachemux.cache import SemanticCache
from cachemux.stores import MemoryStore
from langchain_cachemux import CacheMuxCache


def test_an_oversized_answer_is_returned_but_not_cached() -> None:
    cache = CacheMuxCache(store=MemoryStore(10), semantic=False, max_value_bytes=2_000)
    llm = FakeListLLM(responses=["x" * 5_000, "short", "again"], cache=cache)
    assert llm.invoke("big question") == "x" * 5_000  # the call is unaffected
    assert cache.stats()["too_large"] == 1 and len(cache.cache.store) == 0
    assert llm.invoke("small question") == "short"
    assert llm.invoke("small question") == "short"  # cached
    assert cache.stats()["exact_hits"] == 1


def test_ttl_expires_langchain_answers() -> None:
    cache = CacheMuxCache(store=MemoryStore(10), semantic=False, ttl=0.3)
    llm = FakeListLLM(responses=["first", "second"], cache=cache)
    assert llm.invoke("q") == "first" and llm.invoke("q") == "first"
    time.sleep(0.35)
    assert llm.invoke("q") == "second" and cache.stats()["expired"] == 1
    with pytest.raises(ConfigError, match="not both"):
        CacheMuxCache(SemanticCache(MemoryStore(10), semantic=False), ttl=5)


def test_a_forged_llm_string_misses_a_groups_answers() -> None:
    store = MemoryStore(10)
    grouped = CacheMuxCache(store=store, semantic=False, model_groups={"G": ["llm-a"]})
    grouped.update("2+2?", "llm-a", [Generation(text="4")])
    assert grouped.lookup("2+2?", "llm-a")[0].text == "4"
    assert CacheMuxCache(store=store, semantic=False).lookup("2+2?", "\x00group:G") is None
