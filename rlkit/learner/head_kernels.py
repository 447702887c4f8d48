"""One-pass Triton kernels for the fused LM head's elementwise work (`FusedHeadLogprobs`, logprobs.py).

Per chunk of rows of logits [n, V] (bf16 on the GPU, V = 151,936 for Qwen), the compiled torch functions
`_chunk_stats` and `_chunk_grad` ran at ~1.1 TB/s (1.5 ms and 2.3 ms a 4,096-row chunk on an H200, where one read
of the chunk is ~0.26 ms). Here one program per row:

- `chunk_stats` reads the row once and keeps per lane the running max m, exp-sum s = sum e^(x - m) and the
  exp-weighted sum t = sum e^(x - m) x (fp32), then merges the lanes: log Z = M + log S, entropy = log Z - T / S,
  and log p(target) = x[target] - log Z;
- `chunk_grad` reads the row once and writes d loss / d logits in the logits' dtype, the formula of `_chunk_grad`:
  g_lp ([j = y] - p_j) - g_ent p_j (x_j - (log Z - H)), p_j = e^(x_j - log Z); in place over the logits when
  `out` is the logits themselves (each element is read before it is written, by the same program).

Used by `FusedHeadLogprobs` on CUDA where Triton imports (`learner.head_kernels: triton`, the default);
tests/test_head_kernels.py runs them through Triton's CPU interpreter against the torch functions.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the compiled torch functions stay
    triton = None

BLOCK = 4096  # columns a program reads per iteration (37 iterations at V = 151,936)
WARPS = 8


def available(device: torch.device) -> bool:
    return triton is not None and device.type == "cuda"


if triton is not None:

    @triton.jit
    def _stats_kernel(logits_ptr, targets_ptr, out_ptr, rows, vocab, stride_row, BLOCK: tl.constexpr):
        """out[0, row] = log p(target), out[1, row] = log Z, out[2, row] = entropy, from one read of the row."""
        row = tl.program_id(0).to(tl.int64)
        base = logits_ptr + row * stride_row
        lanes = tl.arange(0, BLOCK)
        m = tl.full((BLOCK,), float("-inf"), tl.float32)
        s = tl.zeros((BLOCK,), tl.float32)
        t = tl.zeros((BLOCK,), tl.float32)
        for start in range(0, vocab, BLOCK):
            cols = start + lanes
            x = tl.load(base + cols, mask=cols < vocab, other=float("-inf")).to(tl.float32)
            m_new = tl.maximum(m, x)
            safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # lanes that saw nothing finite yet: no inf - inf
            scale = tl.exp(m - safe)
            e = tl.exp(x - safe)
            s = s * scale + e
            t = t * scale + tl.where(e > 0.0, e * x, 0.0)  # a -inf column adds nothing (not 0 * -inf = nan)
            m = m_new
        top = tl.max(m, 0)
        weight = tl.exp(m - top)
        total = tl.sum(s * weight, 0)
        weighted = tl.sum(t * weight, 0)
        log_z = top + tl.log(total)
        target = tl.load(targets_ptr + row)
        chosen = tl.load(base + target).to(tl.float32)
        tl.store(out_ptr + row, chosen - log_z)
        tl.store(out_ptr + rows + row, log_z)
        tl.store(out_ptr + 2 * rows + row, log_z - weighted / total)

    @triton.jit
    def _grad_kernel(logits_ptr, grad_ptr, targets_ptr, log_z_ptr, entropy_ptr, grad_logprob_ptr, grad_entropy_ptr,
                     vocab, stride_row, stride_grad, BLOCK: tl.constexpr):
        """d loss / d logits of one row: g_lp ([j = y] - p_j) - g_ent p_j (x_j - (log Z - H))."""
        row = tl.program_id(0).to(tl.int64)
        base = logits_ptr + row * stride_row
        out = grad_ptr + row * stride_grad
        log_z = tl.load(log_z_ptr + row)
        mean = log_z - tl.load(entropy_ptr + row)  # sum_i p_i x_i
        g_lp = tl.load(grad_logprob_ptr + row)
        g_ent = tl.load(grad_entropy_ptr + row)
        target = tl.load(targets_ptr + row)
        lanes = tl.arange(0, BLOCK)
        for start in range(0, vocab, BLOCK):
            cols = start + lanes
            inside = cols < vocab
            x = tl.load(base + cols, mask=inside, other=0.0).to(tl.float32)
            p = tl.exp(x - log_z)
            onehot = tl.where(cols == target, 1.0, 0.0)
            grad = g_lp * (onehot - p) - g_ent * p * (x - mean)
            tl.store(out + cols, grad.to(grad_ptr.dtype.element_ty), mask=inside)


def chunk_stats(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log p(target), log Z, entropy) per row of logits [n, V], fp32; as `logprobs._chunk_stats`."""
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    rows, vocab = logits.shape
    out = torch.empty((3, rows), dtype=torch.float, device=logits.device)
    if rows:
        _stats_kernel[(rows,)](logits, targets.contiguous(), out, rows, vocab, logits.stride(0), BLOCK=BLOCK,
                               num_warps=WARPS)
    return out[0], out[1], out[2]


def chunk_grad(logits: torch.Tensor, targets: torch.Tensor, log_z: torch.Tensor, entropy: torch.Tensor,
               grad_logprob: torch.Tensor, grad_entropy: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """d(loss)/d(logits) in the logits' dtype, as `logprobs._chunk_grad`; `out=logits` overwrites the logits."""
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    out = torch.empty_like(logits) if out is None else out
    rows, vocab = logits.shape
    if rows:
        _grad_kernel[(rows,)](logits, out, targets.contiguous(), log_z.float().contiguous(), entropy.float().contiguous(),
                              grad_logprob.float().contiguous(), grad_entropy.float().contiguous(), vocab,
                              logits.stride(0), out.stride(0), BLOCK=BLOCK, num_warps=WARPS)
    return out
