"""The joint engine: lookup -> route -> generate -> account -> admit/evict."""

from __future__ import annotations

import pytest

from cachemux.joint import Generation, JointEngine
from cachemux.multiplexer import OnlineSelector, StaticSelector
from cachemux.policies import LEC, LRU

CAS, LARGE = ("small", "large"), ("large",)

# query -> (small cost, small succeeds, large cost)
QUERIES = {"easy": (1.0, True, 100.0), "hard": (1.0, False, 10.0), "x": (1.0, True, 50.0)}


def generate(q, model):
    small, ok, large = QUERIES[q]
    if model == "small":
        return Generation(f"{q}:small", small, ok)
    return Generation(f"{q}:large", large, None)


def test_hit_after_miss_and_store_follows_evictions():
    store: dict = {}
    eng = JointEngine(LRU(1), StaticSelector(LARGE), generate, store)
    r1 = eng.serve("easy")
    assert not r1.hit and r1.cost == 100.0 and r1.answer == "easy:large" and r1.models == ("large",)
    r2 = eng.serve("easy")
    assert r2.hit and r2.cost == 0.0 and r2.answer == "easy:large"
    eng.serve("hard")
    assert set(store) == {"hard"}  # "easy" was evicted from the policy and from the store
    assert eng.total_cost == 110.0


def test_cascade_runs_large_only_after_small_fails():
    eng = JointEngine(LRU(10), StaticSelector(CAS), generate)
    assert eng.serve("easy").models == ("small",)
    r = eng.serve("hard")
    assert r.models == ("small", "large") and r.cost == 1.0 + 2 * 10.0 and r.answer == "hard:large"


def test_cache_priority_is_the_cost_under_the_selector():
    """The joint design: 'easy' costs 100 on the large model but only 1 under the multiplexer,
    'hard' costs 10 either way; with equal popularity a one-entry LEC cache must keep 'hard'."""
    sel = OnlineSelector([CAS, LARGE])
    eng = JointEngine(LEC(1), sel, generate)
    for q in ["easy", "easy", "hard", "hard", "easy", "hard", "easy", "hard"] * 3:
        eng.serve(q)
    # after exploration the selector knows: easy -> cascade (1), hard -> large (10)
    assert sel.choose("easy") == CAS and sel.choose("hard") == LARGE
    assert "hard" in eng.policy and "easy" not in eng.policy

    # pricing the cache by the large model's cost instead keeps the wrong entry
    eng2 = JointEngine(LEC(1), StaticSelector(LARGE), generate)
    for q in ["easy", "easy", "hard", "hard", "easy", "hard", "easy", "hard"] * 3:
        eng2.serve(q)
    assert "easy" in eng2.policy


def test_store_that_lost_a_value_is_a_miss():
    store: dict = {}
    eng = JointEngine(LRU(4), StaticSelector(LARGE), generate, store)
    eng.serve("x")
    store.clear()
    r = eng.serve("x")
    assert not r.hit and store["x"] == "x:large"


@pytest.mark.parametrize("policy", [LRU(3), LEC(3)])
def test_invariants_hold_through_the_engine(policy):
    eng = JointEngine(policy, OnlineSelector([CAS, LARGE]), generate, {})
    for i in range(200):
        eng.serve(["easy", "hard", "x"][i % 3] if i % 7 else "easy")
        policy.check_invariants()
