"""`rlkit plot RUN_DIR [--output DIR]`: PNG curves (reward, accuracy, entropy, response length, KL, loss)
from RUN_DIR/metrics.jsonl, written to RUN_DIR/plots/ unless --output says otherwise."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="plot a run's training curves", description=__doc__)
    p.add_argument("run_dir", type=Path, help="a run directory (holds metrics.jsonl)")
    p.add_argument("--output", "-o", type=Path, help="where the PNGs go (default RUN_DIR/plots)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from rlkit.plot import plot_run

    for path in plot_run(args.run_dir, args.output):
        print(path, flush=True)
    return 0
