"""Error-bounded semantic hits (after vCache, arXiv 2502.03771): serve a neighbour's answer only
while the learned probability that it is wrong stays under ``max_error``.

Feedback is an observation ``(score, ok)`` about one cached entry: ``score`` is what the matcher
gave the pair (the verifier's calibrated P(same), or the cosine for a plain-cosine matcher) and
``ok`` whether the entry's answer was right for the new prompt. It comes from
``SemanticCache.feedback(prompt, llm_string, ok)`` (the user, or labels in a replay), from the
cache's ``judge`` on a hit drawn for verification, or from a caller that ran the model anyway.

The rule for serving entry e at score s, with delta = ``max_error``:

    errors  a = m * (1 - p) + G_bad(s - w/2 .. s + w/2) + E_bad(>= s)
    correct b = m * p       + G_ok(s - w/2 .. s + w/2)  + E_ok(<= s)
    serve iff  the mean + z * sd of Beta(a + 1/2, b + 1/2) <= delta

``p`` is the matcher's own calibrated P(same) (prior weight ``m`` = 2 observations), ``G`` the
feedback on every entry at scores within ``w`` = 0.05 centred on s (kept by this cache object, in
0.005-wide bins: the error *at* s, not the average over all higher scores, which a stream whose
neighbours grow denser over time makes optimistic; a window only above s was optimistic too:
session 7's dev replay served error 0.167 at max_error 0.1 with it, 0.044 centred) and ``E``
the entry's own (kept in its JSON metadata under ``"vc"``, at most ``MAX_OBS`` of each kind): an
entry once wrong at score >= s stops being served at s, one right at a lower score is trusted
more. ``z`` = 1.645 (a one-sided 95% bound); the 1/2 on each side is a Jeffreys interval's, without
which a confident prior (p = 0.97 puts 0.06 of an error on the scale) let a 25-observation run with
no error serve at delta 0.02 (session 7: served error 0.25 at max_error 0.02 and 0.107 at 0.05 on
the QQP replay). A cold cache serves nothing semantic until feedback
shows the error is low: that is the price of a bound. Verification: a served hit asks for a check
with probability ``verify_rate / (1 + feedback the entry has had)`` (decaying per entry).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from cachemux.errors import ConfigError

__all__ = ["MAX_OBS", "ErrorBound"]

MAX_OBS = 16
_BINS = 200
_PRIOR = 2.0
_Z = 1.645
_JEFFREYS = 0.5  # added to both counts for the bound (a Jeffreys interval): with no error seen yet
#                 the bound stays ~1.7 / (observations), not the prior's (1 - p) / observations
_WINDOW = 10  # bins (0.05 of score) of shared feedback that inform a decision at a score,
_BELOW = 5    # centred on it: half below (a window only above read the error at higher, safer scores)


class ErrorBound:
    """The shared half of error-bounded mode (the per-entry half lives in entry metadata)."""

    def __init__(self, max_error: float, *, verify_rate: float = 0.1, seed: int | None = None) -> None:
        if isinstance(max_error, bool) or not isinstance(max_error, (int, float)) or not 0.0 < max_error < 1.0:
            raise ConfigError(f"max_error must be a probability in (0, 1), got {max_error!r}")
        if isinstance(verify_rate, bool) or not isinstance(verify_rate, (int, float)) or not 0.0 <= verify_rate <= 1.0:
            raise ConfigError(f"verify_rate must be in [0, 1], got {verify_rate!r}")
        self.max_error = float(max_error)
        self.verify_rate = float(verify_rate)
        self._ok = np.zeros(_BINS, dtype=np.int64)
        self._bad = np.zeros(_BINS, dtype=np.int64)
        self._rng = np.random.default_rng(seed)

    @staticmethod
    def _bin(score: float) -> int:
        return min(_BINS - 1, max(0, int(score * _BINS)))

    def bound(self, score: float, p_same: float, state: Mapping[str, Any] | None) -> float:
        """The upper bound on P(wrong) of serving this entry at ``score``."""
        return self.estimate(score, p_same, state)[1]

    def estimate(self, score: float, p_same: float, state: Mapping[str, Any] | None) -> tuple[float, float]:
        """The learned P(wrong) of serving this entry at ``score``: (the mean a / (a + b), its
        upper bound). The mean is what the joint engine prices a hit at (an expected cost)."""
        k = self._bin(score)
        p = min(max(p_same, 1e-3), 1 - 1e-3)
        lo = max(0, k - _BELOW)
        a = _PRIOR * (1 - p) + float(self._bad[lo:k + _WINDOW - _BELOW].sum())
        b = _PRIOR * p + float(self._ok[lo:k + _WINDOW - _BELOW].sum())
        if state:
            a += sum(1 for s in state.get("bad", ()) if s >= score)
            b += sum(1 for s in state.get("ok", ()) if s <= score)
        mean = a / (a + b)
        a, b = a + _JEFFREYS, b + _JEFFREYS
        n = a + b
        return mean, a / n + _Z * math.sqrt(a * b / (n * n * (n + 1)))

    def accepts(self, score: float, p_same: float, state: Mapping[str, Any] | None) -> bool:
        return self.bound(score, p_same, state) <= self.max_error

    def wants_check(self, state: Mapping[str, Any] | None) -> bool:
        """Draw whether a served hit on this entry should be verified (decaying with its feedback)."""
        seen = 0 if not state else len(state.get("ok", ())) + len(state.get("bad", ()))
        return bool(self.verify_rate) and float(self._rng.random()) < self.verify_rate / (1 + seen)

    def observe(self, score: float, ok: bool, state: Mapping[str, Any] | None) -> dict[str, Any]:
        """Record feedback globally; return the entry's new state (JSON-ready)."""
        (self._ok if ok else self._bad)[self._bin(score)] += 1
        new = {"ok": list((state or {}).get("ok", ())), "bad": list((state or {}).get("bad", ()))}
        side = new["ok" if ok else "bad"]
        side.append(round(float(score), 4))
        del side[:-MAX_OBS]
        return new

    def stats(self) -> dict[str, Any]:
        return {"max_error": self.max_error, "feedback_ok": int(self._ok.sum()), "feedback_wrong": int(self._bad.sum())}
