"""The paper's real-model experiment: SmolLM2-135M / Qwen2.5-Coder-0.5B / Qwen2.5-Coder-1.5B on
MMLU letter answers, a trained multiplexer, and the paper's caching protocol served through the
LangChain adapter (``CacheMuxRouter`` on ``JointEngine``), replayed from the records and live.

    python benchmarks/bench_end_to_end.py --json results/end_to_end.json     # replay grid + live
    python benchmarks/bench_end_to_end.py --quick --json /tmp/e2e.json      # < 15 min, 0.5B as large
    python benchmarks/bench_end_to_end.py --replot --json results/end_to_end.json

1. Task (``cachemux.lab.mmlu_task``): the shipped MMLU prompts (question, options A-D,
   "Answer:") after a one-line system message, chat template, greedy, 1 new token, right iff it is
   the gold letter. Measurements (answer, wall and CPU seconds, FLOPs per (item, model)) come from
   ``python -m cachemux.lab.mmlu_task`` (resumable JSON, ``--measurements``); ``--measure N``
   measures up to N more items per subject here first.
2. Split (``SPLITS.json``): the multiplexer is fitted on "miscellaneous" (a train subject); the
   protocol's queries are "nutrition" questions (a test subject).
3. Multiplexer: ``QualityPredictor`` (logistic head on the packaged MiniLM embedding) fitted on
   the train part; a role without labels there (the 1.5B is measured on the test subject only, for
   time) gets NaN labels (its head is unused: with a cascade route, ``TrainedSelector`` prices the
   routes by the first models' success only). A-priori costs: per-role medians over the measured
   items outside the query set (costs, not labels).
4. Protocol: 100 queries (half small-right) or fewer if the measured items do not hold 50 of
   each, 10,000 requests, power(alpha) popularity, cache 40 entries
   (``CacheMuxCache(store=MemoryStore(40, policy), semantic=False)``), seeds paired across methods;
   methods LFU+large, LFU+cascade, LEC+large, LEC+cascade, GDSF+trained, LEC+trained,
   LEC+trained-explore (the predictor plus one optimistic try of an untried route per query, learnt
   from the cascade's judge), LEC+oracle,
   and the paper's selector-accuracy knob (noisy oracle 0.8 / 1.0 under LFU, LEC, GDSF).
   Each run's cost unit is the recorded latency or FLOPs (two grids). The router path costs a few
   ms per request (LangChain's per-call machinery), so ``--router-seeds`` seeds of the key
   methods run through ``CacheMuxRouter`` and the rest on ``JointEngine`` directly
   (``Protocol.serve_engine``); runs done both ways are compared (``agreement``).
5. Live: ``CacheMuxRouter`` over ``LocalChatModel``s, real generation on every miss, for
   LFU+large and LEC+trained at ``--live-alpha`` on the first ``--live-requests`` requests of seed
   0; answers compared with the records; live latency / replay latency of the same prefix.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from cachemux import paths  # noqa: E402
from cachemux.lab.mmlu_task import SYSTEM, MMLUMeasurements, is_correct, load_items, measure_mmlu, store_key  # noqa: E402
from cachemux.lab.protocol import Protocol  # noqa: E402
from cachemux.sim.workload import sample_requests  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TRAIN_SUBJECT, TEST_SUBJECT = "miscellaneous", "nutrition"
BASE, OURS = ("lfu", "large"), ("lec", "trained")
EXPLORE = ("lec", "trained-explore")  # the same predictor, learning from the cascade's judge online
TARGET_LATENCY, TARGET_FLOPS, TARGET_ACC_DROP = 1.8, 4.3, 0.01
MAIN = [("lfu", "large"), ("lfu", "cascade"), ("lec", "large"), ("lec", "cascade"), ("gdsf", "trained"),
        ("lec", "trained"), ("lec", "trained-explore"), ("lec", "oracle")]
KNOB = [(c, f"noisy-{a}") for c in ("lfu", "lec", "gdsf") for a in ("0.8", "1.0")]


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="< 15 min: 0.5B as large, fewer seeds, short live run")
    ap.add_argument("--json", type=Path, default=ROOT / "results" / "end_to_end.json")
    ap.add_argument("--measurements", type=Path, default=paths.cache_root() / "lab" / "mmlu-measurements.json")
    ap.add_argument("--small", default="smollm2-135m")
    ap.add_argument("--medium", default="qwen2.5-coder-0.5b")
    ap.add_argument("--large", default=None, help="default qwen2.5-coder-1.5b (quick: the 0.5B)")
    ap.add_argument("--measure", type=int, default=None, help="measure up to N items per subject first")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--requests", type=int, default=None)
    ap.add_argument("--cache-size", type=int, default=40)
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.2, 0.5, 0.8])
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--router-seeds", type=int, default=None,
                    help="seeds on which every main method also runs through the router (checked against the engine)")
    ap.add_argument("--no-llamaindex", dest="llamaindex", action="store_false",
                    help="skip the CacheMuxLLM replay of LFU+large and LEC+trained (seed 0, every alpha)")
    ap.add_argument("--router-all", action="store_true", help="every run through the router (slow)")
    ap.add_argument("--live-requests", type=int, default=None)
    ap.add_argument("--live-alphas", type=float, nargs="+", default=None,
                    help="alphas served live (default: all of --alphas; quick: 0.8)")
    ap.add_argument("--live-methods", nargs="+", default=["lfu+large", "lec+trained"],
                    help="cache+selector pairs served live (default: lfu+large lec+trained)")
    ap.add_argument("--replot", action="store_true")
    ap.add_argument("--table", action="store_true", help="print the report at --json as Markdown tables and exit")
    ap.add_argument("--live-only", action="store_true",
                    help="keep the grid of the report at --json (same query set) and run only the live part")
    a = ap.parse_args(argv)
    methods = dict.fromkeys(MAIN + KNOB)
    a.live_methods = [tuple(m.split("+", 1)) for m in a.live_methods]
    for m in a.live_methods:
        if m not in methods:
            ap.error(f"--live-methods: unknown {'+'.join(m)!r}; known: {['+'.join(k) for k in methods]}")
    q = a.quick
    a.large = a.large or (a.medium if q else "qwen2.5-coder-1.5b")
    a.requests = a.requests or (10_000 if not q else 5_000)
    a.seeds = a.seeds or (2 if q else 5)
    a.router_seeds = a.router_seeds if a.router_seeds is not None else 1
    a.live_requests = a.live_requests if a.live_requests is not None else (60 if q else 1000)
    a.live_alphas = a.live_alphas or ([0.8] if q else list(a.alphas))
    if a.measure is None and q:
        a.measure = 80
    return a


def _trace(n: int, alpha: float, requests: int, seed: int) -> list[int]:
    rng = np.random.default_rng([seed, round(alpha * 1000)])
    return sample_requests(rng, n, alpha, requests).tolist()


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def _rec(r: dict[str, Any]) -> dict[str, Any]:
    return {"answer": r["answer"], "latency": float(np.mean(r["latency"])), "cpu": float(np.mean(r["cpu"])),
            "flops": float(r["flops"])}


def _accuracy_table(store: MMLUMeasurements, items: dict[str, Any], models: list[str]) -> list[dict[str, Any]]:
    rows = []
    for subject in (TRAIN_SUBJECT, TEST_SUBJECT, "all"):
        for m in models:
            recs = [(items[q], r["models"][m]) for q, r in store.records.items() if q in items and m in r["models"]
                    and (subject == "all" or r["subject"] == subject)]
            if not recs:
                continue
            rows.append({"subject": subject, "model": m, "items": len(recs),
                         "accuracy": float(np.mean([is_correct(it.gold, x["answer"]) for it, x in recs])),
                         "latency_median_s": _median([x["latency"][0] for _, x in recs]),
                         "cpu_median_s": _median([x["cpu"][0] for _, x in recs]),
                         "flops_mean": float(np.mean([x["flops"] for _, x in recs])),
                         "tokens_in_mean": float(np.mean([x["tokens_in"] for _, x in recs]))})
    return rows


def _predictor(store: MMLUMeasurements, train: list[Any], roles: dict[str, str]):
    from cachemux.multiplexer.fitting import FitConfig, fit_predictor
    from cachemux.multiplexer.predictor import QualityPredictor, cached_embeddings

    texts = [it.prompt for it in train]
    emb = cached_embeddings(texts, name="e2e-mmlu-train")
    labels = np.array([[float(is_correct(it.gold, store.get(it.qid, m)["answer"])) if store.has(it.qid, m) else np.nan
                        for m in roles.values()] for it in train], dtype=np.float32)
    for j in range(labels.shape[1]):  # a role never measured here: its head learns nothing
        if np.isnan(labels[:, j]).all():
            labels[:, j] = np.nan
            labels[0, j] = 1.0  # one label so the fit runs; the head is unused (see the docstring)
    pred = fit_predictor(tuple(roles), emb, texts, labels, FitConfig(l2=0.3))
    embed_of = dict(zip(texts, emb))

    def embedder(ts: list[str]) -> np.ndarray:
        return np.stack([embed_of[t] if t in embed_of else _embed_one(t) for t in ts])

    return QualityPredictor(pred.config, pred.params, embedder=embedder)


_EMB: dict[str, np.ndarray] = {}


def _embed_one(text: str) -> np.ndarray:
    if text not in _EMB:
        from cachemux.multiplexer.predictor import cached_embeddings

        _EMB[text] = cached_embeddings([text], name="e2e-mmlu-one")[0]
    return _EMB[text]


def build_protocol(store: MMLUMeasurements, roles: dict[str, str], n_queries: int, seed: int = 0) -> tuple[Protocol, dict]:
    """The query set (test subject, measured on every role, half small-right) and the protocol."""
    test = [it for it in load_items([TEST_SUBJECT]) if all(store.has(it.qid, m) for m in roles.values())]
    small_ok = [is_correct(it.gold, store.get(it.qid, roles["small"])["answer"]) for it in test]
    good = [it for it, ok in zip(test, small_ok) if ok]
    bad = [it for it, ok in zip(test, small_ok) if not ok]
    half = min(n_queries // 2, len(good), len(bad))
    rng = np.random.default_rng(seed)
    chosen = [good[i] for i in rng.choice(len(good), half, replace=False)] + \
             [bad[i] for i in rng.choice(len(bad), half, replace=False)]
    rng.shuffle(chosen)  # type: ignore[arg-type]
    chosen_ids = {it.qid for it in chosen}
    train = [it for it in load_items([TRAIN_SUBJECT]) if store.has(it.qid, roles["small"])]
    others = [q for q, r in store.records.items() if q not in chosen_ids]
    prior = {"latency": {}, "flops": {}}
    for role, m in roles.items():
        prior["latency"][role] = _median([np.mean(store.get(q, m)["latency"]) for q in others if store.has(q, m)])
        prior["flops"][role] = _median([store.get(q, m)["flops"] / 1e9 for q in others if store.has(q, m)])
    pred = _predictor(store, train, roles)
    records = {role: [_rec(store.get(it.qid, m)) for it in chosen] for role, m in roles.items()}
    p = Protocol([it.prompt for it in chosen], [it.gold for it in chosen], records, prior=prior, predictor=pred,
                 system=SYSTEM)
    info = {"queries": len(chosen), "small_right": half, "test_measured": len(test), "train_items": len(train),
            "prior": prior, "query_ids": [it.qid for it in chosen],
            "query_accuracy": {r: float(np.mean(p.correct[r])) for r in roles},
            # how well the trained multiplexer tells, before running anything, which model is right:
            # ROC AUC of its P(role right) on the protocol's queries (0.5 = no better than a coin)
            "predictor_auc": {r: _auc(pred.predict_proba(p.texts)[:, j], p.correct[r]) for j, r in enumerate(roles)}}
    return p, info


def _auc(scores: np.ndarray, labels: list[bool]) -> float | None:
    """ROC AUC (Mann-Whitney, ties count half); None when one class is absent."""
    y = np.asarray(labels, bool)
    pos, neg = scores[y], scores[~y]
    if not len(pos) or not len(neg):
        return None
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def run_grid(p: Protocol, a: argparse.Namespace, label: str, log) -> list[dict[str, Any]]:
    rows = []
    for unit in ("latency", "flops"):
        for alpha in a.alphas:
            per: dict[tuple[str, str], list[dict]] = {}
            paths_used: dict[tuple[str, str], set] = {}
            agree = []
            for seed in range(a.seeds):
                trace = _trace(len(p.texts), alpha, a.requests, seed)
                for cache, sel in MAIN + KNOB:
                    # every MAIN cell through the router on the first router_seeds seeds (and through
                    # CacheMuxLLM for the two headline methods on seed 0), checked against the engine
                    via_router = a.router_all or (seed < a.router_seeds and (cache, sel) in MAIN)
                    via_llm = seed == 0 and a.llamaindex and (cache, sel) in (BASE, OURS)
                    e = p.serve_engine(trace, cache, p.selector(sel, unit, seed=seed), a.cache_size, unit).as_dict()
                    t = e
                    for path, on in (("router", via_router), ("llamaindex", via_llm)):
                        if not on:
                            continue
                        if path == "router":
                            t = p.serve(trace, cache, p.selector(sel, unit, seed=seed), a.cache_size, unit).as_dict()
                            x = t
                        else:
                            from cachemux.lab.protocol_llamaindex import serve_llamaindex

                            x = serve_llamaindex(p, trace, cache, p.selector(sel, unit, seed=seed), a.cache_size,
                                                 unit).as_dict()
                        agree.append({"cache": cache, "selector": sel, "seed": seed, "path": path,
                                      "same": all(abs(x[k] - e[k]) <= 1e-6 * max(1.0, abs(e[k]))
                                                  for k in ("hits", "correct", "latency_s", "flops", "paper_cost")),
                                      "ms_per_request": 1e3 * x["wall_s"] / x["requests"],
                                      "engine_ms_per_request": 1e3 * e["wall_s"] / e["requests"]})
                        paths_used.setdefault((cache, sel), set()).add(path)
                    per.setdefault((cache, sel), []).append(t)
                    paths_used.setdefault((cache, sel), set()).add("engine")
            base = per[BASE]
            for (cache, sel), runs in per.items():
                row = {"models": label, "unit": unit, "alpha": alpha, "cache": cache, "selector": sel,
                       "seeds": len(runs), "requests": a.requests, "paths": sorted(paths_used[(cache, sel)]),
                       "live": False}
                for k in ("latency_s", "cpu_s", "flops", "accuracy", "hit_rate", "paper_cost"):
                    row[k] = float(np.mean([r[k] for r in runs]))
                for k in ("latency_s", "cpu_s", "flops"):
                    row[k.split("_")[0] + "_ratio"] = float(np.mean([b[k] for b in base]) / np.mean([r[k] for r in runs]))
                row["accuracy_vs_base_pt"] = 100 * (row["accuracy"] - float(np.mean([b["accuracy"] for b in base])))
                row["answered"] = {r: float(np.mean([x["answered"][r] for x in runs])) for r in p.roles}
                rows.append(row)
            if agree:
                rows.append({"models": label, "unit": unit, "alpha": alpha, "agreement": agree})
            log(f"  {label} {unit} alpha={alpha}: done")
    return rows


def run_live(p: Protocol, roles: dict[str, str], info: dict, a: argparse.Namespace, label: str,
             log) -> list[dict[str, Any]]:
    """``--live-methods`` (default LFU+large and LEC+trained) served live (real generation on every
    miss) through the router, on the first ``live_requests`` requests of seed 0's trace at each
    live alpha, beside the replay of the same requests. Each finished (alpha, method) is kept in ``<json>.live.json`` (keyed by the
    query set, models and sizes), so an interrupted run resumes where it stopped; the finished runs of
    other alphas and methods found there are reported too."""
    from tqdm import tqdm

    from cachemux.lab.records import JsonRecords
    from langchain_cachemux import LocalChatModel

    done = JsonRecords(a.json.with_suffix(".live.json"),
                       {"queries": info["query_ids"], "roles": roles, "requests": a.requests,
                        "live_requests": a.live_requests, "cache_size": a.cache_size})
    models = None
    out = []
    unit = "latency"
    todo = [(alpha, cache, sel) for alpha in a.live_alphas for cache, sel in a.live_methods]
    for tag in done.records:  # runs finished earlier (other alphas or methods) are reported too
        lab, alpha, cache, sel, u = tag.split("|")
        if lab == label and u == unit and (float(alpha), cache, sel) not in todo:
            todo.append((float(alpha), cache, sel))
    for alpha, cache, sel in sorted(todo, key=lambda x: (x[0], [*MAIN, *KNOB].index((x[1], x[2])))):
        trace = _trace(len(p.texts), alpha, a.requests, 0)[:a.live_requests]
        tag = f"{label}|{alpha}|{cache}|{sel}|{unit}"
        rep = p.serve(trace, cache, p.selector(sel, unit), a.cache_size, unit).as_dict()
        if tag not in done.records:
            if models is None:
                models = {r: LocalChatModel(m, max_tokens=1, temperature=0.0) for r, m in roles.items()}
            bar = tqdm(total=len(trace), desc=f"live {label} a={alpha} {cache}+{sel}", mininterval=10)
            load0 = os.getloadavg()[0]
            live = p.serve(trace, cache, p.selector(sel, unit), a.cache_size, unit, models=models,
                           progress=bar.update).as_dict()
            bar.close()
            live["load1_start"], live["load1_end"] = load0, os.getloadavg()[0]
            done.records[tag] = live
            done.save()
        live = done.records[tag]
        out.append({"models": label, "unit": unit, "alpha": alpha, "cache": cache, "selector": sel,
                    "requests": len(trace), "live": live, "replay_same_prefix": rep,
                    "latency_live_over_replay": live["latency_s"] / rep["latency_s"] if rep["latency_s"] else None,
                    "cpu_live_over_replay": live["cpu_s"] / rep["cpu_s"] if rep["cpu_s"] else None,
                    # the same calls' recorded costs (runs from before this field have none)
                    "latency_live_over_records": (live["latency_s"] / live["recorded_latency_s"]
                                                  if live.get("recorded_latency_s") else None),
                    "cpu_live_over_records": (live["cpu_s"] / live["recorded_cpu_s"]
                                              if live.get("recorded_cpu_s") else None),
                    "same_hits_and_accuracy": live["hits"] == rep["hits"] and live["correct"] == rep["correct"]})
        log(f"  live {label} a={alpha} {cache}+{sel}: {live['requests']} requests, {live['calls']} calls, "
            f"{live['mismatches']} answers differ from the records, live/replay latency "
            f"{out[-1]['latency_live_over_replay']:.3f} (CPU {out[-1]['cpu_live_over_replay']:.3f}), "
            f"load {live.get('load1_start', float('nan')):.1f}-{live.get('load1_end', float('nan')):.1f}")
    return out


def _two(x: float | None, y: float | None) -> str:
    return "n/a (not recorded)" if x is None or y is None else f"{x:.2f} / {y:.2f}"


def _tables(report: dict[str, Any]) -> str:
    """The grid as Markdown: per model set, a row per method, latency / CPU / FLOPs ratios to
    LFU+large and accuracy minus always-large's (points) per alpha; then the live rows."""
    rows = [r for r in report["grid"] if "cache" in r]
    out = []
    for label in dict.fromkeys(r["models"] for r in rows):
        rs = [r for r in rows if r["models"] == label]
        alphas = sorted({r["alpha"] for r in rs})
        out += [f"`{label}`:", "", "| cache+selector | " + " | ".join(
            f"α={al}: latency / CPU / FLOPs / Δacc" for al in alphas) + " |", "|---" * (len(alphas) + 1) + "|"]
        for m in dict.fromkeys((r["cache"], r["selector"]) for r in rs):
            cells = []
            for al in alphas:
                lat = next(r for r in rs if r["unit"] == "latency" and r["alpha"] == al and (r["cache"], r["selector"]) == m)
                fl = next(r for r in rs if r["unit"] == "flops" and r["alpha"] == al and (r["cache"], r["selector"]) == m)
                cells.append(f"{lat['latency_ratio']:.2f}x / {lat['cpu_ratio']:.2f}x / {fl['flops_ratio']:.2f}x / "
                             f"{lat['accuracy_vs_base_pt']:+.1f}")
            name = f"{m[0].upper()}+{m[1]}"
            out.append(f"| {'**' + name + '**' if m in (OURS, EXPLORE) else name} | " + " | ".join(cells) + " |")
        out.append("")
    live = report.get("live") or []
    if live:
        out += ["| live: models, α, cache+selector | requests | calls | hits | answers differ | live / replay wall | "
                "live / replay CPU | live / records of the same calls, wall / CPU | load |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in live:
            v = r["live"]
            out.append(f"| {r['models']}, {r['alpha']}, {r['cache'].upper()}+{r['selector']} | {v['requests']} | "
                       f"{sum(v['calls'].values())} ({', '.join(f'{k} {n}' for k, n in v['calls'].items())}) | "
                       f"{v['hits']} (replay {r['replay_same_prefix']['hits']}) | {v['mismatches']} | "
                       f"{r['latency_live_over_replay']:.2f} | {r['cpu_live_over_replay']:.2f} | "
                       f"{_two(r.get('latency_live_over_records'), r.get('cpu_live_over_records'))} | "
                       f"{v.get('load1_start', float('nan')):.1f}-{v.get('load1_end', float('nan')):.1f} |")
    return "\n".join(out)


def _plot(report: dict[str, Any], out: Path) -> list[str]:
    from cachemux.sim.plots import pyplot

    plt = pyplot()
    rows = [r for r in report["grid"] if "cache" in r]
    made = []
    for label in dict.fromkeys(r["models"] for r in rows):
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
        for ax, (unit, key, title, target) in zip(axes, (
                ("latency", "latency_ratio", "latency: LFU+large / method (unit latency)", TARGET_LATENCY),
                ("flops", "flops_ratio", "FLOPs: LFU+large / method (unit FLOPs)", TARGET_FLOPS),
                ("latency", "accuracy", "accuracy of served answers (unit latency)", None))):
            rs = [r for r in rows if r["models"] == label and r["unit"] == unit]
            methods = list(dict.fromkeys((r["cache"], r["selector"]) for r in rs))
            alphas = sorted({r["alpha"] for r in rs})
            w = 0.8 / len(methods)
            for j, m in enumerate(methods):
                ys = [next(r[key] for r in rs if r["alpha"] == al and (r["cache"], r["selector"]) == m) for al in alphas]
                ax.bar(np.arange(len(alphas)) + (j - len(methods) / 2 + 0.5) * w, ys, w, label=f"{m[0]}+{m[1]}",
                       color=plt.cm.tab20(j % 20), edgecolor="black" if m in (OURS, EXPLORE) else None, lw=0.6)
            if target:
                ax.axhline(target, color="red", ls="--", lw=1, label=f"target {target}x")
                ax.axhline(1.0, color="black", lw=0.8)
            ax.set_xticks(np.arange(len(alphas)), [f"alpha={al}" for al in alphas])
            ax.set_title(title, fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        axes[0].legend(fontsize=6, ncol=2)
        fig.suptitle(f"MMLU letter answers, models {label}: replay through CacheMuxRouter / JointEngine")
        fig.tight_layout()
        path = out.with_name(f"{out.stem}_{label.replace('/', '-')}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        made.append(str(path))
    return made


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    if a.replot:
        print("\n".join(_plot(json.loads(a.json.read_text()), a.json)))
        return 0
    if a.table:
        print(_tables(json.loads(a.json.read_text())))
        return 0
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f}s] {msg}", flush=True)

    store = MMLUMeasurements(a.measurements, store_key())
    names = list(dict.fromkeys([a.small, a.medium, a.large]))
    if a.measure:
        from cachemux.models import get_model

        items = [it for pair in zip(load_items([TEST_SUBJECT])[:a.measure], load_items([TRAIN_SUBJECT])[:a.measure])
                 for it in pair]
        models = {m: get_model(m).load() for m in names}
        log(f"measuring up to {len(items)} items on {names}")
        measure_mmlu(items, models, store, only={a.large: [TEST_SUBJECT]} if a.large != a.medium else None)
    items = {it.qid: it for it in load_items([TEST_SUBJECT, TRAIN_SUBJECT])}
    acc = _accuracy_table(store, items, names)
    for r in acc:
        log(f"  accuracy {r['subject']:<14} {r['model']:<20} {r['items']:4d} items {100 * r['accuracy']:5.1f}%  "
            f"median {r['latency_median_s']:.2f} s wall / {r['cpu_median_s']:.2f} s CPU, {r['flops_mean'] / 1e9:.1f} GFLOPs")
    sets = {f"{a.small}/{a.large}": {"small": a.small, "large": a.large}}
    if a.large != a.medium:
        sets[f"{a.small}/{a.medium}/{a.large}"] = {"small": a.small, "medium": a.medium, "large": a.large}
    grid, live, protocols = [], [], {}
    built = {}
    old = json.loads(a.json.read_text()) if a.live_only and a.json.is_file() else None
    if a.live_only and old is None:
        raise SystemExit(f"--live-only needs an earlier report at {a.json}")
    for label, roles in sets.items():
        p, info = build_protocol(store, roles, a.queries)
        built[label] = (p, roles, info)
        protocols[label] = info
        log(f"protocol {label}: {info['queries']} queries ({info['small_right']} small-right of "
            f"{info['test_measured']} measured), accuracy on them {info['query_accuracy']}, "
            f"predictor AUC {info['predictor_auc']}")
        if old is not None:
            if old["protocols"].get(label, {}).get("query_ids") != info["query_ids"]:
                raise SystemExit(f"--live-only: the report's {label} query set differs from today's; rerun the grid")
            continue
        grid += run_grid(p, a, label, log)
    if old is not None:
        grid = old["grid"]
    _write_report(a, acc, protocols, grid, live, t0, log)
    if a.live_requests:
        label = next(iter(sets))
        p, roles, info = built[label]
        for row in run_live(p, roles, info, a, label, log):
            live.append(row)
            _write_report(a, acc, protocols, grid, live, t0, log)
    return 0


def _write_report(a: argparse.Namespace, acc: list, protocols: dict, grid: list, live: list, t0: float,
                  log) -> None:
    """The JSON report (config, accuracy, protocols, grid, live, verdicts, flat rows) and the plots;
    written after the grid and again after each live run."""
    verdict = []
    for r in grid:
        if "cache" in r and (r["cache"], r["selector"]) in (OURS, EXPLORE):
            base = next(b for b in grid if "cache" in b and b["models"] == r["models"] and b["unit"] == r["unit"]
                        and b["alpha"] == r["alpha"] and (b["cache"], b["selector"]) == BASE)
            ratio = r["latency_ratio"] if r["unit"] == "latency" else r["flops_ratio"]
            target = TARGET_LATENCY if r["unit"] == "latency" else TARGET_FLOPS
            drop = base["accuracy"] - r["accuracy"]
            verdict.append({"models": r["models"], "selector": r["selector"], "unit": r["unit"],
                            "alpha": r["alpha"], "ratio": ratio,
                            "target": target, "met": ratio >= target, "accuracy_drop_pt": 100 * drop,
                            "accuracy_met": drop <= TARGET_ACC_DROP})
            if not live:
                log(f"  LEC+{r['selector']} {r['models']} {r['unit']:<7} alpha {r['alpha']}: {ratio:.2f}x (target {target}x) "
                    f"{'MET' if ratio >= target else 'missed'}; accuracy {100 * r['accuracy']:.1f}% vs always-large "
                    f"{100 * base['accuracy']:.1f}% ({'MET' if drop <= TARGET_ACC_DROP else 'missed'})")
    report = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()},
              "accuracy": acc, "protocols": protocols, "grid": grid, "live": live, "targets": verdict,
              "seconds": time.perf_counter() - t0}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    report["plots"] = _plot(report, a.json)
    rows = [{"alpha": r["alpha"], "models": r["models"], "cache": r["cache"], "selector": r["selector"],
             "unit": r["unit"], "latency_ratio": r["latency_ratio"], "cpu_ratio": r["cpu_ratio"],
             "flops_ratio": r["flops_ratio"], "accuracy": r["accuracy"], "live": False} for r in grid if "cache" in r]
    live_base = {(r["models"], r["alpha"]): r["live"] for r in live if (r["cache"], r["selector"]) == BASE}

    def live_ratio(r: dict, key: str) -> float | None:
        b = live_base.get((r["models"], r["alpha"]))
        return b[key] / r["live"][key] if b and r["live"][key] else None

    rows += [{"alpha": r["alpha"], "models": r["models"], "cache": r["cache"], "selector": r["selector"],
              "unit": r["unit"], "latency_ratio": live_ratio(r, "latency_s"), "flops_ratio": live_ratio(r, "flops"),
              "cpu_ratio": live_ratio(r, "cpu_s"), "accuracy": r["live"]["accuracy"],
              "live": True, "latency_live_over_replay": r["latency_live_over_replay"],
              "cpu_live_over_replay": r["cpu_live_over_replay"],
              "latency_live_over_records": r.get("latency_live_over_records"),
              "cpu_live_over_records": r.get("cpu_live_over_records"), "mismatches": r["live"]["mismatches"]}
             for r in live]
    report["rows"] = rows
    tmp = a.json.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=float))
    os.replace(tmp, a.json)
    log(f"wrote {a.json} and {', '.join(report['plots'])}")


if __name__ == "__main__":
    sys.exit(main())
