"""The plain-cosine threshold: ``SemanticCache(threshold=...)``'s meaning, and the default for an
embedder the shipped verifier (``cachemux.semantic.matcher``) was not fitted for.

With the packaged MiniLM the default is no longer a cosine threshold but the verifier
(``cachemux/semantic/data/matcher_v3.json``; figures in the README and in
``cachemux.lab.fit_matcher``). For any other embedding model cosine is all there is, and no
calibration on that model exists, so the fallback stays the conservative 0.99 below (measured
for MiniLM only: another model's cosines may run higher or lower). Calibrate your own with ``cachemux calibrate-semantic --model ...``, or fit a
verifier for it with ``python -m cachemux.lab.fit_matcher``."""

from __future__ import annotations

__all__ = ["DEFAULT_THRESHOLD"]

# Plain cosine: serve a cached answer to a new prompt iff the cosine similarity of their
# embeddings is >= this (the figures are for all-MiniLM-L6-v2, the packaged model).
#
# Measured with `cachemux calibrate-semantic --limit 0` on all Quora question pairs
# (shared/data/semantic, 40,427 dev / 40,427 test pairs, 37% duplicates; 137,551 distinct texts
# embedded in 17.6 min at 130 texts/s with 1 torch thread on the 2-core machine):
#
#   target: the lowest threshold with dev precision >= 0.95. No threshold reaches it: precision
#   plateaus at 0.93-0.947 above cos 0.985 (best 0.947 at 0.996, 209 pairs served), the rest being
#   label noise ("What is the best cab service in pune?" / "Which is the best cab service in
#   Pune?" is labelled different) and swaps an embedding cannot see ("Is Messi better than
#   Ronaldo?" / "Is Ronaldo better than Messi?"). So: the lowest threshold within 1 point of the
#   best attainable dev precision.
#
#   cos >= 0.990            dev P 0.940 R 0.042   test P 0.928 R 0.039
#   GPTCache default (0.8)  dev P 0.533 R 0.988   test P 0.530 R 0.988   (= cos >= 0.6 here)
#
#   For more recall at lower precision (dev-chosen, test-reported): 0.968 -> test P 0.893 R 0.132;
#   0.941 -> P 0.851 R 0.251; 0.907 -> P 0.799 R 0.402. Pass SemanticCache(threshold=...).
DEFAULT_THRESHOLD = 0.99
