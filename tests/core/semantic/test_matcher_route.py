"""The semantic hit priced as a route in the joint engine (real MiniLM, real SemanticCache)."""

from __future__ import annotations

import pytest

from cachemux.cache import SemanticCache
from cachemux.errors import ConfigError
from cachemux.joint import Generation, JointEngine
from cachemux.joint.caches import SemanticHit, SemanticPort
from cachemux.joint.types import Request
from cachemux.multiplexer import StaticSelector
from cachemux.semantic import Embedder
from cachemux.stores import MemoryStore

Q = "How do I reverse a string in Python?"
PARA = "How can I reverse a string in Python?"


@pytest.fixture(scope="module")
def embedder():
    return Embedder().load()


def engine(embedder, penalty, **kw):
    calls = []

    def generate(request, model):
        calls.append(request.prompt)
        return Generation("answer for " + request.prompt, cost=1.0, success=True)

    cache = SemanticCache(MemoryStore(100, "gdsf"), embedder=embedder, **kw)
    eng = JointEngine(cache, StaticSelector("big"), generate, admit_unsettled=True, semantic_penalty=penalty)
    eng.serve(Request(Q, Q, "cfg"))
    return eng, calls


def test_semantic_hit_carries_p_wrong(embedder):
    eng, _ = engine(embedder, None)
    hit = SemanticPort(eng.cache.cache).lookup(Request(PARA, PARA, "cfg"))
    assert isinstance(hit, SemanticHit) and 0.0 <= hit.p_wrong < 0.2 and hit.price == 1.0


def test_cheap_wrong_answers_serve_the_neighbour_dear_ones_route(embedder):
    eng, calls = engine(embedder, 1.0)  # P(wrong) x 1 < the route's 1.0: served
    s = eng.serve(Request(PARA, PARA, "cfg"))
    assert s.hit and s.kind == "semantic" and calls == [Q] and eng.stats()["semantic_declined"] == 0
    eng, calls = engine(embedder, 1000.0)  # P(wrong) x 1000 > 1.0: the model route is cheaper
    s = eng.serve(Request(PARA, PARA, "cfg"))
    assert not s.hit and calls == [Q, PARA] and eng.stats()["semantic_declined"] == 1
    cs = eng.cache.stats()  # the cache does not count the hit it offered and the engine declined
    assert (cs["semantic_hits"], cs["semantic_declined"], cs["misses"], cs["cost_saved"]) == (0, 1, 2, 0.0)
    eng, calls = engine(embedder, None)  # no pricing: the matcher's point decides, as before
    assert eng.serve(Request(PARA, PARA, "cfg")).hit


def test_uncalibrated_matchers_are_not_priced(embedder):
    eng, calls = engine(embedder, 1000.0, threshold=0.8)  # plain cosine has no P(wrong)
    assert eng.serve(Request(PARA, PARA, "cfg")).hit and calls == [Q]
    with pytest.raises(ConfigError):
        JointEngine(None, StaticSelector("big"), lambda r, m: None, semantic_penalty=-1.0)
