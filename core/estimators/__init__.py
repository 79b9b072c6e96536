"""Online estimates from the request stream: query frequency P(q) and per-(query, model) means."""

from __future__ import annotations

from cachemux.estimators.frequency import FrequencyEstimator
from cachemux.estimators.means import RunningMeans

__all__ = ["FrequencyEstimator", "RunningMeans"]
