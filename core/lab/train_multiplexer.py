"""``cachemux train-multiplexer``: fit the trained multiplexer on MMLU train subjects, report AUC and
the cost saved at 95% of the large model's quality on held-out MMLU subjects, GSM8K, MT-Bench and
the 9-model dcrouter data; writes JSON, a PNG and the fitted predictors (safetensors + JSON)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cachemux import paths

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=paths.results_dir(),
                        help="folder for trained_multiplexer.json/.png and the fitted predictors (default: results)")
    parser.add_argument("--quick", action="store_true",
                        help="small subsets (about 1,900 texts) and a 2-head grid: seconds once their embeddings are "
                             "cached, a few minutes to embed them on a CPU the first time")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="embedding cache (.npy) folder (default: $CACHEMUX_CACHE or ~/.cache/cachemux)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the shared data folder holding routing/ (default: $CACHEMUX_DATA or ../shared/data)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds over MMLU train subjects")
    parser.add_argument("--target", type=float, default=0.95,
                        help="quality target as a fraction of the large model's (default 0.95)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-dcrouter", action="store_true", help="skip the 9-model dcrouter experiment")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from cachemux.errors import ConfigError
    from cachemux.lab.multiplexer_eval import EvalConfig, run_evaluation

    if args.threads:
        torch.set_num_threads(args.threads)
    if not (0.0 < args.target <= 1.0):
        raise ConfigError(f"--target must be in (0, 1], got {args.target!r}")
    if args.folds < 2:
        raise ConfigError(f"--folds must be >= 2, got {args.folds!r}")
    cfg = EvalConfig(out=args.out, cache_dir=args.cache_dir, data_dir=args.data_dir, quick=args.quick,
                     folds=args.folds, seed=args.seed, target_frac=args.target, dcrouter=not args.no_dcrouter,
                     progress=not args.no_progress)
    run_evaluation(cfg)
    return 0
