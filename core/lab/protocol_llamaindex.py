"""The protocol's replay through the LlamaIndex adapter (``llamaindex_cachemux.CacheMuxLLM`` on
``JointEngine``): the issue's "once through CacheMuxLLM", to set beside the router's and the
engine's tallies of the same trace.

``RecordedLLM`` answers a chat with what a real model answered its last message when measured
(``additional_kwargs``: ``latency``, ``cpu``, ``flops``). The cost of a call is the record's
latency or FLOPs: LlamaIndex's cost function sees the model and the answer text (a letter, not
unique), so ``serve_llamaindex`` prices a call by the query being served, which it sets before
each call (the replay serves one request at a time).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import (ChatMessage, ChatResponse, CompletionResponse, LLMMetadata,
                                              MessageRole)
from llama_index.core.llms.custom import CustomLLM
from pydantic import PrivateAttr

from cachemux.errors import UnknownNameError
from cachemux.multiplexer.selectors import Selector
from cachemux.sim.runner import ONLINE_POLICIES

from cachemux.lab.live import CACHES, Tally
from cachemux.lab.mmlu_task import is_correct
from cachemux.lab.protocol import Protocol

__all__ = ["RecordedLLM", "serve_llamaindex"]


class RecordedLLM(CustomLLM):
    """A LlamaIndex LLM answering each chat's last message (or a completion prompt) with its
    record ``{"answer", "latency", "cpu", "flops"}``; a prompt with no record is a ``KeyError``."""

    model_name: str
    _records: dict[str, Mapping[str, Any]] = PrivateAttr(default_factory=dict)

    def __init__(self, model_name: str, records: Mapping[str, Mapping[str, Any]], **kw: Any) -> None:
        super().__init__(model_name=model_name, **kw)
        self._records = dict(records)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model_name, is_chat_model=True, num_output=1)

    def _answer(self, text: str) -> tuple[str, dict[str, Any]]:
        try:
            rec = self._records[text]
        except KeyError:
            raise KeyError(f"{self.model_name}: no recorded answer for the prompt {text[:60]!r}") from None
        return rec["answer"], {"latency": float(rec["latency"]), "cpu": float(rec.get("cpu", 0.0)),
                               "flops": float(rec["flops"])}

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text, meta = self._answer(prompt)
        return CompletionResponse(text=text, additional_kwargs=meta)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        yield self.complete(prompt, formatted, **kwargs)

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text, meta = self._answer(messages[-1].content or "")
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), additional_kwargs=meta)


def serve_llamaindex(p: Protocol, trace: Sequence[int], cache: str, selector: Selector, capacity: int,
                     unit: str) -> Tally:
    """Replay ``trace`` through a fresh ``CacheMuxLLM`` over ``RecordedLLM``s with an exact-match
    ``SemanticCache`` of ``capacity`` entries under ``cache``; the same tally as ``Protocol.serve``."""
    from cachemux import SemanticCache
    from cachemux.stores.memory import MemoryStore
    from llamaindex_cachemux import CacheMuxLLM

    if cache not in CACHES:
        raise UnknownNameError("cache", cache, CACHES)
    models = {r: RecordedLLM(f"recorded:{r}", {t: rec for t, rec in zip(p.texts, p.records[r])}) for r in p.roles}
    current = [0]
    name, options = ONLINE_POLICIES[cache]
    llm = CacheMuxLLM(models, selector, costs=lambda model, answer, seconds: p.unit_cost(unit, model, current[0]),
                      cache=SemanticCache(store=MemoryStore(capacity=capacity, policy=name, **options), semantic=False),
                      judge=p.judge)
    head = [ChatMessage(role=MessageRole.SYSTEM, content=p.system)] if p.system else []
    tally = Tally(calls=dict.fromkeys(p.roles, 0), answered=dict.fromkeys(p.roles, 0))
    t0 = time.perf_counter()
    for i in trace:
        current[0] = i
        out = llm.chat([*head, ChatMessage(role=MessageRole.USER, content=p.texts[i])])
        rec = out.additional_kwargs["cachemux"]
        tally.requests += 1
        if rec["cache_hit"]:
            tally.hits += 1
        else:
            for role in rec["models_run"]:
                tally.calls[role] += 1
                tally.charge(p.records[role][i])
            tally.answered[rec["model"]] += 1
        tally.correct += is_correct(p.gold[i], out.message.content or "")
    tally.wall = time.perf_counter() - t0
    tally.cost = llm.engine.total_cost
    return tally
