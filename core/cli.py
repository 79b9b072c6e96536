"""The ``cachemux`` command line: ``cachemux reproduce``, ``cachemux calibrate-semantic``, ..."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

# subcommand -> (module exposing add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "reproduce": ("cachemux.sim.reproduce",
                  "run the paper's experiment suites; print tables beside the paper's, write JSON and plots"),
    "calibrate-semantic": ("cachemux.lab.calibrate_semantic",
                           "choose the semantic-match threshold on real question pairs (QQP)"),
    "train-multiplexer": ("cachemux.lab.train_multiplexer",
                          "train the multiplexer's quality predictor on routing data; report AUC and cost saved"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cachemux", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:  # an optional part is not installed: say so when it is used
            p.set_defaults(_missing=f"cachemux {name} is unavailable: {exc}")
            continue
        mod.add_arguments(p)
        modules[name] = mod
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "_missing", None):
        print(args._missing, file=sys.stderr)
        return 2
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
