"""Real-data workloads from RouteLLM's MMLU evaluation (Mixtral-8x7B small, GPT-4 large)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cachemux import paths
from cachemux.errors import ConfigError
from cachemux.sim.workload import Workload, power_probs, sample_requests
from cachemux.units import estimate_tokens

__all__ = ["LARGE_MODEL", "PRICES_PER_MTOK", "SMALL_MODEL", "RoutingQuery", "load_mmlu", "routing_workload"]

SMALL_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
LARGE_MODEL = "gpt-4-1106-preview"
# $ per million tokens, blended input/output: the prices RouteLLM (Ong et al. 2024) uses for this
# very pair (the one price table: the multiplexer's evaluation in cachemux.lab reads it too). Cost
# of a request = tokens * price, in milli-dollars (1e-3 $), so the suites' total cost / 1000 is in
# dollars.
PRICES_PER_MTOK = {"small": 0.24, "large": 24.7}
ANSWER_TOKENS = 1  # MMLU is answered with one letter


@dataclass(frozen=True)
class RoutingQuery:
    prompt: str
    subject: str
    small_correct: bool
    large_correct: bool

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.prompt) + ANSWER_TOKENS


def load_mmlu(data_dir: Path | None = None, split: str | None = None) -> list[RoutingQuery]:
    """MMLU prompts with per-model correctness; ``split`` = "train" / "test" subjects (SPLITS.json)
    or None for all 57 subjects."""
    root = (Path(data_dir) if data_dir is not None else paths.data_dir("routing")) / "routing"
    subjects = sorted(p.stem.removeprefix("mmlu_") for p in (root / "mmlu").glob("mmlu_*.csv"))
    if not subjects:
        raise ConfigError(f"no MMLU files under {root / 'mmlu'}")
    if split is not None:
        splits = json.loads((root / "SPLITS.json").read_text())
        if split not in ("train", "test"):
            raise ConfigError(f"split must be 'train', 'test' or None, got {split!r}")
        subjects = [s for s in subjects if s in set(splits[split])]
    out = []
    for subject in subjects:
        with open(root / "mmlu" / f"mmlu_{subject}.csv", newline="") as f:
            for row in csv.DictReader(f):
                out.append(RoutingQuery(row["prompt"], subject, row[SMALL_MODEL] == "True",
                                        row[LARGE_MODEL] == "True"))
    return out


def routing_workload(queries: list[RoutingQuery], seed: int, *, alpha: float, num_queries: int | None = 100,
                     num_requests: int = 10_000, balanced: bool = True) -> Workload:
    """The paper's real-data protocol: ``num_queries`` queries (half small-correct, half not, when
    ``balanced``; all of ``queries`` when None), shuffled, power(alpha) popularity, deterministic
    per-query costs. The cascade succeeds when the small model answered correctly; the large
    model's answer is accepted as is (its own errors are not priced, as in the paper)."""
    rng = np.random.default_rng(seed)
    if num_queries is None:
        idx = rng.permutation(len(queries))
    elif balanced:
        good = [i for i, q in enumerate(queries) if q.small_correct]
        bad = [i for i, q in enumerate(queries) if not q.small_correct]
        half = num_queries // 2
        if half > len(good) or num_queries - half > len(bad):
            raise ConfigError(f"not enough queries for a balanced set of {num_queries}")
        idx = np.concatenate([rng.choice(good, half, replace=False),
                              rng.choice(bad, num_queries - half, replace=False)])
        rng.shuffle(idx)
    else:
        idx = rng.choice(len(queries), num_queries, replace=False)
    chosen = [queries[i] for i in idx]
    tokens = np.array([q.tokens for q in chosen], dtype=float)
    mean = {m: tokens * PRICES_PER_MTOK[m] / 1000.0 for m in ("small", "large")}  # milli-dollars
    success = {"small": np.array([q.small_correct for q in chosen]),
               "large": np.ones(len(chosen), dtype=bool)}
    n = len(chosen)
    requests = sample_requests(rng, n, alpha, num_requests)
    return Workload(name="routing", probs=power_probs(n, alpha), mean_cost=mean, success=success,
                    requests=requests, cost={m: c[requests] for m, c in mean.items()},
                    coins=rng.random(num_requests), seed=seed,
                    meta={"alpha": alpha, "num_queries": n, "unit": "milli-dollars",
                          "small_accuracy": float(success["small"].mean()),
                          "large_accuracy": float(np.mean([q.large_correct for q in chosen]))})
