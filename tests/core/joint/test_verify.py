"""Verification by running the model, in the joint engine (real MiniLM, real SemanticCache): a hit
the error-bounded cache draws for a check is routed, served fresh, compared and reported; a cold
error-bounded cache learns from the runs it refused; the route pricing reads the learned error."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cachemux.cache import SemanticCache
from cachemux.errors import ConfigError
from cachemux.joint import Generation, JointEngine
from cachemux.joint.caches import SemanticHit, SemanticPort
from cachemux.joint.engine import same_text
from cachemux.joint.types import Request, Served
from cachemux.multiplexer import StaticSelector
from cachemux.semantic import Embedder
from cachemux.stores import MemoryStore
from warm_bound import warm

Q = "How do I reverse a string in Python?"
PARA = "How can I reverse a string in Python?"
CFG = "cfg"


@pytest.fixture(scope="module")
def embedder():
    return Embedder().load()


class Port:
    """A generate port with all four call forms; ``answers`` maps prompts to answers."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers, self.calls = answers, []

    def _gen(self, request: Request) -> Generation:
        self.calls.append(request.prompt)
        return Generation(self.answers.get(request.prompt, "answer for " + request.prompt), cost=1.0, success=True)

    def generate(self, request, model):
        return self._gen(request)

    async def agenerate(self, request, model):
        return self._gen(request)

    def stream(self, request, model):
        gen = self._gen(request)
        yield from gen.answer.split(" ")
        yield gen

    async def astream(self, request, model):
        for item in self.stream(request, model):
            yield item


def drive(eng: JointEngine, request: Request, how: str) -> Served:
    if how == "serve":
        return eng.serve(request)
    if how == "aserve":
        return asyncio.run(eng.aserve(request))
    if how == "stream":
        return list(eng.stream(request))[-1]

    async def collect():
        return [item async for item in eng.astream(request)]

    return asyncio.run(collect())[-1]


def bounded(embedder, **kw) -> SemanticCache:
    return SemanticCache(MemoryStore(100, "gdsf"), embedder=embedder, **kw)


def entry_state(cache: SemanticCache, prompt: str) -> dict:
    return cache.store.peek(cache.key_for(prompt, CFG)).meta.get("vc", {})


@pytest.mark.parametrize("how", ["serve", "aserve", "stream", "astream"])
@pytest.mark.parametrize("agree", [True, False])
def test_a_hit_drawn_for_verification_runs_the_model_and_reports(embedder, how, agree):
    cache = bounded(embedder, max_error=0.2, verify_rate=1.0)  # an entry with no feedback is always checked
    warm(cache)
    port = Port({Q: "Use s[::-1]", PARA: "use  S[::-1]" if agree else "Use ''.join(reversed(s))"})
    eng = JointEngine(cache, StaticSelector("big"), port, admit_unsettled=True)
    first = drive(eng, Request(Q, Q, CFG), how)
    assert not first.hit and first.checked is None  # nothing cached to compare with
    s = drive(eng, Request(PARA, PARA, CFG), how)
    # served fresh and paid for: the cached neighbour was only compared
    assert not s.hit and s.answer == port.answers[PARA] and s.cost == 1.0 and port.calls == [Q, PARA]
    assert s.checked is agree and s.metadata()["verified"] is agree
    assert s.streamed is how.endswith("stream")
    st = eng.stats()
    assert st["verify_runs"] == 1 and st["hits"] == 0 and st["total_cost"] == 2.0
    assert st["checks"] == {"agreed": int(agree), "disagreed": int(not agree), "no_verdict": 0}
    state = entry_state(cache, Q)  # the verdict is the entry's own, in its metadata
    assert len(state["ok" if agree else "bad"]) == 1 and not state.get("bad" if agree else "ok")
    assert cache.stats()["feedback"] == 1
    cs = cache.stats()  # the drawn hit was not served: not a hit in the cache's counters either
    assert (cs["semantic_hits"], cs["semantic_verified"], cs["hits"], cs["cost_saved"]) == (0, 1, 0, 0.0)


def test_a_cold_bounded_cache_learns_from_the_runs_it_refused(embedder):
    cache = bounded(embedder, max_error=0.25, verify_rate=0.0)  # ~5 agreeing runs before a hit (0.1: ~18)
    port = Port({})
    answer = "s[::-1]"
    asks = [Q, PARA, "how to reverse a string in python", "How do I reverse a string in Python",
            "What's the way to reverse a string in Python?", "How do you reverse a string in Python?",
            "How can one reverse a string in Python?", "how can I reverse a python string?"]
    port.answers = dict.fromkeys(asks, answer)
    eng = JointEngine(cache, StaticSelector("big"), port, admit_unsettled=True)
    served = [eng.serve(Request(q, q, CFG)) for q in asks]
    # no judge, no user feedback: every refused neighbour was compared with the fresh answer
    assert served[1].checked is True and not served[1].hit  # cold: nothing semantic is served
    assert any(s.hit and s.kind == "semantic" for s in served[2:])  # ... until the comparisons teach it
    assert cache.stats()["feedback"] >= 1 and eng.stats()["checks"]["agreed"] >= 1
    assert eng.stats()["checks"]["disagreed"] == 0
    assert cache.stats()["bounded"]["feedback_ok"] == eng.stats()["checks"]["agreed"]
    learned = sum(len(cache.store.peek(cache.key_for(q, CFG)).meta.get("vc", {}).get("ok", ()))
                  for q in asks if cache.store.peek(cache.key_for(q, CFG)) is not None)
    assert learned == cache.stats()["feedback"]


