"""Identical ``CacheMuxLLM`` calls at once make one model call (threads and asyncio tasks): the
engine's lookups wait for the first call's answer (``cachemux.semantic.flight``)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import PrivateAttr

from cachemux import MemoryStore, SemanticCache, StaticSelector
from llamaindex_cachemux import CacheMuxLLM

N = 200
WORK_S = 0.4


class Counting(CustomLLM):
    """Answers "answer to <prompt>" after ``WORK_S``, counting its calls."""

    _calls: list[int] = PrivateAttr(default_factory=lambda: [0])
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="counting")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        with self._lock:
            self._calls[0] += 1
        time.sleep(WORK_S)
        return CompletionResponse(text=f"answer to {prompt}")

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        raise NotImplementedError


def llm() -> tuple[CacheMuxLLM, Counting]:
    model = Counting()
    return CacheMuxLLM({"m": model}, StaticSelector(("m",)), costs={"m": 1.0},
                       cache=SemanticCache(MemoryStore(), semantic=False)), model


def test_threads_make_one_call():
    cm, model = llm()
    barrier = threading.Barrier(N)

    def one(_: int) -> str:
        barrier.wait()
        return cm.complete("What is the capital of France?").text

    with ThreadPoolExecutor(N) as ex:
        got = list(ex.map(one, range(N)))
    assert model._calls[0] == 1 and got == ["answer to What is the capital of France?"] * N
    assert cm.stats()["hits"] == N - 1


def test_async_tasks_make_one_call():
    cm, model = llm()

    async def main() -> list:
        return await asyncio.gather(*(cm.acomplete("Who wrote Hamlet?") for _ in range(N)))

    assert [r.text for r in asyncio.run(main())] == ["answer to Who wrote Hamlet?"] * N
    assert model._calls[0] == 1
