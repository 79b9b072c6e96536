"""GDS (Greedy-Dual-Size, Cao & Irani 1997): GDSF without the frequency term."""

from __future__ import annotations

from cachemux.policies.gdsf import GDSF

__all__ = ["GDS"]


class GDS(GDSF):
    """H(q) = clock + C(q) / S(q); a hit refreshes H to the current clock."""

    name = "gds"
    use_freq = False
