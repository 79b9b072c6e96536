"""Whether the shared QQP pairs (``../shared/data/semantic``) are beside this checkout; CI puts
them there, a bare checkout skips the tests that need them."""

from __future__ import annotations


def has_qqp_pairs() -> bool:
    from cachemux.semantic.calibrate import _default_data

    try:
        return _default_data().is_file()
    except Exception:
        return False
