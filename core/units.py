"""One estimate of tokens from text, used wherever a model reported no usage."""

from __future__ import annotations

import math

__all__ = ["CHARS_PER_TOKEN", "estimate_tokens"]

CHARS_PER_TOKEN = 4  # OpenAI's rule of thumb for English; RouteLLM's price tables use it too


def estimate_tokens(*texts: str) -> int:
    """Tokens of ``texts`` together, estimated as characters / 4 (at least 1)."""
    return max(1, math.ceil(sum(len(t) for t in texts) / CHARS_PER_TOKEN))
