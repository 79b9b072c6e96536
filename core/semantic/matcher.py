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
  features) from boosted stumps fitted on QQP dev pairs (``cachemux.lab.fit_matcher``), shipped as JSON in
  ``cachemux/semantic/data/matcher_v2.json`` (never pickle). Its features are computed in plain
  Python and the model is a sum of stump leaves, so it re-evaluates exactly anywhere.

A fitted matcher is valid only with the embedding model it was fitted on (its ``embedders``):
``SemanticCache`` uses the shipped verifier with the packaged all-MiniLM-L6-v2 and falls back to
``CosineMatcher(DEFAULT_THRESHOLD)`` with any other embedder unless given ``matcher=``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cachemux.errors import ConfigError

__all__ = ["FEATURES", "CosineMatcher", "GuardMatcher", "Matcher", "VerifierMatcher", "default_matcher",
           "features", "guard_fires", "load_matcher"]

SHIPPED = "matcher_v2.json"

# ---- lexical features -------------------------------------------------------------------------
_TOKEN = re.compile(r"\d+(?:[.,:/]\d+)*|[^\W\d_]+(?:'[^\W\d_]+)?")
_NEGATIONS = frozenset("""not no never none nobody nothing nowhere neither nor cannot without
    isn't aren't wasn't weren't don't doesn't didn't can't couldn't won't wouldn't shouldn't hasn't
    haven't hadn't mustn't ain't""".split())
# number words as digits ("three sisters" = "3 sisters"); not "one" (a pronoun: "how does one ...")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero _ two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split()) if w != "_"}
_NUMBER_WORDS.update(thirty="30", forty="40", fifty="50", sixty="60", seventy="70", eighty="80", ninety="90",
                     hundred="100", thousand="1000", million="1000000", billion="1000000000")
_WH = frozenset("what why how when where who whom whose which".split())
_WH_SAME = {"which": "what", "whom": "who"}  # "What/Which is the best ..." ask the same
_STOP = frozenset("""a an the is are was were be been being am do does did to of in on at for by with
    from as and or if it its this that these those i me my we our you your he she they them their his
    her there here can could should would will shall may might must has have had so than then about
    into up out any some all also just very really get got s""".split()) | _WH
_ANTONYMS = [("ascending", "descending"), ("good", "bad"), ("best", "worst"), ("better", "worse"),
             ("increase", "decrease"), ("more", "less"), ("most", "least"), ("max", "min"),
             ("maximum", "minimum"), ("before", "after"), ("buy", "sell"), ("cheap", "expensive"),
             ("hot", "cold"), ("first", "last"), ("left", "right"), ("import", "export"),
             ("positive", "negative"), ("true", "false"), ("male", "female"), ("man", "woman"),
             ("men", "women"), ("boy", "girl"), ("old", "new"), ("young", "old"), ("large", "small"),
             ("big", "small"), ("high", "low"), ("higher", "lower"), ("fast", "slow"), ("win", "lose"),
             ("start", "end"), ("open", "close"), ("add", "remove"), ("encrypt", "decrypt"),
             ("upload", "download"), ("north", "south"), ("east", "west"), ("rich", "poor"),
             ("easy", "hard"), ("pros", "cons"), ("advantages", "disadvantages"), ("love", "hate"),
             ("like", "dislike"), ("legal", "illegal"), ("safe", "dangerous"), ("healthy", "unhealthy"),
             ("possible", "impossible"), ("happy", "sad"), ("long", "short"), ("early", "late"),
             ("above", "below"), ("inside", "outside"), ("internal", "external"), ("input", "output"),
             ("push", "pull"), ("send", "receive"), ("gain", "lose"), ("strong", "weak"),
             ("celsius", "fahrenheit"), ("lowercase", "uppercase"), ("odd", "even"), ("yes", "no")]
_ANTONYM = {}
for _a, _b in _ANTONYMS:
    _ANTONYM.setdefault(_a, set()).add(_b)
    _ANTONYM.setdefault(_b, set()).add(_a)

FEATURES = ("cos", "jaccard", "content_jaccard", "only_min", "only_max", "len_ratio", "same_norm",
            "numbers_differ", "numbers_reordered", "negation_differs", "entities_differ", "wh_differs",
            "antonym", "order_discord", "swapped")


@dataclass(frozen=True)
class _Parsed:
    words: tuple[str, ...]          # lowercased tokens in order
    entities: frozenset[str]        # lowercased capitalised words that are not sentence-initial
    numbers: tuple[str, ...]        # digits, and number words as digits
    digits: int                     # how many of them were written with digits


@lru_cache(maxsize=4096)
def _parse(text: str) -> _Parsed:
    raw = [w[:-2] if w.endswith("'s") else w for w in _TOKEN.findall(text.replace("\u2019", "'"))]
    words = tuple(w.lower() for w in raw)
    ents = set()
    for i, w in enumerate(raw):
        if w[0].isupper() and w.lower() not in _STOP and (i > 0 or (len(w) > 1 and w[1:].isupper())):
            ents.add(w.lower())
    nums = tuple(w.replace(",", "") if w[0].isdigit() else _NUMBER_WORDS[w]
                 for w in words if w[0].isdigit() or w in _NUMBER_WORDS)
    return _Parsed(words, frozenset(ents), nums, sum(1 for w in words if w[0].isdigit()))


def _wh(words: set[str]) -> set[str]:
    return {_WH_SAME.get(w, w) for w in words & _WH}


def _content(p: _Parsed) -> list[str]:
    return [w for w in p.words if w not in _STOP]


