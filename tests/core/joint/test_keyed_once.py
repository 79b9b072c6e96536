"""A request through the engine is keyed once by the semantic cache: the place ``locate`` computes
(exact key, partition, compared text) goes back with ``admit``, ``feedback``, ``candidate`` and
``release``, so a miss that is answered and cached, or verified in error-bounded mode, never
normalises and hashes its prompt again."""

from __future__ import annotations

import asyncio

from cachemux import MemoryStore, SemanticCache, StaticSelector
from cachemux.joint import Generation, JointEngine, Request

ONE = StaticSelector(("m",))


def spied(cache: SemanticCache) -> list[str]:
    """Count the real locator's placements (a spy: the real method runs)."""
    calls: list[str] = []
    real = cache.locator.prepare

    def prepare(prompt, *a, **kw):
        calls.append(prompt)
        return real(prompt, *a, **kw)

    cache.locator.prepare = prepare  # type: ignore[method-assign]
    return calls


def answer(request: Request, model: str) -> Generation:
    return Generation(f"answer to {request.prompt}", cost=1.0)


def test_a_miss_answered_and_cached_is_keyed_once():
    cache = SemanticCache(MemoryStore())
    calls = spied(cache)
    eng = JointEngine(cache, ONE, answer)
    q = "What is the boiling point of water at sea level?"
    served = eng.serve(Request(q, prompt=q, config="cfg"))
    assert served.admitted and calls == [q]
    calls.clear()
    assert eng.serve(Request(q, prompt=q, config="cfg")).hit and calls == [q]
    calls.clear()
    served = asyncio.run(eng.aserve(Request("Another question?", prompt="Another question?", config="cfg")))
    assert served.admitted and calls == ["Another question?"]


def test_an_error_bounded_check_is_keyed_once():
    cache = SemanticCache(MemoryStore(), max_error=0.3, verify_rate=0.0)
    eng = JointEngine(cache, ONE, answer)
    eng.serve(Request("What is the capital of France?", prompt="What is the capital of France?", config="cfg"))
    calls = spied(cache)
    para = "what's the capital city of France"
    served = eng.serve(Request(para, prompt=para, config="cfg"))
    # a cold bound serves nothing semantic: the neighbour was considered, the model ran, the two
    # answers were compared and the verdict taught the entry, all on one placement
    assert not served.hit and served.checked is not None and calls == [para]
