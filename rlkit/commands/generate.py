"""`rlkit generate --backend B --input PROBLEMS --n 8 --output OUT.jsonl [--reward math ...]`

Sample n completions per problem from a generation backend, score each with the rewards (the same pool,
workers and timeouts as a run), and write one row per completion: the problem's fields, `sample_index`,
`completion`, `reward`, `rewards`, `correct` and the problem's `pass_rate`. Rerun with the same --output to
resume: finished problems are skipped, failed requests are tried again. The end prints a funnel.

    rlkit generate --backend tiny_teacher --slip-rate 0.1 --input tiny:arithmetic --size 500 --n 8 -o teacher.jsonl
    rlkit generate --backend openai --base-url http://localhost:8000/v1 --model Qwen/QwQ-32B \\
        --api-key-env MY_KEY --input problems.jsonl --n 8 --max-tokens 8192 -o samples.jsonl
    rlkit generate --backend local --model runs/qs/final --input tiny:arithmetic --n 16 -o best_of_16.jsonl
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rlkit.config import DataConfig, GeneratorConfig, RewardConfig, RewardSpec
from rlkit.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="sample n completions per problem from a backend, score and keep them",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", "-i", required=True, help="problems: a .jsonl/.parquet file, hf:<id> or tiny:arithmetic")
    p.add_argument("--output", "-o", type=Path, required=True, help="the .jsonl written (and resumed)")
    p.add_argument("--n", type=int, default=8, help="samples per problem (default 8)")
    p.add_argument("--reward", action="append", default=[], help="a reward spec (repeatable; default math); the first defines `correct` and `pass_rate`")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-tokens", type=int, default=256, help="tokens per completion (default 256)")
    p.add_argument("--stop", action="append", default=None, help="a stop string (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk", type=int, default=32, help="problems sampled, scored and written at a time (default 32)")
    p.add_argument("--distill-sets", type=Path, default=None, metavar="DIR",
                   help="also write the distill stage's sets from the output: DIR/sft.jsonl (correct samples), "
                        "dpo.jsonl (correct vs incorrect pairs), problems.jsonl (pass_rate, mean_length)")
    p.add_argument("--pairs-per-prompt", type=int, default=1, help="--distill-sets: DPO pairs per problem at most (default 1)")
    data = DataConfig()
    p.add_argument("--template", default=data.template, help="prompt template for the problems (rlkit/templates.py)")
    p.add_argument("--split", default=data.split, help="tiny:arithmetic / hf split")
    p.add_argument("--size", type=int, default=data.size, help="tiny:arithmetic: problems drawn")
    p.add_argument("--mix", default=None, help="tiny:arithmetic: category weights, e.g. add2=1,sub=0.2")
    p.add_argument("--where", action="append", default=None, help="keep problems passing a condition, e.g. 'category == sub' (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="only the first N problems")
    rewards = RewardConfig()
    p.add_argument("--workers", type=int, default=rewards.workers, help="reward worker processes (as reward.workers)")
    p.add_argument("--reward-timeout", type=float, default=rewards.timeout, help="seconds per reward call (as reward.timeout)")
    backend = p.add_argument_group("backend (defaults and help from GeneratorConfig in rlkit/config.py)")
    for name, info in GeneratorConfig.model_fields.items():  # one flag per config field: the schema stays the one source
        backend.add_argument(f"--{name.replace('_', '-')}", dest=f"gen_{name}", metavar=name.upper(), default=None, help=f"{info.description} (default {info.default})")
    p.set_defaults(func=main)


def _generator_config(args: argparse.Namespace) -> GeneratorConfig:
    given = {name: getattr(args, f"gen_{name}") for name in GeneratorConfig.model_fields if getattr(args, f"gen_{name}") is not None}
    try:
        return GeneratorConfig.model_validate(given, strict=False)
    except ValueError as err:
        first = err.errors()[0]  # type: ignore[attr-defined]
        raise ConfigError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']} (got {first.get('input')!r})") from None


def _mix(text: str | None) -> dict[str, float] | None:
    if text is None:
        return None
    mix = {}
    for part in text.split(","):
        name, sep, weight = part.partition("=")
        try:
            mix[name.strip()] = float(weight) if sep else 1.0
        except ValueError:
            raise ConfigError(f"--mix: bad weight in {part!r}; expected NAME=WEIGHT, e.g. add2=1,sub=0.2") from None
    return mix


def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from rlkit.data import load_samples
    from rlkit.generation import build_generator
    from rlkit.generation.sample_and_score import failures_path, sample_and_score
    from rlkit.scoring.pool import RewardPool
    from rlkit.scoring.registry import check_samples, reward_labels

    if args.n < 1:
        raise ConfigError(f"--n: expected at least 1 sample per problem, got {args.n}")
    data_fields = dict(source=args.input, split=args.split, size=args.size, template=args.template, limit=args.limit, where=args.where)
    if args.mix is not None:
        data_fields["mix"] = _mix(args.mix)
    try:
        data = DataConfig(**data_fields)
    except ValueError as err:
        first = err.errors()[0]  # type: ignore[attr-defined]
        raise ConfigError(f"--{first['loc'][0]}: {first['msg'].removeprefix('Value error, ')}") from None
    if not args.input.startswith(("tiny:", "hf:")) and not Path(args.input).exists():
        raise ConfigError(f"--input: file not found: {args.input}")
    problems = load_samples(data)
    specs = [RewardSpec(name=name) for name in args.reward or ["math"]]
    check_samples(specs, problems, args.input)  # e.g. a problem without a gold answer, before any request
    generator = build_generator(_generator_config(args))
    scorer = RewardPool(specs, args.workers, args.reward_timeout)
    try:
        funnel = sample_and_score(
            generator, problems, args.output, scorer, args.n, reward_labels([s.name for s in specs])[0],
            temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens, stop=args.stop,
            seed=args.seed, chunk=args.chunk,
        )
    finally:
        scorer.close()
        generator.close()
    table = Table(title=f"rlkit generate: {args.output} ({funnel.seconds:.1f} s)")
    table.add_column("funnel")
    table.add_column("count", justify="right")
    for label, value in funnel.lines():
        table.add_row(label, value)
    console = Console()
    console.print(table)
    for failure in funnel.failures[:5]:
        console.print(f"failed: {failure['id']}: {failure['error']}", markup=False)
    if funnel.failures:
        console.print(f"{len(funnel.failures)} failed requests listed in {failures_path(args.output)}; rerun the same command to retry them", markup=False)
    if args.distill_sets is not None:
        from rlkit.data import iter_jsonl
        from rlkit.distill_sets import build_distill_sets

        sets = build_distill_sets([row for _, row in iter_jsonl(args.output)], pairs_per_prompt=args.pairs_per_prompt, seed=args.seed)
        args.distill_sets.mkdir(parents=True, exist_ok=True)
        sets.write(args.distill_sets)
        console.print(f"distill sets in {args.distill_sets}: {sets.funnel()}", markup=False)
    return 0
