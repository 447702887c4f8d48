"""One decode step's attention as one Triton kernel: a query token per row against the filled part of its KV cache.

The plain path (`FastHFEngine._attend`) runs a batched matmul for the scores, a softmax over the whole
static cache (masked), and a second batched matmul: three kernels a layer, each over every slot of the cache,
and the softmax writes fp32 scores out and back. On the 0.5B reference shape those three took ~25 us a layer,
~0.6 ms of a 2 ms decode step (kernel profile in docs/BENCHMARKS.md). This kernel does all of it in one pass:

- one program per (row, KV head) holds the query heads of its group ([groups, D], padded to 16 rows for
  `tl.dot`), walks the cache in blocks of BLOCK_L slots with an online softmax (running max and sum, fp32);
- it reads the attended length from the device (`slot + 1`, the slot this step's token was written to), so one
  captured CUDA graph serves every length; blocks past the filled part are skipped (a compare each, no reads);
- slots that are not valid for a row (left padding of its prompt) are masked from `valid` [B, Lmax].

Scores and the softmax are fp32, the probabilities are cast to the cache's dtype for the product with V
(as the plain path does); fp32 caches use IEEE products, so greedy decoding in fp32 still matches `generate`.
Used by the fast HF engine on CUDA when Triton imports and the head size is a power of two >= 16.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the engine keeps its plain attention
    triton = None

BLOCK_L = 64  # cache slots per inner step


def available(head_dim: int, device: torch.device) -> bool:
    """Whether this kernel can serve: CUDA, Triton importable, head size a power of two of at least 16."""
    return triton is not None and device.type == "cuda" and head_dim >= 16 and head_dim & (head_dim - 1) == 0


if triton is not None:

    @triton.jit
    def _decode_attention_kernel(q_ptr, k_ptr, v_ptr, valid_ptr, slot_ptr, out_ptr,
                                 stride_qb, stride_qh, stride_kb, stride_kh, stride_kl, stride_vb, stride_vh, stride_vl,
                                 stride_mb, stride_ob, stride_oh, scale,
                                 GROUPS: tl.constexpr, G_PAD: tl.constexpr, D: tl.constexpr, BLOCK: tl.constexpr, MAX_LENGTH: tl.constexpr,
                                 PRECISION: tl.constexpr):
        row = tl.program_id(0)
        kv_head = tl.program_id(1)
        length = tl.load(slot_ptr) + 1
        g = tl.arange(0, G_PAD)
        d = tl.arange(0, D)
        heads = kv_head * GROUPS + g
        q = tl.load(q_ptr + row * stride_qb + heads[:, None] * stride_qh + d[None, :], mask=(g < GROUPS)[:, None], other=0.0)
        m = tl.full([G_PAD], -1.0e30, tl.float32)  # finite: a block with no valid slot leaves the sums unchanged
        total = tl.zeros([G_PAD], tl.float32)
        acc = tl.zeros([G_PAD, D], tl.float32)
        k_base = k_ptr + row * stride_kb + kv_head * stride_kh
        v_base = v_ptr + row * stride_vb + kv_head * stride_vh
        for start in range(0, MAX_LENGTH, BLOCK):
            if start < length:  # blocks past the filled part are skipped: nothing of them is read
                offs = start + tl.arange(0, BLOCK)
                inside = offs < length
                ok = tl.load(valid_ptr + row * stride_mb + offs, mask=inside, other=0) != 0
                k = tl.load(k_base + offs[:, None] * stride_kl + d[None, :], mask=inside[:, None], other=0.0)
                s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
                s = tl.where(ok[None, :], s * scale, float("-inf"))
                m_new = tl.maximum(m, tl.max(s, 1))
                p = tl.exp(s - m_new[:, None])
                alpha = tl.exp(m - m_new)
                total = total * alpha + tl.sum(p, 1)
                v = tl.load(v_base + offs[:, None] * stride_vl + d[None, :], mask=inside[:, None], other=0.0)
                acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
                m = m_new
        out = acc / total[:, None]
        tl.store(out_ptr + row * stride_ob + heads[:, None] * stride_oh + d[None, :], out.to(out_ptr.dtype.element_ty),
                 mask=(g < GROUPS)[:, None])


@torch.library.custom_op("rlkit::decode_attention", mutates_args=())
def decode_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor,
                     slot: torch.Tensor, scale: float) -> torch.Tensor:
    """Attention of q [B, H, D] (one token a row) over keys/values [B, KVH, Lmax, D] at slots [0, slot], where
    `valid` [B, Lmax] allows; returns [B, H, D]. An opaque op to torch.compile (one kernel in its graph)."""
    batch, heads, head_dim = q.shape
    kv_heads = keys.shape[1]
    groups = heads // kv_heads
    out = torch.empty((batch, heads, head_dim), dtype=q.dtype, device=q.device)
    if q.stride(-1) != 1:
        q = q.contiguous()
    _decode_attention_kernel[(batch, kv_heads)](
        q, keys, values, valid, slot, out,
        q.stride(0), q.stride(1), keys.stride(0), keys.stride(1), keys.stride(2),
        values.stride(0), values.stride(1), values.stride(2), valid.stride(0), out.stride(0), out.stride(1), scale,
        GROUPS=groups, G_PAD=max(16, triton.next_power_of_2(groups)), D=head_dim, BLOCK=BLOCK_L, MAX_LENGTH=keys.shape[2],
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32",  # fp32: exact products; else ignored
    )
    return out


@decode_attention.register_fake
def _(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor, slot: torch.Tensor,
      scale: float) -> torch.Tensor:
    return torch.empty_like(q, memory_format=torch.contiguous_format)
