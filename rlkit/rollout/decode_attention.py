"""One decode step's attention as one Triton kernel: a query token per row against the filled part of its KV cache.

The plain path (`FastHFEngine._attend`) runs a batched matmul for the scores, a softmax over the whole
static cache (masked), and a second batched matmul: three kernels a layer, each over every slot of the cache,
and the softmax writes fp32 scores out and back. On the 0.5B reference shape those took ~25 us a layer,
~0.55 ms of a 2 ms decode step (kernel profile in docs/BENCHMARKS.md). Here, split over the cache's length
(as flash-decoding does):

- one program per (row, KV head, chunk of CHUNK slots) holds the query heads of its group ([groups, D], padded
  to 16 rows for `tl.dot`) and writes its chunk's max score, exp-sum and weighted V sum (fp32); many short
  programs keep many loads in flight, where one program per (row, KV head) walking the cache waited on each;
- the merge of the chunks: by default (`FOLD`, caches of up to FOLD_MAX_SPLITS chunks) the last program of a
  (row, KV head) to finish, found by a ticket from an atomic counter, merges them in chunk order and writes the
  output (no second kernel; that program zeroes the counter again, so graph replays find it zero); else a second
  kernel per (row, head) merges;
- the kernels read the attended length from the device (`slot + 1`, the slot this step's token was written to), so one
  captured CUDA graph serves every length; chunks past the filled part exit without reading anything;
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

CHUNK = 128  # cache slots per program of the first kernel
FOLD = True  # the last chunk program of a (row, KV head) merges (ticket from an atomic counter): no merge kernel
# (H200, reference shape: 13.5 us a layer against 10.5 + 4.4 us with the merge kernel; docs/BENCHMARKS.md)
FOLD_MAX_SPLITS = 8  # longer caches keep the merge kernel: the fold gained at 5 chunks (the reference's 576 slots)
# and lost 2% of `generate` at the long preset's 26 (3,328 slots), where its last program merges 26 chunks alone
NUM_WARPS = 4  # warps of a chunk program
FUSE_ROPE = True  # the engine hands the kernel un-rotated q/k and lets it write the cache (decode_attention_rope) ...
FUSE_ROPE_MAX_HEAD_DIM = 64  # ... for head sizes up to this. H200 (docs/BENCHMARKS.md, issue 18, a sixth session):
# `generate` -4.5% at head size 64 (the 0.5B reference shape, 5 chunks a row), +10.4% at 128 (the 1.5B `long` shape,
# 26 chunks: 14.58 s fused vs 13.21 s with the rotary and cache writes as compiled torch ops). The two shapes differ in
# head size and chunk count both; the rule follows the head size (twice the registers for q, its rotary partner and the
# new K/V in every chunk program), which the two measurements do not separate from the chunk count.
COUNTERS = 1 << 16  # tickets for the fold (int32, zero between calls)
_counters: dict[torch.device, torch.Tensor] = {}


def fuse_rope(head_dim: int) -> bool:
    """Whether decode steps hand this kernel the un-rotated q/k and let it write the cache (`decode_attention_rope`)."""
    return FUSE_ROPE and head_dim <= FUSE_ROPE_MAX_HEAD_DIM


def available(head_dim: int, device: torch.device) -> bool:
    """Whether this kernel can serve: CUDA, Triton importable, head size a power of two of at least 16."""
    return triton is not None and device.type == "cuda" and head_dim >= 16 and head_dim & (head_dim - 1) == 0


if triton is not None:

    @triton.jit
    def _partial_kernel(q_ptr, k_ptr, v_ptr, valid_ptr, slot_ptr, m_ptr, sum_ptr, acc_ptr, count_ptr, out_ptr,
                        new_k_ptr, new_v_ptr, cos_ptr, sin_ptr,
                        stride_qb, stride_qh, stride_kb, stride_kh, stride_kl, stride_vb, stride_vh, stride_vl,
                        stride_mb, stride_ob, stride_oh, stride_nkb, stride_nkh, stride_nvb, stride_nvh, stride_cb,
                        stride_sb, scale, HEADS: tl.constexpr, SPLITS: tl.constexpr, S_PAD: tl.constexpr,
                        GROUPS: tl.constexpr, G_PAD: tl.constexpr, D: tl.constexpr, CHUNK: tl.constexpr,
                        PRECISION: tl.constexpr, FOLD: tl.constexpr, ROPE: tl.constexpr):
        """Softmax statistics and the weighted V sum of one chunk of CHUNK slots, for the query heads of a KV head;
        with ROPE, q and this step's K are rotated here and the new K/V written to the cache at the slot; with FOLD,
        the last program of the (row, KV head) to finish merges every chunk into the output."""
        row = tl.program_id(0)
        kv_head = tl.program_id(1)
        split = tl.program_id(2)
        slot = tl.load(slot_ptr)
        length = slot + 1
        start = split * CHUNK
        if start < length:  # chunks past the filled part exit at once: nothing of them is read
            g = tl.arange(0, G_PAD)
            d = tl.arange(0, D)
            heads = kv_head * GROUPS + g
            live_heads = g < GROUPS
            q_at = q_ptr + row * stride_qb + heads[:, None] * stride_qh
            q = tl.load(q_at + d[None, :], mask=live_heads[:, None], other=0.0)
            if ROPE:  # x * cos + rotate_half(x) * sin in fp32, rounded once (as the compiled torch ops round)
                partner = (d + D // 2) % D  # rotate_half(x)[d] = -x[d + D/2] (first half), x[d - D/2] (second)
                sign = tl.where(d < D // 2, -1.0, 1.0)
                cos = tl.load(cos_ptr + row * stride_cb + d).to(tl.float32)
                sin = tl.load(sin_ptr + row * stride_sb + d).to(tl.float32) * sign
                q_partner = tl.load(q_at + partner[None, :], mask=live_heads[:, None], other=0.0)
                new_k_at = new_k_ptr + row * stride_nkb + kv_head * stride_nkh
                new_k = tl.load(new_k_at + d).to(tl.float32) * cos + tl.load(new_k_at + partner).to(tl.float32) * sin
                new_k = new_k.to(k_ptr.dtype.element_ty)
                new_v = tl.load(new_v_ptr + row * stride_nvb + kv_head * stride_nvh + d).to(v_ptr.dtype.element_ty)
                q = (q.to(tl.float32) * cos[None, :] + q_partner.to(tl.float32) * sin[None, :]).to(q.dtype)
            offs = start + tl.arange(0, CHUNK)
            inside = offs < length
            ok = (tl.load(valid_ptr + row * stride_mb + offs, mask=inside, other=0) != 0) & inside
            if ROPE:  # this step's slot is not read from the cache: its K/V come from registers (written below)
                here = offs == slot
                inside = inside & (offs != slot)
            k = tl.load(k_ptr + row * stride_kb + kv_head * stride_kh + offs[:, None] * stride_kl + d[None, :],
                        mask=inside[:, None], other=0.0)
            v_at = v_ptr + row * stride_vb + kv_head * stride_vh + offs[:, None] * stride_vl + d[None, :]
            v = tl.load(v_at, mask=inside[:, None], other=0.0)  # issued with K's load, before the scores need K
            if ROPE:
                k = tl.where(here[:, None], new_k[None, :], k)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
            s = tl.where(ok[None, :], s * scale, float("-inf"))
            m = tl.maximum(tl.max(s, 1), -1.0e30)  # finite even when no slot of the chunk is valid (left padding)
            p = tl.exp(s - m[:, None])
            if ROPE:
                v = tl.where(here[:, None], new_v[None, :], v)
            acc = tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            if ROPE:  # noqa: SIM102 - a compile-time branch: new_k/new_v exist only with ROPE
                if slot // CHUNK == split:  # the one program whose chunk holds the slot writes the cache
                    tl.store(k_ptr + row * stride_kb + kv_head * stride_kh + slot * stride_kl + d, new_k)
                    tl.store(v_ptr + row * stride_vb + kv_head * stride_vh + slot * stride_vl + d, new_v)
            stat = (row * HEADS + heads) * SPLITS + split  # [B, H, SPLITS] layout, [.., D] for acc
            tl.store(m_ptr + stat, m, mask=live_heads)
            tl.store(sum_ptr + stat, tl.sum(p, 1), mask=live_heads)
            tl.store(acc_ptr + stat[:, None] * D + d[None, :], acc, mask=live_heads[:, None])
            if FOLD:
                used = (length + CHUNK - 1) // CHUNK  # chunks holding slots [0, slot]: each takes one ticket
                tl.debug_barrier()  # every thread's statistics are written before the ticket (release)
                counter = count_ptr + row * tl.num_programs(1) + kv_head
                ticket = tl.atomic_add(counter, 1, sem="acq_rel")
                if ticket == used - 1:  # the last one: merge in chunk order (the result does not depend on who)
                    first = (row * HEADS + heads) * SPLITS
                    chunks = tl.arange(0, S_PAD)
                    live = live_heads[:, None] & (chunks < used)[None, :]
                    # every chunk's statistics in one load each ([G_PAD, S_PAD]), not one round trip per chunk
                    m_all = tl.load(m_ptr + first[:, None] + chunks[None, :], mask=live, other=-1.0e30,
                                    cache_modifier=".cg")
                    top = tl.max(m_all, 1)
                    weight = tl.where(live, tl.exp(m_all - top[:, None]), 0.0)
                    total = tl.sum(weight * tl.load(sum_ptr + first[:, None] + chunks[None, :], mask=live,
                                                    other=0.0, cache_modifier=".cg"), 1)
                    merged = tl.zeros((G_PAD, D), dtype=tl.float32)
                    for c in tl.static_range(SPLITS):  # unrolled: the chunks' loads are independent, issued together
                        w_c = tl.sum(tl.where(chunks[None, :] == c, weight, 0.0), 1)
                        part = tl.load(acc_ptr + (first + c)[:, None] * D + d[None, :],
                                       mask=(live_heads & (g * 0 + c < used))[:, None], other=0.0,
                                       cache_modifier=".cg")
                        merged += part * w_c[:, None]
                    merged = merged / tl.where(live_heads, total, 1.0)[:, None]
                    tl.store(out_ptr + row * stride_ob + heads[:, None] * stride_oh + d[None, :],
                             merged.to(out_ptr.dtype.element_ty), mask=live_heads[:, None])
                    tl.atomic_xchg(counter, 0)  # zero for the next call (graph replays included)

    @triton.jit
    def _combine_kernel(m_ptr, sum_ptr, acc_ptr, slot_ptr, out_ptr, stride_ob, stride_oh, HEADS: tl.constexpr,
                        SPLITS: tl.constexpr, S_PAD: tl.constexpr, D: tl.constexpr, CHUNK: tl.constexpr):
        """Merge the chunks' statistics of one (row, head) into its attention output."""
        row = tl.program_id(0)
        head = tl.program_id(1)
        used = (tl.load(slot_ptr) + CHUNK) // CHUNK  # chunks holding slots [0, slot]
        splits = tl.arange(0, S_PAD)
        live = splits < used
        base = (row * HEADS + head) * SPLITS
        m = tl.load(m_ptr + base + splits, mask=live, other=float("-inf"))
        top = tl.max(m, 0)
        weight = tl.where(live, tl.exp(m - top), 0.0)
        total = tl.sum(weight * tl.load(sum_ptr + base + splits, mask=live, other=0.0), 0)
        d = tl.arange(0, D)
        acc = tl.load(acc_ptr + (base + splits)[:, None] * D + d[None, :], mask=live[:, None], other=0.0)
        out = tl.sum(acc * weight[:, None], 0) / total
        tl.store(out_ptr + row * stride_ob + head * stride_oh + d, out.to(out_ptr.dtype.element_ty))


