"""The simulator's hot path for the lazy-heap policies: a whole trace served in one loop.

GDSF/GDS (family "greedy-dual") and LFU/online LEC (family "frequency") keep one ``LazyHeap``
record ``[priority, seq, n, cost, size]`` per cached key and differ only in how a priority is
computed, whether misses are counted in a history, whether a newcomer must earn its place, and
whether an eviction moves a clock. Served through ``access``, most of a request's time goes to
method calls and attribute look-ups; ``replay_heap`` does the same operations in the same order
(so the same hits, admissions, evictions, clock and tie-break sequence numbers) with the hooks,
the counting, ``LazyHeap.push``/``pop_entry`` and ``Policy._place``'s eviction loop written out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable
from heapq import heappop, heappush
from typing import TYPE_CHECKING, cast

from cachemux.errors import check_cost
from cachemux.policies.base import Policy
from cachemux.policies.heap import STALE

if TYPE_CHECKING:
    from cachemux.policies.frequency import FrequencyPolicy
    from cachemux.policies.gdsf import GDSF

__all__ = ["replay_heap"]

_INF = math.inf


def replay_heap(policy: GDSF | FrequencyPolicy, keys: Iterable[Hashable],
                costs: Iterable[float] | None = None, sizes: Iterable[float] | None = None) -> int:
    """``Policy.replay`` for a greedy-dual or frequency policy: return the number of hits.

    Sized traces, a cost-aware policy given no costs, and decayed counts (which rescale) take
    the generic loop.
    """
    freq = getattr(policy, "_freq", None)
    aware = policy._aware
    if sizes is not None or (aware and costs is None) or (freq is not None and freq._growth != 1.0):
        return Policy.replay(policy, keys, costs, sizes)
    greedy = policy.family == "greedy-dual"
    clock: float
    first: float
    if greedy:  # H = clock + F * C / S with F the in-cache count (or 1: GDS); every miss admitted
        g = cast("GDSF", policy)
        clock, use_freq, use_cost, admission, first = g.clock, g.use_freq, True, False, 1
    else:  # n * C / S or n / S, n the in-cache count or the history count; no clock (0)
        f = cast("FrequencyPolicy", policy)
        clock, use_freq, use_cost, admission, first = 0.0, True, f._use_cost, f.admission, 1.0
    counts = freq._counts if freq is not None else None
    total = freq.total if freq is not None else 0.0
    cached = policy._sizes
    lh = policy._heap
    heap, entries = lh._heap, lh._entry
    seq = lh._seq
    capacity = policy.capacity
    fits = capacity >= 1
    used = policy.used
    hits = misses = evicted = 0
    pairs = zip(keys, itertools.repeat(None)) if costs is None else zip(keys, costs)
    try:
        for key, cost in pairs:
            rec = entries.get(key)  # every cached key has a record, and only they
            if rec is not None:
                if cost is not None and aware and not (cost.__class__ is float and 0.0 <= cost < _INF):
                    cost = check_cost(key, cost)
                hits += 1
                if counts is None:
                    n = rec[2] + 1
                else:  # FrequencyEstimator.observe, no decay
                    n = counts[key] = counts.get(key, 0.0) + 1.0
                    total += 1.0
                rec[2] = n
                if use_cost:
                    if cost is None:  # a hit may leave the cost out: the stored one stands
                        cost = rec[3]
                    else:
                        rec[3] = cost
                    if greedy:
                        prio = clock + (n if use_freq else 1) * cost / rec[4]
                    else:
                        prio = n * cost / rec[4]
                else:
                    prio = n / rec[4]
                seq += 1  # LazyHeap.push(key, prio)
                if prio >= rec[0]:
                    rec[0] = prio
                    rec[1] = seq
                    continue
                old = rec
                rec = old.copy()
                old[1] = STALE
                rec[0] = prio
                rec[1] = seq
            else:
                if aware and not (cost.__class__ is float and 0.0 <= cost < _INF):
                    cost = check_cost(key, cost)
                misses += 1
                if counts is None:
                    n = first
                else:
                    n = counts[key] = counts.get(key, 0.0) + 1.0
                    total += 1.0
                if not fits:
                    continue
                if admission and used + 1 > capacity:  # FrequencyPolicy._should_admit
                    mine = n * cost if use_cost else n
                    e = heap[0]  # LazyHeap.peek
                    if e[1] != e[3][1]:
                        e = lh._top()
                    if e[0] >= mine:
                        continue
                    if used - cached[e[2]] + 1 > capacity:  # several victims (sized entries)
                        policy.used = used
                        ok = policy._should_admit(key, cost, 1)
                        heap = lh._heap  # its preview may have compacted the heap
                        if not ok:
                            continue
                if used + 1 > capacity:  # evict until it fits (Policy._place)
                    while used + 1 > capacity:
                        e = heap[0]  # LazyHeap.pop_entry
                        if e[1] != e[3][1]:
                            e = lh._top()
                        heappop(heap)
                        victim = e[2]
                        del entries[victim]
                        if len(heap) > 2 * len(entries) + 64:
                            lh._compact()
                            heap = lh._heap
                        if greedy:
                            clock = e[0]  # GDSF's inflation step: L := H(victim)
                        used -= cached.pop(victim)
                        if not cached:
                            used = 0.0
                        evicted += 1
                cached[key] = 1
                used = used + 1
                seq += 1  # LazyHeap.push(key, prio, n, cost, 1)
                if use_cost:
                    prio = clock + n * cost
                    rec = [prio, seq, n, cost, 1]
                else:
                    prio = n
                    rec = [prio, seq, n, None, 1]
            entries[key] = rec
            heappush(heap, (prio, seq, key, rec))
            if len(heap) > 2 * len(entries) + 64:
                lh._compact()
                heap = lh._heap
    finally:
        lh._seq = seq
        policy.used = used
        if greedy:
            policy.clock = clock  # type: ignore[union-attr]
        if freq is not None:
            freq.total = total
        policy.hits += hits
        policy.misses += misses
        policy.evictions += evicted
    return hits
