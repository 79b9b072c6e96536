"""Tiny hand-made eviction-order cases, one or more per policy, worked out on paper."""

from __future__ import annotations

import pytest

from cachemux.policies import FIFO, GDS, GDSF, LEC, LFU, LRU, Belady, LECOffline


def run(p, requests):
    """Serve ``(key, cost[, size])`` requests; return what each one evicted (None if it hit)."""
    out = []
    for req in requests:
        key, cost, size = (*req, 1)[:3] if len(req) == 2 else req
        if p.lookup(key, cost):
            out.append(None)
        else:
            out.append(p.admit(key, cost, size))
        p.check_invariants()
    return out


def test_lru_evicts_the_least_recently_used():
    p = LRU(3)
    for k in "abc":
        p.access(k)
    assert p.access("a") is True  # a is now the most recent
    assert p.admit("d") == ["b"]
    assert p.admit("e") == ["c"]
    assert list(p) == ["a", "d", "e"]
    assert p.access("a") and p.admit("f") == ["d"]


def test_fifo_ignores_hits():
    p = FIFO(3)
    for k in "abc":
        p.access(k)
    assert p.access("a") is True
    assert p.admit("d") == ["a"]  # oldest admitted, although just hit
    assert p.admit("e") == ["b"]
    assert list(p) == ["c", "d", "e"]


def test_lfu_counts_requests_since_admission_and_breaks_ties_by_age():
    p = LFU(3)
    for k in "abc":
        p.access(k)
    p.access("a")
    p.access("a")
    p.access("b")  # counts a=3, b=2, c=1
    assert p.admit("d") == ["c"]
    assert p.admit("e") == ["d"]  # d entered with count 1: the least frequent again
    assert p.frequency("a") == 3 and p.frequency("e") == 1
    # a re-admitted key starts from scratch: classic LFU forgets evicted counts
    p = LFU(2)
    for k in "ab":
        p.access(k)
    p.access("a")
    p.access("b")  # a=2, b=2: b's count was set later, so a goes first on a tie
    assert p.admit("c") == ["a"]
    assert p.admit("a") == ["c"]  # c=1 < b=2
    assert p.frequency("a") == 1


def test_lfu_history_keeps_counts_and_admits_only_a_strictly_higher_count():
    p = LFU(1, history=True)
    assert run(p, [("a", None)] * 3) == [[], None, None]  # a: 3 requests
    # b needs a count strictly above 3 to replace a
    assert run(p, [("b", None)] * 4) == [[], [], [], ["a"]]
    assert "b" in p and p.frequency("b") == 4
    assert run(p, [("a", None)]) == [[]]  # a: 4, b: 4: a tie keeps the incumbent
    assert run(p, [("a", None)]) == [["b"]]  # a: 5 > 4
    assert p.stats()["hits"] == 2 and p.evictions == 2


def test_lfu_history_multi_victim_admission_needs_to_beat_every_victim():
    p = LFU(4, history=True)
    run(p, [("a", None, 2), ("b", None, 2), ("b", None)])  # a=1 (size 2), b=2 (size 2): full
    assert p.priority("a") == 0.5 and p.priority("b") == 1.0
    # c (size 4) would evict both; c=2 -> 0.5 beats neither a's 0.5 nor b's 1.0
    assert run(p, [("c", None, 4), ("c", None, 4)]) == [[], []]
    assert set(p) == {"a", "b"}
    # c=5 -> 1.25 beats both
    assert run(p, [("c", None, 4)] * 3) == [[], [], ["a", "b"]]
    assert set(p) == {"c"}


def test_gds_clock_and_ties():
    p = GDS(2)
    run(p, [("a", 1.0), ("b", 5.0)])  # H(a)=1, H(b)=5
    assert run(p, [("c", 3.0)]) == [["a"]]
    assert p.clock == 1.0 and p.priority("c") == 4.0  # H(c) = clock + 3
    assert run(p, [("d", 1.0)]) == [["c"]]  # H(c)=4 < H(b)=5
    assert p.clock == 4.0 and p.priority("d") == 5.0
    # H(b) = H(d) = 5: b's was set first, so it goes first
    assert run(p, [("e", 10.0)]) == [["b"]]
    assert p.clock == 5.0
    # a hit refreshes H to the current clock (GDS has no frequency term)
    assert run(p, [("d", 1.0)]) == [None] and p.priority("d") == 6.0


def test_gdsf_frequency_term_and_the_clock_rule():
    p = GDSF(2)
    run(p, [("a", 2.0), ("a", 2.0)])  # H(a) = 0 + 2 * 2 = 4
    run(p, [("b", 3.0)])  # H(b) = 3
    assert p.priority("a") == 4.0 and p.priority("b") == 3.0
    assert run(p, [("c", 1.0)]) == [["b"]]
    assert p.clock == 3.0  # clock := H(evicted)
    assert p.priority("c") == 4.0  # 3 + 1 * 1 / 1
    assert run(p, [("d", 0.5)]) == [["a"]]  # tie at 4: a's H was set before c's
    assert p.clock == 4.0 and p.priority("d") == 4.5
    # a hit uses the latest cost and the current clock: 4 + 2 * 3 = 10
    assert run(p, [("d", 3.0)]) == [None] and p.priority("d") == 10.0
    # a hit without a cost keeps the last one: 4 + 3 * 3 = 13
    assert p.access("d") is True and p.priority("d") == 13.0
    for _, h in p._heap.items():
        assert h >= p.clock


