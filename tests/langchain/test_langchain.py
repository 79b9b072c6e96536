"""CacheMuxCache with real LangChain models (langchain_core's fake LLM and chat model classes) and
the real packaged embedding model: set_llm_cache, cache= per model, async, stats, faults."""

from __future__ import annotations

import asyncio
import json

import pytest
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.language_models import FakeListChatModel, FakeListLLM, GenericFakeChatModel
from langchain_core.load import dumps
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, Generation
from redis_server import redis_server_factory  # noqa: F401 - fixture

from cachemux.cache import FALLBACK_SECONDS_PER_TOKEN, SemanticCache
from cachemux.errors import ConfigError
from cachemux.semantic import Embedder
from cachemux.stores import DiskStore, RedisStore
from cachemux.units import estimate_tokens
from langchain_cachemux import CacheMuxCache, prompt_parts, token_usage

Q1 = "What is the capital of France?"
Q1_PARA = "what's the capital city of France"


@pytest.fixture(scope="module")
def embedder():
    return Embedder().load()


@pytest.fixture
def global_cache(embedder):
    """set_llm_cache for one test, restored afterwards."""
    before = get_llm_cache()
    made: list[CacheMuxCache] = []

    def install(**kw) -> CacheMuxCache:
        kw.setdefault("threshold", 0.8)
        cache = CacheMuxCache(embedder=embedder, **kw)
        set_llm_cache(cache)
        made.append(cache)
        return cache

    yield install
    set_llm_cache(before)


def test_llm_exact_and_semantic_hits_through_set_llm_cache(global_cache):
    cache = global_cache()
    llm = FakeListLLM(responses=["Paris", "WRONG: not cached", "Knead the dough"])
    assert llm.invoke(Q1) == "Paris"
    assert llm.invoke(Q1) == "Paris"  # exact hit: the model is not called again
    assert llm.invoke(Q1_PARA) == "Paris"  # semantic hit
    assert llm.invoke("How do I bake sourdough bread?") == "WRONG: not cached"
    s = cache.stats()
    assert (s["exact_hits"], s["semantic_hits"], s["misses"], s["entries"]) == (1, 1, 2, 2)
    assert s["cost_saved"] > 0 and s["unreadable"] == s["unstorable"] == 0
    # stored as LangChain's JSON, never pickle
    entry = cache.cache.store.peek(cache.cache.key_for(Q1, next(iter(_llm_strings(cache)))))
    assert json.loads(entry.value)[0]["id"] == ["langchain", "schema", "output", "Generation"]


def _llm_strings(cache: CacheMuxCache) -> set[str]:
    store = cache.cache.store
    return {store.peek(k).meta["llm"] for k in store.keys()}


def test_chat_model_semantic_hit_on_message_text(global_cache):
    cache = global_cache()
    chat = FakeListChatModel(responses=["Paris (chat)", "WRONG: not cached"])
    assert chat.invoke(Q1).content == "Paris (chat)"
    hit = chat.invoke([HumanMessage(Q1_PARA)])
    assert isinstance(hit, AIMessage) and hit.content == "Paris (chat)"
    assert cache.stats()["semantic_hits"] == 1
    # another model configuration is never served this answer
    other = FakeListChatModel(responses=["Lyon?"])
    assert other.invoke(Q1).content == "Lyon?"


def test_system_prompt_and_tool_messages(global_cache):
    cache = global_cache()
    chat = FakeListChatModel(responses=["A", "B", "C", "D"])
    sys_a = [SystemMessage("Answer in French."), HumanMessage(Q1)]
    sys_b = [SystemMessage("Answer in one word."), HumanMessage(Q1)]
    assert chat.invoke(sys_a).content == "A"
    assert chat.invoke(sys_b).content == "B"  # another instruction: not the same question
    sys_a_para = [SystemMessage("Answer in French."), HumanMessage(Q1_PARA)]
    assert chat.invoke(sys_a_para).content == "A"  # same instruction, paraphrased question
    tool = [HumanMessage(Q1), AIMessage("", tool_calls=[{"name": "lookup", "args": {"q": "France"}, "id": "1"}]),
            ToolMessage("Paris", tool_call_id="1")]
    assert chat.invoke(tool).content == "C"
    assert chat.invoke(tool).content == "C"  # exact hit still works
    assert cache.stats()["semantic_hits"] == 1 and cache.stats()["exact_only"] == 1


