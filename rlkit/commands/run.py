"""`rlkit run RECIPE [KEY=VALUE ...] [--output-dir DIR] [--resume] [--dry-run] [--explain KEY]`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rlkit.config import dump_config, explain, load_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a recipe", description=__doc__)
    p.add_argument("recipe", help="path to a recipe YAML")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. rl.lr=1e-5 rollout.n=4")
    p.add_argument("--output-dir", "-o", type=Path, help="run directory (default runs/<recipe>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output-dir from its last checkpoint")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--explain", metavar="KEY", help="print a key's help text, default and the value this recipe resolves to, and exit")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from rlkit.errors import ConfigError

    overrides = list(args.overrides)
    if args.resume and args.output_dir is None:
        raise ConfigError("--resume needs --output-dir DIR naming the run to continue")
    config = load_config(args.recipe, overrides)
    if args.resume and args.output_dir is not None and (args.output_dir / "config.yaml").exists() and not overrides:
        config = load_config(args.output_dir / "config.yaml")  # resume exactly what was run
    if args.explain:
        print(explain(config, args.explain))
        return 0
    if args.dry_run:
        sys.stdout.write(dump_config(config))
        return 0
    from rlkit.runner import format_summary, run_recipe
    from rlkit.stages.context import Interrupted

    run_dir = args.output_dir or Path("runs") / f"{Path(args.recipe).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"rlkit: run directory {run_dir}", flush=True)
    try:
        summary = run_recipe(config, run_dir, resume=args.resume)
    except Interrupted as stop:
        print(f"rlkit: {stop}\nrlkit: continue with: rlkit run {args.recipe} --output-dir {run_dir} --resume", file=sys.stderr)
        return 130
    print(format_summary(summary), flush=True)
    print(f"rlkit: results in {run_dir}/summary.json, model in {run_dir}/final", flush=True)
    return 0
