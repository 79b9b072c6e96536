"""The joint engine: lookup -> route -> generate -> account -> admit/evict."""

from __future__ import annotations

import pytest

from cachemux.joint import Generation, JointEngine
from cachemux.multiplexer import OnlineSelector, StaticSelector
from cachemux.policies import LEC, LRU

CAS, LARGE = ("small", "large"), ("large",)

# query -> (small cost, small succeeds, large cost)
QUERIES = {"easy": (1.0, True, 100.0), "hard": (1.0, False, 10.0), "x": (1.0, True, 50.0)}


def generate(q, model):
    small, ok, large = QUERIES[q]
    if model == "small":
        return Generation(f"{q}:small", small, ok)
    return Generation(f"{q}:large", large, None)


def test_hit_after_miss_and_store_follows_evictions():
    store: dict = {}
    eng = JointEngine(LRU(1), StaticSelector(LARGE), generate, store)
    r1 = eng.serve("easy")
    assert not r1.hit and r1.cost == 100.0 and r1.answer == "easy:large" and r1.models == ("large",)
    r2 = eng.serve("easy")
    assert r2.hit and r2.cost == 0.0 and r2.answer == "easy:large"
    eng.serve("hard")
    assert set(store) == {"hard"}  # "easy" was evicted from the policy and from the store
    assert eng.total_cost == 110.0


def test_cascade_runs_large_only_after_small_fails():
    eng = JointEngine(LRU(10), StaticSelector(CAS), generate)
    assert eng.serve("easy").models == ("small",)
    r = eng.serve("hard")
    assert r.models == ("small", "large") and r.cost == 1.0 + 2 * 10.0 and r.answer == "hard:large"


def test_cache_priority_is_the_cost_under_the_selector():
    """The joint design: 'easy' costs 100 on the large model but only 1 under the multiplexer,
    'hard' costs 10 either way; with equal popularity a one-entry LEC cache must keep 'hard'."""
    sel = OnlineSelector([CAS, LARGE])
    eng = JointEngine(LEC(1), sel, generate)
    for q in ["easy", "easy", "hard", "hard", "easy", "hard", "easy", "hard"] * 3:
        eng.serve(q)
    # after exploration the selector knows: easy -> cascade (1), hard -> large (10)
    assert sel.choose("easy") == CAS and sel.choose("hard") == LARGE
    assert "hard" in eng.policy and "easy" not in eng.policy

    # pricing the cache by the large model's cost instead keeps the wrong entry
    eng2 = JointEngine(LEC(1), StaticSelector(LARGE), generate)
    for q in ["easy", "easy", "hard", "hard", "easy", "hard", "easy", "hard"] * 3:
        eng2.serve(q)
    assert "easy" in eng2.policy


def test_store_that_lost_a_value_is_a_miss():
    store: dict = {}
    eng = JointEngine(LRU(4), StaticSelector(LARGE), generate, store)
    eng.serve("x")
    store.clear()
    r = eng.serve("x")
    assert not r.hit and store["x"] == "x:large"


@pytest.mark.parametrize("policy", [LRU(3), LEC(3)])
def test_invariants_hold_through_the_engine(policy):
    eng = JointEngine(policy, OnlineSelector([CAS, LARGE]), generate, {})
    for i in range(200):
        eng.serve(["easy", "hard", "x"][i % 3] if i % 7 else "easy")
        policy.check_invariants()


def test_hand_computed_trace_pins_costs_hits_and_prices():
    """LRU(2) + the online selector (untried routes score 0, ties go to the cascade) on a trace
    worked out by hand; see the comments for each step."""
    store: dict = {}
    eng = JointEngine(LRU(2), OnlineSelector([CAS, LARGE]), generate, store)
    got = [eng.serve(q) for q in ["easy", "hard", "easy", "x", "hard", "easy"]]
    # 1 easy: cascade, small ok: 1. The large route is untried and would be explored next: the
    #   price (1, what was paid) is not settled, so the answer is not cached.
    # 2 hard: cascade, small fails: 1 + 2*10 = 21; both routes known (21, 10): cached at 10
    # 3 easy: miss; explores large: 100; now settled (next choice: the cascade): cached at 1
    # 4 x: cascade, small ok: 1; unsettled, not cached
    # 5 hard: hit (saved what it cost to make: 21)   6 easy: hit (saved 100)
    assert [r.cost for r in got] == [1.0, 21.0, 100.0, 1.0, 0.0, 0.0]
    assert [r.hit for r in got] == [False, False, False, False, True, True]
    assert [r.price for r in got] == [1.0, 10.0, 1.0, 1.0, 10.0, 1.0]  # a hit reports its entry's price
    assert [r.admitted for r in got] == [False, True, True, False, None, None]
    assert [r.route for r in got] == [CAS, CAS, LARGE, CAS, None, None]
    assert (got[4].saved, got[4].model, got[5].saved, got[5].model) == (21.0, "large", 100.0, "large")
    assert eng.total_cost == 123.0 and eng.hits == 2 and eng.requests == 6
    assert set(store) == {"hard", "easy"} and store["easy"] == "easy:large"
    assert eng.stats()["calls"] == {"small": 3, "large": 2}
    # admit_unsettled=True caches at once, at the observed price (never the optimistic 0)
    eng = JointEngine(LRU(2), OnlineSelector([CAS, LARGE]), generate, {}, admit_unsettled=True)
    r = eng.serve("easy")
    assert r.admitted and r.price == 1.0 and eng.serve("easy").hit


