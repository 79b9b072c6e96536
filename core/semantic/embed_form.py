"""The form of a prompt that the semantic path embeds: the prompt without its final punctuation.

MiniLM moves a question's embedding for a trailing "?" as much as for a changed word ("who plays
the principal in santa clarita diet" / "Who plays the principal in Santa Clarita Diet?": cosine
0.925), and people type questions with and without it. So the vector is computed on the text with
its closing run of ``? . ! …`` (and the full-width ``？ ！ 。``) and surrounding whitespace removed;
``!`` or ``.`` right after a digit stays ("5!" is a factorial, "3." may end a number). Only the
vector changes: exact keys, the stored prompt and the matcher's lexical features use the text as
written. Vectors carry ``EMBED_FORM`` in their embedder id, so vectors of another form are never
compared with these.
"""

from __future__ import annotations

import re

__all__ = ["EMBED_FORM", "embed_form"]

EMBED_FORM = "final-punct-1"
_FINAL = re.compile(r"(?:[?\uff1f]|(?<!\d)[.!\u2026\u3002\uff01])+\s*$")


def embed_form(text: str) -> str:
    """``text`` stripped of surrounding whitespace and its final punctuation (itself if nothing
    would be left)."""
    t = text.strip()
    out = _FINAL.sub("", t).rstrip()
    return out if out else t
