"""CacheMuxRouter gets the engine's verification by running the model with no router code of its
own: an error-bounded cache's hit drawn for a check is answered fresh, compared and reported
(real MiniLM, fake LangChain chat models)."""

from __future__ import annotations

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage

from cachemux import MemoryStore, SemanticCache, StaticSelector
from cachemux.joint.answers import answer_text as _text, same_text
from cachemux.semantic import Embedder
from langchain_cachemux import CacheMuxRouter
from warm_bound import warm

Q = "How do I reverse a string in Python?"
PARA = "How can I reverse a string in Python?"


@pytest.fixture(scope="module")
def embedder():
    return Embedder().load()


def router(embedder, responses):
    cache = SemanticCache(MemoryStore(), embedder=embedder, max_error=0.2, verify_rate=1.0)
    warm(cache)
    return CacheMuxRouter({"big": FakeListChatModel(responses=responses)}, StaticSelector("big"),
                          costs={"big": 1.0}, cache=cache), cache


def test_invoke_verifies_a_drawn_hit_by_running_the_model(embedder):
    r, cache = router(embedder, ["Use s[::-1]."] * 4)
    r.invoke([("system", "Be brief."), ("human", Q)])
    out = r.invoke([("system", "Be brief."), ("human", PARA)])
    rec = out.response_metadata["cachemux"]
    assert isinstance(out, AIMessage) and out.content == "Use s[::-1]."
    assert rec["cache_hit"] is False and rec["models_run"] == ["big"] and rec["cost"] == 1.0
    assert rec["verified"] is True  # the cached AIMessage's text agreed with the fresh one
    s = r.stats()
    assert s["verify_runs"] == 1 and s["checks"]["agreed"] == 1 and s["cache"]["bounded"]["feedback_ok"] > 1000


def test_stream_verifies_too_and_reports_a_disagreement(embedder):
    r, cache = router(embedder, ["Use s[::-1].", "Use ''.join(reversed(s))."])
    r.invoke(Q)
    chunks = list(r.stream(PARA))
    assert "".join(c.content for c in chunks) == "Use ''.join(reversed(s))."  # the fresh answer, streamed
    rec = chunks[-1].response_metadata["cachemux"]
    assert rec["cache_hit"] is False and rec["verified"] is False
    assert r.stats()["checks"]["disagreed"] == 1
    states = [cache.store.peek(k).meta.get("vc") for k in cache.store.keys()]
    learned = [st for st in states if st]  # the first question's entry learned one wrong answer
    assert len(learned) == 1 and learned[0]["ok"] == [] and len(learned[0]["bad"]) == 1


def test_tool_calls_are_part_of_what_is_compared():
    def call(city):
        return AIMessage(content="", tool_calls=[{"name": "weather", "args": {"city": city}, "id": "1"}])

    assert same_text(_text(call("Paris")), _text(call("Paris")))
    assert not same_text(_text(call("Paris")), _text(call("Lyon")))  # empty contents alone would agree
    assert _text(AIMessage(content="Use s[::-1].")) == "Use s[::-1]."