def _discord(a: list[str], b: list[str]) -> float:
    """Fraction of discordant pairs among the words both share exactly once (0: same order)."""
    once_a = {w for w in a if a.count(w) == 1}
    shared = [w for w in b if w in once_a and b.count(w) == 1]
    if len(shared) < 2:
        return 0.0
    pos = {w: i for i, w in enumerate(a)}
    ranks = [pos[w] for w in shared]
    n = len(ranks)
    bad = sum(1 for i in range(n) for j in range(i + 1, n) if ranks[i] > ranks[j])
    return bad / (n * (n - 1) / 2)


def _numbers_differ(a: _Parsed, b: _Parsed) -> bool:
    """Different numbers; a number *word* on one side only with no number on the other ("the top
    ten ..." / "the best ...") does not count: such words are often not quantities."""
    if sorted(a.numbers) == sorted(b.numbers):
        return False
    return not ((not a.numbers and not b.digits) or (not b.numbers and not a.digits))


def _swapped(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Two content words both texts hold once trade places around a word both keep between them
    ("10 miles to kilometers" / "10 kilometers to miles"; not "capital of France" / "France's
    capital", where nothing stays between)."""
    a, b = a[:64], b[:64]
    pa = {w: i for i, w in enumerate(a) if w not in _STOP and a.count(w) == 1}
    pb = {w: i for i, w in enumerate(b) if w in pa and b.count(w) == 1}
    shared = sorted(pb, key=pa.__getitem__)
    for i, x in enumerate(shared):
        for y in shared[i + 1:]:
            if pb[x] > pb[y] and set(a[pa[x] + 1:pa[y]]) & set(b[pb[y] + 1:pb[x]]):
                return True
    return False


def features(query: str, cached: str, cos: float) -> list[float]:
    """The verifier's inputs for one pair, in ``FEATURES`` order (symmetric in the two texts)."""
    a, b = _parse(query), _parse(cached)
    sa, sb = set(a.words), set(b.words)
    ca, cb = _content(a), _content(b)
    sca, scb = set(ca), set(cb)
    union = sa | sb
    cunion = sca | scb
    only_a, only_b = len(sca - scb), len(scb - sca)
    na, nb = len(a.words), len(b.words)
    ents = (a.entities - sb) | (b.entities - sa)
    neg_a = sum(1 for w in a.words if w in _NEGATIONS or w.endswith("n't"))
    neg_b = sum(1 for w in b.words if w in _NEGATIONS or w.endswith("n't"))
    antonym = any(w in _ANTONYM and not (_ANTONYM[w] & sa) and (_ANTONYM[w] & sb) and w not in sb for w in sa)
    return [
        float(cos),
        len(sa & sb) / len(union) if union else 1.0,
        len(sca & scb) / len(cunion) if cunion else 1.0,
        float(min(only_a, only_b)),
        float(max(only_a, only_b)),
        min(na, nb) / max(na, nb) if max(na, nb) else 1.0,
        float(a.words == b.words),
        float(_numbers_differ(a, b)),
        float(sorted(a.numbers) == sorted(b.numbers) and a.numbers != b.numbers),
        float((neg_a > 0) != (neg_b > 0)),
        float(len(ents)),
        float(_wh(sa) != _wh(sb) and bool(_wh(sa)) and bool(_wh(sb))),
        float(antonym),
        _discord(ca, cb),
        float(_swapped(a.words, b.words)),
    ]


def guard_fires(query: str, cached: str) -> bool:
    """The rule-based guard: numbers, negation or proper nouns differ, an antonym replaces a word,
    or the words both share swap order."""
    return _guard(features(query, cached, 1.0))


_GUARD = [FEATURES.index(n) for n in ("numbers_differ", "numbers_reordered", "negation_differs", "entities_differ",
                                      "antonym", "swapped")]


_SAME = FEATURES.index("same_norm")


def _guard(x: list[float]) -> bool:
    return any(x[i] for i in _GUARD)


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
    """Boosted stumps over ``FEATURES``: P(same) = sigmoid(base + sum of stump leaves); serve iff
    cosine >= ``min_cosine`` and P >= ``threshold`` (default: the model's "default" point). With
    ``"veto_guard": true`` in the model (the shipped one), a pair the rule guard rejects scores 0
    and the stumps were fitted on the pairs it lets through; with ``"same_words_match": true``, a
    pair whose words are the same in the same order (only case and punctuation differ) scores 1
    (QQP labels some such pairs "different": label noise the stumps would otherwise learn)."""

    def __init__(self, model: dict[str, Any], threshold: float | str = "default") -> None:
        try:
            if tuple(model["features"]) != FEATURES:
                raise ConfigError(f"matcher model features {model['features']} differ from this version's {FEATURES}")
            self.base = float(model["base"])
            st = model["stumps"]
            self._feat = np.asarray([FEATURES.index(s[0]) for s in st], dtype=np.int64)
            self._cut = np.asarray([s[1] for s in st], dtype=np.float64)
            self._left = np.asarray([s[2] for s in st], dtype=np.float64)
            self._right = np.asarray([s[3] for s in st], dtype=np.float64)
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
        """Log-odds for rows of features (n, len(FEATURES))."""
        x = np.asarray(x, dtype=np.float64)
        go_right = x[:, self._feat] > self._cut
        return self.base + np.where(go_right, self._right, self._left).sum(axis=1)

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
        text = resources.files("cachemux.semantic").joinpath("data", SHIPPED).read_text(encoding="utf-8")
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
