"""`rlkit bench`: one GRPO step for rlkit and TRL's GRPOTrainer, on one device, on a workload preset.

Presets (rlkit/bench/workload.py): `reference` (DESIGN.md: 0.5B shape, 128 x 512 tokens, every sample
to the limit), `ragged` (prompts of 32-128 tokens, long-tailed completions up to 1,024, median ~256),
`long` (a 1.5B shape, 128 x (256 + 3,072)), `tiny` (a CPU shape). Prints, per framework, the steady
step time, its split (generate / logprobs / train / weight sync), completion tokens per second, the
useful fraction of the tokens computed in decode and in training, peak GPU memory and the ratio to the
step's floor. Shape flags change a preset: `rlkit bench --preset long --completion-tokens 8192`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields, replace
from pathlib import Path

# name -> rlkit variant (engine, fused logprobs, compiled decode); "trl" is TRL's GRPOTrainer
VARIANTS = {
    "rlkit": dict(fast_engine=True),
    "rlkit-hf": dict(fast_engine=False),  # transformers generate instead of the fast engine
    "rlkit-eager": dict(fast_engine=True, compile_decode=False),  # CUDA graph of eager kernels, no torch.compile
    "rlkit-plain": dict(fast_engine=True, chunk_size=0),  # whole-batch fp32 logits in the learner
    "rlkit-nolc": dict(fast_engine=True, compile_learner=False),  # learner body not compiled
    "rlkit-padded": dict(fast_engine=True, pack=False, compact=False),  # padded micro-batches, static decode batch
    "rlkit-padded-nolc": dict(fast_engine=True, pack=False, compact=False, compile_learner=False),  # the same, not compiled
    "rlkit-mask": dict(fast_engine=True, packed_attention="mask"),  # packed rows kept apart by a block-diagonal mask
    "rlkit-varlen": dict(fast_engine=True, packed_attention="varlen"),  # packed rows by their boundaries, asked for
}
FRAMEWORKS = (*VARIANTS, "trl")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from rlkit.bench.workload import PRESETS, REFERENCE

    p = sub.add_parser("bench", help="time one GRPO step for rlkit and TRL on a workload preset", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frameworks", default="rlkit,trl",
                   help="comma-separated: rlkit (fast HF engine), trl (GRPOTrainer), and rlkit variants that undo one "
                        "change each: rlkit-hf (transformers generate), rlkit-eager (decode not compiled), rlkit-plain (fp32 "
                        "logits), rlkit-nolc (learner not compiled), rlkit-padded (padded micro-batches, no decode compaction); and "
                        "rlkit-varlen (packed micro-batches attended by their sequences' boundaries: learner.packed_attention varlen)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="reference", help="the workload to start from")
    p.add_argument("--tiny", action="store_true", help="the same as --preset tiny")
    for f in fields(REFERENCE):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=None,
                       help=f"workload {f.name} (reference: {f.default})")
    p.add_argument("--steps", type=int, default=3, help="timed steps per framework (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (compilation, graph capture)")
    p.add_argument("--chunk-size", type=int, default=4096, help="rlkit learner.logprob_chunk_size (0 = plain logits)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--output", type=Path, help="write every step's numbers and the summary as JSON here")
    p.set_defaults(func=main)


def workload_from_args(args: argparse.Namespace):  # noqa: ANN201
    from rlkit.bench.workload import PRESETS

    base = PRESETS["tiny" if args.tiny else args.preset]
    changes = {f.name: getattr(args, f.name) for f in fields(base) if getattr(args, f.name) is not None}
    return replace(base, **changes)


def main(args: argparse.Namespace) -> int:
    import torch

    from rlkit.bench.report import floor_seconds, format_table, summarize
    from rlkit.bench.rlkit_step import run_rlkit
    from rlkit.errors import ConfigError
    from rlkit.models import resolve_device

    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    unknown = [f for f in frameworks if f not in FRAMEWORKS]
    if unknown or not frameworks:
        raise ConfigError(f"--frameworks: unknown {unknown or 'empty list'}; expected a comma-separated subset of {', '.join(FRAMEWORKS)}")
    w = workload_from_args(args)
    if w.hidden % w.heads or w.heads % w.kv_heads:
        raise ConfigError(f"--hidden {w.hidden} must divide by --heads {w.heads}, and --heads by --kv-heads {w.kv_heads}")
    if w.sequences % w.micro_batch_size:
        raise ConfigError(f"--micro-batch-size {w.micro_batch_size} must divide prompts x samples = {w.sequences}")
    device = resolve_device(args.device)
    floor = floor_seconds(w)
    print(f"rlkit bench: {w.describe()} on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}", flush=True)

    results = []
    for name in frameworks:
        try:
            if name == "trl":
                from rlkit.bench.trl_step import run_trl

                results.append(run_trl(w, device, args.steps, args.warmup))
            else:
                options = {"chunk_size": args.chunk_size, **VARIANTS[name]}
                results.append(run_rlkit(w, device, args.steps, args.warmup, label=name, **options))
        except Exception as err:  # noqa: BLE001 - one framework failing must not hide the other's numbers
            print(f"rlkit bench: {name} failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
            results.append({"framework": name, "records": [], "error": f"{type(err).__name__}: {err}"[:300]})
        rows = [summarize(r, floor["floor_s"]) for r in results]
        table = format_table(rows, floor)
        if args.output:  # rewritten after every framework, so a run cut short keeps what it measured
            args.output.parent.mkdir(parents=True, exist_ok=True)
            device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
            args.output.write_text(json.dumps({"workload": w.describe(), "device": device_name, "floor": floor,
                                               "summary": rows, "runs": results, "table": table}, indent=1))
    print(table, flush=True)
    return 1 if any("error" in r for r in rows) else 0
