"""The learner's train phase on its own (issue 18), on a GPU: seconds per `train_step` of the torch learner on a bench
preset's shape (random tokens, every sequence prompt + completion long, GRPO's loss with beta 0, on-policy), one line
per setting of its levers, then (optionally) a kernel profile of one steady step by kind of kernel.

Variants are `-`-joined settings: `mbN` rows per padded micro-batch (learner.micro_batch_size), `tN` a packed token
budget (learner.micro_batch_tokens), `cN` the fused LM head's chunk (learner.logprob_chunk_size), `nolc` the
learner not compiled, `headk` the fused head's one-pass Triton kernels (learner.head_kernels: triton; without it the
compiled torch ops), `keep` its logits kept from forward for backward (learner.keep_head_logits_gib), `regional` each
decoder layer compiled on its own (learner.compile_scope: layers; without it the whole body), `flash` / `efficient` /
`cudnn` / `math` that SDPA backend first for the learner's attention (learner.attention_backend; without one "auto",
torch's own order: cuDNN first on an H200). With transformers' sdpa attention and per-layer compile, an unpadded
micro-batch (every one on the bench's rows) reaches SDPA as no mask + is_causal + enable_gqa (14 query heads on 2 KV
heads, not repeated), which every backend can take; the others stay behind the chosen one as fallbacks, so a variant
prints which one SDPA's dispatcher picks for that call (`sdpa ...`); a variant that raises prints `failed` and the
next one runs. `nogw` sums the head's weight gradient over chunks as a half-precision product cast and added in fp32
(logprobs.SUM_IN_GEMM off; by default one GEMM adds into the fp32 sum). `autotune` compiles as torch.compile's mode
"max-autotune-no-cudagraphs" would (Inductor's max_autotune and coordinate_descent_tuning: GEMMs benchmarked against
Triton templates that can take their elementwise neighbours as epilogues). `maskhead` runs the LM head on the loss
mask's positions only, the completion tokens (learner.head_loss_mask_only: the prompt's 64 of 576 tokens a row on the
reference shape skipped; without it every position). `varlen` attends packed micro-batches by their sequences'
boundaries (learner.packed_attention: varlen, which the default `auto` picks on a GPU; without it a block-diagonal
mask, so the variants without `varlen` are not the defaults on packed presets). On `ragged` the batch has the
preset's lengths (random_batch). The preset's own settings fill the rest. Each new body shape, compile scope or attention backend
compiles afresh (torch._dynamo.reset(): the backend is baked into the compiled code when it is traced, with no guard
on it), then `--warmup` untimed steps (the first one's seconds include compiling: for a cold compile run each scope
first in its own process with fresh TORCHINDUCTOR_CACHE_DIR / TRITON_CACHE_DIR) and `--repeats` timed ones. Every
variant starts from the same weights, so its first step's loss and gradient norm compare exactly across variants.

Usage (on the GPU machine): python scripts/train_bench.py [--preset reference] [--variants base,headk,headk-keep,regional]
    [--repeats 3] [--profile mb32] [--output train.json]
e.g. the attention backends: --variants regional-headk-keep,regional-headk-keep-flash,regional-headk-keep-efficient,
    regional-headk-keep-cudnn --profile regional-headk-keep,regional-headk-keep-flash
On CPU (the plumbing only, no timings worth reading, nothing compiled; SDPA's CPU dispatcher ignores the priority
order, so every variant runs and prints FLASH_ATTENTION):
    python scripts/train_bench.py --device cpu --preset tiny --variants regional-headk-keep,regional-headk-keep-flash
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from dataclasses import replace

import torch
import torch._inductor.config

from rlkit.algos.rl_objective import make_policy_loss
from rlkit.bench.rlkit_step import bench_config
from rlkit.bench.workload import PRESETS, build_policy, stop_hazard
from rlkit.learner import logprobs as head_logprobs
from rlkit.learner.base import TokenBatch
from rlkit.learner.logprobs import SDPA_BACKENDS, attention_backend
from rlkit.learner.torch_learner import TorchLearner

KINDS = (  # kernel name fragments, first match wins
    ("LM head one-pass kernels (head_kernels.py)", ("_stats_kernel", "_grad_kernel")),
    ("attention", ("flash", "fmha", "attention", "mem_eff", "sdpa")),  # before gemm: fmha_cutlass* is attention
    ("gemm", ("gemm", "nvjet", "cutlass", "xmma", "cublas", "splitkreduce")),
    ("optimizer", ("adam", "multi_tensor", "foreach")),
    ("compiled elementwise (triton)", ("triton_",)),
    ("copies / casts / fills", ("copy", "memcpy", "memset", "fill", "cat", "elementwise", "vectorized")),
)


def kind_of(name: str) -> str:
    lower = name.lower()
    return next((kind for kind, parts in KINDS if any(p in lower for p in parts)), "other")


def random_batch(w, generator: torch.Generator) -> TokenBatch:  # noqa: ANN001
    """Random tokens, every row prompt + completion long; on a preset with stops (`ragged`) the lengths its rollouts
    have: prompts uniform in [prompt_tokens_min, prompt_tokens], completions geometric with the preset's median
    (capped at the limit), rows right-padded."""
    rows, length = w.sequences, w.prompt_tokens + w.completion_tokens
    ids = torch.randint(0, w.vocab - 1, (rows, length), generator=generator)
    prompts = torch.full((rows,), w.prompt_tokens)
    completions = torch.full((rows,), w.completion_tokens)
    if w.stop_median:
        prompts = torch.randint(w.prompt_tokens_min or w.prompt_tokens, w.prompt_tokens + 1, (rows,), generator=generator)
        hazard = stop_hazard(w)  # P(length > n) = (1 - hazard)^n, drawn by inversion
        uniform = torch.rand((rows,), generator=generator, dtype=torch.float64)
        drawn = torch.ceil(torch.log1p(-uniform) / torch.log1p(torch.tensor(-hazard, dtype=torch.float64)))
        completions = drawn.clamp(1, w.completion_tokens).long()
    column = torch.arange(length)[None]
    attention = (column < (prompts + completions)[:, None]).long()
    loss_mask = ((column >= prompts[:, None]) & (attention > 0)).float()
    batch = TokenBatch(input_ids=ids * attention, attention_mask=attention, loss_mask=loss_mask)
    batch.advantages = torch.randn((rows, 1), generator=generator) * loss_mask
    return batch


def settings(w, variant: str) -> tuple:  # noqa: ANN001
    mb, tokens, chunk, compiled = w.micro_batch_size, w.micro_batch_tokens, 4096, True
    options = {"head_kernels": "torch", "keep_head_logits_gib": 0.0, "compile_scope": "body", "attention_backend": "auto",
               "head_loss_mask_only": False, "packed_attention": "mask"}
    for part in variant.split("-"):
        if part.startswith("mb"):
            mb, tokens = int(part[2:]), 0
        elif part.startswith("t") and part[1:].isdigit():
            tokens = int(part[1:])
        elif part.startswith("c") and part[1:].isdigit():
            chunk = int(part[1:])
        elif part == "nolc":
            compiled = False
        elif part == "headk":
            options["head_kernels"] = "triton"
        elif part == "keep":
            options["keep_head_logits_gib"] = 1e6  # always
        elif part == "regional":
            options["compile_scope"] = "layers"
        elif part in SDPA_BACKENDS:
            options["attention_backend"] = part
        elif part == "maskhead":
            options["head_loss_mask_only"] = True
        elif part == "varlen":
            options["packed_attention"] = "varlen"
        elif part in ("nogw", "autotune"):
            pass  # read below
        elif part not in ("base", ""):
            raise SystemExit(f"unknown variant part {part!r}")
    head_logprobs.SUM_IN_GEMM = "nogw" not in variant.split("-")  # read in backward: no recompile needed
    options["autotune"] = "autotune" in variant.split("-")  # read before compiling (a new shape tuple: compiles afresh)
    return mb, tokens, chunk, compiled, options


def sdpa_choice(w, rows: int, device: torch.device, backend: str) -> str:  # noqa: ANN001
    """The backend SDPA's dispatcher picks, under `backend`, for an unpadded micro-batch's call (step 1 of issue 18's
    fifth session: no mask, is_causal, the KV heads unrepeated with enable_gqa)."""
    dtype, dim = getattr(torch, w.dtype), w.hidden // w.heads
    q = torch.empty((rows, w.heads, w.prompt_tokens + w.completion_tokens, dim), dtype=dtype, device=device)
    kv = q[:, : w.kv_heads]
    with attention_backend(backend):
        number = torch._fused_sdp_choice(q, kv, kv, None, 0.0, True, enable_gqa=True)
    names = {int(b): name for name, b in torch.nn.attention.SDPBackend.__members__.items()}
    return names.get(int(number), str(number))


def timed_step(learner: TorchLearner, batch: TokenBatch, loss_fn, device: torch.device) -> tuple[float, dict]:  # noqa: ANN001
    """Seconds of one `train_step`, the device synchronized before and after, and its metrics."""
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    metrics = learner.train_step(batch, loss_fn)
    torch.cuda.synchronize(device)
    return time.perf_counter() - start, metrics


def profile(learner: TorchLearner, batch: TokenBatch, loss_fn, device: torch.device, label: str) -> dict:  # noqa: ANN001
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.cuda.synchronize(device)
    with torch_profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        learner.train_step(batch, loss_fn)
        torch.cuda.synchronize(device)
        wall = time.perf_counter() - start
    kernels: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            entry = kernels[event.name]
            entry[0] += (
                event.device_time_total / 1e3 if hasattr(event, "device_time_total") else event.cuda_time_total / 1e3
            )
            entry[1] += 1
    by_kind: dict[str, float] = defaultdict(float)
    for name, (ms, _) in kernels.items():
        by_kind[kind_of(name)] += ms
    total = sum(by_kind.values())
    print(f"[profile] {label}: wall {wall * 1e3:.1f} ms (profiled), kernels {total:.1f} ms", flush=True)
    for kind, ms in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"[profile] {label}:   {kind:32s} {ms:8.1f} ms", flush=True)
    top = sorted(kernels.items(), key=lambda kv: -kv[1][0])[:25]
    for name, (ms, count) in top:
        print(f"[profile] {label}:   {ms:8.2f} ms x{count:4d}  [{kind_of(name)}] {name[:110]}", flush=True)
    return {
        "wall_ms": wall * 1e3,
        "kernels_ms": total,
        "by_kind_ms": dict(by_kind),
        "top": [(name[:200], ms, count) for name, (ms, count) in top],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="reference")
    parser.add_argument("--variants", default="base,mb64,mb128")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", default="")
    parser.add_argument("--output", default="")
    parser.add_argument("--device", default="cuda", help="cuda; cpu only to try the script on the tiny preset")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":  # a dry run of the script's plumbing: no timings worth reading, no profile
        torch.cuda.synchronize = lambda *a: None
        torch.cuda.reset_peak_memory_stats = lambda *a: None
        torch.cuda.max_memory_allocated = lambda *a: 0
    w = PRESETS[args.preset]
    model = build_policy(w, device)
    batch = random_batch(w, torch.Generator().manual_seed(0))
    stage = bench_config(w, True, 4096).stages[0]
    loss_fn = make_policy_loss(stage.algorithm, len(batch), float(batch.loss_mask.sum()), w.completion_tokens)
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    results, shape = [], None
    for variant in args.variants.split(","):
        mb, tokens, chunk, compiled, options = settings(w, variant)
        autotune = options.pop("autotune")
        key = (mb, tokens, compiled, options["compile_scope"], options["attention_backend"], autotune,
               options["packed_attention"])
        if key != shape:
            torch._dynamo.reset()  # a new body shape or backend compiles afresh (static shapes, as a run of one would)
            shape = key
            # mode "max-autotune-no-cudagraphs" as Inductor settings: the learner's torch.compile takes no mode
            torch._inductor.config.max_autotune = torch._inductor.config.coordinate_descent_tuning = autotune
        packed = "variable-length flash attention" if options["packed_attention"] == "varlen" else "a block-diagonal mask"
        choice = f"n/a (packed rows: {packed})" if tokens else sdpa_choice(w, mb, device, options["attention_backend"])
        model.load_state_dict(initial)
        config = bench_config(
            replace(w, micro_batch_size=mb, micro_batch_tokens=tokens), True, chunk, compiled, bool(tokens)
        )
        learner = TorchLearner(model, config.learner.model_copy(update=options), stage.lr, device)
        counters = torch._dynamo.utils.counters
        counters.clear()
        torch.cuda.reset_peak_memory_stats(device)
        warm, first = [], {}
        try:
            for _ in range(args.warmup):
                seconds, step_metrics = timed_step(learner, batch, loss_fn, device)
                warm.append(seconds)
                first = first or step_metrics
        except RuntimeError as err:  # e.g. a backend that cannot run this call on this device
            reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
            print(f"[train] {args.preset} {variant}: failed (sdpa {choice}): {reason}", flush=True)
            results.append({"variant": variant, "failed": reason, "sdpa": choice, **options})
            del learner
            model.zero_grad(set_to_none=True)  # a half-run step's gradients must not reach the next variant
            torch._dynamo.reset()
            torch.cuda.empty_cache()
            shape = None
            save(args.output, args.preset, device, results)
            continue
        graphs = int(counters["stats"].get("unique_graphs", 0))
        times = []
        for _ in range(args.repeats):
            seconds, metrics = timed_step(learner, batch, loss_fn, device)
            times.append(seconds)
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        median = statistics.median(times)
        record = {
            "variant": variant,
            "micro_batch_size": mb,
            "micro_batch_tokens": tokens,
            "chunk": chunk,
            "compiled": compiled,
            "train_s": median,
            "runs": times,
            "warmup": warm,
            "peak_gib": peak,
            "loss": metrics.get("loss/total"),
            "grad_norm": metrics.get("grad_norm"),
            "first_loss": first.get("loss/total"),
            "first_grad_norm": first.get("grad_norm"),
            "compiled_graphs": graphs,
            "sdpa": choice,
            **options,
        }
        print(
            f"[train] {args.preset} {variant}: train_step {median:.3f} s (sdpa {choice}; runs {', '.join(f'{t:.3f}' for t in times)}; "
            f"warm-up {', '.join(f'{t:.1f}' for t in warm)} s; {graphs} graphs compiled), peak {peak:.1f} GiB, "
            f"first step loss {record['first_loss']!r} grad_norm {record['first_grad_norm']!r}",
            flush=True,
        )
        if variant in args.profile.split(","):
            record["profile"] = profile(learner, batch, loss_fn, device, variant)
        results.append(record)
        del learner
        torch.cuda.empty_cache()
        save(args.output, args.preset, device, results)


def save(output: str, preset: str, device: torch.device, results: list[dict]) -> None:
    if output:
        with open(output, "w") as handle:
            json.dump({"preset": preset, "device": str(device), "results": results}, handle, indent=1)


if __name__ == "__main__":
    main()
