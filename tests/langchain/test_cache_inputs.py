"""Every prompt a LangChain model can be called with passes through CacheMuxCache without raising
(issue 11, case 2); wrong argument types are ConfigErrors naming the argument. Real LangChain
fake models, the real packaged embedder, a real MemoryStore."""

from __future__ import annotations

import json
import logging

import pytest
from langchain_core.language_models import FakeListLLM, GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.outputs import Generation

from cachemux.errors import ConfigError
from cachemux.semantic import Embedder
from cachemux.stores import MemoryStore
from langchain_cachemux import CacheMuxCache, prompt_parts, token_usage

LOOKS_LIKE_CHAT = [
    '[{"lc": 1, "type": "constructor", "id": ["HumanMessage"], "kwargs": true}]',
    '[{"lc": 1, "type": "constructor", "id": ["HumanMessage"], "kwargs": ["content", "hi"]}]',
    '[{"lc": 1, "type": "constructor", "id": ["HumanMessage"], "kwargs": {"content": "hi", "additional_kwargs": 7}}]',
    '[{"lc": 1, "type": "constructor", "id": ["HumanMessage"], "kwargs": {"content": {"text": "hi"}}}]',
    '[{"lc": 1, "type": "constructor", "id": ["HumanMessage"], "kwargs": {"content": [null, 3]}}]',
    '[{"lc": 1, "type": "constructor", "id": [7], "kwargs": {}}]',
    '[{"lc": 1, "type": "constructor", "id": ["AIMessage"], "kwargs": {"type": ["human"], "content": "x"}}]',
]


@pytest.fixture(scope="module")
def embedder():
    return Embedder().load()


def _cache(embedder, **kw) -> CacheMuxCache:
    return CacheMuxCache(store=MemoryStore(), embedder=embedder, threshold=0.8, **kw)


@pytest.mark.parametrize("prompt", LOOKS_LIKE_CHAT)
def test_completion_prompt_shaped_like_a_serialised_chat(embedder, prompt):
    cache = _cache(embedder)
    llm = FakeListLLM(responses=["first", "second"], cache=cache)
    assert llm.invoke(prompt) == "first"
    assert llm.invoke(prompt) == "first"  # cached and found again
    text, scope = prompt_parts(prompt)
    assert text in (prompt, False) and scope == ""
    assert cache.stats()["exact_hits"] == 1 and cache.stats()["errors"] == 0


def test_lone_surrogate_in_a_long_chat_message(embedder, caplog):
    caplog.set_level(logging.INFO, logger="cachemux.cache")
    cache = _cache(embedder)
    question = "Please summarise: \ud800 " + "some words here " * 20
    assert len(question) > 254
    chat = GenericFakeChatModel(messages=iter([AIMessage("summary"), AIMessage("WRONG")]), cache=cache)
    msgs = [SystemMessage("Be brief."), HumanMessage(question)]
    assert chat.invoke(msgs).content == "summary"
    assert chat.invoke(msgs).content == "summary"  # exact hit
    # and in a completion prompt
    llm = FakeListLLM(responses=["done", "WRONG"], cache=cache)
    assert llm.invoke(question) == "done" and llm.invoke(question) == "done"
    s = cache.stats()
    assert s["exact_only_unencodable"] == 2 and s["exact_hits"] == 2 and s["errors"] == 0
    logged = [r for r in caplog.records if "exactly only (unencodable" in r.getMessage()]
    assert len(logged) == 1  # once, however often it happens


def test_wrong_argument_types_are_config_errors(embedder):
    cache = _cache(embedder)
    gen = [Generation(text="a")]
    with pytest.raises(ConfigError, match="prompt must be str"):
        cache.lookup(123, "llm")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="prompt must be str"):
        cache.update(b"bytes", "llm", gen)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="llm_string must be str"):
        cache.update("p", None, gen)  # type: ignore[arg-type]
    for bad in ("a string", [1, 2], ["text"], {"text": "a"}, None, Generation(text="a"), 5):
        with pytest.raises(ConfigError, match="return_val must be a list of langchain_core Generation"):
            cache.update("p", "llm", bad)  # type: ignore[arg-type]
    assert cache.stats()["updates"] == 0  # nothing reached the store


HUGE = [10**400, float("inf"), float("nan"), 1e308, 1e16, -5, True, "12"]


@pytest.mark.parametrize("n", HUGE, ids=[f"{type(v).__name__}:{str(v)[:12]}" for v in HUGE])
def test_tokens_cost_with_overflowing_usage_never_raises(embedder, n):
    cache = _cache(embedder, cost="tokens")
    usage = {"input_tokens": n, "output_tokens": n, "total_tokens": n}
    msg = AIMessage("answer", response_metadata={"token_usage": usage})
    chat = GenericFakeChatModel(messages=iter([msg, AIMessage("WRONG")]), cache=cache)
    assert chat.invoke("How many tokens?").content == "answer"
    assert chat.invoke("How many tokens?").content == "answer"
    # an LLM generation with the same usage in generation_info, through update directly
    cache.update("q", "llm", [Generation(text="a", generation_info={"token_usage": usage})])
    assert cache.lookup("q", "llm")[0].text == "a"
    costs = [cache.cache.store.peek(k).cost for k in cache.cache.store.keys()]
    assert len(costs) == 2 and all(0 <= c < 1e6 for c in costs)  # the token estimate instead
    assert token_usage([Generation(text="a", generation_info={"token_usage": usage})]) is None


def test_tokens_cost_still_counts_ordinary_usage(embedder):
    cache = _cache(embedder, cost="tokens")
    cache.update("q", "llm", [Generation(text="a", generation_info={"token_usage": {"total_tokens": 42}})])
    key = next(iter(cache.cache.store.keys()))
    assert cache.cache.store.peek(key).cost == 42.0
    many = [Generation(text="a", generation_info={"token_usage": {"total_tokens": 9e14}})] * 2
    assert token_usage(many[:1]) == 9e14 and token_usage(many) is None  # the sum is past the bound
    assert json.loads(cache.cache.store.peek(key).value)[0]["kwargs"]["text"] == "a"
