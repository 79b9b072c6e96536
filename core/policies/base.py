"""The bounded-cache template every policy shares: hit? -> admit? -> evict until it fits -> insert."""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Iterator, MutableMapping
from typing import Any, ClassVar

from cachemux.errors import InvariantError, check_cost, check_positive

__all__ = ["Policy", "admit_value"]

_INF = math.inf


class Policy(ABC):
    """A bounded cache of keys (values live elsewhere: in a store, or nowhere in simulation).

    Capacity is in size units; with the default ``size=1`` per entry it counts entries, with
    token or byte sizes it bounds the total. Subclasses implement four hooks and never the loop:

    * ``_on_hit(key, cost)``: a cached key was requested.
    * ``_on_miss(key, cost)``: an uncached key was requested (history-keeping policies count it).
    * ``_should_admit(key, cost, size)``: may decline (LEC, Belady); classic policies always admit.
    * ``_insert(key, cost, size)`` / ``_pop_victim()`` / ``_forget(key)``: their own structure.

    Use ``access`` for a simulated request (lookup + admission in one call), or ``lookup`` then
    ``admit`` when the answer is produced in between (the engine: the cost is known only after
    generation). ``admit`` returns the evicted keys so a store can delete their values.
    """

    name: ClassVar[str] = "policy"
    cost_aware: ClassVar[bool] = False  # needs a cost with every admitted request
    # How a shared store (cachemux.stores) runs it: its family, and the class attributes whose
    # values make it that policy within the family. None: no store can (it reads the future).
    family: ClassVar[str | None] = None
    family_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, capacity: float) -> None:
        self.capacity = check_positive("capacity", capacity)
        self.used: float = 0
        self._sizes: dict[Hashable, float] = {}
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        # hot-path flags, looked up faster on the instance than on the class
        self._aware = self.cost_aware
        self._screens = type(self)._should_admit is not Policy._should_admit

    # ---- public surface -------------------------------------------------------------------
    def __contains__(self, key: Hashable) -> bool:
        return key in self._sizes

    def __len__(self) -> int:
        return len(self._sizes)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(list(self._sizes))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(capacity={self.capacity:g}, used={self.used:g}, entries={len(self)})"

    def access(self, key: Hashable, cost: float | None = None, size: float = 1) -> bool:
        """Serve one request; return True on a hit. On a miss the entry is offered for admission."""
        if key in self._sizes:
            if cost is not None and self._aware:
                cost = _valid_cost(key, cost)
            self.hits += 1
            self._on_hit(key, cost)
            return True
        # validate before counting anything, so a rejected request leaves no trace
        if self._aware:
            cost = _valid_cost(key, cost)
        if size != 1:
            size = _check_size(key, size)
        self.misses += 1
        self._on_miss(key, cost)
        self._place(key, cost, size)
        return False

    def lookup(self, key: Hashable, cost: float | None = None) -> bool:
        """Record a request and return whether it hits, without admitting anything."""
        if cost is not None and self._aware:
            cost = _valid_cost(key, cost)
        if key in self._sizes:
            self.hits += 1
            self._on_hit(key, cost)
            return True
        self.misses += 1
        self._on_miss(key, cost)
        return False

    def admit(self, key: Hashable, cost: float | None = None, size: float = 1) -> list[Hashable]:
        """Offer an entry after a miss; return the keys evicted to make room (maybe none).

        Whether it was admitted is ``key in policy`` afterwards. Offering a key that is already
        cached updates its cost and size.
        """
        if self.cost_aware:
            cost = _valid_cost(key, cost)
        if size != 1:
            size = _check_size(key, size)
        if key in self._sizes:
            self.remove(key)
        return self._place(key, cost, size)

    def remove(self, key: Hashable) -> bool:
        """Drop a key (invalidation, or a store that lost the value); True if it was cached."""
        sizes = self._sizes
        size = sizes.pop(key, None)
        if size is None:
            return False
        self.used = self.used - size if sizes else 0.0  # no float residue in an empty cache
        self._forget(key)
        return True

    def replay(self, keys: Iterable[Hashable], costs: Iterable[float] | None = None,
               sizes: Iterable[float] | None = None) -> int:
        """Serve a whole trace; return the number of hits.

        The same steps as ``access`` per request, with the attribute look-ups hoisted out of the
        loop and the no-op hooks skipped (the simulator's hot path).
        """
        if sizes is not None:
            access = self.access
            cs = costs if costs is not None else itertools.repeat(None)
            return sum(access(k, c, s) for k, c, s in zip(keys, cs, sizes))
        cached = self._sizes
        cls = type(self)
        on_hit = None if cls._on_hit is Policy._on_hit else self._on_hit
        on_miss = None if cls._on_miss is Policy._on_miss else self._on_miss
        place = self._place
        aware = self._aware
        pairs = zip(keys, itertools.repeat(None)) if costs is None else zip(keys, costs)
        hits = misses = 0
        try:
            for key, cost in pairs:
                if key in cached:
                    if cost is not None and aware and not (cost.__class__ is float and 0.0 <= cost < _INF):
                        cost = check_cost(key, cost)
                    hits += 1
                    if on_hit is not None:
                        on_hit(key, cost)
                else:
                    if aware and not (cost.__class__ is float and 0.0 <= cost < _INF):
                        cost = check_cost(key, cost)
                    misses += 1
                    if on_miss is not None:
                        on_miss(key, cost)
                    place(key, cost, 1)
        finally:
            self.hits += hits
            self.misses += misses
        return hits

    def stats(self) -> dict[str, Any]:
        total = self.hits + self.misses
        return {"policy": self.name, "hits": self.hits, "misses": self.misses,
                "evictions": self.evictions, "hit_ratio": self.hits / total if total else 0.0,
                "entries": len(self), "used": self.used, "capacity": self.capacity}

    def check_invariants(self) -> None:
        """Raise InvariantError unless size <= capacity, the accounting adds up and structures agree."""
        total = math.fsum(self._sizes.values())
        if not math.isclose(total, self.used, rel_tol=1e-9, abs_tol=1e-9):
            raise InvariantError(f"{self.name}: used={self.used} but entry sizes sum to {total}")
        if self.used > self.capacity * (1 + 1e-12):
            raise InvariantError(f"{self.name}: used={self.used} exceeds capacity={self.capacity}")
        try:
            self._check()
        except AssertionError as exc:
            raise InvariantError(f"{self.name}: {exc}") from None

    # ---- the eviction loop, written once -------------------------------------------------
    def _place(self, key: Hashable, cost: float | None, size: float) -> list[Hashable]:
        """Admit a validated, uncached entry if the policy wants it, evicting until it fits."""
        capacity = self.capacity
        if size > capacity or (self._screens and not self._should_admit(key, cost, size)):
            return []
        sizes = self._sizes
        evicted: list[Hashable] = []
        used = self.used
        if used + size > capacity:
            pop_victim = self._pop_victim
            while used + size > capacity:
                victim = pop_victim()
                used -= sizes.pop(victim)
                if not sizes:
                    used = 0.0  # no float residue in an empty cache (it would evict forever)
                evicted.append(victim)
            self.evictions += len(evicted)
        sizes[key] = size
        self.used = used + size
        self._insert(key, cost, size)
        return evicted

    # ---- hooks ----------------------------------------------------------------------------
    def _on_hit(self, key: Hashable, cost: float | None) -> None:  # noqa: B027 - optional hook
        pass

    def _on_miss(self, key: Hashable, cost: float | None) -> None:  # noqa: B027 - optional hook
        pass

    def _should_admit(self, key: Hashable, cost: float | None, size: float) -> bool:
        return True

    @abstractmethod
    def _insert(self, key: Hashable, cost: float | None, size: float) -> None: ...

    @abstractmethod
    def _pop_victim(self) -> Hashable:
        """Remove the next victim from the policy's own structure and return its key."""

    @abstractmethod
    def _forget(self, key: Hashable) -> None:
        """Remove ``key`` from the policy's own structure (it was already dropped from sizes)."""

    def _check(self) -> None:  # noqa: B027 - optional hook
        pass


def admit_value(policy: Policy, values: MutableMapping[Hashable, Any] | None, key: Hashable, value: Any,
                cost: float | None = None, size: float = 1,
                drop: Callable[[Hashable], object] | None = None) -> list[Hashable]:
    """``policy.admit`` with a map of the values it holds kept in step: a policy only tracks keys,
    so whoever keeps the values (a store, the simulator's cache) must drop each evicted key's value
    and keep the new one only if it was admitted. ``drop(k)`` is called for each evicted key, for
    whatever else the caller keeps per key. Returns the evicted keys; ``key in policy`` tells
    whether it was kept. Without a map (``values=None``) only the policy is told."""
    evicted = policy.admit(key, cost, size)
    if values is not None:
        for k in evicted:
            values.pop(k, None)
            if drop is not None:
                drop(k)
        if key in policy:
            values[key] = value
    return evicted


def _valid_cost(key: Hashable, cost: object) -> float:
    """``check_cost`` with a fast path for the common case, a finite float >= 0."""
    if cost.__class__ is float and 0.0 <= cost < _INF:
        return cost
    return check_cost(key, cost)


def _check_size(key: Hashable, size: object) -> float:
    return check_positive(f"size for key {key!r}", size)