def test_route_pricing_reads_the_learned_error(embedder):
    cache = bounded(embedder, max_error=0.2, verify_rate=0.0)
    warm(cache, n=20)
    cache.update(Q, CFG, '{"answer": "s[::-1]", "model": "big", "paid": 1.0}', cost=1.0)
    m = cache.match(PARA, CFG)
    assert m is not None and m.kind == "semantic"
    mean, upper = cache.bound.estimate(m.score, m.score, None)
    assert m.p_wrong == pytest.approx(mean) and mean < upper <= 0.2
    assert m.p_wrong < (1 - m.score) / 2  # 200 right verdicts near this score outweigh the prior
    hit = SemanticPort(cache).lookup(Request(PARA, PARA, CFG))
    assert isinstance(hit, SemanticHit) and hit.p_wrong == pytest.approx(m.p_wrong)
    # a penalty between the two readings: the learned error serves it, the matcher's P would not
    penalty = 2.0 / (m.p_wrong + (1 - m.score))

    def gen(request, model):
        return Generation("fresh", cost=1.0, success=True)

    eng = JointEngine(cache, StaticSelector("big"), gen, admit_unsettled=True, semantic_penalty=penalty)
    assert eng.serve(Request(PARA, PARA, CFG)).hit
    plain = SemanticCache(MemoryStore(100, "gdsf"), embedder=embedder)  # no bound: the matcher's P
    plain.update(Q, CFG, '{"answer": "s[::-1]", "model": "big", "paid": 1.0}', cost=1.0)
    eng = JointEngine(plain, StaticSelector("big"), gen, admit_unsettled=True, semantic_penalty=penalty)
    s = eng.serve(Request(PARA, PARA, CFG))
    assert not s.hit and s.checked is None and eng.stats()["semantic_declined"] == 1


def test_a_declined_hit_is_compared_in_bounded_mode(embedder):
    cache = bounded(embedder, max_error=0.2, verify_rate=0.0)
    warm(cache)
    port = Port({Q: "s[::-1]", PARA: "s[::-1]"})
    eng = JointEngine(cache, StaticSelector("big"), port, admit_unsettled=True, semantic_penalty=1e6)
    eng.serve(Request(Q, Q, CFG))
    s = eng.serve(Request(PARA, PARA, CFG))
    assert not s.hit and s.checked is True and eng.stats()["semantic_declined"] == 1
    assert len(entry_state(cache, Q)["ok"]) == 1


def test_compare_errors_and_no_verdicts_report_nothing(embedder, caplog):
    def broken(cached, fresh):
        raise RuntimeError("judge down")

    for compare, key in ((broken, "no_verdict"), (lambda c, f: None, "no_verdict")):
        cache = bounded(embedder, max_error=0.2, verify_rate=1.0)
        warm(cache)
        port = Port({})
        eng = JointEngine(cache, StaticSelector("big"), port, admit_unsettled=True, compare=compare)
        eng.serve(Request(Q, Q, CFG))
        with caplog.at_level(logging.WARNING, logger="cachemux.joint.engine"):
            s = eng.serve(Request(PARA, PARA, CFG))
        assert not s.hit and s.answer == "answer for " + PARA and s.checked is None
        assert eng.stats()["checks"][key] == 1 and cache.stats()["feedback"] == 0
    assert "judge down" in caplog.text
    with pytest.raises(ConfigError, match="compare"):
        JointEngine(None, StaticSelector("big"), lambda r, m: None, compare="yes")
    assert same_text("  Paris\n", "paris") and not same_text("Paris", "Lyon")


def test_without_a_bound_nothing_is_verified(embedder):
    cache = SemanticCache(MemoryStore(100, "gdsf"), embedder=embedder)
    port = Port({})
    eng = JointEngine(cache, StaticSelector("big"), port, admit_unsettled=True)
    eng.serve(Request(Q, Q, CFG))
    s = eng.serve(Request(PARA, PARA, CFG))
    assert s.hit and s.checked is None and port.calls == [Q] and eng.stats()["verify_runs"] == 0
