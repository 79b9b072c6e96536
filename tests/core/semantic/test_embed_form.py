"""The text the semantic path embeds: the prompt with one final "?" for its final punctuation (real MiniLM)."""

from __future__ import annotations

import dataclasses

import pytest

from cachemux.cache import SemanticCache
from cachemux.semantic import Embedder
from cachemux.semantic.embed_form import EMBED_FORM, embed_form
from cachemux.stores import MemoryStore

LLM = "llm"


@pytest.mark.parametrize("text, form", [
    ("What is the capital of France?", "What is the capital of France?"),   # QQP's usual form: kept
    ("  who plays the principal in santa clarita diet  ", "who plays the principal in santa clarita diet?"),
    ("Hi!!!", "Hi?"), ("Really?!", "Really?"), ("Node.js.", "Node.js?"), ("Why\u3002", "Why?"), ("Wait...", "Wait?"),
    ("Compute 5!", "Compute 5!?"),        # a factorial stays
    ("Is it 3.", "Is it 3.?"),            # a digit's dot stays
    ("C++", "C++?"), ("What is 2+2 ?", "What is 2+2?"),
    ("???", "???"), ("", ""),             # nothing but punctuation, or nothing: the text itself
    ("Is it? Really", "Is it? Really?"),  # only the end
])
def test_final_punctuation_only(text, form):
    assert embed_form(text) == form


@pytest.fixture(scope="module")
def embedder():
    return Embedder().load()


def test_a_question_with_and_without_its_question_mark_is_one_vector(embedder):
    cache = SemanticCache(MemoryStore(), embedder=embedder, threshold=0.999)
    cache.update("who plays the principal in santa clarita diet", LLM, "answer", cost=1.0)
    m = cache.match("who plays the principal in santa clarita diet?", LLM)  # raw cosine 0.925
    assert m is not None and m.kind == "semantic" and m.similarity > 0.999
    assert cache.lookup("who plays the teacher in santa clarita diet?", LLM) is None
    # exact keys keep the punctuation: the two prompts are two entries once both are written
    cache.update("who plays the principal in santa clarita diet?", LLM, "answer 2", cost=1.0)
    assert len(cache.store) == 2


def test_vectors_of_another_form_are_never_compared(embedder):
    """An entry written by a version that embedded the raw text carries the bare model id: it
    stays an exact hit and is not a semantic candidate."""
    store = MemoryStore()
    cache = SemanticCache(store, embedder=embedder, threshold=0.9)
    cache.update("What is the capital of France?", LLM, "Paris", cost=1.0)
    (key,) = list(store.keys())
    entry = store.peek(key)
    assert entry.meta["emb"] == f"{embedder.model_name}|{EMBED_FORM}"
    store.put(key, dataclasses.replace(entry, meta={**entry.meta, "emb": embedder.model_name}))
    old = SemanticCache(store, embedder=embedder, threshold=0.9)
    assert old.lookup("What is the capital of France?", LLM) == "Paris"      # exact
    assert old.lookup("What is the capital of France", LLM) is None          # not compared by meaning