def test_prompt_parts_extraction():
    assert prompt_parts("plain LLM prompt") == ("plain LLM prompt", "")
    assert prompt_parts(dumps([HumanMessage(Q1)])) == (Q1, "")
    text, scope = prompt_parts(dumps([SystemMessage("Be brief."), HumanMessage(Q1)]))
    assert text == Q1 and json.loads(scope) == [["system", "Be brief."]]
    assert prompt_parts(dumps([HumanMessage(content=[{"type": "text", "text": "hi"}])])) == ("hi", "")
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert prompt_parts(dumps([HumanMessage(content=[{"type": "text", "text": "hi"}, image])])) == (False, "")
    assert prompt_parts(dumps([HumanMessage(Q1), AIMessage("Paris")])) == (False, "")  # last is not the user
    assert prompt_parts('[{"not": "a message"}]') == ('[{"not": "a message"}]', "")
    assert prompt_parts("[{broken json") == ("[{broken json", "")


def test_cache_argument_of_a_single_model(embedder):
    before = get_llm_cache()
    set_llm_cache(None)
    try:
        cache = CacheMuxCache(embedder=embedder, threshold=0.8)
        cached = FakeListLLM(responses=["Paris", "WRONG"], cache=cache)
        uncached = FakeListLLM(responses=["one", "two"])
        assert cached.invoke(Q1) == "Paris" and cached.invoke(Q1_PARA) == "Paris"
        assert uncached.invoke(Q1) == "one" and uncached.invoke(Q1) == "two"
        assert cache.stats()["hits"] == 1
    finally:
        set_llm_cache(before)


def test_async_paths(global_cache):
    cache = global_cache()
    chat = FakeListChatModel(responses=["Paris", "WRONG"])

    async def run():
        first = await chat.ainvoke(Q1)
        second = await chat.ainvoke(Q1_PARA)
        await cache.aupdate("extra prompt", "llm", [Generation(text="x")])
        looked = await cache.alookup("extra prompt", "llm")
        await cache.aclear()
        return first, second, looked, await cache.alookup("extra prompt", "llm")

    first, second, looked, after_clear = asyncio.run(run())
    assert first.content == second.content == "Paris"
    assert looked == [Generation(text="x")] and after_clear is None


def test_token_usage_as_cost(global_cache):
    cache = global_cache(cost="tokens")
    msg = AIMessage("Paris", usage_metadata={"input_tokens": 9, "output_tokens": 3, "total_tokens": 12})
    chat = GenericFakeChatModel(messages=iter([msg]))
    assert chat.invoke(Q1).content == "Paris"
    (key,) = list(cache.cache.store.keys())
    assert cache.cache.store.peek(key).cost == 12.0
    assert chat.invoke(Q1_PARA).content == "Paris"
    assert cache.stats()["cost_saved"] == 12.0
    # no usage reported: estimated as characters / 4, never mixed with seconds
    llm = FakeListLLM(responses=["Paris is the capital."])
    llm.invoke("Capital of France, in one sentence?")
    costs = sorted(cache.cache.store.peek(k).cost for k in cache.cache.store.keys())
    assert costs == [12.0, 14.0]  # (35 + 21 characters) / 4


def test_token_usage_reading():
    assert token_usage([ChatGeneration(message=AIMessage("x", usage_metadata={
        "input_tokens": 1, "output_tokens": 2, "total_tokens": 3}))]) == 3
    assert token_usage([ChatGeneration(message=AIMessage("x", response_metadata={
        "token_usage": {"prompt_tokens": 4, "completion_tokens": 5}}))]) == 9
    assert token_usage([Generation(text="x", generation_info={"token_usage": {"total_tokens": 7}})]) == 7
    assert token_usage([Generation(text="x")]) is None


