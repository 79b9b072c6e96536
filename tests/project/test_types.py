"""mypy passes over the three packages as configured in pyproject.toml ([tool.mypy]: strict on the
multiplexer and the joint engine (port types included), the rest checked without strictness, the modules listed
there excluded). It checks this checkout, not whatever copy of cachemux is installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is in the dev extra")

ROOT = Path(__file__).resolve().parents[2]
# import name -> folder: cachemux lives in core/ (pyproject's package-dir)
LAYOUT = {"cachemux": ROOT / "core", "langchain_cachemux": ROOT / "langchain_cachemux",
          "llamaindex_cachemux": ROOT / "llamaindex_cachemux"}


def test_mypy_passes(tmp_path):
    for name, folder in LAYOUT.items():
        (tmp_path / name).symlink_to(folder, target_is_directory=True)
    packages = [arg for name in LAYOUT for arg in ("-p", name)]
    # no cache: every run is a cold one (about 10 s of CPU), so no stale result can pass
    r = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                        "--cache-dir", os.devnull, "--no-error-summary", *packages],
                       cwd=tmp_path, env={**os.environ, "MYPYPATH": str(tmp_path)}, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"mypy found errors:\n{r.stdout[-6000:]}{r.stderr[-2000:]}"
