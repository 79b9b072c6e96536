"""Whether an embedding keeps the whole text: the checks behind the cache's exact-only decisions.

Two different prompts may get one vector when the model cannot see what tells them apart:
MiniLM's word-piece vocabulary has no emoji and no pieces for words over 100 characters (all
become ``[UNK]``, so "Explain this emoji: 😀" and "... 💀" embed identically at cosine 1.0), and
text past the model's window is cut (a 146-character Korean prompt is 277 word pieces: Hangul
splits into jamo). Such prompts are served by exact match only. The checks use the embedder's own
tokenizer, never a characters-per-token guess.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["MAX_UNKNOWN_SHARE", "REASONS", "embedding_loss", "tokenizer_of"]

#: Share of unknown tokens among the content tokens above which a text is exact-only. 0: one
#: unknown token may be the very thing the question is about (an emoji, a code, a long word).
MAX_UNKNOWN_SHARE = 0.0

#: What ``embedding_loss`` may return.
REASONS = ("unencodable", "truncated", "unknown_tokens")

# beyond this many characters per window token a text cannot fit however it splits (no word
# piece is longer than the 100-character word the tokenizer still splits): skip tokenising it
_CHARS_PER_TOKEN_MAX = 32


def tokenizer_of(embedder: Any) -> Any:
    """The Hugging Face tokenizer behind ``embedder`` (a cachemux ``Embedder``, loaded if needed,
    or anything with a ``tokenizer`` attribute); None when it has none."""
    from cachemux.semantic.embedder import Embedder

    if isinstance(embedder, Embedder):
        return embedder.tokenizer
    return getattr(embedder, "tokenizer", None)


def embedding_loss(tokenizer: Any, text: str, max_tokens: int,
                   max_unknown_share: float = MAX_UNKNOWN_SHARE) -> str | None:
    """Why embedding ``text`` would lose information, or None if it is embedded whole.

    ``"unencodable"``: not valid Unicode (a lone surrogate; the tokenizer refuses it);
    ``"truncated"``: more tokens (special tokens included) than ``max_tokens`` (0: no limit);
    ``"unknown_tokens"``: more than ``max_unknown_share`` of its content tokens are the
    tokenizer's unknown token.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "unencodable"
    if max_tokens and len(text) > max_tokens * _CHARS_PER_TOKEN_MAX:
        return "truncated"
    try:
        ids = _token_ids(tokenizer, text)
    except Exception:  # a tokenizer that refuses the text cannot embed it either
        return "unencodable"
    if max_tokens and len(ids) > max_tokens:
        return "truncated"
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None:
        special = set(getattr(tokenizer, "all_special_ids", ()) or ()) - {unk}
        content = [i for i in ids if i not in special]
        unknown = sum(1 for i in content if i == unk)
        if content and unknown / len(content) > max_unknown_share:
            return "unknown_tokens"
    return None


# tokenizer id -> (tokenizer, its private untruncated backend or None). A fast tokenizer's
# __call__ resets the shared backend's truncation on each call, so counting with truncation off
# beside the embedder's truncating calls races ("Already borrowed") or counts a cut text; a
# private copy with truncation and padding off is never reconfigured, so it is thread-safe.
_BACKENDS: dict[int, tuple[Any, Any]] = {}
_BACKENDS_LOCK = threading.Lock()
_SLOW_LOCK = threading.Lock()


def _token_ids(tokenizer: Any, text: str) -> list[int]:
    with _BACKENDS_LOCK:
        got = _BACKENDS.get(id(tokenizer))
        if got is None or got[0] is not tokenizer:
            backend = getattr(tokenizer, "backend_tokenizer", None)
            if backend is not None:
                from tokenizers import Tokenizer

                backend = Tokenizer.from_str(backend.to_str())
                backend.no_truncation()
                backend.no_padding()
            got = _BACKENDS[id(tokenizer)] = (tokenizer, backend)
    backend = got[1]
    if backend is not None:
        return backend.encode(text, add_special_tokens=True).ids
    with _SLOW_LOCK:  # a pure-Python tokenizer: one call at a time
        return tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
