"""The estimators behind LEC: FrequencyEstimator (with decay and its rescale path) and RunningMeans."""

from __future__ import annotations

import math
import random

import pytest

from cachemux.errors import ConfigError
from cachemux.estimators import FrequencyEstimator, RunningMeans
from cachemux.policies import LEC, LFU, LRU
from naive_policies import power_trace


def test_plain_counts_and_probabilities():
    f = FrequencyEstimator()
    for k in "abacaba":
        f.observe(k)
    assert (f.count("a"), f.count("b"), f.count("c"), f.count("z")) == (4.0, 2.0, 1.0, 0.0)
    assert f.total == 7 and len(f) == 3
    assert f.prob("a") == pytest.approx(4 / 7) and f.prob("z") == 0.0
    assert FrequencyEstimator().prob("a") == 0.0
    assert f.weight == 1.0 and f.epoch == 0
    assert f.observe("c") == 2.0


def test_decay_ranks_recent_keys_higher():
    f = FrequencyEstimator(half_life=10)
    f.observe("old")
    for _ in range(30):
        f.observe("filler")
    f.observe("new")
    assert f.count("new") > f.count("old")
    # one request 31 steps earlier weighs 2**(-31/10) of one now
    assert f.count("old") / f.count("new") == pytest.approx(2 ** (-31 / 10))
    # two old requests lose to one recent one once they are more than a half-life older
    g = FrequencyEstimator(half_life=5)
    g.observe("a")
    g.observe("a")
    for _ in range(6):
        g.observe("x")
    g.observe("b")
    assert g.count("b") > g.count("a")
    assert 0 < g.effective_count("b") <= 1.0
    assert sum(g.prob(k) for k in "abx") == pytest.approx(1.0)


def test_rescale_keeps_ratios_and_the_key_just_seen():
    """A tiny half-life makes weights overflow the rescale threshold every few requests."""
    hl = 0.05  # each request weighs 2**20 times the previous one
    f = FrequencyEstimator(half_life=hl)
    seen = []
    for i in range(200):
        k = i % 7
        c = f.observe(k)
        assert c == f.count(k) >= 1.0  # the request just counted is never forgotten
        seen.append(k)
        # the latest request dominates: the keys still counted rank by how recently they were
        # requested (older ones fall below 1e-12 of a request and are forgotten at a rescale)
        alive = [k for k in range(7) if f.count(k) > 0]
        recent = [k for k in dict.fromkeys(reversed(seen)) if k in alive][::-1]
        assert sorted(alive, key=f.count) == recent
        assert k in alive
    assert f.epoch >= 5 and f.scale < 1.0  # 2**20 per request: a rescale every ~25
    assert all(math.isfinite(f.count(k)) for k in range(7)) and math.isfinite(f.total)
    assert 0.99 < sum(f.prob(k) for k in range(7)) <= 1.0 + 1e-9


def test_rescale_calls_back_with_the_factor():
    calls = []
    f = FrequencyEstimator(half_life=0.01, on_rescale=calls.append)  # 2**100 per request
    f.observe("a")
    f.observe("a")
    f.observe("b")
    f.observe("b")  # the next request will weigh 2**400
    assert calls == [] and f.count("a") > 1.0
    before = f.count("a")
    f.observe("c")  # weights pass 1e150: every count is multiplied by a tiny factor
    assert len(calls) == f.epoch == 1 and calls[0] == f.scale < 1e-100
    assert f.count("c") == 1.0  # rescaled so that the request just counted weighs 1
    assert f.count("a") == 0.0 < before  # 2**-300 of a request: forgotten


def test_the_smallest_half_life_still_works():
    f = FrequencyEstimator(half_life=0.001)  # growth 2**1000, close to the float limit
    for i in range(50):
        assert f.observe(i % 3) >= 1.0
    assert math.isfinite(f.total) and f.total > 0


def test_decayed_lec_with_tiny_half_life_is_lru_and_keeps_its_invariants():
    """With equal costs and a half-life of 0.2 requests, a key's count is dominated by its latest
    request, so LEC ranks by recency and admits every newcomer: exactly LRU. Counts rescale
    about every 100 requests, re-ranking the cached keys."""
    keys, _, _ = power_trace(11, n=3000, universe=30)
    lec, lru = LEC(5, half_life=0.2), LRU(5)
    last: dict[int, int] = {}
    for t, k in enumerate(keys):
        assert lec.access(k, 1.0) == lru.access(k)
        last[k] = t
        lec.check_invariants()
        if t % 97 == 0:
            by_priority = sorted(lec, key=lec.priority)
            assert by_priority == sorted(lec, key=last.__getitem__)
    assert set(lec) == set(lru)
    assert lec._freq.epoch >= 20  # the rescale path really ran


def test_decayed_lfu_history_forgets_old_favourites():
    p = LFU(1, history=True, half_life=3)
    for _ in range(5):
        p.access("old")
    assert "old" in p
    for _ in range(30):  # fifty-some half-lives later, one more recent request outweighs them
        p.access("x")
        p.access("y")
    assert "old" not in p
    p.check_invariants()


def test_a_key_admitted_without_a_lookup_ranks_as_one_request():
    p = LEC(2)
    p.admit("a", 3.0)  # never looked up
    assert p.frequency("a") == 1.0 and p.priority("a") == 3.0
    p.check_invariants()
    p.access("a", 3.0)  # its first counted request: count 1, still 1 request
    assert p.frequency("a") == 1.0
    p.access("a", 3.0)
    assert p.frequency("a") == 2.0 and p.priority("a") == 6.0
    p.check_invariants()
    d = LEC(2, half_life=2.0)
    for _ in range(5):
        d.access("b", 1.0)
    d.admit("z", 1.0)  # never looked up: it enters weighing one request made now
    d.check_invariants()
    assert d.frequency("z") == pytest.approx(d._freq.weight)


def test_running_means():
    m = RunningMeans()
    assert m.mean("q") is None and m.mean("q", 5.0) == 5.0 and m.count("q") == 0
    assert "q" not in m and len(m) == 0
    r = random.Random(0)
    xs = [r.uniform(-3, 10) for _ in range(200)]
    for x in xs:
        m.observe("q", x)
    assert m.count("q") == 200 and "q" in m and len(m) == 1
    assert m.mean("q") == pytest.approx(sum(xs) / len(xs), rel=1e-12)
    assert m.observe("r", 4) == 4.0
    assert m.lcb("r", beta=1.0, floor=0.0, default=9.0) == 3.0  # 4 - 1/sqrt(1)
    assert m.lcb("r", beta=10.0, floor=0.5, default=9.0) == 0.5  # clipped at the floor
    assert m.lcb("unseen", beta=1.0, floor=0.0, default=9.0) == 9.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "abc", None])
def test_running_means_reject_non_numbers(bad):
    m = RunningMeans()
    m.observe("q", 1.0)
    with pytest.raises(ConfigError) as info:
        m.observe("q", bad)
    assert repr(bad) in str(info.value)
    assert m.count("q") == 1 and m.mean("q") == 1.0
