"""ErrorBound's rule without a model: how much feedback it takes before a neighbour is served."""

from __future__ import annotations

from cachemux.semantic.bounded import ErrorBound


def observations_to_serve(delta: float, p_same: float, score: float = 0.97, most: int = 2000) -> int:
    b = ErrorBound(delta)
    for n in range(most):
        if b.accepts(score, p_same, None):
            return n
        b.observe(score, True, None)
    return most


def test_a_confident_prior_does_not_buy_a_tight_bound():
    """p = 0.97 puts 0.06 of an error in the prior; without the Jeffreys half-counts 25 right
    verdicts and no wrong one served at max_error 0.02 (session 7's replay: 2 of 8 served wrong)."""
    n = observations_to_serve(0.02, 0.97)
    assert n > 60, n
    # the rule of thumb: with no error seen, about 1.5-1.7 / delta agreeing verdicts (a weak prior: more)
    for delta in (0.02, 0.05, 0.1):
        assert 1.4 / delta < observations_to_serve(delta, 0.97) < 3.0 / delta, delta
        assert observations_to_serve(delta, 0.5) > observations_to_serve(delta, 0.97)


def test_one_error_near_the_score_stops_serving_until_outweighed():
    b = ErrorBound(0.1)
    for _ in range(60):
        b.observe(0.97, True, None)
    assert b.accepts(0.97, 0.97, None)
    for _ in range(4):
        b.observe(0.975, False, None)
    assert not b.accepts(0.97, 0.97, None)
    state = b.observe(0.98, False, None)           # the entry's own error at a higher score
    assert state == {"ok": [], "bad": [0.98]}
    assert b.bound(0.95, 0.97, state) > b.bound(0.95, 0.97, None)  # counts against it at every lower score
    assert b.bound(0.99, 0.97, state) == b.bound(0.99, 0.97, None)  # ... not above
    for _ in range(4):
        state = b.observe(0.98, False, state)
    assert b.accepts(0.95, 0.97, None) and not b.accepts(0.95, 0.97, state)
