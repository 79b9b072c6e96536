"""MMLU multiple choice answered with one letter, on local models: items, the judge, and
resumable per-(item, model) measurements (answer, wall and CPU latency, FLOPs) in a JSON file.

* Items: the shipped MMLU prompts (``shared/data/routing/mmlu/mmlu_<subject>.csv``: question,
  options A-D, "Answer:"), in file order, which is the MMLU test set's order. The shipped files
  carry no gold letters (only whether Mixtral / GPT-4 answered right), so the gold letters of the
  subjects used here are in ``GOLD`` below, copied from the MMLU release (Hendrycks et al.,
  github.com/hendrycks/test, MIT licence, ``data/test/<subject>_test.csv``, last column) and
  checked against the shipped questions by their opening words (``GOLD_CHECK``, every 10th
  question when copied).
* ``SPLITS.json`` decides the use: subjects under "train" may fit the multiplexer, subjects under
  "test" are for reporting, so the protocol's queries come from a "test" subject.
* Prompt: the system message ``SYSTEM`` and the shipped prompt as the user message, through the
  model's chat template; greedy, 1 new token; right iff the first letter generated is the gold
  letter (``first_letter``). Without the system message Qwen2.5-Coder-1.5B starts "The correct
  answer is", so a 1-2 token answer would never hold the letter.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cachemux import paths
from cachemux.lab.records import JsonRecords
from cachemux.errors import ConfigError

__all__ = ["GOLD", "SYSTEM", "TASK_VERSION", "MMLUItem", "MMLUMeasurements", "first_letter", "is_correct",
           "load_items", "measure_mmlu", "splits"]

TASK_VERSION = "mmlu-letter-v2"
SYSTEM = "Answer with the letter of the correct option only."
MAX_NEW_TOKENS = 1  # a letter is one token for these tokenizers

# subject -> gold letters in file order (see the module docstring)
GOLD: dict[str, str] = {
    # all 306 questions (a "test" subject: the protocol's queries)
    "nutrition": (
        "CBAACDBBCBBDBADBBAADBACDCDDDCDDCCBDBDBDBDACCDABACC"
        "CABBCDCDDBDDDBCCCAADBAAABADDDCCBDADBACABCACBACDDCB"
        "CBDDBCDADACDACBDBBDAABCACCAADBBCABCCDBCAAACBACCBBA"
        "ADBDADCCCCAABCBDDBCBBABDBADBDCBBDDBDADDADDCDDADBDC"
        "DDAACDCBDACAACBBDCACDDDBBDCCDBDDCABDACCCDCABBDCDBB"
        "BCADAACABDDBCDCDDDCCACDBACDADAAABBDDBDCAADCACDBCCA"
        "ACDCAD"),
    # the first 205 of 783 questions (a "train" subject: fitting the multiplexer)
    "miscellaneous": (
        "CBDCBCCAABABBBABAAAADACBDCCCDADCCDCCCDBBCABCDBAACC"
        "BACCBACDBBBCCDCAABABACBBCCBCCBCBCDCBCDBCBDBDADBCBD"
        "DCBBCAACBDDACADACBDBADBBCCBBDDACDCCBCCACCCBBDDBCDD"
        "DBDCBBBBBBADABDACABADCCDAABCABDBABDCCCCDCCABDCDBCB"
        "DCAAB"),
}
# (index, opening words) per subject: the letters line up with the shipped questions
GOLD_CHECK: dict[str, tuple[tuple[int, str], ...]] = {
    "nutrition": ((0, 'Which foods tend'), (50, 'The gut microbes metabolize'), (100, 'In adolescence:'), (150, 'Which of the following is not a function of vitamin A'), (200, 'All babies lose weight'), (250, 'Which of two hormones'), (300, 'Energy that is expended')),
    "miscellaneous": ((0, 'An important source'), (50, 'What does it mean to work'), (100, 'Which of these animals shares'), (150, 'Which of these is a virus?'), (200, 'What automobile company makes the Sonata')),
}

_LETTER = re.compile(r"[A-Za-z]")


@dataclass(frozen=True)
class MMLUItem:
    """One question: ``prompt`` (the shipped text ending in "Answer:"), its ``gold`` letter."""

    qid: str
    subject: str
    split: str
    index: int
    prompt: str
    gold: str

    @property
    def messages(self) -> list[dict[str, str]]:
        """What the model is asked (then its chat template): ``SYSTEM``, then the question."""
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": self.prompt}]


def first_letter(text: str) -> str:
    """The first letter of ``text``, upper-cased ("" if none): " B." -> "B", "(c)" -> "C"."""
    m = _LETTER.search(text)
    return m.group(0).upper() if m else ""


def is_correct(gold: str, text: str) -> bool:
    """The judge: the first generated letter is the gold letter."""
    return first_letter(text) == gold.upper()


def splits(root: Path | None = None) -> dict[str, list[str]]:
    """``SPLITS.json``: {"train": [...], "test": [...], ...} (MMLU subject names)."""
    root = root or paths.data_dir("routing") / "routing"
    return json.loads((root / "SPLITS.json").read_text())


def _qid(subject: str, prompt: str) -> str:
    return hashlib.sha256(f"{subject}\x1e{prompt}".encode()).hexdigest()[:12]


def load_items(subjects: Sequence[str], *, data_dir: str | os.PathLike[str] | None = None,
               require_gold: bool = True) -> list[MMLUItem]:
    """The items of ``subjects`` in file order whose gold letter is in ``GOLD``; with
    ``require_gold=False`` all of them (an unknown gold is "?": enough to measure)."""
    root = Path(data_dir) if data_dir is not None else paths.data_dir("routing") / "routing"
    split_of = {s: k for k, v in splits(root).items() if k in ("train", "test") for s in v}
    out = []
    for subject in subjects:
        if subject not in GOLD and require_gold:
            raise ConfigError(f"subjects: no gold letters for {subject!r} (have {sorted(GOLD)})")
        with open(root / "mmlu" / f"mmlu_{subject}.csv", newline="") as f:
            prompts = [row["prompt"] for row in csv.DictReader(f)]
        gold = GOLD.get(subject, "")
        if len(gold) > len(prompts):
            raise ConfigError(f"subjects: {subject!r} has {len(prompts)} questions but {len(gold)} gold letters")
        for i, words in GOLD_CHECK.get(subject, ()):
            if not prompts[i].startswith(words):
                raise ConfigError(f"subjects: {subject!r} question {i} does not start with {words!r}")
        if require_gold:
            prompts = prompts[:len(gold)]  # only the questions whose gold letter is known
        gold = gold.ljust(len(prompts), "?")
        out += [MMLUItem(_qid(subject, p), subject, split_of.get(subject, "?"), i, p, g)
                for i, (p, g) in enumerate(zip(prompts, gold))]
    return out


class MMLUMeasurements(JsonRecords):
    """Per item and per model name: answer, letter, wall latencies, CPU seconds, FLOPs, tokens.

    A JSON file (never pickle) written atomically; a file with another ``key`` is ignored (and
    replaced at the first save). Correctness is derived from the item's gold letter, not stored."""

    def has(self, qid: str, model: str) -> bool:
        r = self.records.get(qid)
        return r is not None and model in r["models"]

    def add(self, item: MMLUItem, model: str, result: Any, cpu: float, load: float | None = None) -> None:
        r = self.records.setdefault(item.qid, {"subject": item.subject, "index": item.index, "models": {}})
        r["models"][model] = {"answer": result.text, "letter": first_letter(result.text),
                              "latency": [result.latency], "cpu": [cpu], "flops": result.flops,
                              "tokens_in": result.tokens_in, "tokens_out": result.tokens_out,
                              "load1": load, "at": time.time()}

    def get(self, qid: str, model: str) -> dict[str, Any]:
        return self.records[qid]["models"][model]

    def models_of(self, qid: str) -> list[str]:
        r = self.records.get(qid)
        return list(r["models"]) if r else []

    def complete(self, items: Iterable[MMLUItem], models: Sequence[str]) -> list[MMLUItem]:
        return [it for it in items if all(self.has(it.qid, m) for m in models)]


