"""`rlkit plot RUN_DIR [--output DIR]`: PNG curves (reward, training-sample accuracy, held-out accuracy,
entropy, response length, KL, loss), one panel per stage, from RUN_DIR/metrics.jsonl (and summary.json's
evaluations), written to RUN_DIR/plots/ unless --output says otherwise. A quantity without data is named."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="plot a run's training curves", description=__doc__)
    p.add_argument("run_dir", type=Path, help="a run directory (holds metrics.jsonl)")
    p.add_argument("--output", "-o", type=Path, help="where the PNGs go (default RUN_DIR/plots)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from rlkit.plot import plot_run

    written, missing = plot_run(args.run_dir, args.output)
    for path in written:
        print(path, flush=True)
    for note in missing:
        print(f"rlkit: {note}", file=sys.stderr, flush=True)
    return 0
