"""The default semantic-match threshold, chosen by ``cachemux calibrate-semantic`` on real pairs."""

from __future__ import annotations

__all__ = ["DEFAULT_THRESHOLD"]

# Provisional until calibrated (see cachemux.semantic.calibrate).
DEFAULT_THRESHOLD = 0.90
