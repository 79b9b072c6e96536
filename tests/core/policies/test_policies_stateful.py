"""Hypothesis stateful tests: random access/lookup/admit/remove sequences, each policy run side by
side with its naive model; invariants checked after every step."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cachemux.errors import MissingCostError
from cachemux.policies import make_policy
from naive_policies import make_naive

KEYS = st.integers(0, 7)
COSTS = st.sampled_from([0.0, 0.5, 1.0, 1.0, 2.0, 3.5])  # few values: ties happen
SIZES = st.sampled_from([1, 1, 1, 2, 3])
CAPACITY = 6

PROB = {k: p for k, p in enumerate([0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.02])}
COST = {k: c for k, c in enumerate([1.0, 3.0, 1.0, 5.0, 0.5, 2.0, 9.0, 1.0])}

SPECS = {
    "lru": ("lru", {}), "fifo": ("fifo", {}), "lfu": ("lfu", {}),
    "lfu-history": ("lfu", {"history": True}), "gds": ("gds", {}), "gdsf": ("gdsf", {}),
    "lec": ("lec", {}), "lec-offline": ("lec-offline", {"prob": PROB, "cost": COST}),
}


class PolicyVersusNaive(RuleBasedStateMachine):
    spec = "lru"

    def __init__(self) -> None:
        super().__init__()
        name, opts = SPECS[self.spec]
        self.fast = make_policy(name, CAPACITY, **opts)
        self.slow = make_naive(name, CAPACITY, **opts)
        self.cost_aware = self.fast.cost_aware

    @rule(key=KEYS, cost=COSTS, size=SIZES)
    def access(self, key, cost, size):
        assert self.fast.access(key, cost, size) == self.slow.access(key, cost, size)

    @rule(key=KEYS, cost=st.none() | COSTS)
    def lookup(self, key, cost):
        assert self.fast.lookup(key, cost) == self.slow.lookup(key, cost)

    @rule(key=KEYS, cost=COSTS, size=SIZES)
    def admit(self, key, cost, size):
        assert self.fast.admit(key, cost, size) == self.slow.admit(key, cost, size)

    @precondition(lambda self: self.cost_aware)
    @rule(key=KEYS)
    def admit_without_cost(self, key):
        with pytest.raises(MissingCostError):
            self.fast.admit(key)

    @rule(key=KEYS)
    def remove(self, key):
        assert self.fast.remove(key) == self.slow.remove(key)

    @invariant()
    def same_state(self):
        self.fast.check_invariants()
        assert set(self.fast) == set(self.slow.keys)
        assert self.fast.used == self.slow.used <= CAPACITY
        assert (self.fast.hits, self.fast.misses, self.fast.evictions) == (
            self.slow.hits, self.slow.misses, self.slow.evictions)
        if hasattr(self.fast, "clock"):
            assert self.fast.clock == self.slow.clock


def _machine(spec: str) -> type[RuleBasedStateMachine]:
    cls = type(f"Stateful_{spec.replace('-', '_')}", (PolicyVersusNaive,), {"spec": spec})
    cls.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
    return cls


for _spec in SPECS:
    _m = _machine(_spec)
    globals()[f"Test{_m.__name__}"] = _m.TestCase


class BeladyOnItsTrace(RuleBasedStateMachine):
    """Belady reads the future, so the trace is drawn first; the rules then serve it with a mix
    of access, lookup+admit and removals, in step with the naive model."""

    def __init__(self) -> None:
        super().__init__()
        self.fast = self.slow = None
        self.trace: list[int] = []
        self.pos = 0

    @precondition(lambda self: self.fast is None)
    @rule(trace=st.lists(KEYS, min_size=1, max_size=60), capacity=st.integers(1, 4))
    def start(self, trace, capacity):
        self.trace = trace
        self.fast = make_policy("belady", capacity, trace=trace)
        self.slow = make_naive("belady", capacity, trace=trace)

    @precondition(lambda self: self.fast is not None and self.pos < len(self.trace))
    @rule(flow=st.sampled_from(["access", "lookup+admit"]))
    def serve(self, flow):
        key = self.trace[self.pos]
        self.pos += 1
        if flow == "access":
            assert self.fast.access(key) == self.slow.access(key)
        else:
            hit = self.fast.lookup(key)
            assert hit == self.slow.lookup(key)
            if not hit:
                assert self.fast.admit(key) == self.slow.admit(key)

    @precondition(lambda self: self.fast is not None)
    @rule(key=KEYS)
    def remove(self, key):
        assert self.fast.remove(key) == self.slow.remove(key)

    @invariant()
    def same_state(self):
        if self.fast is not None:
            self.fast.check_invariants()
            assert set(self.fast) == set(self.slow.keys)
            assert self.fast.hits == self.slow.hits


BeladyOnItsTrace.TestCase.settings = settings(max_examples=60, stateful_step_count=50, deadline=None)
TestBelady = BeladyOnItsTrace.TestCase


class DecayedLEC(RuleBasedStateMachine):
    """Tiny half-lives force the rescale path on almost every request; only invariants here."""

    def __init__(self) -> None:
        super().__init__()
        self.p = None

    @precondition(lambda self: self.p is None)
    @rule(half_life=st.sampled_from([0.001, 0.01, 0.2, 1.0, 7.0]), capacity=st.integers(1, 5))
    def start(self, half_life, capacity):
        self.p = make_policy("lec", capacity, half_life=half_life)

    @precondition(lambda self: self.p is not None)
    @rule(key=KEYS, cost=COSTS, size=SIZES)
    def access(self, key, cost, size):
        self.p.access(key, cost, size)

    @precondition(lambda self: self.p is not None)
    @rule(key=KEYS, cost=COSTS, size=SIZES)
    def admit(self, key, cost, size):
        self.p.admit(key, cost, size)

    @precondition(lambda self: self.p is not None)
    @rule(key=KEYS)
    def remove(self, key):
        self.p.remove(key)

    @invariant()
    def holds(self):
        if self.p is not None:
            self.p.check_invariants()


DecayedLEC.TestCase.settings = settings(max_examples=60, stateful_step_count=50, deadline=None)
TestDecayedLEC = DecayedLEC.TestCase
