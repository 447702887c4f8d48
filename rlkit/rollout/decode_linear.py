"""A decode step's linear layers (few rows, weights streamed from HBM) as a Triton GEMM tuned for skinny inputs.

At 128 rows a layer's projections are bound by reading the weights (the 0.5B shape: gate|up 17 MB, down 8.7 MB,
q|k|v 2 MB, o 1.6 MB a layer), and cuBLAS reached 1-2 TB/s there with few CTAs, plus a separate reduce kernel for
the split-K down projection (docs/BENCHMARKS.md). Here one kernel per call:

- one program per (BLOCK_M rows, BLOCK_N output columns, K split): small BLOCK_N and a split of K give enough
  programs to keep HBM busy when the output is narrow;
- split K reduces inside the kernel: each program writes its fp32 partial, takes a ticket from a per-tile counter
  (an atomic), and the last program of a tile sums the partials in split order (so the result does not depend on
  which program finished last), adds the bias, writes the output and resets the counter for the next call;
- its block sizes per (rows, out, in, dtype) come from `TABLE` (measured on an H200 with
  scripts/decode_gemm_bench.py) or, for a shape not there, from `pick`: a few candidates timed inside a CUDA graph
  over weight copies larger than L2, run once per shape when the engine first meets it (not while a graph is
  being captured; there `heuristic` serves).

`decode_linear` is a torch.library custom op, opaque to torch.compile like rlkit's decode attention. fp32 inputs use
IEEE products (greedy decoding in fp32 is checked against transformers `generate`).

Measured, and off by default (`FastHFEngine.linear = "torch"`): on an H200 at 128 rows its best config lost to
cuBLAS on every 0.5B projection (q|k|v 5.64 vs 4.55 us, o 5.04 vs 4.19, gate|up 11.43 vs 8.41, down 10.90 vs 8.35
with cuBLAS's reduce kernel; 33.0 vs 25.5 us a layer), and the decode step with it was slower (1.831 vs 1.750 ms);
docs/BENCHMARKS.md, a fourth session. Kept, with its micro-benchmark, as the measured baseline for a faster kernel.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the engine keeps F.linear
    triton = None

log = logging.getLogger("rlkit.rollout")

COUNTERS = 1 << 16  # tickets for split-K tiles (int32, zero between calls)
_counters: dict[torch.device, torch.Tensor] = {}
# (block_m, block_n, block_k, split_k, num_warps, num_stages) per (rows, out_features, in_features, dtype name);
# filled from scripts/decode_gemm_bench.py on an H200 (docs/BENCHMARKS.md); `pick` adds what it measures
TABLE: dict[tuple[int, int, int, str], tuple[int, int, int, int, int, int]] = {
    (128, 1152, 896, "bfloat16"): (128, 16, 128, 1, 4, 4),  # 0.5B q|k|v, H200, 2026-12-02
    (128, 896, 896, "bfloat16"): (128, 16, 128, 1, 4, 4),  # 0.5B o
    (128, 9728, 896, "bfloat16"): (128, 64, 64, 1, 4, 4),  # 0.5B gate|up
    (128, 896, 4864, "bfloat16"): (128, 32, 128, 4, 4, 4),  # 0.5B down
}
PICK = True  # time candidates for a shape missing from TABLE (when not capturing a graph)


def available(device: torch.device) -> bool:
    """Whether this kernel can serve: CUDA and Triton importable."""
    return triton is not None and device.type == "cuda"


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _stages(block_m: int, block_n: int, block_k: int, itemsize: int) -> int:
    per_stage = (block_m + block_n) * block_k * itemsize
    return max(2, min(4, (180 * 1024) // per_stage))


def candidates(rows: int, out_features: int, in_features: int, dtype: torch.dtype) -> list[tuple]:
    """Configs worth timing for this shape: one row block, 32-1,024 programs, no empty K split."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    if itemsize == 4:
        return [(min(64, max(16, _pow2(rows))), 32, 32, 1, 4, 2)]
    block_m = min(128, max(16, _pow2(rows)))
    found = []
    for block_n in (16, 32, 64):
        for block_k in (64, 128):
            for split in (1, 2, 4, 8):
                per_split = _cdiv(_cdiv(in_features, split), block_k) * block_k
                if _cdiv(in_features, per_split) != split:
                    continue
                programs = -(-rows // block_m) * -(-out_features // block_n) * split
                if 32 <= programs <= 1024:
                    found.append((block_m, block_n, block_k, split, 4, _stages(block_m, block_n, block_k, itemsize)))
    return found or [heuristic(rows, out_features, in_features, dtype)]


def heuristic(rows: int, out_features: int, in_features: int, dtype: torch.dtype) -> tuple:
    """A config without timing: about two programs per SM of an H100/H200 (132), split K when the output is narrow."""
    if torch.empty((), dtype=dtype).element_size() == 4:
        return (min(64, max(16, _pow2(rows))), 32, 32, 1, 4, 2)
    block_m = min(128, max(16, _pow2(rows)))
    tiles_m = -(-rows // block_m)
    block_n = 64
    while block_n > 16 and tiles_m * -(-out_features // block_n) < 264:
        block_n //= 2
    split = 1
    while tiles_m * -(-out_features // block_n) * split < 264 and in_features % (2 * split * 128) == 0:
        split *= 2
    return (block_m, block_n, 128 if in_features % 128 == 0 else 64, split, 4, _stages(block_m, block_n, 128, 2))


if triton is not None:

    @triton.jit
    def _linear_kernel(x_ptr, w_ptr, b_ptr, y_ptr, part_ptr, count_ptr, M, N, K, stride_xm, stride_wn, stride_ym,
                       K_PER_SPLIT, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr, PRECISION: tl.constexpr):
        """y[M, N] = x[M, K] @ w[N, K]^T (+ b) for one (BLOCK_M, BLOCK_N) tile and one split of K."""
        pid_n = tl.program_id(0)
        pid_m = tl.program_id(1)
        pid_k = tl.program_id(2)
        rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        rk = tl.arange(0, BLOCK_K)
        start = pid_k * K_PER_SPLIT
        x_rows = x_ptr + rm[:, None] * stride_xm
        w_rows = w_ptr + rn[:, None] * stride_wn
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k in range(start, tl.minimum(start + K_PER_SPLIT, K), BLOCK_K):
            ks = k + rk
            a = tl.load(x_rows + ks[None, :], mask=(rm < M)[:, None] & (ks < K)[None, :], other=0.0)
            b = tl.load(w_rows + ks[None, :], mask=(rn < N)[:, None] & (ks < K)[None, :], other=0.0)
            acc = tl.dot(a, tl.trans(b), acc, input_precision=PRECISION)
        inside = (rm < M)[:, None] & (rn < N)[None, :]
        if SPLIT_K > 1:  # partials to the workspace; the last program of the tile sums them in split order
            tile = (rm[:, None] * N + rn[None, :])
            tl.store(part_ptr + pid_k * M * N + tile, acc, mask=inside)
            tl.debug_barrier()  # every thread's partial is written before the ticket (release)
            counter = count_ptr + pid_m * tl.num_programs(0) + pid_n
            ticket = tl.atomic_add(counter, 1, sem="acq_rel")
            if ticket == SPLIT_K - 1:
                acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
                for split in range(SPLIT_K):
                    acc += tl.load(part_ptr + split * M * N + tile, mask=inside, other=0.0, cache_modifier=".cg")
                if HAS_BIAS:
                    acc += tl.load(b_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
                tl.store(y_ptr + rm[:, None] * stride_ym + rn[None, :], acc.to(y_ptr.dtype.element_ty), mask=inside)
                tl.atomic_xchg(counter, 0)  # zero for the next call (graph replays included)
        else:
            if HAS_BIAS:
                acc += tl.load(b_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
            tl.store(y_ptr + rm[:, None] * stride_ym + rn[None, :], acc.to(y_ptr.dtype.element_ty), mask=inside)


def _counter(device: torch.device) -> torch.Tensor:
    counter = _counters.get(device)
    if counter is None:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():  # zeros made during a capture would be zeroed only on replay
            raise RuntimeError("decode_linear: run it once before capturing a CUDA graph (its tickets need zeros)")
        counter = _counters[device] = torch.zeros(COUNTERS, dtype=torch.int32, device=device)
    return counter


def launch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, config: tuple) -> torch.Tensor:
    """y = x @ weight^T + bias for 2-D x [M, K] with one config (block_m, block_n, block_k, split_k, warps, stages)."""
    block_m, block_n, block_k, split, warps, stages = config
    rows, in_features = x.shape
    out_features = weight.shape[0]
    out = torch.empty((rows, out_features), dtype=x.dtype, device=x.device)
    grid = (triton.cdiv(out_features, block_n), triton.cdiv(rows, block_m), split)
    per_split = triton.cdiv(triton.cdiv(in_features, split), block_k) * block_k
    if split > 1:
        if grid[0] * grid[1] > COUNTERS:
            raise ValueError(f"decode_linear: {grid[0] * grid[1]} tiles, more than its {COUNTERS} counters")
        part = torch.empty((split, rows, out_features), dtype=torch.float32, device=x.device)
        counter = _counter(x.device)
    else:
        part = counter = out  # unused
    _linear_kernel[grid](
        x, weight, bias if bias is not None else out, out, part, counter, rows, out_features, in_features,
        x.stride(0), weight.stride(0), out.stride(0), per_split, HAS_BIAS=bias is not None, BLOCK_M=block_m,
        BLOCK_N=block_n, BLOCK_K=block_k, SPLIT_K=split, PRECISION="ieee" if x.dtype == torch.float32 else "tf32",
        num_warps=warps, num_stages=stages,
    )
    return out


def graph_time(fn, calls: int, replays: int = 20) -> float:  # noqa: ANN001 - fn(i) launches the i-th call
    """Microseconds per call of `fn(0..calls-1)` captured in one CUDA graph (median of `replays` replays)."""
    for i in range(calls):  # warm-up (compiles, allocates)
        fn(i)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(calls):
            fn(i)
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / calls)
    return sorted(times)[len(times) // 2]


def weight_copies(out_features: int, in_features: int, dtype: torch.dtype, device: torch.device,
                  total_bytes: int = 160 << 20, most: int = 24) -> torch.Tensor:
    """[copies, N, K] random weights, enough copies that a pass over them does not fit in L2."""
    size = out_features * in_features * torch.empty((), dtype=dtype).element_size()
    copies = max(2, min(most, -(-total_bytes // size)))
    return torch.randn((copies, out_features, in_features), device=device).mul_(0.02).to(dtype)


@torch.no_grad()
def pick(rows: int, out_features: int, in_features: int, dtype: torch.dtype, device: torch.device,
         has_bias: bool) -> tuple:
    """The fastest candidate for this shape, timed inside a CUDA graph over weight copies (a second or a few)."""
    found = candidates(rows, out_features, in_features, dtype)
    if len(found) == 1:
        return found[0]
    weights = weight_copies(out_features, in_features, dtype, device)
    x = torch.randn((rows, in_features), device=device).to(dtype)
    bias = torch.randn(out_features, device=device).to(dtype) if has_bias else None
    best, best_time = None, float("inf")
    for config in found:
        try:
            took = graph_time(lambda i, c=config: launch(x, weights[i], bias, c), len(weights))
        except Exception as err:  # noqa: BLE001 - a config that does not compile or fit is skipped
            log.debug("decode_linear config %s failed: %s", config, err)
            continue
        if took < best_time:
            best, best_time = config, took
    return best or heuristic(rows, out_features, in_features, dtype)


def config_for(rows: int, out_features: int, in_features: int, dtype: torch.dtype, device: torch.device,
               has_bias: bool) -> tuple:
    key = (rows, out_features, in_features, str(dtype).removeprefix("torch."))
    config = TABLE.get(key)
    if config is None:
        if PICK and not torch.cuda.is_current_stream_capturing():
            config = TABLE[key] = pick(rows, out_features, in_features, dtype, device, has_bias)
            log.info("decode_linear: picked %s for %s", config, key)
        else:
            config = heuristic(rows, out_features, in_features, dtype)
    return config


@torch.library.custom_op("rlkit::decode_linear", mutates_args=())
def decode_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear(x, weight, bias) for a decode step's few rows, as one Triton kernel (CUDA; F.linear elsewhere)."""
    if triton is None or x.device.type != "cuda":
        return F.linear(x, weight, bias)
    flat = x.reshape(-1, x.shape[-1])
    if flat.stride(-1) != 1:
        flat = flat.contiguous()
    weight = weight if weight.stride(-1) == 1 else weight.contiguous()
    config = config_for(flat.shape[0], weight.shape[0], weight.shape[1], x.dtype, x.device, bias is not None)
    return launch(flat, weight, bias, config).view(*x.shape[:-1], weight.shape[0])


@decode_linear.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], weight.shape[0]))
