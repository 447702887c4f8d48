"""rlkit's step on the reference workload: the real `rl_step` of the rl stage, timed per phase."""

from __future__ import annotations

import gc
import time
from typing import Any

import torch

from rlkit.bench.workload import Workload, build_policy, build_tokenizer, prompt_samples
from rlkit.config import RunConfig
from rlkit.stages.rl import build_rl_parts, rl_step

PHASES = ("generate", "logprobs", "train", "sync")


def bench_config(w: Workload, fast_engine: bool, chunk_size: int, compile_learner: bool = True, pack: bool = True,
                 packed_attention: str = "auto") -> RunConfig:
    """The run config a user would write for this workload (GRPO, beta 0, one update per batch)."""
    return RunConfig.model_validate(
        {
            "model": {"dtype": w.dtype},
            "rollout": {"n": w.samples, "max_new_tokens": w.completion_tokens, "temperature": 1.0,
                        "static_cache": fast_engine},
            "rewards": [{"name": "rlkit.bench.workload:even_token_reward"}],
            "learner": {"micro_batch_size": w.micro_batch_size, "micro_batch_tokens": w.micro_batch_tokens if pack else 0,
                        "logprob_chunk_size": chunk_size, "compile": compile_learner, "packed_attention": packed_attention},
            "stages": [{"type": "rl", "batch_size": w.prompts, "lr": w.lr, "algorithm": {"kl_coef": 0.0}}],
        }
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_rlkit(w: Workload, device: torch.device, steps: int, warmup: int, fast_engine: bool = True,
              chunk_size: int = 4096, label: str = "rlkit", compile_decode: bool | None = None,
              compile_learner: bool = True, pack: bool = True, compact: bool = True,
              packed_attention: str = "auto") -> dict[str, Any]:
    """`warmup` untimed steps (compilation, graph capture), then `steps` timed ones. `pack` (token-budget
    packed micro-batches) and `compact` (the decode batch shrinks as rows finish) off give the padded step."""
    from rlkit.bench.report import floor_seconds

    config = bench_config(w, fast_engine, chunk_size, compile_learner, pack, packed_attention)
    model = build_policy(w, device)
    tokenizer = build_tokenizer(w)
    stage = config.stages[0]
    parts = build_rl_parts(config, stage, model, tokenizer, device)
    learner, engine, scorer = parts.learner, parts.engine, parts.scorer
    if not w.stop_median:
        engine.stop_ids = set()  # every sample runs to the completion limit, as the workload says
    if fast_engine and compile_decode is not None:
        engine.compile = compile_decode
    if fast_engine:
        engine.compact = compact
    completions: list = []
    generate = engine.generate

    def recording_generate(prompts, sampling):  # noqa: ANN001, ANN202 - the step's completions, for the token counts
        completions[:] = generate(prompts, sampling)
        return completions

    engine.generate = recording_generate
    if getattr(learner, "varlen", False):
        print(f"[{label}] packed micro-batches attend by their sequences' boundaries (varlen)", flush=True)
    prompts = prompt_samples(w)
    records = []
    try:
        for index in range(warmup + steps):
            if index == warmup and device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            if getattr(engine, "stats", None) is not None:
                engine.stats.clear()
            start = time.perf_counter()
            metrics = rl_step(parts, stage, config.rollout, prompts, seed=w.seed * 1000 + index)
            sync(device)
            wall = time.perf_counter() - start
            prompt_lengths = [len(c.prompt_ids) for c in completions]
            response_lengths = [len(c.response_ids) for c in completions]
            stats = getattr(engine, "stats", None) or {}
            records.append({"step": index, "warmup": index < warmup, "wall": wall,
                            **{p: metrics.get(f"time/{p}", 0.0) for p in PHASES},
                            "advantages": metrics.get("time/advantages", 0.0),
                            "completion_tokens": metrics["response_length/mean"] * w.sequences,
                            "reward": metrics["reward/mean"], "grad_norm": metrics.get("grad_norm", float("nan")),
                            "response_mean": sum(response_lengths) / len(response_lengths),
                            "response_max": max(response_lengths),
                            "decode_useful": stats.get("decode_useful"), "decode_computed": stats.get("decode_computed"),
                            "train_useful": metrics.get("tokens/train_useful"),
                            "train_computed": metrics.get("tokens/train_computed"),
                            "floor_s": floor_seconds(w, prompt_lengths, response_lengths)["floor_s"]})
            print(f"[{label}] step {index}{' (warm-up)' if index < warmup else ''}: {wall:.3f} s "
                  + " ".join(f"{p}={records[-1][p]:.3f}" for p in PHASES), flush=True)
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    finally:
        scorer.close()
        # which attention the packed micro-batches took (learner.packed_attention auto/varlen where it serves)
        extra = {"compile_failed": getattr(engine, "compile_failed", None),
                 "packed_by_boundaries": getattr(learner, "varlen", None)}
        del parts, engine, learner, model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"framework": label, "records": records, "peak_memory_bytes": peak, "engine": "fast" if fast_engine else "hf",
            "logprob_chunk_size": chunk_size, **extra}
