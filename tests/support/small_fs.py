"""A real, small filesystem to fill up: a tmpfs mounted for one test (root only; the test is
skipped where mounting is not possible), and ``fill_up`` to leave it with no byte free."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def mounted(tmp_path: Path, size: str) -> Iterator[Path]:
    """Yield a fresh tmpfs of ``size`` (e.g. "4M") mounted under ``tmp_path``; unmount after."""
    mnt = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill_up(folder: Path) -> None:
    """Write ``folder/filler`` until the filesystem has no byte left (unbuffered: nothing is left
    to fail at close)."""
    with open(folder / "filler", "wb", buffering=0) as f:
        for chunk in (65536, 4096, 1):  # down to the last byte
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass
    assert os.statvfs(folder).f_bavail == 0
