"""One decode step's temperature sampling in two short kernels: inverse-CDF sampling with one uniform a row.

The compiled torch step samples by `argmax(scores - log E)`, E ~ Exp(1) per vocabulary entry, and records
`score[token] - logsumexp(scores)`. A Triton version of that exponential race (this module until the fifth session)
drew 19.4 million uniforms a step on the 0.5B reference shape (128 rows x 151,936) and took 81 us of a 1.55 ms
step, bound by the noise (Philox and two logarithms an entry), not by the 39 MB of logits it read (kernel profile
in docs/BENCHMARKS.md). Inverse-CDF sampling needs one uniform a row:

- one program per (row, chunk of SPLIT columns) loads its chunk of the logits once, computes the scores in fp32
  (`logits / temperature`) and writes their max and exp-sum;
- one program per row merges the chunks (the max M, Z = sum exp(score - M)), draws u ~ U[0, 1) (Philox keyed by a
  seed and the step counter read from the device, so one captured CUDA graph draws fresh every step), picks the
  chunk where the cumulative mass passes u * Z, reloads that chunk (32 KB, from L2) and takes the first column whose
  running sum of exp(score - M) passes the rest; the log-probability is `score - M - log Z`.

The draw is exact in law (the inverse CDF of softmax(scores)) up to the fp32 sums, whose rounding moves the
boundaries between tokens by ~1e-7 of the mass; a residual that rounding leaves past the chunk's last token takes
that token. Not bit-equal to torch's generator: `uniform` [B] given instead makes the kernels use it, so a test can
compare token for token with an inverse CDF computed in float64.
Used by the fast HF engine for temperature sampling with top_p = 1 on CUDA where Triton imports.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the engine keeps its compiled torch sampling
    triton = None

SPLIT = 16384  # columns per program: 10 programs a row at a 151,936 vocabulary; a chunk is held in registers
WARPS = 8  # of the chunk programs
PICK_WARPS = 16  # of the per-row program (its chunk scan: 32 columns a thread)


def available(device: torch.device) -> bool:
    return triton is not None and device.type == "cuda"


if triton is not None:

    @triton.jit
    def _chunk_stats_kernel(logits_ptr, part_ptr, stride_row, vocab, inv_temperature, SPLITS: tl.constexpr,
                            SPLIT: tl.constexpr):
        """Max and exp-sum (relative to that max) of the scores of one chunk of one row: one exp a column."""
        row = tl.program_id(0)
        chunk = tl.program_id(1)
        cols = chunk * SPLIT + tl.arange(0, SPLIT)
        s = tl.load(logits_ptr + row * stride_row + cols, mask=cols < vocab, other=float("-inf")).to(tl.float32)
        s = s * inv_temperature
        top = tl.max(s, 0)
        safe = tl.where(top == float("-inf"), 0.0, top)  # a chunk with nothing finite: sum 0, no inf - inf
        out = (row * SPLITS + chunk) * 2
        tl.store(part_ptr + out, top)
        tl.store(part_ptr + out + 1, tl.sum(tl.exp(s - safe), 0))

    @triton.jit
    def _pick_kernel(logits_ptr, part_ptr, seed_ptr, step_ptr, uniform_ptr, token_ptr, logprob_ptr, stride_row,
                     vocab, inv_temperature, SPLITS: tl.constexpr, S_PAD: tl.constexpr, SPLIT: tl.constexpr,
                     HAS_UNIFORM: tl.constexpr):
        """The row's token by the inverse CDF at one uniform, and its log-probability."""
        row = tl.program_id(0)
        chunks = tl.arange(0, S_PAD)
        live = chunks < SPLITS
        top_c = tl.load(part_ptr + (row * SPLITS + chunks) * 2, mask=live, other=float("-inf"))
        sum_c = tl.load(part_ptr + (row * SPLITS + chunks) * 2 + 1, mask=live, other=0.0)
        top = tl.max(top_c, 0)
        mass = tl.where(live & (sum_c > 0), sum_c * tl.exp(top_c - top), 0.0)  # each chunk's exp-sum at the row's max
        total = tl.sum(mass, 0)
        if HAS_UNIFORM:  # noqa: SIM108 - a compile-time branch of the kernel
            u = tl.load(uniform_ptr + row)
        else:
            u = tl.rand(tl.load(seed_ptr) + tl.load(step_ptr), row)  # a fresh Philox key every step
        target = u * total
        cumulative = tl.cumsum(mass, 0)
        last_chunk = tl.max(tl.where(mass > 0, chunks, 0), 0)
        chosen = tl.minimum(tl.sum((cumulative <= target).to(tl.int32), 0), last_chunk)
        rest = tl.maximum(target - tl.sum(tl.where(chunks < chosen, mass, 0.0), 0), 0.0)  # >= 0 despite rounding
        index = tl.arange(0, SPLIT)
        cols = chosen * SPLIT + index
        s = tl.load(logits_ptr + row * stride_row + cols, mask=cols < vocab, other=float("-inf")).to(tl.float32)
        s = s * inv_temperature
        e = tl.exp(s - top)
        running = tl.cumsum(e, 0)
        last = tl.max(tl.where(e > 0, index, 0), 0)
        pick = tl.minimum(tl.sum((running <= rest).to(tl.int32), 0), last)  # the first column past `rest`
        score = tl.sum(tl.where(index == pick, s, 0.0), 0)
        tl.store(token_ptr + row, (chosen * SPLIT + pick).to(tl.int64))
        tl.store(logprob_ptr + row, score - top - tl.log(total))


@torch.library.custom_op("rlkit::inverse_cdf_sample", mutates_args=())
def inverse_cdf_sample(
    logits: torch.Tensor, seed: torch.Tensor, step: torch.Tensor, temperature: float,
    uniform: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A token per row of `logits` [B, V] drawn from softmax(logits / temperature), and its log-probability under
    that distribution (fp32). `seed` and `step` are int64 device tensors [1]: the row's uniform is Philox keyed by
    their sum; `uniform` [B] (fp32 in [0, 1)) replaces it. An opaque op to torch.compile (two kernels)."""
    batch, vocab = logits.shape
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    splits = triton.cdiv(vocab, SPLIT)
    part = torch.empty((batch, splits, 2), dtype=torch.float32, device=logits.device)
    token = torch.empty(batch, dtype=torch.long, device=logits.device)
    logprob = torch.empty(batch, dtype=torch.float32, device=logits.device)
    _chunk_stats_kernel[(batch, splits)](logits, part, logits.stride(0), vocab, 1.0 / temperature, SPLITS=splits,
                                         SPLIT=SPLIT, num_warps=WARPS)
    has_uniform = uniform is not None
    _pick_kernel[(batch,)](logits, part, seed, step, uniform.float() if has_uniform else part, token, logprob,
                           logits.stride(0), vocab, 1.0 / temperature, SPLITS=splits,
                           S_PAD=max(2, triton.next_power_of_2(splits)), SPLIT=SPLIT, HAS_UNIFORM=has_uniform,
                           num_warps=PICK_WARPS)
    return token, logprob


@inverse_cdf_sample.register_fake
def _(
    logits: torch.Tensor, seed: torch.Tensor, step: torch.Tensor, temperature: float,
    uniform: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    batch = logits.shape[0]
    return logits.new_empty(batch, dtype=torch.long), logits.new_empty(batch, dtype=torch.float32)
