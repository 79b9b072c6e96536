"""One spec for the pure policies and the stores: the store policy table is derived from the
policy classes, the frequency constants the stores share with the estimator live in one place,
and a policy's keys and a map of their values are kept in step by one function."""

from __future__ import annotations

from pathlib import Path

import pytest

import cachemux
from cachemux.estimators import frequency as estimator
from cachemux.policies import admit_value
from naive_policies import power_trace
from test_policies import build


def test_the_frequency_constants_are_the_estimators_own() -> None:
    from cachemux.stores import _policy, _redis_lua

    assert (estimator.RESCALE_AT, estimator.FORGET_BELOW) == (1e150, 1e-12)
    for module in (_policy, _redis_lua):  # disk.py reads them from _policy
        assert module.RESCALE_AT is estimator.RESCALE_AT
        assert module.FORGET_BELOW is estimator.FORGET_BELOW
    assert f"local RESCALE_AT = {estimator.RESCALE_AT!r}" in _redis_lua.PUT
    assert f"local FORGET_BELOW = {estimator.FORGET_BELOW!r}" in _redis_lua.PUT
    # written as a literal nowhere else in the package
    root = Path(cachemux.__file__).parent
    spelled = [str(p.relative_to(root)) for p in root.rglob("*.py") if "1e150" in p.read_text()]
    assert spelled == ["estimators/frequency.py"]


def test_the_store_policy_table_is_derived_from_the_policy_classes() -> None:
    from cachemux.policies import POLICIES
    from cachemux.stores._policy import STORE_POLICIES

    # the table as it was written by hand before the classes declared their family
    assert STORE_POLICIES == {
        "lru": ("recency", {"hit_moves": True}),
        "fifo": ("recency", {"hit_moves": False}),
        "gdsf": ("greedy-dual", {"use_freq": True}),
        "gds": ("greedy-dual", {"use_freq": False}),
        "lfu": ("frequency", {"use_cost": False}),
        "lec": ("frequency", {"use_cost": True}),
    }
    for name, (family, fixed) in STORE_POLICIES.items():
        cls = POLICIES[name]
        assert cls.family == family
        assert all(getattr(cls, opt) is value for opt, value in fixed.items())
    assert {n for n, cls in POLICIES.items() if cls.family is None} == {"belady", "lec-offline"}


@pytest.mark.parametrize("label", ["lru", "gdsf", "lfu-history", "lec"])
def test_admit_value_keeps_the_values_in_step_with_the_policy(label: str) -> None:
    """Evicted keys lose their values (and are handed to ``drop``), a kept key gets its value, a
    declined one (LEC, history LFU) does not; the policy sees exactly what ``admit`` would do."""
    keys, costs, sizes = power_trace(3, n=800, universe=40, costs="discrete", max_size=3)
    p, ref = build(label, 9, keys, costs), build(label, 9, keys, costs)
    values: dict = {"stale": "never offered"}  # a value the policy never held is left alone
    dropped: list = []
    declined = 0
    for i, (k, c, s) in enumerate(zip(keys, costs, sizes)):
        assert p.lookup(k, c) == ref.lookup(k, c)
        if k in p:
            continue
        before = len(dropped)
        evicted = admit_value(p, values, k, ("v", i), c, s, drop=dropped.append)
        assert evicted == ref.admit(k, c, s) == dropped[before:]
        assert set(values) == set(p) | {"stale"}
        if k in p:
            assert values[k] == ("v", i)
        else:
            declined += 1
    assert len(dropped) == p.evictions > 0
    assert declined > 0 if label in ("lfu-history", "lec") else declined == 0
    p.check_invariants()
    assert admit_value(p, None, "new", "x", 5.0, 1) == ref.admit("new", 5.0, 1)  # no map: policy only
    assert list(p) == list(ref)
