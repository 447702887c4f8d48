"""`rlkit eval --model DIR_OR_HF_ID --benchmarks LIST [--data-dir DIR | --shared-data DIR] [--limit N] [--n K] [--temperature T]
[--template NAME] [--output DIR] [--max-new-tokens M]`: score a model on math benchmarks.

Benchmarks are known names (math500, aime24, aime25, amc23, minerva_math, olympiadbench, gsm8k) read as
<name>.jsonl from the data directory (math/ in the shared data folder unless --data-dir says otherwise),
any .jsonl/.parquet file, shared:<path in the shared data folder>, hf:<dataset id>, or tiny:arithmetic.
Each is sampled the way papers do (greedy for MATH500, Minerva, OlympiadBench, GSM8K; 8 samples at
temperature 0.6, reported as avg@8, for AIME24, AIME25, AMC23) unless --n / --temperature say otherwise.
Writes <output>/<benchmark>/results.json (+ samples.jsonl), <output>/results.json and results.md, and
prints the markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rlkit.eval.benchmarks import KNOWN, TINY
from rlkit.shared_data import ENV as SHARED_DATA_ENV

DEFAULT_MAX_NEW_TOKENS = 3072


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a model on math benchmarks", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="a run's final/ directory, any HF model directory or hub id, or 'tiny'")
    p.add_argument(
        "--benchmarks", required=True,
        help=f"comma-separated: {', '.join(KNOWN)}, {TINY}, a .jsonl/.parquet path, shared:<path>, or hf:<dataset id>",
    )
    p.add_argument(
        "--shared-data", type=Path,
        help=f"the shared data folder (default: ${SHARED_DATA_ENV}, else the first shared/data beside the current folder "
        "or the rlkit checkout, or beside a folder above them); named benchmarks read its math/",
    )
    p.add_argument("--data-dir", type=Path, help="folder holding <name>.jsonl for named benchmarks (default: math/ in the shared data folder)")
    p.add_argument("--limit", type=int, help="only the first N problems of each benchmark")
    p.add_argument("--n", type=int, help="samples per problem, for every benchmark (default: per benchmark, see above)")
    p.add_argument("--temperature", type=float, help="sampling temperature for every benchmark (default: per benchmark)")
    p.add_argument("--top-p", type=float, help="nucleus sampling threshold (default 1.0)")
    p.add_argument(
        "--max-new-tokens", type=int,
        help=f"response length limit (default {DEFAULT_MAX_NEW_TOKENS}, as the 1-shot RLVR evaluation, "
        "or the model's context length when that is shorter)",
    )
    p.add_argument("--template", default="auto",
                   help="prompt template: auto (qwen_boxed for files, tiny for tiny:arithmetic) or a name in rlkit/templates.py")
    p.add_argument("--output", "-o", type=Path, help="results directory (default runs/eval/<model>-<time>)")
    p.add_argument("--engine", choices=["hf", "vllm"], default="hf", help="rollout engine (vllm needs the gpu extra)")
    p.add_argument("--static-cache", action="store_true", help="hf engine: static KV cache + CUDA-graph decode (GPU)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                   help="auto: bfloat16 on a GPU, float32 on CPU")
    p.add_argument("--batch-size", type=int, default=64, help="prompts per generate call (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=main)


def _check_args(args: argparse.Namespace) -> None:
    from rlkit.errors import ConfigError

    for flag in ("limit", "n", "max_new_tokens", "batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    if args.temperature is not None and args.temperature < 0:
        raise ConfigError(f"--temperature must be >= 0, got {args.temperature}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ConfigError(f"--top-p must be in (0, 1], got {args.top_p}")


def main(args: argparse.Namespace) -> int:
    from rlkit.data import load_benchmark
    from rlkit.errors import ConfigError
    from rlkit.eval.benchmarks import check_gold_answers, check_names, default_data_dir, resolve_benchmark, split_specs
    from rlkit.eval.evaluate import evaluate_benchmark, sampling_for
    from rlkit.eval.report import write_benchmark, write_summary
    from rlkit.files import missing_model_dir
    from rlkit.progress import ProgressBar

    _check_args(args)
    if (problem := missing_model_dir(args.model)) is not None:
        raise ConfigError(f"--model: {problem}")
    specs = split_specs(args.benchmarks)
    if not specs:
        raise ConfigError("--benchmarks is empty: name at least one, e.g. --benchmarks math500,aime24")
    check_names(specs)
    data_dir = args.data_dir if args.data_dir is not None else default_data_dir(args.shared_data)
    benches = [resolve_benchmark(spec, data_dir, args.shared_data) for spec in specs]
    names = [b.name for b in benches]
    if len(set(names)) != len(names):
        raise ConfigError(f"--benchmarks names one benchmark twice: {', '.join(names)}")
    context = _model_context(args.model)
    max_new_tokens = args.max_new_tokens or _default_max_new_tokens(args.model, context)
    plans = []
    for bench in benches:  # everything a user can get wrong is checked before the model loads
        sampling = sampling_for(bench, args.n, args.temperature, max_new_tokens, args.seed, args.top_p)
        if sampling.n > 1 and sampling.greedy:
            raise ConfigError(
                f"--n {sampling.n} with greedy decoding on {bench.name} draws {sampling.n} identical samples: "
                "pass --temperature T (e.g. 0.6) as well"
            )
        samples = load_benchmark(bench, args.template, args.limit)
        if bench.source != TINY:
            check_gold_answers(bench, samples)
        plans.append((bench, samples, sampling))

    engine, tokenizer = _build_engine(args)
    from rlkit.config import RewardSpec
    from rlkit.scoring.pool import RewardPool

    scorer = RewardPool([RewardSpec(name="math")])
    model_label = args.model.rstrip("/")
    output = args.output or Path("runs") / "eval" / f"{Path(model_label).name}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"rlkit: evaluating {model_label} on {', '.join(names)}; results in {output}", flush=True)
    results = []
    for bench, samples, sampling in plans:
        over = _flag_over_context(bench.name, samples, tokenizer, context, args.engine)
        progress = ProgressBar(bench.name, len(samples), tag="eval", samples_per_unit=sampling.n, every_s=30.0, transient=True)
        try:
            result = evaluate_benchmark(engine, tokenizer, bench, samples, scorer, sampling, args.batch_size, progress=progress)
        finally:
            progress.close()
        result.metrics["prompts_over_context"] = over
        path = write_benchmark(result, output)
        m = result.metrics
        print(
            f"[eval] {bench.name}: {m['problems']} problems x {sampling.n} at temperature {sampling.temperature:g}: "
            f"accuracy {m['accuracy']:.3f}  pass@{sampling.n} {m[f'pass@{sampling.n}']:.3f}  "
            f"maj@{sampling.n} {m[f'maj@{sampling.n}']:.3f}  ({m['time_s']:.1f} s) -> {path}",
            flush=True,
        )
        results.append(result)
    scorer.close()
    extra = {"template": args.template, "engine": args.engine, "max_new_tokens": max_new_tokens, "seed": args.seed,
             "data_dir": str(data_dir) if data_dir else None}
    print(write_summary(model_label, results, output, extra), flush=True)
    return 0


def _model_context(model: str) -> int | None:
    """The model's context length (max_position_embeddings), None when its config does not say."""
    from rlkit.errors import ConfigError

    if model == "tiny":
        from rlkit.world.model import tiny_model_config

        return tiny_model_config().max_position_embeddings
    from transformers import AutoConfig

    try:
        return getattr(AutoConfig.from_pretrained(model), "max_position_embeddings", None)
    except (OSError, ValueError) as err:
        raise ConfigError(f"--model: cannot read a model config from {model!r}: {err}") from None


