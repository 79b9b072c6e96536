"""Where cachemux finds its data and keeps its files: one place for every folder.

* ``data_dir()``: the shared data (``routing/``, ``semantic/``): ``$CACHEMUX_DATA``, else the first
  ``shared/data`` beside the checkout or the working directory.
* ``cache_root()``: ``$CACHEMUX_CACHE`` or ``~/.cache/cachemux``; ``embeddings_dir()`` under it.
* ``model_cache_root()``: de-quantised local model copies (``$CACHEMUX_MODEL_CACHE``, ...).
* ``default_store_dir()``: the embedded default cache store (``$CACHEMUX_STORE_DIR``, ...).
* ``results_dir()``: where the commands write their reports by default (``results``).
"""

from __future__ import annotations

import os
from pathlib import Path

from cachemux.errors import ConfigError

__all__ = ["cache_root", "data_dir", "data_file", "default_store_dir", "embeddings_dir", "model_cache_root",
           "results_dir"]


def data_dir(*need: str) -> Path:
    """The shared data folder: ``$CACHEMUX_DATA`` if set, else the first ``shared/data`` folder
    above this package or the working directory that holds the sub-path ``need`` (e.g.
    ``"routing"``; nothing: any such folder)."""
    env = os.environ.get("CACHEMUX_DATA")
    if env:
        return Path(env).expanduser()
    cwd = Path.cwd()
    for parent in (*Path(__file__).resolve().parents, cwd, *cwd.parents):
        cand = parent / "shared" / "data"
        if cand.joinpath(*need).exists() if need else cand.is_dir():
            return cand
    what = f" holding {'/'.join(need)}" if need else ""
    raise ConfigError(f"cannot find the shared data folder{what}; set CACHEMUX_DATA=/path/to/shared/data")


def data_file(*parts: str) -> Path:
    """A file of the shared data, e.g. ``data_file("semantic", "qqp_pairs.json.gz")``."""
    return data_dir(*parts).joinpath(*parts)


def cache_root() -> Path:
    """``$CACHEMUX_CACHE`` or ``~/.cache/cachemux``: embeddings, measurements, ..."""
    env = os.environ.get("CACHEMUX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cachemux"


def embeddings_dir() -> Path:
    """Cached text embeddings (``.npy``, never pickle): ``cache_root()/embeddings``."""
    return cache_root() / "embeddings"


def model_cache_root() -> Path:
    """Where de-quantised fp32 copies (safetensors) live: ``$CACHEMUX_MODEL_CACHE``, else
    ``$XDG_CACHE_HOME/cachemux/models``, else ``~/.cache/cachemux/models``. Never inside git."""
    env = os.environ.get("CACHEMUX_MODEL_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "cachemux" / "models"


def default_store_dir() -> Path:
    """Where the embedded default store lives: ``$CACHEMUX_STORE_DIR`` or ``~/.cache/cachemux/store``."""
    env = os.environ.get("CACHEMUX_STORE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cachemux" / "store"


def results_dir() -> Path:
    """The commands' default output folder: ``results`` in the working directory."""
    return Path("results")
