"""Deciding a semantic hit: is the cached prompt the same question as the new one?

A cosine threshold alone cannot see what changes a question's meaning without moving its
embedding much: "Convert 10 miles to kilometers" / "Convert 10 kilometers to miles" (cos 0.992),
"Is Messi better than Ronaldo?" / "Is Ronaldo better than Messi?", a number, a name, a "not".
A ``Matcher`` scores a candidate pair (new prompt, cached prompt, cosine) and serves iff the
score reaches its operating point:

* ``CosineMatcher(t)``: plain ``cosine >= t`` (what ``SemanticCache(threshold=t)`` means);
* ``GuardMatcher(t)``: cosine >= t and no lexical guard fires (numbers, negation or proper nouns
  differ, an antonym replaces a word, or shared words swap order);
* ``VerifierMatcher``: the guard's veto, then a calibrated P(same question | cosine, lexical
  features) from boosted depth-2 trees fitted on QQP dev pairs (``cachemux.lab.fit_matcher``), shipped
  as JSON in ``cachemux/semantic/data/matcher_v3.json`` (never pickle). Its features
  (``cachemux.semantic.lexical``) are computed in plain Python and the model is a sum of tree
  leaves, so it re-evaluates exactly anywhere.

A fitted matcher is valid only with the embedding model it was fitted on (its ``embedders``):
``SemanticCache`` uses the shipped verifier with the packaged all-MiniLM-L6-v2 and falls back to
``CosineMatcher(DEFAULT_THRESHOLD)`` with any other embedder unless given ``matcher=``.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cachemux.errors import ConfigError
# a pair's features and the rule guard, also importable from here
from cachemux.semantic.lexical import FEATURES, _guard, features, guard_fires

__all__ = ["FEATURES", "CosineMatcher", "GuardMatcher", "Matcher", "VerifierMatcher", "default_matcher",
           "features", "guard_fires", "load_matcher"]

SHIPPED = "matcher_v3.json"
_SAME = FEATURES.index("same_norm")


# ---- matchers -----------------------------------------------------------------------------------
@runtime_checkable
class Matcher(Protocol):
    """Decides whether a cached prompt's answer may be served for a new prompt."""

    min_cosine: float       # candidates below this cosine are never scored

    def score(self, query: str, cached: str, cos: float) -> float: ...

    def accepts(self, query: str, cached: str, cos: float) -> bool: ...


class CosineMatcher:
    """Serve iff cosine >= ``threshold`` (the score is the cosine)."""

    def __init__(self, threshold: float) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold <= 1.0:
            raise ConfigError(f"threshold must be a cosine similarity in (0, 1], got {threshold!r}")
        self.threshold = self.min_cosine = float(threshold)

    def score(self, query: str, cached: str, cos: float) -> float:
        return float(cos)

    def accepts(self, query: str, cached: str, cos: float) -> bool:
        return cos >= self.threshold

    def __repr__(self) -> str:
        return f"CosineMatcher({self.threshold:g})"


class GuardMatcher(CosineMatcher):
    """Serve iff cosine >= ``threshold`` and ``guard_fires`` is False."""

    def accepts(self, query: str, cached: str, cos: float) -> bool:
        return cos >= self.threshold and not guard_fires(query, cached)

    def __repr__(self) -> str:
        return f"GuardMatcher({self.threshold:g})"


