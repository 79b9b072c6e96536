"""Shared pytest set-up: Hypothesis without wall-clock deadlines (CI machines are slow and shared)."""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("cachemux", deadline=None)
settings.load_profile("cachemux")