def _counter(device: torch.device) -> torch.Tensor:
    counter = _counters.get(device)
    if counter is None:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():  # zeros made during a capture would be zeroed only on replay
            raise RuntimeError("decode_attention: run it once before capturing a CUDA graph (its tickets need zeros)")
        counter = _counters[device] = torch.zeros(COUNTERS, dtype=torch.int32, device=device)
    return counter


def _launch(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor, slot: torch.Tensor,
            scale: float, rope: tuple[torch.Tensor, ...] | None) -> torch.Tensor:
    batch, heads, head_dim = q.shape
    kv_heads, max_length = keys.shape[1], keys.shape[2]
    groups = heads // kv_heads
    splits = triton.cdiv(max_length, CHUNK)
    if q.stride(-1) != 1:
        q = q.contiguous()
    if rope is None:  # unused pointers and strides: the kernel's ROPE branch is compiled out
        new_k, new_v, cos, sin = q, q, q, q
    else:
        new_k, new_v, cos, sin = (t if t.stride(-1) == 1 else t.contiguous() for t in rope)
    stats = torch.empty((2, batch, heads, splits), dtype=torch.float32, device=q.device)
    partial = torch.empty((batch, heads, splits, head_dim), dtype=torch.float32, device=q.device)
    out = torch.empty((batch, heads, head_dim), dtype=q.dtype, device=q.device)
    fold = FOLD and splits <= FOLD_MAX_SPLITS and batch * kv_heads <= COUNTERS
    _partial_kernel[(batch, kv_heads, splits)](
        q, keys, values, valid, slot, stats[0], stats[1], partial, _counter(q.device) if fold else slot, out,
        new_k, new_v, cos, sin,
        q.stride(0), q.stride(1), keys.stride(0), keys.stride(1), keys.stride(2),
        values.stride(0), values.stride(1), values.stride(2), valid.stride(0), out.stride(0), out.stride(1),
        new_k.stride(0), new_k.stride(1), new_v.stride(0), new_v.stride(1), cos.stride(0), sin.stride(0), scale,
        HEADS=heads, SPLITS=splits, S_PAD=triton.next_power_of_2(splits), GROUPS=groups,
        G_PAD=max(16, triton.next_power_of_2(groups)), D=head_dim, CHUNK=CHUNK,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32",  # fp32: exact products; else unused
        FOLD=fold, ROPE=rope is not None, num_warps=NUM_WARPS,
    )
    if fold:
        return out
    _combine_kernel[(batch, heads)](stats[0], stats[1], partial, slot, out, out.stride(0), out.stride(1),
                                    HEADS=heads, SPLITS=splits, S_PAD=triton.next_power_of_2(splits), D=head_dim,
                                    CHUNK=CHUNK)
    return out


