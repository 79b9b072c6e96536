"""Naive O(n)-scan reference policies: the differential tests' oracle and the benchmark's baseline.

Written independently of ``cachemux.policies`` and shaped like the paper's reference code: the
cache is a plain list of keys and every miss that needs room does a ``min()`` over all cached
keys' weights, recomputed at each scan: O(n) per miss. (The paper's code also finds hits with
``key in list``; here membership is a dict look-up, so only misses pay the scan.) Nothing here is
clever, so it is easy to check by eye against the paper (sections 3.1/3.2) and the textbook
definitions.

Tie-breaks replicate cachemux's lazy heap: among equal weights the key whose weight was set
earliest goes first. Every time a key's weight is (re)set it gets a fresh stamp from a global
counter, and ``rank(k) = (weight(k), stamp[k])``.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import math
import random
from collections.abc import Hashable, Mapping, Sequence

__all__ = ["NAIVE", "NaiveBelady", "NaiveCache", "NaiveFIFO", "NaiveGDS", "NaiveGDSF", "NaiveLEC",
           "NaiveLECOffline", "NaiveLFU", "NaiveLRU", "make_naive", "offline_knowledge", "power_trace"]


class NaiveCache:
    """The shared list-and-scan skeleton; subclasses define ``weight`` and the hooks."""

    cost_aware = False

    def __init__(self, capacity: float) -> None:
        self.capacity = capacity
        self.keys: list[Hashable] = []
        self.size: dict[Hashable, float] = {}
        self.used = 0.0
        self.hits = self.misses = self.evictions = 0
        self.stamp: dict[Hashable, int] = {}
        self._ticks = itertools.count()

    # the public surface, mirroring cachemux.Policy
    def __contains__(self, key: Hashable) -> bool:
        return key in self.size

    def __len__(self) -> int:
        return len(self.keys)

    def access(self, key: Hashable, cost: float | None = None, size: float = 1) -> bool:
        if self.lookup(key, cost):
            return True
        self.offer(key, cost, size)
        return False

    def lookup(self, key: Hashable, cost: float | None = None) -> bool:
        hit = key in self.size
        if hit:
            self.hits += 1
            self.hit(key, cost)
        else:
            self.misses += 1
            self.miss(key, cost)
        return hit

    def admit(self, key: Hashable, cost: float | None = None, size: float = 1) -> list[Hashable]:
        if key in self.size:
            self.remove(key)
        return self.offer(key, cost, size)

    def remove(self, key: Hashable) -> bool:
        if key not in self.size:
            return False
        self.keys.remove(key)
        self.used -= self.size.pop(key)
        self.dropped(key)
        return True

    # the algorithm
    def rank(self, key: Hashable) -> tuple[float, int]:
        return (self.weight(key), self.stamp[key])

    def touch(self, key: Hashable) -> None:
        self.stamp[key] = next(self._ticks)

    def victims(self, size: float) -> list[Hashable]:
        """The keys that would go, lowest rank first, for ``size`` more units to fit."""
        out: list[Hashable] = []
        left = self.keys
        used = self.used
        while used + size > self.capacity and left:
            v = min(left, key=self.rank)  # the paper's O(n) scan
            out.append(v)
            used -= self.size[v]
            if used + size > self.capacity:
                left = [k for k in left if k not in out]
        return out

    def plan(self, key: Hashable, cost: float | None, size: float) -> list[Hashable] | None:
        """Victims to evict for ``key``, or None to turn it away."""
        return self.victims(size)

    def offer(self, key: Hashable, cost: float | None, size: float) -> list[Hashable]:
        if size > self.capacity:
            return []
        out = self.plan(key, cost, size)
        if out is None:
            return []
        for v in out:
            self.evicted(v)
            self.keys.remove(v)
            self.used -= self.size.pop(v)
            self.dropped(v)
            self.evictions += 1
        self.keys.append(key)
        self.size[key] = size
        self.used += size
        self.inserted(key, cost, size)
        return out

    # hooks
    def weight(self, key: Hashable) -> float:
        raise NotImplementedError

    def hit(self, key: Hashable, cost: float | None) -> None:
        pass

    def miss(self, key: Hashable, cost: float | None) -> None:
        pass

    def inserted(self, key: Hashable, cost: float | None, size: float) -> None:
        self.touch(key)

    def evicted(self, key: Hashable) -> None:
        pass

    def dropped(self, key: Hashable) -> None:
        pass


class NaiveFIFO(NaiveCache):
    """Weight = admission time."""

    def weight(self, key: Hashable) -> float:
        return self.stamp[key]


class NaiveLRU(NaiveFIFO):
    """Weight = time of the last request."""

    def hit(self, key: Hashable, cost: float | None) -> None:
        self.touch(key)


class NaiveLFU(NaiveCache):
    """Classic LFU: requests since admission / size; with ``history``, every request ever seen,
    and a newcomer must beat the victims (the paper's "LFU", online LEC with equal costs)."""

    use_cost = False

    def __init__(self, capacity: float, history: bool = False, half_life: float | None = None) -> None:
        super().__init__(capacity)
        self.history = history
        self.half_life = half_life
        self.now = 0
        self.seen: dict[Hashable, list[int]] = {}  # request times per key (history)
        self.local: dict[Hashable, float] = {}  # in-cache request counts
        self.cost: dict[Hashable, float] = {}

    def count(self, key: Hashable) -> float:
        if not self.history:
            return self.local[key]
        times = self.seen.get(key, ())
        if self.half_life is None:
            return float(len(times)) or 1.0
        # sum of 2**(-age / half_life), in units of one request at the latest time
        if not times:
            raise NotImplementedError("the naive decayed count needs every key looked up first")
        return math.fsum(2.0 ** ((t - self.now) / self.half_life) for t in times)

    def value(self, n: float, cost: float | None, size: float) -> float:
        return n * cost / size if self.use_cost else n / size  # type: ignore[operator]

    def weight(self, key: Hashable) -> float:
        return self.value(self.count(key), self.cost.get(key), self.size[key])

    def observe(self, key: Hashable) -> None:
        self.now += 1
        self.seen.setdefault(key, []).append(self.now)

    def hit(self, key: Hashable, cost: float | None) -> None:
        if self.history:
            self.observe(key)
        else:
            self.local[key] += 1.0
        if cost is not None and self.use_cost:
            self.cost[key] = cost
        self.touch(key)

    def miss(self, key: Hashable, cost: float | None) -> None:
        if self.history:
            self.observe(key)

    def plan(self, key: Hashable, cost: float | None, size: float) -> list[Hashable] | None:
        out = self.victims(size)
        if not self.history:
            return out
        mine = self.value(self.count(key) if self.seen.get(key) else 1.0, cost, size)
        if any(self.weight(v) >= mine for v in out):  # strictly higher, or keep the incumbent
            return None
        return out

    def inserted(self, key: Hashable, cost: float | None, size: float) -> None:
        self.local[key] = 1.0
        if self.use_cost:
            self.cost[key] = cost  # type: ignore[assignment]
        self.touch(key)

    def dropped(self, key: Hashable) -> None:
        self.local.pop(key, None)
        self.cost.pop(key, None)


class NaiveLEC(NaiveLFU):
    """Online LEC: weight = count * cost / size over every request seen; admission as above."""

    cost_aware = True
    use_cost = True

    def __init__(self, capacity: float, half_life: float | None = None) -> None:
        super().__init__(capacity, history=True, half_life=half_life)


class NaiveGDSF(NaiveCache):
    """H = clock + F * C / S; a hit recomputes H; evicting sets clock := H(victim)."""

    cost_aware = True
    use_freq = True

    def __init__(self, capacity: float) -> None:
        super().__init__(capacity)
        self.clock = 0.0
        self.h: dict[Hashable, float] = {}
        self.f: dict[Hashable, int] = {}
        self.c: dict[Hashable, float] = {}

    def weight(self, key: Hashable) -> float:
        return self.h[key]

    def refresh(self, key: Hashable) -> None:
        f = self.f[key] if self.use_freq else 1
        self.h[key] = self.clock + f * self.c[key] / self.size[key]
        self.touch(key)

    def hit(self, key: Hashable, cost: float | None) -> None:
        self.f[key] += 1
        if cost is not None:
            self.c[key] = cost
        self.refresh(key)

    def inserted(self, key: Hashable, cost: float | None, size: float) -> None:
        self.f[key] = 1
        self.c[key] = cost  # type: ignore[assignment]
        self.refresh(key)

    def evicted(self, key: Hashable) -> None:
        self.clock = self.h[key]

    def dropped(self, key: Hashable) -> None:
        del self.h[key], self.f[key], self.c[key]


class NaiveGDS(NaiveGDSF):
    use_freq = False


class NaiveLECOffline(NaiveCache):
    """Static cache of the largest P * c / size, filled greedily; weight = that value."""

    def __init__(self, capacity: float, prob: Mapping[Hashable, float],
                 cost: Mapping[Hashable, float], size: Mapping[Hashable, float] | None = None) -> None:
        super().__init__(capacity)
        sz = {k: (size or {}).get(k, 1.0) for k in prob}
        self.val = {k: prob[k] * cost[k] / sz[k] for k in prob}
        best_first = sorted(prob, key=lambda k: -self.val[k])  # stable: first-seen wins ties
        self.chosen: list[Hashable] = []
        room = capacity
        for k in best_first:
            if sz[k] <= room:
                self.chosen.append(k)
                room -= sz[k]

    def warm(self) -> list[Hashable]:
        return list(self.chosen)

    def weight(self, key: Hashable) -> float:
        return self.val[key]

    def plan(self, key: Hashable, cost: float | None, size: float) -> list[Hashable] | None:
        return self.victims(size) if key in self.chosen else None


class NaiveBelady(NaiveCache):
    """Evict the key whose next request is farthest; bypass a newcomer needed later than all.
    Each key's next use is looked up (bisect in its list of positions) at every scan."""

    def __init__(self, capacity: float, trace: Sequence[Hashable]) -> None:
        super().__init__(capacity)
        self.at: dict[Hashable, list[int]] = {}
        for i, k in enumerate(trace):
            self.at.setdefault(k, []).append(i)
        self.pos = 0  # index of the next request

    def next_use(self, key: Hashable) -> float:
        at = self.at.get(key, [])
        i = bisect.bisect_left(at, self.pos)
        return at[i] if i < len(at) else math.inf

    def weight(self, key: Hashable) -> float:
        return -self.next_use(key)

    def hit(self, key: Hashable, cost: float | None) -> None:
        self.pos += 1
        self.touch(key)

    def miss(self, key: Hashable, cost: float | None) -> None:
        self.pos += 1

    def plan(self, key: Hashable, cost: float | None, size: float) -> list[Hashable] | None:
        mine = self.next_use(key)
        if mine == math.inf:
            return None
        out = self.victims(size)
        if out and self.next_use(out[0]) <= mine:
            return None
        return out


NAIVE: dict[str, type[NaiveCache]] = {
    "lru": NaiveLRU, "fifo": NaiveFIFO, "lfu": NaiveLFU, "gds": NaiveGDS, "gdsf": NaiveGDSF,
    "lec": NaiveLEC, "lec-offline": NaiveLECOffline, "belady": NaiveBelady,
}


def make_naive(name: str, capacity: float, **options: object) -> NaiveCache:
    return NAIVE[name](capacity, **options)  # type: ignore[arg-type]


# ---- the seeded traces the references are compared on ----------------------------------------
def power_trace(seed: int, n: int = 2000, universe: int = 60, alpha: float = 1.2,
                costs: str = "uniform", max_size: int = 1) -> tuple[list[int], list[float], list[int]]:
    """Keys with P(i) ~ (i+1)**-alpha, per-request costs, integer sizes in 1..max_size.

    ``costs="uniform"``: continuous U(0.1, 10) (no ties); ``"discrete"``: {1, 2} (many ties,
    which exercises the tie-break); ``"unit"``: all 1.
    """
    r = random.Random(seed)
    weights = [1.0 / (i + 1) ** alpha for i in range(universe)]
    keys = r.choices(range(universe), weights, k=n)
    if costs == "uniform":
        cs = [r.uniform(0.1, 10.0) for _ in range(n)]
    elif costs == "discrete":
        cs = [float(r.choice((1, 2))) for _ in range(n)]
    else:
        cs = [1.0] * n
    sizes = [r.randint(1, max_size) for _ in range(n)]
    return keys, cs, sizes


def offline_knowledge(keys: Sequence[Hashable], costs: Sequence[float]) -> dict[str, dict]:
    """The empirical P and mean cost of a trace: what the paper's offline runs give LEC."""
    count = collections.Counter(keys)
    total: dict[Hashable, float] = collections.defaultdict(float)
    for k, c in zip(keys, costs):
        total[k] += c
    return {"prob": {k: n / len(keys) for k, n in count.items()},
            "cost": {k: total[k] / n for k, n in count.items()}}
