"""`rlkit run RECIPE [KEY=VALUE ...] [--output-dir DIR] [--resume [--force]] [--dry-run] [--explain KEY]`.

Overrides may come anywhere on the line. `--resume` runs the run's saved config.yaml plus the overrides
given now (rlkit/resume.py): the recipe file is only compared with it, and the differences are shown.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a recipe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", help="path to a recipe YAML")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. rl.lr=1e-5 rollout.n=4 (anywhere on the line)")
    p.add_argument("--output-dir", "-o", type=Path, help="run directory (default runs/<recipe>-<time>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --output-dir from its last checkpoint, with its saved config plus the overrides given now")
    p.add_argument("--force", action="store_true",
                   help="with --resume: accept overrides that change the model, a stage's algorithm, a finished stage or fewer steps than done")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--explain", metavar="KEY", help="print a key's help text, default and the value this recipe resolves to, and exit")
    p.set_defaults(func=main, extra_overrides=True)  # KEY=VALUE after a flag lands in `overrides` too (cli.py)


def main(args: argparse.Namespace) -> int:
    from rlkit.config import dump_config, explain, load_config
    from rlkit.errors import ConfigError

    overrides = list(args.overrides)
    if args.force and not args.resume:
        raise ConfigError("--force only applies to --resume")
    if args.resume:
        if args.output_dir is None:
            raise ConfigError("--resume needs --output-dir DIR naming the run to continue")
        from rlkit.resume import resume_config

        config = resume_config(Path(args.recipe), args.output_dir, overrides, force=args.force, save=not args.dry_run)
    else:
        config = load_config(args.recipe, overrides)
    if args.explain:
        print(explain(config, args.explain))
        return 0
    if args.dry_run:
        sys.stdout.write(dump_config(config))
        return 0
    from rlkit.runner import format_summary, run_recipe
    from rlkit.stages.context import Aborted, Interrupted

    run_dir = args.output_dir or Path("runs") / f"{Path(args.recipe).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"rlkit: run directory {run_dir}", flush=True)
    resume_cmd = shlex.join(["rlkit", "run", str(args.recipe), "--output-dir", str(run_dir), "--resume"])
    try:
        summary = run_recipe(config, run_dir, resume=args.resume)
    except (Interrupted, Aborted) as stop:
        print(f"rlkit: {stop}\nrlkit: continue with: {resume_cmd}", file=sys.stderr)
        return 128 + stop.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    print(format_summary(summary), flush=True)
    print(f"rlkit: results in {run_dir}/summary.json, model in {run_dir}/final", flush=True)
    return 0