class VerifierMatcher:
    """Boosted trees over named ``FEATURES``: P(same) = sigmoid(base + the sum of one leaf per tree);
    serve iff cosine >= ``min_cosine`` and P >= ``threshold`` (default: the model's "default" point).

    A model holds ``"trees"``: complete binary trees of one ``"depth"``, each ``{"feature": [...],
    "cut": [...], "leaf": [...]}`` over its internal nodes in breadth-first order (node k's children
    are 2k+1 and 2k+2; a row goes right iff its feature > the cut; a null cut sends every row left),
    or ``"stumps"`` ``[[feature, cut, left, right]]`` (depth 1, matcher_v2). With ``"veto_guard":
    true`` (the shipped model), a pair the rule guard rejects scores 0 and the trees were fitted on
    the pairs it lets through; with ``"same_words_match": true``, a pair whose words are the same in
    the same order (only case and punctuation differ) scores 1."""

    def __init__(self, model: dict[str, Any], threshold: float | str = "default") -> None:
        try:
            unknown = [f for f in model["features"] if f not in FEATURES]
            if unknown:
                raise ConfigError(f"matcher model features {unknown} are unknown to this version (it has {FEATURES})")
            self.base = float(model["base"])
            if "trees" in model:
                trees = model["trees"]
                depth = int(model["depth"])
                if depth < 1 or not trees:
                    raise ValueError("a tree model needs depth >= 1 and at least one tree")
                inner, leaves = 2 ** depth - 1, 2 ** depth
                feat = [[FEATURES.index(f) for f in t["feature"]] for t in trees]
                cut = [[math.inf if c is None else float(c) for c in t["cut"]] for t in trees]
                leaf = [[float(v) for v in t["leaf"]] for t in trees]
                if any(len(f) != inner or len(c) != inner or len(v) != leaves for f, c, v in zip(feat, cut, leaf)):
                    raise ValueError(f"every depth-{depth} tree needs {inner} features and cuts and {leaves} leaves")
            else:
                st = model["stumps"]
                depth = 1
                feat = [[FEATURES.index(t[0])] for t in st]
                cut = [[float(t[1])] for t in st]
                leaf = [[float(t[2]), float(t[3])] for t in st]
                if not st:
                    raise ValueError("no stumps")
            self.depth = depth
            self._feat = np.asarray(feat, dtype=np.int64)
            self._cut = np.asarray(cut, dtype=np.float64)
            self._leaf = np.asarray(leaf, dtype=np.float64)
            self.min_cosine = float(model["min_cosine"])
            self.points = {str(k): float(v) for k, v in model["points"].items()}
            self.embedders = tuple(model.get("embedders", ()))
            self.name = str(model.get("name", "verifier"))
            self.veto = bool(model.get("veto_guard", False))
            self.same_words = bool(model.get("same_words_match", False))
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(f"not a cachemux matcher model: {type(exc).__name__}: {exc}") from None
        if isinstance(threshold, str):
            if threshold not in self.points:
                raise ConfigError(f"matcher point {threshold!r} unknown; the model has {sorted(self.points)}")
            threshold = self.points[threshold]
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
            raise ConfigError(f"matcher threshold must be a probability in (0, 1), got {threshold!r}")
        self.threshold = float(threshold)
        self.model = model

    def logit_many(self, x: np.ndarray) -> np.ndarray:
        """Log-odds for rows of all ``FEATURES`` (n, len(FEATURES))."""
        x = np.asarray(x, dtype=np.float64)
        n, t = len(x), len(self._feat)
        trees = np.arange(t)
        node = np.zeros((n, t), dtype=np.int64)
        rows = np.arange(n)[:, None]
        for _ in range(self.depth):
            f = self._feat[trees, node]                              # (n, t) feature of each row's node
            node = 2 * node + 1 + (x[rows, f] > self._cut[trees, node])
        return self.base + self._leaf[trees, node - (2 ** self.depth - 1)].sum(axis=1)

    def score(self, query: str, cached: str, cos: float) -> float:
        if cos < self.min_cosine:
            return 0.0
        x = features(query, cached, cos)
        if self.veto and _guard(x):
            return 0.0
        if self.same_words and x[_SAME]:  # the same words in the same order: case and punctuation only
            return 1.0
        z = float(self.logit_many(np.asarray([x]))[0])
        return 1.0 / (1.0 + math.exp(-z))

    def accepts(self, query: str, cached: str, cos: float) -> bool:
        return cos >= self.min_cosine and self.score(query, cached, cos) >= self.threshold

    def at(self, threshold: float | str) -> VerifierMatcher:
        """The same model at another operating point (a probability or a point name)."""
        return VerifierMatcher(self.model, threshold)

    def __repr__(self) -> str:
        return f"VerifierMatcher({self.name!r}, threshold={self.threshold:.3f})"


def load_matcher(path: str | Path | None = None, threshold: float | str = "default") -> VerifierMatcher:
    """A verifier from a JSON file written by ``cachemux.lab.fit_matcher`` (None: the shipped one)."""
    if path is None:
        text = resources.files("cachemux.semantic").joinpath("data").joinpath(SHIPPED).read_text(encoding="utf-8")
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read matcher model {path}: {exc}") from None
    try:
        model = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"matcher model {path or SHIPPED} is not JSON: {exc}") from None
    return VerifierMatcher(model, threshold)


@lru_cache(maxsize=1)
def _shipped() -> VerifierMatcher:
    return load_matcher()


def default_matcher(embedder_id: str, fallback_threshold: float) -> Matcher:
    """The shipped verifier if it was fitted for ``embedder_id``, else plain cosine at
    ``fallback_threshold``."""
    m = _shipped()
    return m if embedder_id in m.embedders else CosineMatcher(fallback_threshold)
