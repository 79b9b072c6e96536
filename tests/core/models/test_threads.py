"""cachemux.models.threads: passive OpenMP waits and a capped thread count, never over a user's choice.

The process-level checks run in fresh interpreters: the wait policy is read once, when torch loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cachemux.models.threads import MAX_THREADS, choose_threads, physical_cores


def test_choose_threads_caps_torchs_default_and_leaves_every_explicit_choice():
    assert choose_threads({}, current=16, physical=16, usable=16) == MAX_THREADS
    assert choose_threads({}, current=16, physical=16, usable=3) == 3  # an affinity mask / cpuset
    assert choose_threads({}, current=2, physical=2, usable=2) is None  # already sane: nothing to do
    assert choose_threads({"OMP_NUM_THREADS": "12"}, current=12, physical=16, usable=16) is None
    assert choose_threads({"MKL_NUM_THREADS": "16"}, current=16, physical=16, usable=16) is None
    assert choose_threads({}, current=6, physical=16, usable=16) is None  # torch.set_num_threads(6) by the user
    assert choose_threads({"OMP_NUM_THREADS": " "}, current=16, physical=16, usable=16) == MAX_THREADS


def test_physical_cores_is_what_torch_defaults_to():
    # choose_threads reads "current == physical" as "nobody chose": that needs torch's own count
    code = "import torch; print(torch.get_num_threads())"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout) == physical_cores()


def _fresh(code: str, **env_over: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(env_over)
    prelude = ("import json, logging, os, sys\n"
               "logging.basicConfig(level=logging.DEBUG, format='%(name)s %(message)s')\n")
    out = subprocess.run([sys.executable, "-c", prelude + code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "log": out.stderr}


# cachemux's modules that import torch set the policy before torch loads; a usable-CPU count of 1
# (patched) makes the cap visible on any machine
_LOAD = ("import cachemux.models.local\n"
         "policy = os.environ.get('OMP_WAIT_POLICY'); early = 'torch' in sys.modules\n"
         "from cachemux.models import threads\n"
         "threads._usable_cpus = lambda: 1\n")
_REPORT = ("import torch\n"
           "print(json.dumps({'policy': policy, 'torch_early': early, 'set': threads.configure_torch(),"
           " 'threads': torch.get_num_threads()}))\n")


def test_the_library_sets_passive_waits_before_torch_and_caps_the_default_count():
    r = _fresh(_LOAD + _REPORT)
    assert r["policy"] == "PASSIVE" and not r["torch_early"]
    assert (r["set"], r["threads"]) == (1, 1)


def test_an_explicit_wait_policy_and_thread_variable_are_left_alone():
    r = _fresh(_LOAD + _REPORT, OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="2")
    assert r["policy"] == "ACTIVE"
    assert (r["set"], r["threads"]) == (None, 2)


def test_a_user_set_num_threads_is_left_alone():
    r = _fresh("import torch; torch.set_num_threads(3)\n" + _LOAD + _REPORT)
    assert (r["set"], r["threads"]) == (None, 3)
    # torch came first: the policy is set for child processes, and a debug note says it is too late here
    assert r["torch_early"] and "OpenMP workers keep spin-waiting" in r["log"]


@pytest.mark.models
def test_loading_a_local_model_applies_the_setting():
    code = (_LOAD + "from cachemux.models import LocalModel\n"
            "LocalModel('smollm2-135m').load()\n" + _REPORT)
    r = _fresh(code)
    assert r["policy"] == "PASSIVE" and r["threads"] == 1 and r["set"] == 1
