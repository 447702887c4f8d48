"""Attention of packed micro-batches by the sequences' boundaries instead of a block-diagonal mask.

A packed micro-batch (rlkit/learner/packing.py), like a batch SFT packing built (rlkit/stages/sft.py), holds several
sequences per row. Through SDPA, transformers keeps them apart with a [rows, 1, W, W] boolean mask built from the
restarting position ids: every score of the row is computed (W² per row, not the sequences' own lengths squared) and
the masked call cannot take the flash or cuDNN kernels. Here the rows are flattened into one stream of tokens and
torch's variable-length flash attention (`torch.nn.attention.varlen.varlen_attn`) runs each sequence causally over its
own tokens, from `cu_seqlens` (the sequences' start offsets, built on the host by the packer or read from SFT's
restarting position ids, so no device sync). Registered with transformers' `AttentionInterface` as NAME (`install`);
calls without the boundaries (padded micro-batches, generation) take transformers' SDPA path unchanged.

`learner.packed_attention: auto` (the default) and `varlen` use it where it serves, CUDA with bf16/fp16 weights where
torch has the op (`available`); the learner keeps the mask elsewhere, and for micro-batches whose rows hold one sequence
each, which SDPA then runs causally with no mask (faster there on one H200: docs/BENCHMARKS.md). On CPU the same
function runs a per-sequence SDPA loop (the tests' reference path, and a check of the plumbing).
"""

from __future__ import annotations

import inspect
import itertools

import torch
import torch.nn.functional as F

NAME = "rlkit_varlen"
_registered = False


def _varlen_op():  # noqa: ANN202 - torch's op, or None where this torch has none
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def available(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether torch's variable-length flash attention can serve: CUDA, half-precision activations, the op present."""
    return device.type == "cuda" and dtype in (torch.bfloat16, torch.float16) and _varlen_op() is not None


def _op_options() -> tuple[dict, bool]:
    """torch's keywords for a causal call, those of torch 2.10 (`is_causal`) or later (`window_size`), and whether the
    op groups query heads itself (`enable_gqa`). Read once, outside compiled code (`install`)."""
    params = inspect.signature(_varlen_op()).parameters
    return ({"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True}), "enable_gqa" in params


_OPTIONS: tuple[dict, bool] = ({}, False)
_OP = None  # torch's op, set by `install` (compiled code reads module globals; it would not trace an import well)


def _causal_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_length: int,
                   scale: float | None) -> torch.Tensor:
    """torch's op, causal; K/V heads repeated where the op cannot group query heads itself."""
    causal, gqa = _OPTIONS
    options = {"scale": scale, **causal}
    if k.shape[1] != q.shape[1]:
        if gqa:
            options["enable_gqa"] = True
        else:
            groups = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    return _OP(q, k, v, cu_seqlens, cu_seqlens, max_length, max_length, **options)


def _causal_loop(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                 scale: float | None) -> torch.Tensor:
    """The same attention as one SDPA call per sequence (CPU; the reference the tests compare with)."""
    out = torch.empty_like(q)
    bounds = cu_seqlens.tolist()
    for start, end in itertools.pairwise(bounds):
        if end > start:
            seq = [t[start:end].transpose(0, 1)[None] for t in (q, k, v)]  # [1, heads, length, D]
            out[start:end] = F.scaled_dot_product_attention(*seq, is_causal=True, scale=scale,
                                                            enable_gqa=k.shape[1] != q.shape[1])[0].transpose(0, 1)
    return out


def varlen_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                             cu_seq_lens_q: torch.Tensor | None = None, **kwargs) -> tuple[torch.Tensor, None]:  # noqa: ANN003
    """transformers' attention-function signature: query [B, H, W, D], key/value [B, KVH, W, D] -> ([B, W, H, D],
    None). With `cu_seq_lens_q` (int32 [N + 1]: every row's sequences and its tail padding), the B rows are one
    token stream split there; without it (padded batches, generation) transformers' SDPA path, mask and all."""
    if cu_seq_lens_q is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if dropout:
        raise ValueError(f"attention {NAME!r} has no dropout (got {dropout}); the learner trains without it")
    rows, heads, width, head_dim = query.shape
    q, k, v = (t.transpose(1, 2).reshape(rows * width, t.shape[1], head_dim) for t in (query, key, value))
    if q.is_cuda:
        out = _causal_varlen(q, k, v, cu_seq_lens_q, width, scaling)  # no sequence is longer than a row
    else:
        out = _causal_loop(q, k, v, cu_seq_lens_q, scaling)
    return out.view(rows, width, heads, head_dim), None


def install(model: torch.nn.Module) -> None:
    """Set the model's attention to NAME (registered with transformers once per process, its masks those of SDPA).
    Calls that pass no `cu_seq_lens_q` run exactly as under "sdpa"; the learner passes it for packed micro-batches.
    Set for good rather than per forward: compiled layers would otherwise have to guard on the config."""
    global _registered, _OPTIONS, _OP
    if not _registered:
        _OP = _varlen_op()
        if _OP is not None:
            _OPTIONS = _op_options()
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(NAME, varlen_attention_forward)
        AttentionMaskInterface.register(NAME, sdpa_mask)
        _registered = True
    model.config._attn_implementation = NAME
