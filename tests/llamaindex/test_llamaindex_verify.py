"""CacheMuxLLM gets the engine's verification by running the model with no code of its own: an
error-bounded cache's hit drawn for a check is answered fresh, compared and reported (real MiniLM,
a fake LlamaIndex LLM)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import PrivateAttr

from cachemux import MemoryStore, SemanticCache, StaticSelector
from cachemux.semantic import Embedder
from llamaindex_cachemux import CacheMuxLLM
from warm_bound import warm

Q = "How do I reverse a string in Python?"
PARA = "How can I reverse a string in Python?"


class Scripted(CustomLLM):
    """Answers from a list, in order (streamed in two pieces)."""

    _answers: list[str] = PrivateAttr(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=4096, num_output=32, model_name="scripted")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._answers.pop(0))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = self._answers.pop(0)

        def gen():
            head, tail = text[:4], text[4:]
            yield CompletionResponse(text=head, delta=head)
            yield CompletionResponse(text=text, delta=tail)

        return gen()


@pytest.fixture(scope="module")
def embedder():
    return Embedder().load()


def make(embedder, answers):
    cache = SemanticCache(MemoryStore(), embedder=embedder, max_error=0.2, verify_rate=1.0)
    warm(cache)
    model = Scripted()
    model._answers.extend(answers)
    return CacheMuxLLM({"big": model}, StaticSelector("big"), costs={"big": 1.0}, cache=cache)


def test_complete_and_acomplete_verify_a_drawn_hit(embedder):
    llm = make(embedder, ["Use s[::-1].", "use s[::-1]."])
    llm.complete(Q)
    r = asyncio.run(llm.acomplete(PARA))
    rec = r.additional_kwargs["cachemux"]
    assert r.text == "use s[::-1]." and rec["cache_hit"] is False and rec["verified"] is True
    assert llm.stats()["verify_runs"] == 1 and llm.stats()["checks"]["agreed"] == 1


def test_stream_complete_verifies_and_reports_a_disagreement(embedder):
    llm = make(embedder, ["Use s[::-1].", "Use ''.join(reversed(s))."])
    llm.complete(Q)
    last = list(llm.stream_complete(PARA))[-1]
    assert last.text == "Use ''.join(reversed(s))."
    rec = last.additional_kwargs["cachemux"]
    assert rec["cache_hit"] is False and rec["verified"] is False
    assert llm.stats()["checks"]["disagreed"] == 1 and llm.stats()["cache"]["feedback"] == 1
