"""The form of a prompt that the semantic path embeds: its final punctuation made one "?".

MiniLM moves a question's embedding for a trailing "?" as much as for a changed word ("who plays
the principal in santa clarita diet" / "Who plays the principal in Santa Clarita Diet?": cosine
0.925), and people type questions with and without it, or with "." or "!". So the vector is
computed on the text with its closing run of ``? . ! …`` (and the full-width ``？ ！ 。``) and
surrounding whitespace replaced by a single "?" (added when there is none); ``!`` or ``.`` right
after a digit stays ("5!" is a factorial, "3." may end a number) and the "?" follows it. "?" and
not nothing: on QQP dev pairs (out of fold) stripping the mark cost recall at precision 0.90
(0.183 against 0.214 with one "?"), while most of QQP's questions already end in one "?", which this form keeps.
Only the vector changes: exact keys, the stored prompt and the matcher's lexical features use the
text as written. Vectors carry ``EMBED_FORM`` in their embedder id, so vectors of another form are
never compared with these.
"""

from __future__ import annotations

__all__ = ["EMBED_FORM", "embed_form"]

EMBED_FORM = "final-qmark-1"
_MARKS = "?\uff1f"                     # always part of the closing run
_STOPS = ".!\u2026\u3002\uff01"           # part of it unless right after a digit ("5!", "3.")


def embed_form(text: str) -> str:
    """``text`` without surrounding whitespace, its final punctuation replaced by one "?" (the
    text itself if only punctuation would be left, or if it is empty)."""
    t = text.strip()
    # one backward scan for the closing run (a regex anchored at "$" retries from every start of a
    # run of marks that the text continues after, which is quadratic in the run's length)
    i = len(t)
    while i > 0 and (t[i - 1] in _MARKS or (t[i - 1] in _STOPS and not (i > 1 and t[i - 2].isdecimal()))):
        i -= 1
    out = t[:i].rstrip()
    return out + "?" if out else t
