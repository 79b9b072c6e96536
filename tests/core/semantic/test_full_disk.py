"""Issue 11, case 9b: a DiskStore on a full file system still serves its committed entries.

A hit's policy accounting is a write; on a full disk SQLite refuses it ("database or disk is
full") and before the fix the whole lookup became a miss (0 of 25 served here). Now the hit is
served uncounted; updates are dropped and counted; saving the semantic index fails with a logged
fault. Needs a real full file system: a 2 MB tmpfs, mounted when the tests run as root (else
skipped, with the reason)."""

from __future__ import annotations


import pytest
from small_fs import fill_up, mounted

from cachemux.cache import SemanticCache
from cachemux.semantic import Embedder
from cachemux.stores import DiskStore

LLM = "full-llm"


@pytest.fixture
def small_fs(tmp_path):
    yield from mounted(tmp_path, "2M")


def test_full_disk_serves_every_committed_entry(small_fs):
    cache = SemanticCache(DiskStore(small_fs / "store", capacity=100), semantic=False)
    answers = {f"question {i}": f"answer {i} " * 20 for i in range(25)}
    for q, a in answers.items():
        assert cache.update(q, LLM, a, cost=1.0)
    fill_up(small_fs)
    served = sum(cache.lookup(q, LLM) == a for q, a in answers.items())
    assert served == 25
    assert cache.stats()["errors"] == 0 and cache.store.stats()["uncounted"] == 25
    assert cache.update("one more", LLM, "x" * 10_000, cost=1.0) is False  # dropped, counted
    assert cache.stats()["dropped"] == 1
    (small_fs / "filler").unlink()  # space again: lookups are counted, updates admitted
    assert cache.lookup("question 0", LLM) == answers["question 0"]
    assert cache.store.stats()["uncounted"] == 25
    assert cache.update("one more", LLM, "x" * 100, cost=1.0)
    cache.store.check_invariants()
    cache.close()


def test_full_disk_semantic_hit_and_index_save_fault(small_fs):
    cache = SemanticCache(DiskStore(small_fs / "store", capacity=100), embedder=Embedder().load(), threshold=0.9)
    cache.update("What is the capital of France?", LLM, "Paris", cost=1.0)
    fill_up(small_fs)
    assert cache.lookup("What's the capital city of France?", LLM) == "Paris"  # semantic, served uncounted
    assert not cache.save_index()  # the snapshot cannot be written: a logged fault, no exception
    assert cache.stats()["errors"] == 1
    cache.close()