def test_cost_function_sees_generations_and_usage(global_cache):
    seen = []

    def price(info):
        seen.append(info)
        return 0.01 * (info.info["usage"] or 0)

    cache = global_cache(cost=price)
    msg = AIMessage("Paris", usage_metadata={"input_tokens": 9, "output_tokens": 3, "total_tokens": 12})
    GenericFakeChatModel(messages=iter([msg])).invoke(Q1)
    assert seen[0].latency is not None and seen[0].info["generations"][0].text == "Paris"
    (key,) = list(cache.cache.store.keys())
    assert cache.cache.store.peek(key).cost == pytest.approx(0.12)


def test_persistent_disk_store_survives_a_restart(embedder, tmp_path):
    first = CacheMuxCache(store=DiskStore(tmp_path / "lc"), embedder=embedder, threshold=0.8)
    FakeListLLM(responses=["Paris"], cache=first).invoke(Q1)
    first.cache.close()
    again = CacheMuxCache(store=DiskStore(tmp_path / "lc"), embedder=embedder, threshold=0.8)
    assert FakeListLLM(responses=["Paris"], cache=again).invoke(Q1_PARA) == "Paris"
    assert again.stats()["semantic_hits"] == 1


def test_redis_down_the_chain_still_answers(redis_server_factory, embedder):  # noqa: F811
    server = redis_server_factory()
    cache = CacheMuxCache(store=RedisStore(server.url, namespace="lc", socket_timeout=0.5),
                          embedder=embedder, threshold=0.8)
    llm = FakeListLLM(responses=["Paris", "fresh answer", "fresh again"], cache=cache)
    assert llm.invoke(Q1) == "Paris" and llm.invoke(Q1) == "Paris"
    server.kill()
    assert llm.invoke(Q1) == "fresh answer"  # lookup fault -> miss, update fault -> dropped
    assert llm.invoke(Q1_PARA) == "fresh again"
    s = cache.stats()
    assert s["errors"] >= 4 and s["dropped"] == 2


def test_unreadable_value_is_a_miss(global_cache):
    cache = global_cache()
    cache.cache.update("p", "llm", '{"lc": 1, "type": "constructor", "id": ["os", "system"], "kwargs": {}}', cost=1)
    assert cache.lookup("p", "llm") is None and cache.stats()["unreadable"] == 1
    cache.update("q", "llm", [Generation(text="ok")])  # no miss seen: stored at the estimated price
    assert cache.lookup("q", "llm") == [Generation(text="ok")]


def test_constructor_errors(embedder):
    with pytest.raises(ConfigError, match="cost must be one of"):
        CacheMuxCache(cost="dollars")
    ready = SemanticCache(embedder=embedder)
    with pytest.raises(ConfigError, match="either a ready SemanticCache"):
        CacheMuxCache(ready, capacity=5)
    with pytest.raises(ConfigError, match="SemanticCache"):
        CacheMuxCache(cache="not a cache")
    assert CacheMuxCache(ready).cache is ready


def test_update_without_lookup_is_priced_by_the_token_estimate(global_cache, caplog):
    """LangChain's contract (and its standard cache tests) store an update that no lookup preceded."""
    cache = global_cache()
    gens = [Generation(text="Paris is the capital."), Generation(text="Paris.")]
    tokens = estimate_tokens(Q1, "Paris is the capital.", "Paris.")  # the texts, not the stored JSON
    cache.update(Q1, "llm", gens)
    assert cache.lookup(Q1, "llm") == gens
    key = cache.cache.key_for(Q1, "llm")
    assert cache.cache.store.peek(key).cost == pytest.approx(tokens * FALLBACK_SECONDS_PER_TOKEN)
    # once a latency was measured, this cache's own seconds per token
    llm = FakeListLLM(responses=["Knead the dough"], cache=cache)
    llm.invoke("How do I bake sourdough bread?")
    per_token = cache.cache.seconds_per_token()
    assert per_token != FALLBACK_SECONDS_PER_TOKEN
    cache.update("Who wrote Hamlet?", "llm", [Generation(text="Shakespeare")])
    assert cache.cache.store.peek(cache.cache.key_for("Who wrote Hamlet?", "llm")).cost == pytest.approx(
        estimate_tokens("Who wrote Hamlet?", "Shakespeare") * per_token)
    assert cache.stats()["estimated"] == 2 and not [r for r in caplog.records if r.levelno >= 30]
    # cost="tokens": the estimate itself; fallback_cost overrides either
    tok = global_cache(cost="tokens")
    tok.update(Q1, "llm", gens)
    assert tok.cache.store.peek(key).cost == tokens
    for kind in ("latency", "tokens"):
        fixed = global_cache(cost=kind, fallback_cost=0.5)
        fixed.update(Q1, "llm", gens)
        assert fixed.cache.store.peek(key).cost == 0.5


