"""Prompts whose embedding loses information are matched exactly only (issue 11, case 1), with
the real packaged MiniLM: emoji and over-long words become [UNK], Korean splits into jamo and is
cut at the 256-piece window, lone surrogates cannot be tokenised."""

from __future__ import annotations

import numpy as np
import pytest

from cachemux.cache import SemanticCache
from cachemux.semantic import Embedder
from cachemux.semantic.fidelity import embedding_loss, tokenizer_of
from cachemux.stores import MemoryStore

LLM = "fake-llm temperature=0"


@pytest.fixture(scope="module")
def embedder():
    return Embedder().load()


def _cache(embedder) -> SemanticCache:
    # a threshold any identical vector passes: the tests show the collision would be served
    return SemanticCache(MemoryStore(1000), embedder=embedder, threshold=0.5)


def _collide(embedder, a: str, b: str) -> float:
    va, vb = embedder.embed([a, b])
    return float(np.dot(va, vb))


def test_emoji_prompts_never_share_an_answer(embedder):
    a, b = "Explain this emoji: 😀", "Explain this emoji: 💀"
    assert _collide(embedder, a, b) > 0.999  # the model sees the same text: [UNK]
    cache = _cache(embedder)
    assert cache.lookup(a, LLM) is None
    assert cache.update(a, LLM, "a grinning face")
    assert cache.lookup(a, LLM) == "a grinning face"  # exact still works
    assert cache.lookup(b, LLM) is None
    # nor does a prompt without the emoji reach the emoji's entry (it was never indexed)
    assert cache.lookup("Explain this emoji:", LLM) is None
    s = cache.stats()
    assert s["exact_only_unknown_tokens"] == 2 and s["exact_only"] == 2 and s["semantic_hits"] == 0
    assert s["indexed"] == 0


def test_long_unbroken_tokens_never_share_an_answer(embedder):
    a = "What does this identifier mean: " + "a" * 120
    b = "What does this identifier mean: " + "b" * 120
    assert _collide(embedder, a, b) > 0.999
    cache = _cache(embedder)
    cache.update(a, LLM, "answer a", cost=1.0)
    assert cache.lookup(b, LLM) is None
    assert cache.lookup(a, LLM) == "answer a"
    assert cache.stats()["exact_only_unknown_tokens"] == 1  # lookups only; the exact hit needs no check


def test_korean_prompts_cut_by_the_tokenizer_not_by_characters(embedder):
    head = "다음 문장을 영어로 번역하고 문법을 설명해 주세요. " * 5
    a, b = head + "첫 번째 질문입니다", head + "두 번째 요청이에요"
    assert len(a) < 254 and len(b) < 254  # few characters: the old check let them through
    tok = tokenizer_of(embedder)
    assert len(tok(a)["input_ids"]) > embedder.max_tokens  # but more word pieces than the window
    assert _collide(embedder, a, b) > 0.999  # the model never sees the tails
    cache = _cache(embedder)
    cache.update(a, LLM, "answer a", cost=1.0)
    assert cache.lookup(b, LLM) is None
    assert cache.lookup(a, LLM) == "answer a"
    assert cache.stats()["exact_only_truncated"] == 1


def test_lone_surrogate_is_exact_only_not_a_crash(embedder):
    a = "Tell me about \ud800 this " + "word " * 60  # > 254 characters
    cache = _cache(embedder)
    assert cache.lookup(a, LLM) is None
    assert cache.update(a, LLM, "ok", cost=1.0)
    assert cache.lookup(a, LLM) == "ok"
    s = cache.stats()
    assert s["exact_only_unencodable"] == 1 and s["errors"] == 0


def test_ordinary_prompts_still_match_by_meaning(embedder):
    cache = _cache(embedder)
    cache.update("What is the capital of France?", LLM, "Paris", cost=1.0)
    assert cache.match("what's the capital city of France", LLM).kind == "semantic"
    assert cache.stats()["exact_only"] == 0


def test_embedding_loss_reasons(embedder):
    tok = tokenizer_of(embedder)
    assert embedding_loss(tok, "plain words", 256) is None
    assert embedding_loss(tok, "plain 😀", 256) == "unknown_tokens"
    assert embedding_loss(tok, "plain 😀", 256, max_unknown_share=0.5) is None
    assert embedding_loss(tok, "word " * 300, 256) == "truncated"
    assert embedding_loss(tok, "word " * 300, 0) is None  # no window: nothing is cut
    assert embedding_loss(tok, "x\udfff", 256) == "unencodable"
    assert embedding_loss(tok, "z" * 10_000_000, 256) == "truncated"  # without tokenising 10 MB