def test_gdsf_sizes_divide_and_can_take_several_victims():
    p = GDSF(3)
    run(p, [("a", 4.0, 2), ("b", 1.0, 1)])  # H(a) = 4/2 = 2, H(b) = 1
    assert run(p, [("c", 10.0, 2)]) == [["b", "a"]]  # b alone frees too little
    assert p.clock == 2.0 and p.priority("c") == 7.0  # 2 + 10/2
    assert p.used == 2


def test_lec_online_replaces_the_lowest_only_if_strictly_higher():
    p = LEC(2)
    run(p, [("a", 2.0), ("b", 3.0)])  # room: both admitted; priorities 1*2, 1*3
    assert run(p, [("c", 2.0)]) == [[]]  # 1*2 > 2? no: a tie keeps the incumbent
    assert set(p) == {"a", "b"}
    assert run(p, [("c", 2.0)]) == [["a"]]  # 2*2 = 4 > 2
    assert p.priority("c") == 4.0
    assert run(p, [("d", 100.0)]) == [["b"]]  # cost-aware: one request at 100 beats 3
    # counts survive eviction: b's second request ranks 2 * 3 = 6 > c's 4
    assert run(p, [("b", 3.0)]) == [["c"]]
    assert set(p) == {"b", "d"} and p.frequency("b") == 2


def test_lec_online_replaces_c_when_b_outranks_it():
    p = LEC(2)
    run(p, [("a", 2.0), ("b", 3.0), ("c", 2.0), ("c", 2.0), ("d", 100.0)])
    assert set(p) == {"c", "d"} and p.priority("c") == 4.0
    assert run(p, [("b", 1.0)]) == [[]]  # b: 2 requests, latest cost 1 -> 2 < 4
    assert run(p, [("b", 1.5)]) == [["c"]]  # b: 3 * 1.5 = 4.5 > 4
    assert p.frequency("b") == 3 and p.priority("b") == 4.5


def test_lec_without_admission_admits_every_miss():
    p = LEC(2, admission=False)
    run(p, [("a", 2.0), ("b", 3.0)])
    assert run(p, [("c", 0.5)]) == [["a"]]
    assert set(p) == {"b", "c"}


def test_lec_offline_caches_the_top_of_p_times_c():
    prob = {"a": 0.5, "b": 0.3, "c": 0.2}
    cost = {"a": 1.0, "b": 3.0, "c": 1.0}  # values 0.5, 0.9, 0.2
    p = LECOffline(2, prob=prob, cost=cost)
    assert p.warm() == ["b", "a"]
    assert p.value("b") == pytest.approx(0.9) and p.value("zzz") == 0.0
    for k in p.warm():
        assert p.admit(k) == []
    assert run(p, [("c", None), ("c", None), ("a", None)]) == [[], [], None]
    assert "c" not in p
    p.remove("a")
    assert run(p, [("a", None)]) == [[]] and "a" in p  # chosen keys come back


def test_lec_offline_ties_keep_first_seen_order_and_sizes_fill_greedily():
    p = LECOffline(2, prob={"x": 0.25, "y": 0.25, "z": 0.25, "w": 0.25}, cost=dict.fromkeys("xyzw", 1.0))
    assert p.warm() == ["x", "y"]
    # by value density: a (5/2 = 2.5), b (2/1), c (3/3 = 1); room 4: a, b, then c does not fit
    p = LECOffline(4, prob={"a": 0.5, "b": 0.2, "c": 0.3}, cost={"a": 10.0, "b": 10.0, "c": 10.0},
                   size={"a": 2, "b": 1, "c": 3})
    assert p.warm() == ["a", "b"]


def test_belady_evicts_the_farthest_next_use_and_bypasses_the_useless():
    trace = list("abcbadcab")
    p = Belady(2, trace=trace)
    out = run(p, [(k, None) for k in trace])
    # a, b fill; c (next use 6) is needed later than a (4) and b (3): bypassed
    # b hit; a hit; d: never again: bypassed; c: next use none -> bypassed
    # a hit; b hit
    assert out == [[], [], [], None, None, [], [], None, None]
    assert p.hits == 4
    trace = list("abcacb")
    p = Belady(2, trace=trace)
    out = run(p, [(k, None) for k in trace])
    # c (next 4) replaces b (next 5), the farthest; then a hit, c hit, b miss (never again)
    assert out == [[], [], ["b"], None, None, []]
    assert p.hits == 2


def test_belady_rejects_a_request_off_its_trace():
    p = Belady(2, trace=["a", "b"])
    p.access("a")
    with pytest.raises(Exception, match="'c'.*'b'"):
        p.access("c")
