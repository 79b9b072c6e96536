"""Reviving cached generations: LangChain's ``loads`` behind a small memo of the values already read.

``loads(text, allowed_objects=[...])`` spends most of an exact hit (~0.5 ms of 0.6 ms) on
recomputing its allowlist from every LangChain mapping on each call, and the rest walking and
validating the JSON. Two things make a hit cheap without changing what it returns:

* the allowlist is tried small first (``Generation``, ``ChatGeneration``, ``AIMessage``: what
  LLMs and chat models return), then the full list of generation and message classes: a value
  the small list revives is the same object the full list would give (a subset of the same
  classes), one it refuses is read again with the full list;
* ``Revived`` keeps the revived generations of recently read or written values, keyed by the
  value string itself (compared whole, so a memo hit is exactly the stored text, from this or any
  other process) and hands out deep copies (LangChain sets ``message.id`` on the generations it
  returns; a caller may change them): a repeat costs a dict lookup and a ``model_copy``.

Bounded by entries and by the characters of the values it keeps; never pickle, never any class
outside ``ALLOWED``.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from typing import Any

from langchain_core.load import loads
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    ChatMessageChunk,
    FunctionMessage,
    FunctionMessageChunk,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    SystemMessageChunk,
    ToolMessage,
    ToolMessageChunk,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation, GenerationChunk

__all__ = ["ALLOWED", "COMMON", "Revived", "read_generations"]

# What ``loads`` may revive from a cached value: generations and messages, nothing else.
ALLOWED = [Generation, GenerationChunk, ChatGeneration, ChatGenerationChunk, AIMessage, AIMessageChunk,
           HumanMessage, HumanMessageChunk, SystemMessage, SystemMessageChunk, ChatMessage,
           ChatMessageChunk, FunctionMessage, FunctionMessageChunk, ToolMessage, ToolMessageChunk]
COMMON = [Generation, ChatGeneration, AIMessage]  # tried first: a third of ALLOWED's allowlist cost


def _loads(text: str, allowed: list[type]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # loads() is marked beta
        return loads(text, allowed_objects=allowed)


def read_generations(text: str) -> list[Generation]:
    """The list of generations ``text`` (written by ``dumps``) holds; raises if it holds anything else."""
    try:
        value = _loads(text, COMMON)
    except Exception:  # another class of ALLOWED (a chunk, a tool message...), or unreadable
        value = _loads(text, ALLOWED)
    if not isinstance(value, list) or not all(isinstance(g, Generation) for g in value):
        raise TypeError(f"expected a list of generations, got {type(value).__name__}")
    return value


class Revived:
    """A bounded memo value string -> revived generations (least recently used dropped first)."""

    def __init__(self, max_entries: int = 1024, max_chars: int = 4_000_000) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._items: OrderedDict[str, list[Generation]] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, text: str) -> list[Generation]:
        """Fresh generations for ``text``: from the memo (a deep copy) or read and remembered."""
        with self._lock:
            kept = self._items.get(text)
            if kept is not None:
                self._items.move_to_end(text)
        if kept is None:
            kept = read_generations(text)
            self._keep(text, kept)
        return [g.model_copy(deep=True) for g in kept]

    def remember(self, text: str, generations: list[Generation]) -> None:
        """Keep ``generations`` (revived from ``text`` by ``read_generations``, owned by no caller)."""
        self._keep(text, generations)

    def _keep(self, text: str, generations: list[Generation]) -> None:
        if len(text) > self.max_chars // 4:  # a few huge answers must not flush every other one
            return
        with self._lock:
            if text in self._items:
                self._items.move_to_end(text)
                return
            self._items[text] = generations
            self._chars += len(text)
            while len(self._items) > self.max_entries or self._chars > self.max_chars:
                old, _ = self._items.popitem(last=False)
                self._chars -= len(old)
