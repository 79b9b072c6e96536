"""Shared pytest set-up: offline models, passive OpenMP waits, Hypothesis without deadlines."""

from __future__ import annotations

import os
import sys

# The shared test helpers (a real redis-server fixture, naive reference policies, store workers)
# live in tests/support; test modules in every package folder import them by name.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))

# Before torch is imported anywhere: on a busy 2-core machine torch's spin-waiting OpenMP threads
# made generation ~5x slower; passive waits keep latency honest. Never reach a model hub.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_default_store(tmp_path_factory, monkeypatch):
    """The embedded default store is a DiskStore in a user folder: each test gets its own."""
    monkeypatch.setenv("CACHEMUX_STORE_DIR", str(tmp_path_factory.mktemp("default-store")))

settings.register_profile("cachemux", deadline=None)
settings.load_profile("cachemux")
