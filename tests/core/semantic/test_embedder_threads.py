"""The embedder sets passive OpenMP waits before torch loads and caps torch's default thread
count when it loads the (real, packaged) model; an explicit choice is left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

_CODE = """
import json, os, sys
import cachemux.semantic.embedder as e
policy, early = os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules
from cachemux.models import threads
threads._usable_cpus = lambda: 1  # makes the cap visible on any machine
v = e.Embedder().embed_one('thread hygiene')
import torch
print(json.dumps({'policy': policy, 'torch_early': early, 'threads': torch.get_num_threads(), 'dim': len(v)}))
"""


def _run(**env_over: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(HF_HUB_OFFLINE="1", **env_over)
    out = subprocess.run([sys.executable, "-c", _CODE], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_embedder_sets_passive_waits_before_torch_and_caps_threads():
    r = _run()
    assert r == {"policy": "PASSIVE", "torch_early": False, "threads": 1, "dim": 384}


def test_embedder_leaves_an_explicit_choice_alone():
    r = _run(OMP_WAIT_POLICY="ACTIVE", MKL_NUM_THREADS="2")
    assert (r["policy"], r["threads"]) == ("ACTIVE", 2)
