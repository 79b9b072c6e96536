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
