"""TRL's GRPOTrainer on the same workload, on the same device: steady optimizer-step time.

One optimizer step covers 128 completions: generation (transformers `generate`), scoring, and
4 micro-batches of forward/backward (per-device batch 32 x gradient accumulation 4).
"""

from __future__ import annotations

import gc
import tempfile
import time
from typing import Any

import torch

from rlkit.bench.workload import Workload, build_policy, build_tokenizer, even_token_reward, prompt_texts

COMPLETION_TOKENS: list[int] = []  # completion words (= tokens) the reward saw, per call


def _reward(prompts: list, completions: list, **_: Any) -> list[float]:
    COMPLETION_TOKENS.append(sum(len(text.split()) for text in completions))
    return [even_token_reward(text) for text in completions]


def run_trl(w: Workload, device: torch.device, steps: int, warmup: int) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import TrainerCallback

    from rlkit.errors import import_backend

    trl = import_backend("trl", "rlkit bench --frameworks trl", "trl")
    GRPOConfig, GRPOTrainer = trl.GRPOConfig, trl.GRPOTrainer

    records: list[dict[str, Any]] = []
    COMPLETION_TOKENS.clear()

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                if state.global_step == warmup:
                    torch.cuda.reset_peak_memory_stats(device)
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            wall = time.perf_counter() - self.start
            index = len(records)
            tokens = float(sum(COMPLETION_TOKENS)) if COMPLETION_TOKENS else float(w.sequences * w.completion_tokens)
            COMPLETION_TOKENS.clear()
            records.append({"step": index, "warmup": index < warmup, "wall": wall, "completion_tokens": tokens})
            print(f"[trl] step {index}{' (warm-up)' if index < warmup else ''}: {wall:.3f} s", flush=True)

    accumulation = max(1, w.sequences // w.micro_batch_size)
    model = build_policy(w, device)
    tokenizer = build_tokenizer(w)
    texts = prompt_texts(w)
    with tempfile.TemporaryDirectory(prefix="rlkit-bench-trl-") as out:
        config = GRPOConfig(
            output_dir=out,
            per_device_train_batch_size=w.sequences // accumulation,
            gradient_accumulation_steps=accumulation,
            num_generations=w.samples,
            max_completion_length=w.completion_tokens,
            # reference: EOS never ends a sample; ragged: the policy's own stop token ends it, as in rlkit's run
            generation_kwargs={} if w.stop_median else {"min_new_tokens": w.completion_tokens},
            temperature=1.0,
            beta=0.0,
            learning_rate=w.lr,
            max_steps=warmup + steps,
            bf16=w.dtype == "bfloat16" and device.type == "cuda",
            use_cpu=device.type == "cpu",
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            seed=w.seed,
            shuffle_dataset=False,
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=_reward,
            args=config,
            train_dataset=Dataset.from_dict({"prompt": texts * (warmup + steps)}),
            processing_class=tokenizer,
            callbacks=[StepClock()],
        )
        trainer.train()
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    del trainer, model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    for record in records:
        record["response_mean"] = record["completion_tokens"] / w.sequences
    return {"framework": "trl", "records": records, "peak_memory_bytes": peak, "engine": "transformers generate"}
