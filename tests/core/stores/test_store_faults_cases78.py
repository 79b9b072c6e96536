"""Issue 11, cases 7 and 8, against real backends: a DiskStore directory deleted or replaced while
it is open; a store on a read-only filesystem (a tmpfs remounted read-only: the tests run as root,
where chmod does not stop writes); a marker file copied into another app's diskcache directory;
an ``llm_string`` forging a model group's key; value-size, TTL and per-namespace limits.
Each test prints its figures (-s)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import diskcache
import pytest

from cachemux.cache import SemanticCache
from cachemux.errors import ConfigError, StoreError
from cachemux.stores import DiskStore, Entry, MemoryStore

LLM = "fake-llm temperature=0"


def _exact(store, **kw) -> SemanticCache:
    return SemanticCache(store, semantic=False, **kw)


# ---- 8c: llm_string cannot forge a model group's key -----------------------------------------
@pytest.mark.parametrize("forged", ["\x00group:G", "\x00group:G\x00", "\x00llm:\x00group:G"])
def test_llm_string_cannot_read_a_model_groups_answers(forged: str) -> None:
    store = MemoryStore(100)
    grouped = _exact(store, model_groups={"G": ["gpt-a", "gpt-b"]})
    grouped.update("What is 2+2?", "gpt-a", "4 (group G's answer)", cost=1.0)
    assert grouped.lookup("What is 2+2?", "gpt-b") == "4 (group G's answer)"  # the group shares
    plain = _exact(store)  # the same namespace, no groups: an attacker-chosen llm_string
    assert plain.lookup("What is 2+2?", forged) is None
    assert grouped.lookup("What is 2+2?", forged) is None  # not a member either
    plain.update("What is 2+2?", forged, "forged", cost=1.0)
    assert grouped.lookup("What is 2+2?", "gpt-a") == "4 (group G's answer)"  # nor overwrite it
    assert plain.lookup("What is 2+2?", forged) == "forged"  # its own key works as any other


def test_model_id_is_injective() -> None:
    from cachemux.semantic.keys import exact_key, model_id, partition_id

    llms = ["", "gpt", "\x00", "\x00group:G", "\x00llm:", "\x00llm:\x00group:G", "\x00llm:gpt", "G"]
    ids = [model_id(s) for s in llms] + [model_id("anything", g) for g in ("G", "", "\x00llm:gpt")]
    assert len(set(ids)) == len(ids)
    assert model_id("gpt") == "gpt"  # ordinary keys unchanged: existing stores keep their entries
    assert len({exact_key("q", m) for m in ids}) == len(ids)
    assert len({partition_id("", m) for m in ids}) == len(ids)