@torch.library.custom_op("rlkit::decode_attention", mutates_args=())
def decode_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor,
                     slot: torch.Tensor, scale: float) -> torch.Tensor:
    """Attention of q [B, H, D] (one token a row) over keys/values [B, KVH, Lmax, D] at slots [0, slot], where
    `valid` [B, Lmax] allows; returns [B, H, D]. An opaque op to torch.compile (one or two kernels in its graph)."""
    return _launch(q, keys, values, valid, slot, scale, None)


@decode_attention.register_fake
def _(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor, slot: torch.Tensor,
      scale: float) -> torch.Tensor:
    return torch.empty_like(q, memory_format=torch.contiguous_format)


@torch.library.custom_op("rlkit::decode_attention_rope", mutates_args=("keys", "values"))
def decode_attention_rope(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                          keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor, slot: torch.Tensor,
                          scale: float) -> torch.Tensor:
    """One decode step's attention from the un-rotated projections: q [B, H, D], this step's k and v [B, KVH, D],
    the rotary cos/sin [B, D] of each row's position. Rotates q and k, writes k and v into keys/values at `slot`,
    and attends over slots [0, slot] where `valid` allows; returns [B, H, D]. The rotary embedding and both cache
    writes, three small kernels a layer when compiled from torch ops (~5.6 us on the H200), happen inside the
    attention kernel."""
    return _launch(q, keys, values, valid, slot, scale, (k, v, cos, sin))


@decode_attention_rope.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, keys: torch.Tensor,
      values: torch.Tensor, valid: torch.Tensor, slot: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.empty_like(q, memory_format=torch.contiguous_format)
