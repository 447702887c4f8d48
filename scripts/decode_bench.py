"""The decode step on its own (issue 18, item 4), on a GPU: seconds per generate call and per decode step of the
fast engine on a bench preset's shape, one line per setting of its levers, then (optionally) a kernel profile of
the steady decode loop and the learner's LM head, ours against Liger's fused linear cross-entropy.

Variants: `plain` is the batched-matmul attention over the whole cache every step; `triton` the Triton
decode-attention kernels over the filled part (rlkit/rollout/decode_attention.py); `+torchsample` samples with the
compiled torch ops (noise drawn by `exponential_`) instead of the sampling kernels (rlkit/rollout/decode_sampling.py, inverse CDF);
`+autotune` compiles the step with mode max-autotune-no-cudagraphs; `+fold` merges the attention
chunks in the last chunk program instead of a merge kernel (decode_attention.FOLD; without it, the merge kernel);
`+norope` rotates q/k and writes the cache with compiled torch ops instead of inside the attention kernel
(decode_attention.FUSE_ROPE off), `+rope` inside the kernel at every head size (by default only up to 64,
decode_attention.FUSE_ROPE_MAX_HEAD_DIM); `+gumbel=FILE` samples with the exponential-race kernel of an earlier
decode_sampling.py (e.g. `git show 0da1d11:rlkit/rollout/decode_sampling.py`); `+cN` / `+wN` the kernel's chunk of
slots (128) / warps (4); `+fmN` the fold for caches of up to N chunks (decode_attention.FOLD_MAX_SPLITS, 8;
longer ones keep the merge kernel); `+noprefill` prefills eagerly (no captured prefill graph); `+pdl` Inductor's
programmatic dependent launch for its Triton kernels (Hopper); `+cublaslt` cuBLASLt as torch's preferred BLAS. (Three levers measured with
this script and then removed, docs/BENCHMARKS.md: graphs per 64/128-slot cache-length bucket with the plain
attention, drawing the sampling noise inside the compiled step, and a Triton skinny GEMM for the projections,
`+tlinear`, at commit cf9f45d.) Each variant gets a fresh engine (its own compile and
graphs), one untimed generate, then `--repeats` timed ones with the same seed; the tokens of every variant are
compared with the first variant's (sampling noise is seeded, so a difference means different logits).

Usage (on the GPU machine): python scripts/decode_bench.py [--preset reference] [--variants full,kv64,kv128]
    [--repeats 3] [--profile kv64] [--liger]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch._inductor.config as inductor_config

from rlkit.bench.workload import PRESETS, build_policy, build_tokenizer, prompt_samples
from rlkit.learner.logprobs import FusedHeadLogprobs, logprobs_from_logits
from rlkit.models import encode_prompt
from rlkit.rollout import decode_attention
from rlkit.rollout.base import SamplingParams
from rlkit.rollout.hf_fast import FastHFEngine


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, *args) -> float:  # noqa: ANN001, ANN002
    sync(device)
    start = time.perf_counter()
    fn(*args)
    sync(device)
    return time.perf_counter() - start


def graph_seconds(run, device: torch.device, replays: int) -> float:  # noqa: ANN001
    """Seconds per replay of `run` captured in one CUDA graph: run once eagerly (compiles, zeroes kernel tickets),
    capture, replay once, then `replays` timed replays."""
    run()
    torch.cuda.synchronize(device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run()
    graph.replay()
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(replays):
        graph.replay()
    torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / replays


SAMPLERS: dict = {}


def sampler_for(flags: list[str]):  # noqa: ANN201
    """The engine's sampling op: the inverse-CDF kernels, or with `+gumbel=FILE` the exponential-race kernel of an
    earlier decode_sampling.py (`gumbel_sample`, the same positional arguments)."""
    from rlkit.rollout.decode_sampling import inverse_cdf_sample

    path = next((f.split("=", 1)[1] for f in flags if f.startswith("gumbel=")), None)
    if path is None:
        return inverse_cdf_sample
    if path not in SAMPLERS:
        SAMPLERS[path] = load_kernels(path).gumbel_sample
    return SAMPLERS[path]


def engine_for(model, tokenizer, variant: str, stops: bool) -> FastHFEngine:  # noqa: ANN001
    """`attention[+flag...]`: the attention path and the levers of the module docstring, set before the engine
    compiles and captures its step."""
    attention, *flags = variant.split("+")
    decode_attention.FOLD = "fold" in flags  # read when the step is captured (each variant captures afresh)
    decode_attention.FUSE_ROPE = "norope" not in flags
    decode_attention.FUSE_ROPE_MAX_HEAD_DIM = 1 << 20 if "rope" in flags else 64
    decode_attention.CHUNK = next((int(f[1:]) for f in flags if f[:1] == "c" and f[1:].isdigit()), 128)
    decode_attention.NUM_WARPS = next((int(f[1:]) for f in flags if f[:1] == "w" and f[1:].isdigit()), 4)
    decode_attention.FOLD_MAX_SPLITS = next((int(f[2:]) for f in flags if f[:2] == "fm" and f[2:].isdigit()), 8)
    if hasattr(inductor_config.triton, "enable_pdl"):
        inductor_config.triton.enable_pdl = "pdl" in flags
    elif "pdl" in flags:
        print(f"[decode] {variant}: this torch's Inductor has no enable_pdl; the variant runs without it", flush=True)
    torch.backends.cuda.preferred_blas_library("cublaslt" if "cublaslt" in flags else "cublas")
    from rlkit.rollout import hf_fast

    hf_fast.inverse_cdf_sample = sampler_for(flags)  # read when the step is traced (each variant traces afresh)
    engine = FastHFEngine(model, tokenizer)
    if not stops:
        engine.stop_ids = set()
    engine.attention = attention
    if "noprefill" in flags:
        engine.prefill_graphs = False
    if "torchsample" in flags:
        engine.sampling = "torch"
    if "autotune" in flags:
        engine.compile_mode = "max-autotune-no-cudagraphs"
    return engine


def decode_variants(args: argparse.Namespace, device: torch.device) -> None:
    w = PRESETS[args.preset]
    model, tokenizer = build_policy(w, device).eval(), build_tokenizer(w)
    prompts = [encode_prompt(tokenizer, p["prompt"]) for p in prompt_samples(w)]
    sampling = SamplingParams(n=w.samples, temperature=1.0, max_new_tokens=w.completion_tokens, seed=7)
    first = None
    for variant in args.variants.split(","):
        torch._dynamo.reset()  # each engine compiles afresh (the compiled step's code is shared by every engine)
        engine = engine_for(model, tokenizer, variant, bool(w.stop_median))
        warm = timed(engine.generate, device, prompts, sampling)
        graphs = engine.stats.get("graphs_captured", 0)
        times, out = [], None
        for _ in range(args.repeats):
            sync(device)
            start = time.perf_counter()
            out = engine.generate(prompts, sampling)
            sync(device)
            times.append(time.perf_counter() - start)
        first = first or out
        same = sum(a.response_ids == b.response_ids for a, b in zip(out, first))
        steps = max(len(c.response_ids) for c in out)
        median = statistics.median(times)
        print(
            f"[decode] {args.preset} {variant}: generate {median:.3f} s (runs {', '.join(f'{t:.3f}' for t in times)}), "
            f"{1e3 * median / steps:.3f} ms per step over {steps} steps; warm-up {warm:.1f} s; graphs captured "
            f"{graphs} in it; rows equal to {args.variants.split(',')[0]}: "
            f"{same}/{len(out)}; compile_failed={engine.compile_failed}",
            flush=True,
        )
        if variant == args.profile:
            profile(engine, prompts, sampling)
        engine = None
        if device.type == "cuda":
            torch.cuda.empty_cache()


def profile(engine: FastHFEngine, prompts: list[list[int]], sampling: SamplingParams) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        engine.generate(prompts, sampling)
        torch.cuda.synchronize()
    events = prof.key_averages()
    total = sum(e.self_device_time_total for e in events)
    print(f"[profile] one generate, {total / 1e3:.1f} ms of kernel time; top kernels by self time:")
    for e in sorted(events, key=lambda e: -e.self_device_time_total)[:30]:
        print(
            f"[profile] {e.self_device_time_total / 1e3:9.2f} ms {e.count:7d} calls "
            f"{e.self_device_time_total / max(e.count, 1):8.2f} us/call  {e.key[:110]}"
        )


def load_kernels(path: str):  # noqa: ANN201
    """A copy of rlkit/rollout/decode_attention.py (another version of it) as its own module, its ops renamed."""
    import types

    module = types.ModuleType(f"decode_attention_{abs(hash(path))}")
    with open(path) as handle:
        source = handle.read().replace('"rlkit::', f'"rlkit_bench_{abs(hash(path))}::')
    exec(compile(source, path, "exec"), module.__dict__)  # noqa: S102 - a file of this repository's history
    return module


def attention_alone(args: argparse.Namespace, device: torch.device) -> None:
    """The decode attention op alone (rotary + cache write + attention), 24 layers of the reference shape's cache in
    one CUDA graph, weights of nothing else: us a layer at a few cache fills, per kernel version and setting."""
    w = PRESETS[args.preset]
    rows, heads, kv_heads, head_dim = w.sequences, w.heads, w.kv_heads, w.hidden // w.heads
    slots = w.prompt_tokens + w.completion_tokens
    layers = w.layers
    gen = torch.Generator(device=device).manual_seed(0)
    dtype = torch.bfloat16
    keys = [torch.randn(rows, kv_heads, slots, head_dim, device=device, dtype=dtype, generator=gen) for _ in range(layers)]
    values = [torch.randn_like(k) for k in keys]
    qkv = torch.randn(rows, (heads + 2 * kv_heads) * head_dim, device=device, dtype=dtype, generator=gen)
    q, k, v = (t.view(rows, -1, head_dim) for t in qkv.split([heads * head_dim, kv_heads * head_dim,
                                                              kv_heads * head_dim], -1))
    angle = torch.rand(rows, head_dim // 2, device=device, generator=gen)
    cos, sin = (torch.cat([f(angle)] * 2, -1).to(dtype) for f in (torch.cos, torch.sin))
    valid = torch.ones(rows, slots, dtype=torch.bool, device=device)
    slot = torch.zeros(1, dtype=torch.long, device=device)
    versions = {"current": decode_attention} | {p: load_kernels(p) for p in args.attention_files.split(",") if p}
    for name, module in versions.items():
        for setting in args.attention_settings.split(","):
            parts = {x[0]: int(x[1:]) for x in setting.split("-")}  # c: chunk, w: warps, v: EARLY_V_MAX_D
            module.CHUNK, module.NUM_WARPS, module.FOLD = parts.get("c", 128), parts.get("w", 4), True
            if "v" in parts:
                module.EARLY_V_MAX_D = parts["v"]  # a version without it ignores it
            if not hasattr(module, "NUM_WARPS"):
                print(f"[attention] {name}: no NUM_WARPS in this version; its default warps", flush=True)

            def run(module=module) -> None:  # noqa: ANN001
                for layer in range(layers):
                    module._launch(q, keys[layer], values[layer], valid, slot, 0.125, (k, v, cos, sin))

            line = []
            for fill in (64, slots // 2, slots - 1):
                slot.fill_(fill)
                line.append(1e6 * graph_seconds(run, device, args.repeats * 20) / layers)  # the first run compiles
            print(f"[attention] {name} {setting}: us a layer at slot 64 / {slots // 2} / {slots - 1}: "
                  + " / ".join(f"{t:.2f}" for t in line) + f" (mean {statistics.mean(line):.2f})", flush=True)


def phases(args: argparse.Namespace, device: torch.device) -> None:
    """Where a `generate` call's wall time goes: each of the engine's steps timed with the device synchronized
    before and after (so the split adds small sync costs; GPU idle time shows as a phase longer than its kernels)."""
    w = PRESETS[args.preset]
    model, tokenizer = build_policy(w, device).eval(), build_tokenizer(w)
    prompts = [encode_prompt(tokenizer, p["prompt"]) for p in prompt_samples(w)]
    sampling = SamplingParams(n=w.samples, temperature=1.0, max_new_tokens=w.completion_tokens, seed=7)
    torch._dynamo.reset()
    engine = engine_for(model, tokenizer, args.variants.split(",")[0], bool(w.stop_median))
    seconds: dict[str, list[float]] = {}

    def timing(name: str, fn):  # noqa: ANN001, ANN202
        def run(*a, **k):  # noqa: ANN002, ANN003, ANN202
            sync(device)
            start = time.perf_counter()
            out = fn(*a, **k)
            sync(device)
            seconds.setdefault(name, []).append(time.perf_counter() - start)
            return out
        return run

    for name in ("refresh_fused_weights", "_run_prefill", "_run_decode", "_completions"):
        setattr(engine, name, timing(name, getattr(engine, name)))
    engine.generate(prompts, sampling)  # compile and capture
    seconds.clear()
    walls = [timed(engine.generate, device, prompts, sampling) for _ in range(args.repeats)]
    parts = {name: statistics.median(values) for name, values in seconds.items()}
    wall = statistics.median(walls)
    print(f"[phases] {args.preset} {args.variants.split(',')[0]}: generate {wall * 1e3:.1f} ms = "
          + ", ".join(f"{name.strip('_')} {1e3 * t:.1f}" for name, t in parts.items())
          + f", rest (batch building, state lookup, seeding) {1e3 * (wall - sum(parts.values())):.1f} ms", flush=True)


def gemm_layouts(args: argparse.Namespace, device: torch.device) -> None:
    """The decode step's four projections alone, per layout of the cuBLAS call: `x @ W.T` (F.linear, what the engine
    runs; cuBLAS sees the weight's rows as its M) against `(W @ x.T).T` (the rows as its M: cuBLAS's heuristics pick
    other kernels, e.g. no split-K for the down projection), with and without making that output contiguous. One
    weight per layer of the preset (together past L2, as in a step), all layers in one CUDA graph; us a layer."""
    w = PRESETS[args.preset]
    rows, dim = w.sequences, w.hidden // w.heads
    shapes = {"q|k|v": ((w.heads + 2 * w.kv_heads) * dim, w.hidden), "o": (w.hidden, w.heads * dim),
              "gate|up": (2 * w.intermediate, w.hidden), "down": (w.hidden, w.intermediate)}
    gen = torch.Generator(device=device).manual_seed(0)
    for name, (out_features, in_features) in shapes.items():
        weights = [torch.randn(out_features, in_features, device=device, dtype=torch.bfloat16, generator=gen) * 0.02
                   for _ in range(w.layers)]
        x = torch.randn(rows, in_features, device=device, dtype=torch.bfloat16, generator=gen)
        layouts = {
            "x@W.T": lambda weight, x=x: torch.nn.functional.linear(x, weight),
            "(W@x.T).T": lambda weight, x=x: torch.mm(weight, x.T).T,
            "(W@x.T).T contiguous": lambda weight, x=x: torch.mm(weight, x.T).T.contiguous(),
        }
        reference = torch.nn.functional.linear(x, weights[0]).float()
        line = []
        for layout, fn in layouts.items():
            error = float((fn(weights[0]).float() - reference).abs().max())

            def run(fn=fn, weights=weights) -> None:  # noqa: ANN001
                for weight in weights:
                    fn(weight)

            seconds = graph_seconds(run, device, args.repeats * 50) / w.layers
            line.append(f"{layout} {1e6 * seconds:.2f} us (max |diff| {error:.1e})")
        print(f"[gemm] {args.preset} {name} ({rows} x {in_features} -> {out_features}): " + "; ".join(line), flush=True)


def lm_head(device: torch.device) -> None:
    """Our fused chunked head (logprobs and entropy) vs Liger's fused linear cross-entropy (loss only, its
    gradient computed during the forward), forward + backward of sum(-log p(target)) on the 0.5B head."""
    w = PRESETS["reference"]
    torch.manual_seed(0)
    weight = (torch.randn(w.vocab, w.hidden, device=device) * 0.02).to(torch.bfloat16).requires_grad_()
    results = {}
    for rows in (4096, 32768):
        hidden = torch.randn(rows, w.hidden, device=device, dtype=torch.bfloat16).requires_grad_()
        targets = torch.randint(0, w.vocab, (rows,), device=device)

        def ours(hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            lp, _ent, _ = FusedHeadLogprobs.apply(hidden, weight, targets, 4096)
            loss = -lp.sum()
            loss.backward()
            return loss

        runs = {"ours (FusedHeadLogprobs, chunk 4096)": ours}
        try:
            from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss

            liger_loss = LigerFusedLinearCrossEntropyLoss(reduction="sum")

            def liger(hidden: torch.Tensor, targets: torch.Tensor, liger_loss=liger_loss) -> torch.Tensor:  # noqa: ANN001
                loss = liger_loss(weight, hidden, targets)
                loss.backward()
                return loss

            runs["liger_kernel LigerFusedLinearCrossEntropyLoss"] = liger
        except Exception as err:  # noqa: BLE001 - report and go on with ours alone
            print(f"[head] liger_kernel not usable: {type(err).__name__}: {err}")
        for name, fn in runs.items():
            hidden.grad, weight.grad = None, None
            loss = fn(hidden, targets)
            grads = (hidden.grad.float().clone(), weight.grad.float().clone())
            times = []
            for _ in range(5):
                hidden.grad, weight.grad = None, None
                times.append(timed(fn, device, hidden, targets))
            results[(rows, name)] = (float(loss), grads, statistics.median(times))
        if rows == 4096:  # exactness against plain bf16 autograd, as scripts/gpu_checks.py does for ours
            hidden.grad, weight.grad = None, None
            lp, _ = logprobs_from_logits(hidden @ weight.T, targets, False)
            (-lp.sum()).backward()
            ref = (float(-lp.sum()), hidden.grad.float(), weight.grad.float())
            for name in runs:
                loss, (gh, gw), _ = results[(rows, name)]
                print(
                    f"[head] {rows} rows {name}: loss rel err {abs(loss - ref[0]) / abs(ref[0]):.1e}, grad hidden rel err "
                    f"{float((gh - ref[1]).norm() / ref[1].norm()):.1e}, grad weight rel err "
                    f"{float((gw - ref[2]).norm() / ref[2].norm()):.1e} (vs plain bf16 autograd)"
                )
        for name in runs:
            print(
                f"[head] {rows} rows x vocab {w.vocab}, hidden {w.hidden}: {name}: forward+backward "
                f"{1e3 * results[(rows, name)][2]:.2f} ms (median of 5)",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="reference", help="bench preset whose shape is decoded")
    parser.add_argument(
        "--variants", default="triton+torchsample,triton", help="comma-separated: plain, triton, +flags"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed generate calls per variant")
    parser.add_argument("--profile", default="", help="variant whose steady generate is profiled (kernels)")
    parser.add_argument("--liger", action="store_true", help="also time the LM head: ours vs Liger's")
    parser.add_argument("--skip-decode", action="store_true", help="only the LM head (or the attention alone)")
    parser.add_argument("--attention", action="store_true", help="also time the attention op alone, per version")
    parser.add_argument("--attention-files", default="", help="other versions of decode_attention.py to time")
    parser.add_argument("--attention-settings", default="c128-w4",
                        help="comma-separated cCHUNK-wWARPS[-vN: EARLY_V_MAX_D of a version that has it, ef97d7d]")
    parser.add_argument("--phases", action="store_true", help="also split one generate's wall time by engine step")
    parser.add_argument("--gemms", action="store_true", help="also time the projections alone, per cuBLAS layout")
    parser.add_argument("--device", default="cuda", help="cuda; cpu only to try the script on a small preset")
    args = parser.parse_args()
    device = torch.device(args.device)
    if not args.skip_decode:
        decode_variants(args, device)
    if args.attention:
        attention_alone(args, device)
    if args.gemms:
        gemm_layouts(args, device)
    if args.phases:
        phases(args, device)
    if args.liger:
        lm_head(device)


if __name__ == "__main__":
    main()
