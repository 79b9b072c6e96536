"""LazyHeap, the structure under every priority policy: exact order, deferred raises, compaction."""

from __future__ import annotations

import random

import pytest

from cachemux.policies.heap import LazyHeap


def eager_order(ops):
    """The reference: a dict of key -> (priority, seq), min() at each pop."""
    cur, seq, popped = {}, 0, []
    for op, key, prio in ops:
        if op == "push":
            seq += 1
            cur[key] = (prio, seq)
        elif op == "remove":
            cur.pop(key, None)
        elif cur:
            k = min(cur, key=cur.__getitem__)
            popped.append((k, cur.pop(k)[0]))
    return popped, {k: v[0] for k, v in cur.items()}


@pytest.mark.parametrize("seed", range(10))
def test_matches_an_eager_min_scan(seed):
    r = random.Random(seed)
    ops = []
    for _ in range(3000):
        x = r.random()
        key = r.randrange(40)
        if x < 0.75:
            ops.append(("push", key, float(r.randrange(20))))  # few values: many ties
        elif x < 0.85:
            ops.append(("remove", key, None))
        else:
            ops.append(("pop", None, None))
    h = LazyHeap()
    popped = []
    for op, key, prio in ops:
        if op == "push":
            h.push(key, prio)
        elif op == "remove":
            if key in h:
                h.remove(key)
        elif len(h):
            if r.random() < 0.3:
                k, p = h.peek()
                assert h.pop() == (k, p)
                popped.append((k, p))
            else:
                popped.append(h.pop())
        h.check()
    want_popped, want_left = eager_order(ops)
    assert popped == want_popped
    assert dict(h.items()) == want_left
    assert all(h.priority(k) == p for k, p in want_left.items())


def test_a_raise_is_deferred_and_a_cut_is_pushed():
    h = LazyHeap()
    h.push("a", 1.0)
    h.push("b", 2.0)
    h.push("a", 5.0)  # raise: no new heap entry
    assert len(h._heap) == 2 and h.priority("a") == 5.0
    assert h.peek() == ("b", 2.0)  # a was re-seated on the way
    h.push("a", 0.5)  # cut: a fresh entry, the old one goes stale
    assert len(h._heap) == 3 and h.pop() == ("a", 0.5)
    h.check()


def test_equal_priorities_pop_in_order_of_their_last_update():
    h = LazyHeap()
    for k in "abc":
        h.push(k, 1.0)
    h.push("a", 1.0)  # same priority, set again: a is now the newest
    assert [h.pop()[0] for _ in range(3)] == ["b", "c", "a"]


def test_stale_entries_are_compacted_by_removals_too():
    h = LazyHeap()
    for i in range(500):
        h.push(i, 100.0 - i)
        h.push(i, -float(i))  # cuts leave stale entries behind
    for i in range(500):
        h.remove(i)
        h.check()
    assert len(h) == 0 and len(h._heap) <= 65


def test_pop_entry_and_restore_keep_the_tie_break():
    h = LazyHeap()
    for k in "xyz":
        h.push(k, 1.0)
    taken = [h.pop_entry(), h.pop_entry()]
    assert [e[2] for e in taken] == ["x", "y"] and len(h) == 1
    for e in taken:
        h.restore(e)
    h.check()
    assert [h.pop()[0] for _ in range(3)] == ["x", "y", "z"]
