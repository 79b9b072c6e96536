"""Routes and selectors: cascade pricing, counterfactual feedback, oracle/noisy/online choice."""

from __future__ import annotations

import pytest

from cachemux.errors import ConfigError
from cachemux.multiplexer import (
    NoisyOracleSelector,
    OnlineSelector,
    OracleSelector,
    StaticSelector,
    make_route,
    route_cost,
)

CAS, LARGE, SMALL = ("small", "large"), ("large",), ("small",)


def test_cascade_cost_follows_the_paper_penalty():
    cost = {"small": 1.0, "large": 10.0}
    assert route_cost(CAS, cost, {"small": True}) == (1.0, 1)
    assert route_cost(CAS, cost, {"small": False}) == (1.0 + 2 * 10.0, 2)
    assert route_cost(CAS, cost, {"small": False}, penalty=1.0) == (11.0, 2)
    assert route_cost(LARGE, cost, {}) == (10.0, 1)
    # unknown success (no judge) accepts the small answer: the synthetic "model 2"
    assert route_cost(CAS, cost, {"small": None}) == (1.0, 1)


def test_counterfactual_cost_needs_the_models_that_ran():
    # a failed cascade ran both models, so "large only" is priced too; a success reveals nothing
    assert route_cost(LARGE, {"small": 1.0, "large": 10.0}, {"small": False}) == (10.0, 1)
    assert route_cost(LARGE, {"small": 1.0}, {"small": True}) == (None, 0)
    assert route_cost(CAS, {"large": 10.0}, {}) == (None, 0)


def test_three_model_route():
    cost = {"a": 1.0, "b": 3.0, "c": 9.0}
    assert route_cost(("a", "b", "c"), cost, {"a": False, "b": False}) == (1 + 2 * 3 + 2 * 9, 3)
    assert route_cost(("a", "b", "c"), cost, {"a": False, "b": True}) == (1 + 2 * 3, 2)


@pytest.mark.parametrize("bad", [(), "", ("a", "a"), (1,), None])
def test_bad_routes_are_rejected(bad):
    with pytest.raises(ConfigError):
        make_route(bad)


def test_static_selector_learns_its_route_cost():
    s = StaticSelector(LARGE)
    assert s.choose("q") == LARGE and s.expected_cost("q") is None
    s.observe("q", {"large": 4.0}, {"large": None})
    s.observe("q", {"large": 6.0}, {"large": None})
    assert s.expected_cost("q") == pytest.approx(5.0)


def test_oracle_and_noisy_oracle():
    truth = {"q": {CAS: 1.0, LARGE: 10.0}, "r": {CAS: 21.0, LARGE: 10.0}}
    o = OracleSelector([CAS, LARGE], truth.__getitem__)
    assert o.choose("q") == CAS and o.choose("r") == LARGE
    assert o.expected_cost("r") == 10.0

    class Coins:
        def __init__(self, seq):
            self.seq = iter(seq)

        def random(self):
            return next(self.seq)

    n = NoisyOracleSelector([CAS, LARGE], truth.__getitem__, 0.8, rng=Coins([0.1, 0.9]))
    assert n.choose("q") == CAS  # coin 0.1 < 0.8: right
    assert n.choose("q") == LARGE  # coin 0.9: wrong, pays the worse option
    with pytest.raises(ConfigError, match="accuracy"):
        NoisyOracleSelector([CAS, LARGE], truth.__getitem__, 1.5)


def test_online_selector_explores_then_exploits():
    s = OnlineSelector([CAS, LARGE])
    assert s.choose("q") == CAS  # nothing known: the first (cheap) route
    s.observe("q", {"small": 1.0, "large": 10.0}, {"small": False})  # cascade failed
    # both routes now have an estimate: cascade 21, large 10 (the paper's switch to LARGE)
    assert s.expected_cost("q") == pytest.approx(10.0)
    assert s.choose("q") == LARGE
    # another query where the small model succeeds: large unexplored -> optimistic, tried once
    s.observe("p", {"small": 1.0}, {"small": True})
    assert s.choose("p") == LARGE
    assert s.expected_cost("p") == 0.0  # optimistic until explored, so the cache does not hide it
    s.observe("p", {"large": 10.0}, {"large": None})
    assert s.choose("p") == CAS and s.expected_cost("p") == pytest.approx(1.0)


def test_online_selector_lcb():
    s = OnlineSelector([SMALL, LARGE], beta=2.0, floor=0.5)
    s.observe("q", {"small": 3.0}, {"small": None})
    assert s.score("q", SMALL) == pytest.approx(max(3.0 - 2.0, 0.5))
    with pytest.raises(ConfigError, match="beta"):
        OnlineSelector([SMALL], beta=-1)


def test_selector_argument_errors():
    with pytest.raises(ConfigError):
        StaticSelector(LARGE, penalty=0.5)
    with pytest.raises(ConfigError):
        OracleSelector([CAS, CAS], lambda q: {})
