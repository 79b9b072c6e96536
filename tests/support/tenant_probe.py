"""The faults issue's tenant probe: tenant A's 40 popular entries (each read 3 times), then
tenant B's 1,000 one-off writes, on one store; what each tenant kept afterwards."""

from __future__ import annotations

from cachemux.cache import SemanticCache

LLM = "fake-llm temperature=0"


def tenant_probe(store) -> tuple[int, int]:
    """(A's popular entries still served of 40, B's entries still stored of 1,000)."""
    cache_a = SemanticCache(store, semantic=False, namespace="A")
    cache_b = SemanticCache(store, semantic=False, namespace="B")
    for i in range(40):
        cache_a.update(f"popular {i}", LLM, f"A{i}", cost=2.0)
        for _ in range(3):
            cache_a.lookup(f"popular {i}", LLM)
    for i in range(1000):
        cache_b.lookup(f"b {i}", LLM)
        cache_b.update(f"b {i}", LLM, f"B{i}", cost=2.0)
    kept = sum(cache_a.lookup(f"popular {i}", LLM) is not None for i in range(40))
    b_kept = sum(store.peek(cache_b.key_for(f"b {i}", LLM)) is not None for i in range(1000))
    store.check_invariants()
    return kept, b_kept
