"""The eviction policies a shared store can run, reduced to the parameters its storage code needs."""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass, field
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cachemux.errors import ConfigError, InvariantError, UnknownNameError, check_positive
from cachemux.estimators.frequency import FORGET_BELOW, RESCALE_AT
from cachemux.policies import POLICIES, make_policy

# FORGET_BELOW and RESCALE_AT are re-exported: the stores run the estimator's decay with them
__all__ = ["FORGET_BELOW", "RESCALE_AT", "STORE_POLICIES", "StorePolicy", "resolve_policy"]

# name -> (family, fixed parameters), as each policy class declares them (``Policy.family``).
# Belady and offline LEC need the future or the whole distribution up front (no family), so no
# shared store runs them.
STORE_POLICIES: dict[str, tuple[str, dict[str, bool]]] = {
    name: (cls.family, {opt: getattr(cls, opt) for opt in cls.family_options})
    for name, cls in POLICIES.items() if cls.family is not None
}


@dataclass(frozen=True)
class StorePolicy:
    """A policy of ``cachemux.policies`` as the disk and Redis stores execute it.

    * family "recency" (LRU, FIFO): priority = the sequence number of the last move.
    * family "greedy-dual" (GDSF, GDS): H = clock + freq * cost / size; clock := H(victim).
    * family "frequency" (LFU, online LEC): priority = n * cost / size (or n / size), where n is
      the in-cache count or the history count of every request (hits and misses), with
      optional admission control (the newcomer must beat every entry it would evict).
    Ties go to the entry whose priority was set earliest, as in ``LazyHeap``.
    """

    name: str
    family: str
    capacity: float
    hit_moves: bool = False
    use_freq: bool = False
    use_cost: bool = False
    cost_aware: bool = False
    history: bool = False
    admission: bool = False
    half_life: float | None = None
    growth: float = 1.0  # weight growth per request: 2 ** (1 / half_life)
    options: dict[str, Any] = field(default_factory=dict)

    def to_config(self) -> dict[str, Any]:
        """What is persisted with the store (JSON-safe, exact floats via repr)."""
        return {"policy": self.name, "capacity": self.capacity, "options": self.options}

    def options_json(self) -> str:
        return json.dumps(self.options, sort_keys=True, separators=(",", ":"))

    def score(self, n: float, cost: float, size: float) -> float:
        """Frequency family priority, written as ``FrequencyPolicy._score`` writes it."""
        return n * cost / size if self.use_cost else n / size

    def want_priority(self, size: float, cost: float, n: float, base: float, seq: int, ins: int) -> float:
        """The priority a cached entry must have given its stored state (``check_invariants``)."""
        if self.family == "recency":
            return float(seq if self.hit_moves else ins)
        if self.family == "greedy-dual":
            return base + (n if self.use_freq else 1) * cost / size
        return self.score(n, cost, size)

    def check_entries(self, where: str, rows: Sequence[Sequence[Any]], values: Mapping[str, Any],
                      history: Mapping[str, float], *, count: float, used: float, seq: float, clock: float,
                      parse: Callable[[str, Any], Any]) -> None:
        """The invariants the disk and Redis stores share, over their stored state: ``rows`` are
        ``(key, size, cost, n, base, prio, seq, ins)`` per entry; ``count``, ``used``, ``seq`` and
        ``clock`` the store's counters; ``values`` key -> stored value text, which ``parse`` turns
        into an ``Entry`` (or raises). The count and the sizes agree with the counters, the store
        is within capacity, every priority follows from its entry's state, every value parses and
        agrees with its metadata, and tie-break sequence numbers are unique."""
        if len(rows) != count:
            raise InvariantError(f"{where}: {len(rows)} entries but count={count:g}")
        total = math.fsum(r[1] for r in rows)
        if not math.isclose(total, used, rel_tol=1e-9, abs_tol=1e-9):
            raise InvariantError(f"{where}: used={used} but entry sizes sum to {total}")
        if used > self.capacity * (1 + 1e-12):
            raise InvariantError(f"{where}: used={used} exceeds capacity={self.capacity}")
        seqs = set()
        for key, size, cost, n, base, prio, s, ins in rows:
            seqs.add(s)
            if s > seq or ins > seq:
                raise InvariantError(f"{where}: {key!r} has seq {s:g}/{ins:g} beyond the counter {seq:g}")
            want = self.want_priority(size, cost, n, base, int(s), int(ins))
            if not math.isclose(prio, want, rel_tol=1e-12, abs_tol=1e-12):
                raise InvariantError(f"{where}: {key!r} has priority {prio}, its state implies {want}")
            if self.family == "greedy-dual" and base > clock:
                raise InvariantError(f"{where}: {key!r} was ranked at clock {base} > clock {clock}")
            h = history.get(key)
            if self.history and h and not math.isclose(n, h, rel_tol=1e-9):
                raise InvariantError(f"{where}: {key!r} ranked by frequency {n}, its count is {h}")
            text = values.get(key)
            if text is None:
                raise InvariantError(f"{where}: {key!r} has no value")
            e = parse(key, text)
            if e.size != size or (self.cost_aware and e.cost != cost):
                raise InvariantError(f"{where}: {key!r} value has size/cost {e.size}/{e.cost}, "
                                     f"metadata {size}/{cost}")
        if len(seqs) != len(rows):
            raise InvariantError(f"{where}: duplicate tie-break sequence numbers")


def resolve_policy(name: object, capacity: object, options: dict[str, Any]) -> StorePolicy:
    """Validate ``name``/``capacity``/``options`` exactly as ``make_policy`` does, then reduce them."""
    if not isinstance(name, str) or name.lower() not in STORE_POLICIES:
        raise UnknownNameError("store policy", name, STORE_POLICIES)
    name = name.lower()
    cap = check_positive("capacity", capacity)
    valid = [p for p in inspect.signature(POLICIES[name].__init__).parameters
             if p not in ("self", "capacity")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for policy {name!r}; "
                          f"valid options: {', '.join(valid) or 'none'}")
    try:
        pure = make_policy(name, cap, **options)  # the same validation and defaults
    except TypeError as exc:
        raise ConfigError(f"bad option for policy {name!r}: {exc}") from None
    family, fixed = STORE_POLICIES[name]
    kw: dict[str, Any] = dict(fixed)
    if family == "frequency":
        history = bool(pure.history)  # type: ignore[attr-defined]
        half_life = pure._freq.half_life if history else None  # type: ignore[attr-defined]
        kw.update(history=history, admission=bool(pure.admission),  # type: ignore[attr-defined]
                  half_life=half_life,
                  growth=1.0 if half_life is None else 2.0 ** (1.0 / half_life))
    opts = {k: v for k, v in sorted(options.items())}
    for k, v in opts.items():
        if not (v is None or isinstance(v, (bool, int, float, str))) or (
                isinstance(v, float) and not math.isfinite(v)):
            raise ConfigError(f"option {k}={v!r} for policy {name!r} must be a finite number, bool or None")
    return StorePolicy(name=name, family=family, capacity=cap, cost_aware=pure.cost_aware,
                       options=opts, **kw)
