"""The trained multiplexer's evaluation (``cachemux train-multiplexer``): data sets, metrics, the
cross-validated choice of head, the report and its plot. Fitting and calibration themselves are
library code (``cachemux.multiplexer.fitting``).

Data (``shared/data/routing``, see its README): RouteLLM's MMLU / GSM8K / MT-Bench correctness of
Mixtral-8x7B ("small") and GPT-4 ("large"), and dcrouter's 9 open models' scores. Fit and tune on
the MMLU ``train`` subjects only (SPLITS.json); everything else is for reporting.

Protocol of ``run_evaluation`` (``cachemux train-multiplexer``):
1. Embed every prompt with the packaged MiniLM (cached on disk as .npy).
2. Cross-validate candidate heads over the MMLU train subjects, whole subjects per fold (the
   report sets are other subjects and other domains). The head and ranking are chosen by the
   share of large-model calls avoided at 93-97% of the large model's quality, out of fold.
3. Calibrate on the chosen head's out-of-fold predictions: thresholds on P(small fails) for target
   shares of large calls (RouteLLM's quantile calibration) and for 95% quality, and a failure price
   for the expected-cost rule.
4. Refit on all train subjects; report AUC, the $ cost saved and the large calls avoided at 95% of
   the large model's quality on MMLU test subjects, GSM8K and MT-Bench, beside random routing, the
   oracle, a plain logistic regression (sklearn's default C = 1) and a length-only router, and what
   the train-calibrated rules do there unchanged.
5. dcrouter: a 9-output head, tuned on a random 20% of train.json, reported on test.json.

Costs are RouteLLM's prices (``cachemux.sim.routing.PRICES_PER_MTOK``) x tokens (chars / 4). With
per-token prices a long prompt costs more to send to the large model, so "$ saved" rewards
sending long prompts to the small model whatever their difficulty; "calls avoided" does not,
which is why model selection uses it and why the length-only router is reported.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cachemux import paths
from cachemux.errors import ConfigError
from cachemux.multiplexer.fitting import (
    Curve,
    FitConfig,
    calibrate_failure_price,
    calibrate_quality,
    calibrate_share,
    cost_at_quality,
    fit_predictor,
    per_extra_cost,
    routing_curve,
)
from cachemux.multiplexer.predictor import EMBEDDING_MODEL_ID, QualityPredictor
from cachemux.sim.routing import LARGE_MODEL as GPT4
from cachemux.sim.routing import PRICES_PER_MTOK as PAIR_PRICES
from cachemux.sim.routing import SMALL_MODEL as MIXTRAL
from cachemux.units import estimate_tokens

__all__ = [
    "BAND",
    "COST_AWARE",
    "SCORES",
    "EvalConfig",
    "RoutingSet",
    "all_eval_texts",
    "dcrouter_prices",
    "default_grid",
    "deployed_report",
    "fit_with_val",
    "frontier_cost_at",
    "frontier_quality_at",
    "group_folds",
    "large_score",
    "load_dcrouter",
    "load_gsm8k",
    "load_mmlu_set",
    "load_mtbench",
    "multi_curve",
    "oracle_curve",
    "out_of_fold",
    "pair_report",
    "random_curve",
    "roc_auc",
    "run_evaluation",
    "saved_at",
    "saved_band",
]

SMALL, LARGE = "small", "large"  # the roles of PAIR_PRICES (RouteLLM's $ per 1M tokens, one table)


@dataclass
class RoutingSet:
    """Prompts with per-model quality labels in [0, 1] and per-model costs ($ per query).

    ``labels[i, j]``: how well model ``models[j]`` answered prompt i (1/0 correctness, or a score);
    ``quality[i, j]``: what routing prompt i to model j is worth in the quality metric (the same
    as labels except on MT-Bench, where it is the judge's 1-10 score).
    """

    name: str
    texts: list[str]
    models: tuple[str, ...]
    labels: np.ndarray
    costs: np.ndarray
    quality: np.ndarray
    groups: list[str] = field(default_factory=list)
    note: str = ""

    def __post_init__(self) -> None:
        n, m = len(self.texts), len(self.models)
        for nm in ("labels", "costs", "quality"):
            a = np.asarray(getattr(self, nm), dtype=np.float64)
            if a.shape != (n, m):
                raise ConfigError(f"{self.name}: {nm} has shape {a.shape}, expected {(n, m)}")
            setattr(self, nm, a)
        if self.groups and len(self.groups) != n:
            raise ConfigError(f"{self.name}: {len(self.groups)} groups for {n} texts")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: Sequence[int] | np.ndarray, name: str | None = None) -> RoutingSet:
        idx = np.asarray(idx, dtype=int)
        return RoutingSet(name or self.name, [self.texts[i] for i in idx], self.models, self.labels[idx],
                          self.costs[idx], self.quality[idx],
                          [self.groups[i] for i in idx] if self.groups else [], self.note)


def _routing_dir(data_dir: Path | None) -> Path:
    return (Path(data_dir) if data_dir is not None else paths.data_dir("routing")) / "routing"


def load_mmlu_set(split: str, data_dir: Path | None = None) -> RoutingSet:
    """MMLU ``train``/``test`` subjects; cost = price x (prompt tokens + 1 answer token)."""
    from cachemux.sim.routing import load_mmlu

    qs = load_mmlu(Path(data_dir) if data_dir is not None else None, split=split)
    tokens = np.array([estimate_tokens(q.prompt) + 1 for q in qs], dtype=float)
    lab = np.array([[q.small_correct, q.large_correct] for q in qs], dtype=float)
    costs = tokens[:, None] * np.array([PAIR_PRICES[SMALL], PAIR_PRICES[LARGE]]) / 1e6
    return RoutingSet(f"mmlu-{split}", [q.prompt for q in qs], (SMALL, LARGE), lab, costs, lab.copy(),
                      [q.subject for q in qs],
                      "Mixtral-8x7B (small) vs GPT-4 (large) correctness; cost = RouteLLM price x (chars/4 + 1)")


def load_gsm8k(data_dir: Path | None = None) -> RoutingSet:
    """GSM8K; cost = price x (prompt tokens + that model's own response tokens)."""
    path = _routing_dir(data_dir) / "gsm8k.csv"
    texts, lab, costs = [], [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            texts.append(row["prompt"])
            lab.append([row[MIXTRAL] == "True", row[GPT4] == "True"])
            p = estimate_tokens(row["prompt"])
            costs.append([(p + estimate_tokens(row[f"{MIXTRAL}_response"])) * PAIR_PRICES[SMALL] / 1e6,
                          (p + estimate_tokens(row[f"{GPT4}_response"])) * PAIR_PRICES[LARGE] / 1e6])
    la = np.array(lab, dtype=float)
    return RoutingSet("gsm8k", texts, (SMALL, LARGE), la, np.array(costs), la.copy(), ["gsm8k"] * len(texts),
                      "correctness; cost = RouteLLM price x (prompt + own response tokens, chars/4)")


_ASSISTANT = re.compile(r"### Assistant A:\n(.*?)(?=\n\n### User:|\n\n<\|The End of Assistant A)", re.S)


def load_mtbench(data_dir: Path | None = None) -> RoutingSet:
    """MT-Bench: 80 two-turn questions, GPT-4-judge scores (1-10) for Mixtral and GPT-4 per turn.

    Routing is per question on the first turn's text (the second turn, e.g. "Rewrite your previous
    response...", means nothing alone) and the chosen model answers both turns. Quality of a choice
    = the mean of its two turn scores (RouteLLM's MT-Bench metric). The binary label "small answers
    well" = the small model's mean score >= the large model's (it loses nothing by routing to
    small; ties count as success, the way RouteLLM's preference labels treat ties). The large
    model's label is 1 (the reference). Cost = price x (first-turn prompt + both answers' tokens,
    answers parsed from the judge's multi-turn transcript).
    """
    root = _routing_dir(data_dir)
    qs = [json.loads(line) for line in (root / "mtbench_questions.jsonl").read_text().splitlines() if line.strip()]
    score: dict[tuple[int, str, int], float] = {}
    answer_tokens: dict[tuple[int, str], int] = defaultdict(int)
    for line in (root / "mtbench_judgements.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        j = json.loads(line)
        model = SMALL if j["model"] == MIXTRAL else LARGE if j["model"] == GPT4 else None
        if model is None:
            continue
        score[(j["question_id"], model, j["turn"])] = float(j["score"])
        if j["turn"] == 2:  # the multi-turn judge prompt holds both of the model's answers
            answer_tokens[(j["question_id"], model)] = sum(estimate_tokens(a) for a in _ASSISTANT.findall(j["user_prompt"]))
    texts, qual, costs, groups = [], [], [], []
    for q in qs:
        qid = q["question_id"]
        try:
            s = [(score[(qid, m, 1)] + score[(qid, m, 2)]) / 2 for m in (SMALL, LARGE)]
        except KeyError:
            continue
        texts.append(q["turns"][0])
        qual.append(s)
        p = sum(estimate_tokens(t) for t in q["turns"])
        costs.append([(p + answer_tokens[(qid, m)]) * PAIR_PRICES[m] / 1e6 for m in (SMALL, LARGE)])
        groups.append(q["category"])
    qa = np.array(qual)
    lab = np.stack([(qa[:, 0] >= qa[:, 1]).astype(float), np.ones(len(qa))], axis=1)
    return RoutingSet("mtbench", texts, (SMALL, LARGE), lab, np.array(costs), qa, groups,
                      "label: small's mean judge score >= large's; quality: mean judge score (1-10)")


def load_dcrouter(split: str, data_dir: Path | None = None) -> RoutingSet:
    """dcrouter (LLMRouter): 9 open models' scores in [0, 1]; cost = $/M input price x prompt tokens
    (input and output prices are equal for every model; output lengths are not in the data)."""
    if split not in ("train", "test"):
        raise ConfigError(f"dcrouter split must be 'train' or 'test', got {split!r}")
    root = _routing_dir(data_dir) / "dcrouter"
    rows = json.loads((root / f"{split}.json").read_text())
    cands = json.loads((root / "llm_candidates.json").read_text())
    models = tuple(m for m in cands if all(m in r["scores"] for r in rows))  # candidates' order
    texts = [r["question"] for r in rows]
    lab = np.array([[float(r["scores"][m]) for m in models] for r in rows])
    price = np.array([float(cands[m]["input_price"]) for m in models])
    tokens = np.array([estimate_tokens(t) for t in texts], dtype=float)
    return RoutingSet(f"dcrouter-{split}", texts, models, lab, tokens[:, None] * price / 1e6, lab.copy(),
                      [str(r.get("cluster_id", "")) for r in rows],
                      "score in [0, 1] per model; cost = $/M price x prompt tokens (chars/4)")


def dcrouter_prices(data_dir: Path | None = None) -> dict[str, float]:
    cands = json.loads((_routing_dir(data_dir) / "dcrouter" / "llm_candidates.json").read_text())
    return {m: float(v["input_price"]) for m, v in cands.items()}


def all_eval_texts(data_dir: Path | None = None) -> Iterator[tuple[str, list[str]]]:
    """(cache name, texts) for every set the full evaluation embeds, slowest last."""
    yield "mtbench", load_mtbench(data_dir).texts
    yield "gsm8k", load_gsm8k(data_dir).texts
    yield "mmlu-test", load_mmlu_set("test", data_dir).texts
    yield "mmlu-train", load_mmlu_set("train", data_dir).texts
    yield "dcrouter-test", load_dcrouter("test", data_dir).texts
    yield "dcrouter-train", load_dcrouter("train", data_dir).texts


def group_folds(groups: Sequence[str], k: int, seed: int = 0) -> list[np.ndarray]:
    """k folds of row indices, whole groups (MMLU subjects) per fold, sizes balanced greedily."""
    by: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by[g].append(i)
    names = sorted(by)
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    names.sort(key=lambda g: -len(by[g]))  # largest first into the emptiest fold (stable on ties)
    folds: list[list[int]] = [[] for _ in range(k)]
    for g in names:
        min(folds, key=len).extend(by[g])
    return [np.array(sorted(f), dtype=int) for f in folds if f]


# --------------------------------------------------------------------------------------------
# Metrics: AUC, cost-quality curves, cost at a quality target; calibration thresholds
# --------------------------------------------------------------------------------------------

def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN if one class."""
    y = np.asarray(y, dtype=bool)
    score = np.asarray(score, dtype=float)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(s))
    r[order] = ranks
    return float((r[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def oracle_curve(quality: np.ndarray, costs: np.ndarray) -> Curve:
    """Knows the answers: large first where it gains quality, cheapest extra cost first."""
    gain = quality[:, 1] - quality[:, 0]
    extra = costs[:, 1] - costs[:, 0]
    order = np.lexsort((extra, -gain))
    n = len(gain)
    score = np.empty(n)
    score[order] = -np.arange(n)
    return routing_curve(score, quality, costs)


def random_curve(quality: np.ndarray, costs: np.ndarray, points: int = 101) -> Curve:
    """Expected curve of routing a random share x of queries to the large model."""
    x = np.linspace(0, 1, points)
    qs, ql = quality.mean(0)
    cs, cl = costs.sum(0)
    return Curve(x, qs + x * (ql - qs), cs + x * (cl - cs))


# --------------------------------------------------------------------------------------------
# The evaluation behind ``cachemux train-multiplexer``
# --------------------------------------------------------------------------------------------

SCORES = ("p_fail", "gain")
"""How a two-model router ranks queries for the large model: ``p_fail`` = P(small fails)
(RouteLLM's and the paper's signal), ``gain`` = P(large right) - P(small right) (what routing
to large is expected to add, from the two heads at once). These ignore the per-query cost, as
RouteLLM's threshold routers do; they are what the headline figures use."""

COST_AWARE = ("gain_per_cost", "p_fail_per_cost", "length_only")
"""Rankings that divide by the query's extra cost c_large - c_small. ``gain_per_cost`` is the
selector's expected-cost rule with an absolute failure price (large iff price x gain > extra cost),
which minimises total cost at a quality target when costs vary per query; ``p_fail_per_cost``
treats the large model as always right (the paper's convention). ``length_only`` ranks by
1 / extra cost alone (short prompts to large): with token-proportional prices it is a strong
baseline, reported beside them so the learned part of any gain is visible."""

BAND = (0.93, 0.94, 0.95, 0.96, 0.97)
"""Model selection uses the mean cost saved over these quality targets: the curve's crossing of a
single target is noisy (a few queries decide it)."""


def large_score(p: np.ndarray, rule: str, costs: np.ndarray | None = None) -> np.ndarray:
    if rule == "p_fail":
        return 1.0 - p[:, 0]
    if rule == "gain":
        return p[:, 1] - p[:, 0]
    if rule in COST_AWARE:
        if costs is None:
            raise ConfigError(f"score {rule!r} needs the per-query costs")
        num = {"p_fail_per_cost": 1.0 - p[:, 0], "gain_per_cost": p[:, 1] - p[:, 0],
               "length_only": np.ones(len(p))}[rule]
        return per_extra_cost(num, costs)
    raise ConfigError(f"unknown score {rule!r}; valid choices: {', '.join(SCORES + COST_AWARE)}")


def saved_at(score: np.ndarray, quality: np.ndarray, costs: np.ndarray, frac: float) -> float | None:
    """Cost saved vs always-large by the cheapest point of ``score``'s curve reaching ``frac`` x the
    large model's quality."""
    hit = cost_at_quality(routing_curve(score, quality, costs), frac * float(quality[:, 1].mean()))
    return None if hit is None else 1.0 - hit[0] / float(costs[:, 1].sum())


def saved_band(score: np.ndarray, quality: np.ndarray, costs: np.ndarray) -> float:
    vals = [saved_at(score, quality, costs, f) for f in BAND]
    return float(np.mean([-1.0 if v is None else v for v in vals]))


def default_grid(quick: bool) -> tuple[FitConfig, ...]:
    """Candidate heads, compared by cross-validation over the MMLU train subjects."""
    tf = ("log_chars", "log_lines", "digit_frac", "upper_frac", "math_frac", "question_marks", "mean_word_len")
    if quick:
        return (FitConfig(l2=1e-2), FitConfig(hidden=64, dropout=0.3, l2=1e-4, epochs=30))
    return (
        FitConfig(l2=1e-3), FitConfig(l2=1e-2), FitConfig(l2=3e-2), FitConfig(l2=1e-1), FitConfig(l2=3e-1),
        FitConfig(l2=1e-2, text_features=tf), FitConfig(l2=1e-1, text_features=tf),
        FitConfig(hidden=128, dropout=0.3, l2=1e-4), FitConfig(hidden=128, dropout=0.3, l2=1e-3),
        FitConfig(hidden=256, dropout=0.5, l2=1e-4, text_features=tf),
    )


def _inner_val(n: int, seed: int, frac: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(frac * n)))
    return np.sort(perm[k:]), np.sort(perm[:k])


def fit_with_val(data: RoutingSet, emb: np.ndarray, idx: np.ndarray, fit: FitConfig,
                 costs: dict[str, float] | None = None, meta: dict | None = None,
                 embedding_model: str | None = None) -> QualityPredictor:
    """Fit on rows ``idx``; an MLP early-stops on a random 10% of them."""
    idx = np.asarray(idx)
    if fit.hidden or fit.dropout:
        tr, va = _inner_val(len(idx), fit.seed)
        tr, va = idx[tr], idx[va]
        val = (emb[va], [data.texts[i] for i in va], data.labels[va])
    else:
        tr, val = idx, None
    return fit_predictor(data.models, emb[tr], [data.texts[i] for i in tr], data.labels[tr], fit, val=val,
                         costs=costs, meta=meta, embedding_model=embedding_model)


def out_of_fold(data: RoutingSet, emb: np.ndarray, fit: FitConfig, folds: list[np.ndarray],
                tick: Callable[[], None] | None = None) -> np.ndarray:
    """Predictions for every row from a head that never saw its group (MMLU subject)."""
    p = np.full(data.labels.shape, np.nan)
    every = np.arange(len(data))
    for f in folds:
        rest = np.setdiff1d(every, f)
        pr = fit_with_val(data, emb, rest, fit)
        p[f] = pr.predict_proba([data.texts[i] for i in f], embeddings=emb[f])
        if tick is not None:
            tick()
    return p


def _per_call(costs: np.ndarray) -> np.ndarray:
    """Costs that count large-model calls only (RouteLLM's "% calls to GPT-4" view)."""
    out = np.zeros_like(costs)
    out[:, 1] = 1.0
    return out


def pair_report(data: RoutingSet, p: np.ndarray, target_frac: float = 0.95) -> dict:
    """AUCs and, at ``target_frac`` of the large model's quality, the $ cost saved vs always-large
    (``saved``) and the share of large-model calls avoided (``calls_saved``, blind to prompt
    length), for each ranking, random routing and the oracle."""
    q, c = data.quality, data.costs
    calls = _per_call(c)
    all_large = float(c[:, 1].sum())
    target = target_frac * float(q[:, 1].mean())
    out: dict = {"n": len(data), "small_quality": float(q[:, 0].mean()), "large_quality": float(q[:, 1].mean()),
                 "target_quality": target, "cost_all_large": all_large, "cost_all_small": float(c[:, 0].sum()),
                 "auc_small_success": roc_auc(data.labels[:, 0] > 0.5, p[:, 0]),
                 "auc_large_success": roc_auc(data.labels[:, 1] > 0.5, p[:, 1])}
    need = (data.quality[:, 1] > data.quality[:, 0])  # large strictly better: routing to small loses
    for rule in SCORES + COST_AWARE:
        s = large_score(p, rule, c)
        hit = cost_at_quality(routing_curve(s, q, c), target)
        out[rule] = {"auc_large_needed": roc_auc(need, s),
                     "saved": None if hit is None else 1.0 - hit[0] / all_large,
                     "share_large": None if hit is None else hit[1]}
        if rule in SCORES:
            out[rule]["calls_saved"] = saved_at(s, q, calls, target_frac)
    for name, curve, ccurve in (("random", random_curve(q, c, 1001), random_curve(q, calls, 1001)),
                                ("oracle", oracle_curve(q, c), oracle_curve(q, calls))):
        hit, chit = cost_at_quality(curve, target), cost_at_quality(ccurve, target)
        out[name] = {"saved": None if hit is None else 1.0 - hit[0] / all_large,
                     "share_large": None if hit is None else hit[1],
                     "calls_saved": None if chit is None else 1.0 - chit[0] / len(q)}
    return out


def deployed_report(data: RoutingSet, p: np.ndarray, entry: dict) -> dict:
    """What a rule calibrated on the train subjects does on this set: the threshold rule (small iff
    P(small fails) <= tau) or the expected-cost rule with a calibrated failure price."""
    if entry.get("failure_price") is not None:
        gain = p[:, 1] - p[:, 0]
        large = entry["failure_price"] * gain > data.costs[:, 1] - data.costs[:, 0]
    elif "threshold" in entry:
        large = (1.0 - p[:, 0]) > entry["threshold"]
    else:
        large = np.ones(len(p), dtype=bool)
    q = np.where(large, data.quality[:, 1], data.quality[:, 0])
    c = np.where(large, data.costs[:, 1], data.costs[:, 0])
    return {"share_large": float(large.mean()), "quality_vs_large": float(q.mean() / data.quality[:, 1].mean()),
            "saved": float(1.0 - c.sum() / data.costs[:, 1].sum())}


def multi_curve(p: np.ndarray, quality: np.ndarray, costs: np.ndarray, points: int = 200) -> dict[str, np.ndarray]:
    """N models: choose argmin_m c_m + lam * (1 - p_m) for a sweep of quality prices lam (the
    selector's expected-cost rule with a failure price); mean cost and quality per lam."""
    lo = max(costs[costs > 0].min() * 1e-3, 1e-12) if (costs > 0).any() else 1e-9
    lams = np.concatenate([[0.0], np.geomspace(lo, costs.max() * 1e4 + lo, points)])
    rows = np.arange(len(p))
    qs, cs = [], []
    for lam in lams:
        pick = np.argmin(costs + lam * (1.0 - p), axis=1)  # ties: the first (candidates order)
        qs.append(quality[rows, pick].mean())
        cs.append(costs[rows, pick].mean())
    return {"lam": lams, "quality": np.array(qs), "cost": np.array(cs)}


def frontier_cost_at(curve: dict[str, np.ndarray], target: float) -> float | None:
    ok = curve["quality"] >= target - 1e-12
    return float(curve["cost"][ok].min()) if ok.any() else None


def frontier_quality_at(curve: dict[str, np.ndarray], budget: float) -> float | None:
    ok = curve["cost"] <= budget + 1e-15
    return float(curve["quality"][ok].max()) if ok.any() else None


@dataclass(frozen=True)
class EvalConfig:
    """One ``cachemux train-multiplexer`` run. ``quick``: small subsets (CI / smoke test)."""

    out: Path = field(default_factory=paths.results_dir)
    cache_dir: Path | None = None
    data_dir: Path | None = None
    quick: bool = False
    folds: int = 5
    seed: int = 0
    target_frac: float = 0.95
    share_targets: tuple[float, ...] = (0.2, 0.3, 0.5)
    grid: tuple[FitConfig, ...] | None = None
    dcrouter: bool = True
    progress: bool = True
    sizes: dict[str, int | None] | None = None  # per-set subsample sizes (None: the quick/full defaults)
    embedder: Callable[[Sequence[str]], np.ndarray] | None = None  # default: the packaged MiniLM


def _subsample_idx(size: int, n: int | None, seed: int) -> np.ndarray | None:
    if n is None or n >= size:
        return None
    return np.sort(np.random.default_rng(seed).choice(size, n, replace=False))


def _fmt(x: float | None) -> str:
    return "   n/a" if x is None else f"{100 * x:5.1f}%"


def run_evaluation(cfg: EvalConfig, log: Callable[[str], None] = print) -> dict:
    """Fit and tune on MMLU train subjects; report on MMLU test subjects, GSM8K, MT-Bench; and an
    N-model selector on dcrouter. Writes ``trained_multiplexer.json``, plots and the fitted
    predictors (safetensors + JSON) under ``cfg.out``; returns the report."""
    import time

    from tqdm.auto import tqdm

    from cachemux.multiplexer.predictor import cached_embeddings

    t_start = time.perf_counter()
    quick, seed = cfg.quick, cfg.seed
    sizes = cfg.sizes if cfg.sizes is not None else {
        "mmlu-train": 600, "mmlu-test": 300, "gsm8k": 200, "mtbench": None, "dcrouter-train": 500,
        "dcrouter-test": 200} if quick else {}
    model_id = EMBEDDING_MODEL_ID if cfg.embedder is None else getattr(cfg.embedder, "model_id", "custom-embedder")
    sets = {"mmlu-train": load_mmlu_set("train", cfg.data_dir), "mmlu-test": load_mmlu_set("test", cfg.data_dir),
            "gsm8k": load_gsm8k(cfg.data_dir), "mtbench": load_mtbench(cfg.data_dir)}
    if cfg.dcrouter:
        sets |= {"dcrouter-train": load_dcrouter("train", cfg.data_dir), "dcrouter-test": load_dcrouter("test", cfg.data_dir)}
    full = sets
    picks = {k: _subsample_idx(len(v), sizes.get(k), seed) for k, v in full.items()}
    sets = {k: v if picks[k] is None else v.subset(picks[k]) for k, v in full.items()}
    timings: dict[str, float] = {}

    # 1. embeddings (cached on disk as .npy keyed by the texts' hash; a subset reuses its full
    #    set's file when there is one)
    t0 = time.perf_counter()
    emb: dict[str, np.ndarray] = {}
    with tqdm(total=sum(len(s) for s in sets.values()), desc="embed", unit="text", disable=not cfg.progress) as bar:
        for k, s in sets.items():
            whole = None if picks[k] is None else cached_embeddings(
                full[k].texts, name=k, cache_dir=cfg.cache_dir, only_cached=True, model_id=model_id)
            if whole is not None:
                emb[k] = whole[picks[k]]
                bar.update(len(s))
            else:
                emb[k] = cached_embeddings(s.texts, name=f"{k}-{len(s)}" if picks[k] is not None else k,
                                           cache_dir=cfg.cache_dir, progress=bar.update, embedder=cfg.embedder,
                                           model_id=model_id)
    timings["embed_s"] = time.perf_counter() - t0

    # 2. model selection by cross-validation over MMLU train subjects (whole subjects per fold)
    train = sets["mmlu-train"]
    grid = cfg.grid or default_grid(quick)
    folds = group_folds(train.groups, min(cfg.folds, len(set(train.groups))), seed)
    t0 = time.perf_counter()
    cv_rows, oof = [], {}
    calls = _per_call(train.costs)
    with tqdm(total=len(grid) * len(folds), desc="cross-validate", unit="fit", disable=not cfg.progress) as bar:
        for fit in grid:
            p = out_of_fold(train, emb["mmlu-train"], fit, folds, bar.update)
            rep = pair_report(train, p, cfg.target_frac)
            oof[fit.label()] = p
            cv_rows.append({"head": fit.label(), "auc_small_success": rep["auc_small_success"],
                            **{f"saved_{r}": rep[r]["saved"] for r in SCORES + COST_AWARE},
                            **{f"calls_band_{r}": saved_band(large_score(p, r), train.quality, calls) for r in SCORES},
                            "band_gain_per_cost": saved_band(large_score(p, "gain_per_cost", train.costs),
                                                             train.quality, train.costs)})
    timings["cross_validate_s"] = time.perf_counter() - t0
    # Selection: the head and ranking that avoid the most large-model calls over the 93-97%
    # quality band, out of fold. Calls, not $: with token prices a ranking can "save" by merely
    # sending long prompts to the small model (heavy L2 does that: AUC falls, $ saved rises), and
    # the cost-aware rule below uses the prompt's cost explicitly instead.
    best_row, best_score = max(((r, s) for r in cv_rows for s in SCORES), key=lambda rs: rs[0][f"calls_band_{rs[1]}"])
    best_fit = next(f for f in grid if f.label() == best_row["head"])
    # "a plain logistic regression on the embeddings" (the anchor): sklearn's default C = 1
    baseline_fit = FitConfig(l2=1.0 / (2 * len(train)))
    log(f"cross-validation over {len(folds)} folds of MMLU train subjects ({len(train)} prompts); at "
        f"{100 * cfg.target_frac:g}% of large quality, out of fold:")
    log(f"  {'head':<32} {'AUC':>5}  calls avoided (93-97% band) p_fail / gain   $ saved: p_fail  gain  "
        f"cost-aware  length-only")
    for r in cv_rows:
        log(f"  {r['head']:<32} {r['auc_small_success']:.3f}  {_fmt(r['calls_band_p_fail']):>26} / "
            f"{_fmt(r['calls_band_gain'])}   {_fmt(r['saved_p_fail']):>13} {_fmt(r['saved_gain'])} "
            f"{_fmt(r['saved_gain_per_cost']):>10} {_fmt(r['saved_length_only']):>12}")
    log(f"  chosen: {best_fit.label()}, ranked by {best_score}")

    # 3. calibration on the chosen head's out-of-fold predictions (train subjects only)
    p_oof = oof[best_fit.label()]
    calib: dict[str, dict] = {}
    for share in cfg.share_targets:
        tau = calibrate_share(1.0 - p_oof[:, 0], share)
        calib[f"large_share={share:g}"] = {"threshold": tau, "target_share": share,
                                            "achieved_share_on_calibration": float(((1.0 - p_oof[:, 0]) > tau).mean())}
    qc = calibrate_quality(1.0 - p_oof[:, 0], train.quality, train.costs, cfg.target_frac)
    calib[f"quality={cfg.target_frac:g}"] = {**qc, "target_frac_of_large": cfg.target_frac}
    fp = calibrate_failure_price(p_oof, train.quality, train.costs, cfg.target_frac)
    calib[f"cost_aware_quality={cfg.target_frac:g}"] = {**fp, "cost_unit": "$ per query"}

    # 4. final fits on all train subjects; report on held-out sets
    t0 = time.perf_counter()
    heads = {"chosen": best_fit, "baseline_logistic": baseline_fit}
    fitted = {}
    for name, fit in heads.items():
        fitted[name] = fit_with_val(train, emb["mmlu-train"], np.arange(len(train)), fit,
                                    costs=dict(PAIR_PRICES),
                                    meta={"trained_on": "MMLU train subjects (SPLITS.json)", "head": fit.label(),
                                          "score": best_score, "models_meaning": {SMALL: MIXTRAL, LARGE: GPT4},
                                          "n_train": len(train), "quick": quick}, embedding_model=model_id)
    timings["final_fit_s"] = time.perf_counter() - t0
    predictor = fitted["chosen"].with_config(calibration=calib)
    cfg.out.mkdir(parents=True, exist_ok=True)
    predictor.save(cfg.out / "trained_multiplexer" / "mmlu")
    report: dict = {"embedding_model": model_id, "quick": quick, "seed": seed, "sizes": {k: len(v) for k, v in sets.items()},
                    "target_frac_of_large_quality": cfg.target_frac,
                    "cost": f"RouteLLM prices, $ per 1M tokens: small (Mixtral-8x7B) {PAIR_PRICES[SMALL]:g}, large "
                            f"(GPT-4) {PAIR_PRICES[LARGE]:g}; tokens = chars/4 (MMLU: prompt + 1 answer token; GSM8K: prompt + own response; "
                            "MT-Bench: both turns + both own answers)",
                    "mtbench_label": load_mtbench.__doc__.split("\n\n")[1].strip() if load_mtbench.__doc__ else "",
                    "cross_validation": {"folds": len(folds), "rows": cv_rows, "chosen_head": best_fit.label(),
                                         "chosen_score": best_score, "criterion": "calls avoided, 93-97% band"},
                    "baseline_logistic": baseline_fit.label() + " (sklearn LogisticRegression's default C=1)",
                    "calibration": calib, "sets": {}}
    curves: dict[str, dict] = {}
    log(f"\nreport (fit and tuned on MMLU train subjects only), at {100 * cfg.target_frac:g}% of the large model's "
        f"quality:")
    log(f"  {'set':<10} {'n':>5} {'AUC':>6}  $ saved: {'chosen':>6} {'cost-aw':>7} {'logreg':>6} {'random':>6} "
        f"{'oracle':>6} {'length':>6} | calls avoided: {'chosen':>6} {'logreg':>6} {'random':>6} {'oracle':>6}")
    for key in ("mmlu-test", "gsm8k", "mtbench"):
        data, e = sets[key], emb[key]
        entry: dict = {"note": data.note}
        preds = {name: pr.predict_proba(data.texts, embeddings=e) for name, pr in fitted.items()}
        for name, p in preds.items():
            entry[name] = pair_report(data, p, cfg.target_frac)
        pc = preds["chosen"]
        entry["deployed"] = {k: deployed_report(data, pc, v) for k, v in calib.items()}
        curves[key] = {"data": data, "trained router": large_score(pc, best_score),
                       "trained, cost-aware": large_score(pc, "gain_per_cost", data.costs),
                       "plain logistic": large_score(preds["baseline_logistic"], "p_fail"),
                       "length only": large_score(pc, "length_only", data.costs)}
        report["sets"][key] = entry
        ch, lr = entry["chosen"], entry["baseline_logistic"]
        log(f"  {key:<10} {len(data):>5} {ch['auc_small_success']:6.3f}           {_fmt(ch[best_score]['saved'])} "
            f"{_fmt(ch['gain_per_cost']['saved']):>7} {_fmt(lr['p_fail']['saved'])} {_fmt(ch['random']['saved'])} "
            f"{_fmt(ch['oracle']['saved'])} {_fmt(ch['length_only']['saved'])} |                "
            f"{_fmt(ch[best_score]['calls_saved'])} {_fmt(lr['p_fail']['calls_saved'])} "
            f"{_fmt(ch['random']['calls_saved'])} {_fmt(ch['oracle']['calls_saved'])}")
    log(f"  rules calibrated on train subjects for {100 * cfg.target_frac:g}%, applied as they are:")
    for key in ("mmlu-test", "gsm8k", "mtbench"):
        d = report["sets"][key]["deployed"]
        a, b = d[f"quality={cfg.target_frac:g}"], d[f"cost_aware_quality={cfg.target_frac:g}"]
        log(f"  {key:<10} threshold on P(small fails): quality {100 * a['quality_vs_large']:5.1f}% of large, "
            f"$ saved {_fmt(a['saved'])};  expected-cost rule: quality {100 * b['quality_vs_large']:5.1f}%, "
            f"$ saved {_fmt(b['saved'])}")

    # 5. N models: dcrouter
    if cfg.dcrouter:
        t0 = time.perf_counter()
        report["dcrouter"] = _dcrouter(sets["dcrouter-train"], emb["dcrouter-train"], sets["dcrouter-test"],
                                       emb["dcrouter-test"], cfg, log, model_id)
        timings["dcrouter_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    report["timings"] = timings
    _plot(cfg.out / "trained_multiplexer.png", curves, report, cfg.target_frac)
    (cfg.out / "trained_multiplexer.json").write_text(json.dumps(_jsonable(report), indent=1) + "\n")
    log(f"\nwrote {cfg.out / 'trained_multiplexer.json'}, {cfg.out / 'trained_multiplexer.png'} and the fitted "
        f"predictors under {cfg.out / 'trained_multiplexer'} ({timings['total_s']:.0f} s)")
    return report


def _dcrouter(train: RoutingSet, etr: np.ndarray, test: RoutingSet, ete: np.ndarray, cfg: EvalConfig,
              log: Callable[[str], None], model_id: str = EMBEDDING_MODEL_ID) -> dict:
    """An N-model head on dcrouter train.json (l2/head tuned on a random 20% of it), reported on
    test.json: quality vs cost against every single model, always-best, random and the oracle."""
    tr, va = _inner_val(len(train), cfg.seed, 0.2)
    cands = ([FitConfig(l2=l) for l in (1e-3, 1e-2)] if cfg.quick else
             [FitConfig(l2=l) for l in (3e-4, 1e-3, 3e-3, 1e-2)]
             + [FitConfig(hidden=128, dropout=0.3, l2=1e-4), FitConfig(hidden=256, dropout=0.5, l2=1e-4)])
    best, best_q = None, -math.inf
    rows = []
    best_single_train = int(np.argmax(train.quality[tr].mean(0)))
    for fit in cands:
        pr = fit_with_val(train, etr, tr, fit)
        p = pr.predict_proba([train.texts[i] for i in va], embeddings=etr[va])
        curve = multi_curve(p, train.quality[va], train.costs[va])
        # tuning criterion: quality reachable at the best single model's cost on the validation part
        q = frontier_quality_at(curve, float(train.costs[va, best_single_train].mean()))
        rows.append({"head": fit.label(), "val_quality_at_best_model_cost": q})
        if q is not None and q > best_q:
            best, best_q = fit, q
    assert best is not None
    prices = dcrouter_prices(cfg.data_dir)
    pr = fit_with_val(train, etr, np.arange(len(train)), best, costs={m: prices[m] for m in train.models},
                      meta={"trained_on": "dcrouter train.json", "head": best.label()}, embedding_model=model_id)
    pr.save(cfg.out / "trained_multiplexer" / "dcrouter")
    p = pr.predict_proba(test.texts, embeddings=ete)
    q, c = test.quality, test.costs
    curve = multi_curve(p, q, c)
    oracle = multi_curve(q, q, c)
    best_m = train.models[int(np.argmax(train.quality.mean(0)))]  # chosen on train, as a deployer would
    j = test.models.index(best_m)
    best_q_test, best_c_test = float(q[:, j].mean()), float(c[:, j].mean())
    singles = {m: {"quality": float(q[:, i].mean()), "cost_per_1k": 1e3 * float(c[:, i].mean()),
                   "price": prices[m]} for i, m in enumerate(test.models)}
    cost_same = frontier_cost_at(curve, best_q_test)
    cost_95 = frontier_cost_at(curve, 0.95 * best_q_test)
    out = {
        "models": list(test.models), "n_train": len(train), "n_test": len(test), "note": test.note,
        "tuning": {"rows": rows, "chosen_head": best.label()},
        "single_models": singles, "always_best_model": best_m,
        "always_best": {"quality": best_q_test, "cost_per_1k": 1e3 * best_c_test},
        "random_model": {"quality": float(q.mean()), "cost_per_1k": 1e3 * float(c.mean())},
        "auc_per_model": {m: roc_auc(test.labels[:, i] >= 0.5, p[:, i]) for i, m in enumerate(test.models)},
        "router": {
            "quality_at_best_model_cost": frontier_quality_at(curve, best_c_test),
            "saved_at_best_model_quality": None if cost_same is None else 1 - cost_same / best_c_test,
            "saved_at_95pct_best_model_quality": None if cost_95 is None else 1 - cost_95 / best_c_test,
            "max_quality": float(curve["quality"].max()),
        },
        "oracle": {"quality_at_best_model_cost": frontier_quality_at(oracle, best_c_test),
                   "saved_at_best_model_quality": 1 - (frontier_cost_at(oracle, best_q_test) or best_c_test) / best_c_test,
                   "max_quality": float(oracle["quality"].max())},
        "curve": {"cost_per_1k": (1e3 * curve["cost"]).tolist(), "quality": curve["quality"].tolist()},
        "oracle_curve": {"cost_per_1k": (1e3 * oracle["cost"]).tolist(), "quality": oracle["quality"].tolist()},
    }
    r = out["router"]
    log(f"\ndcrouter, {len(test.models)} models (fit on train.json, {best.label()}; report on test.json, n={len(test)}):")
    log(f"  always-best ({best_m}): quality {best_q_test:.3f} at ${1e3 * best_c_test:.4f}/1k queries; "
        f"random model: {q.mean():.3f} at ${1e3 * c.mean():.4f}/1k")
    log(f"  router: quality {r['quality_at_best_model_cost'] or float('nan'):.3f} at the same cost; "
        f"saves {_fmt(r['saved_at_best_model_quality'])} at equal quality, {_fmt(r['saved_at_95pct_best_model_quality'])} "
        f"at 95% of it; max quality {r['max_quality']:.3f} (oracle {out['oracle']['max_quality']:.3f})")
    return out


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, Path):
        return str(x)
    return x


def _plot(path: Path, curves: dict, report: dict, target_frac: float) -> None:
    from cachemux.sim.plots import pyplot

    plt = pyplot()

    panels = list(curves) + (["dcrouter"] if "dcrouter" in report else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    for ax, key in zip(axes[0], panels):
        if key == "dcrouter":
            d = report["dcrouter"]
            ax.plot(d["curve"]["cost_per_1k"], d["curve"]["quality"], "-", label="trained router")
            ax.plot(d["oracle_curve"]["cost_per_1k"], d["oracle_curve"]["quality"], ":", color="k", label="oracle")
            for m, s in d["single_models"].items():
                ax.plot(s["cost_per_1k"], s["quality"], "o", ms=4, color="gray")
                ax.annotate(m.split("-instruct")[0][:18], (s["cost_per_1k"], s["quality"]), fontsize=6)
            ax.plot(d["random_model"]["cost_per_1k"], d["random_model"]["quality"], "s", color="tab:red",
                    label="random model")
            ax.plot(d["always_best"]["cost_per_1k"], d["always_best"]["quality"], "*", ms=10, color="tab:orange",
                    label=f"always-best ({d['always_best_model'][:22]})")
            ax.set_xlabel("$ per 1k queries")
            ax.set_ylabel("mean score")
            ax.set_title(f"dcrouter: {len(d['models'])} models (test.json)")
            ax.legend(fontsize=7)
            continue
        data = curves[key]["data"]
        q, c = data.quality, data.costs
        ql, cl = q[:, 1].mean(), c[:, 1].sum()
        lines = [(name, routing_curve(sc, q, c), style, lw, color) for name, style, lw, color in (
            ("trained router", "-", 1.8, "tab:blue"), ("plain logistic", "-", 0.9, "tab:orange"),
            ("trained, cost-aware", "-.", 0.9, "tab:green"), ("length only", (0, (1, 1)), 0.9, "tab:brown"))
            if (sc := curves[key].get(name)) is not None]
        lines += [("random", random_curve(q, c), "--", 1.2, "gray"), ("oracle", oracle_curve(q, c), ":", 1.4, "black")]
        for name, cv, style, lw, color in lines:
            ax.plot(100 * cv.cost / cl, 100 * cv.quality / ql, linestyle=style, lw=lw, color=color, label=name)
        ax.axhline(100 * target_frac, color="gray", lw=0.8)
        ax.set_xlabel("cost, % of always-large")
        ax.set_ylabel("quality, % of always-large")
        s = report["sets"][key]["chosen"]
        ax.set_title(f"{key}: AUC {s['auc_small_success']:.3f}, saved {_fmt(s[report['cross_validation']['chosen_score']]['saved']).strip()}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
