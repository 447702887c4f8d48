"""`rlkit select RUN_DIR [--by variance|accuracy|slope] [--top K] [--stage NAME] [--reverse]`

Rank the problems of a finished (or running) run by their training accuracy across epochs, from the
accuracy ledger (RUN_DIR/ledger.jsonl). `--by variance` is the historical variance score 1-shot RLVR
(Wang et al., 2025) uses to pick its example from a full-set run; `accuracy` puts the least accurate
first, `slope` the fastest falling. Prints a table and the `data.ids: [...]` line to paste into a recipe.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlkit.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    from rlkit.ledger import RANKINGS

    p = sub.add_parser("select", help="rank a run's problems by their training accuracy history (the ledger)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a run directory (holds ledger.jsonl)")
    p.add_argument("--by", default="variance", help=f"ranking: {', '.join(RANKINGS)} (default variance)")
    p.add_argument("--top", type=int, default=10, help="how many problems to print (default 10)")
    p.add_argument("--stage", default=None, help="only this rl stage's rows (default: all)")
    p.add_argument("--reverse", action="store_true", help="the other end of the ranking (e.g. least variable first)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from rlkit.ledger import RANKINGS, accuracy_history, rank_problems

    if args.by not in RANKINGS:
        raise ConfigError(f"--by: unknown ranking '{args.by}'; expected one of {', '.join(RANKINGS)}")
    if args.top < 1:
        raise ConfigError(f"--top: expected at least 1, got {args.top}")
    chosen = rank_problems(accuracy_history(args.run_dir, args.stage), args.by, args.reverse)[: args.top]
    table = Table(title=f"{args.run_dir}: problems by {args.by}" + (" (reversed)" if args.reverse else ""))
    for column in ("id", "epochs", "accuracy per epoch", "mean", "variance", "slope"):
        table.add_column(column, justify="left" if column in ("id", "accuracy per epoch") else "right")
    for h in chosen:
        shown = " ".join(f"{a:.2f}" for a in h.accuracy[:12]) + (" ..." if len(h.accuracy) > 12 else "")
        table.add_row(h.id, str(len(h.epochs)), shown, f"{h.mean:.3f}", f"{h.variance:.4f}", f"{h.slope:+.4f}")
    console = Console()
    console.print(table)
    print(f"data.ids: {json.dumps([h.id for h in chosen])}")
    return 0