def _default_max_new_tokens(model: str, context: int | None = None) -> int:
    """3072, or the model's context length when shorter: tokens past it are outside what the model was
    trained on, and vLLM refuses them."""
    context = context or _model_context(model)
    if context and context < DEFAULT_MAX_NEW_TOKENS:
        print(f"rlkit: --max-new-tokens defaults to {context}, the model's context length", flush=True)
        return int(context)
    return DEFAULT_MAX_NEW_TOKENS


def _flag_over_context(name: str, samples: list[dict], tokenizer, context: int | None, engine: str) -> int:  # noqa: ANN001
    """How many prompts are longer than the model's context, said once per benchmark with what happens to them."""
    from rlkit.models import encode_prompt

    if not context:
        return 0
    lengths = [(len(encode_prompt(tokenizer, s["prompt"])), s.get("id")) for s in samples]
    over = [(length, sample_id) for length, sample_id in lengths if length > context]
    if over:
        fate = ("vLLM refuses them" if engine == "vllm" else
                "they are generated anyway, at positions the model was never trained on, and are scored as usual")
        longest = max(over, key=lambda o: o[0])
        print(f"rlkit: warning: {name}: {len(over)} of {len(samples)} prompts are longer than the model's context of "
              f"{context} tokens (the longest, {longest[1]}, has {longest[0]}); {fate}. results.json counts them "
              "as prompts_over_context; --limit or a filtered file leaves them out", file=sys.stderr, flush=True)
    return len(over)


def _build_engine(args: argparse.Namespace):  # noqa: ANN202
    """Load the model and tokenizer the way a run does and put the recipe-selected engine around them."""
    import torch

    from rlkit.config import ModelConfig, RunConfig
    from rlkit.errors import ConfigError
    from rlkit.models import load_model, load_tokenizer, resolve_device
    from rlkit.rollout import build_engine

    device = resolve_device(args.device)
    dtype = args.dtype if args.dtype != "auto" else ("bfloat16" if device.type == "cuda" else "float32")
    path = args.model
    model_config = ModelConfig(path=path, dtype=dtype)
    tokenizer = load_tokenizer(model_config)
    if tokenizer.chat_template is None:
        raise ConfigError(f"--model {path}: the tokenizer has no chat template; evaluation prompts are chat messages")
    config = RunConfig(  # the engine seam reads a run config; its stage is not used
        model=model_config, rollout={"engine": args.engine, "static_cache": args.static_cache}, device=args.device,
        seed=args.seed, ray={"colocate": False}, stages=[{"type": "rl"}],
    )
    model = None
    if args.engine == "hf":
        torch.manual_seed(args.seed)
        model = load_model(model_config, seed=args.seed).to(device)
    return build_engine(config, model, tokenizer), tokenizer
