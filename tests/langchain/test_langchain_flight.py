"""Identical LangChain calls at once make one model call: ``set_llm_cache(CacheMuxCache(...))``
(LangChain looks up, calls the model, updates; the lookups of the others wait for that update)
and ``CacheMuxRouter`` (one JointEngine), with threads and with asyncio tasks. A counting
``GenericFakeChatModel`` sleeps ``WORK_S`` per call so that every caller arrives meanwhile."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from at_once import at_once as together
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from cachemux import MemoryStore, StaticSelector
from langchain_cachemux import CacheMuxCache, CacheMuxRouter

N = 200
WORK_S = 0.4


class CountingChat(GenericFakeChatModel):
    """Answers "answer to <question>", counting its calls; ``fail_first``: the first call raises."""

    fail_first: bool = False
    _calls: list[int] = PrivateAttr(default_factory=lambda: [0])
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def calls(self) -> int:
        return self._calls[0]

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        with self._lock:
            self._calls[0] += 1
            first = self._calls[0] == 1
        time.sleep(WORK_S)
        if first and self.fail_first:
            raise RuntimeError("the model failed")
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=f"answer to {messages[-1].content}"))])


def chat(**kw: Any) -> CountingChat:
    return CountingChat(messages=iter(()), **kw)


@pytest.fixture
def global_cache():
    before = get_llm_cache()
    lc = CacheMuxCache(store=MemoryStore(), semantic=False)
    set_llm_cache(lc)
    yield lc
    set_llm_cache(before)


def test_set_llm_cache_threads_make_one_call(global_cache):
    model = chat()
    got = together(N, lambda i: model.invoke("What is the capital of France?").content)
    assert model.calls == 1 and got == ["answer to What is the capital of France?"] * N
    assert global_cache.stats()["coalesced"] >= 1


def test_set_llm_cache_async_tasks_make_one_call(global_cache):
    model = chat()

    async def main() -> list:
        return await asyncio.gather(*(model.ainvoke("Who wrote Hamlet?") for _ in range(N)))

    assert [m.content for m in asyncio.run(main())] == ["answer to Who wrote Hamlet?"] * N
    assert model.calls == 1


def test_set_llm_cache_other_prompts_get_their_own_call(global_cache):
    model = chat()
    prompts = [f"What is {i} plus {i}?" for i in range(4)]
    got = together(40, lambda i: (i, model.invoke(prompts[i % 4]).content))
    assert model.calls == 4
    assert all(text == f"answer to {prompts[i % 4]}" for i, text in got)


def test_set_llm_cache_waiters_of_a_failed_call_call_the_model_after_the_deadline():
    """LangChain never tells the cache that the model raised: the waiters get a miss at the
    flight's deadline (here 1 s) and call the model themselves; nobody hangs."""
    before = get_llm_cache()
    set_llm_cache(CacheMuxCache(store=MemoryStore(), semantic=False, flight_timeout=1.0))
    try:
        model = chat(fail_first=True)
        t0 = time.monotonic()
        got = together(10, lambda i: model.invoke("q").content)
        assert time.monotonic() - t0 < 30
    finally:
        set_llm_cache(before)
    assert sum(isinstance(g, RuntimeError) for g in got) == 1
    assert [g for g in got if not isinstance(g, Exception)] == ["answer to q"] * 9
    assert model.calls >= 2


def router() -> tuple[CacheMuxRouter, CountingChat]:
    model = chat()
    return CacheMuxRouter({"m": model}, StaticSelector(("m",)), costs={"m": 1.0},
                          cache=CacheMuxCache(store=MemoryStore(), semantic=False)), model


def test_router_threads_make_one_call():
    r, model = router()
    got = together(N, lambda i: r.invoke("What is the capital of France?"))
    assert model.calls == 1 and {m.content for m in got} == {"answer to What is the capital of France?"}
    assert sum(m.response_metadata["cachemux"]["cache_hit"] is False for m in got) == 1


def test_router_async_tasks_make_one_call():
    r, model = router()

    async def main() -> list:
        return await asyncio.gather(*(r.ainvoke("Who wrote Hamlet?") for _ in range(N)))

    assert {m.content for m in asyncio.run(main())} == {"answer to Who wrote Hamlet?"}
    assert model.calls == 1


def test_a_blank_answer_lets_the_waiting_calls_go_at_once():
    """The leader's answer is empty: it is not cached, and the identical calls waiting for it are
    let go at once (each makes its own call) instead of waiting out flight_timeout or being
    served the blank answer."""

    class Blank(CountingChat):
        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
            with self._lock:
                self._calls[0] += 1
            time.sleep(WORK_S)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=""))])

    model = Blank(messages=iter(()), cache=CacheMuxCache(store=MemoryStore(), semantic=False, flight_timeout=60))
    t0 = time.monotonic()
    got = together(8, lambda i: model.invoke("an unanswerable question"))
    assert all(isinstance(g, AIMessage) and g.content == "" for g in got)
    assert time.monotonic() - t0 < 30  # not the 60 s flight deadline
    assert model.calls >= 2 and model.cache.stats()["empty"] == model.calls
