"""One spec for the pure policies and the stores: the store policy table is derived from the
policy classes, and the frequency constants the stores share with the estimator live in one place."""

from __future__ import annotations

from pathlib import Path

import cachemux
from cachemux.estimators import frequency as estimator


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
