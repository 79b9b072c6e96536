"""Conformance suite: every registered policy keeps the Policy contract (cachetools' CacheTestMixin style).

Also the variant table and builders the other policy test modules share.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import pytest

from cachemux.errors import ConfigError, UnknownNameError
from cachemux.policies import POLICIES, Policy, make_policy
from naive_policies import offline_knowledge, power_trace

# every registered policy, plus the paper's history LFU, as (label, registry name, options)
VARIANTS: list[tuple[str, str, dict[str, Any]]] = []
for _name in POLICIES:
    VARIANTS.append((_name, _name, {}))
    if _name == "lfu":
        VARIANTS.append(("lfu-history", "lfu", {"history": True}))
LABELS = [label for label, _, _ in VARIANTS]
SIZED = [label for label in LABELS if label != "belady"]  # belady is unit-size only


def options(label: str, keys: Sequence[Hashable] = (), costs: Sequence[float] = ()) -> dict[str, Any]:
    """The constructor options a variant needs to serve this trace (belady reads it, offline
    LEC is told its empirical P and mean costs)."""
    name, opts = next((n, o) for lab, n, o in VARIANTS if lab == label)
    if name == "belady":
        return {"trace": list(keys)}
    if name == "lec-offline":
        return offline_knowledge(keys, costs)
    return dict(opts)


def build(label: str, capacity: float, keys: Sequence[Hashable] = (),
          costs: Sequence[float] = ()) -> Policy:
    name = next(n for lab, n, _ in VARIANTS if lab == label)
    return make_policy(name, capacity, **options(label, keys, costs))


def served(p: Policy, keys: Sequence[Hashable], costs: Sequence[float],
           sizes: Sequence[float] | None = None) -> list[bool]:
    """Serve a trace with ``access``, checking the contract after every single step."""
    out = []
    start = p.hits + p.misses
    for i, (k, c) in enumerate(zip(keys, costs)):
        s = 1 if sizes is None else sizes[i]
        was_in = k in p
        before = len(p)
        hit = p.access(k, c, s)
        out.append(hit)
        assert hit == was_in
        p.check_invariants()
        assert p.used <= p.capacity
        assert p.hits + p.misses == start + i + 1
        assert len(p) == len(list(p)) == len(set(p))
        assert all(key in p for key in p)
        if hit:
            assert len(p) == before and k in p
        assert math.isclose(p.used, sum(1 if sizes is None else _size_of(p, key) for key in p))
    return out


def _size_of(p: Policy, key: Hashable) -> float:
    return p._sizes[key]


@pytest.mark.parametrize("label", LABELS)
def test_every_step_keeps_the_contract(label):
    keys, costs, _ = power_trace(1, n=600, universe=40)
    p = build(label, 7, keys, costs)
    hits = served(p, keys, costs)
    assert len(p) <= 7
    assert p.hits == sum(hits) and p.misses == len(keys) - sum(hits)
    st = p.stats()
    assert st["policy"] == p.name and st["hits"] == p.hits and st["misses"] == p.misses
    assert st["hit_ratio"] == pytest.approx(p.hits / len(keys))
    assert st["entries"] == len(p) and st["capacity"] == 7
    assert 0 < p.hits < len(keys)  # the trace is skewed enough for every policy to hit sometimes


@pytest.mark.parametrize("label", SIZED)
def test_sized_capacity_is_a_bound_on_total_size(label):
    keys, costs, sizes = power_trace(2, n=600, universe=40, max_size=5)
    p = build(label, 12, keys, costs)
    served(p, keys, costs, sizes)
    assert p.evictions > 0
    # fractional sizes and capacity as well
    p = build(label, 3.5, keys, costs)
    served(p, keys, costs, [s * 0.7 for s in sizes])


@pytest.mark.parametrize("label", SIZED)
def test_an_entry_bigger_than_capacity_is_never_admitted(label):
    keys = ["a", "b", "big", "big"]
    costs = [1.0, 2.0, 50.0, 50.0]
    p = build(label, 4, keys, costs)
    if label == "lec-offline":
        p = make_policy("lec-offline", 4, prob={"a": 0.2, "b": 0.2, "big": 0.6},
                        cost={"a": 1.0, "b": 2.0, "big": 50.0})
    p.access("a", 1.0)
    p.access("b", 2.0)
    cached = set(p)
    assert p.access("big", 50.0, 4.5) is False
    assert "big" not in p and set(p) == cached
    assert p.admit("big", 50.0, 5) == []
    assert "big" not in p and set(p) == cached
    p.check_invariants()
    assert p.access("big", 50.0, 4) is False  # exactly the capacity fits
    assert "big" in p or label in ("lec", "lfu-history")  # the admission policies may decline
    p.check_invariants()


def test_belady_never_admits_more_than_capacity():
    p = make_policy("belady", 0.5, trace=["a", "a"])
    assert p.access("a") is False and p.access("a") is False
    assert len(p) == 0


@pytest.mark.parametrize("label", LABELS)
def test_remove(label):
    keys, costs, _ = power_trace(3, n=300, universe=20)
    p = build(label, 5, keys, costs)
    if label == "lec-offline":
        for k in p.warm():
            p.admit(k)
    served(p, keys[:150], costs[:150])
    assert len(p) > 0
    victim = next(iter(p))
    n, used = len(p), p.used
    assert p.remove(victim) is True
    assert victim not in p and victim not in list(p)
    assert len(p) == n - 1 and p.used == pytest.approx(used - 1)
    p.check_invariants()
    assert p.remove(victim) is False
    assert p.remove("never-seen") is False
    served(p, keys[150:], costs[150:])  # the policy keeps working after a removal
    for k in list(p):
        assert p.remove(k)
    assert len(p) == 0 and p.used == 0
    p.check_invariants()


@pytest.mark.parametrize("label", LABELS)
def test_admit_returns_the_evicted_keys(label):
    """The engine's flow: lookup, then admit on a miss; evicted keys are gone, nothing else is."""
    keys, costs, sizes = power_trace(4, n=500, universe=30, max_size=1 if label == "belady" else 3)
    p = build(label, 6, keys, costs)
    evicted_total = 0
    for k, c, s in zip(keys, costs, sizes):
        if p.lookup(k):
            continue
        before = set(p)
        evicted = p.admit(k, c, s)
        assert isinstance(evicted, list) and len(evicted) == len(set(evicted))
        assert set(evicted) <= before
        assert not any(e in p for e in evicted)
        assert set(p) == (before - set(evicted)) | ({k} & set(p))
        if k not in p:
            assert evicted == []  # a declined entry evicts nothing
        evicted_total += len(evicted)
        p.check_invariants()
    assert evicted_total == p.evictions > 0
    assert p.hits + p.misses == len(keys)


