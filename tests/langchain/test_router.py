"""langchain_cachemux.router: CacheMuxRouter, a LangChain chat model over one JointEngine (fake
models for the logic, the real SmolLM2 for the local wrappers): per-selector choice, the routing
record, LCEL, batch, streaming, async, the cache, cascades with a judge, tools."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.globals import set_llm_cache
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from pydantic import BaseModel

from cachemux import ConfigError, MemoryStore, OnlineSelector, SemanticCache, StaticSelector
from fake_selectors import KeywordSelector
from langchain_cachemux import CacheMuxCache, CacheMuxRouter, LocalChatModel, LocalLLM


def chat_models():
    return {"small": FakeListChatModel(responses=["small says hi"] * 50),
            "large": FakeListChatModel(responses=["large says hi"] * 50)}


COSTS = {"small": 1.0, "large": 2.0}


def record(msg) -> dict[str, Any]:
    return msg.response_metadata["cachemux"]


def test_router_is_a_chat_model_that_picks_per_selector():
    sel = KeywordSelector()
    router = CacheMuxRouter(chat_models(), sel, costs=COSTS)
    assert isinstance(router, BaseChatModel) and router.cache is False
    easy = router.invoke("an easy question")
    hard = router.invoke([("system", "Be brief."), ("human", "a hard question")])
    assert isinstance(easy, AIMessage) and easy.content == "small says hi"
    assert hard.content == "large says hi"
    m = record(hard)
    assert m["model"] == "large" and m["route"] == ["large"] and m["models_run"] == ["large"]
    assert m["cost"] == 2.0 and m["model_costs"] == {"large": 2.0} and m["cache_hit"] is None  # no cache
    assert m["expected_cost"] is None  # nothing observed for this query before
    assert m["route_costs"] == {"large": 2.0, "small": None}
    # the selector saw the question, not the serialised chat (the last human message)
    assert sel.seen == ["an easy question", "a hard question"]
    again = router.invoke([("system", "Be brief."), ("human", "a hard question")])
    assert record(again)["expected_cost"] == 2.0
    s = router.stats()
    assert s["calls"] == {"small": 1, "large": 2} and s["total_cost"] == 5.0


def test_constructor_takes_keywords_too_and_query_fn():
    seen = []
    router = CacheMuxRouter(models=chat_models(), selector=KeywordSelector(), costs=COSTS,
                            query_fn=lambda msgs: seen.append(len(msgs)) or "hard")
    assert router.invoke("easy").content == "large says hi" and seen == [1]


def test_online_selector_learns_cheapest_route():
    router = CacheMuxRouter(chat_models(), OnlineSelector([("small",), ("large",)]), costs=COSTS)
    models = [record(router.invoke("q"))["model"] for _ in range(4)]
    assert models[:2] == ["small", "large"] and models[2:] == ["small", "small"]  # explores, then exploits


def test_entry_price_is_positive_under_the_readme_selector():
    """The README's cascade-vs-large selector: an entry is priced at an observed route cost,
    never at 0 because the other route is still unexplored."""
    router = CacheMuxRouter(chat_models(), OnlineSelector([("small", "large"), ("large",)]),
                            costs={"small": 1.0, "large": 10.0},
                            cache=CacheMuxCache(store=MemoryStore(), semantic=False))
    records = [record(router.invoke("What is the capital of France?")) for _ in range(3)]
    assert all(m["entry_cost"] > 0 for m in records)
    assert records[0]["entry_cost"] == records[0]["cost"] == 1.0  # the cascade's small model answered
    cached = [m for m in records if m["cached"]]
    assert cached and cached[0]["entry_cost"] == 1.0  # the cheaper of the routes tried
    assert records[-1]["cache_hit"] == "exact"


def test_lcel_composition_batch_and_config():
    prompt = ChatPromptTemplate.from_messages([("system", "Answer briefly."), ("human", "{q}")])
    router = CacheMuxRouter(chat_models(), KeywordSelector(), costs=COSTS)
    chain = prompt | router | StrOutputParser()
    assert chain.invoke({"q": "easy"}) == "small says hi"
    assert chain.batch([{"q": "easy"}, {"q": "hard one"}, {"q": "easy too"}]) == [
        "small says hi", "large says hi", "small says hi"]
    tagged = (prompt | router.with_config(tags=["routed"])).invoke({"q": "hard"})
    assert record(tagged)["model"] == "large"


def test_llms_answer_as_messages():
    llms = {"small": FakeListLLM(responses=["s"] * 9), "large": FakeListLLM(responses=["l"] * 9)}
    router = CacheMuxRouter(llms, KeywordSelector(), costs=COSTS)
    out = (PromptTemplate.from_template("Q: {q}") | router).invoke({"q": "hard"})
    assert isinstance(out, AIMessage) and out.content == "l" and record(out)["model"] == "large"
    pieces = list(router.stream("easy"))
    assert "".join(p.content for p in pieces) == "s" and record(pieces[-1])["model"] == "small"


def test_stream_yields_chunks_then_the_routing_record():
    router = CacheMuxRouter(chat_models(), KeywordSelector(), costs=COSTS)
    chunks = list(router.stream("hard"))
    assert len(chunks) > 2 and all(isinstance(c, AIMessageChunk) for c in chunks)
    assert chunks[-1].chunk_position == "last" and not [c for c in chunks[:-1] if c.chunk_position]
    total = sum(chunks[1:], chunks[0])
    assert total.content == "large says hi" and record(total)["model"] == "large"
    assert len({c.id for c in chunks}) == 1  # one run: the router's


def test_async_invoke_stream_and_batch():
    router = CacheMuxRouter(chat_models(), KeywordSelector(), costs=COSTS)

    async def go():
        one = await router.ainvoke("hard")
        chunks = [c async for c in router.astream("easy")]
        both = await router.abatch(["easy", "hard"])
        return one, chunks, both

    one, chunks, both = asyncio.run(go())
    assert one.content == "large says hi" and record(one)["model"] == "large"
    total = sum(chunks[1:], chunks[0])
    assert total.content == "small says hi" and record(total)["model"] == "small"
    assert [b.content for b in both] == ["small says hi", "large says hi"]


def test_cache_hit_skips_the_selector_and_reports_the_saving():
    cache = CacheMuxCache(store=MemoryStore(), semantic=False)
    sel = KeywordSelector()
    router = CacheMuxRouter(chat_models(), sel, costs=COSTS, cache=cache)
    first = router.invoke("a hard question")
    assert record(first)["cache_hit"] is False and record(first)["cached"] is True
    second = router.invoke("a hard question")
    m = record(second)
    assert second.content == "large says hi" and m["cache_hit"] == "exact" and m["model"] == "large"
    assert m["cost"] == 0.0 and m["saved"] == 2.0 and m["models_run"] == []
    assert len(sel.seen) == 1  # the hit never reached the selector
    chunks = list(router.stream("a hard question"))
    assert len(chunks) == 1 and chunks[0].content == "large says hi" and record(chunks[0])["cache_hit"] == "exact"
    hit = asyncio.run(router.ainvoke("a hard question"))
    assert record(hit)["cache_hit"] == "exact"
    s = router.stats()
    assert s["hits"] == 3 and s["saved"] == 6.0 and s["cache"]["exact_hits"] == 3
    assert router.cachemux_cache is cache and router.cache is False


def test_answers_wait_for_a_settled_price_unless_told_otherwise():
    class Unsure(KeywordSelector):
        def settled(self, query):  # an exploring selector's rule: every route observed on the query
            return all((query, r) in self.estimates for r in self.routes)

    cache = CacheMuxCache(store=MemoryStore(), semantic=False)
    waits = CacheMuxRouter(chat_models(), Unsure(), costs=COSTS, cache=cache)
    assert record(waits.invoke("easy"))["cached"] is False and record(waits.invoke("easy"))["cache_hit"] is False
    eager = CacheMuxRouter(chat_models(), Unsure(), costs=COSTS, cache=cache, admit_unsettled=True)
    assert record(eager.invoke("easy"))["cached"] is True and record(eager.invoke("easy"))["cache_hit"] == "exact"


def test_a_semantic_cache_works_and_a_lone_models_entries_never_answer_the_router():
    cache = SemanticCache(MemoryStore(), semantic=False)
    small = FakeListChatModel(responses=["small says hi"] * 9)
    cache.lookup(dumps_messages("easy"), small._get_llm_string())
    cache.update(dumps_messages("easy"), small._get_llm_string(), '{"answer": "stale"}', cost=1.0)
    router = CacheMuxRouter({"small": small, "large": chat_models()["large"]}, KeywordSelector(), costs=COSTS,
                            cache=cache)
    assert router.invoke("easy").content == "small says hi"  # another partition: a miss
    assert record(router.invoke("easy"))["cache_hit"] == "exact"


def dumps_messages(text: str) -> str:
    from langchain_core.load import dumps
    from langchain_core.messages import HumanMessage

    return dumps([HumanMessage(text)])


def test_langchain_global_cache_never_caches_the_router_again():
    spy = InMemoryCache()
    set_llm_cache(spy)
    try:
        router = CacheMuxRouter(chat_models(), KeywordSelector(), costs=COSTS,
                                cache=CacheMuxCache(store=MemoryStore(), semantic=False))
        router.invoke("easy")
        keys = list(spy._cache)
        # the underlying model used the global cache as LangChain models do; the router did not
        assert keys and not [k for k in keys if "cachemux-router" in k[1]]
    finally:
        set_llm_cache(None)


def test_unreadable_cached_value_is_served_as_a_miss():
    cache = SemanticCache(MemoryStore(), semantic=False)
    router = CacheMuxRouter(chat_models(), KeywordSelector(), costs=COSTS, cache=cache)
    key = router._get_llm_string(stop=None)  # the router's partition for a call without options
    for value in ('{"answer": "not LangChain JSON"}', '{"no": "answer"}'):
        cache.lookup(dumps_messages("easy"), key)
        cache.update(dumps_messages("easy"), key, value, cost=1.0)
        out = router.invoke("easy")
        assert out.content == "small says hi" and record(out)["models_run"] == ["small"]
        cache.clear()
    router.invoke("easy")
    assert record(router.invoke("easy"))["cache_hit"] == "exact"  # the key was the router's


def test_cascade_with_judge_pays_the_penalty():
    sel = StaticSelector(("small", "large"))
    judge_calls = []

    def judge(query, model, text):
        judge_calls.append(model)
        return model == "large"  # the small model's answers are never good enough

    router = CacheMuxRouter(chat_models(), sel, costs=COSTS, judge=judge)
    out = router.invoke("q")
    m = record(out)
    assert out.content == "large says hi" and m["models_run"] == ["small", "large"]
    assert m["cost"] == 1.0 + 2 * 2.0 and m["success"] == {"small": False, "large": True}
    total = None
    for c in router.stream("q2"):
        total = c if total is None else total + c
    assert total.content == "large says hi" and record(total)["models_run"] == ["small", "large"]
    # a cascade step the judge accepts runs whole: its answer comes as one chunk with the record
    lenient = CacheMuxRouter(chat_models(), sel, costs=COSTS, judge=lambda q, m, t: True)
    chunks = list(lenient.stream("q3"))
    assert len(chunks) == 1 and chunks[0].content == "small says hi" and record(chunks[0])["models_run"] == ["small"]


def test_costs_from_reported_usage():
    class Reporting(GenericFakeChatModel):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            msg = AIMessage(content="ok", response_metadata={"flops": 7e9},
                            usage_metadata={"input_tokens": 3, "output_tokens": 2, "total_tokens": 5})
            return ChatResult(generations=[ChatGeneration(message=msg)])

    models = {"small": Reporting(messages=iter([])), "large": Reporting(messages=iter([]))}
    assert record(CacheMuxRouter(models, KeywordSelector(), costs="flops").invoke("q"))["cost"] == 7e9
    assert record(CacheMuxRouter(models, KeywordSelector(), costs="tokens").invoke("q"))["cost"] == 5.0
    with pytest.raises(ConfigError, match="flops"):
        CacheMuxRouter(chat_models(), KeywordSelector(), costs="flops").invoke("q")


class Tooled(BaseChatModel):
    """A chat model that can call tools: it calls the first bound one with a=1, b=2."""

    @property
    def _llm_type(self) -> str:
        return "tooled"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        tools = kwargs.get("tools") or []
        calls = [{"name": tools[0]["function"]["name"], "args": {"a": 1, "b": 2}, "id": "c1"}] if tools else []
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="", tool_calls=calls))])

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], tool_choice=tool_choice, **kwargs)


class Pair(BaseModel):
    """Two numbers."""

    a: int
    b: int


def test_tools_and_structured_output_when_every_model_has_them():
    router = CacheMuxRouter({"small": Tooled(), "large": Tooled()}, KeywordSelector(), costs=COSTS)
    msg = router.bind_tools([Pair]).invoke("easy")
    assert msg.tool_calls[0]["name"] == "Pair" and record(msg)["model"] == "small"
    assert router.with_structured_output(Pair).invoke("hard") == Pair(a=1, b=2)
    with pytest.raises(NotImplementedError, match="function_calling"):
        router.with_structured_output(Pair, method="json_schema")


def test_what_the_models_cannot_do_names_them():
    mixed = {"small": Tooled(), "large": FakeListChatModel(responses=["x"])}
    router = CacheMuxRouter(mixed, KeywordSelector(), costs=COSTS)
    with pytest.raises(NotImplementedError, match=r"'large' \(FakeListChatModel\)"):
        router.bind_tools([Pair])
    with pytest.raises(NotImplementedError, match="'large'"):
        router.with_structured_output(Pair)
    llms = CacheMuxRouter({"small": Tooled(), "large": FakeListLLM(responses=["x"])}, KeywordSelector())
    with pytest.raises(NotImplementedError, match=r"'large' \(FakeListLLM\)"):
        llms.bind_tools([Pair])
    local = LocalChatModel("smollm2-135m")  # loads nothing
    for call in (lambda: local.bind_tools([Pair]), lambda: local.with_structured_output(Pair)):
        with pytest.raises(NotImplementedError, match=r"LocalChatModel \(smollm2-135m\)"):
            call()
    with pytest.raises(NotImplementedError, match=r"'small' \(LocalChatModel\)"):
        CacheMuxRouter({"small": local, "large": Tooled()}, KeywordSelector()).bind_tools([Pair])


def test_bad_configurations_name_the_problem():
    with pytest.raises(ConfigError, match="not among the models"):
        CacheMuxRouter({"small": chat_models()["small"]}, KeywordSelector())
    with pytest.raises(ConfigError, match="lacks"):
        CacheMuxRouter(chat_models(), KeywordSelector(), costs={"small": 1.0})
    with pytest.raises(ConfigError, match="BaseLanguageModel"):
        CacheMuxRouter({"small": "gpt", "large": "gpt"}, KeywordSelector())
    with pytest.raises(ConfigError, match="selector"):
        CacheMuxRouter(chat_models(), "online")
    with pytest.raises(ConfigError, match="cache"):
        CacheMuxRouter(chat_models(), KeywordSelector(), cache={})
    with pytest.raises(ConfigError, match="output"):
        CacheMuxRouter(chat_models(), KeywordSelector(), output="dict")
    with pytest.raises(ConfigError, match="twice"):
        CacheMuxRouter(chat_models(), KeywordSelector(), selector=KeywordSelector())


# ---- the real small local model ---------------------------------------------------------------
@pytest.fixture(scope="module")
def smol_chat():
    return LocalChatModel("smollm2-135m", max_tokens=12)


@pytest.mark.models
def test_router_over_real_local_models_with_flops_costs(smol_chat):
    terse = LocalChatModel(local=smol_chat.local, max_tokens=3)
    router = CacheMuxRouter({"small": terse, "large": smol_chat}, KeywordSelector(), costs="flops",
                            cache=CacheMuxCache(store=MemoryStore(), semantic=False))
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | router
    out = chain.invoke({"q": "What is the capital of France? hard"})
    m = record(out)
    assert m["model"] == "large" and m["cost"] == out.response_metadata["flops"] > 0
    chunks = list(router.stream([("human", "What is the capital of Italy?")]))
    total = sum(chunks[1:], chunks[0])
    assert record(total)["model"] == "small" and total.usage_metadata["output_tokens"] <= 3
    hit = chain.invoke({"q": "What is the capital of France? hard"})
    assert hit.content == out.content and record(hit)["saved"] == m["cost"]
    # the bug: an answer cut at a stop string never reaches a plain call
    cut = router.bind(stop=["Paris"]).invoke("What is the capital of France? hard")
    assert "Paris" not in cut.content and record(cut)["cache_hit"] is False
    plain = router.invoke("What is the capital of France? hard")  # the chain's answer, not the cut one
    assert "Paris" in plain.content and record(plain)["cache_hit"] == "exact"
    assert record(router.bind(stop=["Paris"]).invoke("What is the capital of France? hard"))["cache_hit"] == "exact"
    assert record(router.invoke("What is the capital of France? hard", max_tokens=2))["cache_hit"] is False


@pytest.mark.models
def test_local_llm_under_the_router_reports_flops(smol_chat):
    llm = LocalLLM(local=smol_chat.local, max_tokens=6)
    router = CacheMuxRouter({"small": llm, "large": llm}, KeywordSelector(), costs="flops")
    out = router.invoke("What is the capital of France?")
    assert record(out)["cost"] == out.response_metadata["flops"] > 0 and out.content.strip()


# ---- LocalChatModel / LocalLLM: every parameter honoured or refused ------------------------------
def test_local_models_refuse_what_they_cannot_honour():
    with pytest.raises(ConfigError, match=r"unknown model 'smollm2-135'; known: \['gemma3-270m', 'qwen2.5-coder-0.5b', 'qwen2.5-coder-1.5b', 'smollm2-135m'\]"):
        LocalChatModel("smollm2-135")
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        LocalLLM(model="nope")
    for bad, match in (({"api_key": "k"}, "api_key"), ({"timeout": 5}, "timeout"), ({"max_tokens": 0}, "max_tokens"),
                       ({"temperature": -1}, "temperature"), ({"seed": -2}, "seed"), ({"stop": "x"}, "stop"),
                       ({"max_tokens": 5, "max_new_tokens": 5}, "not both")):
        for cls in (LocalChatModel, LocalLLM):
            with pytest.raises(ConfigError, match=match):
                cls("smollm2-135m", **bad)
    with pytest.raises(ConfigError, match="local="):
        LocalChatModel("gemma3-270m", local=LocalChatModel("smollm2-135m").local)


def test_local_model_parameters_key_and_trace_without_loading():
    chat = LocalChatModel("smollm2-135m", max_tokens=7, temperature=0.5, seed=1, stop=["\n"])
    assert LocalChatModel.from_name("smollm2-135m", max_new_tokens=7).max_tokens == 7
    assert chat.local is LocalLLM(model="smollm2-135m").local  # one loaded model per process
    ls = chat._get_ls_params()
    assert ls == {"ls_provider": "cachemux", "ls_model_name": "smollm2-135m", "ls_model_type": "chat",
                  "ls_temperature": 0.5, "ls_max_tokens": 7, "ls_stop": ["\n"]}
    assert chat._get_ls_params(model="gemma3-270m", max_tokens=3)["ls_model_name"] == "gemma3-270m"
    keys = {LocalChatModel("smollm2-135m", **kw)._get_llm_string() for kw in
            ({}, {"max_tokens": 7}, {"temperature": 0.5}, {"seed": 1}, {"stop": ["\n"]},
             {"model_options": {"system_prompt": "Be brief."}})}
    assert len(keys) == 6  # every parameter that changes the answer changes the cache key
    assert LocalChatModel("smollm2-135m", stop=[])._get_llm_string() == LocalChatModel("smollm2-135m")._get_llm_string()


@pytest.mark.models
def test_local_chat_model_honours_its_parameters(smol_chat):
    msg = smol_chat.invoke("What is the capital of France?")
    assert "Paris" in msg.content and msg.response_metadata["model_name"] == "smollm2-135m"
    assert msg.response_metadata["flops"] > 0 and msg.response_metadata["latency"] > 0
    assert msg.usage_metadata["output_tokens"] >= 1
    assert smol_chat.invoke("What is the capital of France?", max_tokens=2).usage_metadata["output_tokens"] == 2
    assert "Paris" not in smol_chat.invoke("What is the capital of France?", stop=["Paris"]).content
    stopped = LocalChatModel(local=smol_chat.local, max_tokens=12, stop=["Paris"])
    assert "Paris" not in stopped.invoke("What is the capital of France?").content
    story = "Tell me a story."
    hot = LocalChatModel(local=smol_chat.local, max_tokens=8, temperature=1.0, seed=3)
    assert hot.invoke(story).content == hot.invoke(story).content
    assert {hot.invoke(story, seed=s).content for s in (4, 5, 6)} - {hot.invoke(story).content}
    with pytest.raises(ConfigError, match=r"does not take \['top_k'\]"):
        smol_chat.invoke("hi", top_k=3)
    with pytest.raises(NotImplementedError, match="tool"):
        smol_chat.invoke([("human", "hi"), AIMessage("", tool_calls=[{"name": "f", "args": {}, "id": "1"}])])
    from langchain_core.messages import HumanMessage

    with pytest.raises(NotImplementedError, match="text only"):
        smol_chat.invoke([HumanMessage(content=[{"type": "image", "url": "http://x/y.png"}])])
    chunks = list(LocalChatModel(local=smol_chat.local, max_tokens=4, streaming=True).stream("Hi"))
    assert len(chunks) >= 2 and chunks[-1].chunk_position == "last"
    llm = LocalLLM(local=smol_chat.local, max_tokens=12)
    assert "Paris" in llm.invoke("What is the capital of France?")
    assert "Paris" in "".join(llm.stream("What is the capital of France?"))
    res = llm.generate(["What is the capital of France?"]).generations[0][0]
    assert res.generation_info["flops"] > 0 and res.generation_info["tokens_out"] >= 1