def measure_mmlu(items: Sequence[MMLUItem], models: Mapping[str, Any], store: MMLUMeasurements, *,
                 max_new_tokens: int = MAX_NEW_TOKENS, save_every: int = 5,
                 only: Mapping[str, Iterable[str]] | None = None,
                 progress: Callable[[int, MMLUItem], None] | None = None) -> None:
    """Run every model (``{name: LocalModel}``) on every item it has no record for (``only``:
    ``{model: subjects}`` restricts a model to those subjects); models alternate which goes
    first (so load from other processes hits all alike); the store is saved every
    ``save_every`` items, so an interrupted run loses at most that many."""
    names = list(models)
    only = {m: set(v) for m, v in (only or {}).items()}
    for n, it in enumerate(items):
        order = names if n % 2 == 0 else names[::-1]
        fresh = False
        for name in order:
            if store.has(it.qid, name) or (name in only and it.subject not in only[name]):
                continue
            c0 = time.process_time()
            res = models[name].generate(it.messages, max_new_tokens=max_new_tokens)
            store.add(it, name, res, time.process_time() - c0, os.getloadavg()[0])
            fresh = True
        if progress is not None:
            progress(n, it)
        if fresh and (n + 1) % save_every == 0:
            store.save()
    store.save()


def store_key() -> dict[str, Any]:
    """The measurement file's key: records made under another prompt or token budget are ignored."""
    return {"task": TASK_VERSION, "system": SYSTEM, "max_new_tokens": MAX_NEW_TOKENS}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cachemux.lab.mmlu_task OUT.json SUBJECT[,SUBJECT] MODEL [MODEL ...] [--limit N]
    [--only MODEL=SUBJECT]``: measure (resumably) the items with gold letters of each subject
    (the first N), interleaving the subjects."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("subjects")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--limit", type=int, default=None, help="items per subject")
    ap.add_argument("--only", action="append", default=[], help="MODEL=SUBJECT[,SUBJECT]: that model only there")
    a = ap.parse_args(argv)
    from cachemux.models import get_model

    per = [load_items([s])[:a.limit] for s in a.subjects.split(",")]
    items = [it for group in zip(*per) for it in group] + [it for g in per for it in g[min(map(len, per)):]]
    models = {m: get_model(m) for m in a.models}
    for m in models.values():
        m.load()
    store = MMLUMeasurements(a.out, store_key())
    only = {m: s.split(",") for m, s in (o.split("=", 1) for o in a.only)}
    t0 = time.time()

    def progress(n: int, it: MMLUItem) -> None:
        if n % 10 == 0:
            print(f"{time.time() - t0:7.0f}s item {n}/{len(items)} {it.subject}", flush=True)

    measure_mmlu(items, models, store, only=only, progress=progress)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
