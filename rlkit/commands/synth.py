"""`rlkit synth RUN_DIR [KEY=VALUE ...] [--stage NAME] [--output DIR]`: run SwS's synthesis alone on a
finished run, to try other prompts or models without retraining.

It reads the run's config.yaml, the ledger of the rl stage the synthesize stage reads (or of the last
rl stage when the recipe has no synthesize stage: one named `synthesize` with the defaults is added),
and that stage's output model as the policy of the difficulty filter. Overrides address the
synthesize stage by name, e.g. `synthesize.synth.budget=200 synthesize.writer.backend=openai
synthesize.synth.problem_template=my_prompt.txt`. Each step shows a progress bar; the end prints the
funnel, the per-category failure rates and budgets, and what each step lost. The work goes to
--output (default RUN_DIR/synth); rerunning with the same --output resumes it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="run SwS problem synthesis on a finished run", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a run directory (holds config.yaml, ledger and stages/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides of the synthesize stage, e.g. synthesize.synth.budget=200")
    p.add_argument("--stage", help="the synthesize stage to run (default: the recipe's only one, or an added 'synthesize')")
    p.add_argument("--output", "-o", type=Path, help="where the pipeline writes (default RUN_DIR/synth; an existing one resumes)")
    p.set_defaults(func=main)


def load_run_config(run_dir: Path, overrides: list[str], stage_name: str | None):  # noqa: ANN201 - (RunConfig, stage)
    """The run's config with a synthesize stage (the recipe's, or one added after its last rl stage), overridden."""
    from rlkit.config import apply_override, parse_override, validate_config
    from rlkit.errors import ConfigError

    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} holds no run (no config.yaml); pass the --output-dir of a finished run")
    raw = yaml.safe_load(path.read_text()) or {}
    stages = raw.get("stages") or []
    names = [s.get("name") or s.get("type") for s in stages if s.get("type") == "synthesize"]
    if stage_name is None:
        if len(names) > 1:
            raise ConfigError(f"{path}: several synthesize stages ({', '.join(names)}); pick one with --stage")
        if not names:
            stages.append({"type": "synthesize", "name": "synthesize"})
            names = ["synthesize"]
        stage_name = names[0]
    elif stage_name not in names:
        raise ConfigError(f"--stage {stage_name}: not a synthesize stage of {path} (synthesize stages: {', '.join(names) or 'none'})")
    for text in overrides:
        apply_override(raw, *parse_override(text), text)
    config = validate_config(raw, str(path) + (" (with overrides)" if overrides else ""))
    return config, config.stage(stage_name)


def main(args: argparse.Namespace) -> int:
    from rlkit.config import GeneratorConfig
    from rlkit.errors import ConfigError
    from rlkit.generation import build_generator
    from rlkit.stages.synthesize import synthesize

    config, stage = load_run_config(args.run_dir, list(args.overrides), args.stage)
    source = config.stage(str(stage.source))
    model_dir = args.run_dir / "stages" / str(source.name) / "output"
    if not model_dir.is_dir():
        raise ConfigError(f"{model_dir}: the rl stage '{source.name}' has no output model (did it finish?)")
    policy = build_generator(GeneratorConfig(backend="local", model=str(model_dir), engine=config.rollout.engine, dtype=config.model.dtype))
    out = args.output or args.run_dir / "synth"
    try:
        result = synthesize(args.run_dir, stage, source, policy, config.rollout.temperature,
                            config.rollout.max_new_tokens, config.seed, out=out)
    finally:
        policy.close()
    print(f"rlkit: {len(result.rows)} new problems in {out / 'synthetic.jsonl'}; funnel in {out / 'funnel.json'}")
    return 0
