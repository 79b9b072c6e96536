"""The revived-value memo of CacheMuxCache (langchain_cachemux.revive): hits return fresh, equal
copies of exactly the stored value, from this or another process's cache over the same store;
classes outside the generation/message allowlist are still refused. Real LangChain models, a
real DiskStore (exact-only caches: no embedding model needed)."""

from __future__ import annotations

from langchain_core.language_models import GenericFakeChatModel
from langchain_core.load import dumps
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation
from langchain_core.prompts import PromptTemplate

from cachemux.cache import SemanticCache
from cachemux.stores import DiskStore, MemoryStore
from langchain_cachemux import CacheMuxCache
from langchain_cachemux.revive import Revived, read_generations

LLM = "fake-model temperature=0"


def _exact(store=None) -> CacheMuxCache:
    return CacheMuxCache(SemanticCache(MemoryStore() if store is None else store, semantic=False))


def _chat_gen(text: str) -> ChatGeneration:
    return ChatGeneration(message=AIMessage(content=text, response_metadata={"model": "m"},
                                            usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}),
                          generation_info={"finish_reason": "stop"})


def test_a_hit_is_a_fresh_copy_a_caller_may_change():
    cache = _exact()
    cache.update("q", LLM, [_chat_gen("Paris")])
    first = cache.lookup("q", LLM)
    assert first == [_chat_gen("Paris")]
    first[0].message.id = "run-1"  # what LangChain does to the generations it returns
    first[0].message.content = "changed by the caller"
    first[0].generation_info["finish_reason"] = "changed"
    second = cache.lookup("q", LLM)
    assert second == [_chat_gen("Paris")] and second[0].message.id is None
    assert second[0] is not first[0] and second[0].message is not first[0].message


def test_model_calls_through_the_memo_get_the_stored_answer_as_their_own_objects():
    cache = _exact()
    model = GenericFakeChatModel(messages=iter([AIMessage(content="four")]), cache=cache)
    a = model.invoke([HumanMessage(content="2+2?")])
    b = model.invoke([HumanMessage(content="2+2?")])  # a hit (the fake has no second answer)
    c = model.invoke([HumanMessage(content="2+2?")])
    assert a.content == b.content == c.content == "four"
    assert a.id == b.id == c.id  # the stored answer carries the first call's message id
    assert b is not c
    b.content = "changed by the caller"
    assert model.invoke([HumanMessage(content="2+2?")]).content == "four"
    assert cache.stats()["exact_hits"] == 3


def test_another_process_cache_over_the_same_store_reads_the_same_value(tmp_path):
    writer = _exact(DiskStore(tmp_path / "s"))
    writer.update("q", LLM, [_chat_gen("Paris")])
    writer.update("r", LLM, [Generation(text="Rome")])
    reader = _exact(DiskStore(tmp_path / "s"))  # an empty memo: revived from the stored text
    assert reader.lookup("q", LLM) == [_chat_gen("Paris")]
    assert reader.lookup("r", LLM) == [Generation(text="Rome")]
    # the writer replaces q's answer: the reader serves the new text, not its memo of the old one
    writer.update("q", LLM, [_chat_gen("Lyon")])
    assert reader.lookup("q", LLM) == [_chat_gen("Lyon")]
    assert reader.lookup("q", "another model") is None


def test_values_outside_the_common_classes_fall_back_to_the_full_allowlist():
    chunk = [ChatGenerationChunk(message=AIMessageChunk(content="par"))]
    tool = [ChatGeneration(message=ToolMessage(content="42", tool_call_id="t1"))]
    for value in (chunk, tool):
        assert read_generations(dumps(value)) == value
    cache = _exact()
    cache.update("c", LLM, chunk)
    assert cache.lookup("c", LLM) == chunk


def test_classes_outside_the_allowlist_are_refused_as_a_miss():
    cache = _exact()
    planted = dumps([PromptTemplate.from_template("{x}")])
    cache.cache.update("p", LLM, planted)  # written by something else than CacheMuxCache
    assert cache.lookup("p", LLM) is None and cache.stats()["unreadable"] == 1
    cache.cache.update("n", LLM, dumps({"not": "a list"}))
    assert cache.lookup("n", LLM) is None and cache.stats()["unreadable"] == 2


def test_the_memo_is_bounded_by_entries_and_characters():
    memo = Revived(max_entries=3, max_chars=10_000)
    texts = [dumps([Generation(text=f"answer {i}")]) for i in range(5)]
    for t in texts:
        assert memo.get(t) == read_generations(t)
    assert len(memo) == 3
    big = dumps([Generation(text="x" * 5_000)])  # over a quarter of max_chars: read, not kept
    assert memo.get(big)[0].text == "x" * 5_000 and len(memo) == 3
    chars = Revived(max_entries=100, max_chars=600)
    for t in texts * 2:
        chars.get(t)
    assert 0 < len(chars) < len(texts) and sum(map(len, texts[-len(chars):])) <= 600
