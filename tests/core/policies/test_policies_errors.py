"""Bad input: every mistake raises a cachemux error whose message names the bad value, and a
rejected request leaves the policy as it was."""

from __future__ import annotations

import math

import pytest

from cachemux.errors import CacheMuxError, ConfigError, MissingCostError, UnknownNameError
from cachemux.policies import POLICIES, LECOffline, make_policy
from test_policies import LABELS, SIZED, build

COST_AWARE = [name for name, cls in POLICIES.items() if cls.cost_aware]


def snapshot(p):
    return (p.hits, p.misses, p.evictions, p.used, list(p))


@pytest.mark.parametrize("name", sorted(POLICIES))
@pytest.mark.parametrize("bad", [0, -1, -0.5, math.nan, math.inf, "abc", None, [3]])
def test_bad_capacity(name, bad):
    with pytest.raises(ConfigError) as info:
        make_policy(name, bad, trace=["a"]) if name == "belady" else make_policy(name, bad)
    assert "capacity" in str(info.value) and repr(bad) in str(info.value)
    assert isinstance(info.value, CacheMuxError) and isinstance(info.value, ValueError)


def test_capacity_as_a_numeric_string_is_accepted():
    assert make_policy("lru", "10").capacity == 10.0


@pytest.mark.parametrize("bad", ["lfru", "", "LRU ", None, 3])
def test_unknown_policy_names_the_bad_value_and_lists_the_good_ones(bad):
    with pytest.raises(UnknownNameError) as info:
        make_policy(bad, 10)
    msg = str(info.value)
    assert repr(bad) in msg
    assert all(name in msg for name in POLICIES)
    assert info.value.choices == sorted(POLICIES)


def test_missing_cost_is_an_error_for_cost_aware_policies():
    assert set(COST_AWARE) == {"gds", "gdsf", "lec"}
    for name in COST_AWARE:
        p = make_policy(name, 2)
        with pytest.raises(MissingCostError, match="'k'"):
            p.access("k")
        with pytest.raises(MissingCostError, match="'k'"):
            p.admit("k")
        assert snapshot(p) == (0, 0, 0, 0, [])
        p.check_invariants()
        # a lookup needs no cost, and a hit without one keeps the last cost
        assert p.lookup("k") is False
        p.admit("k", 2.0)
        assert p.access("k") is True and p.lookup("k") is True
        p.check_invariants()


@pytest.mark.parametrize("name", COST_AWARE)
@pytest.mark.parametrize("bad", [math.nan, -1.0, -1e-9, math.inf, "abc", [1]])
def test_bad_cost_on_a_miss_and_on_a_hit(name, bad):
    p = make_policy(name, 2)
    p.access("a", 1.0)
    before = snapshot(p)
    for call in (lambda: p.access("b", bad), lambda: p.admit("b", bad), lambda: p.access("a", bad),
                 lambda: p.lookup("a", bad), lambda: p.lookup("b", bad)):
        with pytest.raises(ConfigError) as info:
            call()
        assert repr(bad) in str(info.value) and "cost" in str(info.value)
        assert snapshot(p) == before  # validated before anything was counted
        p.check_invariants()
    assert p.access("a", 3.0) is True  # and the policy still works


@pytest.mark.parametrize("label", SIZED)
@pytest.mark.parametrize("bad", [0, -2, math.nan, math.inf, "abc", None])
def test_bad_size(label, bad):
    p = build(label, 4, ["a", "b"], [1.0, 1.0])
    p.access("a", 1.0)
    before = snapshot(p)
    for call in (lambda: p.access("b", 1.0, bad), lambda: p.admit("b", 1.0, bad),
                 lambda: p.admit("a", 1.0, bad)):
        with pytest.raises(ConfigError) as info:
            call()
        assert "size" in str(info.value) and repr(bad) in str(info.value)
        assert snapshot(p) == before
        p.check_invariants()


def test_belady_needs_its_trace_and_unit_sizes():
    with pytest.raises(ConfigError, match="trace"):
        make_policy("belady", 2)
    p = make_policy("belady", 2, trace=["a", "b", "a"])
    with pytest.raises(ConfigError, match="size=2"):
        p.access("a", None, 2)
    with pytest.raises(ConfigError, match=r"request #1 is 'x'.*'b'"):
        p.access("x")
    p = make_policy("belady", 2, trace=["a"])
    p.access("a")
    with pytest.raises(ConfigError, match="end of trace"):
        p.access("a")


def test_offline_lec_needs_prob_and_cost_for_every_key():
    with pytest.raises(ConfigError, match="prob"):
        LECOffline(2, cost={"a": 1.0})
    with pytest.raises(MissingCostError, match="cost"):
        LECOffline(2, prob={"a": 1.0})
    with pytest.raises(MissingCostError, match="'b'"):
        LECOffline(2, prob={"a": 0.5, "b": 0.5}, cost={"a": 1.0})
    for bad in (-0.1, math.nan, math.inf, "abc"):
        with pytest.raises(ConfigError, match="prob") as info:
            LECOffline(2, prob={"a": bad}, cost={"a": 1.0})
        assert repr(bad) in str(info.value)
    for bad in (-1.0, math.nan, "abc", None):
        with pytest.raises(ConfigError, match="cost") as info:
            LECOffline(2, prob={"a": 1.0}, cost={"a": bad})
        assert repr(bad) in str(info.value)
    for bad in (0, -1, math.nan, "abc"):
        with pytest.raises(ConfigError, match="size") as info:
            LECOffline(2, prob={"a": 1.0}, cost={"a": 1.0}, size={"a": bad})
        assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", [0, -5, math.nan, "abc", 1e-4])
def test_bad_half_life(bad):
    with pytest.raises(ConfigError, match="half_life") as info:
        make_policy("lec", 3, half_life=bad)
    assert repr(bad) in str(info.value)
    with pytest.raises(ConfigError, match="half_life"):
        make_policy("lfu", 3, history=True, half_life=bad)


def test_every_error_is_a_cachemux_error():
    for label in LABELS:
        with pytest.raises(CacheMuxError):
            build(label, -1)
