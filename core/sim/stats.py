"""Summary statistics over seeds: mean with a t-based 95% interval, medians of paired ratios."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["mean_ci95", "paired_ratios"]

# two-sided 97.5% quantiles of Student's t by degrees of freedom
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000,
         120: 1.980}


def _t975(df: int) -> float:
    if df <= 0:
        return math.nan
    best = max(k for k in _T975 if k <= df) if df < 120 else 120
    return _T975[best] if df < 1000 else 1.96


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (0 for a single value)."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), 0.0
    return float(v.mean()), float(_t975(len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def paired_ratios(baseline: Sequence[float], ours: Sequence[float]) -> dict[str, float]:
    """Ratios baseline/ours on paired seeds: ratio of means, and median/min/max of per-seed ratios."""
    b, o = np.asarray(baseline, dtype=float), np.asarray(ours, dtype=float)
    per = b / np.maximum(o, 1e-12)
    return {"ratio_of_means": float(b.mean() / max(o.mean(), 1e-12)), "median_ratio": float(np.median(per)),
            "min_ratio": float(per.min()), "max_ratio": float(per.max())}
