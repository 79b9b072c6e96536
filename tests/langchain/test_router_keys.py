"""The router's cache key holds every call option: an answer made under one stop, max tokens,
temperature, bound kwarg or tool set is never served to a call with another (the bug: a
``bind(stop=["Paris"])`` answer, 'The capital of France is ', came back to a plain call)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool

from cachemux import MemoryStore, StaticSelector
from langchain_cachemux import CacheMuxCache, CacheMuxRouter

Q = "What is the capital of France?"


class Echo(BaseChatModel):
    """'The capital of France is Paris.', cut at the stop strings and to ``max_tokens`` words,
    ``(T=...)`` appended for a temperature, the other options it got listed; with tools bound it
    calls the first one."""

    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _generate(self, messages: Any, stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.calls += 1
        tools = kwargs.pop("tools", None)
        kwargs.pop("tool_choice", None)
        if tools:
            msg = AIMessage(content="", tool_calls=[{"name": tools[0]["function"]["name"], "args": {"a": 1, "b": 2},
                                                     "id": f"call-{self.calls}"}])
            return ChatResult(generations=[ChatGeneration(message=msg)])
        text = "The capital of France is Paris."
        for s in stop or []:
            text = text.split(s)[0]
        n = kwargs.pop("max_tokens", None)
        if n:
            text = " ".join(text.split()[:n])
        t = kwargs.pop("temperature", None)
        if t is not None:
            text += f" (T={t})"
        if kwargs:
            text += f" {sorted(kwargs.items())}"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any) -> Any:
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@pytest.fixture
def router():
    cache = CacheMuxCache(store=MemoryStore())  # semantic too: a match by meaning must respect options
    return CacheMuxRouter({"m": Echo()}, StaticSelector(("m",)), costs={"m": 1.0}, cache=cache)


def served(msg: AIMessage) -> tuple[Any, Any]:
    m = msg.response_metadata["cachemux"]
    return msg.content, m["cache_hit"]


def test_stop(router):
    assert served(router.bind(stop=["Paris"]).invoke(Q)) == ("The capital of France is ", False)
    assert served(router.invoke(Q)) == ("The capital of France is Paris.", False)
    assert served(router.invoke(Q, stop=["France"])) == ("The capital of ", False)
    assert served(router.invoke(Q)) == ("The capital of France is Paris.", "exact")
    assert served(router.bind(stop=["Paris"]).invoke(Q)) == ("The capital of France is ", "exact")
    assert router.models["m"].calls == 3 and router.stats()["hits"] == 2
    # a router-level default stop is part of its configuration too
    cut = CacheMuxRouter({"m": Echo()}, StaticSelector(("m",)), costs={"m": 1.0}, cache=router.cachemux_cache,
                         stop=["is"])
    assert served(cut.invoke(Q)) == ("The capital of France ", False)
    # a paraphrase, matched by meaning or not, never gets an answer made under other options
    assert router.invoke("What's the capital of France?").content == "The capital of France is Paris."
    assert router.invoke("What's the capital of France?", stop=["Paris"]).content == "The capital of France is "


def test_max_tokens(router):
    assert served(router.invoke(Q, max_tokens=2)) == ("The capital", False)
    assert served(router.invoke(Q, max_tokens=3)) == ("The capital of", False)
    assert served(router.invoke(Q)) == ("The capital of France is Paris.", False)
    assert served(router.invoke(Q, max_tokens=2)) == ("The capital", "exact")
    # the router's own default is part of its configuration: another partition
    capped = CacheMuxRouter({"m": Echo()}, StaticSelector(("m",)), costs={"m": 1.0},
                            cache=router.cachemux_cache, max_tokens=4)
    assert served(capped.invoke(Q)) == ("The capital of France", False)
    assert served(capped.invoke(Q)) == ("The capital of France", "exact")


def test_temperature(router):
    assert served(router.invoke(Q, temperature=0.7)) == ("The capital of France is Paris. (T=0.7)", False)
    assert served(router.invoke(Q)) == ("The capital of France is Paris.", False)
    assert served(router.invoke(Q, temperature=0.2)) == ("The capital of France is Paris. (T=0.2)", False)
    assert served(router.invoke(Q, temperature=0.7)) == ("The capital of France is Paris. (T=0.7)", "exact")


def test_bound_kwarg(router):
    formal = router.bind(style="formal")
    assert served(formal.invoke(Q)) == ("The capital of France is Paris. [('style', 'formal')]", False)
    assert served(router.invoke(Q)) == ("The capital of France is Paris.", False)
    assert served(router.bind(style="terse").invoke(Q))[1] is False
    assert served(formal.invoke(Q)) == ("The capital of France is Paris. [('style', 'formal')]", "exact")
    # run configuration (tags, callbacks, run names) is no call option: it keys nothing
    assert served(router.with_config(tags=["t"], run_name="r").invoke(Q))[1] == "exact"


def test_tools(router):
    with_add = router.bind_tools([add])
    first = with_add.invoke(Q)
    assert first.tool_calls[0]["name"] == "add" and served(first)[1] is False
    assert served(router.invoke(Q)) == ("The capital of France is Paris.", False)  # no tool call served
    other = router.bind_tools([multiply]).invoke(Q)
    assert other.tool_calls[0]["name"] == "multiply" and served(other)[1] is False
    assert served(router.bind_tools([add], tool_choice="add").invoke(Q))[1] is False  # tool_choice too
    again = with_add.invoke(Q)
    assert served(again)[1] == "exact" and again.tool_calls == first.tool_calls  # tool calls survive the cache
