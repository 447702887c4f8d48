"""One decode step's sampling in one pass over the logits: Gumbel-max (exponential race) with the logsumexp fused.

The compiled step samples by `argmax(scores - log E)`, E ~ Exp(1), and records `score[token] - logsumexp(scores)`:
on the 0.5B reference shape that was four passes over 128 x 151,936 fp32 values a step (the noise written by
`exponential_`, read by the argmax, two logsumexp passes), 0.15 ms of a 1.86 ms step (kernel profile in
docs/BENCHMARKS.md). Here, two kernels:

- one program per (row, vocabulary chunk) reads its chunk of the logits once, in the logits' dtype, computes the
  scores in fp32 (`logits / temperature`), draws its uniforms in registers (Philox, `tl.rand4x`: four a call, keyed by a seed
  and the step counter read from the device, so one captured CUDA graph draws fresh noise every step), and keeps
  per lane the running max and exp-sum of the scores and the best key `score - log(-log U)` with its column;
- a second kernel per row merges the chunks: the token is the column of the largest key, its log-probability
  the score there minus the merged logsumexp.

The draw is exact in law (the exponential race samples softmax(scores)), not bit-equal to torch's generator:
the uniforms come from Philox keyed by (seed + step), four per counter value. `noise` given instead (Exp(1)
values, as `sample_tokens` takes) makes the kernel use it, so a test can compare token for token.
Used by the fast HF engine for temperature sampling with top_p = 1 on CUDA where Triton imports.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the engine keeps its compiled torch sampling
    triton = None

QUARTER = 512  # lanes of a program; it reads 4 x QUARTER columns an iteration (one Philox call, four uniforms a lane)
SPLIT = 16384  # columns per program (a multiple of 4 x QUARTER): 10 programs a row at a 151,936 vocabulary
WARPS = 8


def available(device: torch.device) -> bool:
    return triton is not None and device.type == "cuda"


if triton is not None:

    @triton.jit
    def _update(
        logits_ptr,
        noise_ptr,
        row,
        cols,
        vocab,
        stride_row,
        stride_noise,
        inv_temperature,
        u,
        m,
        total,
        best,
        best_col,
        best_score,
        HAS_NOISE: tl.constexpr,
    ):
        """Fold one block of columns (`u`: its uniforms) into the lanes' running max, exp-sum and best key."""
        inside = cols < vocab
        s = tl.load(logits_ptr + row * stride_row + cols, mask=inside, other=float("-inf")).to(tl.float32)
        s = s * inv_temperature
        m_new = tl.maximum(m, s)
        safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # lanes that saw nothing finite yet: no inf - inf
        total = total * tl.exp(m - safe) + tl.exp(s - safe)
        if HAS_NOISE:  # noqa: SIM108 - a compile-time branch of the kernel
            e = tl.load(noise_ptr + row * stride_noise + cols, mask=inside, other=1.0)
        else:
            e = -tl.log(u)  # Exp(1); U = 0 gives inf: never chosen
        k = tl.where(inside, s - tl.log(e), float("-inf"))
        better = k > best
        return (
            m_new,
            total,
            tl.where(better, k, best),
            tl.where(better, cols, best_col),
            tl.where(better, s, best_score),
        )

    @triton.jit
    def _sample_partial_kernel(
        logits_ptr,
        noise_ptr,
        seed_ptr,
        step_ptr,
        part_ptr,
        col_ptr,
        stride_row,
        stride_noise,
        vocab,
        inv_temperature,
        SPLITS: tl.constexpr,
        HAS_NOISE: tl.constexpr,
        SPLIT: tl.constexpr,
        QUARTER: tl.constexpr,
    ):
        """Max and exp-sum of the scores, and the best key with its score and column, of one chunk of one row.
        Each iteration reads 4 x QUARTER columns: one Philox call gives four uniforms a lane."""
        row = tl.program_id(0)
        chunk = tl.program_id(1)
        key_seed = tl.load(seed_ptr) + tl.load(step_ptr)  # a fresh Philox key every step
        lanes = tl.arange(0, QUARTER)
        m = tl.full((QUARTER,), float("-inf"), tl.float32)
        total = tl.zeros((QUARTER,), tl.float32)
        best = tl.full((QUARTER,), float("-inf"), tl.float32)
        best_col = tl.zeros((QUARTER,), tl.int32)
        best_score = tl.zeros((QUARTER,), tl.float32)
        for start in range(chunk * SPLIT, tl.minimum(chunk * SPLIT + SPLIT, vocab), 4 * QUARTER):
            cols = start + lanes
            u0, u1, u2, u3 = tl.rand4x(key_seed, row * vocab + cols)  # offsets unique per (row, block, lane)
            m, total, best, best_col, best_score = _update(
                logits_ptr,
                noise_ptr,
                row,
                cols,
                vocab,
                stride_row,
                stride_noise,
                inv_temperature,
                u0,
                m,
                total,
                best,
                best_col,
                best_score,
                HAS_NOISE,
            )
            m, total, best, best_col, best_score = _update(
                logits_ptr,
                noise_ptr,
                row,
                cols + QUARTER,
                vocab,
                stride_row,
                stride_noise,
                inv_temperature,
                u1,
                m,
                total,
                best,
                best_col,
                best_score,
                HAS_NOISE,
            )
            m, total, best, best_col, best_score = _update(
                logits_ptr,
                noise_ptr,
                row,
                cols + 2 * QUARTER,
                vocab,
                stride_row,
                stride_noise,
                inv_temperature,
                u2,
                m,
                total,
                best,
                best_col,
                best_score,
                HAS_NOISE,
            )
            m, total, best, best_col, best_score = _update(
                logits_ptr,
                noise_ptr,
                row,
                cols + 3 * QUARTER,
                vocab,
                stride_row,
                stride_noise,
                inv_temperature,
                u3,
                m,
                total,
                best,
                best_col,
                best_score,
                HAS_NOISE,
            )
        top = tl.max(m, 0)
        safe_top = tl.where(top == float("-inf"), 0.0, top)
        lane = tl.argmax(best, 0)
        pick = lanes == lane
        out = (row * SPLITS + chunk) * 4  # [B, SPLITS, 4]: max, exp-sum (relative to max), best key, its score
        tl.store(part_ptr + out, top)
        tl.store(part_ptr + out + 1, tl.sum(total * tl.exp(m - safe_top), 0))
        tl.store(part_ptr + out + 2, tl.max(tl.where(pick, best, float("-inf")), 0))
        tl.store(part_ptr + out + 3, tl.sum(tl.where(pick, best_score, 0.0), 0))
        tl.store(col_ptr + row * SPLITS + chunk, tl.sum(tl.where(pick, best_col, 0), 0))

    @triton.jit
    def _sample_merge_kernel(part_ptr, col_ptr, token_ptr, logprob_ptr, SPLITS: tl.constexpr, S_PAD: tl.constexpr):
        """The row's token (the column of the largest key) and its log-probability (score - logsumexp)."""
        row = tl.program_id(0)
        splits = tl.arange(0, S_PAD)
        live = splits < SPLITS
        base = (row * SPLITS + splits) * 4
        m = tl.load(part_ptr + base, mask=live, other=float("-inf"))
        total = tl.load(part_ptr + base + 1, mask=live, other=0.0)
        key = tl.load(part_ptr + base + 2, mask=live, other=float("-inf"))
        score = tl.load(part_ptr + base + 3, mask=live, other=0.0)
        top = tl.max(m, 0)
        log_z = top + tl.log(tl.sum(tl.where(live, total * tl.exp(m - top), 0.0), 0))
        winner = tl.argmax(key, 0)
        pick = splits == winner
        col = tl.load(col_ptr + row * SPLITS + splits, mask=live, other=0)
        tl.store(token_ptr + row, tl.sum(tl.where(pick, col, 0), 0).to(tl.int64))
        tl.store(logprob_ptr + row, tl.sum(tl.where(pick, score, 0.0), 0) - log_z)


