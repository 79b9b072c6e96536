"""Safe CPU threading for local generation and embedding: passive OpenMP waits, a sane thread count.

Torch's OpenMP workers spin between parallel regions by default. On a shared or busy CPU the
spinning steals the cores the work needs: SmolLM2 decoded 5-10x slower here, and a semantic
lookup took 0.4-0.6 s instead of 10 ms. ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep; it is read
once, when torch loads its OpenMP runtime, so the modules that import torch call
``passive_waits()`` at import time, before they can import it. Torch's default thread count is
every physical core of the host (affinity masks and container quotas ignored); more than 4
threads gains little for models this small and starves everything else, so ``configure_torch()``
caps it at ``min(physical cores, usable CPUs, 4)`` -- unless the user chose: ``OMP_NUM_THREADS`` /
``MKL_NUM_THREADS`` set, or ``torch.set_num_threads`` already called with a non-default value.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

__all__ = ["MAX_THREADS", "choose_threads", "configure_torch", "passive_waits", "physical_cores"]

log = logging.getLogger(__name__)

MAX_THREADS = 4
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_lock = threading.Lock()
_configured: int | None | bool = False  # False: not yet; else what configure_torch() returned


def passive_waits() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless the environment already says otherwise. Effective only
    if torch has not been imported yet (then a debug note says so)."""
    if "OMP_WAIT_POLICY" in os.environ:
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # inherited by child processes either way
    if "torch" in sys.modules:
        log.debug("torch was imported before cachemux: its OpenMP workers keep spin-waiting; set "
                  "OMP_WAIT_POLICY=PASSIVE in the environment (or before importing torch) for passive waits")


def physical_cores() -> int:
    """Physical cores of the host, as torch counts them (distinct package/core pairs)."""
    cores = set()
    for cpu in Path("/sys/devices/system/cpu").glob("cpu[0-9]*"):
        try:
            cores.add(((cpu / "topology/physical_package_id").read_text().strip(),
                       (cpu / "topology/core_id").read_text().strip()))
        except OSError:
            continue
    return len(cores) or os.cpu_count() or 1


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def choose_threads(env: dict[str, str] | os._Environ[str], current: int, physical: int, usable: int) -> int | None:
    """The thread count to set, or None to leave torch's alone (the user chose, or it is fine).

    ``current``: torch's count now; torch's own default equals ``physical`` (when no variable is set),
    so any other value was set explicitly."""
    if any(env.get(v, "").strip() for v in _THREAD_VARS):
        return None
    if current != physical:
        return None
    target = max(1, min(physical, usable, MAX_THREADS))
    return None if target == current else target


def configure_torch() -> int | None:
    """Apply ``choose_threads`` once per process (after torch is imported); the count set, or None."""
    global _configured
    if _configured is not False:
        return _configured  # type: ignore[return-value]
    with _lock:
        if _configured is False:
            import torch

            n = choose_threads(os.environ, torch.get_num_threads(), physical_cores(), _usable_cpus())
            if n is not None:
                torch.set_num_threads(n)
                log.debug("torch threads: %d (set OMP_NUM_THREADS or call torch.set_num_threads to choose)", n)
            _configured = n
    return _configured  # type: ignore[return-value]
