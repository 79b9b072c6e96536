"""llamaindex_cachemux: CacheMuxLLM over LlamaIndex LLMs (fake ones for the logic, the real SmolLM2
through LocalLLM), all eight call forms, metadata, the cache, and a query engine over a
VectorStoreIndex with the packaged MiniLM embeddings."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # effective only if torch is not loaded yet

import asyncio  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from llama_index.core.base.llms.types import (  # noqa: E402
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_completion_callback  # noqa: E402
from llama_index.core.llms.custom import CustomLLM  # noqa: E402
from pydantic import PrivateAttr  # noqa: E402

from cachemux import ConfigError, MemoryStore, SemanticCache, StaticSelector  # noqa: E402
from fake_selectors import KeywordSelector
from llamaindex_cachemux import CacheMuxLLM, LocalEmbedding, LocalLLM  # noqa: E402


class Fake(CustomLLM):
    """Answers "<name>: <n>" in three streamed pieces."""

    tag: str
    window: int = 4096
    chat_model: bool = False
    # a counter, not a pydantic field: fields are the model's configuration (part of the cache key)
    _calls: list[int] = PrivateAttr(default_factory=lambda: [0])

    @property
    def calls(self) -> int:
        return self._calls[0]

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=self.window, num_output=32, is_chat_model=self.chat_model,
                           model_name=f"fake-{self.tag}")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self._calls[0] += 1
        return CompletionResponse(text=f"{self.tag} answers", additional_kwargs={"flops": 10.0})

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        self._calls[0] += 1

        def gen():
            text = ""
            for piece in (self.tag, " ", "answers"):
                text += piece
                yield CompletionResponse(text=text, delta=piece)
        return gen()


COSTS = {"small": 1.0, "large": 2.0}


def fakes(**kw: Any) -> dict[str, Fake]:
    return {"small": Fake(tag="small", window=2048, **kw), "large": Fake(tag="large", **kw)}


def test_metadata_is_the_safe_combination():
    llm = CacheMuxLLM(fakes(), KeywordSelector(), costs=COSTS)
    m = llm.metadata
    assert m.context_window == 2048 and m.num_output == 32 and not m.is_chat_model
    assert m.model_name == "cachemux[small=fake-small,large=fake-large]"
    assert CacheMuxLLM(fakes(chat_model=True), KeywordSelector()).metadata.is_chat_model


def test_complete_and_chat_route_per_selector():
    sel = KeywordSelector()
    llm = CacheMuxLLM(fakes(), sel, costs=COSTS)
    r = llm.complete("a hard one")
    assert r.text == "large answers"
    meta = r.additional_kwargs["cachemux"]
    assert meta["model"] == "large" and meta["cost"] == 2.0 and meta["cache_hit"] is None  # no cache
    assert r.additional_kwargs["flops"] == 10.0  # the model's own fields are kept
    c = llm.chat([ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="easy")])
    assert c.message.content == "small answers" and c.additional_kwargs["cachemux"]["model"] == "small"
    assert sel.seen == ["a hard one", "easy"]  # a chat's selector query is its last user message
    s = llm.stats()
    assert s["answered"] == {"small": 1, "large": 1} and s["total_cost"] == 3.0


def test_streams_end_with_the_routing_record():
    llm = CacheMuxLLM(fakes(), KeywordSelector(), costs=COSTS)
    chunks = list(llm.stream_complete("hard"))
    assert [c.delta for c in chunks] == ["large", " ", "answers", ""]
    assert chunks[-1].text == "large answers" and chunks[-1].additional_kwargs["cachemux"]["model"] == "large"
    chats = list(llm.stream_chat([ChatMessage(role="user", content="easy")]))
    assert chats[-1].message.content == "small answers"
    assert chats[-1].additional_kwargs["cachemux"]["model"] == "small"


def test_async_forms():
    llm = CacheMuxLLM(fakes(), KeywordSelector(), costs=COSTS)
    msgs = [ChatMessage(role="user", content="hard")]

    async def go():
        a = await llm.acomplete("hard")
        b = await llm.achat(msgs)
        c = [r async for r in await llm.astream_complete("easy")]
        d = [r async for r in await llm.astream_chat(msgs)]
        return a, b, c, d

    a, b, c, d = asyncio.run(go())
    assert a.text == "large answers" and a.additional_kwargs["cachemux"]["model"] == "large"
    assert b.message.content == "large answers"
    assert c[-1].text == "small answers" and c[-1].additional_kwargs["cachemux"]["model"] == "small"
    assert d[-1].message.content == "large answers" and d[-1].additional_kwargs["cachemux"]["route"] == ["large"]


def test_cache_serves_repeats_and_keeps_chats_apart():
    models = fakes()
    llm = CacheMuxLLM(models, KeywordSelector(), costs=COSTS, cache=SemanticCache(MemoryStore(), semantic=False))
    first = llm.complete("what is hard")
    again = llm.complete("what is hard")
    assert again.text == first.text == "large answers"
    meta = again.additional_kwargs["cachemux"]
    assert meta["cache_hit"] == "exact" and meta["model"] == "large" and meta["saved"] == 2.0
    assert models["large"].calls == 1
    # the same words as a chat are a different request (the chat formats them its own way)
    chat = llm.chat([ChatMessage(role="user", content="what is hard")])
    assert chat.additional_kwargs["cachemux"]["cache_hit"] is False and models["large"].calls == 2
    hit = list(llm.stream_chat([ChatMessage(role="user", content="what is hard")]))
    assert len(hit) == 1 and hit[0].additional_kwargs["cachemux"]["cache_hit"] == "exact"
    assert llm.stats()["hits"] == 2


def test_semantic_hits_compare_the_question_within_the_same_context():
    ctx = "Context: " + DOCS[0] + "\nQuestion: "
    models = fakes()
    llm = CacheMuxLLM(models, KeywordSelector(), costs=COSTS, cache=SemanticCache(MemoryStore(), threshold=0.95),
                      query_fn=lambda p: p.rsplit("Question: ", 1)[-1].split("\n")[0])
    llm.complete(ctx + "Who designed the Eiffel Tower?\nAnswer:")
    para = llm.complete(ctx + "Who was the designer of the Eiffel Tower?\nAnswer:")
    assert para.additional_kwargs["cachemux"]["cache_hit"] == "semantic"
    other = llm.complete(ctx + "When was the Eiffel Tower completed?\nAnswer:")
    assert other.additional_kwargs["cachemux"]["cache_hit"] is False
    moved = llm.complete("Context: " + DOCS[1] + "\nQuestion: Who designed the Eiffel Tower?\nAnswer:")
    assert moved.additional_kwargs["cachemux"]["cache_hit"] is False  # another context: never shared
    assert models["small"].calls == 3


def test_cascade_with_judge():
    llm = CacheMuxLLM(fakes(), StaticSelector(("small", "large")), costs=COSTS,
                      judge=lambda q, m, text: m == "large")
    r = llm.complete("q")
    assert r.text == "large answers"
    assert r.additional_kwargs["cachemux"]["models_run"] == ["small", "large"]
    assert r.additional_kwargs["cachemux"]["cost"] == 1.0 + 2 * 2.0
    chunks = list(llm.stream_complete("q2"))
    assert [c.delta for c in chunks] == ["large", " ", "answers", ""]  # the small model ran whole, unseen
    assert chunks[-1].additional_kwargs["cachemux"]["models_run"] == ["small", "large"]


def test_a_stream_whose_judged_first_model_is_accepted_comes_whole():
    models = fakes()
    llm = CacheMuxLLM(models, StaticSelector(("small", "large")), costs=COSTS, judge=lambda q, m, text: True)
    chunks = list(llm.stream_complete("q"))
    assert [(c.text, c.delta) for c in chunks] == [("small answers", "small answers")]
    assert chunks[0].additional_kwargs["cachemux"]["models_run"] == ["small"] and models["large"].calls == 0

    async def go():
        return [c async for c in await llm.astream_chat([ChatMessage(role="user", content="q")])]

    (chat,) = asyncio.run(go())
    assert chat.message.content == chat.delta == "small answers"


def test_async_streams_are_served_from_the_cache():
    models = fakes()
    llm = CacheMuxLLM(models, KeywordSelector(), costs=COSTS, cache=SemanticCache(MemoryStore(), semantic=False))

    async def go():
        first = [c async for c in await llm.astream_complete("hard")]
        again = [c async for c in await llm.astream_complete("hard")]
        return first, again

    first, again = asyncio.run(go())
    assert first[-1].additional_kwargs["cachemux"]["cached"] is True
    assert len(again) == 1 and again[0].text == "large answers" and again[0].delta == "large answers"
    assert again[0].additional_kwargs["cachemux"]["cache_hit"] == "exact" and models["large"].calls == 1


def test_bad_configurations():
    with pytest.raises(ConfigError, match="not among the models"):
        CacheMuxLLM({"small": Fake(tag="s")}, KeywordSelector())
    with pytest.raises(ConfigError, match="LlamaIndex LLM"):
        CacheMuxLLM({"small": "x", "large": "y"}, KeywordSelector())
    with pytest.raises(ConfigError, match="cost table lacks"):
        CacheMuxLLM(fakes(), KeywordSelector(), costs={"small": 1.0})
    with pytest.raises(ConfigError, match="selector"):
        CacheMuxLLM(fakes(), "online")
    with pytest.raises(ConfigError, match="query_fn"):
        CacheMuxLLM(fakes(), KeywordSelector(), query_fn="question")
    with pytest.raises(ConfigError, match="messages"):
        CacheMuxLLM(fakes(), KeywordSelector(), costs=COSTS).chat([])


def test_local_llm_refuses_what_it_cannot_honour():
    """Checked before any weights load."""
    with pytest.raises(ConfigError, match="max_tokens"):
        LocalLLM("smollm2-135m", max_tokens=0)
    with pytest.raises(ConfigError, match="temperature"):
        LocalLLM("smollm2-135m", temperature=0.7)
    with pytest.raises(ConfigError, match="stop"):
        LocalLLM("smollm2-135m", stop=[""])
    with pytest.raises(ConfigError, match="device"):
        LocalLLM("smollm2-135m", device="tpu")
    with pytest.raises(ConfigError, match="unknown model 'x'; known: .*smollm2-135m"):
        LocalLLM("x")
    llm = LocalLLM("smollm2-135m", 8, stop="\n")
    assert (llm.model, llm.max_tokens, llm.stop) == ("smollm2-135m", 8, ["\n"])
    assert LocalLLM.from_name("smollm2-135m", max_new_tokens=8).local is llm.local  # the older spelling
    for bad in ({"top_p": 0.9}, {"temperature": 1.0}, {"max_tokens": -1}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            llm.complete("hi", **bad)


# ---- real local models in a query engine --------------------------------------------------------
DOCS = [
    "The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair.",
    "Mount Kilimanjaro, in Tanzania, is the highest mountain in Africa at 5,895 metres.",
    "The Amazon is the largest rainforest on Earth; most of it lies in Brazil.",
]


@pytest.fixture(scope="module")
def smol() -> LocalLLM:
    return LocalLLM("smollm2-135m", max_tokens=16)


@pytest.mark.models
def test_local_llm_all_forms(smol):
    assert smol.metadata.is_chat_model and smol.metadata.context_window == 8192
    assert smol.metadata.model_name == "smollm2-135m" and smol.metadata.num_output == 16
    r = smol.complete("What is the capital of France?")
    assert "Paris" in r.text and r.additional_kwargs["flops"] > 0 and r.additional_kwargs["latency"] > 0
    chunks = list(smol.stream_chat([ChatMessage(role="user", content="What is the capital of France?")]))
    assert "Paris" in chunks[-1].message.content and chunks[-1].additional_kwargs["tokens_out"] >= 1
    # the call's options are honoured: fewer tokens, a stop string, temperature 0
    short = smol.complete("Count from one to twenty in words.", max_tokens=3, temperature=0)
    assert short.additional_kwargs["tokens_out"] == 3 and short.additional_kwargs["finish_reason"] == "length"
    full = smol.complete("Count from one to twenty in words.").text  # greedy: the same every time
    word = full.split()[2]
    cut = smol.complete("Count from one to twenty in words.", stop=[word])
    assert cut.text == full[:full.index(word)] and cut.additional_kwargs["finish_reason"] == "stop"


@pytest.mark.models
def test_cachemux_llm_as_settings_llm_in_a_query_engine(smol):
    from llama_index.core import Document, Settings, VectorStoreIndex

    terse = LocalLLM("smollm2-135m", max_tokens=4)
    assert terse.local is smol.local  # one shared model per process
    sel = KeywordSelector()
    llm = CacheMuxLLM({"small": terse, "large": smol}, sel, costs="flops",
                      cache=SemanticCache(MemoryStore(), semantic=False),
                      query_fn=lambda p: p.rsplit("Query:", 1)[-1])  # route on the question only
    old_llm, old_embed = Settings._llm, Settings._embed_model
    try:
        Settings.llm = llm
        Settings.embed_model = LocalEmbedding()
        index = VectorStoreIndex.from_documents([Document(text=t) for t in DOCS])
        engine = index.as_query_engine(similarity_top_k=1)
        q = "In which city is the Eiffel Tower? (hard)"
        answer = engine.query(q)
        assert "Paris" in str(answer)
        assert "Eiffel" in answer.source_nodes[0].node.get_content()
        assert sel.seen and "Eiffel" in sel.seen[-1] and "World's Fair" not in sel.seen[-1]
        again = engine.query(q)
        assert str(again) == str(answer)
        stats = llm.stats()
        assert stats["hits"] == 1 and stats["answered"] == {"small": 0, "large": 1}
        assert stats["total_cost"] > 0 and stats["saved"] == stats["total_cost"]  # flops of the miss
        streaming = index.as_query_engine(similarity_top_k=1, streaming=True).query("Where is Kilimanjaro?")
        text = "".join(streaming.response_gen)
        assert text and llm.stats()["answered"]["small"] == 1
    finally:
        Settings._llm, Settings._embed_model = old_llm, old_embed