def test_call_options_are_part_of_the_key(global_cache):
    """An answer made under stop=[...] or other call kwargs is never served to other options."""
    cache = global_cache()
    before = get_llm_cache()
    set_llm_cache(None)  # the model's own cache= only
    try:
        chat = GenericFakeChatModel(messages=iter(["with stop", "without stop", "other kwarg", "more"]),
                                    cache=cache)
        assert chat.invoke(Q1, stop=["x"]).content == "with stop"
        assert chat.invoke(Q1).content == "without stop"
        assert chat.invoke(Q1, stop=["x"]).content == "with stop"  # the same options: a hit
        assert chat.invoke(Q1, stop=["y"], seed=1).content == "other kwarg"
        assert chat.invoke(Q1_PARA, stop=["y"], seed=2).content == "more"  # not even semantically
        assert chat.invoke(Q1_PARA).content == "without stop"
        llms = _llm_strings(cache)
        assert len(llms) == 4 and all("stop" in s for s in llms)
    finally:
        set_llm_cache(before)


def test_clear_one_configuration_or_namespace_or_everything(embedder, tmp_path):
    store = DiskStore(tmp_path / "clear")
    a = CacheMuxCache(store=store, embedder=embedder, threshold=0.8, namespace="a")
    b = CacheMuxCache(store=store, embedder=embedder, threshold=0.8, namespace="b")
    # the model's fields are part of llm_string too: one model per cache, same responses
    m_a, m_b = (FakeListChatModel(responses=["one", "two", "three"], cache=c) for c in (a, b))
    assert m_a.invoke(Q1, stop=["x"]).content == "one" and m_a.invoke(Q1, stop=["y"]).content == "two"
    assert m_b.invoke(Q1, stop=["x"]).content == "one"
    llm_x = next(s for s in _llm_strings(a) if "'x'" in s)
    a.clear(llm_string=llm_x)
    assert m_a.invoke(Q1_PARA, stop=["y"]).content == "two"  # other options kept (a semantic hit)
    assert m_a.invoke(Q1_PARA, stop=["x"]).content == "three"  # that configuration's entry gone from the index
    assert m_b.invoke(Q1, stop=["x"]).content == "one"  # and only in this namespace
    asyncio.run(a.aclear())  # this namespace
    assert len(store) == 1 and m_b.invoke(Q1, stop=["x"]).content == "one"
    a.clear(everything=True)
    assert len(store) == 0
    with pytest.raises(ConfigError, match="unknown arguments colour, llm"):
        a.clear(llm="x", colour=1)
    with pytest.raises(ConfigError, match="llm_string must be str"):
        asyncio.run(a.aclear(llm_string=3))
    with pytest.raises(ConfigError, match="everything must be a bool"):
        a.clear(everything="yes")


def test_non_text_arguments_are_config_errors(global_cache):
    cache = global_cache()
    for bad in (None, 3, [HumanMessage("hi")]):
        with pytest.raises(ConfigError, match="prompt must be str"):
            cache.lookup(bad, "llm")
        with pytest.raises(ConfigError, match="prompt must be str"):
            cache.update(bad, "llm", [Generation(text="x")])
        with pytest.raises(ConfigError, match="llm_string must be str"):
            cache.lookup(Q1, bad)
        with pytest.raises(ConfigError, match="llm_string must be str"):
            asyncio.run(cache.aupdate(Q1, bad, [Generation(text="x")]))
