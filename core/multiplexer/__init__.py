"""The model multiplexer: selectors that route each query to the cheapest adequate model(s)."""

from __future__ import annotations

from cachemux.multiplexer.predictor import PredictorConfig, QualityPredictor
from cachemux.multiplexer.registry import SELECTORS, make_selector
from cachemux.multiplexer.routes import FAIL_PENALTY, Route, make_route, route_cost
from cachemux.multiplexer.selectors import (
    NoisyOracleSelector,
    OnlineSelector,
    OracleSelector,
    Selector,
    StaticSelector,
)
from cachemux.multiplexer.trained import TrainedSelector

__all__ = ["FAIL_PENALTY", "SELECTORS", "NoisyOracleSelector", "OnlineSelector", "OracleSelector", "PredictorConfig",
           "QualityPredictor", "Route", "Selector", "StaticSelector", "TrainedSelector", "make_route", "make_selector",
           "route_cost"]
