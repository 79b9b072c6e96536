"""Shared parts of the two RAG examples: documents, questions, the selector, a grounding judge,
the report. (Each example shows its own framework's wiring; this file holds what they share.)"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Offline, and OpenMP threads that sleep instead of spinning: on a busy shared CPU, spinning made
# generation ~5x slower here. Both must be set before torch is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DOCS_DIR = Path(__file__).resolve().parent / "docs"

SYSTEM = "Answer the question in one short sentence, using only this context.\nContext: {context}"

# repeats and paraphrases on purpose: the cache serves them (exactly or by meaning)
QUESTIONS = [
    "Who designed the Eiffel Tower?",
    "Which planet is the largest?",
    "What did Marie Curie discover?",
    "Who designed the Eiffel Tower?",
    "Which planet is the biggest?",
    "Who created Python?",
    "What does the LEC caching policy keep?",
    "What do drones do in a bee colony?",
    "Who was the creator of Python?",
    "What did Marie Curie discover?",
]
QUICK = [QUESTIONS[0], QUESTIONS[1], QUESTIONS[0], QUESTIONS[4]]

SMALL, LARGE = "smollm2-135m", "gemma3-270m"


_STOP = frozenset("""a an and are as at be by for from has have in is it its of on or that the this to was
were what which who whom with why how when where does did do""".split())


def parse_args(description: str, argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="4 questions, short answers (what the tests run)")
    ap.add_argument("--predictor", help="a trained multiplexer folder (cachemux train-multiplexer) over "
                                        "models named 'small' and 'large'; default: the online selector")
    ap.add_argument("--tokens", type=int, default=None, help="max new tokens per answer")
    ap.add_argument("--small", default=SMALL, help=f"the small local model (default {SMALL})")
    ap.add_argument("--large", default=LARGE,
                    help=f"the large local model (default {LARGE}: the whole run within 60 s here; "
                         "qwen2.5-coder-1.5b gives the paper's cost gap but takes minutes, see the README)")
    args = ap.parse_args(argv)
    from cachemux.models import PACKAGED

    for role in ("small", "large"):
        if getattr(args, role) not in PACKAGED:
            ap.error(f"--{role}: unknown model {getattr(args, role)!r}; known: {sorted(PACKAGED)}")
    if args.tokens is None:
        args.tokens = 16 if args.quick else 32
    return args


def load_documents() -> list[tuple[str, str]]:
    """(file name, text) of every document shipped in examples/docs."""
    return [(p.name, p.read_text(encoding="utf-8").strip()) for p in sorted(DOCS_DIR.glob("*.txt"))]


def make_selector(predictor: str | None, tokens: int, small: str = SMALL, large: str = LARGE) -> Any:
    """With a trained multiplexer: per question, the route with the least expected cost among the
    paper's two, cascade (small, then large if the judge rejects the small answer) or large alone.
    Without one: always the cascade (the judge still decides per question)."""
    from cachemux.multiplexer import StaticSelector

    if predictor:
        from cachemux.models import get_model
        from cachemux.multiplexer.trained import TrainedSelector

        # priced in the router's unit (FLOPs): a typical call here, ~150 prompt tokens + the answer
        costs = {"small": get_model(small).flops_profile.generation(150, tokens),
                 "large": get_model(large).flops_profile.generation(150, tokens)}
        return TrainedSelector(predictor, routes=[("small", "large"), ("large",)], costs=costs)
    return StaticSelector(("small", "large"))


def content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2 and w not in _STOP]


def grounded(answer: str, context: str, share: float = 0.75) -> bool:
    """A cheap judge: an answer is good enough when most of its content words are in the
    retrieved context (an ungrounded or empty answer sends the cascade on to the large model)."""
    words = content_words(answer)
    if not words:
        return False
    ctx = set(content_words(context))
    return sum(w in ctx for w in words) / len(words) >= share


def make_judge(retrieve: Callable[[str], str]) -> Callable[[Any, str, str], bool]:
    def judge(question: Any, model: str, answer: str) -> bool:
        return grounded(answer, retrieve(str(question)))
    return judge


def load_models(names: Sequence[str] = (SMALL, LARGE)) -> dict[str, float]:
    """Load the local models (de-quantising on the very first run); seconds per model."""
    from cachemux.models import get_model

    out = {}
    for name in names:
        lm = get_model(name).load()
        out[name] = lm.load_seconds
        print(f"loaded {name} from {lm.loaded_from} in {lm.load_seconds:.1f}s "
              f"({lm.flops_profile.per_token / 1e6:.0f} MFLOPs/token)", flush=True)
    return out


def report_line(i: int, question: str, answer: str, meta: dict[str, Any], seconds: float,
                names: dict[str, str] | None = None) -> dict[str, Any]:
    """One question's line: which model answered (role=model name; for a hit, the model that
    answered the cached entry), hit or the models run, cost, time, and the answer."""
    hit = meta.get("cache_hit")
    role = meta.get("model") or "?"
    who = f"{role}={names[role]}" if names and role in names else role
    how = f"cache {hit}" if hit else "miss -> " + ">".join(meta.get("models_run") or [])
    print(f"{i:>2}. [{who}] {how:<22} {meta.get('cost', 0) / 1e9:6.1f} GFLOPs "
          f"{seconds:5.1f}s  {question}\n      -> {answer.strip()[:100]}", flush=True)
    return {"question": question, "answer": answer, "model": meta.get("model"),
            "model_name": names.get(role) if names else None, "cache_hit": hit,
            "models_run": meta.get("models_run"), "cost": meta.get("cost"), "saved": meta.get("saved"),
            "seconds": seconds}


def summary(rows: list[dict[str, Any]], stats: dict[str, Any], started: float) -> dict[str, Any]:
    hits = [r for r in rows if r["cache_hit"]]
    answered: dict[str, int] = {}
    for r in rows:
        if not r["cache_hit"]:
            answered[r["model"]] = answered.get(r["model"], 0) + 1
    paid = sum(r["cost"] or 0 for r in rows)
    saved = sum(r["saved"] or 0 for r in rows)
    out = {"questions": len(rows), "answered_by": answered, "cache_hits": len(hits),
           "exact_hits": sum(r["cache_hit"] == "exact" for r in rows),
           "semantic_hits": sum(r["cache_hit"] == "semantic" for r in rows),
           "flops_paid": paid, "flops_saved_by_cache": saved,
           "model_calls": stats.get("calls"), "seconds": time.perf_counter() - started}
    names = {r["model"]: r.get("model_name") for r in rows if r.get("model_name")}
    shown = {f"{role} ({names[role]})" if role in names else role: n for role, n in answered.items()}
    print(f"\nanswered by: {shown}; model calls: {stats.get('calls')}")
    print(f"cache: {out['cache_hits']} hits of {len(rows)} ({out['exact_hits']} exact, "
          f"{out['semantic_hits']} semantic) saved {saved / 1e9:.1f} GFLOPs (what those answers cost "
          f"to produce) against {paid / 1e9:.1f} GFLOPs paid for the misses "
          f"(a failed cascade pays small + 2 x large, the paper's penalty)")
    print(f"total {out['seconds']:.1f}s")
    return out
