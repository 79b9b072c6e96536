"""Keys that cannot collide across configurations: prompt formatters keyed by what they do (two
closures of one factory, two lambdas), ``casefold`` in the exact key, model groups keyed by their
members; a formatter whose behaviour cannot be told makes the call uncacheable."""

from __future__ import annotations

import functools
import threading
from typing import Any

import pytest
from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
from llama_index.core.llms.custom import CustomLLM

from cachemux import ConfigError, MemoryStore, SemanticCache, StaticSelector
from cachemux.semantic.identity import callable_identity
from cachemux.semantic.keys import exact_key
from llamaindex_cachemux import CacheMuxLLM

Q = "What is the tallest mountain in Africa?"


def prefixer(prefix: str):
    return lambda p: prefix + p


def test_identity_tells_apart_what_names_do_not():
    a, b = prefixer("Answer in French: "), prefixer("Answer in German: ")
    assert a.__qualname__ == b.__qualname__
    assert callable_identity(a) != callable_identity(b)
    assert callable_identity(a) == callable_identity(prefixer("Answer in French: "))  # same behaviour
    la = lambda p: "A" + p  # noqa: E731
    lb = lambda p: "B" + p  # noqa: E731
    assert callable_identity(la) != callable_identity(lb)
    assert callable_identity(functools.partial(str.replace, old="a")) != callable_identity(
        functools.partial(str.replace, old="b"))
    lock = threading.Lock()

    def reads_an_object(p):
        with lock:
            return p

    assert callable_identity(reads_an_object) is None  # it cannot tell: the caller must not cache
    assert callable_identity(str.upper) is not None


class Echo(CustomLLM):
    """Answers with the prompt it was sent after its completion_to_prompt: what a real local
    model's answer depends on."""

    calls: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="echo")

    def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
        self.calls += 1
        return CompletionResponse(text=self.completion_to_prompt(prompt))

    def stream_complete(self, prompt: str, formatted: bool = False, **kw: Any):
        raise NotImplementedError


def tenant(formatter, cache: SemanticCache) -> tuple[CacheMuxLLM, Echo]:
    echo = Echo(completion_to_prompt=formatter)
    return CacheMuxLLM({"m": echo}, StaticSelector(("m",)), costs={"m": 1.0}, cache=cache), echo


@pytest.mark.parametrize("pair", ["closures", "lambdas"])
def test_two_formatters_with_one_name_never_share_answers(pair):
    cache = SemanticCache(MemoryStore())
    if pair == "closures":
        fa, fb = prefixer("[A] "), prefixer("[B] ")
    else:
        fa = lambda p: "[A] " + p  # noqa: E731
        fb = lambda p: "[B] " + p  # noqa: E731
    a, _ = tenant(fa, cache)
    b, echo_b = tenant(fb, cache)
    assert a.complete(Q).text == "[A] " + Q
    got = b.complete(Q)
    assert got.text == "[B] " + Q and echo_b.calls == 1  # tenant B is not served A's answer
    again, echo_a2 = tenant(prefixer("[A] ") if pair == "closures" else fa, cache)
    assert again.complete(Q).text == "[A] " + Q and echo_a2.calls == 0  # same behaviour: a hit


def test_a_formatter_that_cannot_be_keyed_is_never_cached(caplog):
    lock = threading.Lock()

    def guarded(p: str) -> str:
        with lock:
            return "[G] " + p

    cache = SemanticCache(MemoryStore())
    llm, echo = tenant(guarded, cache)
    assert llm.complete(Q).text == "[G] " + Q and llm.complete(Q).text == "[G] " + Q
    assert echo.calls == 2 and len(cache.store) == 0
    assert "cannot be keyed" in caplog.text


def test_casefold_is_part_of_the_exact_key():
    assert exact_key("Hello", "m", casefold=True) != exact_key("hello", "m")
    assert exact_key("Hello", "m", casefold=True) == exact_key("hello", "m", casefold=True)
    store = MemoryStore()
    folding = SemanticCache(store, semantic=False, casefold=True)
    exact = SemanticCache(store, semantic=False)
    folding.update("US", "llm", "the United States")
    assert folding.lookup("us", "llm") == "the United States"
    assert exact.lookup("us", "llm") is None  # another spelling, made under case folding
    assert exact.lookup("US", "llm") is None


def test_model_groups_are_keyed_by_their_members():
    store = MemoryStore()
    app1 = SemanticCache(store, semantic=False, model_groups={"G": ["gpt-a", "gpt-b"]})
    app2 = SemanticCache(store, semantic=False, model_groups={"G": ["gpt-a", "other"]})
    same = SemanticCache(store, semantic=False, model_groups={"G": ["gpt-b", "gpt-a"]})
    app1.update(Q, "gpt-b", "Kilimanjaro")
    assert app1.lookup(Q, "gpt-a") == "Kilimanjaro"  # the group shares answers
    assert app2.lookup(Q, "gpt-a") is None  # another "G": not served app1's answer
    assert same.lookup(Q, "gpt-a") == "Kilimanjaro"  # the same members in another order


def test_model_group_functions_are_keyed_by_what_they_do():
    store = MemoryStore()

    def grouping(name: str):
        return lambda s: name if s.startswith("gpt") else None

    app1 = SemanticCache(store, semantic=False, model_groups=grouping("G"))
    app2 = SemanticCache(store, semantic=False, model_groups=lambda s: "G" if s.startswith("claude") else None)
    app1.update(Q, "gpt-x", "Kilimanjaro")
    assert app1.lookup(Q, "gpt-y") == "Kilimanjaro"
    assert app2.lookup(Q, "claude") is None
    lock = threading.Lock()
    with pytest.raises(ConfigError, match="cannot be keyed"):
        SemanticCache(store, semantic=False, model_groups=lambda s: (lock.locked() and None) or "G")