def test_an_unexplored_route_never_prices_an_entry_at_zero():
    """The README's selector and cost table: the old engine priced every entry 0 (the optimistic
    score of the untried large route); the entry must cost what a miss would."""
    from cachemux.joint import Request

    def gen(req, model):
        return Generation(f"{req.query}:{model}", None, None)

    eng = JointEngine(LEC(10), OnlineSelector([CAS, LARGE]), gen, {}, costs={"small": 1.0, "large": 10.0})
    q = Request("What is the capital of France?")
    r = eng.serve(q)  # the cascade's small answer; large untried: priced 1, cached once settled
    assert r.price == 1.0 and r.cost == 1.0 and r.admitted is False
    r = eng.serve(q)  # explores large (10): settled, cached at the cheaper route's cost
    assert r.cost == 10.0 and r.price == 1.0 and r.admitted and r.metadata()["entry_cost"] == 1.0
    hit = eng.serve(q)
    assert hit.hit and hit.metadata()["entry_cost"] == 1.0 and hit.saved == 10.0


class _Port:
    """A generate port with every method: answers are the model's name, streamed in two pieces;
    no verdict of its own (the engine's judge grades)."""

    def generate(self, req, model):
        return Generation(f"{model}-answer", None, None, text=f"{model}-answer")

    async def agenerate(self, req, model):
        return self.generate(req, model)

    def stream(self, req, model):
        yield f"{model}-"
        yield "answer"
        yield self.generate(req, model)

    async def astream(self, req, model):
        for item in self.stream(req, model):
            yield item


def test_async_and_stream_drivers_agree_with_serve():
    import asyncio

    from cachemux.joint import Chunk, Request, Served

    costs = {"small": 1.0, "large": 10.0}
    judge = lambda q, m, text: m != "small"  # noqa: E731 - the small model always fails
    outs = []
    for mode in ("serve", "aserve", "stream", "astream"):
        eng = JointEngine(LRU(4), StaticSelector(CAS), _Port(), {}, costs=costs, judge=judge)
        req = Request("q")
        if mode == "serve":
            r = eng.serve(req)
        elif mode == "aserve":
            r = asyncio.run(eng.aserve(req))
        elif mode == "stream":
            items = list(eng.stream(req))
        else:
            async def collect():
                return [i async for i in eng.astream(req)]
            items = asyncio.run(collect())
        if mode in ("stream", "astream"):
            chunks = [i.value for i in items if isinstance(i, Chunk)]
            r = items[-1]
            assert isinstance(r, Served) and r.streamed
            # the judged small model ran whole; only the large model's answer was streamed
            assert chunks == ["large-", "answer"] and {i.model for i in items[:-1]} == {"large"}
        outs.append((r.answer, r.cost, r.models, r.price))
        hit = eng.serve(req)
        assert hit.hit and hit.answer == "large-answer" and hit.saved == 1.0 + 2 * 10.0
    assert len(set(outs)) == 1 and outs[0] == ("large-answer", 21.0, ("small", "large"), 21.0)


def test_generate_must_return_a_generation_and_a_priced_cost():
    from cachemux.errors import ConfigError

    eng = JointEngine(LRU(2), StaticSelector(LARGE), lambda q, m: "text")
    with pytest.raises(ConfigError, match="Generation"):
        eng.serve("q")
    eng = JointEngine(LRU(2), StaticSelector(LARGE), lambda q, m: Generation("a"))
    with pytest.raises(ConfigError, match="no cost"):
        eng.serve("q")
    with pytest.raises(ConfigError, match="costs"):
        JointEngine(LRU(2), StaticSelector(LARGE), generate, costs="dollars")


def test_threads_share_one_engine_without_losing_counts():
    from concurrent.futures import ThreadPoolExecutor

    eng = JointEngine(LRU(3), OnlineSelector([CAS, LARGE]), generate, {})
    qs = ["easy", "hard", "x", "y"] * 250
    QUERIES.setdefault("y", (1.0, True, 5.0))
    with ThreadPoolExecutor(8) as ex:
        served = list(ex.map(eng.serve, qs))
    assert eng.requests == 1000 and eng.hits == sum(r.hit for r in served)
    assert eng.total_cost == pytest.approx(sum(r.cost for r in served))
    eng.policy.check_invariants()
