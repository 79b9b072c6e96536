"""The selector registry: a name for each selector, as ``cachemux.policies.POLICIES`` is for policies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cachemux.errors import UnknownNameError
from cachemux.multiplexer.selectors import (
    NoisyOracleSelector,
    OnlineSelector,
    OracleSelector,
    Selector,
    StaticSelector,
)

__all__ = ["SELECTORS", "make_selector"]


def _trained(*args: Any, **kwargs: Any) -> Selector:
    from cachemux.multiplexer.trained import TrainedSelector  # numpy + the predictor: on demand

    return TrainedSelector(*args, **kwargs)


SELECTORS: dict[str, Callable[..., Selector]] = {
    "static": StaticSelector,
    "online": OnlineSelector,
    "oracle": OracleSelector,
    "noisy-oracle": NoisyOracleSelector,
    "trained": _trained,
}


def make_selector(name: str, *args: Any, **options: Any) -> Selector:
    """``make_selector("online", [("small", "large"), ("large",)])``; the arguments are the
    selector class's (``StaticSelector(route)``, ``OracleSelector(routes, truth)``, ...)."""
    try:
        factory = SELECTORS[name.lower() if isinstance(name, str) else name]
    except (KeyError, TypeError):
        raise UnknownNameError("selector", name, SELECTORS) from None
    return factory(*args, **options)
