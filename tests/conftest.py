"""Shared pytest set-up: offline models, passive OpenMP waits, Hypothesis without deadlines."""

from __future__ import annotations

import os

# Before torch is imported anywhere: on a busy 2-core machine torch's spin-waiting OpenMP threads
# made generation ~5x slower; passive waits keep latency honest. Never reach a model hub.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from hypothesis import settings  # noqa: E402

settings.register_profile("cachemux", deadline=None)
settings.load_profile("cachemux")