@torch.library.custom_op("rlkit::gumbel_sample", mutates_args=())
def gumbel_sample(
    logits: torch.Tensor, seed: torch.Tensor, step: torch.Tensor, temperature: float, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A token per row of `logits` [B, V] drawn from softmax(logits / temperature), and its log-probability under
    that distribution (fp32). `seed` and `step` are int64 device tensors [1]: the noise is Philox keyed by their
    sum; `noise` [B, V] (Exp(1)) replaces it. An opaque op to torch.compile (two kernels in its graph)."""
    batch, vocab = logits.shape
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    splits = triton.cdiv(vocab, SPLIT)
    part = torch.empty((batch, splits, 4), dtype=torch.float32, device=logits.device)
    cols = torch.empty((batch, splits), dtype=torch.int32, device=logits.device)
    token = torch.empty(batch, dtype=torch.long, device=logits.device)
    logprob = torch.empty(batch, dtype=torch.float32, device=logits.device)
    has_noise = noise is not None
    if has_noise and noise.stride(-1) != 1:
        noise = noise.contiguous()
    _sample_partial_kernel[(batch, splits)](
        logits,
        noise if has_noise else logits,
        seed,
        step,
        part,
        cols,
        logits.stride(0),
        noise.stride(0) if has_noise else 0,
        vocab,
        1.0 / temperature,
        SPLITS=splits,
        HAS_NOISE=has_noise,
        SPLIT=SPLIT,
        QUARTER=QUARTER,
        num_warps=WARPS,
    )
    _sample_merge_kernel[(batch,)](part, cols, token, logprob, SPLITS=splits, S_PAD=triton.next_power_of_2(splits))
    return token, logprob


@gumbel_sample.register_fake
def _(
    logits: torch.Tensor, seed: torch.Tensor, step: torch.Tensor, temperature: float, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    batch = logits.shape[0]
    return logits.new_empty(batch, dtype=torch.long), logits.new_empty(batch, dtype=torch.float32)
