"""Whether a ``SemanticCache`` serves a neighbour: the matcher, then (error-bounded mode) the
entry's learned rule, and the feedback that teaches it.

The matcher (``cachemux.semantic.matcher``) scores (new prompt, cached prompt, cosine). In
error-bounded mode (``max_error``, ``cachemux.semantic.bounded``) each entry learns from feedback
whether it may serve a neighbour at that score, so that the served error stays under
``max_error``: the neighbour considered for a prompt is remembered (the nearest one even when it
is not served) so that ``feedback`` on that prompt teaches that entry; a hit drawn for
verification is graded by the cache's ``judge`` when it has one, else the caller is asked to
check it (``Match.verify``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from cachemux.errors import ConfigError
from cachemux.semantic.bounded import ErrorBound
from cachemux.semantic.matcher import CosineMatcher, Matcher, VerifierMatcher
from cachemux.semantic.mirror import IndexMirror
from cachemux.semantic.stats import CacheStats, FaultSink
from cachemux.stores.base import Entry

__all__ = ["Decider", "Verdict"]


class Verdict(NamedTuple):
    """A neighbour the matcher (and the learned rule) accepts: the matcher's ``score``, the
    prior ``p_same``, the learned ``p_wrong`` (None outside error-bounded mode) and the entry's
    learned ``state``."""

    score: float
    p_same: float
    p_wrong: float | None
    state: Mapping[str, Any] | None


class Decider:
    """The matcher, the error bound and its feedback for one cache (see the module docstring)."""

    def __init__(self, matcher: Matcher, bound: ErrorBound | None, mirror: IndexMirror, stats: CacheStats,
                 fault: FaultSink, *, judge: Callable[[str, str], bool | None] | None = None,
                 remember: int = 10_000) -> None:
        if judge is not None and not callable(judge):
            raise ConfigError(f"judge must be a function (prompt, answer) -> bool | None, got {judge!r}")
        self.matcher = matcher
        self.bound = bound
        self.judge = judge
        self.mirror = mirror
        self.stats = stats
        self.fault = fault
        self.remember_at_most = remember
        self._lock = threading.Lock()
        self._decided: OrderedDict[str, tuple[str, float, float]] = OrderedDict()  # prompt key -> (entry, score, P)

    @property
    def plain(self) -> bool:
        """Plain cosine, no learned rule: the first candidate over the threshold is served."""
        return type(self.matcher) is CosineMatcher and self.bound is None

    def consider(self, text: str, cached: str, sim: float, entry: Entry, qkey: str, mkey: str,
                 first: bool) -> Verdict | None:
        """Whether ``entry`` (matched at cosine ``sim``) may answer ``text``; ``first``: it is the
        nearest candidate (remembered for feedback even when it is not served)."""
        score = self.matcher.score(text, cached, sim)
        bound = self.bound
        if bound is None:
            if not self.matcher.accepts(text, cached, sim):
                return None
            return Verdict(score, score, None, None)
        # P(same) for the prior: the verifier's own; a cosine matcher's acceptance as a weak prior
        p_same = score if isinstance(self.matcher, VerifierMatcher) else (
            0.9 if self.matcher.accepts(text, cached, sim) else 0.5)
        if first:  # feedback on the nearest candidate teaches even when it is not served
            self.remember(qkey, mkey, score, p_same)
        state = entry.meta.get("vc")
        p_wrong, upper = bound.estimate(score, p_same, state)
        if upper > bound.max_error:
            return None
        self.remember(qkey, mkey, score, p_same)
        return Verdict(score, p_same, p_wrong, state)

    def check(self, text: str, value: str, qkey: str, mkey: str, v: Verdict) -> bool | None:
        """A hit drawn for verification: True to serve it asking the caller to verify it, False to
        serve it as it is, None to refuse it (the cache's judge said it is wrong)."""
        if self.bound is None or not self.bound.wants_check(v.state):
            return False
        if self.judge is None:
            return True
        try:
            verdict = self.judge(text, value)
        except Exception as exc:  # a failing judge gives no verdict
            self.fault("judge", exc)
            verdict = None
        if verdict is not None:
            self.learn(mkey, v.score, v.p_same, bool(verdict))
            with self._lock:
                self._decided.pop(qkey, None)
            if not verdict:
                return None
        return False

    def remember(self, qkey: str, mkey: str, score: float, p_same: float) -> None:
        with self._lock:
            self._decided[qkey] = (mkey, score, p_same)
            self._decided.move_to_end(qkey)
            while len(self._decided) > self.remember_at_most:
                self._decided.popitem(last=False)

    def candidate(self, qkey: str) -> str | None:
        """The key of the entry the last lookup of ``qkey`` considered (None if none waits)."""
        with self._lock:
            got = self._decided.get(qkey)
        return None if got is None else got[0]

    def feedback(self, qkey: str, ok: bool) -> bool:
        """Teach the entry last considered for ``qkey``; False when there is none."""
        if self.bound is None:
            return False
        with self._lock:
            got = self._decided.pop(qkey, None)
        if got is None:
            return False
        mkey, score, p_same = got
        self.learn(mkey, score, p_same, ok)
        return True

    def learn(self, mkey: str, score: float, p_same: float, ok: bool) -> None:
        """Write the verdict into the entry's learned rule (its metadata: shared by every process)."""
        assert self.bound is not None
        self.stats.add(feedback=1)
        store = self.mirror.store
        try:
            entry = store.peek(mkey)
            new = self.bound.observe(score, ok, None if entry is None else entry.meta.get("vc"))
            if entry is not None:
                result = store.put(mkey, Entry(
                    value=entry.value, cost=entry.cost, size=entry.size, partition=entry.partition, prompt=entry.prompt,
                    embedding=entry.embedding, created=entry.created, meta={**entry.meta, "vc": new},
                    expires=entry.expires))
                if not result.admitted:
                    self.mirror.remove(mkey)
        except Exception as exc:
            self.fault("feedback", exc)
