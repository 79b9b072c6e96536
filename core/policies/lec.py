"""LEC (Least Expected Cost): keep the entries with the largest P(q) * c(q), online and offline."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

from cachemux.errors import ConfigError, MissingCostError, check_cost
from cachemux.policies.base import Policy
from cachemux.policies.frequency import FrequencyPolicy
from cachemux.policies.heap import LazyHeap

__all__ = ["LEC", "LECOffline"]


class LEC(FrequencyPolicy):
    """Online LEC (the paper's Algorithm 1 as its reference code runs it).

    P(q) is estimated by counting every request (hits included) and c(q) is the latest cost the
    caller supplies for q: in the joint design that is the expected cost *under the multiplexer*
    (min over models of the estimated means), not the large model's cost. A missed key is
    admitted while there is room; when full it replaces the lowest-priority entry only if its
    own priority P(q)*c(q)/size is strictly higher. Ranking by count*cost is the same as by
    (count/total)*cost, so no per-request renormalisation is needed.
    """

    name = "lec"
    cost_aware = True
    use_cost = True

    def __init__(self, capacity: float, *, half_life: float | None = None,
                 admission: bool = True) -> None:
        super().__init__(capacity, history=True, admission=admission, half_life=half_life)


class LECOffline(Policy):
    """Offline LEC: P and c are known; cache the entries with the largest P(q)*c(q)/size.

    With unit sizes this is exactly the optimal static cache (top-L of P*c). With sizes it fills
    greedily by value density, the standard knapsack heuristic. ``warm()`` lists the chosen keys
    so a simulator can start with them cached, as the paper's offline runs do; afterwards only
    chosen keys are admitted. Offline LFU is this policy with every cost equal to 1.
    """

    name = "lec-offline"

    def __init__(self, capacity: float, prob: Mapping[Hashable, float] | None = None,
                 cost: Mapping[Hashable, float] | None = None,
                 size: Mapping[Hashable, float] | None = None) -> None:
        super().__init__(capacity)
        if prob is None:
            raise ConfigError("lec-offline needs prob={key: P(q)} (the known query distribution)")
        if cost is None:
            raise MissingCostError(
                "lec-offline needs cost={key: c(q)}; for offline LFU pass cost 1 for every key")
        value: dict[Hashable, float] = {}
        sizes: dict[Hashable, float] = {}
        for key, p in prob.items():
            pv = _number("prob", key, p)
            if not (pv >= 0) or math.isinf(pv):
                raise ConfigError(f"prob for key {key!r} must be a finite number >= 0, got {p!r}")
            if key not in cost:
                raise MissingCostError(f"lec-offline: no cost for key {key!r}")
            if cost[key] is None:
                raise MissingCostError(f"lec-offline: the cost for key {key!r} is None")
            s = 1.0 if size is None or key not in size else _number("size", key, size[key])
            if not (s > 0) or math.isinf(s):
                raise ConfigError(f"size for key {key!r} must be a finite number > 0, got {s!r}")
            sizes[key] = s
            value[key] = pv * check_cost(key, cost[key]) / s
        self._value = value
        # stable sort: ties keep first-seen order, as the reference code's sorted(..., reverse=True)
        room = self.capacity
        chosen: list[Hashable] = []
        for key in sorted(value, key=value.__getitem__, reverse=True):
            if sizes[key] <= room:
                chosen.append(key)
                room -= sizes[key]
        self._chosen = chosen
        self._chosen_set = frozenset(chosen)
        self._heap = LazyHeap()

    def warm(self) -> list[Hashable]:
        """The chosen keys, most valuable first."""
        return list(self._chosen)

    def value(self, key: Hashable) -> float:
        return self._value.get(key, 0.0)

    def _should_admit(self, key: Hashable, cost: float | None, size: float) -> bool:
        return key in self._chosen_set

    def _insert(self, key: Hashable, cost: float | None, size: float) -> None:
        self._heap.push(key, self._value[key])

    def _pop_victim(self) -> Hashable:
        return self._heap.pop()[0]

    def _forget(self, key: Hashable) -> None:
        self._heap.remove(key)

    def _check(self) -> None:
        self._heap.check()
        if set(k for k, _ in self._heap.items()) != set(self._sizes):
            raise AssertionError("value heap and entry map disagree")
        if not set(self._sizes) <= self._chosen_set:
            raise AssertionError("a key outside the chosen set is cached")


def _number(what: str, key: Hashable, value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} for key {key!r} must be a number, got {value!r}") from None
