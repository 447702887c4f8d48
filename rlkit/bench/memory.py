"""How long can it go: the longest completion one GPU trains, per model shape and memory setting.

One sequence of `prompt + completion` tokens per micro-batch (the least a micro-batch holds, as a token
budget makes it for long samples), a full optimizer step of the torch learner (AdamW, bf16 weights and
states). Completion lengths climb a ladder until the step runs out of memory; the table shows the last
length that trained and its peak memory, per gradient checkpointing on/off and plain/chunked logprobs.
The learner's out-of-memory error (naming the knobs to turn) is printed once, as a user sees it.

    python -m rlkit.bench.memory --shapes 1.5b,7b --output memory.json
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from rlkit.bench.workload import LONG, REFERENCE, Workload, build_policy
from rlkit.config import LearnerConfig
from rlkit.learner.base import pad_sequences
from rlkit.learner.memory import LearnerOutOfMemory
from rlkit.learner.torch_learner import TorchLearner

SHAPES = {
    "tiny": replace(REFERENCE, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=512, dtype="float32"),
    "1.5b": LONG,  # Qwen2.5-Math-1.5B's shape
    "7b": replace(REFERENCE, hidden=3584, layers=28, heads=28, kv_heads=4, intermediate=18944, vocab=152064),  # Qwen2.5-7B's
}
LADDER = (2048, 4096, 8192, 12288, 16384, 24576, 32768, 49152, 65536, 98304, 131072)
SETTINGS = (  # (gradient checkpointing, logprob chunk size)
    (False, 0), (False, 4096), (True, 0), (True, 4096),
)
PROMPT = 256


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_once(learner: TorchLearner, w: Workload, completion: int) -> float:
    """One optimizer step on one sequence; returns its wall seconds."""
    torch.manual_seed(completion)
    ids = torch.randint(0, w.vocab - 1, (PROMPT + completion,)).tolist()
    batch = pad_sequences([ids], [PROMPT], pad_id=w.vocab - 1)
    batch.advantages = torch.ones_like(batch.loss_mask)
    tokens = float(batch.loss_mask.sum())

    def loss_fn(micro, logprobs, entropy):  # noqa: ANN001, ANN202 - the policy-gradient shape of a GRPO loss
        loss = -(logprobs * micro.advantages * micro.loss_mask).sum() / tokens
        return loss, {"loss": float(loss.detach())}

    _sync(learner.device)
    start = time.perf_counter()
    learner.train_step(batch, loss_fn)
    _sync(learner.device)
    return time.perf_counter() - start


def climb(model: torch.nn.Module, w: Workload, checkpointing: bool, chunk: int, ladder: tuple[int, ...],
          device: torch.device, shown: list[str], max_seconds: float = 40.0) -> dict[str, Any]:
    """Climb the ladder until a step runs out of memory (or one step takes over `max_seconds`)."""
    config = LearnerConfig(micro_batch_size=1, gradient_checkpointing=checkpointing, logprob_chunk_size=chunk)
    if not checkpointing:
        model.gradient_checkpointing_disable()
    learner = TorchLearner(model, config, lr=1e-6, device=device)
    cuda = device.type == "cuda"
    fit: dict[str, Any] = {"completion": 0}
    for completion in ladder:
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        try:
            seconds = train_once(learner, w, completion)
        except (LearnerOutOfMemory, torch.OutOfMemoryError) as err:  # the latter: in the optimizer step
            if not shown:
                shown.append(f"{type(err).__name__}: {str(err)[:400]}")
            print(f"  {completion:>6}: out of memory", flush=True)
            fit["failed_at"] = completion
            break
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else 0.0
        print(f"  {completion:>6}: {seconds:.2f} s, peak {peak:.1f} GiB", flush=True)
        fit = {"completion": completion, "peak_gib": peak, "step_s": seconds}
        if seconds > max_seconds:
            fit["stopped"] = f"one step took {seconds:.0f} s; longer lengths not tried"
            break
    learner.optimizer.zero_grad(set_to_none=True)
    del learner
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return fit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="1.5b,7b", help=f"comma-separated, of {', '.join(SHAPES)}")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    parser.add_argument("--ladder", default=",".join(map(str, LADDER)), help="completion lengths to try, in order")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    ladder = tuple(int(n) for n in args.ladder.split(","))
    total = torch.cuda.get_device_properties(device).total_memory / 2**30 if device.type == "cuda" else 0.0
    results, shown = [], []
    for name in args.shapes.split(","):
        w = replace(SHAPES[name], prompt_tokens=PROMPT, completion_tokens=max(ladder))
        model = build_policy(w, device)
        params = sum(p.numel() for p in model.parameters()) / 1e9
        for checkpointing, chunk in SETTINGS:
            print(f"{name} ({params:.2f}B params): gradient_checkpointing={checkpointing} logprob_chunk_size={chunk}", flush=True)
            fit = climb(model, w, checkpointing, chunk, ladder, device, shown)
            results.append({"shape": name, "params_b": params, "gradient_checkpointing": checkpointing,
                            "logprob_chunk_size": chunk, **fit})
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    lines = [f"| shape | gradient checkpointing | logprob chunk | longest completion trained (+{PROMPT} prompt) | "
             "peak GiB | step s | first length that did not fit |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['shape']} ({r['params_b']:.2f}B) | {'on' if r['gradient_checkpointing'] else 'off'} "
                     f"| {r['logprob_chunk_size'] or 'plain'} | {r['completion'] or 'none of the ladder'} "
                     f"| {r.get('peak_gib', 0):.1f} | {r.get('step_s', 0):.2f} | {r.get('failed_at', '-')} |")
    table = "\n".join(lines)
    print(f"device memory {total:.1f} GiB\n{table}\nthe learner's error at the first out-of-memory:\n{shown[0] if shown else '-'}")
    if args.output:
        args.output.write_text(json.dumps({"results": results, "table": table, "error_example": shown[:1]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
