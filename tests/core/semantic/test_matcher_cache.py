"""SemanticCache with the real MiniLM: the default matcher on the probe (tests/data/semantic_probe.json),
the matcher/threshold arguments, and error-bounded mode learning from feedback and a judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cachemux.cache import SemanticCache
from cachemux.errors import ConfigError
from cachemux.semantic import Embedder
from cachemux.semantic.bounded import ErrorBound
from cachemux.semantic.matcher import CosineMatcher, GuardMatcher, VerifierMatcher
from cachemux.stores import MemoryStore

LLM = "fake-llm temperature=0"
PROBE = json.loads((Path(__file__).resolve().parents[2] / "data" / "semantic_probe.json").read_text())


@pytest.fixture(scope="module")
def embedder():
    return Embedder().load()


def mem() -> MemoryStore:
    return MemoryStore(10_000, "gdsf")


def probe_hits(embedder, kind: str, **kw) -> list[bool]:
    out = []
    for a, b, _src in PROBE[kind]:
        cache = SemanticCache(mem(), embedder=embedder, **kw)
        cache.update(a, LLM, "answer to " + a, cost=1.0)
        m = cache.match(b, LLM)
        assert m is None or m.kind == "semantic"
        out.append(m is not None)
    return out


def test_probe_default_hits_paraphrases_and_not_near_misses(embedder):
    assert len(PROBE["paraphrase"]) >= 30 and len(PROBE["near_miss"]) >= 30
    cache = SemanticCache(mem(), embedder=embedder)
    assert isinstance(cache.matcher, VerifierMatcher) and cache.threshold is None
    para = probe_hits(embedder, "paraphrase")
    near = probe_hits(embedder, "near_miss")
    missed = [p[:2] for p, h in zip(PROBE["paraphrase"], para) if not h]
    served = [p[:2] for p, h in zip(PROBE["near_miss"], near) if h]
    print(f"default matcher: {sum(para)}/{len(para)} paraphrases hit, {sum(near)}/{len(near)} near misses served; "
          f"missed {missed}; served {served}")
    assert sum(para) >= 0.6 * len(para), missed
    assert sum(near) <= 2, served


def test_probe_default_beats_the_old_plain_cosine_default(embedder):
    """The reason for the change, on the same probe: plain cosine >= 0.99 (the old default)."""
    para = sum(probe_hits(embedder, "paraphrase", threshold=0.99))
    near = sum(probe_hits(embedder, "near_miss", threshold=0.99))
    new = sum(probe_hits(embedder, "paraphrase"))
    print(f"cosine >= 0.99: {para}/{len(PROBE['paraphrase'])} paraphrases, {near}/{len(PROBE['near_miss'])} near misses")
    assert new > para and near >= 1  # 0.99 still serves "Convert 10 miles to kilometers" for its reverse


def test_threshold_means_plain_cosine_and_excludes_matcher(embedder):
    c = SemanticCache(mem(), embedder=embedder, threshold=0.9)
    assert isinstance(c.matcher, CosineMatcher) and c.threshold == 0.9
    c.update("Convert 10 miles to kilometers", LLM, "16.09 km", cost=1.0)
    assert c.lookup("Convert 10 kilometers to miles", LLM) == "16.09 km"  # what plain cosine does (0.992)
    d = SemanticCache(mem(), embedder=embedder)
    d.update("Convert 10 miles to kilometers", LLM, "16.09 km", cost=1.0)
    assert d.lookup("Convert 10 kilometers to miles", LLM) is None  # the default matcher does not
    with pytest.raises(ConfigError, match="not both"):
        SemanticCache(mem(), embedder=embedder, threshold=0.9, matcher=GuardMatcher(0.9))
    with pytest.raises(ConfigError, match="matcher"):
        SemanticCache(mem(), embedder=embedder, matcher=0.9)


def test_other_embedder_falls_back_to_plain_cosine(embedder):
    class Renamed:  # the same vectors under another model's name: the verifier is not for it
        model_name = "some/other-model"
        dim = embedder.dim
        embed = staticmethod(embedder.embed)
        fits = staticmethod(embedder.fits)

    c = SemanticCache(mem(), embedder=Renamed())
    assert isinstance(c.matcher, CosineMatcher) and c.threshold == 0.99


def test_matcher_sees_embed_text_not_the_serialised_prompt(embedder):
    c = SemanticCache(mem(), embedder=embedder)
    c.update("[system] be brief\n[user] How do I reverse a string in Python?", LLM, "s[::-1]", cost=1.0,
             embed_text="How do I reverse a string in Python?")
    m = c.match("[system] be brief\n[user] How can I reverse a string in Python?", LLM,
                embed_text="How can I reverse a string in Python?")
    assert m is not None and m.kind == "semantic" and m.value == "s[::-1]" and 0.5 < m.score <= 1.0


def test_error_bounded_mode_learns_from_feedback(embedder):
    c = SemanticCache(mem(), embedder=embedder, max_error=0.1, verify_rate=0.0)
    c.update("How do I reverse a string in Python?", LLM, "s[::-1]", cost=1.0)
    # cold: no feedback yet, so no bound below 0.1 can be shown: nothing semantic is served
    asks = ["How can I reverse a string in Python?", "how to reverse a string in python",
            "How do I reverse a string in Python", "What's the way to reverse a string in Python?"]
    assert c.lookup(asks[0], LLM) is None
    assert c.candidate_of(asks[0], LLM) == c.key_for("How do I reverse a string in Python?", LLM)
    assert c.feedback(asks[0], LLM, True)  # the miss ran the model; a judge found the same answer
    assert not c.feedback(asks[0], LLM, True)  # nothing left to attribute
    served = 0
    for _ in range(12):
        for q in asks:
            served += c.lookup(q, LLM) == "s[::-1]"
            c.feedback(q, LLM, True)
    assert served > 0 and c.stats()["feedback"] >= 12
    entry = c.store.peek(c.key_for("How do I reverse a string in Python?", LLM))
    assert len(entry.meta["vc"]["ok"]) > 0 and json.dumps(entry.meta)  # learned state is JSON metadata
    # wrong feedback at these scores stops the entry serving them
    for _ in range(30):
        for q in asks:
            c.lookup(q, LLM)
            c.feedback(q, LLM, False)
    assert all(c.lookup(q, LLM) is None for q in asks)
    with pytest.raises(ConfigError):
        c.feedback(asks[0], LLM, "yes")


def test_error_bounded_judge_and_verification(embedder):
    verdicts = []

    def judge(prompt: str, answer: str) -> bool:
        verdicts.append((prompt, answer))
        return True

    c = SemanticCache(mem(), embedder=embedder, max_error=0.2, judge=judge, verify_rate=1.0)
    # the verification draws, seeded: unseeded, no draw at all came up in about 1 run in 7
    c.bound = ErrorBound(0.2, verify_rate=1.0, seed=0)
    c.update("How do I reverse a string in Python?", LLM, "s[::-1]", cost=1.0)
    for _ in range(20):
        c.lookup("How can I reverse a string in Python?", LLM)
        c.feedback("How can I reverse a string in Python?", LLM, True)
    assert verdicts and all(a == "s[::-1]" for _, a in verdicts)  # the judge graded served hits
    assert c.stats()["bounded"]["feedback_ok"] >= len(verdicts)
    with pytest.raises(ConfigError):
        SemanticCache(mem(), embedder=embedder, max_error=1.5)
    with pytest.raises(ConfigError):
        SemanticCache(mem(), embedder=embedder, max_error=0.1, judge="yes")
