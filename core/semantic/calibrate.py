"""Moved to ``cachemux.lab.calibrate_semantic`` (``cachemux calibrate-semantic``). Only
``_default_data`` stays here, for tests/shared_data.py, until it calls ``cachemux.paths.data_file``."""

from __future__ import annotations

from pathlib import Path

from cachemux.paths import data_file


def _default_data() -> Path:
    return data_file("semantic", "qqp_pairs.json.gz")