@pytest.mark.parametrize("label", SIZED)
def test_readmitting_a_cached_key_updates_its_size(label):
    p = build(label, 10, ["a", "b"], [1.0, 1.0])
    p.access("a", 1.0)
    p.access("b", 1.0)
    p.admit("a", 1.0, 4)
    if "a" in p:
        assert p.used == 5
    p.check_invariants()


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("sized", [False, True])
def test_replay_is_access_in_a_loop(label, sized):
    if sized and label == "belady":
        pytest.skip("belady is unit-size only")
    keys, costs, sizes = power_trace(5, n=800, universe=50, max_size=3 if sized else 1)
    a = build(label, 8, keys, costs)
    b = build(label, 8, keys, costs)
    hits = a.replay(keys, costs, sizes if sized else None)
    seq = [b.access(k, c, s) for k, c, s in zip(keys, costs, sizes)]
    assert hits == sum(seq) == a.hits == b.hits
    assert a.misses == b.misses and a.evictions == b.evictions
    assert list(a) == list(b)
    a.check_invariants()


@pytest.mark.parametrize("label", ["lru", "fifo", "lfu", "lfu-history", "belady"])
def test_cost_oblivious_policies_need_no_costs(label):
    keys, _, _ = power_trace(6, n=300, universe=20)
    p = build(label, 4, keys, [1.0] * len(keys))
    assert p.replay(keys) == p.hits > 0
    p.check_invariants()


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_registry_and_make_policy(name):
    cls = POLICIES[name]
    assert cls.name == name and issubclass(cls, Policy)
    extra = {"trace": ["x"]} if name == "belady" else {}
    if name == "lec-offline":
        extra = {"prob": {"x": 1.0}, "cost": {"x": 1.0}}
    p = make_policy(name.upper(), 3, **extra)
    assert type(p) is cls and p.capacity == 3.0 and len(p) == 0
    assert name in repr(p).lower() or cls.__name__ in repr(p)


def test_unknown_policy_lists_the_valid_names():
    with pytest.raises(UnknownNameError) as info:
        make_policy("lfru", 10)
    msg = str(info.value)
    assert "'lfru'" in msg
    for name in POLICIES:
        assert name in msg
    assert isinstance(info.value, ConfigError) and isinstance(info.value, KeyError)
    with pytest.raises(UnknownNameError, match="valid choices"):
        make_policy(3, 10)  # type: ignore[arg-type]


def _warmed(label, keys, costs):
    p = build(label, 12, keys, costs)
    for i, k in enumerate(("w1", "w2", "w3", "w4")):  # sized entries: 2.5 and 0.5 units
        p.admit(k, 3.0 + i, 0.5 if i % 2 else 2.5)
    return p


@pytest.mark.parametrize("label", ["lec", "gdsf", "gds", "lfu", "lfu-history"])
@pytest.mark.parametrize("costs_kind", ["uniform", "discrete"])
def test_fused_replay_leaves_the_state_access_leaves(label, costs_kind):
    """The priority policies' one-loop ``replay`` against ``access`` from a state with sized
    entries (several victims per admission, fractional ones), ties, and hits without a cost:
    same hits, same priorities and tie-break order, and the same behaviour afterwards."""
    keys, costs, _ = power_trace(7, n=3000, universe=80, costs=costs_kind)
    b = _warmed(label, keys, costs)
    realised, want = [], 0
    for i, (k, c) in enumerate(zip(keys, costs)):
        if not b.cost_aware:
            c = None
        elif k in b and i % 7 == 3:
            c = None  # a hit may leave the cost out: the stored one stands
        realised.append(c)
        want += b.access(k, c)
    a = _warmed(label, keys, costs)
    assert a.replay(keys, realised) == want == a.hits
    assert (a.misses, a.evictions, a.used) == (b.misses, b.evictions, b.used)
    assert list(a) == list(b)
    assert {k: a.priority(k) for k in a} == {k: b.priority(k) for k in b}
    assert getattr(a, "clock", None) == getattr(b, "clock", None)
    a.check_invariants()
    # the tie-break order carries on identically (same sequence numbers)
    assert [a.access(k, 1.0) for k in keys[:500]] == [b.access(k, 1.0) for k in keys[:500]]
    assert list(a) == list(b)
