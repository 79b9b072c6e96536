"""Whether the shared QQP pairs (``../shared/data/semantic``) are beside this checkout; CI puts
them there, a bare checkout skips the tests that need them."""

from __future__ import annotations


def has_qqp_pairs() -> bool:
    from cachemux.paths import data_file

    try:
        return data_file("semantic", "qqp_pairs.json.gz").is_file()
    except Exception:
        return False
