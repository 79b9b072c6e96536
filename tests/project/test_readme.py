"""Every Python code block of the README runs as written (each in a fresh interpreter)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S | re.M)


def _params():
    for i, code in enumerate(BLOCKS):
        first = code.strip().splitlines()[0][:60]
        marks = [pytest.mark.models] if re.search(r"Local(Chat)?(LLM|Model)\(", code) else []
        yield pytest.param(code, id=f"block{i}:{first}", marks=marks)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("code", list(_params()))
def test_readme_block_runs(code, tmp_path):
    env = {**os.environ, "CACHEMUX_STORE_DIR": str(tmp_path / "store"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, f"README block failed:\n{code}\n--- stderr ---\n{r.stderr[-3000:]}"
