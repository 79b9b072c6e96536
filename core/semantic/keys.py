"""Exact cache keys: a hash of the normalised prompt, the model configuration and the namespace."""

from __future__ import annotations

import hashlib
import unicodedata

from cachemux.errors import ConfigError

__all__ = ["GROUP_MARK", "check_text", "exact_key", "model_id", "normalize_prompt", "partition_id"]

_LINE_END_WS = " \t\f\v"  # what normalisation strips at line ends (not "\n": lines stay lines)

GROUP_MARK = "\x00group:"  # model_id of a model group: "\x00group:" + its name + NUL + its members' digest
_LLM_ESCAPE = "\x00llm:"    # prefixed to an llm_string that starts with NUL


def check_text(name: str, value: object) -> str:
    """Return ``value`` if it is a ``str``, else raise ConfigError naming the argument and type."""
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be str, got {type(value).__name__}: {value!r:.80}")
    return value


def normalize_prompt(prompt: str, *, casefold: bool = False) -> str:
    """The prompt as the exact key sees it.

    Only changes that cannot change what a model is asked: Unicode NFC (composed and decomposed
    accents are the same text), CRLF/CR line endings to LF, trailing spaces at line ends, and
    surrounding whitespace. Inner whitespace is kept (indentation in code prompts matters), and
    case is kept unless ``casefold=True``. Anything looser is the semantic path's job.
    """
    text = unicodedata.normalize("NFC", check_text("prompt", prompt))
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\n" in text:
        # line by line, not a regex: a lookahead for "\n" after a whitespace run backtracks over
        # every run with no newline after it, which made long runs of spaces quadratic
        text = "\n".join(line.rstrip(_LINE_END_WS) for line in text.split("\n"))
    text = text.strip()
    return text.casefold() if casefold else text


def model_id(llm_string: str, group: str | None = None) -> str:
    """The model part of exact keys and partitions: ``llm_string`` itself, or ``GROUP_MARK +
    group`` for a configuration in a model group. Injective, so no ``llm_string`` can name a
    group's answers: one starting with NUL (no real configuration does, but a caller can pass
    ``"\\x00group:G"``) is escaped as ``"\\x00llm:" + llm_string``. Ordinary llm_strings map to
    themselves, so keys written before this escape stay valid."""
    if group is not None:
        return GROUP_MARK + check_text("model group name", group)
    check_text("llm_string", llm_string)
    return _LLM_ESCAPE + llm_string if llm_string.startswith("\x00") else llm_string


def _digest(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=20)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        # length-prefixed, so ("ab", "c") and ("a", "bc") never collide
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def partition_id(namespace: str, model: str, scope: str = "") -> str:
    """The partition of a (namespace, model configuration or model group, scope): semantic
    matches never cross it, so tenants and model configurations are never served each other's
    answers. ``scope`` is context that must match exactly for a semantic match (a chat's system
    prompt and earlier turns: only the last question is compared by meaning)."""
    return "p" + _digest("partition", check_text("namespace", namespace), check_text("llm_string", model),
                         check_text("scope", scope))[:24]


def exact_key(prompt: str, model: str, namespace: str = "", *, casefold: bool = False,
              normalized: bool = False) -> str:
    """Store key of an exact match: hash of (namespace, model configuration, normalised prompt).

    ``model`` is the LLM configuration string (LangChain's ``llm_string``: model, temperature,
    stop...) or the name of a model group configured to share answers. Pass ``normalized=True``
    when ``prompt`` already went through ``normalize_prompt`` (with the same ``casefold``, which
    is keyed either way).
    """
    text = prompt if normalized else normalize_prompt(prompt, casefold=casefold)
    parts = ("exact", check_text("namespace", namespace), check_text("llm_string", model), text)
    # how the prompt was normalised is part of the key: a case-folding cache's entries answer a
    # spelling that a case-sensitive cache on the same store must not be served
    return "x" + _digest(*parts, "casefold") if casefold else "x" + _digest(*parts)
