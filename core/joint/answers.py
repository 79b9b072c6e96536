"""What the engine reads in an answer: its text for comparison, whether it is empty, and the
default comparison of a cached answer with a fresh one."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["Compare", "Judge", "answer_text", "empty_answer", "same_text"]

Judge = Callable[[Hashable, str, str], "bool | None"]
Compare = Callable[[str, str], "bool | None"]


def answer_text(answer: Any, fallback: str | None = None) -> str:
    """An answer as text for ``compare``: a str, else its ``text`` or ``content`` when that is a
    str (a LangChain message, a LlamaIndex response) plus its ``tool_calls`` (names and
    arguments), else ``fallback`` (the generation's ``text``) or ``str(answer)``."""
    if isinstance(answer, str):
        return answer
    for name in ("text", "content"):
        t = getattr(answer, name, None)
        if isinstance(t, str):
            calls = getattr(answer, "tool_calls", None)
            if calls and isinstance(calls, list):
                t += "\n" + json.dumps([{k: c.get(k) for k in ("name", "args")} if isinstance(c, dict) else str(c)
                                         for c in calls], sort_keys=True, default=str)
            return t
    return fallback if fallback is not None else str(answer)


def empty_answer(answer: Any, text: str | None = None) -> bool:
    """Whether an answer says nothing: None, or a text (``text`` if given, else a str answer or
    its ``text``/``content``) that is blank, with no tool calls beside it. Answers with no text
    form (a record, a number) are not judged empty."""
    if answer is None:
        return True
    if getattr(answer, "tool_calls", None) or getattr(answer, "invalid_tool_calls", None):
        return False
    content = getattr(answer, "content", None)
    if isinstance(content, list) and content:  # content blocks (images, audio...): not judged by text
        return False
    if text is None:
        if isinstance(answer, str):
            text = answer
        else:
            for name in ("text", "content"):
                t = getattr(answer, name, None)
                if isinstance(t, str):
                    text = t
                    break
            else:
                return False
    return not text.strip()


def same_text(cached: str, fresh: str) -> bool:
    """The default ``compare``: equal after Unicode NFC, case folding and collapsing whitespace."""

    def norm(t: str) -> str:
        return " ".join(unicodedata.normalize("NFC", t).casefold().split())

    return norm(cached) == norm(fresh)
