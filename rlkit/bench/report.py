"""Steady step time, its split, throughput, peak memory and the ratio to DESIGN.md's floor."""

from __future__ import annotations

import statistics
from typing import Any

import torch
from transformers import Qwen2ForCausalLM

from rlkit.bench.workload import DTYPES, Workload, policy_config

# DESIGN.md's floor: weights + KV cache read once per decode step at the H100's copy bandwidth, plus
# 6·N·T training FLOPs at the measured bf16 matrix rate (both measured on the lent H100).
BANDWIDTH = 3.0e12  # bytes/s
MATMUL_RATE = 790e12  # FLOP/s
PHASES = ("generate", "logprobs", "train", "sync", "other")


def parameter_count(w: Workload) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in Qwen2ForCausalLM(policy_config(w)).parameters())


def floor_seconds(w: Workload, prompt_lengths: list[int] | None = None, response_lengths: list[int] | None = None) -> dict[str, float]:
    """The step's floor: each decode step reads the weights once and each live row's KV cache (as long as the
    longest row runs), and training does 6·N FLOPs per real token. Lengths default to the full workload."""
    prompt_lengths = prompt_lengths or [w.prompt_tokens] * w.sequences
    response_lengths = response_lengths or [w.completion_tokens] * w.sequences
    params = parameter_count(w)
    size = torch.tensor([], dtype=DTYPES[w.dtype]).element_size()
    head_dim = w.hidden // w.heads
    kv_per_token = w.layers * 2 * w.kv_heads * head_dim * size
    # tokens in the cache at each decode step of each row: p + t for t < its response length
    cached = sum(n * p + n * (n - 1) // 2 for p, n in zip(prompt_lengths, response_lengths))
    decode = (max(response_lengths) * params * size + kv_per_token * cached) / BANDWIDTH
    train = 6 * params * (sum(prompt_lengths) + sum(response_lengths)) / MATMUL_RATE
    return {"params": params, "decode_s": decode, "train_s": train, "floor_s": decode + train}


def ratio(useful: float | None, computed: float | None) -> float | None:
    return useful / computed if useful is not None and computed else None


def summarize(result: dict[str, Any], floor: float) -> dict[str, Any]:
    """Median over the timed (non-warm-up) steps; `floor` unless the records carry their own (ragged lengths)."""
    timed = [r for r in result["records"] if not r["warmup"]] or result["records"]
    if not timed:
        return {"framework": result["framework"], "error": result.get("error", "no steps ran")}
    step = statistics.median(r["wall"] for r in timed)
    row: dict[str, Any] = {"framework": result["framework"], "engine": result.get("engine"), "steps": len(timed), "step_s": step}
    if "generate" in timed[0]:
        for phase in PHASES[:-1]:
            row[f"{phase}_s"] = statistics.median(r[phase] for r in timed)
        row["other_s"] = step - sum(row[f"{p}_s"] for p in PHASES[:-1])
        row["generate_tok_per_s"] = statistics.median(r["completion_tokens"] / max(r["generate"], 1e-9) for r in timed)
    row["completion_tok_per_s"] = statistics.median(r["completion_tokens"] / r["wall"] for r in timed)
    peak = result.get("peak_memory_bytes")
    row["peak_gib"] = peak / 2**30 if peak else None
    floors = [r["floor_s"] for r in timed if r.get("floor_s")]
    row["floor_s"] = statistics.median(floors) if floors else floor
    row["x_floor"] = step / row["floor_s"]
    for phase in ("decode", "train"):  # useful tokens over computed ones (padding and finished rows cost too)
        fractions = [ratio(r.get(f"{phase}_useful"), r.get(f"{phase}_computed")) for r in timed]
        row[f"{phase}_useful_fraction"] = statistics.median(fractions) if None not in fractions else None
    lengths = [r["response_mean"] for r in timed if "response_mean" in r]
    row["response_mean"] = statistics.median(lengths) if lengths else None
    return row


def format_table(rows: list[dict[str, Any]], floor: dict[str, float]) -> str:
    def cell(row: dict[str, Any], key: str, fmt: str) -> str:
        value = row.get(key)
        return "-" if value is None else format(value, fmt)

    lines = [
        "| framework | steady step s | generate | logprobs | train | sync | other | completion tok/s | mean completion "
        "| decode useful/computed | train useful/computed | peak GPU GiB | floor s | x floor |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['framework']} | failed: {row['error']} |" + " |" * 12)
            continue
        lines.append(
            f"| {row['framework']} | {row['step_s']:.3f} | {cell(row, 'generate_s', '.3f')} | {cell(row, 'logprobs_s', '.3f')} "
            f"| {cell(row, 'train_s', '.3f')} | {cell(row, 'sync_s', '.3f')} | {cell(row, 'other_s', '.3f')} "
            f"| {row['completion_tok_per_s']:.0f} | {cell(row, 'response_mean', '.0f')} | {cell(row, 'decode_useful_fraction', '.2f')} "
            f"| {cell(row, 'train_useful_fraction', '.2f')} | {cell(row, 'peak_gib', '.1f')} | {row['floor_s']:.3f} | {row['x_floor']:.1f} |"
        )
    lines.append(
        f"full-length floor {floor['floor_s']:.3f} s = decode {floor['decode_s']:.3f} s (weights + KV at {BANDWIDTH / 1e12:.0f} TB/s) "
        f"+ train {floor['train_s']:.3f} s (6·N·T, N = {floor['params'] / 1e6:.0f}M, at {MATMUL_RATE / 1e12:.0f} TFLOP/s)"
    )
    by_name = {r["framework"]: r for r in rows if "step_s" in r}
    if "rlkit" in by_name and "trl" in by_name:
        lines.append(f"rlkit's steady step is {by_name['trl']['step_s'] / by_name['rlkit']['step_s']:.1f}x faster than TRL's")
    return "\n".join(lines)
