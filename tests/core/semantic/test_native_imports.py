"""The vector index's native library and the default embedder's load in either order: importing
onnxruntime after usearch's native module crashed the process (SIGSEGV), so a cache whose ANN index
was built before its first embedding (a loaded snapshot, a second cache) took the app down."""

from __future__ import annotations

import subprocess
import sys


def test_the_index_then_the_embedder_loads_without_crashing():
    code = ("from cachemux.semantic.index import _usearch\n"
            "assert _usearch() is not None\n"
            "import onnxruntime\n"
            "print('loaded', onnxruntime.__version__)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "loaded" in run.stdout, (run.returncode, run.stderr[-2000:])
