"""langchain_cachemux.router: CacheMuxRouter over LangChain models (fake ones for the logic, the
real SmolLM2 for the local wrappers): per-selector choice, metadata, LCEL, batch, streaming,
async, the cache, cascades with a judge."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # effective only if torch is not loaded yet

import asyncio  # noqa: E402
from collections.abc import Hashable  # noqa: E402

import pytest  # noqa: E402
from langchain_core.language_models.fake import FakeListLLM  # noqa: E402
from langchain_core.language_models.fake_chat_models import FakeListChatModel  # noqa: E402
from langchain_core.messages import AIMessage, AIMessageChunk  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate  # noqa: E402

from cachemux.cache import SemanticCache
from cachemux.stores import MemoryStore  # noqa: E402
from cachemux.errors import ConfigError  # noqa: E402
from cachemux.multiplexer import OnlineSelector, Selector, StaticSelector  # noqa: E402
from langchain_cachemux import CacheMuxCache  # noqa: E402
from langchain_cachemux.router import CacheMuxRouter, LocalChatModel, LocalLLM, RoutedText  # noqa: E402


class KeywordSelector(Selector):
    """Large for queries that say "hard", small otherwise (a stand-in for a trained selector)."""

    name = "keyword"

    def __init__(self) -> None:
        super().__init__([("small",), ("large",)])
        self.seen: list[Hashable] = []

    def choose(self, query: Hashable) -> tuple[str, ...]:
        self.seen.append(query)
        return ("large",) if "hard" in str(query) else ("small",)


def chat_models():
    return {"small": FakeListChatModel(responses=["small says hi"] * 50),
            "large": FakeListChatModel(responses=["large says hi"] * 50)}


COSTS = {"small": 1.0, "large": 2.0}


def test_router_picks_per_selector_and_reports_costs():
    sel = KeywordSelector()
    router = CacheMuxRouter(chat_models(), sel, costs=COSTS)
    easy = router.invoke("an easy question")
    hard = router.invoke([("system", "Be brief."), ("human", "a hard question")])
    assert isinstance(easy, AIMessage) and easy.content == "small says hi"
    assert hard.content == "large says hi"
    m = hard.response_metadata["cachemux"]
    assert m["model"] == "large" and m["route"] == ["large"] and m["models_run"] == ["large"]
    assert m["cost"] == 2.0 and m["model_costs"] == {"large": 2.0} and m["cache_hit"] is False
    assert m["expected_cost"] is None  # nothing observed for this query before
    assert m["route_costs"] == {"large": 2.0, "small": None}
    # the selector saw the question, not the serialised chat (the last human message)
    assert sel.seen == ["an easy question", "a hard question"]
    again = router.invoke([("system", "Be brief."), ("human", "a hard question")])
    assert again.response_metadata["cachemux"]["expected_cost"] == 2.0
    s = router.stats()
    assert s["calls"] == {"small": 1, "large": 2} and s["total_cost"] == 5.0


def test_online_selector_learns_cheapest_route():
    router = CacheMuxRouter(chat_models(), OnlineSelector([("small",), ("large",)]), costs=COSTS)
    models = [router.invoke("q").response_metadata["cachemux"]["model"] for _ in range(4)]
    assert models[:2] == ["small", "large"] and models[2:] == ["small", "small"]  # explores, then exploits


def test_lcel_composition_and_batch():
    prompt = ChatPromptTemplate.from_messages([("system", "Answer briefly."), ("human", "{q}")])
    chain = prompt | CacheMuxRouter(chat_models(), KeywordSelector(), costs=COSTS) | StrOutputParser()
    assert chain.invoke({"q": "easy"}) == "small says hi"
    assert chain.batch([{"q": "easy"}, {"q": "hard one"}, {"q": "easy too"}]) == [
        "small says hi", "large says hi", "small says hi"]


def test_string_models_give_routed_text_and_dict_output():
    llms = {"small": FakeListLLM(responses=["s"] * 9), "large": FakeListLLM(responses=["l"] * 9)}
    router = CacheMuxRouter(llms, KeywordSelector(), costs=COSTS)
    out = (PromptTemplate.from_template("Q: {q}") | router).invoke({"q": "hard"})
    assert isinstance(out, RoutedText) and out == "l" and out.cachemux["model"] == "large"
    assert out.response_metadata["cachemux"]["cost"] == 2.0
    as_dict = CacheMuxRouter(llms, KeywordSelector(), costs=COSTS, output="dict").invoke("easy")
    assert as_dict["output"] == "s" and as_dict["cachemux"]["model"] == "small"


def test_stream_yields_chunks_then_the_routing_record():
    router = CacheMuxRouter(chat_models(), KeywordSelector(), costs=COSTS)
    chunks = list(router.stream("hard"))
    assert len(chunks) > 2 and all(isinstance(c, AIMessageChunk) for c in chunks)
    total = sum(chunks[1:], chunks[0])
    assert total.content == "large says hi"
    assert total.response_metadata["cachemux"]["model"] == "large"
    llms = {"small": FakeListLLM(responses=["s"] * 9), "large": FakeListLLM(responses=["l"] * 9)}
    pieces = list(CacheMuxRouter(llms, KeywordSelector(), costs=COSTS).stream("easy"))
    assert "".join(pieces) == "s" and pieces[-1].cachemux["model"] == "small"


def test_async_invoke_and_stream():
    router = CacheMuxRouter(chat_models(), KeywordSelector(), costs=COSTS)

    async def go():
        one = await router.ainvoke("hard")
        chunks = [c async for c in router.astream("easy")]
        both = await router.abatch(["easy", "hard"])
        return one, chunks, both

    one, chunks, both = asyncio.run(go())
    assert one.content == "large says hi" and one.response_metadata["cachemux"]["model"] == "large"
    total = sum(chunks[1:], chunks[0])
    assert total.content == "small says hi" and total.response_metadata["cachemux"]["model"] == "small"
    assert [b.content for b in both] == ["small says hi", "large says hi"]


def test_cache_hit_skips_the_selector_and_reports_the_saving():
    cache = CacheMuxCache(semantic=False)
    sel = KeywordSelector()
    router = CacheMuxRouter(chat_models(), sel, costs=COSTS, cache=cache)
    first = router.invoke("a hard question")
    assert first.response_metadata["cachemux"]["cache_hit"] is False
    assert first.response_metadata["cachemux"]["cached"] is True
    second = router.invoke("a hard question")
    m = second.response_metadata["cachemux"]
    assert second.content == "large says hi" and m["cache_hit"] == "exact" and m["model"] == "large"
    assert m["cost"] == 0.0 and m["saved"] == 2.0 and m["models_run"] == []
    assert len(sel.seen) == 1  # the hit never reached the selector
    chunks = list(router.stream("a hard question"))
    assert len(chunks) == 1 and chunks[0].response_metadata["cachemux"]["cache_hit"] == "exact"
    s = router.stats()
    assert s["hits"] == 2 and s["saved"] == 4.0 and s["cache"]["exact_hits"] == 2
    # the router's partition is its own: a single model's cache entries never answer it
    assert SemanticCache(MemoryStore(10), semantic=False).lookup("a hard question", router.mux.llm_string) is None


def test_unreadable_cached_value_is_served_as_a_miss():
    cache = SemanticCache(semantic=False)
    router = CacheMuxRouter(chat_models(), KeywordSelector(), costs=COSTS, cache=cache)
    cache.lookup("easy", router.mux.llm_string)
    cache.update("easy", router.mux.llm_string, '{"not": "a generation"}', cost=1.0)
    out = router.invoke("easy")
    assert out.content == "small says hi" and out.response_metadata["cachemux"]["models_run"] == ["small"]


def test_cascade_with_judge_pays_the_penalty():
    sel = StaticSelector(("small", "large"))
    judge_calls = []

    def judge(query, model, text):
        judge_calls.append(model)
        return model == "large"  # the small model's answers are never good enough

    router = CacheMuxRouter(chat_models(), sel, costs=COSTS, judge=judge)
    out = router.invoke("q")
    m = out.response_metadata["cachemux"]
    assert out.content == "large says hi" and m["models_run"] == ["small", "large"]
    assert m["cost"] == 1.0 + 2 * 2.0 and m["success"] == {"small": False, "large": True}
    total = None
    for c in router.stream("q2"):
        total = c if total is None else total + c
    assert total.content == "large says hi"
    assert total.response_metadata["cachemux"]["models_run"] == ["small", "large"]


def test_bad_configurations_name_the_problem():
    with pytest.raises(ConfigError, match="not among the models"):
        CacheMuxRouter({"small": chat_models()["small"]}, KeywordSelector())
    with pytest.raises(ConfigError, match="lacks"):
        CacheMuxRouter(chat_models(), KeywordSelector(), costs={"small": 1.0})
    with pytest.raises(ConfigError, match="output"):
        CacheMuxRouter(chat_models(), KeywordSelector(), output="xml")
    with pytest.raises(ConfigError, match="Runnable"):
        CacheMuxRouter({"small": "gpt", "large": "gpt"}, KeywordSelector())


# ---- the real small local model ---------------------------------------------------------------
@pytest.fixture(scope="module")
def smol_chat():
    return LocalChatModel.from_name("smollm2-135m", max_new_tokens=12)


def test_local_chat_model_reports_flops_and_usage(smol_chat):
    msg = smol_chat.invoke("What is the capital of France?")
    assert "Paris" in msg.content
    assert msg.response_metadata["flops"] > 0 and msg.response_metadata["latency"] > 0
    assert msg.usage_metadata["output_tokens"] >= 1
    llm = LocalLLM(local=smol_chat.local, max_new_tokens=12)
    assert "Paris" in llm.invoke("What is the capital of France?")
    streamed = "".join(llm.stream("What is the capital of France?"))
    assert "Paris" in streamed


def test_router_over_real_local_models_with_flops_costs(smol_chat):
    terse = LocalChatModel(local=smol_chat.local, max_new_tokens=3)
    router = CacheMuxRouter({"small": terse, "large": smol_chat}, KeywordSelector(), costs="flops",
                            cache=CacheMuxCache(semantic=False))
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | router
    out = chain.invoke({"q": "What is the capital of France? hard"})
    m = out.response_metadata["cachemux"]
    assert m["model"] == "large" and m["cost"] == out.response_metadata["flops"] > 0
    chunks = list(router.stream([("human", "What is the capital of Italy?")]))
    total = sum(chunks[1:], chunks[0])
    assert total.response_metadata["cachemux"]["model"] == "small"
    assert total.usage_metadata["output_tokens"] <= 3
    hit = chain.invoke({"q": "What is the capital of France? hard"})
    assert hit.content == out.content and hit.response_metadata["cachemux"]["saved"] == m["cost"]
