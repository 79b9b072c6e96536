"""What a ``SemanticCache`` lookup returns on a hit."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Match"]


@dataclass(frozen=True)
class Match:
    """A cache hit: ``kind`` is "exact" or "semantic"; ``similarity`` is the cosine (1.0 exact);
    ``score`` the matcher's score (a verifier's P(same question); the cosine for plain cosine);
    ``verify``: error-bounded mode asks the caller to run the model too and report with
    ``SemanticCache.feedback`` (drawn with a small probability that decays per entry);
    ``p_wrong``: error-bounded mode's learned probability that this semantic hit is wrong (the
    mean of ``ErrorBound.estimate``; None outside that mode)."""

    value: str
    kind: str
    key: str
    similarity: float
    cost: float
    score: float = 1.0
    verify: bool = False
    p_wrong: float | None = None
